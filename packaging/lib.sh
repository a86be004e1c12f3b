# shellcheck shell=bash
# Common helpers for the runledger packaging scripts (local-cluster, run-tests).
# Sourced, never executed: callers set `set -euo pipefail` themselves.

# Debian packages the local cluster and the test suite need. The Rust crates
# need libmunge-dev/libslurm-dev/libclang-dev/clang/pkg-config to build (FFI
# bindings); the rest is the cluster itself and what the e2e jobs run.
RL_PACKAGES=(
    slurmctld slurmd slurm-client
    munge libmunge-dev
    libslurm-dev libclang-dev clang pkg-config
    lmod lammps openmpi-bin
    sqlite3
    libpmix-dev   # Slurm's mpi/pmix dlopens libpmix.so from it: `srun --mpi=pmix`
    procps   # pgrep; not in minimal images
    fonts-dejavu-core   # the font of `collector query errors|efficiency --plot` PNG charts
    chromium   # headless: collector/tests/report_browser.rs opens `collector report --html`'s page
    python3 python3-venv python3-numpy python3-scipy   # the Python hook's tests and bench/python-hook
    exim4-daemon-light   # the local MTA (local delivery to /var/mail) runledger-mail sends through: tests/e2e_mail.rs
    prometheus   # promtool: collector/tests/metrics.rs checks collector serve's /metrics with it
)

# Repository root: packaging/ lives directly below it.
# shellcheck disable=SC2034 # used by the scripts that source this file
RL_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Daemons, useradd & co live in sbin; CI's PATH may lack it.
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

rl_log()  { printf '==> %s\n' "$*"; }
rl_info() { printf '    %s\n' "$*"; }
rl_warn() { printf 'WARNING: %s\n' "$*" >&2; }
rl_die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

rl_require_root() {
    [[ $(id -u) -eq 0 ]] || rl_die "must run as root (it installs packages and starts daemons)"
}

# Install whatever of the given packages (default: RL_PACKAGES) is missing.
# apt is only touched when something is missing, so repeated runs are fast and
# work offline.
rl_ensure_packages() {
    local pkgs=("$@") missing=() p status
    [[ ${#pkgs[@]} -gt 0 ]] || pkgs=("${RL_PACKAGES[@]}")
    for p in "${pkgs[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        rl_info "packages: all ${#pkgs[@]} present"
        return 0
    fi
    rl_log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || rl_die "apt-get update failed"
    # Daemons must not be auto-started by the package scripts: this script
    # starts them itself with its own configuration (and there is usually no
    # init system in containers anyway). policy-rc.d exit 101 = "not allowed".
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    local rc=0
    apt-get install -y -q "${missing[@]}" || rc=$?
    [[ $created_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || rl_die "apt-get install failed for: ${missing[*]}"
}

# cargo comes from rustup in /root/.cargo/bin, which non-login shells (CI)
# may not have on PATH.
rl_ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:/root/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || rl_die "cargo not found (install Rust via rustup; expected in /root/.cargo/bin)"
}

# Print the last lines of each existing log file, with a header. Used when
# something fails so CI output shows why.
rl_dump_logs() {
    local lines=${RL_LOG_LINES:-60} f
    # slurmd-nI.log: the nodes of a multi-node local cluster.
    for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmd-*.log \
             /var/log/runledger/collector.log /var/log/munge/munged.log \
             /var/log/syslog /var/log/messages; do
        if [[ -s $f ]]; then
            printf '\n----- last %s lines of %s -----\n' "$lines" "$f"
            tail -n "$lines" "$f" || true
        fi
    done
    printf '%s\n' "----- end of logs -----"
}

# Write stdin to FILE as USER (rl_write_as USER FILE), creating its directory as USER. Root must
# never write, create or chown anything in a directory a user owns: the user could have planted a
# link there that leads root's write (or chown) to /etc/shadow.
rl_write_as() {
    local user=$1 file=$2
    runuser -u "$user" -- mkdir -p -- "$(dirname -- "$file")"
    # shellcheck disable=SC2016 # $1 is expanded by the user's shell
    runuser -u "$user" -- sh -c 'cat > "$1"' sh "$file"
}
