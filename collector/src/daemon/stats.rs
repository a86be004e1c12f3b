//! What `collector serve` counts while it runs: batches, records, merge failures, the merge
//! histogram and refusals by reason. The request threads and the writer add to it
//! ([`crate::daemon::serve`]); [`crate::daemon::metrics`] renders it for Prometheus. Apart from
//! both so that neither imports the other for it.

use crate::daemon::auth::Reject;
use runledger_ledger::rejections::Tally;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the collector has done since it started; rejections by reason.
#[derive(Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub items: AtomicU64,
    pub merge_failures: AtomicU64,
    /// Batches answered `ok` once stored in the inbox, to be merged later (a burst).
    pub inboxed: AtomicU64,
    /// Batches in the inbox still to merge (a gauge the writer sets).
    pub inbox_waiting: AtomicU64,
    /// How long each group transaction took (`runledger_merge_seconds`).
    pub merge_seconds: Histogram,
    /// Counted here on the request's thread; stored in the ledger by the writer.
    rejections: Tally,
}

impl Stats {
    /// Counts and logs a refused request.
    pub fn reject(&self, peer: SocketAddr, r: &Reject) {
        let n = self.rejections.add(r.reason(), peer, runledger_record::now());
        match r {
            Reject::MungeUnavailable(_) => log::error!("{peer}: rejected: {r} [{}: {n}]", r.reason()),
            _ => log::warn!("{peer}: rejected: {r} [{}: {n}]", r.reason()),
        }
    }

    /// Rejections by reason since this collector started; [`runledger_ledger::rejections::read`] has
    /// the totals.
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.rejections.since_start()
    }

    /// Adds the refusals counted since the last call to the ledger's `rejections` table (the
    /// writer calls it about once a second); on failure they stay counted and are retried.
    pub fn flush_rejections(&self, conn: &rusqlite::Connection) {
        if let Err(e) = self.rejections.flush(conn) {
            log::warn!("cannot store the rejection counts (kept in memory, retried): {e}");
        }
    }

    pub fn summary(&self) -> String {
        let rej = self.rejections();
        let rej = if rej.is_empty() {
            "none".to_string()
        } else {
            rej.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "{} batches ({} items) committed, {} failed to merge; rejected: {rej}",
            self.batches.load(Ordering::Relaxed),
            self.items.load(Ordering::Relaxed),
            self.merge_failures.load(Ordering::Relaxed)
        )
    }
}

/// Upper bounds of the merge histogram's buckets, seconds.
pub const MERGE_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A fixed-bucket histogram that threads add to without a lock.
#[derive(Default)]
pub struct Histogram {
    /// Observations at most each bound (not cumulative; summed when rendered), then +Inf.
    buckets: [AtomicU64; MERGE_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = MERGE_BUCKETS.iter().position(|&b| s <= b).unwrap_or(MERGE_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, o: &mut String, name: &str, help: &str) {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in MERGE_BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(o, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.buckets[MERGE_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(o, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "{name}_count {cum}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut o = String::new();
        h.render(&mut o, "x_seconds", "help");
        assert!(o.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"10\"} 2\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"+Inf\"} 3\nx_seconds_sum 60.0035\nx_seconds_count 3\n"), "{o}");
    }
}
