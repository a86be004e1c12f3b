//! The command-line definitions of the questions: every subcommand that reads the ledger
//! (`query …`, `export`, `report`, `audit`, `parse`), the job filters they share
//! ([`JobFilterFlags`]) and the one definition of the output flags ([`OutputFlags`],
//! [`PlotFlags`]). Each converts (`From`) into the plain options its question takes
//! ([`crate::questions`] knows nothing of clap).

use crate::questions::analytics::{
    CoUsageArgs, EventsArgs, ExportArgs, ModulesArgs, OutArgs, PackagesArgs, SeriesArgs, SummaryArgs, WhoUsedArgs,
};
use crate::questions::audit::AuditArgs;
use crate::questions::export::ExportFormat;
use crate::questions::html_report::ReportArgs;
use crate::questions::jobs::{JobArgs, JobsArgs};
use crate::questions::parse::ParseArgs;
use crate::questions::plot::{self, PlotTarget};
use crate::questions::query::efficiency::{parse_by, EfficiencyArgs, EfficiencyBy};
use crate::questions::query::errors::{ErrorsArgs, ErrorsBy};
use crate::questions::query::events;
use crate::questions::query::filter::{self, JobSel};
use crate::questions::query::jobfilter::JobFilterArgs;
use crate::questions::query::output::{self, Field};
use crate::questions::query::summary::{self, Key};
use crate::questions::query::timeline::{self, IdleArgs};
use crate::questions::timefmt;
use clap::builder::PossibleValue;
use runledger_ledger::timeline::IDLE_BELOW;
use runledger_record::{JobState, Module};
use std::path::PathBuf;

/// Where `--help` lists the filters (each argument names it: a group-wide heading would carry
/// over to the arguments a command declares after the group).
const HEADING: &str = "Job filters (sacct-like)";

/// The sacct-like job filters of every query (`query jobs`, the analyses, the reports, export):
/// one group each command flattens, so a filter added here works everywhere.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JobFilterFlags {
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

/// The output flags of every command that prints rows: `--json`, `--csv`, `-n`. One definition,
/// flattened into each; a command whose words differ says so with `mut_arg` (the flags stay the
/// same).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputFlags {
    /// Print a JSON array of row objects (raw numbers: seconds, fractions 0–1).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print CSV (raw numbers: seconds, fractions 0–1).
    #[arg(long)]
    pub csv: bool,

    /// No header line (table and CSV).
    #[arg(short = 'n', long)]
    pub noheader: bool,
}

/// `--plot FILE`: the chart of a command that draws one.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PlotFlags {
    /// Also draw a chart: FILE.png (1200x800) or FILE.svg.
    #[arg(long, value_name = "FILE", value_parser = plot::parse_plot_target)]
    pub plot: Option<PlotTarget>,
}

#[derive(clap::Args, Debug)]
pub struct SummaryFlags {
    #[command(flatten)]
    pub chart: PlotFlags,

    /// Group by these keys: user, account, partition, cluster, program, module, module_version,
    /// package, package_version (Python packages the jobs imported), state, category, nodes, ranks, year, month, week, day, hour, weekday, or fact:NAME (a
    /// job-level fact, input parameters included: fact:param.pair_style).
    #[arg(long, required = true, value_name = "KEY[,KEY]", value_delimiter = ',', value_parser = summary::parse_key)]
    pub by: Vec<Key>,

    /// Sort by this column (metrics descending, keys ascending) [default: keys for time and
    /// size keys, else jobs].
    #[arg(long, value_name = "COLUMN")]
    pub sort: Option<String>,

    /// Only the first N rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct ModulesFlags {
    #[command(flatten)]
    pub chart: PlotFlags,

    /// Only the top N rows.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Rank by distinct users instead of jobs.
    #[arg(long)]
    pub by_users: bool,

    /// One row per module name (all versions together) instead of per version.
    #[arg(long)]
    pub names: bool,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct PackagesFlags {
    #[command(flatten)]
    pub chart: PlotFlags,

    /// Only the top N rows.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Rank by distinct users instead of jobs.
    #[arg(long)]
    pub by_users: bool,

    /// One row per package name (all versions together) instead of per version.
    #[arg(long)]
    pub names: bool,

    /// Only processes run by this Python version (3, 3.11 or 3.11.2).
    #[arg(long, value_name = "VERSION", value_parser = crate::questions::query::packages::parse_interpreter)]
    pub interpreter: Option<String>,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct WhoUsedFlags {
    /// The module: NAME (every version, one row each) or NAME/VERSION.
    #[arg(id = "target", value_name = "MODULE[/VERSION]", value_parser = filter::parse_module,
          required_unless_present = "python", conflicts_with = "python")]
    pub target: Option<Module>,

    /// A Python package the jobs' processes imported instead of a module: NAME (every version),
    /// NAME/VERSION or NAME==VERSION.
    #[arg(long, value_name = "PACKAGE[/VERSION]", value_parser = crate::questions::query::packages::parse_package)]
    pub python: Option<Module>,

    /// Compare jobs started before this time with jobs started from it (an update's impact).
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true,
          conflicts_with_all = ["after", "before"])]
    pub split: Option<i64>,

    /// Only jobs started at or after this time.
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub after: Option<i64>,

    /// Only jobs started before this time.
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub before: Option<i64>,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct CoUsageFlags {
    /// Only the top N pairs.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Pairs of module versions instead of module names.
    #[arg(long)]
    pub versions: bool,

    /// Only pairs loaded together by at least N jobs.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub min_jobs: i64,

    /// Count the Python packages the jobs' processes imported too, as python:NAME (with
    /// --versions python:NAME/VERSION), paired with modules and with each other.
    #[arg(long)]
    pub python: bool,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct EventsFlags {
    /// Only these kinds: step_started, task_exited, step_ended, job_ended.
    #[arg(long, value_name = "KIND[,KIND]", value_delimiter = ',', value_parser = events::parse_kind)]
    pub kind: Vec<String>,

    /// Only transitions from this state (PENDING, RUNNING).
    #[arg(long, value_name = "STATE[,STATE]", value_delimiter = ',')]
    pub from_state: Vec<String>,

    /// Only transitions to this state (RUNNING, EXITED, ENDED, or a job state: COMPLETED, FAILED, …).
    #[arg(long, value_name = "STATE[,STATE]", value_delimiter = ',')]
    pub to_state: Vec<String>,

    /// Only events at or after this time.
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub after: Option<i64>,

    /// Only events at or before this time.
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub before: Option<i64>,

    /// At most N events.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct SeriesFlags {
    #[command(flatten)]
    pub chart: PlotFlags,

    /// Interval length: a number and s, m, h, d or w (30s, 10m, 1h, 1d, 1w).
    #[arg(long, value_name = "DURATION", value_parser = events::parse_interval)]
    pub interval: i64,

    /// Weight by nodes: the plot shows busy nodes instead of running jobs (utilization).
    #[arg(long)]
    pub node_weighted: bool,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("plot", |a| a.help("Also draw a chart to this file (.png or .svg, 1200×800)").help_heading("Output")),
    mut_arg("json", |a| a.help("Print JSON").help_heading("Output")),
    mut_arg("csv", |a| a.help("Print CSV").help_heading("Output")),
    mut_arg("noheader", |a| a.help_heading("Output"))
)]
pub struct ErrorsFlags {
    /// Group by: category (default), user, program or account.
    #[arg(long, value_enum, default_value_t = ErrorsBy::Category)]
    pub by: ErrorsBy,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub chart: PlotFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("plot", |a| a.help("Also draw efficiency against ranks to this file (.png or .svg, 1200×800)").help_heading("Output")),
    mut_arg("json", |a| a.help("Print JSON").help_heading("Output")),
    mut_arg("csv", |a| a.help("Print CSV").help_heading("Output")),
    mut_arg("noheader", |a| a.help_heading("Output"))
)]
pub struct EfficiencyFlags {
    /// Group by: ranks (default), partition, nodes, program, or fact:NAME (a job-level fact, e.g. fact:param.pair_style).
    #[arg(long, value_name = "KEY", value_parser = parse_by, default_value = "ranks")]
    pub by: EfficiencyBy,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub chart: PlotFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct ExportFlags {
    /// Output format.
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: ExportFormat,

    /// Output file ('-' for standard output; required for Parquet).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,

    /// No progress bar (one is drawn on standard error when writing to a file from a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// Write Hive-style Parquet partitions by cluster and/or month under the directory -o names
    /// (DIR/cluster=c1/month=2026-11/part-0.parquet; month: the UTC month of the start), only
    /// those that changed since the last export to DIR (DIR/_runledger_export.json). (-p,
    /// --partition is the Slurm partition filter, as everywhere.)
    #[arg(long, value_name = "KEY[,KEY]", value_parser = crate::questions::export_parts::parse_partition)]
    pub partition_by: Option<crate::questions::export_parts::PartKeys>,

    #[command(flatten)]
    pub filter: JobFilterFlags,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReportFlags {
    /// Write the report to DIR/index.html (DIR is created if missing).
    #[arg(long, value_name = "DIR", required = true)]
    pub html: PathBuf,

    /// The page itself, DIR/index.html (set from --html; the socket renders it elsewhere).
    #[arg(skip)]
    pub page: PathBuf,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,

    #[command(flatten)]
    pub filter: JobFilterFlags,
}

#[derive(clap::Args, Debug)]
pub struct AuditFlags {
    /// Look at jobs and nodes active from this time.
    #[arg(short = 'S', long, value_name = "TIME", default_value = "now-7days",
          value_parser = timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub since: i64,

    /// Do not judge activity newer than this (jobs still running or on their way).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = events::parse_interval)]
    pub grace: i64,

    /// A node that reported in the window but not for this long is reported silent.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = events::parse_interval)]
    pub silent_after: i64,

    /// The canary log written by packaging/canary (time, cluster, job id per line)
    /// [default: /var/log/runledger/canaries.tsv when it exists].
    #[arg(long, value_name = "FILE")]
    pub canaries: Option<PathBuf>,

    /// Only these clusters.
    #[arg(short = 'M', long, value_name = "CLUSTER[,CLUSTER]", value_delimiter = ',')]
    pub cluster: Vec<String>,

    /// Print the findings as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ParseFlags {
    /// Log files to read.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// A site rules file, on top of the built-in rules [default: the configuration's [logs] rules,
    /// /etc/runledger/parsers.toml, when it exists].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Only the built-in rules (ignore the site's rules file).
    #[arg(long, conflicts_with = "rules")]
    pub builtin: bool,

    /// Also show the job-level verdict of all the files together, as the epilog combines one job's
    /// stdout and stderr (a failure anywhere wins).
    #[arg(long)]
    pub combine: bool,

    /// Print JSON: an array with one object per file (and a "combined" object with --combine).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("json", |a| a.help("Print a JSON array of job objects (all fields, modules, tags, steps and tasks)")),
    mut_arg("csv", |a| a.help("Print CSV (the -o fields)")),
    mut_arg("noheader", |a| a.help("No header line"))
)]
pub struct JobsFlags {
    #[command(flatten)]
    pub filter: JobFilterFlags,

    /// Fields to show (see --helpformat).
    #[arg(short = 'o', long, value_name = "FIELD[,FIELD]", value_delimiter = ',', value_parser = output::parse_field)]
    pub format: Vec<&'static Field>,

    /// List the fields -o accepts, and exit.
    #[arg(long)]
    pub helpformat: bool,

    #[command(flatten)]
    pub out: OutputFlags,

    /// Only the newest N matching jobs (still listed oldest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct IdleFlags {
    /// Idle below this fraction of the allocation (0 to 1).
    #[arg(long, value_name = "FRACTION", default_value_t = IDLE_BELOW, value_parser = timeline::parse_fraction)]
    pub below: f64,

    /// For at least this long in a row: N followed by s, m, h, d (30s, 10m, 1h).
    #[arg(long = "for", value_name = "DURATION", default_value = "1h", value_parser = events::parse_interval)]
    pub for_s: i64,

    /// Only the N idlest jobs.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    #[command(flatten)]
    pub filter: JobFilterFlags,

    #[command(flatten)]
    pub out: OutputFlags,
}

#[derive(clap::Args, Debug)]
pub struct JobFlags {
    /// The job id (or ARRAYID_TASK).
    #[arg(value_name = "ID", value_parser = filter::parse_job_sel)]
    pub id: JobSel,

    /// The cluster, when several share the ledger.
    #[arg(short = 'M', long, value_name = "CLUSTER", value_parser = filter::parse_name)]
    pub cluster: Option<String>,

    /// Print JSON: an array with one object per job recorded under this id, newest first.
    #[arg(long)]
    pub json: bool,

    /// Show the job's use over time instead: CPU cores and memory per node, and its idle spans.
    #[arg(long, conflicts_with = "json")]
    pub timeline: bool,

    /// Also draw the timeline: FILE.png (1200x800) or FILE.svg (CPU cores per node, the
    /// allocation as a line, memory on the right axis).
    #[command(flatten)]
    pub chart: PlotFlags,
    /// How well the job used what it asked for, as seff says it: CPU efficiency, memory peak
    /// against the allocation, time used against the limit, the failure category with its
    /// evidence, and a suggestion where the numbers call for one (also `runledger-seff ID`).
    #[arg(long)]
    pub efficiency: bool,
}

// The value enums' words on the command line (what `#[derive(clap::ValueEnum)]` would give).

impl clap::ValueEnum for ErrorsBy {
    fn value_variants<'a>() -> &'a [Self] {
        &[ErrorsBy::Category, ErrorsBy::User, ErrorsBy::Program, ErrorsBy::Account]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ErrorsBy::Category => "category",
            ErrorsBy::User => "user",
            ErrorsBy::Program => "program",
            ErrorsBy::Account => "account",
        }))
    }
}

impl clap::ValueEnum for ExportFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[ExportFormat::Parquet, ExportFormat::Csv, ExportFormat::Jsonl]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }))
    }
}

// What each question is given: its plain options.

impl From<JobFilterFlags> for JobFilterArgs {
    fn from(f: JobFilterFlags) -> Self {
        JobFilterArgs {
            jobs: f.jobs,
            user: f.user,
            account: f.account,
            partition: f.partition,
            cluster: f.cluster,
            starttime: f.starttime,
            endtime: f.endtime,
            state: f.state,
            module: f.module,
            tag: f.tag,
            fact: f.fact,
            program: f.program,
            outcome: f.outcome,
            category: f.category,
            owner_uid: f.owner_uid,
            managed: f.managed,
        }
    }
}

impl From<OutputFlags> for OutArgs {
    fn from(o: OutputFlags) -> Self {
        OutArgs { json: o.json, csv: o.csv, noheader: o.noheader }
    }
}

impl From<JobsFlags> for JobsArgs {
    fn from(a: JobsFlags) -> Self {
        JobsArgs {
            filter: a.filter.into(),
            format: a.format,
            helpformat: a.helpformat,
            out: a.out.into(),
            limit: a.limit,
        }
    }
}

impl From<JobFlags> for JobArgs {
    fn from(a: JobFlags) -> Self {
        JobArgs {
            id: a.id,
            cluster: a.cluster,
            json: a.json,
            timeline: a.timeline,
            plot: a.chart.plot,
            efficiency: a.efficiency,
        }
    }
}

impl From<IdleFlags> for IdleArgs {
    fn from(a: IdleFlags) -> Self {
        IdleArgs { below: a.below, for_s: a.for_s, limit: a.limit, filter: a.filter.into(), out: a.out.into() }
    }
}

impl From<SummaryFlags> for SummaryArgs {
    fn from(a: SummaryFlags) -> Self {
        SummaryArgs {
            plot: a.chart.plot,
            by: a.by,
            sort: a.sort,
            limit: a.limit,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<ModulesFlags> for ModulesArgs {
    fn from(a: ModulesFlags) -> Self {
        ModulesArgs {
            plot: a.chart.plot,
            top: a.top,
            by_users: a.by_users,
            names: a.names,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<PackagesFlags> for PackagesArgs {
    fn from(a: PackagesFlags) -> Self {
        PackagesArgs {
            plot: a.chart.plot,
            top: a.top,
            by_users: a.by_users,
            names: a.names,
            interpreter: a.interpreter,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<WhoUsedFlags> for WhoUsedArgs {
    fn from(a: WhoUsedFlags) -> Self {
        WhoUsedArgs {
            target: a.target,
            python: a.python,
            split: a.split,
            after: a.after,
            before: a.before,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<CoUsageFlags> for CoUsageArgs {
    fn from(a: CoUsageFlags) -> Self {
        CoUsageArgs {
            top: a.top,
            versions: a.versions,
            min_jobs: a.min_jobs,
            python: a.python,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<EventsFlags> for EventsArgs {
    fn from(a: EventsFlags) -> Self {
        EventsArgs {
            kind: a.kind,
            from_state: a.from_state,
            to_state: a.to_state,
            after: a.after,
            before: a.before,
            limit: a.limit,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<SeriesFlags> for SeriesArgs {
    fn from(a: SeriesFlags) -> Self {
        SeriesArgs {
            plot: a.chart.plot,
            interval: a.interval,
            node_weighted: a.node_weighted,
            filter: a.filter.into(),
            out: a.out.into(),
        }
    }
}

impl From<ErrorsFlags> for ErrorsArgs {
    fn from(a: ErrorsFlags) -> Self {
        ErrorsArgs {
            by: a.by,
            filter: a.filter.into(),
            plot: a.chart.plot,
            json: a.out.json,
            csv: a.out.csv,
            noheader: a.out.noheader,
        }
    }
}

impl From<EfficiencyFlags> for EfficiencyArgs {
    fn from(a: EfficiencyFlags) -> Self {
        EfficiencyArgs {
            by: a.by,
            filter: a.filter.into(),
            plot: a.chart.plot,
            json: a.out.json,
            csv: a.out.csv,
            noheader: a.out.noheader,
        }
    }
}

impl From<ExportFlags> for ExportArgs {
    fn from(a: ExportFlags) -> Self {
        ExportArgs {
            format: a.format,
            output: a.output,
            database: a.database,
            no_progress: a.no_progress,
            partition_by: a.partition_by,
            filter: a.filter.into(),
        }
    }
}

impl ReportFlags {
    /// Sets [`ReportFlags::page`] from `--html` (where it is empty) and returns it.
    pub fn page(&mut self) -> &mut PathBuf {
        if self.page.as_os_str().is_empty() {
            self.page = self.html.join("index.html");
        }
        &mut self.page
    }
}

impl From<ReportFlags> for ReportArgs {
    fn from(a: ReportFlags) -> Self {
        ReportArgs { html: a.html, page: a.page, database: a.database, filter: a.filter.into() }
    }
}

impl From<AuditFlags> for AuditArgs {
    fn from(a: AuditFlags) -> Self {
        AuditArgs {
            since: a.since,
            grace: a.grace,
            silent_after: a.silent_after,
            canaries: a.canaries,
            cluster: a.cluster,
            json: a.json,
            database: a.database,
        }
    }
}

impl From<ParseFlags> for ParseArgs {
    fn from(a: ParseFlags) -> Self {
        ParseArgs { files: a.files, rules: a.rules, builtin: a.builtin, combine: a.combine, json: a.json }
    }
}
