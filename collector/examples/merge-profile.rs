//! Where the merge's time goes, statement by statement: merges the load generator's node
//! records (`examples/loadgen.rs`) as `collector serve` merges a burst from its inbox (groups
//! of 256, or GROUP, each one combined batch, one transaction) into a fresh ledger, with SQLite's
//! profile hook on, then prints the statements that took the most time, per record.
//!
//! ```text
//! cargo run --release -p runledger-collector --example merge-profile -- [RECORDS [DIR [GROUP]]]
//! ```
//!
//! The hook times each statement from its first step to its reset, so a statement's time
//! includes the page reads and writes it caused; the commits' time is printed apart.

use runledger_ledger::{db, merge};
use runledger_record::Batch;
use runledger_synth::sample::load_records;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static TIMES: Mutex<Option<HashMap<String, (u64, Duration)>>> = Mutex::new(None);

fn profiled(sql: &str, took: Duration) {
    let mut t = TIMES.lock().unwrap();
    let e = t.get_or_insert_with(HashMap::new).entry(sql.to_string()).or_default();
    e.0 += 1;
    e.1 += took;
}

/// Merges the records into a fresh ledger in DIR, as a burst from the inbox; the time taken.
fn merge_all(dir: &std::path::Path, mut batches: Vec<Batch>, t0: i64, group: usize, profile: bool) -> Duration {
    let path = dir.join(format!("merge-profile-{}.db", std::process::id()));
    let mut conn = db::open_rw(&path).unwrap();
    if profile {
        conn.profile(Some(profiled));
    }
    let mut cache = merge::Cache::new();
    let started = Instant::now();
    for group in batches.chunks_mut(group) {
        let mut combined = Batch::new("bench".to_string(), Vec::new());
        for b in group {
            combined.items.append(&mut b.items);
        }
        let r = merge::apply_group_with(&conn, &mut cache, &[&combined], t0 + 7200).unwrap();
        assert!(r.iter().all(Result::is_ok), "{r:?}");
    }
    let took = started.elapsed();
    conn.profile(None);
    drop(conn);
    for ext in ["db", "db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(ext));
    }
    took
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(20_000, |a| a.parse().expect("RECORDS: a number"));
    let dir = args.next().map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let group: usize = args.next().map_or(256, |a| a.parse().expect("GROUP: a number"));
    let t0 = 1_767_225_600 - 3600;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let wall = merge_all(&dir, load_records("bench", 1_000_000, n, t0), t0, group, false);
    println!(
        "merge-profile: {n} node records merged {group} a transaction in {:.2} s: {:.0} records/s, {:.1} us each \
         (no profile hook)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        per(wall)
    );
    let hooked = merge_all(&dir, load_records("bench", 1_000_000, n, t0), t0, group, true);
    let times = TIMES.lock().unwrap().take().unwrap_or_default();
    let mut rows: Vec<_> = times.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 .1));
    let total: Duration = rows.iter().map(|r| r.1 .1).sum();
    println!(
        "merge-profile: with the hook {:.1} us each, of which SQL statements {:.1} us (the rest: the merge's own \
         code, and the hook)",
        per(hooked),
        per(total)
    );
    for (sql, (count, took)) in rows.iter().take(25) {
        let short: String = sql.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(140).collect();
        println!("{:8.1} us/record {:5.2}/record  {short}", per(*took), *count as f64 / n as f64);
    }
}
