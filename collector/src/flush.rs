//! `collector flush`: drain this node's epilog outbox now, with the epilog's own delivery code
//! ([`runledger_epilog::flush`]), and say what happened in a way an admin (or a systemd timer)
//! can act on: a summary on stdout, exit status 1 when batches were left behind.

use runledger_epilog::{FlushOptions, FlushReport};
use runledger_record::config::Config;
use std::path::PathBuf;
use std::time::Duration;

pub const ABOUT: &str = "Send this node's queued records (its epilog outbox) to the collector now";

pub const LONG_ABOUT: &str = "\
Send this node's queued records (its epilog outbox) to the collector now.

After every job the epilog keeps the job's batch in <spool>/outbox/ until the collector has \
committed it, and each epilog first retries the batches older runs could not deliver. A node on \
which no job ends keeps its outbox until this command runs: packaging/systemd/runledger-flush.timer \
runs it every few minutes.

It does what an epilog does with its outbox, with more time ([epilog] flush_budget_ms, default \
60000, or --budget): drops the batches over the spool's bounds ([epilog] spool_max_age_days, then \
the oldest over spool_max_bytes; each drop logged as an error and counted in <spool>/dropped.json), \
then sends the rest oldest first, MUNGE-signed, retrying refused or reset connections and a busy \
collector with exponential backoff and jitter ([epilog] retries, retry_base_ms, retry_max_ms). It \
stops when the outbox is empty, when the collector cannot be reached, or when the budget is spent. \
A batch the collector calls malformed is moved to <spool>/rejected/ for an admin to inspect \
(removed after spool_max_age_days). \
Like every epilog, it also sends the step records of jobs whose epilog never ran on this node (their \
<spool>/jobs/<id>/ untouched for [epilog] orphan_grace_s (an hour), no slurmstepd of the job left), without a job end. Batches \
leave the outbox only once the collector has committed them; a batch sent twice (an epilog running \
at the same time) is merged once.

Run it as root on the compute node: the spool is root's (0700), and the collector accepts node \
records only from root and [collector] slurm_user. Logs go to stderr; the summary to stdout.

Exit status: 0 when the outbox was drained; 1 when batches were left behind (still queued, or moved \
to rejected/) or the outbox could not be read; 2 for usage errors.";

pub const AFTER_HELP: &str = "\
Examples:
  Drain the outbox with the settings of /etc/runledger/runledger.toml:
    collector flush
  Give it up to ten minutes, after a long collector outage:
    collector flush --budget 600000
  Another spool and configuration:
    collector flush --spool /var/spool/runledger --config /etc/runledger/runledger.toml
  Send to a stand-by collector while the usual one is down:
    collector flush --address ledger2.example.org:6820

Output:
  outbox /var/spool/runledger/outbox: 12 sent, 0 kept, 0 rejected, 0 dropped (0.4 s, 0 retries)";

#[derive(clap::Args, Debug)]
pub struct FlushArgs {
    /// The spool to drain, instead of [epilog] spool.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Time allowed in milliseconds, instead of [epilog] flush_budget_ms.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget: Option<u64>,

    /// The collector to send to (HOST[:PORT]), instead of [collector] address.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
}

/// Drains the outbox as `args` and `cfg` say.
pub fn run(mut cfg: Config, args: &FlushArgs) -> FlushReport {
    if let Some(a) = &args.address {
        cfg.collector.address = a.clone();
    }
    let opts = FlushOptions { spool: args.spool.clone(), budget: args.budget.map(Duration::from_millis) };
    runledger_epilog::flush(&cfg, opts)
}

fn batches(n: impl Into<u64>) -> String {
    match n.into() {
        1 => "1 batch".into(),
        n => format!("{n} batches"),
    }
}

fn items(n: u64) -> String {
    match n {
        1 => "1 item".into(),
        n => format!("{n} items"),
    }
}

/// The summary printed on stdout.
pub fn render(r: &FlushReport) -> String {
    let mut s = format!(
        "outbox {}: {} sent, {} kept, {} rejected, {} dropped ({:.1} s, {} {})\n",
        r.outbox.display(),
        r.sent,
        r.kept,
        r.rejected,
        r.dropped.batches,
        r.wall.as_secs_f64(),
        r.retries,
        if r.retries == 1 { "retry" } else { "retries" }
    );
    let spool = r.outbox.parent().unwrap_or(&r.outbox);
    if let Some(e) = &r.error {
        s.push_str(&format!("not flushed: {e}\n"));
    }
    if r.dropped.batches > 0 {
        let ids = r.dropped_jobs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        s.push_str(&format!(
            "dropped {} ({}, {} bytes) over the spool's bounds, of job(s) {ids}\n",
            batches(r.dropped.batches),
            items(r.dropped.items),
            r.dropped.bytes
        ));
    }
    if r.dropped_total.batches > 0 {
        s.push_str(&format!(
            "this node has dropped {} ({}, {} bytes) in all, the last at {} (counted in {})\n",
            batches(r.dropped_total.batches),
            items(r.dropped_total.items),
            r.dropped_total.bytes,
            crate::timefmt::display(Some(r.dropped_total.last)),
            spool.join("dropped.json").display()
        ));
    }
    if r.rejected > 0 {
        s.push_str(&format!(
            "{} the collector can never accept moved to {}/ (see the log for why)\n",
            batches(r.rejected as u64),
            spool.join("rejected").display()
        ));
    }
    if r.kept > 0 {
        let why = r.stopped.as_deref().unwrap_or("refused by the collector (see the log)");
        s.push_str(&format!("{} left in the outbox: {why}\n", batches(r.kept as u64)));
    }
    s
}

/// `Err` (exit status 1) when something was left behind, saying what.
pub fn verdict(r: &FlushReport) -> Result<(), String> {
    if !r.left_behind() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if let Some(e) = &r.error {
        parts.push(e.clone());
    }
    if r.kept > 0 {
        parts.push(format!("{} still queued", batches(r.kept as u64)));
    }
    if r.rejected > 0 {
        parts.push(format!("{} moved to rejected/", batches(r.rejected as u64)));
    }
    Err(format!("outbox not drained: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::DropCount;

    #[test]
    fn a_drained_outbox_is_one_line_and_success() {
        let r = FlushReport {
            outbox: PathBuf::from("/s/outbox"),
            sent: 3,
            wall: Duration::from_millis(420),
            retries: 1,
            ..Default::default()
        };
        assert_eq!(render(&r), "outbox /s/outbox: 3 sent, 0 kept, 0 rejected, 0 dropped (0.4 s, 1 retry)\n");
        assert_eq!(verdict(&r), Ok(()));
    }

    #[test]
    fn what_is_left_behind_dropped_or_unreadable_is_spelled_out() {
        let r = FlushReport {
            outbox: PathBuf::from("/s/outbox"),
            sent: 1,
            kept: 2,
            rejected: 1,
            dropped: DropCount { batches: 1, items: 4, bytes: 900, last: 1_700_000_000 },
            dropped_jobs: vec![17],
            dropped_total: DropCount { batches: 5, items: 9, bytes: 4000, last: 1_700_000_000 },
            stopped: Some("cannot connect to collector h:6820: refused".into()),
            ..Default::default()
        };
        let text = render(&r);
        assert!(text.contains("1 sent, 2 kept, 1 rejected, 1 dropped"), "{text}");
        assert!(text.contains("dropped 1 batch (4 items, 900 bytes) over the spool's bounds, of job(s) 17"), "{text}");
        assert!(text.contains("this node has dropped 5 batches (9 items, 4000 bytes) in all"), "{text}");
        assert!(text.contains("(counted in /s/dropped.json)"), "{text}");
        assert!(text.contains("1 batch the collector can never accept moved to /s/rejected/"), "{text}");
        assert!(text.contains("2 batches left in the outbox: cannot connect to collector h:6820: refused"), "{text}");
        assert_eq!(verdict(&r), Err("outbox not drained: 2 batches still queued; 1 batch moved to rejected/".into()));

        let r = FlushReport { error: Some("cannot read the outbox /s/outbox: denied".into()), ..Default::default() };
        assert!(render(&r).contains("not flushed: cannot read the outbox"));
        assert!(verdict(&r).unwrap_err().contains("denied"));
    }
}
