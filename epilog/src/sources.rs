//! The registered fact sources and the loop that runs them within the epilog's budget (the
//! extension point itself, [`FactSource`] and [`JobContext`], is [`crate::facts`]).

use crate::facts::{FactSource, JobContext};
use runledger_record::Fact;
use std::time::Instant;

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
    use runledger_record::config::LogsConfig;
    use runledger_record::JobState;

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
