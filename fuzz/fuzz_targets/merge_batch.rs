//! The collector's merge: any batch that parses and validates is applied to a fresh database
//! twice; the second application must change nothing (idempotence), and nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use runledger_ledger::{db, merge};
use runledger_record::Batch;
use rusqlite::Connection;

/// Every table's rows, in key order.
fn dump(conn: &Connection) -> String {
    let mut out = String::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    for t in tables {
        let Ok(mut stmt) = conn.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2")) else { continue };
        let n = stmt.column_count();
        let rows: Vec<Vec<String>> = stmt
            .query_map([], |r| (0..n).map(|i| r.get_ref(i).map(|v| format!("{v:?}"))).collect())
            .map(|it| it.flatten().collect())
            .unwrap_or_default();
        out.push_str(&format!("{t}: {rows:?}\n"));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = Batch::from_json(data) else { return };
    if merge::validate(&batch).is_err() {
        return;
    }
    let conn = db::open_memory();
    if merge::apply_batch(&conn, &batch, 1_700_000_000).is_err() {
        return;
    }
    let once = dump(&conn);
    merge::apply_batch(&conn, &batch, 1_700_000_000).expect("a batch that applied once applies again");
    assert_eq!(once, dump(&conn), "applying a batch twice changed the database");
});
