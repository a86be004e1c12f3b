//! Harness for the end-to-end tests: drives the real local cluster that
//! `packaging/local-cluster up` starts (munged, slurmctld, slurmd, `collector serve`, the plugin
//! in plugstack.conf, the epilog in slurm.conf), submits jobs as the unprivileged test user with
//! real `sbatch`, and reads what the ledger recorded through `collector query … --json`.
//!
//! Nothing here imitates Slurm: a test either talks to the running cluster or fails saying how
//! to start it. Slurm commands go through `local-cluster run` (the script named by
//! `RUNLEDGER_LOCAL_CLUSTER`, else this checkout's), which runs them on the host for Slurm 22.05
//! and inside the trixie root for 24.11, so the same tests run on both releases.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The unprivileged users `local-cluster up` creates.
pub const USER: &str = "rltest";
pub const USER2: &str = "rltest2";

/// The installed collector, the same binary the cluster runs: found on PATH, where the
/// runledger-collector package put it.
pub const COLLECTOR: &str = "collector";

const PLUGSTACK: &str = "/etc/slurm/plugstack.conf";

/// plugstack.conf as `edit` makes it, until dropped, which puts the file back whatever happened.
/// srun and sbatch re-read it for every step, and the file is shared: nothing else may use the
/// cluster meanwhile.
struct PlugstackEdit {
    original: String,
}

impl PlugstackEdit {
    fn new(edit: impl FnOnce(&str) -> String) -> PlugstackEdit {
        let original = std::fs::read_to_string(PLUGSTACK).unwrap();
        std::fs::write(PLUGSTACK, edit(&original)).unwrap();
        PlugstackEdit { original }
    }
}

impl Drop for PlugstackEdit {
    fn drop(&mut self) {
        let _ = std::fs::write(PLUGSTACK, &self.original);
    }
}

/// The plugin's spool (plugstack.conf's `spool=`) somewhere else until dropped ([`PlugstackEdit`]);
/// the epilog keeps reading the real spool.
pub struct SpoolElsewhere {
    _edit: PlugstackEdit,
}

impl SpoolElsewhere {
    pub fn new(spool: &str) -> SpoolElsewhere {
        SpoolElsewhere {
            _edit: PlugstackEdit::new(|original| {
                assert!(original.contains("spool=/var/spool/runledger"), "unexpected plugstack.conf: {original}");
                original.replace("spool=/var/spool/runledger", &format!("spool={spool}"))
            }),
        }
    }
}

/// The runledger line of plugstack.conf with `sample_interval=SECONDS` until dropped
/// ([`PlugstackEdit`]): the timeline tests sample every few seconds instead of every 30.
pub struct SampleEvery {
    _edit: PlugstackEdit,
}

impl SampleEvery {
    pub fn new(secs: u32) -> SampleEvery {
        SampleEvery {
            _edit: PlugstackEdit::new(|original| {
                let mut found = false;
                let text: String = original
                    .lines()
                    .map(|l| {
                        if l.contains("runledger.so") && !l.trim_start().starts_with('#') {
                            found = true;
                            format!("{l} sample_interval={secs}\n")
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect();
                assert!(found, "no runledger line in {PLUGSTACK}: {original}");
                text
            }),
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `packaging/local-cluster run [--user USER] -- ARGV…`: ARGV in the cluster's environment, as
/// root or (through a login shell, so Lmod is set up) as `user`.
pub fn in_cluster(user: Option<&str>, argv: &[&str]) -> Command {
    let script = std::env::var_os("RUNLEDGER_LOCAL_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("packaging/local-cluster"));
    let mut cmd = Command::new(script);
    cmd.arg("run");
    if let Some(user) = user {
        cmd.args(["--user", user]);
    }
    cmd.arg("--").args(argv);
    cmd
}

/// Runs a Slurm command (`sinfo`, `squeue`, `scontrol`, …) as root in the cluster's environment.
pub fn slurm(argv: &[&str]) -> Output {
    run(&mut in_cluster(None, argv))
}

/// The running cluster's Slurm release as (major, minor), e.g. (24, 11), from `scontrol --version`.
pub fn slurm_release() -> (u32, u32) {
    let out = slurm(&["scontrol", "--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1).unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("scontrol --version printed no release: {text:?}"),
    }
}

/// Fails with instructions unless the local cluster is up.
pub fn require_cluster() {
    let sinfo = slurm(&["sinfo", "-h", "-o", "%T"]);
    let state = String::from_utf8_lossy(&sinfo.stdout);
    assert!(
        sinfo.status.success() && !state.trim().is_empty(),
        "no local Slurm cluster: run `packaging/local-cluster up` first (sinfo said: {state}{})",
        String::from_utf8_lossy(&sinfo.stderr)
    );
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(COLLECTOR).is_file()));
    assert!(
        on_path,
        "`{COLLECTOR}` is not on PATH: run `packaging/local-cluster up` (it installs runledger's packages)"
    );
}

/// A user's home directory, where job scripts and outputs go.
pub fn home(user: &str) -> PathBuf {
    // Matched by name over the whole database: `getent passwd 1002` would look up a uid, and one
    // test user's name is all digits.
    let all = stdout_of(Command::new("getent").arg("passwd"));
    let entry = all.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f[0] == user);
    PathBuf::from(entry.and_then(|f| f.get(5).map(|h| h.to_string())).unwrap_or_else(|| "/tmp".into()))
}

/// The ordinary test user whose name is all digits: rltest2's uid (`local-cluster up` creates it),
/// so a query that took the name for a uid would show it rltest2's jobs.
pub fn digit_user() -> String {
    stdout_of(Command::new("id").args(["-u", USER2])).trim().to_string()
}

/// Runs a shell command line as `user` (login environment, so Lmod is set up).
pub fn as_user(user: &str, cmdline: &str) -> Output {
    run(&mut in_cluster(Some(user), &["bash", "-c", cmdline]))
}

/// Writes `script` into the user's home and submits it with sbatch `args`; returns the job id.
pub fn sbatch(user: &str, name: &str, args: &[&str], script: &str) -> u32 {
    sbatch_after(user, "true", name, args, script)
}

/// Like [`sbatch`], after running `prelude` in the submitting shell (e.g. `module load …`, whose
/// environment the job inherits).
pub fn sbatch_after(user: &str, prelude: &str, name: &str, args: &[&str], script: &str) -> u32 {
    let dir = home(user).join("rl-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    let owner = format!("{user}:{user}");
    stdout_of(Command::new("chown").args(["-R", &owner]).arg(&dir));
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let line = format!(
        "{prelude} && cd {} && sbatch --parsable -J {name} -o {name}-%j.out {} {}",
        shell_quote(&dir.to_string_lossy()),
        quoted.join(" "),
        shell_quote(&path.to_string_lossy())
    );
    let out = as_user(user, &line);
    assert!(
        out.status.success(),
        "sbatch failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("");
    id.parse().unwrap_or_else(|_| panic!("sbatch printed no job id: {text:?}"))
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The output file of a job submitted by [`sbatch`].
pub fn output_of(user: &str, name: &str, job: u32) -> String {
    std::fs::read_to_string(home(user).join("rl-e2e").join(format!("{name}-{job}.out"))).unwrap_or_default()
}

/// Whether the plugin has spooled `file` for `job` on any node: the spool is
/// `/var/spool/runledger` on one node, `/var/spool/runledger/<node>` (`%n`) on several.
pub fn spooled(job: u32, file: &str) -> bool {
    let base = std::path::Path::new("/var/spool/runledger");
    let at = |root: &std::path::Path| root.join("jobs").join(job.to_string()).join(file).exists();
    at(base)
        || std::fs::read_dir(base)
            .map(|dir| dir.filter_map(Result::ok).any(|e| e.path().is_dir() && at(&e.path())))
            .unwrap_or(false)
}

/// Whether Slurm still knows the job as pending or running.
pub fn job_active(job: u32) -> bool {
    let out = slurm(&["squeue", "-h", "-o", "%i %T", "-j", &job.to_string()]);
    String::from_utf8_lossy(&out.stdout).lines().any(|l| !l.trim().is_empty())
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `collector query ARGS --json` as root and parses the answer.
pub fn query(args: &[&str]) -> Value {
    let out = run(Command::new(COLLECTOR).arg("query").args(args).arg("--json"));
    assert!(out.status.success(), "collector query {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("collector query {args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

/// The ledger's rows of an array job's tasks that have ended (state known), as `user` lists them.
pub fn ended_array_tasks(user: &str, array_job_id: u32) -> Vec<Value> {
    let all = query(&["jobs", "-u", user]);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["array_job_id"] == array_job_id && j["state"] != "UNKNOWN")
        .cloned()
        .collect()
}

/// The job's entry in `collector query jobs -j ID --json`, once its epilog record has arrived
/// (state no longer UNKNOWN).
pub fn ledger_job(job: u32, timeout: Duration) -> Value {
    wait_until(&format!("job {job} in the ledger"), timeout, || {
        let rows = query(&["jobs", "-j", &job.to_string()]);
        rows.as_array()?.iter().find(|r| r["state"].as_str().is_some_and(|s| s != "UNKNOWN")).cloned()
    })
}

/// Waits for Slurm to finish the job, then for its record.
pub fn finished(job: u32) -> Value {
    wait_until(&format!("job {job} to finish"), Duration::from_secs(300), || (!job_active(job)).then_some(()));
    ledger_job(job, Duration::from_secs(60))
}

/// Steps of a ledger job by their sacct name ("batch", "0", …).
pub fn step<'a>(job: &'a Value, name: &str) -> Option<&'a Value> {
    job["steps"].as_array()?.iter().find(|s| s["step"].as_str() == Some(name))
}

/// Runs `packaging/local-cluster SUBCOMMAND`.
pub fn local_cluster(sub: &str) {
    stdout_of(Command::new(repo_root().join("packaging/local-cluster")).arg(sub));
}

/// A fresh directory `rl-e2e/SUB` in the user's home, owned by the user (emptied first), for a job
/// that needs a work directory of its own (`-D`): jobs running at the same time then never see
/// each other's files.
pub fn user_dir(user: &str, sub: &str) -> PathBuf {
    let dir = home(user).join("rl-e2e").join(sub);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let owner = format!("{user}:{user}");
    stdout_of(Command::new("chown").arg(&owner).arg(home(user).join("rl-e2e")).arg(&dir));
    dir
}

/// Every fact row (`node`, `source`, `key`, `value`, `unit`) of a job's detail
/// ([`job_detail`]): `fact_rows`, or `facts` when that is the list of rows.
pub fn facts(d: &Value) -> Vec<Value> {
    ["fact_rows", "facts"].iter().find_map(|k| d[*k].as_array().cloned()).unwrap_or_default()
}

/// The job-level (`source = ""`) fact `key`: value and unit.
pub fn job_fact(d: &Value, key: &str) -> Option<(String, Option<String>)> {
    facts(d)
        .iter()
        .find(|f| f["source"] == "" && f["key"] == key)
        .map(|f| (f["value"].as_str().unwrap_or_default().to_string(), f["unit"].as_str().map(str::to_string)))
}

/// The job-level fact `key`'s value; panics, showing every fact, when there is none.
pub fn job_value(d: &Value, key: &str) -> String {
    job_fact(d, key).map(|(v, _)| v).unwrap_or_else(|| panic!("no job-level {key}: {:#}", d["facts"]))
}

/// The node names of the running cluster (`sinfo -N`), in Slurm's order.
pub fn cluster_nodes() -> Vec<String> {
    let out = stdout_of(&mut in_cluster(None, &["sinfo", "-h", "-N", "-o", "%N"]));
    let mut nodes: Vec<String> = Vec::new();
    for n in out.lines().map(str::trim).filter(|n| !n.is_empty()) {
        if !nodes.iter().any(|m| m == n) {
            nodes.push(n.to_string());
        }
    }
    nodes
}

/// The cluster's nodes when it runs at least `n`; else `None`, after saying on stderr that the
/// test is skipped and how to run it. `RUNLEDGER_E2E_NODES=N` (set by packaging/run-tests for
/// its multi-node run) turns the skip into a failure, so CI cannot pass by skipping.
pub fn require_nodes(test: &str, n: usize) -> Option<Vec<String>> {
    require_cluster();
    let nodes = cluster_nodes();
    if nodes.len() >= n {
        return Some(nodes);
    }
    let strict = std::env::var("RUNLEDGER_E2E_NODES").ok().and_then(|v| v.parse::<usize>().ok());
    assert!(
        strict.is_none_or(|s| s < n),
        "{test}: needs {n} nodes, the cluster runs {} ({nodes:?}) but RUNLEDGER_E2E_NODES says {}",
        nodes.len(),
        strict.unwrap_or_default()
    );
    eprintln!(
        "SKIPPED {test}: needs a cluster of {n} nodes, this one runs {} ({}); \
         run `packaging/local-cluster up --nodes {n}` first",
        nodes.len(),
        nodes.join(",")
    );
    None
}

/// `collector query job ID --json`: the job's one detail object, with every node's records.
pub fn job_detail(job: u32) -> Value {
    let v = query(&["job", &job.to_string()]);
    if v.is_array() {
        v[0].clone()
    } else {
        v
    }
}

/// Waits until Slurm is done with the job and the ledger holds an end record (`node_records`)
/// from each of `nodes`, then gives the job's detail.
pub fn finished_on(job: u32, nodes: &[String]) -> Value {
    wait_until(&format!("job {job} to finish"), Duration::from_secs(300), || (!job_active(job)).then_some(()));
    wait_until(&format!("job {job}'s end records from {nodes:?}"), Duration::from_secs(90), || {
        let d = job_detail(job);
        let have: Vec<&str> = d["node_records"].as_array()?.iter().filter_map(|r| r["node"].as_str()).collect();
        nodes.iter().all(|n| have.contains(&n.as_str())).then_some(d)
    })
}

/// The job's step records named `step` ("0", "batch"…), one per node.
pub fn steps_named<'a>(job: &'a Value, name: &str) -> Vec<&'a Value> {
    job["steps"].as_array().map(|s| s.iter().filter(|s| s["step"].as_str() == Some(name)).collect()).unwrap_or_default()
}

/// Runs `packaging/local-cluster SUBCOMMAND ARGS…`.
pub fn local_cluster_args(args: &[&str]) {
    stdout_of(Command::new(repo_root().join("packaging/local-cluster")).args(args));
}
