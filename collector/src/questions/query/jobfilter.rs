//! The sacct-like job filters of every query (`query jobs`, the analyses, the reports, export),
//! as given on the command line (`crate::cli::questions::JobFilterFlags`, the one clap group
//! each command flattens), and what they become: a [`Filter`].

use super::filter::{self, Filter, JobSel};
use crate::questions::timefmt;
use runledger_record::{JobState, Module};

#[derive(Debug, Clone, Default)]
pub struct JobFilterArgs {
    /// Only these jobs (ID, or ARRAYID_TASK for one array task).
    pub jobs: Vec<JobSel>,

    /// Only jobs of these users (names or numeric uids).
    pub user: Vec<String>,

    /// Only jobs charged to these accounts.
    pub account: Vec<String>,

    /// Only jobs in these partitions.
    pub partition: Vec<String>,

    /// Only jobs of these clusters.
    pub cluster: Vec<String>,

    /// Only jobs still running at or after this time.
    pub starttime: Option<i64>,

    /// Only jobs that started at or before this time.
    pub endtime: Option<i64>,

    /// Only jobs in these Slurm states (sacct names or short forms).
    pub state: Vec<JobState>,

    /// Only jobs that loaded this module (any version unless given); repeat to require several.
    pub module: Vec<Module>,

    /// Only jobs with this tag (KEY alone: with any value); repeat to require several.
    pub tag: Vec<(String, Option<String>)>,

    /// Only jobs with this job-level fact (parameters included: param.pair_style=lj/cut) at exactly this value; repeat to require several.
    pub fact: Vec<(String, String)>,

    /// Only jobs whose logs name this program (any case; `openfoam` also matches "OpenFOAM pimpleFoam").
    pub program: Vec<String>,

    /// Only jobs whose logs ended so: success, failed, incomplete, unknown.
    pub outcome: Vec<String>,

    /// Only jobs whose logs show this failure category (e.g. input_error, time_limit).
    pub category: Vec<String>,

    /// Set by the daemon, never from the command line: the uid a socket caller is narrowed to.
    pub owner_uid: Option<u32>,

    /// An account manager's view, set by the daemon for a manager asking through the socket.
    pub managed: Option<filter::Managed>,
}

impl JobFilterArgs {
    pub fn to_filter(&self) -> Filter {
        Filter {
            jobs: self.jobs.clone(),
            users: self.user.clone(),
            uid: self.owner_uid,
            managed: self.managed.clone(),
            accounts: self.account.clone(),
            partitions: self.partition.clone(),
            clusters: self.cluster.clone(),
            states: self.state.clone(),
            modules: self.module.clone(),
            tags: self.tag.clone(),
            facts: self.fact.clone(),
            programs: self.program.clone(),
            outcomes: self.outcome.clone(),
            categories: self.category.clone(),
            start: self.starttime,
            end: self.endtime,
        }
    }

    /// -S after -E is a usage error.
    pub fn check(&self) -> Result<(), String> {
        if let (Some(s), Some(e)) = (self.starttime, self.endtime) {
            if s > e {
                return Err(format!(
                    "--starttime ({}) is after --endtime ({})",
                    timefmt::display(Some(s)),
                    timefmt::display(Some(e))
                ));
            }
        }
        Ok(())
    }
}
