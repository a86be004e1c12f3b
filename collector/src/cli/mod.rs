//! The `collector` command line: `serve` for the daemon, `query`, `export`, `report`, `parse`
//! and `audit` for admins and users. Every clap definition of the program is under here: the
//! command tree in [`args`], the questions' flags (one job-filter group, one set of output flags)
//! in [`questions`]; [`dispatch`] hands each question its plain options.
//!
//! Usage errors (unknown option, bad date, unknown state or field) are clap's: a message naming
//! the bad value and what is accepted, exit code 2. Runtime errors (the database cannot be read,
//! the port is taken) print `collector: error: …` and exit 1.

pub mod args;
pub mod dispatch;
pub mod questions;

pub use self::args::{load_config, Cli, Command, QueryArgs, QueryCommand, ServeArgs};
pub use self::dispatch::run_ledger;
pub use crate::failure::{write_out, Failure, FailureKind};
pub use crate::questions::scope::{Owner, Scope, HIDDEN};

use self::dispatch::analysis_result;
use self::questions::JobsFlags;
use crate::daemon::{auth, serve};
use crate::questions::query::filter::Filter;
use crate::questions::query::jobfilter::JobFilterArgs;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    // `collector serve` answers each user query in a child process of its own (crate::daemon::local).
    if std::env::args_os().nth(1).is_some_and(|a| a == crate::daemon::query_socket::WORKER_ARG) {
        return crate::daemon::query_socket::worker_main();
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

pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => {
            let full = load_config(&cli.config)?;
            let access = full.access;
            let cfg = full.collector;
            let database = args.database.unwrap_or(cfg.database);
            let socket = args.socket.unwrap_or(cfg.socket);
            let local = (!socket.as_os_str().is_empty()).then(|| crate::daemon::query_socket::Options {
                socket,
                database: database.clone(),
                admin_group: cfg.admin_group.clone(),
                user_clusters: cfg.user_clusters.clone(),
                access,
                slurm_user: cfg.slurm_user.clone(),
                max_connections: cfg.max_connections.max(1),
                read_timeout: Duration::from_millis(cfg.read_timeout_ms.max(1)),
                limits: crate::daemon::query_socket::Limits {
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
                max_queued: cfg.max_queued.max(1),
                retention: full.retention,
            };
            serve::run(opts)?;
            Ok(())
        }
        Command::Parse(args) => {
            let site = match args.rules.is_some() || args.builtin {
                true => PathBuf::new(),
                false => load_config(&cli.config)?.logs.rules,
            };
            let (text, unreadable) = match crate::questions::parse::parse_files(&args.into(), &site) {
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
            match crate::questions::audit::run(&db, &(*a).into(), out)? {
                // Something was found: exit 1, like diff, for cron and monitoring.
                true => Err(Failure { msg: String::new(), kind: FailureKind::Relayed(1) }),
                false => Ok(()),
            }
        }
        Command::Prune(a) => {
            let db = direct_only(&cli.config, a.database.clone(), "prune")?;
            let opts = runledger_ledger::retention::Options {
                before: a.before,
                drop_rollups: a.drop_rollups,
                dry_run: a.dry_run,
                batch: a.batch,
            };
            crate::upkeep::prune(&db, &opts, out)
        }
        Command::Backup(a) => {
            let db = direct_only(&cli.config, a.database.clone(), "backup")?;
            crate::upkeep::backup(&db, &a.file, out)
        }
        Command::Export(a) if a.partition_by.is_some() => {
            // A partitioned export keeps a directory of its own up to date: root and the
            // collector's user, from the ledger file.
            let db = direct_only(&cli.config, a.database.clone(), "export --partition-by")?;
            run_ledger(Command::Export(a), &db, &Scope::All, out)
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

/// The job filter `query jobs` was given.
/// The ledger file for a command that reads (or writes) it itself: root and the collector's user.
fn direct_only(config: &Option<PathBuf>, flag: Option<PathBuf>, what: &str) -> Result<PathBuf, Failure> {
    match crate::daemon::local::route(config, flag)? {
        crate::daemon::local::Route::Direct(db) => Ok(db),
        crate::daemon::local::Route::Socket(_) => Err(Failure::new(format!(
            "{what} works on the ledger file itself: run it as root or as the collector's user"
        ))),
    }
}

pub fn filter_of(args: &JobsFlags) -> Filter {
    JobFilterArgs::from(args.filter.clone()).to_filter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use runledger_record::JobState;
    use std::path::Path;

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

    #[test]
    fn command_lines_parse_and_bad_values_are_usage_errors() {
        let cli = Cli::try_parse_from(["collector", "parse", "a.log", "b.log", "--rules", "r.toml", "--json"]).unwrap();
        let Command::Parse(p) = cli.command else { panic!() };
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.rules.as_deref(), Some(Path::new("r.toml")));
        let cli = Cli::try_parse_from([
            "collector",
            "query",
            "errors",
            "--by",
            "user",
            "--program",
            "lammps",
            "-S",
            "now-7days",
            "--plot",
            "x.svg",
        ])
        .unwrap();
        let Command::Query(q) = cli.command else { panic!() };
        let QueryCommand::Errors(e) = q.what else { panic!() };
        assert_eq!(e.filter.program, vec!["lammps"]);
        assert!(e.chart.plot.unwrap().svg);
        let cli =
            Cli::try_parse_from(["collector", "query", "efficiency", "--by", "nodes", "--category", "Time_Limit"])
                .unwrap();
        let Command::Query(q) = cli.command else { panic!() };
        let QueryCommand::Efficiency(e) = q.what else { panic!() };
        assert_eq!(e.filter.category, vec!["time_limit"]);
        let cases: &[(&[&str], &str)] = &[
            (&["parse"], "FILE"),
            (&["query", "errors", "--by", "colour"], "'colour'"),
            (&["query", "errors", "--plot", "x.jpg"], ".png or .svg"),
            (&["query", "errors", "--category", "gremlins"], "input_error"),
            (&["query", "efficiency", "--by", "moon"], "ranks"),
            (&["query", "jobs", "--outcome", "meh"], "success, failed, incomplete, unknown"),
            (&["query", "jobs", "--category", "meh"], "numerical_instability"),
        ];
        for (args, needle) in cases {
            let argv = std::iter::once("collector").chain(args.iter().copied());
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(needle), "{args:?}: {e}");
        }
        for sub in [&["parse", "--help"][..], &["query", "errors", "--help"], &["query", "efficiency", "--help"]] {
            let argv = std::iter::once("collector").chain(sub.iter().copied());
            let help = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(help.contains("Examples:"), "{sub:?}: {help}");
        }
    }
}
