//! How the job ended, as far as one node can know: slurmstepd's lines in the job's output, then
//! the exit status.
//!
//! slurmstepd writes one line into the job's stderr (usually the same file as stdout) when Slurm
//! itself ends a job or a step:
//!
//! | line (any case) | state |
//! |---|---|
//! | `… DUE TO NODE FAIL…` (JOB or STEP) | NODE_FAIL |
//! | `*** JOB 123 ON n1 CANCELLED AT … DUE TO TIME LIMIT ***` (also `*** STEP 123.0 …`) | TIMEOUT |
//! | `*** JOB 123 ON n1 CANCELLED AT … ***`, optionally `BY <uid>` or another `DUE TO` | CANCELLED |
//! | `Detected 1 oom-kill event(s) in StepId=123.batch …`, `… Out Of Memory …` | OUT_OF_MEMORY |
//!
//! Only lines that name THIS job (`JOB 123`, `StepId=123.0`, `step 123.batch`, `JobId=123`, or the
//! array form `123_4` of this task) count: a shared output file may hold other jobs' lines. A
//! `*** STEP … CANCELLED ***` line without a time limit is not a job state: one step was cancelled,
//! the job may well have gone on. When several lines match, the most specific cause wins
//! ([`JobState::worst`], the collector's merge order) and its first line is kept as evidence.
//!
//! Without such a line the exit status decides: exit code ≠ 0 → FAILED; killed by SIGTERM or
//! SIGKILL → CANCELLED (these are the signals Slurm's own kills deliver: scancel, time limit,
//! preemption; without slurmstepd's line — e.g. output sent to /dev/null — a cancel is the most
//! likely reading, though a time limit cannot be told apart); killed by any other signal (SIGSEGV,
//! SIGABRT, …) → FAILED; else COMPLETED. No exit status at all → UNKNOWN.
//!
//! The output file belongs to the user, who could forge such a line: that only mislabels the
//! user's own job, the same trust sacct's users already have in their own output.

use runledger_record::{ExitStatus, JobState};

/// Longest evidence line kept, in bytes.
pub const MAX_EVIDENCE: usize = 512;

/// The job as its lines name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobIds {
    pub job_id: u32,
    /// `(array master id, task id)` for an array task.
    pub array: Option<(u32, u32)>,
}

/// A state and the line (or reason) that shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub state: JobState,
    pub evidence: String,
}

/// Whether `line` names this job: the id right after `JOB `, `STEP `, `JOBID=` or `STEPID=`
/// (any case), followed by the end, a space, `.`, `,`, `:`, `;`, `)` or `]`.
pub fn mentions_job(line: &str, ids: &JobIds) -> bool {
    let up = line.to_ascii_uppercase();
    let plain = ids.job_id.to_string();
    let array = ids.array.map(|(a, t)| format!("{a}_{t}"));
    for key in ["JOB ", "STEP ", "JOBID=", "STEPID=", "JOB_ID="] {
        let mut from = 0;
        while let Some(i) = up[from..].find(key) {
            let at = from + i + key.len();
            // "JOB " must be a word: not the tail of e.g. "SUBJOB ".
            let word_start = from + i == 0 || !up.as_bytes()[from + i - 1].is_ascii_alphanumeric();
            if word_start {
                let rest = &up[at..];
                if ends_token(rest, &plain) || array.as_deref().is_some_and(|a| ends_token(rest, a)) {
                    return true;
                }
            }
            from = at;
        }
    }
    false
}

fn ends_token(rest: &str, id: &str) -> bool {
    rest.strip_prefix(id).is_some_and(|after| {
        after.chars().next().is_none_or(|c| matches!(c, ' ' | '.' | ',' | ':' | ';' | ')' | ']' | '\t' | '\r'))
    })
}

/// The state one output line shows for this job, if any.
pub fn line_state(line: &str, ids: &JobIds) -> Option<JobState> {
    let up = line.to_ascii_uppercase();
    // Cheap test first: nearly every line of a job's output is none of these.
    let interesting = up.contains("CANCELLED")
        || up.contains("NODE FAIL")
        || up.contains("OOM-KILL EVENT")
        || up.contains("OUT OF MEMORY");
    if !interesting || !mentions_job(line, ids) {
        return None;
    }
    if up.contains("DUE TO NODE FAIL") {
        Some(JobState::NodeFail)
    } else if up.contains("CANCELLED") && up.contains("DUE TO TIME LIMIT") {
        Some(JobState::Timeout)
    } else if up.contains("*** JOB ") && up.contains(" CANCELLED AT ") {
        Some(JobState::Cancelled)
    } else if up.contains("OOM-KILL EVENT") || up.contains("OUT OF MEMORY") {
        Some(JobState::OutOfMemory)
    } else {
        None
    }
}

/// Classifies the job from its output lines (already cut to the file tails) and its exit status.
pub fn classify<'a>(lines: impl IntoIterator<Item = &'a str>, ids: &JobIds, exit: Option<ExitStatus>) -> Verdict {
    let mut best: Option<(JobState, &str)> = None;
    for line in lines {
        if let Some(s) = line_state(line, ids) {
            if best.is_none_or(|(b, _)| s.worst(b) != b) {
                best = Some((s, line));
            }
        }
    }
    if let Some((state, line)) = best {
        return Verdict { state, evidence: bounded(line.trim()) };
    }
    let Some(exit) = exit else {
        return Verdict { state: JobState::Unknown, evidence: "no exit status and no slurmstepd message".into() };
    };
    let state = if exit.signal == libc::SIGTERM || exit.signal == libc::SIGKILL {
        JobState::Cancelled
    } else if exit.signal != 0 || exit.code != 0 {
        JobState::Failed
    } else {
        JobState::Completed
    };
    Verdict { state, evidence: exit.evidence() }
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_EVIDENCE {
        return s.to_string();
    }
    let mut end = MAX_EVIDENCE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: JobIds = JobIds { job_id: 123, array: None };
    const OK: Option<ExitStatus> = Some(ExitStatus { code: 0, signal: 0, core_dumped: false });

    fn exit(code: i32, signal: i32) -> Option<ExitStatus> {
        Some(ExitStatus { code, signal, core_dumped: false })
    }

    fn state_of(lines: &[&str], e: Option<ExitStatus>) -> Verdict {
        classify(lines.iter().copied(), &IDS, e)
    }

    /// The words of `ExitStatus::evidence`, which the ledger stores as nothing beside the exit
    /// status they come from: an old ledger holds them, so they stay.
    #[test]
    fn evidence_from_the_exit_status_alone_is_worded_as_the_ledger_stores_it() {
        let words = |e| state_of(&[], e).evidence;
        assert_eq!(words(OK), "exit code 0 (exit 0:0)");
        assert_eq!(words(exit(2, 0)), "exit code 2 (exit 2:0)");
        assert_eq!(words(exit(0, 11)), "killed by signal 11 (exit 0:11)");
        assert_eq!(words(exit(0, 9)), "killed by signal 9 and no slurmstepd message (exit 0:9)");
        assert_eq!(words(exit(0, 15)), "killed by signal 15 and no slurmstepd message (exit 0:15)");
    }

    #[test]
    fn time_limit_is_timeout() {
        let l = "slurmstepd: error: *** JOB 123 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO TIME LIMIT ***";
        let v = state_of(&["hello", l, "bye"], exit(0, 15));
        assert_eq!(v, Verdict { state: JobState::Timeout, evidence: l.into() });
        let step = "slurmstepd: error: *** STEP 123.0 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO TIME LIMIT ***";
        assert_eq!(state_of(&[step], exit(0, 9)).state, JobState::Timeout);
    }

    #[test]
    fn cancel_with_or_without_uid_is_cancelled() {
        for l in [
            "slurmstepd: error: *** JOB 123 ON n1 CANCELLED AT 2026-01-02T03:04:05 ***",
            "slurmstepd: error: *** JOB 123 ON n1 CANCELLED AT 2026-01-02T03:04:05 BY 1000 ***",
            "slurmstepd: error: *** JOB 123 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO PREEMPTION ***",
        ] {
            assert_eq!(state_of(&[l], exit(0, 15)), Verdict { state: JobState::Cancelled, evidence: l.into() });
        }
        // A single step cancelled is not the job's end.
        let step = "slurmstepd: error: *** STEP 123.0 ON n1 CANCELLED AT 2026-01-02T03:04:05 ***";
        assert_eq!(state_of(&[step], OK).state, JobState::Completed);
    }

    #[test]
    fn oom_and_node_fail() {
        let oom = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=123.batch. Some of your processes \
                   may have been killed by the cgroup out-of-memory handler.";
        assert_eq!(state_of(&[oom], exit(0, 9)).state, JobState::OutOfMemory);
        assert_eq!(state_of(&[oom], OK).state, JobState::OutOfMemory);
        let old = "slurmstepd: error: Detected 2 oom-kill event(s) in step 123.0 cgroup.";
        assert_eq!(state_of(&[old], exit(1, 0)).state, JobState::OutOfMemory);
        let oom2 = "slurmstepd: error: Job 123 hit Out Of Memory";
        assert_eq!(state_of(&[oom2], exit(1, 0)).state, JobState::OutOfMemory);
        let nf = "slurmstepd: error: *** JOB 123 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO NODE FAILURE ***";
        assert_eq!(state_of(&[nf], exit(0, 9)).state, JobState::NodeFail);
        // Several causes: the most specific (the collector's order) wins, with its own line.
        let tl = "*** JOB 123 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO TIME LIMIT ***";
        assert_eq!(state_of(&[oom, tl], exit(0, 9)), Verdict { state: JobState::Timeout, evidence: tl.into() });
    }

    #[test]
    fn other_jobs_lines_are_ignored() {
        for l in [
            "slurmstepd: error: *** JOB 1234 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO TIME LIMIT ***",
            "slurmstepd: error: *** JOB 12 ON n1 CANCELLED AT 2026-01-02T03:04:05 ***",
            "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=1123.batch.",
            "slurmstepd: error: *** JOB 122 ON n123 CANCELLED AT 2026-01-02T03:04:05 ***",
            "slurmstepd: error: *** JOB 9 ON n1 CANCELLED AT 2026-01-02T03:04:05 BY 123 ***",
            "slurmstepd: error: *** JOB 123_4 ON n1 CANCELLED AT 2026-01-02T03:04:05 ***",
            "my program says: SUBJOB 123 was cancelled",
        ] {
            assert_eq!(state_of(&[l], OK).state, JobState::Completed, "{l}");
        }
        // A job id that looks like a year does not match the date.
        let year = JobIds { job_id: 2026, array: None };
        let l = "*** JOB 77 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO TIME LIMIT ***";
        assert_eq!(classify([l], &year, OK).state, JobState::Completed);
        // An array task's own line in the array form counts.
        let arr = JobIds { job_id: 130, array: Some((123, 4)) };
        let l = "*** JOB 123_4 ON n1 CANCELLED AT 2026-01-02T03:04:05 ***";
        assert_eq!(classify([l], &arr, OK).state, JobState::Cancelled);
    }

    #[test]
    fn exit_status_decides_without_a_message() {
        assert_eq!(state_of(&[], OK).state, JobState::Completed);
        let v = state_of(&["error: something"], exit(3, 0));
        assert_eq!(v.state, JobState::Failed);
        assert!(v.evidence.contains("exit code 3"), "{}", v.evidence);
        assert_eq!(state_of(&[], exit(0, 11)).state, JobState::Failed);
        assert_eq!(state_of(&[], exit(0, 6)).state, JobState::Failed);
        let v = state_of(&[], exit(0, 15));
        assert_eq!(v.state, JobState::Cancelled);
        assert!(v.evidence.contains("no slurmstepd message"), "{}", v.evidence);
        assert_eq!(state_of(&[], exit(0, 9)).state, JobState::Cancelled);
        assert_eq!(state_of(&[], None).state, JobState::Unknown);
    }

    #[test]
    fn evidence_is_bounded() {
        let long = format!("*** JOB 123 ON n1 CANCELLED AT x ***{}", "é".repeat(1000));
        let v = state_of(&[&long], OK);
        assert_eq!(v.state, JobState::Cancelled);
        assert!(v.evidence.len() <= MAX_EVIDENCE + 3);
    }
}
