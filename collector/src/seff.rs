//! `runledger-seff JOBID`: Slurm's `seff`, answered from the ledger: how well a job used the CPUs,
//! memory and time it asked for, why it failed, and what to ask for next time. It is
//! `collector query job JOBID --efficiency` ([`crate::questions::query::jobeff`]) under the name
//! users know, with the same access: root and the ledger's admins read the file, everyone else
//! asks `collector serve` through its socket and sees only their own jobs (and a manager the
//! jobs of the accounts they manage).

use crate::cli::{self, Cli, Failure, Scope};
use crate::daemon::local::{self, Route};
use clap::{CommandFactory, Parser};
use std::io::Write;
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
Print how well a job used what it asked for, as Slurm's seff does, from the runledger ledger \
(no slurmdbd needed): CPU Utilized and CPU Efficiency against core-walltime, Job Wall-clock time, \
Memory Utilized (the peak of the job's largest process, per node) and Memory Efficiency against the \
job's memory on that node (Slurm's S_JOB_ALLOC_MEM); then what seff leaves out: Time Limit and Time \
Efficiency, the Failure category with its Evidence line (from the job's logs or Slurm's state), and a \
Suggestion where the numbers call for one, e.g.\n\n  Suggestion: asked 64.00 GB per node, peak 3.10 GB: \
--mem=4G\n\nWhat was not recorded is said, with the reason when known, never guessed. The same report \
as `collector query job JOBID --efficiency`.\n\nAccess: root, the collector's user and the members of \
collector.admin_group read the ledger file; other users ask `collector serve` through its local \
socket (collector.socket) and see only their own jobs, or, as managers ([access.managers]), the jobs \
of the accounts they manage. A job they may not see reads as not recorded.";

/// `runledger-seff`'s command line.
#[derive(Parser, Debug)]
#[command(
    name = "runledger-seff",
    version,
    about = "How well a Slurm job used the CPUs, memory and time it asked for (seff, from the runledger ledger)",
    long_about = LONG_ABOUT,
    after_help = "Examples:\n  runledger-seff 1234\n  runledger-seff 1300_7\n  runledger-seff -M cluster2 1234 --json\n\n\
        Exit status: 0 when the job is recorded, 1 when it is not (or the ledger cannot be read), 2 for a \
        usage error."
)]
pub struct SeffCli {
    /// The job id (or ARRAYID_TASK).
    #[arg(value_name = "JOBID")]
    pub job: String,

    /// The cluster, when several share the ledger.
    #[arg(short = 'M', long, value_name = "CLUSTER")]
    pub cluster: Option<String>,

    /// Print JSON (the same figures as numbers: seconds, KiB, MiB, fractions).
    #[arg(long)]
    pub json: bool,

    /// Configuration file [default: $RUNLEDGER_CONF or /etc/runledger/runledger.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database file, instead of collector.database.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

impl SeffCli {
    /// The `collector` arguments that ask the same question.
    pub fn collector_args(&self) -> Vec<String> {
        let mut a = vec!["query".to_string()];
        if let Some(db) = &self.database {
            a.extend(["--database".into(), db.to_string_lossy().into_owned()]);
        }
        a.extend(["job".into(), self.job.clone(), "--efficiency".into()]);
        if let Some(c) = &self.cluster {
            a.extend(["-M".into(), c.clone()]);
        }
        if self.json {
            a.push("--json".into());
        }
        a
    }
}

/// Runs `runledger-seff`: the report on `out`.
pub fn run(seff: SeffCli, out: &mut dyn Write) -> Result<(), Failure> {
    ask(&seff, out)
}

/// Asks the ledger `seff`'s question: directly when this process may read the file, else
/// through the collector's socket.
pub fn ask(seff: &SeffCli, out: &mut dyn Write) -> Result<(), Failure> {
    let args = seff.collector_args();
    let argv = std::iter::once("collector".to_string()).chain(args.iter().cloned());
    // The job id and cluster are checked by collector's own parsers: one definition of each.
    let cli = Cli::try_parse_from(argv).map_err(|e| Failure::usage(first_line(&e.to_string())))?;
    match local::route(&seff.config, seff.database.clone())? {
        Route::Direct(db) => cli::run_ledger(cli.command, &db, &Scope::All, out),
        Route::Socket(socket) => local::ask_with(&socket, &args, cli.command, out),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim_start_matches("error: ").to_string()
}

/// The program's `main`.
pub fn main() -> i32 {
    let seff = SeffCli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(seff, &mut out) {
        Ok(()) => 0,
        Err(f) => {
            let _ = out.flush();
            let (code, text) = match f.kind {
                cli::FailureKind::Usage => {
                    (2, SeffCli::command().error(clap::error::ErrorKind::ValueValidation, &f.msg).render().to_string())
                }
                cli::FailureKind::Runtime => (1, format!("runledger-seff: error: {}\n", f.msg)),
                cli::FailureKind::Relayed(code) => (code, f.msg.replace("collector: error:", "runledger-seff: error:")),
            };
            eprint!("{text}");
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        SeffCli::command().debug_assert();
    }

    #[test]
    fn asks_collector_the_same_question() {
        let s = SeffCli::try_parse_from(["runledger-seff", "1300_7", "-M", "c2", "--json"]).unwrap();
        assert_eq!(s.collector_args(), ["query", "job", "1300_7", "--efficiency", "-M", "c2", "--json"]);
        let s = SeffCli::try_parse_from(["runledger-seff", "--database", "/x.db", "12"]).unwrap();
        assert_eq!(s.collector_args(), ["query", "--database", "/x.db", "job", "12", "--efficiency"]);
    }

    #[test]
    fn a_bad_job_id_is_a_usage_error_naming_it() {
        let s = SeffCli::try_parse_from(["runledger-seff", "12x", "--database", "/nonexistent.db"]).unwrap();
        let e = run(s, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind, cli::FailureKind::Usage);
        assert!(e.msg.contains("'12x'"), "{}", e.msg);
    }
}
