//! Brings a ledger's schema up to date, as `collector serve` does when it starts, and says how
//! long that took and what it did to the file's size.
//!
//! ```text
//! cargo run --release -p runledger-collector --example migrate -- /var/tmp/ledger.db
//! ```

use runledger_ledger::db;

fn size(path: &std::path::Path) -> u64 {
    let wal = path.with_extension(format!("{}-wal", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: migrate DATABASE");
        std::process::exit(2);
    };
    let path = std::path::Path::new(&path);
    let before = size(path);
    let version = rusqlite::Connection::open(path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let started = std::time::Instant::now();
    let conn = db::open_rw(path).unwrap_or_else(|e| panic!("{e}"));
    let secs = started.elapsed().as_secs_f64();
    let jobs: i64 = conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).expect("jobs");
    drop(conn);
    let after = size(path);
    eprintln!(
        "migrate: {} from schema version {version} to {} in {secs:.1} s; {jobs} jobs; {before} -> {after} bytes \
         ({:.0} -> {:.0} bytes per job)",
        path.display(),
        db::SCHEMA_VERSION,
        before as f64 / jobs.max(1) as f64,
        after as f64 / jobs.max(1) as f64
    );
}
