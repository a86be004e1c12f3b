//! The solver-log fact source: finds a job's logs, reads bounded windows of them as the job's
//! user, analyses them with logparse and turns the analyses into `JobEnd.facts`.
//!
//! **Which files.** The job's stdout and stderr (as resolved by [`crate::job`]: SLURM_JOB_STDOUT /
//! SLURM_JOB_STDERR patterns, else where the plugin saw the batch step write, else sbatch's
//! default name), then the regular files directly in the work directory whose name matches one
//! of `[logs] globs` and that were modified since the job started (minus [`MTIME_SLACK`]
//! seconds), newest first; at most `[logs] max_files` in all. A globbed file whose name carries
//! another job's id (a `-`, `_` or `.`-delimited number without leading zero that is not this
//! job's id, array job id or array task id, e.g. `slurm-41.out` or `run-41.log` seen from job
//! 42) is skipped: jobs of an array or of one user often share a work directory.
//!
//! **How.** The work directory is listed and the files are read with the job user's identity
//! ([`crate::safe_read::list_dir_as`], [`crate::safe_read::read_each_as`]): what the user cannot
//! read is not read. Symbolic links are never followed — not when listing (an `lstat` that is not
//! a regular file is skipped) and not when opening (`O_NOFOLLOW`): following one as the user
//! would be safe, but a log is never legitimately a symlink to somewhere else often enough to be
//! worth the extra rule. FIFOs, sockets and devices are refused. Of each file only the first
//! `head_bytes` and the last `tail_bytes` are read, at most `job_bytes` per job, and all of it
//! (listing, reading, parsing) stops at `time_budget_ms` or the epilog's own deadline, whichever
//! comes first. A 10 GiB log costs what its windows cost.
//!
//! **Facts.** Per file: [`logparse::Analysis::to_facts`] with the file's absolute path as the
//! `source` (files in which no rule said anything are left out). Per job, with `source = ""`:
//! `program`, `outcome`, `failure_category`, `error` and `error_source` from
//! [`logparse::combine`] over all files, `state_disagreement` when the job's state and the logs
//! disagree (COMPLETED but a log says failed; FAILED, TIMEOUT, … but the logs say success), and
//! the main program's size and speed facts ([`JOB_LEVEL_KEYS`]) copied from the file that has
//! most of them. The job's state itself stays what [`crate::state`] decided.

use crate::facts::{FactSource, JobContext, MAX_JOB_BYTES};
use crate::rules::{par_map, rules_for};
use crate::safe_read::{list_dir_as, read_each_as, ReadError};
use logparse::{analyze, combine, Analysis, Outcome, Window};
use runledger_record::env::Pattern;
use runledger_record::{Fact, JobState};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Files modified up to this many seconds before the job's start still count (clock steps,
/// coarse start times).
pub const MTIME_SLACK: i64 = 60;
/// Directory entries looked at, at most (a work directory with a million files costs no more).
pub const MAX_DIR_ENTRIES: usize = 20_000;
/// A file's window is not shrunk below this to fit the job's byte budget: it is skipped instead.
pub const MIN_WINDOW: u64 = 4096;
/// Facts of the main program's file that are copied to the job level.
pub const JOB_LEVEL_KEYS: &[&str] =
    &["version", "mpi_ranks", "threads", "steps", "atoms", "cells", "k_points", "wall_seconds", "performance"];

/// The solver-log source.
pub struct SolverLogs;

impl FactSource for SolverLogs {
    fn name(&self) -> &'static str {
        "solver log"
    }

    fn collect(&self, ctx: &JobContext) -> Vec<Fact> {
        collect(ctx)
    }
}

/// One file to read, and how much of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub path: PathBuf,
    pub head: u64,
    pub tail: u64,
}

/// Whether `name` carries a job id that is not one of `ours`.
fn names_another_job(name: &str, ours: &[u32]) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let before = if s == 0 { None } else { Some(b[s - 1]) };
        let after = b.get(i).copied();
        let delim = |c: Option<u8>| matches!(c, None | Some(b'-' | b'_' | b'.'));
        if b[s] == b'0' || !delim(before) || !delim(after) || (before.is_none() && after.is_none()) {
            continue;
        }
        match name[s..i].parse::<u32>() {
            Ok(n) if ours.contains(&n) => {}
            Ok(_) => return true,
            Err(_) => {}
        }
    }
    false
}

/// The files to read for the job, in order, within the count and byte budgets. Lists the work
/// directory as the user.
pub fn plan(ctx: &JobContext, deadline: Instant) -> Vec<Planned> {
    let cfg = ctx.logs;
    let Some(uid) = ctx.uid else { return Vec::new() };
    let mut paths: Vec<(PathBuf, Option<u64>)> = Vec::new();
    for p in [&ctx.stdout, &ctx.stderr].into_iter().flatten() {
        if p.is_absolute() && !paths.iter().any(|(q, _)| q == p) {
            paths.push((p.clone(), None));
        }
    }
    if let Some(wd) = ctx.work_dir.as_ref().filter(|w| w.is_absolute()) {
        let globs: Vec<Pattern> = cfg.globs.iter().map(|g| Pattern::new(g)).collect();
        let mut ours = vec![ctx.job_id];
        ours.extend(ctx.array_job_id);
        ours.extend(ctx.array_task_id);
        let keep = move |name: &str| globs.iter().any(|g| g.matches(name)) && !names_another_job(name, &ours);
        match list_dir_as(uid, ctx.gid, wd, keep, MAX_DIR_ENTRIES, deadline) {
            Ok(mut files) => {
                let since = ctx.start.map(|s| s - MTIME_SLACK);
                files.retain(|f| since.is_none_or(|s| f.mtime >= s));
                files.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| a.path.cmp(&b.path)));
                for f in files {
                    if let Some(e) = paths.iter_mut().find(|(q, _)| *q == f.path) {
                        e.1 = Some(f.size);
                    } else {
                        paths.push((f.path, Some(f.size)));
                    }
                }
            }
            Err(e) => log::debug!("job {}: work directory {} not listed: {e}", ctx.job_id, wd.display()),
        }
    }
    // Whatever the configuration says, one job never costs more than MAX_JOB_BYTES of memory.
    let mut left = cfg.job_bytes.min(MAX_JOB_BYTES);
    let mut out = Vec::new();
    for (path, size) in paths.into_iter().take(cfg.max_files) {
        let full = cfg.head_bytes.saturating_add(cfg.tail_bytes);
        let cost = size.map_or(full, |s| s.min(full));
        if cost <= left {
            // Windows capped by what is left too: a file that grows before it is read still
            // costs no more than the budget.
            let head = cfg.head_bytes.min(left);
            out.push(Planned { path, head, tail: cfg.tail_bytes.min(left - head) });
            left -= cost;
        } else if left >= MIN_WINDOW {
            // What is left: the head (up to a quarter of it) and the tail, which tells more.
            let head = cfg.head_bytes.min(left / 4);
            out.push(Planned { path, head, tail: left - head });
            left = 0;
        } else {
            break;
        }
    }
    out
}

/// The text logparse's pre-check sees for one window (see [`crate::rules`]).
fn joined(w: &crate::safe_read::Window) -> Vec<u8> {
    let mut v = Vec::with_capacity(w.head.len() + w.tail.len() + 1);
    v.extend_from_slice(&w.head);
    if !w.is_whole() {
        v.push(b'\n');
    }
    v.extend_from_slice(&w.tail);
    v
}

fn is_empty(a: &Analysis) -> bool {
    a.program.is_none() && a.outcome == Outcome::Unknown && a.facts.is_empty()
}

/// See the module docs.
pub fn collect(ctx: &JobContext) -> Vec<Fact> {
    let cfg = ctx.logs;
    if !cfg.enabled {
        return Vec::new();
    }
    let Some(uid) = ctx.uid else { return Vec::new() };
    let t0 = Instant::now();
    let deadline = ctx.deadline.min(t0 + Duration::from_millis(cfg.time_budget_ms));
    let planned = plan(ctx, deadline);
    if planned.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<(PathBuf, u64, u64)> = planned.iter().map(|p| (p.path.clone(), p.head, p.tail)).collect();
    let results = read_each_as(uid, ctx.gid, &wanted, deadline);
    let mut files = Vec::new();
    for (p, r) in planned.iter().zip(results) {
        match r {
            Ok(w) if w.size > 0 => files.push((p.path.clone(), w)),
            Ok(_) => {}
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            // `--output=/dev/null` is routine; a planted symlink or FIFO is worth a line.
            Err(ReadError::Refused(why)) if why.contains("device") => {}
            Err(e @ ReadError::Refused(_)) => log::info!("job {}: log {} not read: {e}", ctx.job_id, p.path.display()),
            Err(e) => log::debug!("job {}: log {} not read: {e}", ctx.job_id, p.path.display()),
        }
    }
    if files.is_empty() {
        return Vec::new();
    }
    let texts: Vec<Vec<u8>> = files.iter().map(|(_, w)| joined(w)).collect();
    let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    let t_read = t0.elapsed();
    let loaded = rules_for(&cfg.rules, &refs);
    let t_rules = t0.elapsed();
    for e in &loaded.errors {
        log::error!("solver-log rules: {e}; using the built-in rules");
    }
    // Parsed in parallel (one file per task); a file not started by the deadline is skipped.
    let parsed = par_map(&files, |(path, w)| {
        if Instant::now() >= deadline {
            return None;
        }
        let a = match &loaded.rules {
            Some(r) => analyze(r, &Window { head: &w.head, tail: &w.tail, truncated_between: !w.is_whole() }),
            None => Analysis::default(),
        };
        Some((path.to_string_lossy().into_owned(), a))
    });
    let skipped = parsed.iter().filter(|p| p.is_none()).count();
    if skipped > 0 {
        log::warn!("job {}: log time budget used up; {skipped} file(s) not parsed", ctx.job_id);
    }
    let analyses: Vec<(String, Analysis)> = parsed.into_iter().flatten().collect();
    let mut facts = Vec::new();
    for (src, a) in &analyses {
        if !is_empty(a) {
            facts.extend(a.to_facts(src));
        }
    }
    facts.extend(job_level(&analyses, ctx.state));
    let bytes: usize = files.iter().map(|(_, w)| w.head.len() + w.tail.len()).sum();
    log::info!(
        "job {}: logs: files={} bytes={} rules={} facts={} wall_ms={} (read {} rules {} parse {})",
        ctx.job_id,
        analyses.len(),
        bytes,
        if loaded.compiled.is_empty() { "none" } else { loaded.compiled.as_str() },
        facts.len(),
        t0.elapsed().as_millis(),
        t_read.as_millis(),
        (t_rules - t_read).as_millis(),
        (t0.elapsed() - t_rules).as_millis()
    );
    facts
}

/// The job-level facts (`source = ""`) from the analyses of the job's files, in reading order.
pub fn job_level(analyses: &[(String, Analysis)], state: JobState) -> Vec<Fact> {
    let parts: Vec<&Analysis> = analyses.iter().map(|(_, a)| a).collect();
    let v = combine(&parts);
    let mk = |key: &str, value: &str, unit: Option<&str>| Fact {
        source: String::new(),
        key: key.to_string(),
        value: value.to_string(),
        unit: unit.map(str::to_string),
    };
    let mut out = Vec::new();
    if let Some(p) = &v.program {
        out.push(mk("program", p, None));
    }
    out.push(mk("outcome", v.outcome.as_str(), None));
    if let Some(c) = v.category {
        out.push(mk("failure_category", c.as_str(), None));
    }
    if let Some(e) = &v.evidence {
        out.push(mk("error", e, None));
        let from = analyses
            .iter()
            .find(|(_, a)| a.outcome == Outcome::Failed && a.category == v.category && a.evidence.as_ref() == Some(e));
        if let Some((src, _)) = from {
            out.push(mk("error_source", src, None));
        }
    }
    let disagreement = match (state, v.outcome) {
        (JobState::Completed, Outcome::Failed) => {
            Some(format!("state COMPLETED but the log says failed ({})", v.category.map_or("unknown", |c| c.as_str())))
        }
        (
            s @ (JobState::Failed
            | JobState::Timeout
            | JobState::OutOfMemory
            | JobState::Cancelled
            | JobState::NodeFail),
            Outcome::Success,
        ) => Some(format!("state {s} but the log says success")),
        _ => None,
    };
    if let Some(d) = disagreement {
        out.push(mk("state_disagreement", &d, None));
    }
    // The main program's file: the one of that program with most of the job-level keys.
    if let Some(p) = &v.program {
        let score = |a: &Analysis| JOB_LEVEL_KEYS.iter().filter(|k| a.fact(k).is_some()).count();
        let mut best: Option<&Analysis> = None;
        for (_, a) in analyses.iter().filter(|(_, a)| a.program.as_ref() == Some(p)) {
            if best.is_none_or(|b| score(a) > score(b)) {
                best = Some(a);
            }
        }
        if let Some(a) = best {
            for k in JOB_LEVEL_KEYS {
                if let Some(f) = a.fact(k) {
                    out.push(mk(k, &f.value, f.unit.as_deref()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_jobs_ids_in_names() {
        let ours = [42, 40, 3];
        for n in ["slurm-42.out", "slurm-40_3.out", "log.lammps", "md.log", "run1.log", "rsl.out.0000", "a.out"] {
            assert!(!names_another_job(n, &ours), "{n}");
        }
        for n in ["slurm-41.out", "slurm-40_4.out", "lammps-41.out", "x.17.txt", "7.log"] {
            assert!(names_another_job(n, &ours), "{n}");
        }
        assert!(!names_another_job("2024", &ours), "a bare number is not a job's name");
    }
}
