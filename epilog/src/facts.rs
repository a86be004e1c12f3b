//! Facts from a job's solver logs: the extension point where log parsers plug in.
//!
//! After the job's state is known, the epilog calls [`collect_facts`] with a [`JobContext`] and
//! puts whatever it returns into `JobEnd.facts`. Two sources are registered: the solver logs
//! ([`crate::logs`], configured by `[logs]`) and the job's input files ([`crate::inputs`]). A source is a [`FactSource`] added to [`sources`];
//! it must:
//!
//! - read files only through [`crate::safe_read::read_windows_as`] with the job's `uid`/`gid`
//!   (the epilog is root; the user chooses the file names), with bounded windows;
//! - stop by `ctx.deadline` (the epilog's budget is shared by everything it does);
//! - return few, small facts (they travel in every batch) and never panic on odd input.
//!
//! A panicking source is caught and logged; the others still run.

use runledger_record::config::LogsConfig;
use runledger_record::{Fact, JobState, Timestamp};
use std::path::PathBuf;
use std::time::Instant;

/// What a fact source may know about the job.
#[derive(Clone, Debug)]
pub struct JobContext<'a> {
    pub job_id: u32,
    /// The job's user; `None` when unknown, in which case no user file may be read.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub user: Option<&'a str>,
    pub work_dir: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    pub array_job_id: Option<u32>,
    pub array_task_id: Option<u32>,
    /// When the job started (epoch seconds), if known.
    pub start: Option<Timestamp>,
    /// The job's state as the epilog decided it (exit status, slurmstepd's lines).
    pub state: JobState,
    /// Files the steps' command lines name as their input (`lmp -in in.melt`), absolute, with
    /// the format the program implies (see [`logparse::files_in_argv`]).
    pub argv_inputs: Vec<(PathBuf, Option<logparse::InputFormat>)>,
    /// The `[logs]` configuration.
    pub logs: &'a LogsConfig,
    /// Stop by then.
    pub deadline: Instant,
}

/// One kind of solver log the epilog understands.
pub trait FactSource: Send + Sync {
    /// A short name for the log (e.g. `gromacs`).
    fn name(&self) -> &'static str;
    /// The facts this source finds for the job; empty if the job is not one of its kind.
    fn collect(&self, ctx: &JobContext) -> Vec<Fact>;
}

/// The registered fact sources.
pub fn sources() -> Vec<Box<dyn FactSource>> {
    vec![Box::new(crate::logs::SolverLogs), Box::new(crate::inputs::InputFiles)]
}

/// Runs every registered source until the deadline; a source that panics is logged and skipped.
pub fn collect_facts(ctx: &JobContext) -> Vec<Fact> {
    let mut facts = Vec::new();
    for src in sources() {
        if Instant::now() >= ctx.deadline {
            log::warn!("job {}: no time left for {} facts", ctx.job_id, src.name());
            break;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| src.collect(ctx))) {
            Ok(f) => facts.extend(f),
            Err(_) => log::error!("job {}: the {} fact source panicked; its facts are skipped", ctx.job_id, src.name()),
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_read_means_no_facts() {
        let logs = LogsConfig::default();
        let ctx = JobContext {
            job_id: 1,
            uid: Some(1000),
            gid: None,
            user: Some("u"),
            work_dir: None,
            stdout: None,
            stderr: None,
            array_job_id: None,
            array_task_id: None,
            start: None,
            state: JobState::Completed,
            argv_inputs: Vec::new(),
            logs: &logs,
            deadline: Instant::now() + std::time::Duration::from_secs(1),
        };
        assert!(collect_facts(&ctx).is_empty());
    }
}
