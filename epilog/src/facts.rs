//! Facts from a job's solver logs: the extension point where log parsers plug in.
//!
//! After the job's state is known, the epilog calls [`collect_facts`] with a [`JobContext`] and
//! puts whatever it returns into `JobEnd.facts`. Today no parser is registered, so no facts are
//! collected. A parser is a [`FactSource`] added to [`sources`]; it must:
//!
//! - read files only through [`crate::safe_read::read_windows_as`] with the job's `uid`/`gid`
//!   (the epilog is root; the user chooses the file names), with bounded windows;
//! - stop by `ctx.deadline` (the epilog's budget is shared by everything it does);
//! - return few, small facts (they travel in every batch) and never panic on odd input.
//!
//! A panicking source is caught and logged; the others still run.

use runledger_record::{Fact, Item};
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
    /// The plugin's items for this job (step starts: argv, exe, cwd, env, modules; step ends).
    pub items: &'a [Item],
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

/// The registered fact sources. Empty for now: parsers are added here.
pub fn sources() -> Vec<Box<dyn FactSource>> {
    Vec::new()
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
    fn no_sources_yet_means_no_facts() {
        let ctx = JobContext {
            job_id: 1,
            uid: Some(1000),
            gid: None,
            user: Some("u"),
            work_dir: None,
            stdout: None,
            stderr: None,
            items: &[],
            deadline: Instant::now() + std::time::Duration::from_secs(1),
        };
        assert!(collect_facts(&ctx).is_empty());
    }
}
