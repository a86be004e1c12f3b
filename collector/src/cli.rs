//! The `collector` command line: `serve` for the daemon, `query`, `export`, `parse` and `audit`
//! for admins and users. Every clap definition of the program is here.
//!
//! Usage errors (unknown option, bad date, unknown state or field) are clap's: a message naming
//! the bad value and what is accepted, exit code 2. Runtime errors (the database cannot be read,
//! the port is taken) print `collector: error: …` and exit 1.

use crate::daemon::{auth, serve};
use crate::questions::query;
use crate::questions::query::filter::{self, Filter, JobSel};
use crate::questions::query::jobfilter::JobFilterArgs;
use crate::questions::query::output::{self, Extras, Field, Needs};
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use runledger_record::config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
            only after the commit. Logs go to stderr.\n\n\
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
    Export(Box<crate::questions::analytics::ExportArgs>),

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
    Report(Box<crate::questions::html_report::ReportArgs>),

    #[command(about = crate::questions::parse::ABOUT, long_about = crate::questions::parse::LONG_ABOUT, after_help = crate::questions::parse::AFTER_HELP)]
    Parse(crate::questions::parse::ParseArgs),

    #[command(about = crate::questions::audit::ABOUT, long_about = crate::questions::audit::LONG_ABOUT, after_help = crate::questions::audit::AFTER_HELP)]
    Audit(Box<crate::questions::audit::AuditArgs>),
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
    Jobs(Box<JobsArgs>),

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
            collector query job 1300_7\n  collector query job 1234 --efficiency"
    )]
    Job(JobArgs),

    #[command(
        about = crate::questions::query::errors::ABOUT,
        long_about = crate::questions::query::errors::LONG_ABOUT,
        after_help = crate::questions::query::errors::AFTER_HELP
    )]
    Errors(Box<crate::questions::query::errors::ErrorsArgs>),

    #[command(
        about = crate::questions::query::efficiency::ABOUT,
        long_about = crate::questions::query::efficiency::LONG_ABOUT,
        after_help = crate::questions::query::efficiency::AFTER_HELP
    )]
    Efficiency(Box<crate::questions::query::efficiency::EfficiencyArgs>),

    /// Jobs grouped by user, account, module, month, … : core-hours, efficiency, failure rate, wall times.
    #[command(
        long_about = "Jobs grouped by one or more keys, with per group: jobs, distinct users, allocated \
            core-hours (elapsed x ncpus), used CPU-hours, CPU efficiency, failure rate (FAILED, TIMEOUT, \
            OUT_OF_MEMORY, NODE_FAIL over jobs with a final state) and the median and 95th percentile wall \
            time. Takes the job filters of `query jobs`. With module or module_version a job counts once \
            in each module it loaded. Time keys use the start, local time. fact:NAME groups by a job-level \
            fact, input parameters included (fact:param.pair_style); jobs without it group under an empty key.",
        after_help = "Examples:\n  collector query summary --by account\n  \
            collector query summary --by user,month -A physics --sort core_hours --limit 20\n  \
            collector query summary --by module_version --module openmpi --csv\n  \
            collector query summary --by weekday,hour -S 2026-01-01 --json\n  \
            collector query summary --by fact:param.pair_style,ranks --program lammps"
    )]
    Summary(Box<crate::questions::analytics::SummaryArgs>),

    /// Modules and versions by jobs and distinct users.
    #[command(after_help = "Examples:\n  collector query modules --top 20\n  \
        collector query modules --names --by-users -S now-90days")]
    Modules(Box<crate::questions::analytics::ModulesArgs>),

    /// Who used a module: jobs, users, accounts, failure rate; before and after a date.
    #[command(after_help = "Examples:\n  collector query who-used openmpi --split 2026-06-01\n  \
        collector query who-used gromacs/2023.3 --after 2026-05-01 --before 2026-07-01 -A chem")]
    WhoUsed(Box<crate::questions::analytics::WhoUsedArgs>),

    /// Modules loaded together: phi correlation over jobs, top pairs.
    #[command(after_help = "Examples:\n  collector query co-usage --top 20\n  \
        collector query co-usage --versions --min-jobs 100 -p gpu")]
    CoUsage(Box<crate::questions::analytics::CoUsageArgs>),

    /// The event log: step starts, task exits, step and job ends, as state transitions.
    #[command(after_help = "Examples:\n  collector query events -j 1234\n  \
        collector query events -u alice --kind job_ended --to-state FAILED --after now-1day\n  \
        collector query events --tag exp=alpha --json")]
    Events(Box<crate::questions::analytics::EventsArgs>),

    /// Jobs finished per interval, and cumulative.
    #[command(after_help = "Examples:\n  collector query throughput --interval 1d -S 2026-01-01\n  \
        collector query throughput --interval 1h -A physics --csv")]
    Throughput(Box<crate::questions::analytics::SeriesArgs>),

    /// Jobs, nodes and cores busy per interval (time-averaged).
    #[command(after_help = "Examples:\n  collector query utilization --interval 10m -S now-2days\n  \
        collector query utilization --interval 1d -p gpu --node-weighted")]
    Utilization(Box<crate::questions::analytics::SeriesArgs>),
}

#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    pub filter: JobFilterArgs,

    /// Fields to show (see --helpformat).
    #[arg(short = 'o', long, value_name = "FIELD[,FIELD]", value_delimiter = ',', value_parser = output::parse_field)]
    pub format: Vec<&'static Field>,

    /// List the fields -o accepts, and exit.
    #[arg(long)]
    pub helpformat: bool,

    /// Print a JSON array of job objects (all fields, modules, tags, steps and tasks).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print CSV (the -o fields).
    #[arg(long)]
    pub csv: bool,

    /// No header line.
    #[arg(short = 'n', long)]
    pub noheader: bool,

    /// Only the newest N matching jobs (still listed oldest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job id (or ARRAYID_TASK).
    #[arg(value_name = "ID", value_parser = filter::parse_job_sel)]
    pub id: JobSel,

    /// The cluster, when several share the ledger.
    #[arg(short = 'M', long, value_name = "CLUSTER", value_parser = filter::parse_name)]
    pub cluster: Option<String>,

    /// Print JSON: an array with one object per job recorded under this id, newest first.
    #[arg(long)]
    pub json: bool,

    /// How well the job used what it asked for, as seff says it: CPU efficiency, memory peak
    /// against the allocation, time used against the limit, the failure category with its
    /// evidence, and a suggestion where the numbers call for one (also `runledger-seff ID`).
    #[arg(long)]
    pub efficiency: bool,
}

/// Why a command failed: a runtime failure is printed as `collector: error: …` (exit code 1); a
/// usage error found after parsing (a bad combination of values) is reported like clap's own
/// (exit code 2). Never `exit()` below `main`: the daemon runs these commands for its socket's
/// clients, and one bad request must not end it.
#[derive(Debug)]
pub struct Failure {
    pub msg: String,
    pub kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `collector: error: …`, exit code 1.
    Runtime,
    /// Reported like clap's own errors, exit code 2.
    Usage,
    /// The collector daemon already formatted it (a query through its socket): printed as is,
    /// with the daemon's exit code.
    Relayed(i32),
}

impl Failure {
    pub fn new(msg: impl Into<String>) -> Self {
        Failure { msg: msg.into(), kind: FailureKind::Runtime }
    }

    pub fn usage(msg: impl std::fmt::Display) -> Self {
        Failure { msg: msg.to_string(), kind: FailureKind::Usage }
    }

    /// The exit code and the text for standard error, as `main` prints them.
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

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::new(s)
    }
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    // `collector serve` answers each user query in a child process of its own (crate::daemon::local).
    if std::env::args_os().nth(1).is_some_and(|a| a == crate::daemon::local::WORKER_ARG) {
        return crate::daemon::local::worker_main();
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, &mut out) {
        Ok(()) => 0,
        Err(f) => {
            let _ = out.flush();
            let (code, text) = f.report();
            eprint!("{text}");
            code
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(level);
    let _ = env_logger::Builder::from_env(env).format_timestamp_millis().format_target(false).try_init();
}

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

pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => {
            let full = load_config(&cli.config)?;
            let access = full.access;
            let cfg = full.collector;
            let database = args.database.unwrap_or(cfg.database);
            let socket = args.socket.unwrap_or(cfg.socket);
            let local = (!socket.as_os_str().is_empty()).then(|| crate::daemon::local::Options {
                socket,
                database: database.clone(),
                admin_group: cfg.admin_group.clone(),
                user_clusters: cfg.user_clusters.clone(),
                access,
                slurm_user: cfg.slurm_user.clone(),
                max_connections: cfg.max_connections.max(1),
                read_timeout: Duration::from_millis(cfg.read_timeout_ms.max(1)),
                limits: crate::daemon::local::Limits {
                    timeout: Duration::from_millis(cfg.query_timeout_ms.max(1)),
                    max_memory_bytes: cfg.query_max_memory_mb.max(1).saturating_mul(1 << 20),
                    per_user: cfg.query_max_per_user.max(1),
                    max_output_bytes: cfg.query_max_output_bytes.max(1),
                },
                program: PathBuf::from("/proc/self/exe"),
            });
            let binding = crate::daemon::binding::Binding::from_config(
                &cfg.node_binding,
                &cfg.node_addresses,
                Box::new(crate::daemon::binding::getaddrinfo),
            )
            .map_err(Failure::new)?;
            let opts = serve::Options {
                binding: std::sync::Arc::new(binding),
                listen: args.listen.unwrap_or(cfg.listen),
                database,
                local,
                metrics: cfg.metrics.clone(),
                policy: auth::Policy::new(&cfg.slurm_user),
                max_message_bytes: cfg.max_message_bytes,
                max_connections: cfg.max_connections.max(1),
                read_timeout: Duration::from_millis(cfg.read_timeout_ms.max(1)),
                auth_timeout: Duration::from_millis(cfg.auth_timeout_ms.max(1)),
                max_unauthenticated: cfg.max_unauthenticated.max(1),
            };
            serve::run(opts)?;
            Ok(())
        }
        Command::Parse(args) => {
            let site = match args.rules.is_some() || args.builtin {
                true => PathBuf::new(),
                false => load_config(&cli.config)?.logs.rules,
            };
            let (text, unreadable) = match crate::questions::parse::parse_files(&args, &site) {
                Ok(r) => r,
                Err(e) => return analysis_result(Err(e)).map(drop),
            };
            write_out(out, &text)?;
            if !unreadable.is_empty() {
                analysis_result(Err(crate::questions::parse::CmdError::Usage(unreadable.join("\n"))))?;
            }
            Ok(())
        }
        Command::Audit(a) => {
            let db = match crate::daemon::local::route(&cli.config, a.database.clone())? {
                crate::daemon::local::Route::Direct(db) => db,
                crate::daemon::local::Route::Socket(_) => {
                    return Err(Failure::new(
                        "the audit reads the ledger file itself: run it as root or as the collector's user",
                    ))
                }
            };
            match crate::questions::audit::run(&db, &a, out)? {
                // Something was found: exit 1, like diff, for cron and monitoring.
                true => Err(Failure { msg: String::new(), kind: FailureKind::Relayed(1) }),
                false => Ok(()),
            }
        }
        Command::Export(_) | Command::Query(_) | Command::Report(_) => {
            if let Command::Report(a) = &cli.command {
                // Created by the caller, as the caller: the daemon only renders the page.
                std::fs::create_dir_all(&a.html)
                    .map_err(|e| Failure::new(format!("cannot create {}: {e}", a.html.display())))?;
            }
            let flag = match &cli.command {
                Command::Export(a) => a.database.clone(),
                Command::Query(q) => q.database.clone(),
                Command::Report(a) => a.database.clone(),
                _ => None,
            };
            match crate::daemon::local::route(&cli.config, flag)? {
                crate::daemon::local::Route::Direct(db) => run_ledger(cli.command, &db, &Scope::All, out),
                crate::daemon::local::Route::Socket(socket) => crate::daemon::local::ask(&socket, cli.command, out),
            }
        }
    }
}

/// Whose jobs a ledger command may see: everything (root, the collector's user, the admin
/// group), or one user's own jobs (sacct's PrivateData=jobs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Own(Owner),
}

/// A caller who sees only their own jobs: the uid the kernel gave for them (`SO_PEERCRED`), their
/// name (for messages only: a name is never matched, since `-u 1002` reads as a uid), and the
/// clusters whose uids are this host's (`[collector] user_clusters`; empty: every cluster).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub uid: u32,
    pub name: String,
    pub clusters: Vec<String>,
    /// The account patterns this caller manages (`[access.managers]`); empty for a plain user.
    /// A manager also sees every job of those accounts, but never the environment values or
    /// argv of other users' jobs.
    #[serde(default)]
    pub manages: Vec<String>,
}

impl Owner {
    /// Whether a recorded job (its uid and cluster) is this caller's.
    pub fn owns(&self, uid: Option<i64>, cluster: &str) -> bool {
        uid == Some(i64::from(self.uid)) && self.on_my_clusters(cluster)
    }

    fn on_my_clusters(&self, cluster: &str) -> bool {
        self.clusters.is_empty() || self.clusters.iter().any(|c| c == cluster)
    }

    /// The manager's view of the ledger, or `None` for a plain user.
    pub fn managed(&self) -> Option<crate::questions::query::filter::Managed> {
        (!self.manages.is_empty())
            .then(|| crate::questions::query::filter::Managed { uid: self.uid, accounts: self.manages.clone() })
    }

    /// Whether a recorded job is visible to this caller at all: their own, or (for a manager)
    /// of an account they manage. The one rule `query job` applies; the filters of every other
    /// command say the same in SQL ([`crate::questions::query::filter::Filter::managed`]).
    pub fn sees(&self, uid: Option<i64>, account: Option<&str>, cluster: &str) -> bool {
        match self.managed() {
            Some(m) => m.sees(uid, account) && self.on_my_clusters(cluster),
            None => self.owns(uid, cluster),
        }
    }
}

/// Whose jobs a report covers, in words for its header.
fn report_scope(scope: &Scope) -> String {
    match scope {
        Scope::All => "every recorded job".into(),
        Scope::Own(me) if !me.manages.is_empty() => {
            format!("accounts {} (managed by {}) and {}'s own jobs", me.manages.join(", "), me.name, me.name)
        }
        Scope::Own(me) => format!("{}'s jobs", me.name),
    }
}

/// What stands for another user's environment values and argv in a manager's answers.
pub const HIDDEN: &str = "<hidden>";

/// Runs `collector query …` or `collector export …` against `db`, seeing what `scope` allows.
/// A non-admin's filters are already narrowed to their own jobs ([`crate::daemon::local`]); `query job`
/// hides other users' jobs here, as if they were not recorded.
pub fn run_ledger(command: Command, db: &Path, scope: &Scope, out: &mut dyn Write) -> Result<(), Failure> {
    match command {
        Command::Export(a) => crate::questions::analytics::run_export(db, &a, out),
        Command::Report(mut a) => crate::questions::html_report::run(db, &mut a, &report_scope(scope), out),
        Command::Query(q) => match q.what {
            QueryCommand::Jobs(args) => {
                if args.helpformat {
                    write_out(out, output::helpformat())?;
                    return Ok(());
                }
                crate::questions::analytics::check_range(&args.filter)?;
                query_jobs(db, &args, scope, out)
            }
            QueryCommand::Job(args) => query_job(db, &args, scope, out),
            QueryCommand::Errors(a) => {
                let conn = runledger_ledger::db::open_ro(db)?;
                let text = analysis_result(crate::questions::query::errors::run(&conn, &a))?;
                write_out(out, &text)
            }
            QueryCommand::Efficiency(a) => {
                let conn = runledger_ledger::db::open_ro(db)?;
                let text = analysis_result(crate::questions::query::efficiency::run(&conn, &a))?;
                write_out(out, &text)
            }
            QueryCommand::Summary(a) => crate::questions::analytics::run_summary(db, &a, out),
            QueryCommand::Modules(a) => crate::questions::analytics::run_modules(db, &a, out),
            QueryCommand::WhoUsed(a) => crate::questions::analytics::run_who_used(db, &a, out),
            QueryCommand::CoUsage(a) => crate::questions::analytics::run_co_usage(db, &a, out),
            QueryCommand::Events(a) => crate::questions::analytics::run_events(db, &a, out),
            QueryCommand::Throughput(a) => crate::questions::analytics::run_throughput(db, &a, out),
            QueryCommand::Utilization(a) => crate::questions::analytics::run_utilization(db, &a, out),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) => Err(Failure::new("not a ledger query")),
    }
}

/// The result of `collector parse` and the log-analysis queries: a usage error is reported like
/// clap's (exit code 2), anything else as a [`Failure`].
fn analysis_result(r: Result<String, crate::questions::parse::CmdError>) -> Result<String, Failure> {
    match r {
        Ok(text) => Ok(text),
        Err(crate::questions::parse::CmdError::Usage(msg)) => Err(Failure::usage(msg)),
        Err(crate::questions::parse::CmdError::Failure(msg)) => Err(Failure::new(msg)),
    }
}

/// Writes a command's output: what every command prints goes through here.
pub(crate) fn write_out(out: &mut dyn Write, s: impl AsRef<[u8]>) -> Result<(), Failure> {
    match out.write_all(s.as_ref()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // `collector query … | head`: the reader left, nothing to complain about.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(format!("writing the output: {e}"))),
    }
}

fn db_err(e: rusqlite::Error) -> Failure {
    Failure::new(format!("reading the database: {e}"))
}

pub fn filter_of(args: &JobsArgs) -> Filter {
    args.filter.to_filter()
}

/// Whether `scope` may see what the user of a job they can see recorded themselves: their
/// environment values and argv. Only admins and the job's own user may; a manager may not.
fn sees_private(scope: &Scope, uid: Option<i64>) -> bool {
    match scope {
        Scope::All => true,
        Scope::Own(me) => uid == Some(i64::from(me.uid)),
    }
}

/// Another user's argv, as a manager sees it.
fn hide_argv(argv: &mut Vec<String>) {
    if !argv.is_empty() {
        *argv = vec![HIDDEN.to_string()];
    }
}

/// One job as `scope` may see it: for a manager, another user's environment values and argv
/// are [`HIDDEN`] (the variables' names stay: which are set is the team's business).
fn private_hidden(d: &mut query::JobDetail, scope: &Scope) {
    if sees_private(scope, d.job.uid) {
        return;
    }
    for s in &mut d.steps {
        hide_argv(&mut s.argv);
    }
    for env in d.environments.values_mut() {
        for v in env.values_mut() {
            *v = HIDDEN.to_string();
        }
    }
}

pub fn query_jobs(db: &Path, args: &JobsArgs, scope: &Scope, out: &mut dyn Write) -> Result<(), Failure> {
    let conn = runledger_ledger::db::open_ro(db)?;
    let fields: Vec<&Field> = if args.format.is_empty() { output::default_fields() } else { args.format.clone() };
    let filter = filter_of(args);
    let need = |n: Needs| args.json || fields.iter().any(|f| f.needs == n);
    let extras_of = |ids: &[i64]| -> Result<Extras, Failure> {
        let mut extras = Extras::default();
        if !ids.is_empty() && need(Needs::Modules) {
            extras.modules = query::modules_of(&conn, ids).map_err(db_err)?;
        }
        if !ids.is_empty() && need(Needs::Tags) {
            extras.tags = query::tags_of(&conn, ids).map_err(db_err)?;
        }
        Ok(extras)
    };
    if args.json {
        let rows = query::find_jobs_with(&conn, &filter, args.limit, false).map_err(db_err)?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut extras = extras_of(&ids)?;
        if !ids.is_empty() {
            extras.steps = query::steps_of(&conn, &ids).map_err(db_err)?;
            for r in rows.iter().filter(|r| !sees_private(scope, r.uid)) {
                for s in extras.steps.get_mut(&r.id).into_iter().flatten() {
                    hide_argv(&mut s.argv);
                }
            }
            extras.facts = query::job_facts_of(&conn, &rows).map_err(db_err)?;
        }
        return write_out(out, output::jobs_json(&rows, &extras));
    }
    // Table and CSV are rendered as the rows are read (a listing can be a million jobs long).
    let lean = fields.iter().all(|f| f.lean());
    let mut listing = output::Listing::new(&fields, args.limit.is_some());
    query::each_job(&conn, &filter, args.limit, lean, |j| listing.push(&j)).map_err(db_err)?;
    listing.complete(&extras_of(listing.ids())?);
    let text = if args.csv { listing.csv(!args.noheader) } else { listing.table(!args.noheader) };
    write_out(out, &text)
}

pub fn query_job(db: &Path, args: &JobArgs, scope: &Scope, out: &mut dyn Write) -> Result<(), Failure> {
    let conn = runledger_ledger::db::open_ro(db)?;
    let clusters: Vec<String> = args.cluster.iter().cloned().collect();
    let mut rows = query::find_job(&conn, &args.id, &clusters).map_err(db_err)?;
    if let Scope::Own(me) = scope {
        // Another user's job reads exactly like one never recorded: its existence is private too.
        rows.retain(|r| me.sees(r.uid, r.account.as_deref(), &r.cluster));
    }
    let label = match args.id.task {
        Some(t) => format!("{}_{t}", args.id.id),
        None => args.id.id.to_string(),
    };
    if rows.is_empty() {
        let on = args.cluster.as_deref().map(|c| format!(" on cluster {c}")).unwrap_or_default();
        return Err(Failure::new(format!("no job {label}{on} is recorded")));
    }
    let mut details =
        rows.into_iter().map(|r| query::job_detail(&conn, r)).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    for d in &mut details {
        private_hidden(d, scope);
    }
    if args.efficiency {
        let reports: Vec<_> = details.iter().map(query::jobeff::of).collect();
        if args.json {
            let all: Vec<_> = reports.iter().map(query::jobeff::json).collect();
            let text = serde_json::to_string_pretty(&all).map_err(|e| Failure::new(e.to_string()))?;
            return write_out(out, text + "\n");
        }
        let text: Vec<String> = reports.iter().map(query::jobeff::text).collect();
        return write_out(out, text.join("\n"));
    }
    if args.json {
        return write_out(out, output::detail_json(&details));
    }
    let mut text = String::new();
    if details.len() > 1 {
        text.push_str(&format!(
            "{} jobs are recorded under id {label} (Slurm reused the id, or several clusters share it); \
             newest first.\n\n",
            details.len()
        ));
    }
    for (i, d) in details.iter().enumerate() {
        if i > 0 {
            text.push_str("\n────────────────────────────────────────\n\n");
        }
        text.push_str(&output::detail_text(d));
    }
    write_out(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::JobState;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_value() {
        let cases: &[(&[&str], &str)] = &[
            (&["query", "jobs", "-S", "yesterday"], "'yesterday'"),
            (&["query", "jobs", "-s", "RUNNING"], "'RUNNING'"),
            (&["query", "jobs", "-o", "JobID,Colour"], "'Colour'"),
            (&["query", "jobs", "-j", "12x"], "'12x'"),
            (&["query", "jobs", "--tag", "=v"], "'=v'"),
            (&["query", "jobs", "--limit", "lots"], "'lots'"),
            (&["query", "job", "abc"], "'abc'"),
        ];
        for (args, needle) in cases {
            let argv = std::iter::once("collector").chain(args.iter().copied());
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
        let e = Cli::try_parse_from(["collector", "query", "jobs", "-S", "bad"]).unwrap_err().to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        let e = Cli::try_parse_from(["collector", "query", "jobs", "-s", "x"]).unwrap_err().to_string();
        assert!(e.contains("COMPLETED"), "{e}");
    }

    #[test]
    fn options_parse_into_a_filter() {
        let cli = Cli::try_parse_from([
            "collector",
            "query",
            "--database",
            "/x.db",
            "jobs",
            "-u",
            "alice,bob",
            "-s",
            "cd,OOM",
            "-S",
            "now-2days",
            "--module",
            "gcc/12",
            "--tag",
            "k=v",
            "-o",
            "jobid,USER",
            "-p",
            "gpu",
        ])
        .unwrap();
        let Command::Query(q) = cli.command else { panic!() };
        assert_eq!(q.database.as_deref(), Some(Path::new("/x.db")));
        let QueryCommand::Jobs(a) = q.what else { panic!() };
        let f = filter_of(&a);
        assert_eq!(f.users, vec!["alice", "bob"]);
        assert_eq!(f.states, vec![JobState::Completed, JobState::OutOfMemory]);
        assert_eq!(f.partitions, vec!["gpu"]);
        assert!(f.start.is_some());
        assert_eq!(a.format.iter().map(|f| f.name).collect::<Vec<_>>(), vec!["JobID", "User"]);
    }
}
