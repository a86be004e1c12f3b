//! The Epilog environment slurmd gives us, parsed once and tolerantly.
//!
//! slurmd runs `Epilog=` as root with a small environment and **no PATH**. Every variable may be
//! missing or (in theory) garbage; a bad value becomes `None` plus a warning, never a failure.
//! Only `SLURM_JOB_ID` is required: without it there is no job to report.
//!
//! | variable | Slurm | meaning |
//! |---|---|---|
//! | SLURM_JOB_ID, SLURM_JOB_UID, SLURM_JOB_USER | 22.05 | the job and its owner |
//! | SLURM_JOB_GID | some versions | the owner's group (else the plugin's, else passwd) |
//! | SLURM_JOB_ACCOUNT, SLURM_JOB_PARTITION | 22.05 | |
//! | SLURM_JOB_WORK_DIR | 22.05, may be absent | else the batch step's cwd |
//! | SLURM_JOB_EXIT_CODE | 22.05 | raw wait(2) status of the batch script |
//! | SLURM_JOB_EXIT_CODE2 | 22.05 | the same as `exit:signal` |
//! | SLURM_JOB_DERIVED_EC | 22.05 | raw wait status: worst of the steps |
//! | SLURM_CLUSTER_NAME, SLURMD_NODENAME | 22.05 | |
//! | SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_JOB_NAME | when set | for `%A %a %x` |
//! | SLURM_JOB_START_TIME, SLURM_JOB_END_TIME | 23.02+ | epoch seconds |
//! | SLURM_JOB_STDOUT, SLURM_JOB_STDERR | 23.02+ | `--output` / `--error` patterns |

use runledger_record::{ExitStatus, Timestamp};

/// What the epilog knows about the job from its environment alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobEnv {
    pub job_id: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub user: Option<String>,
    pub account: Option<String>,
    pub partition: Option<String>,
    pub work_dir: Option<String>,
    pub job_name: Option<String>,
    pub array_job_id: Option<u32>,
    pub array_task_id: Option<u32>,
    /// SLURM_JOB_EXIT_CODE, decoded from the raw wait status.
    pub exit: Option<ExitStatus>,
    /// SLURM_JOB_EXIT_CODE2 (`exit:signal`).
    pub exit2: Option<ExitStatus>,
    /// SLURM_JOB_DERIVED_EC, decoded from the raw wait status.
    pub derived_exit: Option<ExitStatus>,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub stdout_pattern: Option<String>,
    pub stderr_pattern: Option<String>,
    /// One line per variable that was set but unusable, for the log.
    pub warnings: Vec<String>,
}

impl JobEnv {
    /// Parses the environment through `get` (e.g. `|k| std::env::var(k).ok()`).
    /// Fails only when SLURM_JOB_ID is missing or not a job id; the error says which.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<JobEnv, String> {
        let job_id = match get("SLURM_JOB_ID") {
            None => return Err("SLURM_JOB_ID is not set: not running as a Slurm Epilog?".into()),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(id) if id != 0 => id,
                _ => return Err(format!("SLURM_JOB_ID={v:?} is not a job id")),
            },
        };
        let mut warnings = Vec::new();
        // slurmd prints a missing string as "(null)" (e.g. SLURM_JOB_ACCOUNT without accounting).
        let text = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty() && v != "(null)");
        let mut num = |k: &str| -> Option<i64> {
            let v = text(k)?;
            match v.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    warnings.push(format!("ignoring {k}={v:?}: not a number"));
                    None
                }
            }
        };
        let uid = num("SLURM_JOB_UID");
        let gid = num("SLURM_JOB_GID");
        let array_job_id = num("SLURM_ARRAY_JOB_ID");
        let array_task_id = num("SLURM_ARRAY_TASK_ID");
        let exit_raw = num("SLURM_JOB_EXIT_CODE");
        let derived_raw = num("SLURM_JOB_DERIVED_EC");
        let start_time = num("SLURM_JOB_START_TIME");
        let end_time = num("SLURM_JOB_END_TIME");
        let mut id32 = |k: &str, v: Option<i64>| -> Option<u32> {
            let n = v?;
            match u32::try_from(n) {
                // Slurm's NO_VAL / INFINITE are "not set", not ids.
                Ok(n) if n < 0xffff_fffe => Some(n),
                _ => {
                    warnings.push(format!("ignoring {k}={n}: out of range"));
                    None
                }
            }
        };
        let uid = id32("SLURM_JOB_UID", uid);
        let gid = id32("SLURM_JOB_GID", gid);
        let array_job_id = id32("SLURM_ARRAY_JOB_ID", array_job_id);
        let array_task_id = id32("SLURM_ARRAY_TASK_ID", array_task_id);
        let mut wait = |k: &str, v: Option<i64>| -> Option<ExitStatus> {
            let n = v?;
            match i32::try_from(n) {
                Ok(n) if n >= 0 => Some(ExitStatus::from_wait_status(n)),
                _ => {
                    warnings.push(format!("ignoring {k}={n}: not a wait status"));
                    None
                }
            }
        };
        let exit = wait("SLURM_JOB_EXIT_CODE", exit_raw);
        let derived_exit = wait("SLURM_JOB_DERIVED_EC", derived_raw);
        let exit2 = text("SLURM_JOB_EXIT_CODE2").and_then(|v| {
            let e = ExitStatus::from_code_signal(&v);
            if e.is_none() {
                warnings.push(format!("ignoring SLURM_JOB_EXIT_CODE2={v:?}: not exit:signal"));
            }
            e
        });
        let positive = |t: Option<i64>| t.filter(|&t| t > 0);
        Ok(JobEnv {
            job_id,
            uid,
            gid,
            user: text("SLURM_JOB_USER"),
            account: text("SLURM_JOB_ACCOUNT"),
            partition: text("SLURM_JOB_PARTITION"),
            work_dir: text("SLURM_JOB_WORK_DIR"),
            job_name: text("SLURM_JOB_NAME"),
            array_job_id,
            array_task_id,
            exit,
            exit2,
            derived_exit,
            cluster: text("SLURM_CLUSTER_NAME"),
            node: text("SLURMD_NODENAME"),
            start_time: positive(start_time),
            end_time: positive(end_time),
            stdout_pattern: text("SLURM_JOB_STDOUT"),
            stderr_pattern: text("SLURM_JOB_STDERR"),
            warnings,
        })
    }

    /// The job's exit: SLURM_JOB_EXIT_CODE (raw, exact), else SLURM_JOB_EXIT_CODE2.
    pub fn job_exit(&self) -> Option<ExitStatus> {
        self.exit.or(self.exit2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<JobEnv, String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        JobEnv::parse(|k| m.get(k).cloned())
    }

    #[test]
    fn full_22_05_environment() {
        let e = parse(&[
            ("SLURM_JOB_ID", "123"),
            ("SLURM_JOB_UID", "1000"),
            ("SLURM_JOB_USER", "alice"),
            ("SLURM_JOB_ACCOUNT", "physics"),
            ("SLURM_JOB_PARTITION", "debug"),
            ("SLURM_JOB_WORK_DIR", "/home/alice"),
            ("SLURM_JOB_EXIT_CODE", "768"),
            ("SLURM_JOB_EXIT_CODE2", "3:0"),
            ("SLURM_JOB_DERIVED_EC", "9"),
            ("SLURM_CLUSTER_NAME", "c1"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_JOB_START_TIME", "1700000000"),
            ("SLURM_JOB_END_TIME", "1700000100"),
            ("SLURM_JOB_STDOUT", "out-%j.txt"),
        ])
        .unwrap();
        assert_eq!(e.job_id, 123);
        assert_eq!(e.uid, Some(1000));
        assert_eq!(e.user.as_deref(), Some("alice"));
        assert_eq!(e.exit, Some(ExitStatus { code: 3, signal: 0, core_dumped: false }));
        assert_eq!(e.exit2, e.exit);
        assert_eq!(e.derived_exit, Some(ExitStatus { code: 0, signal: 9, core_dumped: false }));
        assert_eq!((e.start_time, e.end_time), (Some(1_700_000_000), Some(1_700_000_100)));
        assert_eq!(e.stdout_pattern.as_deref(), Some("out-%j.txt"));
        assert_eq!(e.stderr_pattern, None);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    }

    #[test]
    fn job_id_missing_or_garbage_is_an_error() {
        assert!(parse(&[]).unwrap_err().contains("not set"));
        assert!(parse(&[("SLURM_JOB_ID", "12abc")]).unwrap_err().contains("not a job id"));
        assert!(parse(&[("SLURM_JOB_ID", "-1")]).is_err());
        assert!(parse(&[("SLURM_JOB_ID", "0")]).is_err());
        assert!(parse(&[("SLURM_JOB_ID", "99999999999")]).is_err());
        assert_eq!(parse(&[("SLURM_JOB_ID", " 42\n")]).unwrap().job_id, 42);
    }

    #[test]
    fn garbage_values_become_none_with_a_warning() {
        let e = parse(&[
            ("SLURM_JOB_ID", "7"),
            ("SLURM_JOB_UID", "alice"),
            ("SLURM_JOB_EXIT_CODE", "-5"),
            ("SLURM_JOB_EXIT_CODE2", "x:y"),
            ("SLURM_JOB_DERIVED_EC", "1e9"),
            ("SLURM_ARRAY_TASK_ID", "4294967294"),
            ("SLURM_JOB_START_TIME", "0"),
            ("SLURM_JOB_END_TIME", "soon"),
            ("SLURM_JOB_USER", "   "),
            ("SLURM_JOB_ACCOUNT", "(null)"),
        ])
        .unwrap();
        assert_eq!((e.uid, e.exit, e.exit2, e.derived_exit, e.array_task_id), (None, None, None, None, None));
        assert_eq!((e.start_time, e.end_time, e.user.as_deref(), e.account.as_deref()), (None, None, None, None));
        assert_eq!(e.warnings.len(), 6, "{:?}", e.warnings);
        assert_eq!(e.job_exit(), None);
    }

    #[test]
    fn exit_code2_is_the_fallback() {
        let e = parse(&[("SLURM_JOB_ID", "7"), ("SLURM_JOB_EXIT_CODE2", "0:15")]).unwrap();
        assert_eq!(e.job_exit(), Some(ExitStatus { code: 0, signal: 15, core_dumped: false }));
    }
}
