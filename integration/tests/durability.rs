//! What `collector serve` promises about stored records, tested by trying to break it.
//!
//! - Killed at random (SIGKILL) while concurrent senders push records, and restarted on the same
//!   port and database: every record acknowledged is stored, once, whole, and the file is sound.
//! - The same batch sent again and again (an epilog retrying after a lost ack): one job, one row
//!   of everything, and the replayed credential itself refused and counted.
//!
//! Needs munged. Without it the plain tests print a note and pass; their `_strict` twins
//! (ignored by default) fail instead. The full kill test (10,000 records, 20 kills) is only the
//! ignored twin: `cargo test -p runledger-integration --test durability -- --ignored --nocapture`.
//! RUNLEDGER_SEED=N replays the kill schedule of a run (the seed is printed).

#[path = "../../collector/tests/common/mod.rs"]
mod common;

use common::{expect_rejected, need_munged, sign, Limits, Server};
use runledger_epilog::deliver::{Outcome, Sender};
use runledger_ledger::rejections;
use runledger_record::wire;
use runledger_synth::synth::Rng;
use runledger_synth::Sample;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CLUSTER: &str = "killtest";
const FIRST_JOB: u32 = 100_000;

/// A number below `n`, for the kill schedule and the senders' backoff.
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

fn seed() -> u64 {
    match std::env::var("RUNLEDGER_SEED") {
        Ok(s) => s.parse().expect("RUNLEDGER_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// The record of job `i`: one node's batch, as that node's epilog sends it.
fn record(i: usize, t0: i64) -> Sample {
    let mut s = Sample::new(CLUSTER, FIRST_JOB + i as u32, t0 + i as i64);
    s.user = format!("user{:03}", i % 97);
    s.uid = 10_000 + (i % 97) as u32;
    s.first_node = (i % 512) as u32;
    s
}

/// Rows per job in each child table for one record, found by merging one into a scratch ledger.
fn rows_per_job(sample: &Sample) -> Vec<(&'static str, i64)> {
    let conn = runledger_ledger::db::open_memory();
    let b = sample.batch(0);
    runledger_ledger::merge::apply_group(&conn, &[&b], runledger_record::now()).unwrap();
    CHILD_TABLES
        .iter()
        .map(|t| (*t, conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap()))
        .collect()
}

/// The tables with rows per job (schema 3 keeps tasks inside their step's row, modules as one
/// shared set per job, and derives events).
const CHILD_TABLES: [&str; 4] = ["job_nodes", "steps", "tags", "facts"];

#[derive(Default)]
struct Counters {
    acks: AtomicUsize,
    attempts: AtomicUsize,
    /// Attempts that failed without a reply (connection refused, reset, closed).
    down: AtomicUsize,
    /// Of those, attempts whose record was already in the ledger when the sender looked:
    /// committed, but the ack was lost to the kill. The retry must not duplicate it.
    committed_unacked: AtomicUsize,
    refused: Mutex<Vec<String>>,
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn kill_test_body(strict: bool, records: usize, kills: usize, senders: usize) {
    if !need_munged(strict, "the kill test") {
        return;
    }
    let seed = seed();
    let mut rng = Rng(seed);
    let t0 = runledger_record::now() - 86_400;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..records).map(|i| record(i, t0).batch(0).to_json()).collect());
    let items = record(0, t0).node_items(0).len();
    let limits = Limits { max_connections: 64, read_timeout_ms: 10_000, rust_log: "info", ..Limits::default() };
    let server = Server::start_with(&limits);
    let addr = server.addr.to_string();
    let database = server.database.clone();
    eprintln!("kill test: {records} records, {senders} senders, {kills} kills, seed {seed} (RUNLEDGER_SEED)");

    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicBool>> = Arc::new((0..records).map(|_| AtomicBool::new(false)).collect());

    // Each sender delivers its share one record at a time, retrying each until it is acked, as an
    // epilog's outbox does: a fresh Sender (and credential) per attempt, backing off on failure.
    let sender_threads: Vec<_> = (0..senders)
        .map(|k| {
            let (bodies, counters, stop, acked, addr, database) =
                (bodies.clone(), counters.clone(), stop.clone(), acked.clone(), addr.clone(), database.clone());
            let mut rng = Rng(seed ^ (k as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
            thread::spawn(move || {
                let ledger = runledger_ledger::db::open_ro(&database).unwrap();
                for i in (k..bodies.len()).step_by(senders) {
                    let mut failures = 0u32;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        counters.attempts.fetch_add(1, Ordering::Relaxed);
                        let mut s = Sender::new(&addr, Duration::from_secs(5));
                        match s.send(&bodies[i], Instant::now() + Duration::from_secs(30)) {
                            Outcome::Committed(r) => {
                                // Per wire::Reply, an item applied again counts as applied.
                                assert_eq!(r.applied, items, "record {i}: {r:?}");
                                assert!(!acked[i].swap(true, Ordering::Relaxed), "record {i} acked twice");
                                counters.acks.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Outcome::Malformed(why) => panic!("record {i} refused as malformed: {why}"),
                            Outcome::Refused(why) => {
                                counters.refused.lock().unwrap().push(format!("record {i}: {why}"))
                            }
                            Outcome::Down(_) => {
                                counters.down.fetch_add(1, Ordering::Relaxed);
                                let job = FIRST_JOB + i as u32;
                                let stored = ledger.query_row(
                                    "SELECT count(*) FROM jobs WHERE cluster = ?1 AND job_id = ?2",
                                    rusqlite::params![CLUSTER, job],
                                    |r| r.get::<_, i64>(0),
                                );
                                if matches!(stored, Ok(n) if n > 0) {
                                    counters.committed_unacked.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        failures += 1;
                        assert!(failures < 2000, "record {i}: still not acked after {failures} attempts");
                        let backoff = (5u64 << failures.min(6)).min(200) + below(&mut rng, 5);
                        thread::sleep(Duration::from_millis(backoff));
                    }
                }
            })
        })
        .collect();

    // The killer: kill i happens once the acks pass a random point of the i-th slice of the
    // first 90% of the records (so kills are spread over the run and records are always still
    // in flight), a few random milliseconds later; the collector stays down a random while.
    // One kill in four instead comes 0-20 ms after the previous restart, while the new process
    // is still starting its writer.
    let span = records * 9 / 10 / kills;
    let points: Vec<Option<usize>> = (0..kills)
        .map(|i| (i == 0 || below(&mut rng, 4) != 0).then(|| i * span + below(&mut rng, span as u64) as usize))
        .collect();
    let early = points.iter().filter(|p| p.is_none()).count();
    let delays: Vec<(u64, u64)> = points
        .iter()
        .map(|p| (if p.is_none() { below(&mut rng, 20) } else { below(&mut rng, 5) }, below(&mut rng, 30)))
        .collect();
    let killer = {
        let (counters, stop) = (counters.clone(), stop.clone());
        let mut server = server;
        thread::spawn(move || {
            struct StopOnPanic(Arc<AtomicBool>);
            impl Drop for StopOnPanic {
                fn drop(&mut self) {
                    if thread::panicking() {
                        self.0.store(true, Ordering::Relaxed);
                    }
                }
            }
            let _guard = StopOnPanic(stop.clone());
            let mut outstanding_at_kill = Vec::new();
            for (point, (before, down)) in points.into_iter().zip(delays) {
                while counters.acks.load(Ordering::Relaxed) < point.unwrap_or(0) {
                    if stop.load(Ordering::Relaxed) {
                        return (server, outstanding_at_kill);
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                thread::sleep(Duration::from_millis(before));
                outstanding_at_kill.push(records - counters.acks.load(Ordering::Relaxed));
                server.kill();
                thread::sleep(Duration::from_millis(down));
                server.restart("info");
            }
            (server, outstanding_at_kill)
        })
    };

    let mut sender_panic = None;
    for t in sender_threads {
        if let Err(p) = t.join() {
            stop.store(true, Ordering::Relaxed);
            sender_panic.get_or_insert(p);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let joined = killer.join();
    if let Some(p) = sender_panic {
        std::panic::resume_unwind(p);
    }
    let (server, outstanding_at_kill) = joined.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let wall = started.elapsed();

    // What the ledger holds now, once what was answered from the inbox has been merged.
    server.wait_merged();
    let conn = runledger_ledger::db::open_ro(&server.database).unwrap();
    let jobs = count(&conn, "SELECT count(*) FROM jobs");
    let distinct = count(
        &conn,
        &format!(
            "SELECT count(DISTINCT job_id) FROM jobs WHERE cluster = '{CLUSTER}' AND job_id BETWEEN {FIRST_JOB} AND {}",
            FIRST_JOB as usize + records - 1
        ),
    );
    let duplicates = count(&conn, "SELECT count(*) - count(DISTINCT cluster || ':' || job_id) FROM jobs");
    let acks = counters.acks.load(Ordering::Relaxed);
    let stored: std::collections::HashSet<u32> = conn
        .prepare("SELECT job_id FROM jobs WHERE cluster = ?1")
        .unwrap()
        .query_map([CLUSTER], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Acknowledged, yet not in the ledger.
    let lost =
        (0..records).filter(|&i| acked[i].load(Ordering::Relaxed) && !stored.contains(&(FIRST_JOB + i as u32))).count();
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let fk_errors = count(&conn, "SELECT count(*) FROM pragma_foreign_key_check");
    // A partial merge would leave a job with fewer rows than a whole record makes; a doubled one
    // with more (the child keys make an exact duplicate row impossible, but not a second job).
    let mut partial = Vec::new();
    for (table, per_job) in rows_per_job(&record(0, t0)) {
        let off = count(
            &conn,
            &format!(
                "SELECT count(*) FROM jobs j WHERE (SELECT count(*) FROM {table} c WHERE c.job = j.id) <> {per_job}"
            ),
        );
        if off > 0 {
            partial.push(format!("{off} jobs without {per_job} {table} rows"));
        }
    }
    let not_completed = count(&conn, "SELECT count(*) FROM jobs WHERE state <> 'COMPLETED' OR nodes IS NULL");
    let refused = counters.refused.lock().unwrap().clone();
    let attempts = counters.attempts.load(Ordering::Relaxed);

    println!(
        "kill test figures: records {records}, senders {senders}, acks {acks}, attempts {attempts} (retries {}), \
         failed attempts {} (of which committed but unacked {}), refused {}, kills {} ({early} just after a restart; \
         records outstanding at each: min {}), jobs {jobs}, duplicates {duplicates}, lost {lost}, partial {}, integrity_check {}, \
         foreign key errors {fk_errors}, wall time {:.1} s, seed {seed}",
        attempts - acks,
        counters.down.load(Ordering::Relaxed),
        counters.committed_unacked.load(Ordering::Relaxed),
        refused.len(),
        outstanding_at_kill.len(),
        outstanding_at_kill.iter().min().copied().unwrap_or(0),
        partial.len(),
        integrity.join("; "),
        wall.as_secs_f64()
    );
    assert_eq!(outstanding_at_kill.len(), kills);
    assert!(outstanding_at_kill.iter().all(|&n| n > 0), "a kill found no record in flight: {outstanding_at_kill:?}");
    assert_eq!(acks, records, "every record acked once");
    assert_eq!(jobs, records as i64, "one job per record");
    assert_eq!(distinct, records as i64);
    assert_eq!(duplicates, 0);
    assert_eq!(lost, 0);
    assert!(partial.is_empty(), "{partial:?}");
    assert_eq!(not_completed, 0);
    assert_eq!(integrity, ["ok"]);
    assert_eq!(fk_errors, 0);
    assert!(refused.is_empty(), "the collector refused records: {:?}", &refused[..refused.len().min(5)]);
}

#[test]
fn kill_test() {
    kill_test_body(false, 1_000, 5, 4);
}

/// Issue #4: 10,000 records from 8 senders, 20 SIGKILLs.
#[test]
#[ignore = "needs munged; SIGKILLs the collector 20 times under 10,000 records"]
fn kill_test_strict() {
    kill_test_body(true, 10_000, 20, 8);
}

/// Every row of the ledger, as text, by table (`job_nodes.received_at` left out: it is when the
/// node's record last arrived, so a re-sent record moves it).
fn snapshot(conn: &Connection) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables.into_iter().filter(|t| t != "rejections") {
        let mut st = conn.prepare(&format!("SELECT * FROM {t}")).unwrap();
        let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows: Vec<String> = st
            .query_map([], |r| {
                let mut cols = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    if t == "job_nodes" && name == "received_at" {
                        continue;
                    }
                    cols.push(match r.get_ref(i)? {
                        ValueRef::Null => "NULL".to_string(),
                        ValueRef::Integer(v) => v.to_string(),
                        ValueRef::Real(v) => v.to_string(),
                        ValueRef::Text(v) | ValueRef::Blob(v) => String::from_utf8_lossy(v).into_owned(),
                    });
                }
                Ok(cols.join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

fn replay_body(strict: bool) {
    if !need_munged(strict, "the replay test") {
        return;
    }
    let server = Server::start();
    // A two-node job with solver-log facts: both nodes' epilogs retry, interleaved.
    let mut sample = Sample::new("replay", 777, runledger_record::now() - 600);
    sample.nnodes = 2;
    sample.set_log("LAMMPS", "success", None, None, &[("atoms", "32000")]);
    let bodies: Vec<Vec<u8>> = (0..2).map(|n| sample.batch(n).to_json()).collect();
    let mut first_credential = None;
    let mut after_first = None;
    for round in 1..=5 {
        for (n, body) in bodies.iter().enumerate() {
            // What an epilog does after a lost ack: the same body under a fresh credential.
            let cred = sign(&wire::digest(body));
            let r = server.send(&cred, body);
            assert!(r.ok, "round {round}, node {n}: {r:?}\n{}", server.log_text());
            // A duplicate item counts as applied (wire::Reply): the ack cannot tell a first
            // delivery from a repeat, the ledger below shows nothing was added.
            assert_eq!(r.applied, sample.node_items(n as u32).len(), "round {round}, node {n}");
            first_credential.get_or_insert((cred, body.clone()));
        }
        let conn = runledger_ledger::db::open_ro(&server.database).unwrap();
        let snap = snapshot(&conn);
        match &after_first {
            None => after_first = Some(snap),
            Some(first) => {
                for (table, rows) in first {
                    assert_eq!(rows, &snap[table], "table {table} changed in round {round}");
                }
            }
        }
    }
    let snap = after_first.unwrap();
    let n = |t: &str| snap[t].len();
    assert_eq!(n("jobs"), 1, "{:?}", snap["jobs"]);
    assert_eq!(n("job_nodes"), 2);
    // The batch step on the first node, step 0 on both; one task per batch step, two per step 0.
    assert_eq!(n("steps"), 3);
    assert_eq!(n("tags"), 1);
    assert!(n("facts") > 0);
    let conn = runledger_ledger::db::open_ro(&server.database).unwrap();
    let job: i64 = conn.query_row("SELECT id FROM jobs", [], |r| r.get(0)).unwrap();
    let steps = runledger_collector::questions::query::steps_of(&conn, &[job]).unwrap();
    assert_eq!(steps[&job].iter().map(|s| s.tasks.len()).sum::<usize>(), 5, "tasks, as `query job` shows them");
    assert_eq!(runledger_collector::questions::query::modules_of(&conn, &[job]).unwrap()[&job].len(), 2);
    let out = server.query(&["jobs", "-j", "777", "-o", "JobID,NNodes,NodeList,State", "-n"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "777 2 n0001,n0002 COMPLETED");

    // The first credential itself, sent again: refused as a replay, and counted.
    let (cred, body) = first_credential.unwrap();
    expect_rejected(&server.send(&cred, &body), "replayed");
    let conn = runledger_ledger::db::open_ro(&server.database).unwrap();
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = rejections::read(&conn).unwrap();
        if !rows.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].reason.as_str(), rows[0].count, rows[0].last_peer.as_str()),
        ("credential replayed", 1, "127.0.0.1")
    );
    for (table, rows) in snapshot(&conn) {
        assert_eq!(rows, snap[&table], "table {table} changed by the replayed credential");
    }
}

#[test]
fn replay_stores_once() {
    replay_body(false);
}

#[test]
#[ignore = "needs munged"]
fn replay_stores_once_strict() {
    replay_body(true);
}
