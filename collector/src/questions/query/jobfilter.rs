//! The sacct-like job filters of every query (`query jobs`, the analyses, the reports, export):
//! defined once, as one clap group each command flattens, so a filter added here works everywhere.

use super::filter::{self, Filter, JobSel};
use crate::questions::timefmt;
use runledger_record::{JobState, Module};

/// Where `--help` lists the filters (each argument names it: a group-wide heading would carry
/// over to the arguments a command declares after the group).
const HEADING: &str = "Job filters (sacct-like)";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct JobFilterArgs {
    /// Only these jobs (ID, or ARRAYID_TASK for one array task).
    #[arg(help_heading = HEADING, short = 'j', long, value_name = "ID[,ID]", value_delimiter = ',', value_parser = filter::parse_job_sel)]
    pub jobs: Vec<JobSel>,

    /// Only jobs of these users (names or numeric uids).
    #[arg(help_heading = HEADING, short = 'u', long, value_name = "NAME[,NAME]", value_delimiter = ',', value_parser = filter::parse_name)]
    pub user: Vec<String>,

    /// Only jobs charged to these accounts.
    #[arg(help_heading = HEADING, short = 'A', long, value_name = "ACCOUNT[,ACCOUNT]", value_delimiter = ',', value_parser = filter::parse_name)]
    pub account: Vec<String>,

    /// Only jobs in these partitions.
    #[arg(help_heading = HEADING, short = 'p', long, value_name = "PARTITION[,PARTITION]", value_delimiter = ',', value_parser = filter::parse_name)]
    pub partition: Vec<String>,

    /// Only jobs of these clusters.
    #[arg(help_heading = HEADING, short = 'M', long, value_name = "CLUSTER[,CLUSTER]", value_delimiter = ',', value_parser = filter::parse_name)]
    pub cluster: Vec<String>,

    /// Only jobs still running at or after this time.
    #[arg(help_heading = HEADING, short = 'S', long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub starttime: Option<i64>,

    /// Only jobs that started at or before this time.
    #[arg(help_heading = HEADING, short = 'E', long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub endtime: Option<i64>,

    /// Only jobs in these Slurm states (sacct names or short forms).
    #[arg(help_heading = HEADING, short = 's', long, value_name = "STATE[,STATE]", value_delimiter = ',', value_parser = filter::parse_state)]
    pub state: Vec<JobState>,

    /// Only jobs that loaded this module (any version unless given); repeat to require several.
    #[arg(help_heading = HEADING, long, value_name = "NAME[/VERSION]", value_parser = filter::parse_module)]
    pub module: Vec<Module>,

    /// Only jobs with this tag (KEY alone: with any value); repeat to require several.
    #[arg(help_heading = HEADING, long, value_name = "KEY=VALUE", value_parser = filter::parse_tag)]
    pub tag: Vec<(String, Option<String>)>,

    /// Only jobs with this job-level fact (parameters included: param.pair_style=lj/cut) at exactly this value; repeat to require several.
    #[arg(help_heading = HEADING, long, value_name = "NAME=VALUE", value_parser = filter::parse_fact)]
    pub fact: Vec<(String, String)>,

    /// Only jobs whose logs name this program (any case; `openfoam` also matches "OpenFOAM pimpleFoam").
    #[arg(help_heading = HEADING, long, value_name = "NAME[,NAME]", value_delimiter = ',', value_parser = filter::parse_name)]
    pub program: Vec<String>,

    /// Only jobs whose logs ended so: success, failed, incomplete, unknown.
    #[arg(help_heading = HEADING, long, value_name = "OUTCOME[,OUTCOME]", value_delimiter = ',', value_parser = filter::parse_outcome)]
    pub outcome: Vec<String>,

    /// Only jobs whose logs show this failure category (e.g. input_error, time_limit).
    #[arg(help_heading = HEADING, long, value_name = "CATEGORY[,CATEGORY]", value_delimiter = ',', value_parser = filter::parse_category)]
    pub category: Vec<String>,

    /// Set by the daemon, never from the command line: the uid a socket caller is narrowed to.
    #[arg(skip)]
    pub owner_uid: Option<u32>,

    /// An account manager's view, set by the daemon for a manager asking through the socket.
    #[arg(skip)]
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
