//! Putting one job's batch together: the plugin's spooled items plus this node's [`JobEnd`].

use crate::env::JobEnv;
use crate::facts::JobContext;
use crate::pattern::{self, PatternVars};
use crate::safe_read::{read_windows_as, ReadError};
use crate::sources::collect_facts;
use crate::state::{classify, JobIds, Verdict};
use runledger_record::config::LogsConfig;
use runledger_record::spool::{layout, Spool};
use runledger_record::{step_name, Batch, ExitStatus, Item, JobEnd, StepEnd, StepStart, TimeLimit, STEP_BATCH};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Input files taken from the steps' command lines, at most (a job of 10,000 steps names them
/// no more often).
pub const MAX_ARGV_INPUTS: usize = 16;

/// How much of the end of each output file is searched for slurmstepd's lines.
pub const OUTPUT_TAIL_BYTES: u64 = 64 * 1024;
/// How long to wait, at most, for the plugin's missing step ends (it writes them in
/// slurm_spank_exit, which can race with the Epilog's start).
pub const STEP_END_WAIT: Duration = Duration::from_secs(1);
pub const STEP_END_POLL: Duration = Duration::from_millis(20);

/// A job's batch and what the log line needs to say about it.
#[derive(Debug)]
pub struct Assembled {
    pub batch: Batch,
    pub verdict: Verdict,
    /// Spooled items (without the JobEnd).
    pub spooled: usize,
    /// Steps whose end never appeared in the spool.
    pub missing_ends: Vec<String>,
}

/// Builds the job's batch in memory (tests, and the fallback when the outbox cannot be written).
/// Never fails: whatever is unknown stays empty and is logged.
pub fn assemble(spool: &Spool, env: &JobEnv, logs: &LogsConfig, deadline: Instant) -> Assembled {
    let mut items = Vec::new();
    let s = stream(spool, env, logs, deadline, |i| items.push(i));
    let sender = s.job_end.node.clone();
    items.push(Item::JobEnd(s.job_end));
    Assembled { batch: Batch::new(sender, items), verdict: s.verdict, spooled: s.spooled, missing_ends: s.missing_ends }
}

/// What [`stream`] found: the job's end and what the log line needs.
#[derive(Debug)]
pub struct Streamed {
    pub job_end: JobEnd,
    pub verdict: Verdict,
    /// Spooled items handed on (without the JobEnd).
    pub spooled: usize,
    /// Steps whose end never appeared in the spool.
    pub missing_ends: Vec<String>,
    /// No step gave the time limit and this node is the one to ask slurmctld for it (see
    /// [`crate::limits`]).
    pub ask_time_limit: bool,
    /// The Python hook's per-job directory, read into `job_end.python`; removed after the job.
    pub python_dir: Option<PathBuf>,
}

/// Hands the job's spooled items to `sink` one at a time, in the order they are sent, and then
/// returns the node's [`JobEnd`], computed from a small summary of them: so the epilog holds one
/// item at a time, whatever the job spooled. Never fails: whatever is unknown stays empty and is
/// logged.
pub fn stream(
    spool: &Spool,
    env: &JobEnv,
    logs: &LogsConfig,
    deadline: Instant,
    mut sink: impl FnMut(Item),
) -> Streamed {
    let job_id = env.job_id;
    wait_for_step_ends(spool, job_id, deadline.min(Instant::now() + STEP_END_WAIT));
    let (paths, mut bad) = spool.job_item_paths(job_id);
    let mut summary = Summary::default();
    for path in paths {
        match spool.job_item(job_id, &path) {
            Ok(item) => {
                summary.observe(&item);
                sink(item);
            }
            Err(b) => bad.push(b),
        }
    }
    for b in &bad {
        log::warn!("job {job_id}: skipping spool file {}: {}", b.path.display(), b.reason);
    }
    let missing_ends = summary.missing_ends();
    if !missing_ends.is_empty() {
        log::warn!("job {job_id}: no end recorded for step(s) {} on this node", missing_ends.join(", "));
    }
    let (job_end, verdict) = job_end_of(env, &summary, logs, deadline);
    let ask_time_limit = job_end.time_limit.is_none() && summary.asks_time_limit();
    Streamed {
        job_end,
        verdict,
        spooled: summary.count,
        missing_ends,
        ask_time_limit,
        python_dir: summary.python_dir(),
    }
}

/// The node the job's batch comes from, as [`job_end`] names it (the environment, else the batch
/// step's or the first step's start, else the host name), known before the items are streamed.
pub fn node_of(spool: &Spool, env: &JobEnv) -> String {
    if let Some(n) = env.node.clone().filter(|n| !n.is_empty()) {
        return n;
    }
    let (paths, _) = spool.job_item_paths(env.job_id);
    let batch = spool.step_start_path(env.job_id, STEP_BATCH);
    let starts = paths.iter().filter(|p| p.to_string_lossy().ends_with(layout::START));
    let first = paths.iter().find(|p| **p == batch).into_iter().chain(starts).find_map(|p| {
        match spool.job_item(env.job_id, p) {
            Ok(Item::StepStart(s)) => Some(s.node),
            _ => None,
        }
    });
    first.filter(|n| !n.is_empty()).unwrap_or_else(hostname)
}

/// Waits, until `until` at most, for the end file of every step whose start file is spooled
/// (told by the file names, so that nothing is read twice).
fn wait_for_step_ends(spool: &Spool, job_id: u32, until: Instant) {
    let dir = spool.job_dir(job_id);
    let missing = || -> Vec<PathBuf> {
        let (paths, _) = spool.job_item_paths(job_id);
        paths
            .iter()
            .filter_map(|p| {
                let step = p.file_name()?.to_str()?.strip_suffix(layout::START)?;
                Some(dir.join(format!("{step}{}", layout::END)))
            })
            .filter(|end| !paths.contains(end))
            .collect()
    };
    let mut missing = missing();
    while !missing.is_empty() && Instant::now() < until {
        std::thread::sleep(STEP_END_POLL.min(until.saturating_duration_since(Instant::now())));
        missing.retain(|p| !p.exists());
    }
}

/// What the JobEnd needs from the spooled items, kept as they pass: the batch step's (or else the
/// first) start without its large fields, the earliest start, the first cwd, the batch step's
/// end, and which steps started and ended.
#[derive(Debug, Default)]
pub struct Summary {
    batch_start: Option<StepStart>,
    first_start: Option<StepStart>,
    first_cwd: Option<String>,
    earliest: Option<i64>,
    batch_end: Option<StepEnd>,
    /// Input files the steps' argv names, resolved against the step's cwd (bounded).
    argv_inputs: Vec<(PathBuf, Option<logparse::InputFormat>)>,
    started: Vec<u32>,
    ended: Vec<u32>,
    count: usize,
    /// The first time limit a step's environment gave (23.02+).
    time_limit: Option<TimeLimit>,
    python_dir: Option<String>,
}

impl Summary {
    pub fn of(items: &[Item]) -> Summary {
        let mut s = Summary::default();
        items.iter().for_each(|i| s.observe(i));
        s
    }

    /// Where the plugin put the job's Python directory (an absolute path, from root's spool).
    pub fn python_dir(&self) -> Option<PathBuf> {
        self.python_dir.as_deref().map(PathBuf::from).filter(|p| p.is_absolute())
    }

    pub fn observe(&mut self, item: &Item) {
        self.count += 1;
        match item {
            Item::StepStart(s) => {
                self.started.push(s.step_id);
                if self.python_dir.is_none() {
                    self.python_dir = s.python_dir.clone();
                }
                if self.first_cwd.is_none() {
                    self.first_cwd = s.cwd.clone();
                }
                // Kept here because the start is slimmed below (argv can be long).
                for (f, hint) in logparse::files_in_argv(&s.argv) {
                    let p = PathBuf::from(&f);
                    let p = if p.is_absolute() {
                        p
                    } else {
                        match s.cwd.as_deref().map(Path::new).filter(|c| c.is_absolute()) {
                            Some(c) => c.join(p),
                            None => continue,
                        }
                    };
                    if self.argv_inputs.len() < MAX_ARGV_INPUTS && !self.argv_inputs.iter().any(|(q, _)| *q == p) {
                        self.argv_inputs.push((p, hint));
                    }
                }
                if s.start > 0 {
                    self.earliest = Some(self.earliest.map_or(s.start, |e| e.min(s.start)));
                }
                if self.time_limit.is_none() {
                    self.time_limit = s.time_limit.clone();
                }
                let slim = || StepStart {
                    env: Default::default(),
                    argv: Vec::new(),
                    modules: Default::default(),
                    ..s.clone()
                };
                if s.step_id == STEP_BATCH && self.batch_start.is_none() {
                    self.batch_start = Some(slim());
                }
                if self.first_start.is_none() {
                    self.first_start = Some(slim());
                }
            }
            Item::StepEnd(e) => {
                self.ended.push(e.step_id);
                if e.step_id == STEP_BATCH && self.batch_end.is_none() {
                    self.batch_end = Some(e.clone());
                }
            }
            Item::JobEnd(_) => {}
        }
    }

    /// Steps with a start and no end, by name.
    fn missing_ends(&self) -> Vec<String> {
        self.started.iter().filter(|s| !self.ended.contains(s)).map(|&s| step_name(s)).collect()
    }

    /// One node per job asks slurmctld: the one that ran the batch step, or the first node of
    /// a job without one (an salloc's steps).
    fn asks_time_limit(&self) -> bool {
        self.batch_start.is_some() || self.first_start.as_ref().is_some_and(|s| s.node_id == 0)
    }

    fn first(&self) -> Option<&StepStart> {
        self.batch_start.as_ref().or(self.first_start.as_ref())
    }
}

/// The node's view of the job's end, from the environment, the spooled items and the output.
pub fn job_end(env: &JobEnv, items: &[Item], logs: &LogsConfig, deadline: Instant) -> (JobEnd, Verdict) {
    job_end_of(env, &Summary::of(items), logs, deadline)
}

/// [`job_end`] from a [`Summary`] of the items.
pub fn job_end_of(env: &JobEnv, sum: &Summary, logs: &LogsConfig, deadline: Instant) -> (JobEnd, Verdict) {
    // The batch step knows most (cwd, output files); any step knows the job's owner.
    let first = sum.first();
    let batch_end = sum.batch_end.as_ref();

    let uid = env.uid.or(first.map(|s| s.uid));
    let gid = env.gid.or(first.map(|s| s.gid));
    let user = env.user.clone().or(first.map(|s| s.user.clone())).filter(|u| !u.is_empty());
    let node = env.node.clone().or(first.map(|s| s.node.clone())).filter(|n| !n.is_empty()).unwrap_or_else(hostname);
    let work_dir = env.work_dir.clone().or_else(|| sum.first_cwd.clone());
    let job_name = env.job_name.clone().or(first.and_then(|s| s.job_name.clone()));
    let array_job_id = env.array_job_id.or(first.and_then(|s| s.array_job_id));
    let array_task_id = env.array_task_id.or(first.and_then(|s| s.array_task_id));

    // The exit: Slurm's word for the job; else the batch step's worst task, as the plugin saw it.
    let exit = env.job_exit().or_else(|| batch_end?.tasks.iter().map(|t| t.status).max_by_key(ExitStatus::severity));

    let vars = PatternVars {
        job_id: env.job_id,
        user: user.as_deref(),
        job_name: job_name.as_deref(),
        array_job_id,
        array_task_id,
        node: Some(&node),
    };
    let wd = work_dir.as_deref().map(Path::new);
    let from_plugin = |p: &Option<String>| -> Option<PathBuf> {
        let p = PathBuf::from(p.as_deref()?);
        if p.is_absolute() {
            Some(p)
        } else {
            wd.filter(|w| w.is_absolute()).map(|w| w.join(p))
        }
    };
    let stdout = env
        .stdout_pattern
        .as_deref()
        .and_then(|p| pattern::resolve(p, &vars, wd))
        .or_else(|| from_plugin(&batch_end?.stdout));
    let stderr = env
        .stderr_pattern
        .as_deref()
        .and_then(|p| pattern::resolve(p, &vars, wd))
        .or_else(|| from_plugin(&batch_end?.stderr));
    // Neither Slurm nor the plugin named the output: sbatch's default name in the work dir.
    let default_out = if stdout.is_none() { pattern::resolve(pattern::default_output(&vars), &vars, wd) } else { None };

    let mut to_read: Vec<PathBuf> = Vec::new();
    for p in [&stdout, &stderr, &default_out].into_iter().flatten() {
        if !to_read.contains(p) {
            to_read.push(p.clone());
        }
    }
    let mut texts = Vec::new();
    let mut default_read = false;
    match uid {
        Some(uid) if !to_read.is_empty() => {
            // Reading the output is part of reading the logs: it gets `[logs] time_budget_ms`,
            // not the epilog's whole budget (a hung file system must not eat the delivery's time).
            let budget = deadline.min(Instant::now() + Duration::from_millis(logs.time_budget_ms));
            let results = read_windows_as(uid, gid, &to_read, 0, OUTPUT_TAIL_BYTES, budget);
            for (path, r) in to_read.iter().zip(results) {
                match r {
                    Ok(w) => {
                        default_read |= Some(path) == default_out.as_ref();
                        texts.push(String::from_utf8_lossy(&w.tail).into_owned());
                    }
                    // Routine: no default output file, a path that exists only on the batch
                    // node, `--output=/dev/null`.
                    Err(e) if Some(path) == default_out.as_ref() || is_routine(&e) => {
                        log::debug!("job {}: not reading {}: {e}", env.job_id, path.display())
                    }
                    Err(e) => log::warn!("job {}: not reading {}: {e}", env.job_id, path.display()),
                }
            }
        }
        Some(_) => {}
        None => log::warn!("job {}: owner unknown, so its output files are not read", env.job_id),
    }
    let ids = JobIds { job_id: env.job_id, array: array_job_id.zip(array_task_id) };
    let verdict = classify(texts.iter().flat_map(|t| t.lines()), &ids, exit);

    let stdout = stdout.or(if default_read { default_out } else { None });
    let start = env.start_time.or(sum.earliest);
    let facts = collect_facts(&JobContext {
        job_id: env.job_id,
        uid,
        gid,
        user: user.as_deref(),
        work_dir: wd.map(Path::to_path_buf),
        stdout: stdout.clone(),
        stderr: stderr.clone().or(stdout.clone()),
        array_job_id,
        array_task_id,
        start,
        state: verdict.state,
        argv_inputs: sum.argv_inputs.clone(),
        logs,
        deadline,
    });
    // The Python processes' own word, read as the user (never as root), after the logs.
    let python = match (sum.python_dir(), uid) {
        (Some(dir), Some(uid)) => crate::python::collect(&dir, uid, gid, deadline),
        _ => None,
    };
    let cluster = env.cluster.clone().or(first.map(|s| s.cluster.clone())).unwrap_or_default();
    if cluster.trim().is_empty() {
        log::warn!("job {}: cluster name unknown (no SLURM_CLUSTER_NAME, no spooled step)", env.job_id);
    }
    let end = JobEnd {
        cluster,
        job_id: env.job_id,
        node,
        // u32::MAX (Slurm's "no uid") only if neither slurmd nor the plugin said whose job it is.
        uid: uid.unwrap_or(u32::MAX),
        user: user.unwrap_or_default(),
        account: env.account.clone().or(first.and_then(|s| s.account.clone())),
        partition: env.partition.clone().or(first.and_then(|s| s.partition.clone())),
        work_dir,
        exit: exit.unwrap_or_default(),
        derived_exit: env.derived_exit,
        state: verdict.state,
        state_evidence: Some(verdict.evidence.clone()),
        start,
        end: env.end_time.unwrap_or_else(runledger_record::now),
        stdout: stdout.map(|p| p.to_string_lossy().into_owned()),
        stderr: stderr.map(|p| p.to_string_lossy().into_owned()),
        facts,
        alloc_mem_mb: first.and_then(|s| s.alloc_mem_mb),
        time_limit: sum.time_limit.clone(),
        time_limit_missing: None,
        python,
    };
    (end, verdict)
}

fn is_routine(e: &ReadError) -> bool {
    match e {
        ReadError::Io(e) => e.kind() == std::io::ErrorKind::NotFound,
        ReadError::Refused(why) => why.contains("device"),
        _ => false,
    }
}

/// This machine's name, without running anything (the Epilog has no PATH).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::{JobState, TaskExit};
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn env(vars: &[(&str, &str)]) -> JobEnv {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        JobEnv::parse(|k| m.get(k).cloned()).unwrap()
    }

    fn start(step: u32, t: i64, cwd: &str) -> Item {
        Item::StepStart(StepStart {
            cluster: "c1".into(),
            job_id: 77,
            step_id: step,
            node: "n1".into(),
            uid: 0,
            gid: 0,
            user: "root".into(),
            cwd: Some(cwd.into()),
            account: Some("acct".into()),
            start: t,
            ..Default::default()
        })
    }

    fn end(step: u32, raw: i32) -> Item {
        Item::StepEnd(StepEnd {
            cluster: "c1".into(),
            job_id: 77,
            step_id: step,
            node: "n1".into(),
            start: 100,
            end: 200,
            tasks: vec![TaskExit::from_wait(0, 0, raw, 0)],
            ..Default::default()
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn memory_and_time_limit_travel_to_the_job_end() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path().join("spool"));
        let Item::StepStart(mut batch) = start(STEP_BATCH, 110, "/") else { unreachable!() };
        batch.alloc_mem_mb = Some(512);
        spool.put_item(&Item::StepStart(batch.clone())).unwrap();
        let e = env(&[("SLURM_JOB_ID", "77")]);
        // 22.05: no step gave a limit, and this node ran the batch step: it is the one to ask.
        let s = stream(&spool, &e, &LogsConfig::default(), soon(), |_| ());
        assert_eq!((s.job_end.alloc_mem_mb, &s.job_end.time_limit), (Some(512), &None));
        assert!(s.ask_time_limit);
        // 23.02+: the step's environment gave it; nobody asks.
        let limit = TimeLimit { seconds: Some(600), source: runledger_record::LimitSource::Environment };
        batch.time_limit = Some(limit.clone());
        spool.put_item(&Item::StepStart(batch)).unwrap();
        let s = stream(&spool, &e, &LogsConfig::default(), soon(), |_| ());
        assert_eq!((s.job_end.time_limit, s.ask_time_limit), (Some(limit), false));
        // Another node of the job (only step 0's second node spooled here) does not ask.
        let other = Spool::new(d.path().join("other"));
        let Item::StepStart(mut s0) = start(0, 110, "/") else { unreachable!() };
        s0.node_id = 1;
        other.put_item(&Item::StepStart(s0)).unwrap();
        assert!(!stream(&other, &e, &LogsConfig::default(), soon(), |_| ()).ask_time_limit);
    }

    #[test]
    fn argv_inputs_resolved_against_the_step_cwd_once_each() {
        let with_argv = |argv: &[&str], cwd: &str| match start(0, 1, cwd) {
            Item::StepStart(s) => {
                Item::StepStart(StepStart { argv: argv.iter().map(|a| a.to_string()).collect(), ..s })
            }
            _ => unreachable!(),
        };
        let items = [
            with_argv(&["lmp", "-in", "in.melt"], "/w"),
            with_argv(&["lmp", "-in", "/w/in.melt"], "/x"),
            with_argv(&["pw.x", "-i", "scf.in"], "relative"),
            with_argv(&["gmx", "mdrun", "-s", "topol.tpr"], "/w"),
        ];
        let sum = Summary::of(&items);
        assert_eq!(
            sum.argv_inputs,
            vec![
                (PathBuf::from("/w/in.melt"), Some(logparse::InputFormat::LammpsIn)),
                (PathBuf::from("/w/topol.tpr"), None)
            ],
            "a relative cwd resolves nothing; a path is kept once"
        );
    }

    #[test]
    fn batch_from_a_temp_spool() {
        let d = tempfile::tempdir().unwrap();
        let work = d.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let spool = Spool::new(d.path().join("spool"));
        let wd = work.to_str().unwrap();
        for item in [start(STEP_BATCH, 110, wd), start(0, 105, wd), end(STEP_BATCH, 0), end(0, 0)] {
            spool.put_item(&item).unwrap();
        }
        std::fs::write(spool.job_dir(77).join("junk.json"), b"{garbage").unwrap();
        // sbatch's default output name in the batch step's cwd, with slurmstepd's time-limit line.
        let line = "slurmstepd: error: *** JOB 77 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***";
        std::fs::write(work.join("slurm-77.out"), format!("working\n{line}\n")).unwrap();
        let e = env(&[("SLURM_JOB_ID", "77"), ("SLURM_JOB_EXIT_CODE", "15"), ("SLURMD_NODENAME", "n1")]);
        let a = assemble(&spool, &e, &LogsConfig::default(), soon());
        assert_eq!(a.spooled, 4);
        assert_eq!(a.batch.items.len(), 5);
        assert_eq!(a.batch.sender, "n1");
        assert!(a.missing_ends.is_empty());
        let Some(Item::JobEnd(j)) = a.batch.items.last() else { panic!("no JobEnd last") };
        assert_eq!(j.state, JobState::Timeout);
        assert_eq!(j.state_evidence.as_deref(), Some(line));
        assert_eq!((j.cluster.as_str(), j.uid, j.user.as_str()), ("c1", 0, "root"));
        assert_eq!(j.account.as_deref(), Some("acct"));
        assert_eq!(j.work_dir.as_deref(), Some(wd));
        assert_eq!(j.start, Some(105));
        assert_eq!(j.exit, ExitStatus { code: 0, signal: 15, core_dumped: false });
        assert_eq!(j.stdout, Some(work.join("slurm-77.out").to_string_lossy().into_owned()));
        // The solver-log source read the same file: Slurm's line is a time_limit failure.
        let job_level = |k: &str| j.facts.iter().find(|f| f.source.is_empty() && f.key == k).map(|f| f.value.as_str());
        assert_eq!(job_level("outcome"), Some("failed"), "{:?}", j.facts);
        assert_eq!(job_level("failure_category"), Some("time_limit"));
        assert_eq!(job_level("error_source"), j.stdout.as_deref());
    }

    #[test]
    fn the_output_read_obeys_the_logs_time_budget() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let wd = d.path().to_str().unwrap();
        let line = "slurmstepd: error: *** JOB 77 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***";
        std::fs::write(d.path().join("out"), format!("{line}\n")).unwrap();
        let e = env(&[
            ("SLURM_JOB_ID", "77"),
            ("SLURM_JOB_UID", "0"),
            ("SLURM_JOB_GID", "0"),
            ("SLURM_JOB_WORK_DIR", wd),
            ("SLURM_JOB_STDOUT", "out"),
        ]);
        let items = [start(STEP_BATCH, 110, wd)];
        // With time for the logs, the line is read: TIMEOUT.
        let (j, _) = job_end(&e, &items, &LogsConfig::default(), soon());
        assert_eq!(j.state, JobState::Timeout);
        // With no time for the logs, the output is not read, though the epilog's deadline is far.
        let none = LogsConfig { time_budget_ms: 0, ..LogsConfig::default() };
        let (j, _) = job_end(&e, &items, &none, Instant::now() + Duration::from_secs(60));
        assert_ne!(j.state, JobState::Timeout);
        assert_ne!(j.state_evidence.as_deref(), Some(line));
    }

    #[test]
    fn a_late_step_end_is_waited_for_and_a_missing_one_reported() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        spool.put_item(&start(STEP_BATCH, 110, "/nonexistent")).unwrap();
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                spool.put_item(&end(STEP_BATCH, 3 << 8)).unwrap();
            })
        };
        let e = env(&[("SLURM_JOB_ID", "77")]);
        let a = assemble(&spool, &e, &LogsConfig::default(), soon());
        writer.join().unwrap();
        assert_eq!(a.spooled, 2, "the end written 100 ms late is read");
        // No exit in the environment: the batch step's task exit says FAILED.
        assert_eq!(a.verdict.state, JobState::Failed);
        // A step whose end never comes is reported missing (how long that costs against the
        // epilog's budget is measured by bench/epilog-faults, not asserted here).
        spool.remove_job(77).unwrap();
        spool.put_item(&start(0, 110, "/nonexistent")).unwrap();
        let a = assemble(&spool, &e, &LogsConfig::default(), Instant::now() + Duration::from_millis(150));
        assert_eq!(a.missing_ends, vec!["0".to_string()]);
        assert_eq!(a.verdict.state, JobState::Unknown);
    }

    #[test]
    fn environment_wins_and_output_patterns_are_used() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let wd = d.path().to_str().unwrap();
        std::fs::write(d.path().join("out.77.root"), "slurmstepd: error: *** JOB 77 ON n1 CANCELLED AT x BY 0 ***\n")
            .unwrap();
        let e = env(&[
            ("SLURM_JOB_ID", "77"),
            ("SLURM_JOB_UID", "0"),
            ("SLURM_JOB_USER", "root"),
            ("SLURM_JOB_WORK_DIR", wd),
            ("SLURM_JOB_STDOUT", "out.%j.%u"),
            ("SLURM_JOB_STDERR", "/nonexistent/err"),
            ("SLURM_JOB_EXIT_CODE2", "0:9"),
            ("SLURM_JOB_START_TIME", "50"),
            ("SLURM_JOB_END_TIME", "60"),
            ("SLURM_CLUSTER_NAME", "envc"),
        ]);
        let items = [start(STEP_BATCH, 110, "/elsewhere")];
        let (j, v) = job_end(&e, &items, &LogsConfig::default(), soon());
        assert_eq!(v.state, JobState::Cancelled);
        assert_eq!((j.start, j.end, j.cluster.as_str()), (Some(50), 60, "envc"));
        assert_eq!(j.work_dir.as_deref(), Some(wd));
        assert_eq!(j.stdout.as_deref(), Some(d.path().join("out.77.root").to_str().unwrap()));
        assert_eq!(j.stderr.as_deref(), Some("/nonexistent/err"));
    }

    #[test]
    fn nothing_known_still_makes_a_job_end() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path().join("missing"));
        let a = assemble(&spool, &env(&[("SLURM_JOB_ID", "5")]), &LogsConfig::default(), soon());
        assert_eq!(a.batch.items.len(), 1);
        let Some(Item::JobEnd(j)) = a.batch.items.last() else { panic!() };
        assert_eq!((j.job_id, j.uid, j.state), (5, u32::MAX, JobState::Unknown));
        assert!(!j.node.is_empty(), "falls back to the host name");
    }
}
