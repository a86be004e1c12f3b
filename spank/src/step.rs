//! Turning what slurmstepd knows about a step into [`StepStart`] / [`StepEnd`] records.
//!
//! Pure logic over plain data (gathered through [`Host`]) plus a few read-only looks at the file
//! system (`stat` for the executable, `/proc/<pid>` links): nothing here can fail a step. The
//! executable's paths are the user's choice and slurmstepd is root: they are looked at on a
//! helper thread within [`EXE_LOOKUP_BOUND`] (a hung mount costs the step that, not its start),
//! and a path counts only if the user may reach and execute it ([`user_may`]), so the record
//! never tells a user what root alone can see.

use crate::host::{Host, Rusage, SpankResult};
use runledger_record::env::EnvFilter;
use runledger_record::limits::limit_from_env;
use runledger_record::{modules, step_name, StepEnd, StepStart, TaskExit, Timestamp, STEP_BATCH};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest argument kept, in bytes; longer ones are cut and marked.
pub const MAX_ARG_BYTES: usize = 4096;
/// Most bytes of arguments kept per step; the rest is summarized in one marker argument.
pub const MAX_ARGV_BYTES: usize = 64 * 1024;
/// What `cluster` and `node` say when nothing better is known.
pub const UNKNOWN: &str = "unknown";

/// Slurm's NO_VAL (0xfffffffe) and its neighbours: "no value" markers, never a real id.
const NO_VAL_LIKE: u32 = 0xffff_fff0;

/// How long a step's start waits for its executable to be found; then it is recorded without.
pub const EXE_LOOKUP_BOUND: Duration = Duration::from_millis(200);

/// Who looks for the executable: the step's user, as the kernel would check their access by the
/// mode bits (owner, then group, then others). Supplementary groups are not known here: a path
/// reachable only through one is not reported, which errs on the side of saying less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub uid: u32,
    pub gid: u32,
}

impl Lookup {
    /// Whether the user may do `bit` (0o4 read, 0o1 execute/search) on a file of `meta`.
    fn may(self, meta: &fs::Metadata, bit: u32) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let class = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid {
            mode >> 3
        } else {
            mode
        };
        class & bit != 0
    }
}

/// Whether the user may reach `p` (search every directory above it) and execute it, a regular file.
pub fn user_may(who: Lookup, p: &Path) -> bool {
    let Ok(meta) = fs::metadata(p) else { return false };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 || !who.may(&meta, 0o1) {
        return false;
    }
    p.ancestors().skip(1).all(|dir| dir.as_os_str().is_empty() || fs::metadata(dir).is_ok_and(|m| who.may(&m, 0o1)))
}

/// [`resolve_exe`] for `who`, on a helper thread, giving up after `bound`: a lookup stuck on a
/// hung file system is left behind (it holds nothing of the step's) and the step starts.
pub fn resolve_exe_bounded(
    who: Lookup,
    argv0: &str,
    path: Option<&str>,
    cwd: Option<&Path>,
    bound: Duration,
) -> Option<String> {
    let (argv0, path, cwd) = (argv0.to_string(), path.map(str::to_string), cwd.map(Path::to_path_buf));
    bounded(bound, move || resolve_exe_for(who, &argv0, path.as_deref(), cwd.as_deref()))
}

/// `f()` on a helper thread, or None when it takes longer than `bound` (or cannot start).
fn bounded<T: Send + 'static>(bound: Duration, f: impl FnOnce() -> Option<T> + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new().name("runledger-exe".into()).stack_size(128 * 1024).spawn(move || {
        let _ = tx.send(f());
    });
    spawned.ok()?;
    rx.recv_timeout(bound).ok().flatten()
}

/// Everything the plugin reads about a step in slurm_spank_init_post_opt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepFacts {
    pub job_id: u32,
    pub step_id: u32,
    pub uid: u32,
    pub gid: u32,
    pub nnodes: u32,
    pub node_id: u32,
    pub local_tasks: u32,
    pub total_tasks: u32,
    pub ncpus: u32,
    pub array_job_id: Option<u32>,
    pub array_task_id: Option<u32>,
    pub argv: Vec<Vec<u8>>,
    /// The step environment, `NAME=value` entries.
    pub env: Vec<Vec<u8>>,
    /// From the passwd database (getpwuid_r).
    pub user_name: Option<String>,
    pub hostname: Option<String>,
    pub slurm_version: String,
    /// S_JOB_ALLOC_MEM (MiB on this node); None when 0 (no limit) or unreadable.
    pub alloc_mem_mb: Option<u64>,
}

impl StepFacts {
    /// Reads the facts from the host. An item that cannot be read is left at its default and
    /// reported in `problems`; the record is still written.
    pub fn gather(host: &dyn Host, problems: &mut Vec<String>) -> StepFacts {
        let mut get = |what: &str, r: SpankResult<u32>| -> Option<u32> {
            r.map_err(|e| problems.push(format!("cannot read {what}: {e}"))).ok()
        };
        let job_id = get("the job id", host.job_id()).unwrap_or(0);
        let step_id = get("the step id", host.step_id()).unwrap_or(0);
        let uid = get("the uid", host.uid());
        let gid = get("the gid", host.gid()).unwrap_or(0);
        let nnodes = get("the node count", host.nnodes()).unwrap_or(0);
        let node_id = get("the node id", host.node_id()).unwrap_or(0);
        let local_tasks = get("the local task count", host.local_task_count()).unwrap_or(0);
        let total_tasks = get("the total task count", host.total_task_count()).unwrap_or(0);
        let ncpus = get("the CPU count", host.ncpus().map(u32::from)).unwrap_or(0);
        // Outside arrays S_JOB_ARRAY_ID is 0 (batch step) or the job id itself (srun steps, seen
        // on 22.05) and S_JOB_ARRAY_TASK_ID is NO_VAL: only a real task id makes an array job.
        let array_job_id = get("the array job id", host.array_job_id()).filter(|&id| id != 0);
        let array_task_id = get("the array task id", host.array_task_id()).filter(|&t| t < NO_VAL_LIKE);
        let (array_job_id, array_task_id) = match (array_job_id, array_task_id) {
            (Some(j), Some(t)) => (Some(j), Some(t)),
            _ => (None, None),
        };
        let argv = host.argv().unwrap_or_else(|e| {
            problems.push(format!("cannot read the step's argv: {e}"));
            Vec::new()
        });
        let env = host.env().unwrap_or_else(|e| {
            problems.push(format!("cannot read the step's environment: {e}"));
            Vec::new()
        });
        let slurm_version = host.slurm_version().unwrap_or_else(|e| {
            problems.push(format!("cannot read the Slurm version: {e}"));
            String::new()
        });
        // 0 is "no memory limit" (memory not a consumable resource); NO_VAL64 and its
        // neighbours are Slurm's "not set".
        let alloc_mem_mb = host
            .job_alloc_mem()
            .map_err(|e| problems.push(format!("cannot read the job's memory: {e}")))
            .ok()
            .filter(|&m| m != 0 && m < 0xffff_ffff_ffff_fff0);
        StepFacts {
            job_id,
            step_id,
            uid: uid.unwrap_or(u32::MAX),
            gid,
            nnodes,
            node_id,
            local_tasks,
            total_tasks,
            ncpus,
            array_job_id,
            array_task_id,
            argv,
            env,
            user_name: uid.and_then(|u| host.user_name(u)),
            hostname: host.hostname(),
            slurm_version,
            alloc_mem_mb,
        }
    }
}

/// First value of `name` in `NAME=value` entries (what getenv(3) would return).
pub fn env_get<'a>(env: &'a [Vec<u8>], name: &str) -> Option<&'a [u8]> {
    env.iter().find_map(|e| e.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
}

/// `env_get` as text, `None` when unset or empty.
pub fn env_str(env: &[Vec<u8>], name: &str) -> Option<String> {
    env_get(env, name).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The node's Slurm name. slurmstepd's environment does not say it: an srun step carries the
/// `SLURMD_NODENAME` of the node srun ran on (the batch host, for every node of the step), a
/// batch step none, and several slurmd on one host share its host name. What does say it is the
/// node's index in the step (S_JOB_NODEID) in the step's node list (`SLURM_STEP_NODELIST`, set
/// by srun for the step it launches; the batch step runs on the job's first node). Failing
/// that, `SLURMD_NODENAME`, then the short host name.
pub fn node_name(env: &[Vec<u8>], step_id: u32, node_id: u32, hostname: Option<&str>) -> String {
    let list = if step_id == STEP_BATCH { "SLURM_JOB_NODELIST" } else { "SLURM_STEP_NODELIST" };
    let from_list = env_str(env, list).and_then(|l| {
        let nodes = runledger_record::hostlist::expand(&l);
        let at = if step_id == STEP_BATCH { 0 } else { usize::try_from(node_id).ok()? };
        nodes.into_iter().nth(at)
    });
    from_list
        .or_else(|| env_str(env, "SLURMD_NODENAME"))
        .or_else(|| hostname.and_then(|h| h.split('.').next()).filter(|h| !h.is_empty()).map(str::to_string))
        .unwrap_or_else(|| UNKNOWN.into())
}

pub fn cluster_name(env: &[Vec<u8>]) -> String {
    env_str(env, "SLURM_CLUSTER_NAME").unwrap_or_else(|| UNKNOWN.into())
}

/// A first guess at the directory the step's tasks start in, before they exist: `PWD`, else
/// `SLURM_SUBMIT_DIR` (absolute paths only). It is the submitting shell's directory, wrong under
/// `--chdir` (seen on 22.05), so task_post_fork corrects it from `/proc/<task 0>/cwd`;
/// slurmstepd's own cwd (the SlurmdLogFile's directory) is never the step's.
pub fn cwd_from_env(env: &[Vec<u8>]) -> Option<String> {
    ["PWD", "SLURM_SUBMIT_DIR"].iter().filter_map(|n| env_str(env, n)).find(|p| p.starts_with('/'))
}

/// [`resolve_exe_for`] as root sees it (the tests' view of the search itself).
#[cfg(test)]
fn resolve_exe(argv0: &str, path: Option<&str>, cwd: Option<&Path>) -> Option<String> {
    resolve_exe_for(Lookup { uid: 0, gid: 0 }, argv0, path, cwd)
}

/// Where `argv0` would be found by `who` ([`user_may`]): as given when it holds a `/` (relative
/// to `cwd`), else the first executable regular file of that name on `path` (empty or relative
/// entries are relative to `cwd`). Only looks (`stat`), never executes.
fn resolve_exe_for(who: Lookup, argv0: &str, path: Option<&str>, cwd: Option<&Path>) -> Option<String> {
    let is_executable = |p: &Path| user_may(who, p);
    if argv0.is_empty() {
        return None;
    }
    let under_cwd = |p: &str| -> Option<PathBuf> {
        if p.starts_with('/') {
            Some(PathBuf::from(p))
        } else {
            cwd.map(|c| c.join(p.strip_prefix("./").unwrap_or(p)))
        }
    };
    if argv0.contains('/') {
        return under_cwd(argv0).filter(|p| is_executable(p)).map(|p| p.to_string_lossy().into_owned());
    }
    path?
        .split(':')
        .filter_map(|dir| if dir.is_empty() { cwd.map(Path::to_path_buf) } else { under_cwd(dir) })
        .map(|dir| dir.join(argv0))
        .find(|p| is_executable(p))
        .map(|p| p.to_string_lossy().into_owned())
}

/// The arguments as text, bounded like the environment is: a hostile command line cannot fill
/// the spool. What is dropped is counted in a last marker argument.
pub fn bounded_argv(argv: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for (i, arg) in argv.iter().enumerate() {
        let mut s = String::from_utf8_lossy(&arg[..arg.len().min(MAX_ARG_BYTES)]).into_owned();
        if arg.len() > MAX_ARG_BYTES {
            s.push_str(runledger_record::env::TRUNCATED);
        }
        if total + s.len() > MAX_ARGV_BYTES {
            out.push(format!("…<{} more arguments dropped>", argv.len() - i));
            break;
        }
        total += s.len();
        out.push(s);
    }
    out
}

/// What finding a step's executable needs: who looks, for what, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExeQuery {
    pub who: Lookup,
    pub argv0: String,
    pub path: Option<String>,
    pub cwd: Option<PathBuf>,
}

impl ExeQuery {
    /// The search itself, unbounded: run it where a hung mount stalls nothing of the step's.
    pub fn resolve(&self) -> Option<String> {
        resolve_exe_for(self.who, &self.argv0, self.path.as_deref(), self.cwd.as_deref())
    }
}

/// The executable search for the step `f` whose start record (without `exe`) is `start`; None
/// when there is no argv.
pub fn exe_query(f: &StepFacts, start: &StepStart) -> Option<ExeQuery> {
    // An unknown uid (u32::MAX) is nobody's: only what everyone may run is found.
    let who = Lookup { uid: f.uid, gid: if f.uid == u32::MAX { u32::MAX } else { f.gid } };
    Some(ExeQuery {
        who,
        argv0: start.argv.first()?.clone(),
        path: env_str(&f.env, "PATH"),
        cwd: start.cwd.as_deref().map(PathBuf::from),
    })
}

/// The step's start record, its executable found within [`EXE_LOOKUP_BOUND`] on a helper thread.
pub fn build_start(f: &StepFacts, filter: &EnvFilter, tags: &BTreeMap<String, String>, now: Timestamp) -> StepStart {
    let mut start = build_start_without_exe(f, filter, tags, now);
    start.exe = exe_query(f, &start)
        .and_then(|q| resolve_exe_bounded(q.who, &q.argv0, q.path.as_deref(), q.cwd.as_deref(), EXE_LOOKUP_BOUND));
    start
}

/// The step's start record with `exe` left out, for the caller to find ([`exe_query`]) where it
/// costs the step's start nothing.
pub fn build_start_without_exe(
    f: &StepFacts,
    filter: &EnvFilter,
    tags: &BTreeMap<String, String>,
    now: Timestamp,
) -> StepStart {
    let env = &f.env;
    let argv = bounded_argv(&f.argv);
    let cwd = cwd_from_env(env);
    let exe = None;
    let mut kept_env = filter.apply(env.iter().map(Vec::as_slice));
    let mut mods = modules::parse_loaded(
        env_str(env, "LOADEDMODULES").as_deref(),
        env_str(env, "_LMFILES_").as_deref(),
        env_str(env, "MODULEPATH").as_deref(),
    );
    modules::count_dropped(&mut kept_env, modules::bound(&mut mods));
    StepStart {
        cluster: cluster_name(env),
        job_id: f.job_id,
        step_id: f.step_id,
        node: node_name(env, f.step_id, f.node_id, f.hostname.as_deref()),
        node_id: f.node_id,
        array_job_id: f.array_job_id,
        array_task_id: f.array_task_id,
        uid: f.uid,
        gid: f.gid,
        user: f
            .user_name
            .clone()
            .or_else(|| env_str(env, "SLURM_JOB_USER"))
            .or_else(|| env_str(env, "USER"))
            .unwrap_or_default(),
        // slurmstepd leaves the batch step's node and total task counts at 0 (seen on 22.05): the
        // batch script is one task on this one node.
        nnodes: if f.nnodes == 0 && f.step_id == STEP_BATCH { 1 } else { f.nnodes },
        local_tasks: f.local_tasks,
        total_tasks: if f.total_tasks == 0 && f.step_id == STEP_BATCH { f.local_tasks.max(1) } else { f.total_tasks },
        ncpus: f.ncpus,
        argv,
        exe,
        cwd,
        account: env_str(env, "SLURM_JOB_ACCOUNT"),
        partition: env_str(env, "SLURM_JOB_PARTITION"),
        qos: env_str(env, "SLURM_JOB_QOS"),
        job_name: env_str(env, "SLURM_JOB_NAME"),
        env: kept_env,
        modules: mods,
        tags: tags.clone(),
        start: now,
        slurm_version: f.slurm_version.clone(),
        alloc_mem_mb: f.alloc_mem_mb,
        time_limit: limit_from_env(
            env_str(env, "SLURM_JOB_START_TIME").as_deref(),
            env_str(env, "SLURM_JOB_END_TIME").as_deref(),
        ),
        // Set by the plugin once it has made the directory (python.rs).
        python_dir: None,
    }
}

/// What a step's end adds to its start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutcome {
    pub tasks: Vec<TaskExit>,
    pub rusage: Option<Rusage>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// The step's end record.
pub fn build_end(start: &StepStart, outcome: &StepOutcome, now: Timestamp) -> StepEnd {
    let ru = outcome.rusage.unwrap_or_default();
    let mut tasks = outcome.tasks.clone();
    tasks.sort_by_key(|t| t.global_rank);
    StepEnd {
        cluster: start.cluster.clone(),
        job_id: start.job_id,
        step_id: start.step_id,
        node: start.node.clone(),
        start: start.start,
        end: now.max(start.start),
        tasks,
        cpu_user_s: ru.user_s,
        cpu_sys_s: ru.sys_s,
        max_rss_kib: ru.max_rss_kib,
        stdout: outcome.stdout.clone(),
        stderr: outcome.stderr.clone(),
        series: None,
    }
}

/// `job.step` as the log shows it (`12.batch`, `12.0`).
pub fn step_label(job_id: u32, step_id: u32) -> String {
    format!("{job_id}.{}", step_name(step_id))
}

/// The file a process has open as descriptor `fd`, when that is a regular file (not a pipe,
/// socket, tty or /dev/null, and not deleted).
pub fn open_file_path(pid: i32, fd: i32) -> Option<String> {
    let link = Path::new("/proc").join(pid.to_string()).join("fd").join(fd.to_string());
    let target = fs::read_link(&link).ok()?;
    let target = target.to_str()?;
    if !target.starts_with('/') || target.ends_with(" (deleted)") {
        return None;
    }
    // metadata() follows the /proc link to the open file itself, whatever its name now.
    fs::metadata(&link).ok().filter(|m| m.is_file())?;
    Some(target.to_string())
}

/// How long task_post_fork waits for the batch task to finish setting up its stdio.
pub const STDIO_WAIT: Duration = Duration::from_millis(250);

/// Waits (polling `/proc/<pid>/syscall`) until the process is blocked in read(2), which is where
/// a forked slurmstepd task waits for permission to exec once its stdio is in place. False on
/// timeout or when the process is gone.
pub fn wait_until_blocked_in_read(pid: i32, timeout: Duration) -> bool {
    let path = Path::new("/proc").join(pid.to_string()).join("syscall");
    let deadline = Instant::now() + timeout;
    loop {
        match fs::read_to_string(&path) {
            Ok(s) if s.split_whitespace().next().and_then(|n| n.parse::<i64>().ok()) == Some(libc::SYS_read) => {
                return true
            }
            Ok(_) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A process's current directory.
pub fn proc_cwd(pid: i32) -> Option<String> {
    let target = fs::read_link(Path::new("/proc").join(pid.to_string()).join("cwd")).ok()?;
    target.to_str().filter(|t| t.starts_with('/') && !t.ends_with(" (deleted)")).map(str::to_string)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runledger_record::env::REDACTED;
    use runledger_record::{LimitSource, TimeLimit};
    use std::os::fd::AsRawFd;

    pub fn env(entries: &[&str]) -> Vec<Vec<u8>> {
        entries.iter().map(|e| e.as_bytes().to_vec()).collect()
    }

    fn exec_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn env_lookup_takes_the_first_exact_name() {
        let e = env(&["PATHX=no", "PATH=/bin", "PATH=/second", "EMPTY=", "NOEQ"]);
        assert_eq!(env_get(&e, "PATH"), Some(b"/bin".as_slice()));
        assert_eq!(env_get(&e, "EMPTY"), Some(b"".as_slice()));
        assert_eq!(env_str(&e, "EMPTY"), None);
        assert_eq!(env_get(&e, "NOEQ"), None);
        assert_eq!(env_get(&e, "PAT"), None);
    }

    #[test]
    fn path_resolution() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        exec_file(&a, "tool", 0o644); // not executable: skipped
        let tool_b = exec_file(&b, "tool", 0o755);
        fs::create_dir(a.join("dirtool")).unwrap(); // a directory is not a program
        let path = format!("/nonexistent:{}:{}", a.display(), b.display());

        assert_eq!(resolve_exe("tool", Some(&path), None), Some(tool_b.display().to_string()));
        assert_eq!(resolve_exe("dirtool", Some(&path), None), None);
        assert_eq!(resolve_exe("missing", Some(&path), None), None);
        assert_eq!(resolve_exe("tool", None, None), None, "no PATH, no search");
        assert_eq!(resolve_exe("", Some(&path), None), None);
        // With a slash: taken as given, relative to the step's cwd.
        assert_eq!(resolve_exe(&tool_b.display().to_string(), None, None), Some(tool_b.display().to_string()));
        assert_eq!(resolve_exe("./b/tool", None, Some(d.path())), Some(tool_b.display().to_string()));
        assert_eq!(resolve_exe("b/tool", None, None), None, "relative without a cwd");
        assert_eq!(resolve_exe("a/tool", None, Some(d.path())), None, "not executable");
        // Empty and relative PATH entries are relative to the cwd.
        assert_eq!(resolve_exe("tool", Some(":"), Some(&b)), Some(b.join("tool").display().to_string()));
        assert_eq!(resolve_exe("tool", Some("b"), Some(d.path())), Some(tool_b.display().to_string()));
        assert_eq!(resolve_exe("sh", Some("/usr/bin:/bin"), None).as_deref().map(|p| p.ends_with("/sh")), Some(true));
    }

    #[test]
    fn argv_is_bounded() {
        let argv = vec![b"prog".to_vec(), vec![b'x'; 10_000], b"\xffbin".to_vec()];
        let a = bounded_argv(&argv);
        assert_eq!(a.len(), 3);
        assert!(a[1].len() < MAX_ARG_BYTES + 32 && a[1].ends_with(runledger_record::env::TRUNCATED));
        assert_eq!(a[2], "\u{fffd}bin");
        let many: Vec<Vec<u8>> = (0..100_000).map(|i| format!("arg{i}").into_bytes()).collect();
        let a = bounded_argv(&many);
        assert!(a.iter().map(String::len).sum::<usize>() <= MAX_ARGV_BYTES + 64);
        let last = a.last().unwrap();
        assert!(last.contains("more arguments dropped"), "{last}");
        let dropped: usize = last.trim_start_matches("…<").split(' ').next().unwrap().parse().unwrap();
        assert_eq!(dropped + a.len() - 1, 100_000);
    }

    pub fn facts(env_entries: &[&str]) -> StepFacts {
        StepFacts {
            job_id: 42,
            step_id: 0,
            uid: 1000,
            gid: 1000,
            nnodes: 1,
            node_id: 0,
            local_tasks: 2,
            total_tasks: 2,
            ncpus: 4,
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"true".to_vec()],
            env: env(env_entries),
            user_name: Some("rltest".into()),
            hostname: Some("node1.example.org".into()),
            slurm_version: "22.05.8".into(),
            ..Default::default()
        }
    }

    #[test]
    fn start_from_a_synthetic_step() {
        let f = facts(&[
            "SLURM_CLUSTER_NAME=testcl",
            "SLURMD_NODENAME=n01",
            "PATH=/nonexistent:/usr/bin:/bin",
            "PWD=/home/rltest/work",
            "SLURM_JOB_ACCOUNT=physics",
            "SLURM_JOB_PARTITION=debug",
            "SLURM_JOB_QOS=normal",
            "SLURM_JOB_NAME=myjob",
            "LOADEDMODULES=gcc/12.2.0:openmpi/4.1.4",
            "_LMFILES_=/opt/mf/gcc/12.2.0.lua:/opt/mf/openmpi/4.1.4.lua",
            "MODULEPATH=/opt/mf",
            "API_TOKEN=hunter2",
            "BASH_FUNC_module%%=() { eval }",
            "OMP_NUM_THREADS=4",
        ]);
        let tags = BTreeMap::from([("exp".to_string(), "alpha".to_string())]);
        let s = build_start(&f, &EnvFilter::default(), &tags, 1_700_000_000);
        assert_eq!((s.cluster.as_str(), s.node.as_str(), s.job_id, s.step_id), ("testcl", "n01", 42, 0));
        assert_eq!((s.uid, s.gid, s.user.as_str()), (1000, 1000, "rltest"));
        assert_eq!((s.nnodes, s.node_id, s.local_tasks, s.total_tasks, s.ncpus), (1, 0, 2, 2, 4));
        assert_eq!(s.argv, ["sh", "-c", "true"]);
        assert!(s.exe.as_deref().is_some_and(|e| e.ends_with("/sh")), "{:?}", s.exe);
        assert_eq!(s.cwd.as_deref(), Some("/home/rltest/work"));
        assert_eq!(s.account.as_deref(), Some("physics"));
        assert_eq!(s.partition.as_deref(), Some("debug"));
        assert_eq!(s.qos.as_deref(), Some("normal"));
        assert_eq!(s.job_name.as_deref(), Some("myjob"));
        assert_eq!(s.env["API_TOKEN"], REDACTED);
        assert_eq!(s.env["OMP_NUM_THREADS"], "4");
        assert!(!s.env.contains_key("BASH_FUNC_module%%"));
        assert_eq!(s.modules.iter().map(|m| m.full_name()).collect::<Vec<_>>(), ["gcc/12.2.0", "openmpi/4.1.4"]);
        assert_eq!(s.modules[0].file.as_deref(), Some("/opt/mf/gcc/12.2.0.lua"));
        assert_eq!(s.tags, tags);
        assert_eq!((s.start, s.slurm_version.as_str()), (1_700_000_000, "22.05.8"));
        assert_eq!((s.array_job_id, s.array_task_id), (None, None));
    }

    #[test]
    fn memory_and_time_limit_asked_for_are_recorded() {
        // 23.02+: the step's environment has the start and the projected end.
        let f = StepFacts {
            alloc_mem_mb: Some(4096),
            ..facts(&["SLURM_JOB_START_TIME=1700000000", "SLURM_JOB_END_TIME=1700000600"])
        };
        let s = build_start(&f, &EnvFilter::default(), &BTreeMap::new(), 1_700_000_001);
        assert_eq!(s.alloc_mem_mb, Some(4096));
        assert_eq!(s.time_limit, Some(TimeLimit { seconds: Some(600), source: LimitSource::Environment }));
        // 22.05: neither variable; the epilog asks slurmctld instead.
        let s = build_start(&facts(&[]), &EnvFilter::default(), &BTreeMap::new(), 1);
        assert_eq!((s.alloc_mem_mb, s.time_limit), (None, None));
    }

    #[test]
    fn node_name_from_the_step_node_list_not_the_inherited_nodename() {
        // Step 0 of a 3-node job, seen on its third node: srun passed the batch host's
        // SLURMD_NODENAME along, the host name is shared by the three slurmd.
        let e = env(&["SLURMD_NODENAME=n1", "SLURM_STEP_NODELIST=n[1-3]", "SLURM_JOB_NODELIST=n[1-3]"]);
        assert_eq!(node_name(&e, 0, 2, Some("vm")), "n3");
        let relative = env(&["SLURMD_NODENAME=n1", "SLURM_STEP_NODELIST=n[2-3]"]);
        assert_eq!(node_name(&relative, 1, 0, Some("vm")), "n2", "srun -r 1: the step's own list");
        // The batch step has no SLURMD_NODENAME and no step list: the job's first node.
        assert_eq!(node_name(&env(&["SLURM_JOB_NODELIST=n[1-3]"]), STEP_BATCH, 0, Some("vm")), "n1");
        // Without a list (or with an index past it): SLURMD_NODENAME, then the host name.
        assert_eq!(node_name(&env(&["SLURMD_NODENAME=a7"]), 0, 0, Some("vm")), "a7");
        assert_eq!(node_name(&env(&["SLURM_STEP_NODELIST=n1", "SLURMD_NODENAME=a7"]), 0, 4, None), "a7");
        assert_eq!(node_name(&env(&[]), 0, 0, Some("vm.example.org")), "vm");
        assert_eq!(node_name(&env(&[]), 0, 0, None), UNKNOWN);
    }

    #[test]
    fn thousands_of_modules_are_capped_and_counted() {
        let loaded: Vec<String> = (0..6000).map(|i| format!("mod{i}/1.{i}")).collect();
        let f = facts(&[&format!("LOADEDMODULES={}", loaded.join(":"))]);
        let s = build_start(&f, &EnvFilter::default(), &BTreeMap::new(), 5);
        assert_eq!(s.modules.len(), modules::MAX_MODULES);
        assert_eq!(s.env[modules::DROPPED_VAR], (6000 - modules::MAX_MODULES).to_string());
        let few = build_start(&facts(&["LOADEDMODULES=gcc/12"]), &EnvFilter::default(), &BTreeMap::new(), 5);
        assert!(!few.env.contains_key(modules::DROPPED_VAR), "nothing dropped, no marker");
    }

    #[test]
    fn start_fallbacks() {
        let mut f = facts(&["SLURM_JOB_USER=fromslurm", "USER=fromshell", "SLURM_SUBMIT_DIR=/sub", "PWD=relative"]);
        f.user_name = None;
        let s = build_start(&f, &EnvFilter::default(), &BTreeMap::new(), 5);
        assert_eq!(s.cluster, UNKNOWN);
        assert_eq!(s.node, "node1", "short host name when SLURMD_NODENAME is unset");
        assert_eq!(s.user, "fromslurm");
        assert_eq!(s.cwd.as_deref(), Some("/sub"), "a relative PWD is not trusted");
        assert_eq!(s.exe, None, "no PATH in the step");
        assert!(s.modules.is_empty() && s.tags.is_empty());

        let batch = StepFacts { step_id: STEP_BATCH, nnodes: 0, local_tasks: 1, total_tasks: 0, ..facts(&[]) };
        let s = build_start(&batch, &EnvFilter::default(), &BTreeMap::new(), 5);
        assert_eq!((s.nnodes, s.local_tasks, s.total_tasks), (1, 1, 1), "batch step counts filled in");

        f.env = env(&["USER=fromshell"]);
        f.hostname = None;
        f.argv.clear();
        let s = build_start(&f, &EnvFilter::from_lists(Some(""), None), &BTreeMap::new(), 5);
        assert_eq!((s.user.as_str(), s.node.as_str()), ("fromshell", UNKNOWN));
        assert!(s.argv.is_empty() && s.exe.is_none() && s.env.is_empty());
    }

    #[test]
    fn hostile_environment_is_bounded() {
        let mut entries: Vec<Vec<u8>> = (0..10_000).map(|i| format!("V{i}=value").into_bytes()).collect();
        entries.push([b"HUGE=".as_slice(), &vec![b'h'; 1 << 20]].concat());
        entries.push(b"BIN=\xff\xfe\x00x".to_vec());
        entries.push(b"PATH=\xff:/usr/bin".to_vec());
        let f = StepFacts { env: entries, ..facts(&[]) };
        let s = build_start(&f, &EnvFilter::default(), &BTreeMap::new(), 5);
        let json = serde_json_len(&s);
        assert!(json < 1 << 20, "record stays small: {json} bytes");
        assert!(s.exe.is_some(), "a non-UTF-8 PATH entry does not stop the search");
    }

    fn serde_json_len(s: &StepStart) -> usize {
        // runledger-record serializes with serde_json; its Item is what the spool holds.
        runledger_record::Batch::new("n", vec![runledger_record::Item::StepStart(s.clone())]).to_json().len()
    }

    #[test]
    fn end_record_from_start_and_outcome() {
        let start = build_start(
            &facts(&["SLURM_CLUSTER_NAME=c", "SLURMD_NODENAME=n"]),
            &EnvFilter::default(),
            &BTreeMap::new(),
            100,
        );
        let task = |rank: u32, raw: i32| TaskExit::from_wait(rank, rank, raw, 150);
        let outcome = StepOutcome {
            tasks: vec![task(1, 11), task(0, 0)],
            rusage: Some(Rusage { user_s: 1.5, sys_s: 0.25, max_rss_kib: 2048 }),
            stdout: Some("/home/u/slurm-42.out".into()),
            stderr: None,
        };
        let e = build_end(&start, &outcome, 160);
        assert_eq!((e.cluster.as_str(), e.node.as_str(), e.job_id, e.step_id), ("c", "n", 42, 0));
        assert_eq!((e.start, e.end), (100, 160));
        assert_eq!(e.tasks.iter().map(|t| t.global_rank).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(e.tasks[1].status.signal, 11);
        assert_eq!((e.cpu_user_s, e.cpu_sys_s, e.max_rss_kib), (1.5, 0.25, 2048));
        assert_eq!(e.stdout.as_deref(), Some("/home/u/slurm-42.out"));
        // A clock step backwards never makes a negative duration.
        assert_eq!(build_end(&start, &StepOutcome::default(), 90).end, 100);
        assert_eq!(step_label(42, STEP_BATCH), "42.batch");
    }

    #[test]
    fn waits_for_a_child_blocked_in_read() {
        use std::process::{Command, Stdio};
        let mut reader = Command::new("sh").args(["-c", "read x"]).stdin(Stdio::piped()).spawn().unwrap();
        assert!(wait_until_blocked_in_read(reader.id() as i32, Duration::from_secs(5)));
        drop(reader.stdin.take());
        reader.wait().unwrap();
        let mut sleeper = Command::new("sleep").arg("5").spawn().unwrap();
        let t = Instant::now();
        assert!(!wait_until_blocked_in_read(sleeper.id() as i32, Duration::from_millis(50)));
        assert!(t.elapsed() < Duration::from_secs(2));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!wait_until_blocked_in_read(i32::MAX, Duration::from_secs(5)), "no such process: no wait");
    }

    #[test]
    fn open_files_of_a_process() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.txt");
        let f = fs::File::create(&path).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(open_file_path(me, f.as_raw_fd()), Some(path.display().to_string()));
        let null = fs::File::open("/dev/null").unwrap();
        assert_eq!(open_file_path(me, null.as_raw_fd()), None, "not a regular file");
        assert_eq!(open_file_path(me, 987_654), None);
        fs::remove_file(&path).unwrap();
        assert_eq!(open_file_path(me, f.as_raw_fd()), None, "deleted");
        assert_eq!(proc_cwd(me), std::env::current_dir().ok().map(|p| p.display().to_string()));
        assert_eq!(proc_cwd(i32::MAX), None);
    }

    /// A path the user could not reach or run is not recorded, though root can see it: the
    /// record would otherwise tell the user what is in a directory closed to them.
    #[test]
    fn the_executable_is_found_as_the_user_would() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let me = fs::metadata(d.path()).unwrap();
        let (mine, other) = (Lookup { uid: me.uid(), gid: me.gid() }, Lookup { uid: me.uid() + 1, gid: me.gid() + 1 });
        let closed = d.path().join("closed");
        fs::create_dir(&closed).unwrap();
        let tool = exec_file(&closed, "tool", 0o755);
        let path = closed.display().to_string();
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(resolve_exe_for(mine, "tool", Some(&path), None), Some(tool.display().to_string()));
        assert_eq!(resolve_exe_for(other, "tool", Some(&path), None), None, "a directory closed to the user");
        assert_eq!(resolve_exe_for(other, &tool.display().to_string(), None, None), None, "nor by its full path");
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(resolve_exe_for(other, "tool", Some(&path), None), Some(tool.display().to_string()));
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(resolve_exe_for(other, "tool", Some(&path), None), None, "executable by owner and group only");
        let group = Lookup { uid: me.uid() + 1, gid: me.gid() };
        assert_eq!(resolve_exe_for(group, "tool", Some(&path), None), Some(tool.display().to_string()));
        assert!(user_may(other, Path::new("/bin/sh")), "what everyone may run is found for anyone");
    }

    /// A lookup that does not finish in time is given up: the step starts without it.
    #[test]
    fn a_stuck_lookup_is_given_up() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let got = bounded(Duration::from_millis(50), move || {
            let _ = stuck.recv(); // blocks until the test has its answer, like a hung mount
            Some("/found/too/late".to_string())
        });
        assert_eq!(got, None);
        drop(release);
        let fast = bounded(Duration::from_secs(60), || Some(1));
        assert_eq!(fast, Some(1));
        let who = Lookup { uid: 0, gid: 0 };
        assert!(resolve_exe_bounded(who, "sh", Some("/usr/bin:/bin"), None, Duration::from_secs(60)).is_some());
    }
}
