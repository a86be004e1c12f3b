//! `runledger-epilog`: see the crate docs and `--help`.

#![forbid(unsafe_code)]

use clap::Parser;
use runledger_epilog::{logger, run, Mode};
use runledger_record::config::Config;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ABOUT: &str = "Slurm Epilog of runledger: records how a job ended on this node and ships its records";

const LONG_ABOUT: &str = "\
Slurm Epilog of runledger: records how a job ended on this node and ships its records.

slurmd runs it (Epilog=/usr/local/sbin/runledger-epilog in slurm.conf) as root after every job on \
every node, without arguments. It reads the items the runledger SPANK plugin spooled for the job \
(<spool>/jobs/<job id>/), adds this node's view of the job's end (exit status; state COMPLETED, \
FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY or NODE_FAIL, with the slurmstepd line or exit status \
that shows it; output files; facts read from the job's solver logs), stores the batch durably in <spool>/outbox/ and sends it, \
signed with MUNGE, to the collector. A batch leaves the outbox only once the collector has \
committed it; older batches are retried first (oldest first) by every later run. Refused or reset \
connections and a busy collector are retried a few times with exponential backoff and random jitter \
([epilog] retries, retry_base_ms, retry_max_ms). The outbox is kept within [epilog] spool_max_bytes \
and spool_max_age_days: over them, the oldest batches are dropped with an error in the log and \
counted in <spool>/dropped.json, a count every later batch carries to the collector. The job's output \
files are read with the job owner's identity, never as root.

It always exits 0, within its time budget ([epilog] budget_ms, default 5000 ms): a failing Epilog \
would drain the node. What went wrong is logged to syslog (facility daemon, ident runledger-epilog).";

const AFTER_HELP: &str = "\
ENVIRONMENT:
  SLURM_JOB_ID (required), SLURM_JOB_UID, SLURM_JOB_USER, SLURM_JOB_ACCOUNT, SLURM_JOB_PARTITION,
  SLURM_JOB_WORK_DIR, SLURM_JOB_EXIT_CODE, SLURM_JOB_EXIT_CODE2, SLURM_JOB_DERIVED_EC,
  SLURM_CLUSTER_NAME, SLURMD_NODENAME; with Slurm 23.02+ also SLURM_JOB_START_TIME,
  SLURM_JOB_END_TIME, SLURM_JOB_STDOUT, SLURM_JOB_STDERR. All are set by slurmd.
  RUNLEDGER_CONF   configuration file (default /etc/runledger/runledger.toml)

FILES:
  /etc/runledger/runledger.toml   [collector] address; [epilog] spool, budget_ms,
                                  connect_timeout_ms, reply_timeout_ms,
                                  log (\"syslog\" or \"stderr\"),
                                  retries, retry_base_ms, retry_max_ms, flush_budget_ms,
                                  spool_max_bytes, spool_max_age_days, orphan_grace_s.
                                  [logs] enabled, globs, max_files, head_bytes, tail_bytes,
                                  job_bytes, time_budget_ms, rules (the job's solver logs).
                                  Missing or invalid: logged, defaults used.
  /etc/runledger/parsers.toml     site rules for solver logs, added to the built-in ones
  <spool>/jobs/<id>/              the plugin's items; removed once the batch is in the outbox.
                                  A job whose epilog never ran here (slurmd or the node died):
                                  once untouched for orphan_grace_s (1 h) with no slurmstepd left,
                                  its items are sent without a job end and the directory marked
                                  orphan-sent; removed after spool_max_age_days
  <spool>/outbox/                 batches not yet committed by the collector
  <spool>/rejected/               batches the collector called malformed, for an admin to
                                  inspect; removed after spool_max_age_days
  <spool>/dropped.json            running total of batches dropped unsent (outbox over its bounds)

EXIT STATUS:
  Always 0, even for usage errors.

EXAMPLES:
  Show what would be sent for job 42, without sending or deleting anything:
    SLURM_JOB_ID=42 SLURM_JOB_UID=1000 runledger-epilog --dry-run
  Retry the batches waiting in the outbox (within [epilog] flush_budget_ms), logging to the terminal:
    runledger-epilog --flush --stderr
  The same for another spool (e.g. a node's spool copied elsewhere):
    runledger-epilog --flush --stderr --spool /var/spool/runledger/n2";

#[derive(Parser, Debug)]
#[command(name = "runledger-epilog", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = AFTER_HELP)]
struct Cli {
    /// Read the configuration from FILE instead of $RUNLEDGER_CONF or /etc/runledger/runledger.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log to stderr instead of syslog.
    #[arg(long)]
    stderr: bool,
    /// Print the JSON batch that would be sent to stdout; send, store and delete nothing.
    /// Logs go to stderr.
    #[arg(long, conflicts_with = "flush")]
    dry_run: bool,
    /// Only retry the batches waiting in the outbox (no job is recorded), within [epilog] flush_budget_ms.
    #[arg(long)]
    flush: bool,
    /// Use DIR as the spool instead of [epilog] spool (`%n` stands for the node's name).
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
}

fn main() {
    let started = Instant::now();
    // No signal set-up: Rust's runtime ignores SIGPIPE before main, so a dropped collector
    // connection is an EPIPE error to handle, never a death.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print(); // --help, --version, or a usage error: still exit 0
            std::process::exit(0);
        }
    };
    logger::init(cli.stderr || cli.dry_run);
    std::panic::set_hook(Box::new(|info| log::error!("internal error: {info}")));

    let path = cli.config.clone().unwrap_or_else(Config::default_path);
    let (mut cfg, cfg_error) = match Config::load(&path) {
        Ok(c) => (c, None),
        Err(e) => (Config::default(), Some(e)),
    };
    if let Some(dir) = &cli.spool {
        cfg.epilog.spool = dir.clone();
    }
    match cfg.epilog.log.as_str() {
        "stderr" => logger::use_stderr(true),
        "syslog" => {}
        other => log::warn!("{}: [epilog] log = {other:?} is neither \"syslog\" nor \"stderr\"", path.display()),
    }
    if let Some(e) = cfg_error {
        log::error!("configuration: {e}; using the defaults");
    }
    // A flush holds up no job: it gets its own, longer budget.
    let (key, ms, fallback) = match cli.flush {
        true => ("flush_budget_ms", cfg.epilog.flush_budget_ms, 60_000),
        false => ("budget_ms", cfg.epilog.budget_ms, 5000),
    };
    let mut budget = Duration::from_millis(ms);
    if budget < Duration::from_millis(100) {
        log::warn!("[epilog] {key} = {ms} is too small; using {fallback}");
        budget = Duration::from_millis(fallback);
    }
    // The work stops a little early so that the run's own log line gets out in time.
    let hard_deadline = started + budget;
    let deadline = hard_deadline - (budget / 10).min(Duration::from_millis(200));
    let mode = if cli.dry_run {
        Mode::DryRun
    } else if cli.flush {
        Mode::Flush
    } else {
        Mode::Epilog
    };

    let (tx, rx) = mpsc::channel::<()>();
    let worker = std::thread::Builder::new().name("epilog".into()).spawn(move || {
        let _ = std::panic::catch_unwind(|| run(&cfg, mode, |k| std::env::var(k).ok(), started, deadline));
        let _ = tx.send(());
    });
    match worker {
        Err(e) => log::error!("cannot start the worker thread: {e}"),
        Ok(_) => {
            if rx.recv_timeout(hard_deadline.saturating_duration_since(Instant::now())).is_err() {
                log::error!(
                    "budget of {} ms exhausted: exiting without finishing (batches stay in the outbox)",
                    budget.as_millis()
                );
            }
        }
    }
    std::process::exit(0);
}
