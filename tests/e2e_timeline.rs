//! What a job did over time (#16), on the real cluster: the plugin samples every step (here every
//! 5 s: plugstack.conf's `sample_interval=5`, re-read for every step, put back when the test
//! ends), the series travel with the step's end, and the ledger answers `query job --json`'s
//! `timeline`, `query job --timeline` and `query idle`. The same on three nodes, one series per
//! node: tests/e2e_multinode.rs (`three_nodes_one_sample_series_per_node`).
//!
//! The jobs sleep (their shape is the point); the tests only wait for events: Slurm done with the
//! job, its record in the ledger. Nothing else may use the cluster meanwhile (plugstack.conf is
//! shared): run one e2e file at a time, as packaging/run-tests does.

use runledger_e2e::*;
use serde_json::Value;

fn t(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .timestamp()
}

/// Two busy loops for 40 s while a Python process grows by 40 MiB every 5 s (six steps), then
/// 60 s of sleep.
const BUSY_THEN_IDLE: &str = r#"#!/bin/bash
busy() { local end=$((SECONDS + 40)); while [ $SECONDS -lt $end ]; do :; done; }
busy & busy &
python3 -c '
import time
held = []
for _ in range(6):
    held.append(b"x" * (40 << 20))
    time.sleep(5)
'
wait
sleep 60
echo done
"#;

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn a_busy_then_idle_job_shows_both_phases_and_is_listed_idle() {
    require_cluster();
    let _every = SampleEvery::new(5);
    let job = sbatch(USER, "rl-timeline", &["-n", "1", "-c", "2"], BUSY_THEN_IDLE);
    finished(job);
    let d = job_detail(job);
    assert_eq!(d["state"], "COMPLETED", "{d}");
    let start = t(&d["start"]);
    let tl = d["timeline"].as_array().unwrap_or_else(|| panic!("no timeline: {d}"));
    let batch = tl.iter().find(|s| s["step"] == "batch").unwrap_or_else(|| panic!("no batch series: {tl:?}"));
    assert_eq!(batch["interval_s"], 5, "{batch}");
    let alloc = batch["alloc_cpus"].as_f64().unwrap();
    assert!(alloc >= 2.0, "{batch}");
    let points: Vec<(i64, f64, u64)> = batch["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (t(&p["t"]) - start, p["cpu_cores"].as_f64().unwrap(), p["rss_kib"].as_u64().unwrap()))
        .collect();
    assert!(points.len() >= 15, "{} points over ~100 s at 5 s: {points:?}", points.len());
    // Busy: from the first full sample to 35 s, clearly busy (the two loops get up to two cores,
    // but only what the machine spares: about one while other work ran, as seen once in CI);
    // idle: after 50 s, nearly nothing.
    let busy: Vec<f64> = points.iter().filter(|p| p.0 >= 8 && p.0 <= 35).map(|p| p.1).collect();
    let idle: Vec<f64> = points.iter().filter(|p| p.0 >= 50).map(|p| p.1).collect();
    assert!(busy.len() >= 4 && idle.len() >= 8, "{points:?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&busy) >= 0.5, "busy phase {busy:?} in {points:?}");
    assert!(idle.iter().all(|&c| c < 0.1), "idle phase {idle:?} in {points:?}");
    // Whatever the load, the points account for the CPU the step was charged: the sum of cores
    // × span is the batch step's CPU time from its rusage (within a sample's worth).
    let sampled: f64 = batch["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cpu_cores"].as_f64().unwrap() * p["secs"].as_f64().unwrap())
        .sum();
    let charged = d["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == "batch"))
        .and_then(|s| s["cpu_seconds"].as_f64())
        .unwrap_or_else(|| panic!("no batch step CPU: {d}"));
    assert!(charged >= 20.0, "two loops for 40 s used {charged} CPU seconds: {d}");
    assert!(
        (sampled - charged).abs() <= 0.1 * charged + 2.0 * 5.0,
        "sampled {sampled} CPU s, charged {charged}: {points:?}"
    );
    // Memory grew step by step while Python held more, then fell when it exited.
    let early: Vec<u64> = points.iter().filter(|p| p.0 <= 32).map(|p| p.2).collect();
    let peak = early.iter().copied().max().unwrap_or(0);
    assert!(peak >= early[0] + 150 * 1024, "no growth: {early:?}");
    let rises = early.windows(2).filter(|w| w[1] > w[0] + 20 * 1024).count();
    assert!(rises >= 3, "growth in steps: {early:?}");
    assert!(points.last().unwrap().2 < peak / 2, "memory given back at the end: {points:?}");

    // The same as a table, and through the socket as the job's user.
    let out = as_user(USER, &format!("{COLLECTOR} query job {job} --timeline"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Step batch on ") && text.contains("Idle (below 10%"), "{text}");

    // query idle --for 30s lists it, with 2 cores × ~60 s idle (±15 s).
    let rows = query(&["idle", "--for", "30s", "-j", &job.to_string()]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let idle_s = rows[0]["idle_core_hours"].as_f64().unwrap() * 3600.0;
    assert!((idle_s - alloc * 60.0).abs() <= alloc * 15.0, "{idle_s} idle core-seconds: {rows:?} {points:?}");
    assert!((t(&rows[0]["idle_from"]) - start - 40).abs() <= 10, "{rows:?}");
    // And not at the default hour.
    assert_eq!(query(&["idle", "-j", &job.to_string()]), Value::Array(vec![]));
    // Another user does not see it.
    let out = as_user(USER2, &format!("{COLLECTOR} query idle --for 30s --json"));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(theirs.as_array().is_some_and(|a| a.iter().all(|r| r["job_id"] != job.to_string().as_str())), "{theirs}");
}
