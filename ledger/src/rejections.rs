//! Refused requests, counted by reason, kept in the ledger for admins.
//!
//! `collector serve` counts every refusal (the daemon's `auth::Reject`) in memory as it happens
//! ([`Tally::add`], a mutex and a map: no database write on the path of a bad request, so a
//! flood of them cannot slow the ingest) and the writer thread adds what accumulated to the
//! `rejections` table ([`Tally::flush`]) at most every [`FLUSH_EVERY`], in a transaction of its
//! own. The table holds totals over the ledger's life, across restarts: per reason the count, when
//! the first and the last were refused, and the last peer's address. [`read`] is the read API.
//!
//! A collector killed (not stopped) loses the counts of its last [`FLUSH_EVERY`] at most; the
//! log line of each refusal remains.

use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// How long refusals may wait in memory before the writer stores them.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One reason's row in the `rejections` table (or a delta waiting to be added to it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// The daemon's `auth::Reject::reason`: "credential expired", "unauthorized uid", …
    pub reason: String,
    pub count: u64,
    /// Unix seconds of the first and the last refusal for this reason.
    pub first_time: i64,
    pub last_time: i64,
    /// The address (IP only) of the last peer refused for this reason.
    pub last_peer: String,
}

/// The counts of every reason ever recorded in this ledger, most frequent first.
pub fn read(conn: &Connection) -> rusqlite::Result<Vec<Rejection>> {
    let mut st = conn.prepare(
        "SELECT reason, count, first_time, last_time, last_peer FROM rejections ORDER BY count DESC, reason",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Rejection {
            reason: r.get(0)?,
            count: r.get::<_, i64>(1)? as u64,
            first_time: r.get(2)?,
            last_time: r.get(3)?,
            last_peer: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Adds `deltas` to the table in one transaction (the caller holds none).
pub fn add(conn: &Connection, deltas: &[Rejection]) -> rusqlite::Result<()> {
    // Rolled back when dropped uncommitted.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO rejections (reason, count, first_time, last_time, last_peer) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (reason) DO UPDATE SET
                count = rejections.count + excluded.count,
                first_time = min(rejections.first_time, excluded.first_time),
                last_time = max(rejections.last_time, excluded.last_time),
                last_peer = CASE WHEN excluded.last_time >= rejections.last_time
                                 THEN excluded.last_peer ELSE rejections.last_peer END",
        )?;
        for d in deltas {
            st.execute(params![d.reason, d.count as i64, d.first_time, d.last_time, d.last_peer])?;
        }
    }
    tx.commit()
}

/// One reason's counts in memory.
#[derive(Default)]
struct Count {
    /// Since this collector started (what the log lines show).
    since_start: u64,
    /// Not yet in the table: `count`, times and peer of the refusals since the last flush.
    unflushed: Option<Rejection>,
}

/// The daemon's in-memory rejection counters.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<&'static str, Count>>,
}

impl Tally {
    /// Counts one refusal; returns how many of this reason since the collector started.
    pub fn add(&self, reason: &'static str, peer: SocketAddr, time: i64) -> u64 {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = m.entry(reason).or_default();
        c.since_start += 1;
        // The port is the peer's ephemeral one: only the host tells an admin where to look.
        let peer = peer.ip().to_string();
        match &mut c.unflushed {
            Some(u) => {
                u.count += 1;
                u.last_time = u.last_time.max(time);
                u.last_peer = peer;
            }
            None => {
                c.unflushed = Some(Rejection {
                    reason: reason.to_string(),
                    count: 1,
                    first_time: time,
                    last_time: time,
                    last_peer: peer,
                })
            }
        }
        c.since_start
    }

    /// Counts by reason since the collector started.
    pub fn since_start(&self) -> BTreeMap<&'static str, u64> {
        let m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, c)| (*k, c.since_start)).collect()
    }

    fn take(&self) -> Vec<Rejection> {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        m.values_mut().filter_map(|c| c.unflushed.take()).collect()
    }

    /// Puts back deltas that could not be stored, merging with what came in meanwhile.
    fn restore(&self, deltas: Vec<Rejection>) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for d in deltas {
            let Some((_, c)) = m.iter_mut().find(|(k, _)| **k == d.reason) else { continue };
            c.unflushed = Some(match c.unflushed.take() {
                None => d,
                Some(newer) => {
                    Rejection { count: d.count + newer.count, first_time: d.first_time.min(newer.first_time), ..newer }
                }
            });
        }
    }

    /// Adds the refusals counted since the last flush to the table. On failure they stay in
    /// memory for the next attempt.
    pub fn flush(&self, conn: &Connection) -> rusqlite::Result<usize> {
        let deltas = self.take();
        if deltas.is_empty() {
            return Ok(0);
        }
        match add(conn, &deltas) {
            Ok(()) => Ok(deltas.len()),
            Err(e) => {
                self.restore(deltas);
                Err(e)
            }
        }
    }
}

/// "credential expired=3 (last 10.1.2.3), …" for the log; "none" when empty.
pub fn describe(rows: &[Rejection]) -> String {
    if rows.is_empty() {
        return "none".into();
    }
    rows.iter().map(|r| format!("{}={} (last {})", r.reason, r.count, r.last_peer)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_accumulate_across_flushes_and_restarts() {
        let conn = crate::db::open_memory();
        let t = Tally::default();
        assert_eq!(t.flush(&conn).unwrap(), 0);
        assert_eq!(t.add("credential expired", peer("10.0.0.1:4000"), 100), 1);
        assert_eq!(t.add("credential expired", peer("10.0.0.2:4001"), 105), 2);
        assert_eq!(t.add("unauthorized uid", peer("[::1]:5"), 101), 1);
        assert_eq!(t.flush(&conn).unwrap(), 2);
        // Nothing new: nothing written.
        assert_eq!(t.flush(&conn).unwrap(), 0);
        let rows = read(&conn).unwrap();
        assert_eq!(
            rows[0],
            Rejection {
                reason: "credential expired".into(),
                count: 2,
                first_time: 100,
                last_time: 105,
                last_peer: "10.0.0.2".into()
            }
        );
        assert_eq!(
            (rows[1].reason.as_str(), rows[1].count, rows[1].last_peer.as_str()),
            ("unauthorized uid", 1, "::1")
        );

        // A restarted collector (a new tally) adds to the stored totals.
        let t2 = Tally::default();
        assert_eq!(t2.add("credential expired", peer("10.0.0.3:1"), 200), 1);
        t2.flush(&conn).unwrap();
        let rows = read(&conn).unwrap();
        assert_eq!((rows[0].count, rows[0].first_time, rows[0].last_time), (3, 100, 200));
        assert_eq!(rows[0].last_peer, "10.0.0.3");
        assert_eq!(t2.since_start().get("credential expired"), Some(&1));
        assert!(describe(&rows).starts_with("credential expired=3 (last 10.0.0.3)"), "{}", describe(&rows));
    }

    #[test]
    fn a_failed_flush_keeps_the_counts() {
        let conn = crate::db::open_memory();
        let t = Tally::default();
        t.add("timeout", peer("10.0.0.1:1"), 50);
        // The writer's own transaction is open: BEGIN inside fails, nothing is lost.
        conn.execute_batch("BEGIN").unwrap();
        assert!(t.flush(&conn).is_err());
        conn.execute_batch("ROLLBACK").unwrap();
        t.add("timeout", peer("10.0.0.2:1"), 60);
        assert_eq!(t.flush(&conn).unwrap(), 1);
        let rows = read(&conn).unwrap();
        assert_eq!(
            rows,
            vec![Rejection {
                reason: "timeout".into(),
                count: 2,
                first_time: 50,
                last_time: 60,
                last_peer: "10.0.0.2".into()
            }]
        );
    }
}
