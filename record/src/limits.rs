//! What a job asked for: its memory and its time limit, for the efficiency report.
//!
//! A report of how well a job used what it held needs what it held. CPUs are in every
//! [`StepStart`](crate::StepStart) already; memory comes from the SPANK item `S_JOB_ALLOC_MEM`
//! (the job's memory on the node, MiB, in 22.05 and 24.11 alike). The time limit is not a SPANK
//! item: from 23.02 the step's environment carries it (`SLURM_JOB_END_TIME`, the projected end,
//! minus `SLURM_JOB_START_TIME`); on 22.05 the batch node's epilog asks slurmctld once, bounded
//! (`scontrol show job -o ID`); otherwise the record says why it is empty.

use serde::{Deserialize, Serialize};

/// Slurm keeps an unlimited job's projected end a year after its start (`YEAR_SECONDS`):
/// a difference this large is no limit.
pub const UNLIMITED_SPAN_S: u64 = 365 * 86_400;

/// A job's time limit and where it was learned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TimeLimit {
    /// Seconds; absent when the job has no limit (`UNLIMITED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    pub source: LimitSource,
}

/// Where a [`TimeLimit`] came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// The step's environment (`SLURM_JOB_END_TIME` − `SLURM_JOB_START_TIME`, 23.02+).
    Environment,
    /// `scontrol show job -o`, asked by the batch node's epilog.
    Scontrol,
}

impl LimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Environment => "environment",
            LimitSource::Scontrol => "scontrol",
        }
    }
}

/// The limit a step's start and end times from its environment imply (23.02+ sets both in every
/// step); None when either is missing or they make no sense.
pub fn limit_from_env(start: Option<&str>, end: Option<&str>) -> Option<TimeLimit> {
    let start: i64 = start?.trim().parse().ok()?;
    let end: i64 = end?.trim().parse().ok()?;
    if start <= 0 || end <= start {
        return None;
    }
    let span = (end - start) as u64;
    Some(TimeLimit { seconds: (span < UNLIMITED_SPAN_S).then_some(span), source: LimitSource::Environment })
}

/// Parses a Slurm duration as scontrol prints `TimeLimit=`: `[D-]HH:MM:SS`, `MM:SS`, `MM`, or
/// `UNLIMITED`/`INFINITE` (`Ok(None)`). Anything else (`Partition_Limit`, `NONE`) is an error.
pub fn parse_slurm_duration(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("UNLIMITED") || s.eq_ignore_ascii_case("INFINITE") {
        return Ok(None);
    }
    let bad = || format!("not a Slurm duration: {s:?}");
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().map_err(|_| bad())?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (h, m, sec) = match (parts.as_slice(), days > 0) {
        // With days, "D-HH", "D-HH:MM" and "D-HH:MM:SS" (sbatch's forms).
        ([h], true) => (*h, 0, 0),
        ([h, m], true) => (*h, *m, 0),
        // Without, "MM", "MM:SS" and "HH:MM:SS".
        ([m], false) => (0, *m, 0),
        ([m, sec], false) => (0, *m, *sec),
        ([h, m, sec], _) => (*h, *m, *sec),
        _ => return Err(bad()),
    };
    if m >= 60 && (days > 0 || parts.len() == 3) || sec >= 60 {
        return Err(bad());
    }
    Ok(Some(days * 86_400 + h * 3600 + m * 60 + sec))
}

/// The `TimeLimit=` of one `scontrol show job -o` line.
pub fn limit_from_scontrol(line: &str) -> Result<TimeLimit, String> {
    let value = line
        .split_ascii_whitespace()
        .find_map(|tok| tok.strip_prefix("TimeLimit="))
        .ok_or_else(|| "no TimeLimit= in scontrol's answer".to_string())?;
    Ok(TimeLimit { seconds: parse_slurm_duration(value)?, source: LimitSource::Scontrol })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_form_scontrol_and_sbatch_write() {
        assert_eq!(parse_slurm_duration("00:05:00"), Ok(Some(300)));
        assert_eq!(parse_slurm_duration("1-02:03:04"), Ok(Some(86_400 + 7384)));
        assert_eq!(parse_slurm_duration("2-00"), Ok(Some(2 * 86_400)));
        assert_eq!(parse_slurm_duration("10"), Ok(Some(600)));
        assert_eq!(parse_slurm_duration("10:30"), Ok(Some(630)));
        assert_eq!(parse_slurm_duration("UNLIMITED"), Ok(None));
        for bad in ["Partition_Limit", "", "1:2:3:4", "00:61:00", "x-01:00:00", "-5"] {
            assert!(parse_slurm_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scontrol_line_gives_its_time_limit() {
        let line = "JobId=42 JobName=wrap UserId=rltest(1001) JobState=COMPLETED Reason=None \
                    RunTime=00:00:01 TimeLimit=00:10:00 TimeMin=N/A SubmitTime=2026-12-04T19:00:00";
        assert_eq!(limit_from_scontrol(line), Ok(TimeLimit { seconds: Some(600), source: LimitSource::Scontrol }));
        assert!(limit_from_scontrol("slurm_load_jobs error: Invalid job id specified").is_err());
        let unl = limit_from_scontrol("JobId=1 TimeLimit=UNLIMITED").unwrap();
        assert_eq!(unl.seconds, None);
    }

    #[test]
    fn environment_limit_is_projected_end_minus_start() {
        let l = limit_from_env(Some("1000"), Some("1600")).unwrap();
        assert_eq!((l.seconds, l.source), (Some(600), LimitSource::Environment));
        assert_eq!(limit_from_env(Some("1000"), Some(&(1000 + UNLIMITED_SPAN_S).to_string())).unwrap().seconds, None);
        assert_eq!(limit_from_env(None, Some("5")), None);
        assert_eq!(limit_from_env(Some("9"), Some("5")), None);
        assert_eq!(limit_from_env(Some("x"), Some("5")), None);
    }
}
