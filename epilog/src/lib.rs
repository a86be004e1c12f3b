//! runledger's Slurm Epilog.
//!
//! slurmd runs it as root after every job on every node (`Epilog=`). It reads what the SPANK plugin
//! spooled for the job, adds its own view of how the job ended (a [`JobEnd`](runledger_record::JobEnd):
//! exit status, state and the line that shows it, output files, facts), keeps the batch in the
//! spool's outbox and ships it, MUNGE-signed, to the collector. It always exits 0 within its
//! budget: a failing epilog would drain the node.
//!
//! - [`env`]: the Epilog environment;
//! - [`job`]: the batch of one job ([`state`] for the job state, [`pattern`] for output names);
//! - [`safe_read`]: reading users' files as the user;
//! - [`facts`]: where solver-log parsers plug in; [`logs`] is the one plugged in ([`rules`] loads
//!   its rules);
//! - [`deliver`]: outbox and collector;
//! - [`logger`]: syslog or stderr.

pub mod deliver;
pub mod env;
pub mod facts;
pub mod job;
pub mod logger;
pub mod logs;
pub mod pattern;
pub mod rules;
pub mod safe_read;
pub mod state;

use deliver::{Current, Sender};
use runledger_record::config::Config;
use runledger_record::spool::Spool;
use std::io::Write;
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
    let spool = Spool::new(&cfg.epilog.spool);
    let mut sender = Sender::new(&cfg.collector.address, Duration::from_millis(cfg.epilog.connect_timeout_ms));
    let wall = || started.elapsed().as_millis();
    if mode == Mode::Flush {
        return flush(&spool, &mut sender, deadline, started);
    }
    let env = match env::JobEnv::parse(env) {
        Ok(e) => e,
        Err(e) if mode == Mode::DryRun => return log::error!("{e}"),
        Err(e) => {
            log::error!("{e}; only retrying the outbox");
            return flush(&spool, &mut sender, deadline, started);
        }
    };
    let id = env.job_id;
    for w in &env.warnings {
        log::warn!("job {id}: {w}");
    }
    let a = job::assemble(&spool, &env, &cfg.logs, deadline);
    let body = a.batch.to_json();
    if mode == Mode::DryRun {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&body).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush());
        log::info!(
            "job {id}: dry run: state={} items={} (nothing sent or removed)",
            a.verdict.state,
            a.batch.items.len()
        );
        return;
    }
    let path = match spool.outbox_put(&a.batch) {
        Ok(p) => {
            if let Err(e) = spool.remove_job(id) {
                log::warn!("job {id}: batch kept, but the plugin's files were not removed: {e}");
            }
            Some(p)
        }
        Err(e) => {
            log::error!(
                "job {id}: CANNOT KEEP the batch ({} items) in the outbox {}: {e}; sending it directly, and if \
                 that fails this job's records from this node are lost",
                a.batch.items.len(),
                spool.outbox_dir().display()
            );
            None
        }
    };
    let durable = path.is_some();
    let cur = Current { body, path, label: format!("job {id}") };
    let rep = deliver::deliver(&spool, &mut sender, Some(&cur), deadline);
    if !durable {
        if rep.current_sent {
            let _ = spool.remove_job(id);
        } else {
            log::error!("job {id}: batch NOT delivered and NOT kept: this node's records of the job are LOST");
        }
    }
    if let Some(why) = &rep.stopped {
        log::warn!("stopped sending: {why}; batches wait in {} for the next epilog", spool.outbox_dir().display());
    }
    log::info!(
        "job {id}: state={} items={} sent={} queued={} older_sent={} older_queued={} rejected={} wall_ms={}",
        a.verdict.state,
        a.batch.items.len(),
        u8::from(rep.current_sent),
        u8::from(durable && !rep.current_sent),
        rep.old_sent,
        rep.old_left,
        rep.rejected,
        wall()
    );
}

fn flush(spool: &Spool, sender: &mut Sender, deadline: Instant, started: Instant) {
    let rep = deliver::deliver(spool, sender, None, deadline);
    if let Some(why) = &rep.stopped {
        log::warn!("stopped sending: {why}");
    }
    log::info!(
        "outbox flush: sent={} queued={} rejected={} wall_ms={}",
        rep.old_sent,
        rep.old_left,
        rep.rejected,
        started.elapsed().as_millis()
    );
}
