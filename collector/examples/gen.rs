//! Fills a ledger with N realistic made-up jobs ([`runledger_synth::synth`]) through the real
//! merge code, for the analytics queries and their bench.
//!
//! ```text
//! cargo run --release -p runledger-collector --example gen -- /var/tmp/ledger.db 1000000 [SEED [END]]
//! ```
//!
//! END (Unix seconds, default now) fixes the year the jobs fall in, for reproducible ledgers.
//! The jobs carry their Python records (issue #14); `RUNLEDGER_GEN_PYTHON=0` leaves them out, to
//! measure what they cost.
//! `RUNLEDGER_GEN_TIMELINES=1` gives every step a usage series as the plugin's sampler sends at
//! its default 30 s (`Synth::timelines`; one job in twelve stalls and sits idle), so the size per
//! job includes what timelines cost; the jobs are the same either way.
//!
//! A ledger that already holds made-up jobs is resumed: generation goes on after the highest job
//! id in it, so give the same N, SEED and END as the run that stopped. Jobs commit 5,000 at a
//! time, so a stopped run leaves no job half merged.
//!
//! Speed: one batch per job (all its nodes' items: one job lookup and one recomputation, where
//! per-node batches cost one each), 5,000 jobs per transaction, and the made-up items built on a
//! second thread while the merge runs. The merge itself is `merge::apply_group_with` (with one
//! cache of interned ids for the run), as in `collector serve`. At the end it prints the database size per job, the bytes per table
//! (SQLite's dbstat) and the usage series' blob bytes per point.

use runledger_ledger::{db, merge};
use runledger_synth::Synth;

/// Jobs per transaction: large enough that commits cost nothing, small enough to keep the WAL
/// (and the memory of the pending batches) modest.
const JOBS_PER_COMMIT: usize = 5_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: gen DATABASE N [SEED [END]]");
        std::process::exit(2);
    };
    let n: u32 = n.parse().expect("N must be a number");
    let seed: u64 = args.next().map(|s| s.parse().expect("SEED must be a number")).unwrap_or(42);
    let now = args.next().map(|s| s.parse().expect("END must be Unix seconds")).unwrap_or_else(runledger_record::now);
    let path = std::path::Path::new(&path);
    let conn = db::open_rw(path).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch("PRAGMA cache_size = -262144;").expect("pragma");

    // Made-up job ids are FIRST_JOB_ID + the job's index in the year.
    let resumed: usize = conn
        .query_row("SELECT MAX(job_id) FROM jobs", [], |r| r.get::<_, Option<i64>>(0))
        .expect("highest job id")
        .map_or(0, |id| (id - i64::from(runledger_synth::synth::FIRST_JOB_ID) + 1).max(0) as usize);
    if resumed > 0 {
        eprintln!("gen: resuming after {resumed} jobs already in {}", path.display());
    }
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<runledger_record::Batch>>(4);
    let producer = std::thread::spawn(move || {
        let mut synth = Synth::new(n, seed, now);
        if std::env::var("RUNLEDGER_GEN_PYTHON").is_ok_and(|v| v == "0") {
            synth = synth.without_python();
        }
        synth.timelines = std::env::var("RUNLEDGER_GEN_TIMELINES").is_ok_and(|v| v == "1");
        synth.skip(resumed);
        let mut chunk = Vec::with_capacity(JOBS_PER_COMMIT);
        while let Some(b) = synth.next_job_batch() {
            chunk.push(b);
            if chunk.len() == JOBS_PER_COMMIT && tx.send(std::mem::take(&mut chunk)).is_err() {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk);
        }
    });
    let mut done = resumed;
    let mut items = 0usize;
    let mut cache = merge::Cache::new();
    for chunk in rx {
        let refs: Vec<_> = chunk.iter().collect();
        for r in merge::apply_group_with(&conn, &mut cache, &refs, now).expect("commit") {
            r.expect("merge");
        }
        items += chunk.iter().map(|b| b.items.len()).sum::<usize>();
        let before = done;
        done += chunk.len();
        if done / 100_000 != before / 100_000 {
            eprintln!("gen: {done} jobs, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    producer.join().expect("generator thread");
    conn.execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE);").expect("checkpoint");
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "gen: {n} jobs ({} made by this run, {items} items) into {} in {secs:.1} s ({:.0} jobs/s); {bytes} bytes = {:.0} bytes per job",
        done - resumed,
        path.display(),
        (done - resumed) as f64 / secs,
        bytes as f64 / f64::from(n.max(1))
    );
    report_tables(&conn, n);
    report_series(&conn, n);
}

/// What the usage series cost: blobs, points, and blob bytes per point, over all series and
/// over the series of short steps (one sample per point, as a step under an hour at 30 s).
fn report_series(conn: &rusqlite::Connection, n: u32) {
    let mut st = conn.prepare("SELECT series FROM step_series").expect("step_series");
    let mut rows = st.query([]).expect("step_series rows");
    // (blobs, points, bytes) for all, and for the unmerged series (per_point 1).
    let (mut all, mut single) = ((0u64, 0u64, 0u64), (0u64, 0u64, 0u64));
    while let Some(r) = rows.next().expect("step_series row") {
        let b: Vec<u8> = r.get(0).expect("blob");
        let Some(s) = runledger_ledger::timeline::decode(&b) else { continue };
        let add = |acc: &mut (u64, u64, u64)| {
            acc.0 += 1;
            acc.1 += s.points.len() as u64;
            acc.2 += b.len() as u64;
        };
        add(&mut all);
        if s.per_point == 1 {
            add(&mut single);
        }
    }
    for (what, (blobs, points, bytes)) in [("all series", all), ("unmerged", single)] {
        eprintln!(
            "gen: {what}: {blobs} blobs, {points} points, {bytes} blob bytes = {:.1} bytes per point, {:.0} per job",
            bytes as f64 / points.max(1) as f64,
            bytes as f64 / f64::from(n.max(1))
        );
    }
}

/// Bytes per table and index (dbstat), largest first.
fn report_tables(conn: &rusqlite::Connection, n: u32) {
    let mut st = match conn.prepare("SELECT name, SUM(pgsize) AS b FROM dbstat GROUP BY name ORDER BY b DESC") {
        Ok(st) => st,
        Err(e) => {
            eprintln!("gen: no dbstat ({e})");
            return;
        }
    };
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("dbstat")
        .collect::<Result<Vec<_>, _>>()
        .expect("dbstat rows");
    for (name, b) in rows {
        eprintln!("  {name:28} {b:>12} bytes {:>8.1} per job", b as f64 / f64::from(n.max(1)));
    }
}
