//! Facts from a job's solver logs: the extension point where log parsers plug in.
//!
//! After the job's state is known, the epilog calls [`crate::sources::collect_facts`] with a
//! [`JobContext`] and puts whatever it returns into `JobEnd.facts`. Two sources are registered:
//! the solver logs ([`crate::logs`], configured by `[logs]`) and the job's input files
//! ([`crate::inputs`]). A source is a [`FactSource`] added to [`crate::sources::sources`]; it
//! must:
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

/// Upper bound of `[logs] job_bytes` and `input_bytes`: what one job's fact sources may keep in
/// memory, whatever the configuration says.
pub const MAX_JOB_BYTES: u64 = 256 << 20;

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
