# shellcheck shell=bash
# Slurm 24.11 beside Debian 12's 22.05: a Debian 13 ("trixie") root, built once with debootstrap
# and cached, in which local-cluster runs munged, slurmctld and slurmd 24.11 (chroot, sharing
# the host's network, so ONE collector on the host serves both releases).
# Sourced by local-cluster, run-tests and trixie-root after lib.sh; callers set `set -euo pipefail`.

# The path is an interface: the package builder reads 24.11's headers from $TRIXIE_ROOT/usr/include.
TRIXIE_ROOT=/var/cache/runledger/trixie-root
TRIXIE_SUITE=trixie
TRIXIE_STAMP=$TRIXIE_ROOT/.runledger-recipe
# Inside the root: the cluster (same list as RL_PACKAGES' runtime part, 24.11 flavour) and what the
# e2e jobs run (Lmod, LAMMPS, Open MPI, python3, PMIx for `srun --mpi=pmix`, procps for pgrep).
TRIXIE_PACKAGES=(
    munge slurmd slurmctld slurm-client libslurm-dev
    lmod lammps openmpi-bin python3
    libpmix-dev procps
)
# Bumped when the build steps below change in a way the package list does not show.
TRIXIE_RECIPE_VERSION=1

# The Debian mirror the host's apt uses (deb822 `URIs:` or one-line `deb URL bookworm`), so the
# root comes from the same registry as the host's packages; no host name is written down here.
trixie_mirror() {
    local url
    url=$(awk '
        /^URIs:/ { uri = $2 } /^Suites:/ { if (uri != "" && $0 ~ /[[:space:]]bookworm([[:space:]]|$)/) { print uri; exit } }
        /^[[:space:]]*$/ { uri = "" }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
    if [[ -z $url ]]; then
        url=$(awk '$1 == "deb" && $3 ~ /^(bookworm|stable)$/ && $2 !~ /security/ { print $2; exit }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
    fi
    [[ -n $url ]] || rl_die "no Debian mirror found in /etc/apt/sources.list*; cannot build the $TRIXIE_SUITE root"
    echo "${url%/}"
}

# What the root's content depends on; a different value rebuilds it.
trixie_recipe() {
    printf 'suite=%s\nrecipe=%s\npackages=%s\n' "$TRIXIE_SUITE" "$TRIXIE_RECIPE_VERSION" "${TRIXIE_PACKAGES[*]}" \
        | sha256sum | cut -d' ' -f1
}

trixie_root_current() {
    [[ -f $TRIXIE_STAMP && $(<"$TRIXIE_STAMP") == "$(trixie_recipe)" ]]
}

# Build the root unless it exists with the current recipe. Built beside the final path and renamed
# at the end, so an interrupted build never passes for a finished one.
trixie_build_root() {
    if trixie_root_current; then
        rl_info "$TRIXIE_SUITE root up to date: $TRIXIE_ROOT"
        return 0
    fi
    rl_require_root
    # Never pull the root from under a running 24.11 cluster (its mounts show it is in use).
    if [[ -d $TRIXIE_ROOT ]] && grep -qF " $(readlink -f "$TRIXIE_ROOT")/" /proc/self/mounts; then
        rl_die "$TRIXIE_ROOT is out of date but in use: \`packaging/local-cluster down\` first"
    fi
    rl_ensure_packages debootstrap
    local mirror new=$TRIXIE_ROOT.new t0=$SECONDS
    mirror=$(trixie_mirror)
    rl_log "building the $TRIXIE_SUITE root in $TRIXIE_ROOT from $mirror (takes a few minutes)"
    trixie_umount_all "$new"
    rm -rf --one-file-system "$new"
    install -d -m 0755 "$(dirname "$TRIXIE_ROOT")"
    debootstrap --variant=minbase \
        --keyring=/usr/share/keyrings/debian-archive-trixie-stable.gpg \
        "$TRIXIE_SUITE" "$new" "$mirror" >"$new.log" 2>&1 || {
        tail -n 30 "$new.log"
        rl_die "debootstrap $TRIXIE_SUITE failed (log: $new.log)"
    }
    # Daemons must not start from package scripts (local-cluster starts them itself).
    printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
    chmod 0755 "$new/usr/sbin/policy-rc.d"
    mount -t proc proc "$new/proc"
    local rc=0
    chroot "$new" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
        apt-get install -y -q --no-install-recommends "${TRIXIE_PACKAGES[@]}" >>"$new.log" 2>&1 || rc=$?
    chroot "$new" apt-get clean >/dev/null 2>&1 || true
    umount "$new/proc"
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$new.log"
        rl_die "apt-get install in the $TRIXIE_SUITE root failed (log: $new.log)"
    fi
    rm -f "$new/usr/sbin/policy-rc.d"
    trixie_recipe >"$new/.runledger-recipe"
    rm -rf --one-file-system "$TRIXIE_ROOT"
    mv "$new" "$TRIXIE_ROOT"
    mv -f "$new.log" "$TRIXIE_ROOT.log"
    rl_info "$TRIXIE_SUITE root built in $((SECONDS - t0)) s: $(chroot "$TRIXIE_ROOT" slurmd -V 2>/dev/null)"
}

# Unmount everything mounted below DIR, deepest first.
trixie_umount_all() {
    local dir=$1 m
    [[ -d $dir ]] || return 0
    dir=$(readlink -f "$dir")
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r \
        | while read -r m; do
            umount -l "$m" 2>/dev/null || rl_warn "cannot unmount $m"
        done
}

# --- the running 24.11 cluster ----------------------------------------------------------------
# The root shares with the host what tests, admins and the collector look at by host path: homes
# (job scripts and outputs), /tmp, the Slurm and runledger config (one slurm.conf/plugstack.conf
# for both releases; the plugin path in it resolves to the root's 24.11 build), /var/spool (the
# spool, and the other spools tests point plugstack.conf at), Slurm's logs, the module tree, and
# the ledger's directories (a user's `collector query --database` meets the same permissions as
# on the host). /run is shared too (pid files, the collector's query socket), except /run/munge:
# the root runs its own munged (24.11's libmunge talks to it) with the host's key, so the host's
# collector decodes the root's credentials. /var/lib/slurm stays the root's own: 24.11's state
# files must never meet 22.05's slurmctld (its StateSaveLocation is /var/spool/slurmctld-24.11,
# on the host through /var/spool, so that job ids go on counting when the root is rebuilt).
TRIXIE_SHARED=(/home /tmp /etc/slurm /etc/runledger /var/log/slurm /var/spool /opt/runledger /run
    /var/lib/runledger /var/log/runledger)
TRIXIE_MUNGED_PIDFILE=/run/munge/munged.pid   # inside the root
# The 24.11 controller's first job id (slurm.conf FirstJobId; see local-cluster).
# shellcheck disable=SC2034 # used by local-cluster
TRIXIE_FIRST_JOB_ID=24110000

# Runs in the root as root (stdin/stdout/stderr and exit status passed through).
trixie_exec() {
    chroot "$TRIXIE_ROOT" "$@"
}

# Mount what the root needs (idempotent: a mount point already in use is left as it is).
trixie_mount() {
    [[ -x $TRIXIE_ROOT/usr/sbin/slurmd ]] || rl_die "$TRIXIE_ROOT has no slurmd: run packaging/trixie-root"
    local d
    mountpoint -q "$TRIXIE_ROOT/proc" || mount -t proc proc "$TRIXIE_ROOT/proc"
    for d in /sys /dev; do
        if ! mountpoint -q "$TRIXIE_ROOT$d"; then
            mount --rbind "$d" "$TRIXIE_ROOT$d"
            mount --make-rslave "$TRIXIE_ROOT$d"
        fi
    done
    for d in "${TRIXIE_SHARED[@]}"; do
        # Only created when missing: `install -d -m` would also change an existing /tmp's mode.
        [[ -d $d ]] || install -d -m 0755 "$d"
        [[ -d $TRIXIE_ROOT$d ]] || install -d -m 0755 "$TRIXIE_ROOT$d"
        mountpoint -q "$TRIXIE_ROOT$d" || mount --bind "$d" "$TRIXIE_ROOT$d"
    done
    # Over the shared /run: the root's own munged socket directory.
    if ! mountpoint -q "$TRIXIE_ROOT/run/munge"; then
        install -d -m 0755 "$TRIXIE_ROOT/run/munge"
        mount -t tmpfs -o mode=0755,size=1m tmpfs "$TRIXIE_ROOT/run/munge"
    fi
    trixie_exec chown munge:munge /run/munge
    # Node name resolution as on the host.
    cp -f /etc/hosts "$TRIXIE_ROOT/etc/hosts"
}

trixie_umount() {
    trixie_umount_all "$TRIXIE_ROOT"
}

# Copy the host's entry for NAME from /etc/FILE into the root's, replacing any entry of that name,
# so the project's users and groups have the same ids on both sides of the chroot.
trixie_copy_entry() {
    local file=$1 name=$2 line dst=$TRIXIE_ROOT/etc/$1
    case $file in
        shadow|gshadow) line=$(grep "^$name:" "/etc/$file" || true) ;;
        *) line=$(getent "$file" "$name" || true) ;;
    esac
    [[ -n $line ]] || return 0
    [[ $(grep "^$name:" "$dst" || true) == "$line" ]] && return 0
    { grep -v "^$name:" "$dst" || true; printf '%s\n' "$line"; } >"$dst.new"
    chmod --reference="$dst" "$dst.new"
    chown --reference="$dst" "$dst.new"
    mv -f "$dst.new" "$dst"
}

# USERS… (and their primary groups) and GROUPS given after `--` into the root.
trixie_sync_accounts() {
    local u g group_args=0
    for u in "$@"; do
        if [[ $u == -- ]]; then group_args=1; continue; fi
        if [[ $group_args == 1 ]]; then
            trixie_copy_entry group "$u"; trixie_copy_entry gshadow "$u"
            continue
        fi
        getent passwd "$u" >/dev/null || continue
        g=$(id -gn "$u")
        trixie_copy_entry group "$g"; trixie_copy_entry gshadow "$g"
        trixie_copy_entry passwd "$u"; trixie_copy_entry shadow "$u"
    done
    # Slurm runs as `slurm` on both sides; Debian gives it a fixed uid, so they must agree.
    local host_uid root_uid
    host_uid=$(id -u slurm 2>/dev/null || true)
    root_uid=$(trixie_exec id -u slurm 2>/dev/null || true)
    [[ -z $host_uid || $host_uid == "$root_uid" ]] \
        || rl_die "user slurm has uid $host_uid on the host but $root_uid in $TRIXIE_ROOT"
}

trixie_munged_pid() {
    local pid
    pid=$(tr -dc 0-9 2>/dev/null <"$TRIXIE_ROOT$TRIXIE_MUNGED_PIDFILE" || true)
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == munged && $(readlink "/proc/$pid/root") == "$TRIXIE_ROOT" ]] \
        && echo "$pid"
    return 0
}

trixie_munge_works() {
    trixie_exec sh -c 'munge -n | unmunge' >/dev/null 2>&1
}

# The root's munged, with the host's key (copied, owned by the root's munge user).
trixie_start_munged() {
    local key=/etc/munge/munge.key
    [[ -s $key ]] || rl_die "$key missing: the host's munged must be set up first"
    if ! cmp -s "$key" "$TRIXIE_ROOT$key"; then
        install -m 0400 "$key" "$TRIXIE_ROOT$key"
        rl_info "copied the host's MUNGE key into the root"
        [[ -z $(trixie_munged_pid) ]] || trixie_stop_munged   # restart with the new key
    fi
    trixie_exec chown munge:munge /etc/munge "$key"
    trixie_exec install -d -m 0711 -o munge -g munge /var/lib/munge
    trixie_exec install -d -m 0700 -o munge -g munge /var/log/munge
    if [[ -n $(trixie_munged_pid) ]] && trixie_munge_works; then
        rl_info "munged (24.11 root) already running (pid $(trixie_munged_pid))"
        return 0
    fi
    rl_info "starting munged in the 24.11 root"
    bash -c "$CLEAN_EXEC" _ - chroot "$TRIXIE_ROOT" runuser -u munge -- /usr/sbin/munged \
        </dev/null >>"$TRIXIE_ROOT/var/log/munge/munged.start.log" 2>&1 || {
        tail -n 20 "$TRIXIE_ROOT/var/log/munge/munged.log" 2>/dev/null || true
        rl_die "munged failed to start in $TRIXIE_ROOT"
    }
    local i
    for ((i = 0; i < 25; i++)); do
        trixie_munge_works && break
        sleep 0.2
    done
    trixie_munge_works || { tail -n 20 "$TRIXIE_ROOT/var/log/munge/munged.log"; rl_die "munge -n | unmunge fails in $TRIXIE_ROOT"; }
    # A credential of the root's munged must decode on the host (the collector's side).
    trixie_exec munge -n | unmunge >/dev/null 2>&1 \
        || rl_die "the host's munged cannot decode the root's credentials (different keys?)"
    rl_info "munged (24.11 root) running (pid $(trixie_munged_pid)); credentials decode on the host"
}

trixie_stop_munged() {
    local pid i
    pid=$(trixie_munged_pid)
    [[ -n $pid ]] || return 0
    rl_info "stopping munged of the 24.11 root (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# The plugin against 24.11's <slurm/spank.h> (its plugin_version must match the running slurmd),
# in a target dir of its own so 22.05's build is not redone each time; the epilog and collector
# do not depend on Slurm's headers and are the host's builds (the root's glibc is newer).
TRIXIE_TARGET_DIR=target/slurm24.11   # the same as packaging/build-packages: one build
trixie_build_plugin() {
    rl_ensure_cargo
    rl_log "building the SPANK plugin against Slurm 24.11's headers ($TRIXIE_TARGET_DIR)"
    (cd "$RL_REPO_ROOT" && SLURM_INCLUDE_DIR=$TRIXIE_ROOT/usr/include CARGO_TARGET_DIR=$TRIXIE_TARGET_DIR \
        cargo build --release -p runledger-spank) || rl_die "cargo build of the 24.11 plugin failed"
}

# Install the 24.11 plugin and the host-built epilog, canary and collector (for users' queries)
# at the same paths inside the root. (trixie_install_file: a running slurmstepd may map the old plugin).
# trixie_install_file SRC DST: copy, then rename into place, so a slurmstepd that has the old
# plugin mapped keeps it (dpkg does the same on the host).
trixie_install_file() {
    local src=$1 dst=$2 tmp
    install -d -m 0755 "$(dirname "$dst")"
    tmp="$dst.new.$$"
    install -m 0755 "$src" "$tmp"
    mv -f "$tmp" "$dst"
}

trixie_install() {
    local rel=$RL_REPO_ROOT/target/release pair src dst
    for pair in "$RL_REPO_ROOT/$TRIXIE_TARGET_DIR/release/librunledger_spank.so:$PLUGIN" \
        "$rel/runledger-epilog:$EPILOG" "$rel/collector:$COLLECTOR" "$RL_REPO_ROOT/packaging/canary:$CANARY"; do
        src=${pair%%:*}
        dst=$TRIXIE_ROOT${pair#*:}
        [[ -f $src ]] || rl_die "build product missing: $src"
        if ! cmp -s "$src" "$dst"; then
            trixie_install_file "$src" "$dst"
            rl_info "installed $dst"
        fi
    done
}
