//! Years of history: `collector prune`, `[retention] keep_days` and `collector backup`, on the
//! real binary, with `collector serve` running.
//!
//! - A prune keeps what the rollups answer: `query summary` by account, by user and state,
//!   `modules`, `throughput` give the same before and after; the pruned jobs are gone from
//!   everything that reads jobs; with --drop-rollups the rollup answers equal the scan's.
//! - `[retention] keep_days`: `collector serve` prunes at start-up, and records it.
//! - Prune and backup while `serve` commits records sent by concurrent senders (munged needed;
//!   the `_strict` twins, ignored by default, fail instead of skipping without it): every
//!   acknowledged record stays, no sender is refused, every backup opens, passes
//!   `integrity_check` and holds every job acknowledged before it started.

mod common;

use common::{need_munged, sign, Limits, Server, BIN};
use runledger_ledger::{db, merge};
use runledger_record::wire;
use runledger_synth::synth::{Synth, FIXTURE_END};
use runledger_synth::Sample;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A ledger of `n` made-up jobs of the year 2025, merged as `collector serve` merges.
fn fill(path: &Path, n: u32) {
    fill_with(path, n, false)
}

/// [`fill`], with usage series on every step when `timelines` (some jobs then sit idle).
fn fill_with(path: &Path, n: u32, timelines: bool) {
    let conn = db::open_rw(path).unwrap();
    let mut s = Synth::new(n, 5, FIXTURE_END);
    s.timelines = timelines;
    let mut batches = Vec::new();
    while let Some(b) = s.next_job_batch() {
        batches.push(b);
    }
    for chunk in batches.chunks(200) {
        let refs: Vec<_> = chunk.iter().collect();
        for r in merge::apply_group(&conn, &refs, FIXTURE_END).unwrap() {
            r.unwrap();
        }
    }
}

fn collector(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("RUNLEDGER_CONF", "/nonexistent").output().unwrap()
}

/// Runs `collector ARGS --database DB`; its standard output, asserting it succeeded.
fn ok(db: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("--database").arg(db).output().unwrap();
    assert!(out.status.success(), "collector {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = db::open_ro(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The end time half the jobs ended before.
fn median_end(db: &Path) -> i64 {
    count(
        db,
        "SELECT end FROM jobs WHERE end IS NOT NULL ORDER BY end LIMIT 1 OFFSET (SELECT count(end) / 2 FROM jobs)",
    )
}

/// What the rollups answer, and what they answer for.
const ROLLUP_QUESTIONS: &[&[&str]] = &[
    &["query", "summary", "--by", "account", "--csv"],
    &["query", "summary", "--by", "user,state", "--csv"],
    &["query", "summary", "--by", "partition", "-A", "acct01,acct02", "--csv"],
    &["query", "modules", "--top", "20", "--csv"],
    &["query", "modules", "--names", "--csv"],
    &["query", "throughput", "--interval", "1d", "--csv"],
];

#[test]
fn prune_keeps_the_rollup_answers_and_takes_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    fill_with(&db, 1500, true);
    let before = median_end(&db);
    let answers: Vec<String> = ROLLUP_QUESTIONS.iter().map(|q| ok(&db, q)).collect();
    // Idle core-hours are among what the rollups keep (the summary's last column).
    let idle_before: i64 = count(
        &db,
        &format!("SELECT count(*) FROM jobs WHERE idle_core_s > 0 AND end < {before} AND state <> 'UNKNOWN'"),
    );
    assert!(idle_before > 20, "{idle_before} idle jobs among those to prune");
    let idle_hours =
        |csv: &str| -> f64 { csv.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse::<f64>().unwrap()).sum() };
    assert!(idle_hours(&answers[0]) > 0.0, "{}", answers[0]);
    let all_jobs = count(&db, "SELECT count(*) FROM jobs");
    let old = count(&db, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state <> 'UNKNOWN'"));
    let pruned_id: i64 =
        count(&db, &format!("SELECT job_id FROM jobs WHERE end < {before} AND state <> 'UNKNOWN' LIMIT 1"));
    assert!(old > 500, "{old}");

    let at = format!("@{before}");
    let dry = ok(&db, &["prune", "--before", &at, "--dry-run"]);
    assert!(dry.contains(&format!("would remove {old} jobs")), "{dry}");
    assert_eq!(count(&db, "SELECT count(*) FROM jobs"), all_jobs);

    let report = ok(&db, &["prune", "--before", &at, "--batch", "100"]);
    assert!(report.contains(&format!("removed {old} jobs")), "{report}");
    assert!(report.contains("rollups: kept"), "{report}");
    assert_eq!(count(&db, "SELECT count(*) FROM jobs"), all_jobs - old);
    assert_eq!(count(&db, "SELECT count(*) FROM prunes"), 1);

    // The rollups answer as before, pruned jobs included.
    for (q, before_prune) in ROLLUP_QUESTIONS.iter().zip(&answers) {
        assert_eq!(&ok(&db, q), before_prune, "{q:?}");
    }
    // What reads the jobs sees only those left.
    let listed = ok(&db, &["query", "jobs", "-n", "-o", "JobID"]);
    assert_eq!(listed.lines().count() as i64, all_jobs - old);
    let out = Command::new(BIN).args(["query", "job", &pruned_id.to_string(), "--database"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is recorded"), "{}", String::from_utf8_lossy(&out.stderr));
    let scan = ok(&db, &["query", "summary", "--by", "account", "-S", "1970-01-01", "--csv"]);
    assert_ne!(scan, answers[0], "the scan no longer counts the pruned jobs");
    assert!(idle_hours(&scan) < idle_hours(&answers[0]), "nor their idle core-hours, which the rollups keep");

    // --drop-rollups on what is older still: the rollups then agree with the scan.
    let older = format!("@{}", before + 30 * 86_400);
    let report = ok(&db, &["prune", "--before", &older, "--drop-rollups"]);
    assert!(report.contains("taken out of them too"), "{report}");
    let from_rollups = ok(&db, &["query", "summary", "--by", "account", "--csv"]);
    let scanned = ok(&db, &["query", "summary", "--by", "account", "-S", "1970-01-01", "--csv"]);
    // Those pruned earlier without --drop-rollups are still in the rollups: the difference is theirs.
    let left = count(&db, "SELECT count(*) FROM jobs");
    assert_eq!(count(&db, "SELECT sum(jobs) FROM rollup"), left + old);
    assert_ne!(from_rollups, scanned);
}

#[test]
fn drop_rollups_makes_the_rollup_answers_those_of_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    fill(&db, 800);
    let at = format!("@{}", median_end(&db));
    ok(&db, &["prune", "--before", &at, "--drop-rollups", "--batch", "64"]);
    let scan = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["-S", "1970-01-01"]);
        ok(&db, &a)
    };
    for q in
        [&["query", "summary", "--by", "account", "--csv"][..], &["query", "summary", "--by", "user,state", "--csv"]]
    {
        assert_eq!(ok(&db, q), scan(q), "{q:?}");
    }
}

#[test]
fn prune_refuses_recent_dates_and_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    fill(&db, 10);
    let out = collector(&["prune", "--before", "now-2hours", "--database", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least a day ago"));
    let out = collector(&["prune", "--before", "yesterday", "--database", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'yesterday'"));
    let out = collector(&["backup", db.to_str().unwrap(), "--database", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    // A second prune while one runs is refused, not queued behind it.
    let lock = dir.path().join("ledger.db-prune.lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
    let _held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = collector(&["prune", "--before", "2025-01-01", "--database", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another prune"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_prunes_daily_with_keep_days() {
    let mut server = Server::start_with(&Limits { rust_log: "info", ..Limits::default() });
    server.kill();
    fill(&server.database, 600);
    let before = median_end(&server.database);
    let old =
        count(&server.database, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state <> 'UNKNOWN'"));
    let all = count(&server.database, "SELECT count(*) FROM jobs");
    let summary = ok(&server.database, &["query", "summary", "--by", "account", "--csv"]);
    // keep_days puts the cut a little after the median end: whole days.
    let keep_days = (runledger_record::now() - before) / 86_400;
    let cut = runledger_record::now() - keep_days * 86_400;
    let expect =
        count(&server.database, &format!("SELECT count(*) FROM jobs WHERE end < {cut} AND state <> 'UNKNOWN'"));
    assert!(expect >= old && expect < all);
    let mut config = std::fs::read_to_string(&server.config).unwrap();
    config.push_str(&format!("\n[retention]\nkeep_days = {keep_days}\n"));
    std::fs::write(&server.config, config).unwrap();
    server.restart("info");
    let line = server.wait_log("the daily prune's report", |l| l.contains("retention: removed") && l.contains("jobs"));
    assert!(line.contains(&format!("removed {expect} jobs")), "{line}");
    server.wait_log("the end of the prune", |l| l.contains("retention:") && l.contains("write transactions"));
    assert_eq!(count(&server.database, "SELECT count(*) FROM jobs"), all - expect);
    assert_eq!(count(&server.database, "SELECT count(*) FROM prunes"), 1);
    assert_eq!(ok(&server.database, &["query", "summary", "--by", "account", "--csv"]), summary);
    // Restarted within the day: no second prune.
    server.restart("info");
    server.wait_log("the retention thread's start", |l| l.contains("are pruned once a day"));
    assert_eq!(count(&server.database, "SELECT count(*) FROM prunes"), 1);
}

/// Senders that deliver made-up jobs one node batch at a time until stopped; which jobs were
/// acknowledged (all their nodes), and any refusal.
struct Senders {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u32>>>,
    refused: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Senders {
    fn start(server: &Server, n: usize, first_job: u32, start: i64) -> Senders {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let addr = server.addr;
        let threads = (0..n)
            .map(|k| {
                let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
                thread::spawn(move || {
                    let mut job = first_job + k as u32;
                    while !stop.load(Ordering::Relaxed) {
                        let mut s = Sample::new("live", job, start + i64::from(job - first_job));
                        s.nnodes = 2;
                        let mut all = true;
                        for node in 0..s.nnodes {
                            let body = s.batch(node).to_json();
                            let mut buf = Vec::new();
                            wire::write_request(&mut buf, &sign(&wire::digest(&body)), &body).unwrap();
                            let r = std::net::TcpStream::connect(addr).map_err(|e| e.to_string()).and_then(|mut c| {
                                use std::io::Write;
                                c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
                                c.write_all(&buf).map_err(|e| e.to_string())?;
                                common::read_reply(&mut c)
                            });
                            match r {
                                Ok(r) if r.ok => {}
                                other => {
                                    all = false;
                                    refused.lock().unwrap().push(format!("job {job} node {node}: {other:?}"));
                                }
                            }
                        }
                        if all {
                            acked.lock().unwrap().push(job);
                        }
                        job += n as u32;
                    }
                })
            })
            .collect();
        Senders { stop, acked, refused, threads }
    }

    fn acked(&self) -> Vec<u32> {
        self.acked.lock().unwrap().clone()
    }

    fn stop(self) -> (Vec<u32>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let a = self.acked.lock().unwrap().clone();
        let r = self.refused.lock().unwrap().clone();
        (a, r)
    }
}

/// The jobs of cluster `live` in a ledger file.
fn live_jobs(db: &Path) -> std::collections::HashSet<u32> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT job_id FROM jobs WHERE cluster = 'live'").unwrap();
    let v = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    v
}

fn prune_and_backup_while_serve_writes_body(strict: bool) {
    if !need_munged(strict, "prune and backup under a running serve") {
        return;
    }
    let mut server = Server::start_with(&Limits { rust_log: "info", max_connections: 16, ..Limits::default() });
    server.kill();
    fill(&server.database, 3000);
    server.restart("info");
    let before = median_end(&server.database);
    let old =
        count(&server.database, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state <> 'UNKNOWN'"));
    let now = runledger_record::now();
    let senders = Senders::start(&server, 4, 500_000, now - 3600);

    // Wait for records to flow, then prune in small transactions while they keep coming.
    let t0 = std::time::Instant::now();
    while senders.acked().len() < 20 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "no record acknowledged within 60 s");
        thread::yield_now();
    }
    let out = Command::new(BIN)
        .args(["prune", "--before", &format!("@{before}"), "--batch", "50", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains(&format!("removed {old} jobs")), "{report}");

    // Backups while the senders go on: each a whole ledger holding what was acked before it.
    let mut backups = 0;
    for i in 0..3 {
        let acked_before = senders.acked();
        let file = server.dir.path().join(format!("backup-{i}.db"));
        let out = Command::new(BIN).args(["backup", "--config"]).arg(&server.config).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("integrity ok"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let c = rusqlite::Connection::open(&file).unwrap();
        let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let have = live_jobs(&file);
        let missing: Vec<&u32> = acked_before.iter().filter(|j| !have.contains(j)).collect();
        assert!(missing.is_empty(), "backup {i} lacks acknowledged jobs {missing:?}");
        // A copy is a ledger the queries read.
        ok(&file, &["query", "summary", "--by", "account"]);
        backups += 1;
    }
    let (acked, refused) = senders.stop();
    assert!(refused.is_empty(), "refused while pruning or backing up: {refused:?}");
    let have = live_jobs(&server.database);
    assert!(acked.iter().all(|j| have.contains(j)), "an acknowledged job is missing");
    assert_eq!(
        count(&server.database, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state <> 'UNKNOWN'")),
        0
    );
    assert_eq!(count(&server.database, "SELECT count(*) FROM retiring"), 0);
    let c = db::open_ro(&server.database).unwrap();
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let fk: i64 = c.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 0, "a row refers to one the prune deleted");
    eprintln!("{} jobs acknowledged during the prune and {backups} backups; {report}", acked.len());
    server.kill();
}

#[test]
fn prune_and_backup_while_serve_writes() {
    prune_and_backup_while_serve_writes_body(false);
}

#[test]
#[ignore = "needs munged: packaging/run-tests runs it"]
fn prune_and_backup_while_serve_writes_strict() {
    prune_and_backup_while_serve_writes_body(true);
}
