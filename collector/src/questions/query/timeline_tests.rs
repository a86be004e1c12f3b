//! `query job --timeline`, the JSON timeline, `query idle` and summary's idle core-hours (#16),
//! on made-up sampled jobs merged into a ledger file, through the same entry point the daemon
//! answers users with (so the access rules are those of every query).

use crate::cli::{Owner, Scope};
use crate::daemon::local::answer;
use runledger_ledger::db;
use runledger_ledger::merge::apply_group;
use runledger_synth::timeline::Shape;
use runledger_synth::Sample;
use serde_json::Value;

const T0: i64 = 1_700_000_000;

fn sampled(id: u32, user: &str, uid: u32, hours: i64, idle_after_s: Option<i64>) -> Sample {
    let mut s = Sample::new("tc", id, T0 + i64::from(id) * 10);
    s.user = user.into();
    s.uid = uid;
    s.duration = hours * 3600;
    s.timeline = Some(Shape {
        interval_s: 30,
        busy_cores: 4.0,
        idle_from: idle_after_s.map(|a| s.start + a),
        rss_kib: 1 << 20,
        rss_growth_kib: 64,
        processes: 3,
    });
    s
}

/// alice: job 1, busy 30 min then idle 2.5 h on two nodes; job 2, busy for 3 h. bob: job 3,
/// idle after 2 h of 3, one node. job 4 (alice): no series.
fn ledger() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let conn = db::open_rw(&path).unwrap();
    let mut j1 = sampled(1, "alice", 1000, 3, Some(1800));
    j1.nnodes = 2;
    let j2 = sampled(2, "alice", 1000, 3, None);
    let mut j3 = sampled(3, "bob", 1001, 3, Some(7200));
    j3.account = "chem".into();
    let mut j4 = Sample::new("tc", 4, T0);
    j4.duration = 3 * 3600;
    let mut batches = Vec::new();
    for s in [&j1, &j2, &j3, &j4] {
        for n in 0..s.nnodes {
            batches.push(s.batch(n));
        }
    }
    let refs: Vec<&runledger_record::Batch> = batches.iter().collect();
    for r in apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
    (dir, path)
}

fn run(path: &std::path::Path, scope: &Scope, args: &[&str]) -> (i32, String, String, Vec<Vec<u8>>) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let a = answer(&args, path, scope);
    (a.code, String::from_utf8(a.stdout).unwrap(), a.stderr, a.files)
}

fn alice() -> Scope {
    Scope::Own(Owner { uid: 1000, name: "alice".into(), clusters: vec![], manages: vec![] })
}

#[test]
fn job_json_carries_the_timeline_per_step_and_node() {
    let (_d, path) = ledger();
    let (code, out, err, _) = run(&path, &Scope::All, &["query", "job", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let tl = v[0]["timeline"].as_array().unwrap();
    let keys: Vec<(String, String)> =
        tl.iter().map(|s| (s["node"].as_str().unwrap().into(), s["step"].as_str().unwrap().into())).collect();
    assert_eq!(keys, [("n0001".into(), "0".into()), ("n0001".into(), "batch".into()), ("n0002".into(), "0".into())]);
    let step0 = &tl[0];
    assert_eq!(step0["alloc_cpus"], 4);
    let points = step0["points"].as_array().unwrap();
    // 3 h at 30 s: 359 samples halved to 90 points of 4 samples (2 minutes each).
    assert_eq!(step0["samples_per_point"], 4);
    assert!(points.len() > 60 && points.len() <= 120, "{}", points.len());
    let p = &points[0];
    for k in ["t", "secs", "cpu_cores", "rss_kib", "read_bytes", "write_bytes", "processes", "threads", "min", "max"] {
        assert!(!p[k].is_null(), "{k} missing in {p}");
    }
    assert!(p["t"].as_str().unwrap().contains('T'), "RFC 3339: {}", p["t"]);
    let cores = |p: &Value| p["cpu_cores"].as_f64().unwrap();
    assert!((cores(&points[0]) - 4.0).abs() < 0.1, "busy at first: {}", points[0]);
    assert!(cores(points.last().unwrap()) < 0.05, "idle at the end: {}", points.last().unwrap());
    let idle = v[0]["idle"].as_array().unwrap();
    assert_eq!(idle.len(), 2, "one span per node: {idle:?}");
    // A job without series has an empty timeline.
    let (_, out, _, _) = run(&path, &Scope::All, &["query", "job", "4", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["timeline"], Value::Array(vec![]));
}

#[test]
fn timeline_table_shows_busy_then_idle_and_the_plot_is_drawn() {
    let (_d, path) = ledger();
    let (code, out, err, files) =
        run(&path, &alice(), &["query", "job", "1", "--timeline", "--plot", "/nonexistent-dir-is-replaced/t.svg"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Node n0001: 4 CPUs allocated; steps 0, batch"), "{out}");
    assert!(out.contains("Node n0002: 4 CPUs allocated; steps 0;"), "{out}");
    // Step 0's 2-minute points on n0001: busy (4 cores of 4) for half an hour, then idle.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("  Step 0 on n0001"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() > 80, "{out}");
    let share = |r: &Vec<&str>| r[3].trim_end_matches('%').parse::<f64>().unwrap();
    assert!(rows[..14].iter().all(|r| (share(r) - 100.0).abs() <= 2.0), "busy first: {out}");
    assert!(rows[16..].iter().all(|r| share(r) <= 1.0), "then idle: {out}");
    assert!(out.contains("Idle (below 10% of the allocation for 01:00:00 or more):"), "{out}");
    assert!(out.contains("  n0001: ") && out.contains("  n0002: "), "{out}");
    let svg = String::from_utf8(files[0].clone()).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("n0002 CPU cores") && svg.contains("allocation per node"));
    // Someone else's job reads as not recorded.
    let (code, _, err, _) = run(&path, &alice(), &["query", "job", "3", "--timeline"]);
    assert_ne!(code, 0);
    assert!(err.contains("no job 3"), "{err}");
}

#[test]
fn query_idle_lists_the_jobs_that_sat_idle_within_the_callers_scope() {
    let (_d, path) = ledger();
    let (code, out, err, _) = run(&path, &Scope::All, &["query", "idle", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["job_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "3"], "idlest first; job 2 never idle, job 4 has no series");
    // Job 1: 2 nodes × 4 cores × (3 h - 30 min), to a point (2 minutes, 4 cores) per node.
    let idle_h = rows[0]["idle_core_hours"].as_f64().unwrap();
    assert!((idle_h - 2.0 * 4.0 * 2.5).abs() < 0.3, "{idle_h}");
    assert_eq!(rows[0]["idle_nodes"], "n0001,n0002");
    assert!((rows[1]["idle_core_hours"].as_f64().unwrap() - 4.0).abs() < 0.15, "{}", rows[1]);
    // Stricter --for: job 3's hour of idling is too short for 90 minutes.
    let (_, out, _, _) = run(&path, &Scope::All, &["query", "idle", "--for", "90m", "--csv", "-n"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("1,alice,"), "{out}");
    // Job 1's idling began half an hour in (its series' points are 2 minutes).
    let job1_start = chrono::DateTime::parse_from_rfc3339(rows[0]["start"].as_str().unwrap()).unwrap().timestamp();
    let from = chrono::DateTime::parse_from_rfc3339(rows[0]["idle_from"].as_str().unwrap()).unwrap().timestamp();
    assert!((from - (job1_start + 1800)).abs() <= 120, "{}", rows[0]);
    // alice sees her own.
    let (code, out, err, _) = run(&path, &alice(), &["query", "idle", "--csv", "-n"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err, _) = run(&path, &Scope::All, &["query", "idle", "--below", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fraction from 0 to 1"), "{err}");
}

#[test]
fn summary_counts_idle_core_hours_alike_from_rollups_and_scans() {
    let (_d, path) = ledger();
    let col = |out: &str, row: usize| -> f64 {
        let v: Value = serde_json::from_str(out).unwrap();
        v[row]["idle_core_hours"].as_f64().unwrap()
    };
    // --by user: from the rollups; --by day: a scan.
    let (code, out, err, _) =
        run(&path, &Scope::All, &["query", "summary", "--by", "user", "--sort", "user", "--json"]);
    assert_eq!(code, 0, "{err}");
    let (alice_h, bob_h) = (col(&out, 0), col(&out, 1));
    assert!((alice_h - 20.0).abs() < 0.3 && (bob_h - 4.0).abs() < 0.15, "{out}");
    let (_, out, _, _) = run(&path, &Scope::All, &["query", "summary", "--by", "day", "--json"]);
    // Each summary sums exactly and rounds once; adding two rounded per-user figures here may
    // differ from that in the last bit.
    assert!((col(&out, 0) - (alice_h + bob_h)).abs() <= 1e-12 * (alice_h + bob_h), "{out}");
    let (_, out, _, _) = run(&path, &Scope::All, &["query", "summary", "--by", "user", "-u", "alice", "--json"]);
    assert_eq!(col(&out, 0), alice_h);
}

#[test]
fn the_report_lists_the_idlest_jobs() {
    let (_d, path) = ledger();
    let html = crate::questions::html_report::render(&path, &Default::default(), "every recorded job").unwrap();
    let at = html.find(r#"<table id="idle" data-rows="2">"#).unwrap_or_else(|| panic!("no idle table: {html}"));
    let table = &html[at..at + html[at..].find("</table>").unwrap()];
    let first = table.find("<td>1</td>").expect("job 1");
    let second = table.find("<td>3</td>").expect("job 3");
    assert!(first < second, "idlest first: {table}");
}
