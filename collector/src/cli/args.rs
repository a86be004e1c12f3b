//! The `collector` command line itself: the program, its global flags and the tree of
//! subcommands. Each question's own flags are in [`super::questions`]; this file names them.

use super::questions::{
    AuditFlags, CoUsageFlags, EfficiencyFlags, ErrorsFlags, EventsFlags, ExportFlags, IdleFlags, JobFlags, JobsFlags,
    ModulesFlags, PackagesFlags, ParseFlags, ReportFlags, SeriesFlags, SummaryFlags, WhoUsedFlags,
};
use crate::failure::{Failure, FailureKind};
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use runledger_record::config::Config;
use std::path::PathBuf;

const ABOUT: &str = "runledger collector: the ledger of every Slurm job";

const LONG_ABOUT: &str = "\
runledger collector: the ledger of every Slurm job.

`collector serve` receives the node records that each node's epilog sends after every job \
(MUNGE-signed, accepted from root and the configured slurm_user only), merges them into one \
SQLite database and acknowledges a batch only once it is committed.

`collector query` reads that database, like sacct reads slurmdbd: `query jobs` lists jobs with \
sacct-like filters, `query job ID` shows everything recorded about one job. The database is private \
to the collector's user (mode 0600): other users' queries go through the daemon's local socket, which \
shows them only their own jobs (admins: root and collector.admin_group).

A compute node's queued records are sent by `runledger-epilog --flush` (the node side), not by \
the collector.

The configuration is /etc/runledger/runledger.toml, or the file named by RUNLEDGER_CONF or --config.";

const AFTER_HELP: &str = "\
Examples:
  collector serve --config /etc/runledger/runledger.toml
  collector query jobs -u alice -S now-2days
  collector query jobs -s FAILED,OOM -o JobID,User,State,ExitCode,Evidence
  collector query job 1234
  collector query errors -S now-30days --plot failures.png
  collector query efficiency --program lammps --plot scaling.png
  collector parse run/log.lammps
  collector audit --since now-30days";

#[derive(Parser, Debug)]
#[command(name = "collector", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Configuration file [default: $RUNLEDGER_CONF or /etc/runledger/runledger.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Receive node records from epilogs and merge them into the ledger.
    #[command(
        long_about = "Receive node records from epilogs and merge them into the ledger.\n\n\
            Listens on collector.listen (TCP). Each connection carries one request: a MUNGE credential \
            whose payload is the sha256 digest of the body, then the batch. Requests that are \
            unauthenticated, replayed, expired, signed by a user other than root or collector.slurm_user, \
            larger than collector.max_message_bytes, slower than collector.read_timeout_ms (the credential: \
            collector.auth_timeout_ms), or beyond collector.max_connections are refused with an error reply, logged with the peer's address and \
            the reason, and counted by reason in the ledger (table rejections).\n\n\
            Accepted batches are merged by one writer thread, many per transaction, and acknowledged \
            only after the commit. During a burst (eight or more batches waiting at once) the writer \
            commits them to the ledger's inbox instead, acknowledges them, and merges them once the \
            requests stop (and 256 of them every second while they do not); an inbox left \
            by a stopped collector is merged when it starts, and `collector audit` reports a stored batch \
            the merge refused. Logs go to stderr.\n\n\
            The database files are made mode 0600. Users' `collector query` and `collector export` are \
            answered on the local socket collector.socket (mode 0666; the caller's uid comes from \
            SO_PEERCRED): root, this daemon's user and members of collector.admin_group see every job, \
            anyone else only their own; each query runs in a child process capped by collector.query_timeout_ms, \
            query_max_memory_mb and query_max_output_bytes.",
        after_help = "Examples:\n  collector serve\n  collector serve --config /etc/runledger/runledger.toml -v\n  \
            collector serve --listen 127.0.0.1:6820 --database /tmp/ledger.db"
    )]
    Serve(ServeArgs),

    /// Answer questions about recorded jobs (sacct-style).
    #[command(
        long_about = "Answer questions about recorded jobs, sacct-style.\n\n\
            Root and the collector's user read the database named by collector.database (or --database) \
            directly, read-only, while `collector serve` writes. Anyone else is answered by the daemon \
            through its local socket (collector.socket, on the collector's host): members of \
            collector.admin_group see every job; other users see only their own jobs, as with sacct's \
            PrivateData=jobs (the caller is known from the kernel, not from any option).",
        after_help = "Examples:\n  collector query jobs -u alice\n  collector query job 1234 --json"
    )]
    Query(QueryArgs),

    /// Export jobs as one flat row each (Parquet, CSV or JSON Lines), for pandas, pyarrow, DuckDB.
    #[command(
        long_about = "Export the jobs matching the filters of `query jobs` as one flat row each: ids, user, \
            account, partition, times, state, exit, sizes, CPU, memory, the log verdict (program, outcome, \
            category), and the job's modules and facts as lists.\n\n\
            Parquet has typed columns (times as TIMESTAMP(MILLIS, UTC), lists as list<string>); CSV joins \
            lists with ';' and prints local RFC 3339 times; JSON Lines gives Unix seconds.",
        after_help = "Examples:\n  collector export -o jobs.parquet\n  \
            collector export --format csv -S 2026-01-01 -A physics > physics.csv\n  \
            collector export --format jsonl --module openmpi -o openmpi.jsonl"
    )]
    Export(Box<ExportFlags>),

    /// Write a report to look at: one self-contained HTML page of the period's answers.
    #[command(
        long_about = "Write DIR/index.html: one self-contained page (inline SVG charts, no scripts, no \
            external files) of the jobs matching the filters: headline numbers; failures by category and \
            the top failing programs, modules and users; modules by jobs and users; module versions after \
            which the module's failure rate rose; throughput, utilization and job starts by weekday and \
            hour; CPU efficiency by program and ranks; a table per account.\n\n\
            Root and the collector's user report on every job; through the socket, account managers \
            ([access.managers]) on their accounts, other users on their own jobs.",
        after_help = "Examples:\n  collector report --html /srv/reports/2026-11 -S 2026-11-01 -E 2026-12-01\n  \
            collector report --html ~/chem-report -A chem -S now-30days"
    )]
    Report(Box<ReportFlags>),

    #[command(about = crate::questions::parse::ABOUT, long_about = crate::questions::parse::LONG_ABOUT, after_help = crate::questions::parse::AFTER_HELP)]
    Parse(ParseFlags),

    #[command(about = crate::questions::audit::ABOUT, long_about = crate::questions::audit::LONG_ABOUT, after_help = crate::questions::audit::AFTER_HELP)]
    Audit(Box<AuditFlags>),

    /// Remove jobs that ended before a date (keeping their rollups), while `serve` runs.
    #[command(
        long_about = "Remove the jobs that ended before a date, with their node records, steps, tasks, tags \
            and facts, then every environment, argv, executable, working directory, attribute set, module list \
            and module set no remaining job uses. Runs while `collector serve` writes: jobs go in transactions \
            of --batch jobs, and the prune pauses as long as each took, so the daemon's writer is never held \
            up for long. Jobs without a final state (no node's end record yet) stay. Prints what it removed; \
            each run is kept in the ledger (table prunes).\n\n\
            The rollups keep the pruned jobs unless --drop-rollups. These still count them: `query summary` \
            by user, account, partition, cluster and state (any of them) with no filter but -u, -A, -p, -M and \
            -s; `query modules` with those filters; `query throughput` with no filter. Everything that reads \
            the jobs themselves sees only the jobs left: `query jobs`, `job`, `events`, `errors`, `efficiency`, \
            `who-used`, `co-usage`, `utilization`, any -S/-E, `summary` by month, module, fact and the other \
            keys, `export`, `report`.\n\n\
            [retention] keep_days in the configuration has `collector serve` run this once a day. Only root \
            and the collector's user can prune (it writes the ledger file).",
        after_help = "Examples:\n  collector prune --before 2024-01-01\n  \
            collector prune --before now-730days --dry-run\n  \
            collector prune --before 2020-01-01 --drop-rollups"
    )]
    Prune(PruneArgs),

    /// Copy the ledger to a file, consistently, while `serve` writes.
    #[command(
        long_about = "Copy the ledger to FILE as it was at one moment, while `collector serve` goes on \
            writing (SQLite's VACUUM INTO from one read snapshot: the copy is also compacted). The copy is \
            written under a temporary name next to FILE (mode 0600), checked with PRAGMA integrity_check, \
            synced and then renamed to FILE, so FILE is either a whole, checked ledger or absent. FILE must \
            not exist. The copy is an ordinary ledger: `collector query --database FILE` reads it.",
        after_help = "Examples:\n  collector backup /backup/runledger-$(date +%F).db"
    )]
    Backup(BackupArgs),
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove jobs that ended before this time (local: YYYY-MM-DD[THH:MM[:SS]], now-<N>days, …;
    /// at least a day ago).
    #[arg(long, value_name = "TIME", value_parser = crate::questions::timefmt::parse_time_arg, allow_hyphen_values = true)]
    pub before: i64,

    /// Take the pruned jobs out of the rollups too: summaries forget them.
    #[arg(long)]
    pub drop_rollups: bool,

    /// Only count what would go.
    #[arg(long)]
    pub dry_run: bool,

    /// Jobs per transaction.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub batch: usize,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Where the copy goes (must not exist).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (host:port), instead of collector.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,

    /// Local socket for users' queries, instead of collector.socket ('' for none).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// Database file, instead of collector.database.
    #[arg(long, global = true, value_name = "FILE")]
    pub database: Option<PathBuf>,

    #[command(subcommand)]
    pub what: QueryCommand,
}

#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// List jobs matching sacct-like filters.
    #[command(
        long_about = "List jobs matching sacct-like filters.\n\n\
            Filters combine with AND; the values of one filter (comma-separated) with OR. Unlike sacct, \
            with no -S/-E every recorded job matches (use --limit for the newest N). Jobs are listed \
            oldest first.\n\n\
            Times (-S, -E) are local: YYYY-MM-DD[THH:MM[:SS]], now, now-<N>[seconds|minutes|hours|days|weeks], \
            today, midnight, or @<unix seconds>. A job matches when it ran at any time between -S and -E.\n\n\
            States (-s): COMPLETED (CD), FAILED (F), OUT_OF_MEMORY (OOM), CANCELLED (CA), TIMEOUT (TO), \
            NODE_FAIL (NF), UNKNOWN (no epilog record yet); any case.",
        after_help = "Examples:\n  \
            collector query jobs -u alice,bob -S 2024-03-01 -E 2024-03-31T23:59\n  \
            collector query jobs -s OOM,TO -A physics -o JobID,User,State,MaxRSS,Evidence\n  \
            collector query jobs --module gcc/12.2.0 --tag project=alpha --json\n  \
            collector query jobs -j 1234,1300_7 --csv -n\n  \
            collector query jobs --helpformat"
    )]
    Jobs(Box<JobsFlags>),

    /// Everything recorded about one job: steps, tasks, modules, environment, events, facts.
    #[command(
        long_about = "Everything recorded about one job: node records, steps and tasks, modules with their \
            modulefiles, environments (as recorded, secrets already redacted on the nodes), tags, events \
            and facts.\n\n\
            When Slurm reused the job id (a controller state reset), every job recorded under it is shown, \
            newest first.\n\n\
            --efficiency prints seff's report instead (the same as `runledger-seff ID`): CPU Utilized and \
            CPU Efficiency against core-walltime, Job Wall-clock time, Memory Utilized (the largest process's \
            peak, per node) and Memory Efficiency against the job's memory on that node (S_JOB_ALLOC_MEM), \
            then Time Limit and Time Efficiency, the Failure category with its Evidence line, and a \
            Suggestion where the numbers call for one (asked 64.00 GB, peak 3.10 GB: --mem=4G). What was \
            not recorded is said, with the reason when known (a 22.05 batch node whose scontrol did not \
            answer). --efficiency --json gives the same figures as numbers.",
        after_help = "Examples:\n  collector query job 1234\n  collector query job 1234 -M cluster2 --json\n  \
            collector query job 1300_7\n  collector query job 1234 --timeline --plot job1234.png\n  collector query job 1234 --efficiency"
    )]
    Job(JobFlags),

    #[command(
        about = crate::questions::query::timeline::IDLE_ABOUT,
        long_about = crate::questions::query::timeline::IDLE_LONG_ABOUT,
        after_help = crate::questions::query::timeline::IDLE_AFTER_HELP
    )]
    Idle(Box<IdleFlags>),

    #[command(
        about = crate::questions::query::errors::ABOUT,
        long_about = crate::questions::query::errors::LONG_ABOUT,
        after_help = crate::questions::query::errors::AFTER_HELP
    )]
    Errors(Box<ErrorsFlags>),

    #[command(
        about = crate::questions::query::efficiency::ABOUT,
        long_about = crate::questions::query::efficiency::LONG_ABOUT,
        after_help = crate::questions::query::efficiency::AFTER_HELP
    )]
    Efficiency(Box<EfficiencyFlags>),

    /// Jobs grouped by user, account, module, month, … : core-hours, efficiency, failure rate, wall times.
    #[command(
        long_about = "Jobs grouped by one or more keys, with per group: jobs, distinct users, allocated \
            core-hours (elapsed x ncpus), used CPU-hours, CPU efficiency, failure rate (FAILED, TIMEOUT, \
            OUT_OF_MEMORY, NODE_FAIL over jobs with a final state) and the median and 95th percentile wall \
            time (from a histogram of the wall times: exact below 128 s and where a bucket's times are \
            equal, as for jobs that ran to one time limit; otherwise within 1.6 %). Takes the job filters of `query jobs`. With module or module_version a job counts once \
            in each module it loaded; with package or package_version once in each Python package its processes \
            imported. Time keys use the start, local time. fact:NAME groups by a job-level \
            fact, input parameters included (fact:param.pair_style); jobs without it group under an empty key.",
        after_help = "Examples:\n  collector query summary --by account\n  \
            collector query summary --by user,month -A physics --sort core_hours --limit 20\n  \
            collector query summary --by module_version --module openmpi --csv\n  \
            collector query summary --by package_version -S now-30days\n  \
            collector query summary --by weekday,hour -S 2026-01-01 --json\n  \
            collector query summary --by fact:param.pair_style,ranks --program lammps"
    )]
    Summary(Box<SummaryFlags>),

    /// Modules and versions by jobs and distinct users.
    #[command(after_help = "Examples:\n  collector query modules --top 20\n  \
        collector query modules --names --by-users -S now-90days")]
    Modules(Box<ModulesFlags>),

    /// Python packages the jobs imported, by jobs and distinct users.
    #[command(
        long_about = "Python packages the jobs' Python processes imported, per version (or per name with \
            --names): jobs, distinct users, the share of all matching jobs and of those that ran Python.\n\n\
            The node's hook (package python3-runledger-hook) records, for every Python 3 process of rank 0 \
            in a job, the top-level packages it imported with their versions (`__version__`, else the \
            package metadata; none for a process killed before its exit). This is the job's user's word: \
            it describes only that job. A job counts once per package however many of its processes \
            imported it; a version column counts the versions seen in the matching jobs. Users see their \
            own jobs, account managers their accounts, admins every job.",
        after_help = "Examples:\n  collector query packages --top 20\n  \
            collector query packages --names --by-users -S now-90days\n  \
            collector query packages --interpreter 3.11 -A chem --plot packages.png"
    )]
    Packages(Box<PackagesFlags>),

    /// Who used a module or a Python package: jobs, users, accounts, failure rate; before and after a date.
    #[command(after_help = "Examples:\n  collector query who-used openmpi --split 2026-06-01\n  \
        collector query who-used gromacs/2023.3 --after 2026-05-01 --before 2026-07-01 -A chem\n  \
        collector query who-used --python numpy --split 2026-06-01\n  \
        collector query who-used --python numpy/1.26.4")]
    WhoUsed(Box<WhoUsedFlags>),

    /// Modules (and with --python, Python packages) used together: phi correlation over jobs, top pairs.
    #[command(after_help = "Examples:\n  collector query co-usage --top 20\n  \
        collector query co-usage --versions --min-jobs 100 -p gpu\n  \
        collector query co-usage --python --min-jobs 5")]
    CoUsage(Box<CoUsageFlags>),

    /// The event log: step starts, task exits, step and job ends, as state transitions.
    #[command(after_help = "Examples:\n  collector query events -j 1234\n  \
        collector query events -u alice --kind job_ended --to-state FAILED --after now-1day\n  \
        collector query events --tag exp=alpha --json")]
    Events(Box<EventsFlags>),

    /// Jobs finished per interval, and cumulative.
    #[command(after_help = "Examples:\n  collector query throughput --interval 1d -S 2026-01-01\n  \
        collector query throughput --interval 1h -A physics --csv")]
    Throughput(Box<SeriesFlags>),

    /// Jobs, nodes and cores busy per interval (time-averaged).
    #[command(after_help = "Examples:\n  collector query utilization --interval 10m -S now-2days\n  \
        collector query utilization --interval 1d -p gpu --node-weighted")]
    Utilization(Box<SeriesFlags>),
}

impl Failure {
    /// The exit code and the text for standard error, as `main` prints them (a usage error is
    /// rendered as clap renders its own).
    pub fn report(&self) -> (i32, String) {
        match self.kind {
            FailureKind::Usage => {
                let e = Cli::command().error(clap::error::ErrorKind::ValueValidation, &self.msg);
                (2, e.render().to_string())
            }
            FailureKind::Runtime => (1, format!("collector: error: {}\n", self.msg)),
            FailureKind::Relayed(code) => (code, self.msg.clone()),
        }
    }
}

/// The configuration `--config` names, or the default file, or the built-in defaults.
pub fn load_config(path: &Option<PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let p = Config::default_path();
            if p.exists() || std::env::var_os(runledger_record::config::ENV_VAR).is_some() {
                Ok(Config::load(&p)?)
            } else {
                log::debug!("{} does not exist: using the built-in defaults", p.display());
                Ok(Config::default())
            }
        }
    }
}
