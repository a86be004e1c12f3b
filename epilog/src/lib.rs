//! runledger's Slurm Epilog.
//!
//! slurmd runs it as root after every job on every node (`Epilog=`). It reads what the SPANK plugin
//! spooled for the job, adds its own view of how the job ended (a [`JobEnd`](runledger_record::JobEnd):
//! exit status, state and the line that shows it, output files, facts), keeps the batch in the
//! spool's outbox and ships it, MUNGE-signed, to the collector. It always exits 0 within its
//! budget: a failing epilog would drain the node.
//!
//! - [`env`]: the Epilog environment;
//! - [`job`]: the batch of one job ([`state`] for the job state, [`pattern`] for output names,
//!   [`limits`] for the time limit slurmctld is asked for on 22.05);
//! - [`safe_read`]: reading users' files as the user;
//! - [`facts`]: where solver-log parsers plug in; [`logs`] is the one plugged in ([`rules`] loads
//!   its rules);
//! - [`deliver`]: outbox and collector ([`retry`]: backoff with jitter; [`bounds`]: the outbox's
//!   size and age bounds); [`flush`] drains a node's outbox (`runledger-epilog --flush`);
//! - [`python`]: the records of the job's Python processes, read as the user;
//! - [`orphans`]: the spooled records of jobs whose epilog never ran here;
//! - [`logger`]: syslog or stderr.
//!
//! `unsafe` lives in one module, [`creds`]: the reader thread's own groups and capabilities,
//! raw syscalls that `nix` does not wrap. Everything else reaches the kernel through `nix` and
//! `runledger_record::users`; every other module is under `deny(unsafe_code)`.

#![deny(unsafe_code)]

pub mod bounds;
pub mod creds;
pub mod deliver;
pub mod env;
pub mod facts;
pub mod inputs;
pub mod job;
pub mod limits;
pub mod logger;
pub mod logs;
pub mod orphans;
pub mod parts;
pub mod pattern;
pub mod python;
pub mod retry;
pub mod rules;
pub mod safe_read;
pub mod sources;
pub mod state;

use bounds::Bounds;
use deliver::{Current, Sender};
use retry::Backoff;
use runledger_record::config::Config;
use runledger_record::spool::Spool;
use runledger_record::{Batch, DropCount};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What one run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Record the job in the environment and deliver (the default).
    Epilog,
    /// Print the batch that would be sent; send and delete nothing.
    DryRun,
    /// Only retry the outbox.
    Flush,
}

/// One run, finished by `deadline`; logs what it did. `started` is when the process started.
pub fn run(cfg: &Config, mode: Mode, env: impl Fn(&str) -> Option<String>, started: Instant, deadline: Instant) {
    let spool = node_spool(cfg, &env("SLURMD_NODENAME").unwrap_or_else(job::hostname));
    let wall = || started.elapsed().as_millis();
    if mode == Mode::Flush {
        flush_until(cfg, &spool, deadline, started);
        return;
    }
    let env = match env::JobEnv::parse(env) {
        Ok(e) => e,
        Err(e) if mode == Mode::DryRun => return log::error!("{e}"),
        Err(e) => {
            log::error!("{e}; only retrying the outbox");
            flush_until(cfg, &spool, deadline, started);
            return;
        }
    };
    let id = env.job_id;
    for w in &env.warnings {
        log::warn!("job {id}: {w}");
    }
    // Room is made before the new batch is stored, so that it is never the one dropped; its size
    // is about what its items take in the spool.
    let dropped = match mode {
        Mode::DryRun => bounds::Dropped::default(),
        _ => bounds::enforce(&spool, &Bounds::of(&cfg.epilog), spool.job_bytes(id), runledger_record::now()),
    };
    let mut envelope = Batch::new(job::node_of(&spool, &env), Vec::new());
    deliver::stamp(&mut envelope, deliver::drop_stamp(&spool));
    // A job of any size travels in parts, each under the collector's message limit, stored (or
    // printed) as its items are read: the epilog's memory is about one part, whatever the job.
    let out = if mode == Mode::DryRun { parts::Out::Print } else { parts::Out::Outbox(&spool) };
    let mut writer = parts::Parts::new(out, envelope.clone(), sender(cfg).batch_max());
    let mut a = job::stream(&spool, &env, &cfg.logs, deadline, |item| writer.push(item));
    if a.ask_time_limit {
        (a.job_end.time_limit, a.job_end.time_limit_missing) =
            limits::ask_time_limit(id, &cfg.epilog.scontrol, deadline);
    }
    let items = writer.items() + 1;
    if mode == Mode::DryRun {
        let n = writer.parts().max(1);
        let _ = writer.finish(a.job_end);
        log::info!(
            "job {id}: dry run: state={} items={items} parts={n} peak_rss_kb={} (nothing sent or removed)",
            a.verdict.state,
            peak_rss_kb()
        );
        return;
    }
    let job_end = a.job_end.clone();
    let python_dir = a.python_dir.clone();
    let (paths, cur): (Vec<Option<PathBuf>>, Vec<Current>) = match writer.finish(a.job_end) {
        Ok(paths) => {
            if let Err(e) = spool.remove_job(id) {
                log::warn!("job {id}: batch kept, but the plugin's files were not removed: {e}");
            }
            let n = paths.len();
            let cur = paths
                .iter()
                .enumerate()
                .map(|(i, p)| Current { body: None, path: Some(p.clone()), label: part_label(id, i, n) })
                .collect();
            (paths.into_iter().map(Some).collect(), cur)
        }
        Err(e) => {
            log::error!(
                "job {id}: CANNOT KEEP the batch ({items} items) in the outbox {}: {e}; sending it directly, and if \
                 that fails this job's records from this node are lost",
                spool.outbox_dir().display()
            );
            // Only here is the whole job held in memory: it has no other copy to send from.
            let (mut all, _) = spool.job_items(id);
            all.push(runledger_record::Item::JobEnd(job_end));
            let parts = Batch { items: all, ..envelope }.split(sender(cfg).batch_max());
            let n = parts.len();
            let cur = parts
                .iter()
                .enumerate()
                .map(|(i, b)| Current { body: Some(b.to_json()), path: None, label: part_label(id, i, n) })
                .collect();
            (vec![None; n], cur)
        }
    };
    // Read into the batch (kept or sent from memory): the user's directory has served its job.
    if let Some(dir) = &python_dir {
        python::remove(dir);
    }
    let durable = paths.first().is_some_and(Option::is_some);
    let node = env.node.clone().unwrap_or_else(job::hostname);
    let max_age = Bounds::of(&cfg.epilog).max_age();
    let grace = Duration::from_secs(cfg.epilog.orphan_grace_s);
    orphans::sweep(&spool, Some(id), &node, std::time::SystemTime::now(), grace, max_age, orphans::slurmstepd_jobs);
    let n = cur.len();
    let rep = deliver::deliver(&spool, &mut sender(cfg), &cur, deadline);
    if !durable {
        if rep.current_sent {
            let _ = spool.remove_job(id);
        } else {
            log::error!(
                "job {id}: batch NOT delivered and NOT kept: this node's JobEnd of the job is LOST (step records \
                 the plugin spooled stay in {}, and a later run sends them once untouched for [epilog] orphan_grace_s)",
                spool.job_dir(id).display()
            );
        }
    }
    if let Some(why) = &rep.stopped {
        log::warn!("stopped sending: {why}; batches wait in {} for the next epilog", spool.outbox_dir().display());
    }
    log::info!(
        "job {id}: state={} items={} sent={} queued={} older_sent={} older_queued={} rejected={} dropped={} \
         retries={} parts={n} wall_ms={} peak_rss_kb={}",
        a.verdict.state,
        items,
        u8::from(rep.current_sent),
        u8::from(durable && !rep.current_sent),
        rep.old_sent,
        rep.old_left,
        rep.rejected,
        dropped.count.batches,
        rep.retries,
        wall(),
        peak_rss_kb()
    );
}

/// This process's peak resident memory so far (VmHWM), in KiB; 0 if unknown. Logged, so that an
/// admin (and the tests) can see the epilog's memory stay bounded whatever a job spooled.
pub fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn part_label(id: u32, i: usize, n: usize) -> String {
    if n == 1 {
        format!("job {id}")
    } else {
        format!("job {id} (part {} of {n})", i + 1)
    }
}

/// The run's sender: `[collector] address`, `[epilog]` connect and reply timeouts, retries.
/// Public for `integration/examples/epilog_storm.rs`, which must send exactly as a run does.
pub fn sender(cfg: &Config) -> Sender {
    let e = &cfg.epilog;
    Sender::new(&cfg.collector.address, Duration::from_millis(e.connect_timeout_ms))
        .reply_timeout(Duration::from_millis(e.reply_timeout_ms))
        .retrying(Backoff::new(e.retries, e.retry_base_ms, e.retry_max_ms), retry::random_source())
        .batch_max_bytes(e.batch_max_bytes)
}

/// What [`flush`] is told beyond the configuration.
#[derive(Clone, Debug, Default)]
pub struct FlushOptions {
    /// The spool to drain, instead of `[epilog] spool`.
    pub spool: Option<PathBuf>,
    /// The time allowed, instead of `[epilog] flush_budget_ms`.
    pub budget: Option<Duration>,
}

/// What a flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub outbox: PathBuf,
    /// Batches the collector committed (and that left the outbox).
    pub sent: usize,
    /// Batches left in the outbox for a later run.
    pub kept: usize,
    /// Batches the collector can never accept, moved to `<spool>/rejected/`.
    pub rejected: usize,
    /// What this run dropped because the outbox was over its bounds, and of which jobs.
    pub dropped: DropCount,
    pub dropped_jobs: Vec<u32>,
    /// The spool's running total of dropped batches, after this run.
    pub dropped_total: DropCount,
    pub retries: usize,
    /// Why sending stopped before the outbox was empty, if it did.
    pub stopped: Option<String>,
    /// The outbox could not be read at all (e.g. not root).
    pub error: Option<String>,
    pub wall: Duration,
}

impl FlushReport {
    /// Whether batches remain that are not in the ledger: kept, moved aside, or unreadable.
    pub fn left_behind(&self) -> bool {
        self.kept > 0 || self.rejected > 0 || self.error.is_some()
    }
}

/// Drains a node's outbox: drops what is over the spool's bounds (logged and counted), then sends
/// the rest oldest first, with the epilog's retries, until it is empty, the collector cannot be
/// reached, or the budget is spent. Logs what it did; never panics on a bad spool.
pub fn flush(cfg: &Config, opts: FlushOptions) -> FlushReport {
    let started = Instant::now();
    let spool = match opts.spool {
        Some(dir) => Spool::new(dir),
        None => node_spool(cfg, &this_node()),
    };
    let budget = opts.budget.unwrap_or(Duration::from_millis(cfg.epilog.flush_budget_ms));
    flush_until(cfg, &spool, started + budget, started)
}

fn flush_until(cfg: &Config, spool: &Spool, deadline: Instant, started: Instant) -> FlushReport {
    let mut report = FlushReport { outbox: spool.outbox_dir(), ..Default::default() };
    // Spool::outbox() lists nothing for an unreadable directory; an admin must hear why.
    match std::fs::read_dir(&report.outbox) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            let why = format!("cannot read the outbox {}: {e}", report.outbox.display());
            log::error!("{why}");
            report.error = Some(why);
            report.wall = started.elapsed();
            return report;
        }
        _ => {}
    }
    let max_age = Bounds::of(&cfg.epilog).max_age();
    let grace = Duration::from_secs(cfg.epilog.orphan_grace_s);
    orphans::sweep(spool, None, &this_node(), std::time::SystemTime::now(), grace, max_age, orphans::slurmstepd_jobs);
    let dropped = bounds::enforce(spool, &Bounds::of(&cfg.epilog), 0, runledger_record::now());
    let rep = deliver::deliver(spool, &mut sender(cfg), &[], deadline);
    if let Some(why) = &rep.stopped {
        log::warn!("stopped sending: {why}");
    }
    report.sent = rep.old_sent;
    report.kept = rep.old_left;
    report.rejected = rep.rejected;
    report.dropped = dropped.count;
    report.dropped_jobs = dropped.jobs;
    report.dropped_total = spool.drop_count().unwrap_or_default();
    report.retries = rep.retries;
    report.stopped = rep.stopped;
    report.wall = started.elapsed();
    log::info!(
        "outbox flush: sent={} queued={} rejected={} dropped={} retries={} wall_ms={}",
        report.sent,
        report.kept,
        report.rejected,
        report.dropped.batches,
        report.retries,
        report.wall.as_millis()
    );
    report
}

/// This node's Slurm name outside a job: `SLURMD_NODENAME` when set (several nodes on one host
/// tell their flush apart by it), else the short host name.
pub fn this_node() -> String {
    std::env::var("SLURMD_NODENAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(job::hostname)
}

/// The node's spool: `[epilog] spool` with `%n` standing for the node's name.
pub fn node_spool(cfg: &Config, node: &str) -> Spool {
    Spool::new(runledger_record::spool::expand_node(&cfg.epilog.spool, node))
}
