//! The inbox: node batches committed as they arrived, merged later.
//!
//! `collector serve` has one writer, and merging a node's batch in a transaction of its own
//! costs it about 0.5 ms (the job's row, its steps, node row, environment, rollups, and more than
//! half of it the commit: `bench/merge-profile RECORDS DIR 1`), so when the N epilogs
//! of a large job report at once the writer, not the network or munged, sets the rate. During
//! such a burst the writer stores each batch's verified body here instead, one row per batch,
//! commits, and answers `ok`: the batch is as durable as a merged one (the acknowledgement still
//! follows a commit), and costs the writer one insert. When no request waits it merges what the
//! inbox holds, oldest first, in large groups, and deletes the rows it merged.
//!
//! A merged batch is deleted in a transaction after the merge's own. A crash in between merges
//! it again at the next start, which changes nothing: the merge is idempotent, as it must be for
//! an epilog that resends after a lost reply. A batch the merge refuses (it was verified and
//! validated before it was stored, so this is a conflict with the ledger, or a format a later
//! collector no longer reads) stays with its error for an admin (`collector audit` counts it)
//! and is not tried again: nothing the sender was told is stored is ever dropped.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

/// The inbox holds at most this many batches: beyond it, the writer merges before it answers,
/// as it does without a burst, so a flood the merge cannot keep up with slows its senders down
/// (they hear "busy" and retry) rather than growing the file without bound. About 40 MB of
/// typical node batches.
pub const MAX_BATCHES: u64 = 10_000;

/// One stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    /// When the collector received it (Unix seconds): the merge's `received_at`.
    pub received_at: i64,
    /// Who sent it (address), for the log.
    pub peer: String,
    /// The batch as its sender signed it (JSON; stored compressed, see [`put`]).
    pub body: Vec<u8>,
}

/// Stores one batch; the caller holds the transaction. The body is kept Snappy-compressed (raw
/// format): a node batch is mostly its environment's JSON, a third of it compressed, so several
/// fit a page and none spills to an overflow page, which the insert and the delete would each
/// write again.
pub fn put(conn: &Connection, received_at: i64, peer: &str, body: &[u8]) -> rusqlite::Result<()> {
    let packed = snap::raw::Encoder::new()
        .compress_vec(body)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached("INSERT INTO inbox (received_at, peer, body) VALUES (?1, ?2, ?3)")?.execute(params![
        received_at,
        peer,
        packed
    ])?;
    Ok(())
}

/// The oldest `limit` batches still to merge (those the merge refused are left out).
pub fn oldest(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Entry>> {
    let mut st =
        conn.prepare_cached("SELECT id, received_at, peer, body FROM inbox WHERE error IS NULL ORDER BY id LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| {
        let packed: Vec<u8> = r.get(3)?;
        // A body that does not decompress is handed on as it is: the merge's parse refuses it,
        // and it stays in the inbox with that error.
        let body = snap::raw::Decoder::new().decompress_vec(&packed).unwrap_or(packed);
        Ok(Entry { id: r.get(0)?, received_at: r.get(1)?, peer: r.get(2)?, body })
    })?;
    rows.collect()
}

/// How many batches wait to be merged.
pub fn waiting(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM inbox WHERE error IS NULL", [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// The batches the merge refused: (id, received_at, peer, error), oldest first.
pub fn refused(conn: &Connection) -> rusqlite::Result<Vec<(i64, i64, String, String)>> {
    let mut st = conn.prepare("SELECT id, received_at, peer, error FROM inbox WHERE error IS NOT NULL ORDER BY id")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// After a merge has committed: deletes the batches it merged and keeps those it refused with
/// their error, in one transaction of its own.
pub fn settle(conn: &Connection, merged: &[i64], refused: &[(i64, String)]) -> rusqlite::Result<()> {
    // Rolled back when dropped uncommitted.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let mut del = tx.prepare_cached("DELETE FROM inbox WHERE id = ?1")?;
    for id in merged {
        del.execute([id])?;
    }
    let mut keep = tx.prepare_cached("UPDATE inbox SET error = ?2 WHERE id = ?1")?;
    for (id, e) in refused {
        keep.execute(params![id, e])?;
    }
    drop((del, keep));
    tx.commit()
}

/// Whether the inbox holds a batch still to merge (cheap: reads one index entry).
pub fn any(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM inbox WHERE error IS NULL LIMIT 1")?
        .query_row([], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_wait_in_order_and_leave_when_settled() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open_rw(&dir.path().join("l.db")).unwrap();
        assert!(!any(&conn).unwrap());
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..3 {
            put(&conn, 100 + i, "10.0.0.1:5", format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        assert!(any(&conn).unwrap());
        assert_eq!(waiting(&conn).unwrap(), 3);
        let e = oldest(&conn, 2).unwrap();
        assert_eq!(e.iter().map(|e| e.received_at).collect::<Vec<_>>(), [100, 101]);
        assert_eq!(e[1].body, b"{\"n\":1}");
        settle(&conn, &[e[0].id], &[(e[1].id, "conflict".into())]).unwrap();
        // The refused one stays, with its error, and is not offered again.
        assert_eq!(waiting(&conn).unwrap(), 1);
        assert_eq!(oldest(&conn, 10).unwrap()[0].received_at, 102);
        assert_eq!(refused(&conn).unwrap(), vec![(e[1].id, 101, "10.0.0.1:5".to_string(), "conflict".to_string())]);
    }
}
