//! Runs a parsed ledger command (`query …`, `export`, `report`): each question gets its plain
//! options, converted from its command-line definition. Both `collector` itself and the daemon's
//! query workers ([`crate::daemon::local`]) come here.

use super::args::{Command, QueryCommand};
use crate::failure::{write_out, Failure};
use crate::questions::html_report::ReportArgs;
use crate::questions::jobs::{self, JobsArgs};
use crate::questions::query::output;
use crate::questions::scope::{report_scope, Scope};
use crate::questions::{analytics, html_report, parse, query};
use std::io::Write;
use std::path::Path;

/// Runs `collector query …` or `collector export …` against `db`, seeing what `scope` allows.
/// A non-admin's filters are already narrowed to their own jobs ([`crate::daemon::local`]); `query job`
/// hides other users' jobs here, as if they were not recorded.
pub fn run_ledger(command: Command, db: &Path, scope: &Scope, out: &mut dyn Write) -> Result<(), Failure> {
    match command {
        Command::Export(a) => analytics::run_export(db, &(*a).into(), out),
        Command::Report(a) => {
            let mut a: ReportArgs = (*a).into();
            html_report::run(db, &mut a, &report_scope(scope), out)
        }
        Command::Query(q) => match q.what {
            QueryCommand::Jobs(args) => {
                let args: JobsArgs = (*args).into();
                if args.helpformat {
                    write_out(out, output::helpformat())?;
                    return Ok(());
                }
                analytics::check_range(&args.filter)?;
                jobs::query_jobs(db, &args, scope, out)
            }
            QueryCommand::Job(args) => jobs::query_job(db, &args.into(), scope, out),
            QueryCommand::Errors(a) => {
                let conn = runledger_ledger::db::open_ro(db)?;
                let text = analysis_result(query::errors::run(&conn, &(*a).into()))?;
                write_out(out, &text)
            }
            QueryCommand::Efficiency(a) => {
                let conn = runledger_ledger::db::open_ro(db)?;
                let text = analysis_result(query::efficiency::run(&conn, &(*a).into()))?;
                write_out(out, &text)
            }
            QueryCommand::Summary(a) => analytics::run_summary(db, &(*a).into(), out),
            QueryCommand::Modules(a) => analytics::run_modules(db, &(*a).into(), out),
            QueryCommand::WhoUsed(a) => analytics::run_who_used(db, &(*a).into(), out),
            QueryCommand::CoUsage(a) => analytics::run_co_usage(db, &(*a).into(), out),
            QueryCommand::Events(a) => analytics::run_events(db, &(*a).into(), out),
            QueryCommand::Throughput(a) => analytics::run_throughput(db, &(*a).into(), out),
            QueryCommand::Utilization(a) => analytics::run_utilization(db, &(*a).into(), out),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) => Err(Failure::new("not a ledger query")),
    }
}

/// The result of `collector parse` and the log-analysis queries: a usage error is reported like
/// clap's (exit code 2), anything else as a [`Failure`].
pub fn analysis_result(r: Result<String, parse::CmdError>) -> Result<String, Failure> {
    match r {
        Ok(text) => Ok(text),
        Err(parse::CmdError::Usage(msg)) => Err(Failure::usage(msg)),
        Err(parse::CmdError::Failure(msg)) => Err(Failure::new(msg)),
    }
}
