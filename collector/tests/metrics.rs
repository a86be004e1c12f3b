//! `collector serve`'s Prometheus endpoint, after known traffic: accepted and refused batches,
//! a user's question through the socket, jobs that ended in known states. The scrape must pass
//! `promtool check metrics` (Debian's prometheus package) and say exactly what was sent; the
//! Grafana dashboard in packaging/ must ask only for metrics the endpoint has.

mod common;

use common::{need_munged, sign, Limits, Server};
use runledger_record::{wire, ExitStatus, JobState};
use runledger_synth::Sample;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

const T0: i64 = 1_700_000_000;

fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The value of one sample line (`name{labels} value`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metrics_body(strict: bool) {
    if !need_munged(strict, "the metrics test") {
        return;
    }
    let server = Server::start_with(&Limits { extra: "metrics = \"127.0.0.1:0\"".into(), ..Limits::default() });
    let line = server.wait_log("'metrics for Prometheus'", |l| l.contains("metrics for Prometheus on http://"));
    let addr = line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").to_string();
    server.wait_log("'answering queries on'", |l| l.contains("answering queries on"));

    // Three jobs: two completed, one out of memory; each one node's batch.
    let mut items = 0;
    for (id, state) in [(1, JobState::Completed), (2, JobState::Completed), (3, JobState::OutOfMemory)] {
        let mut s = Sample::new("tc", id, T0 + i64::from(id) * 100);
        s.state = state;
        if state != JobState::Completed {
            s.exit = ExitStatus { code: 0, signal: 9, core_dumped: false };
        }
        let b = s.batch(0);
        items += b.items.len();
        let body = b.to_json();
        assert!(server.send(&sign(&wire::digest(&body)), &body).ok);
    }
    // One refused: a credential over other bytes.
    let body = Sample::new("tc", 4, T0).batch(0).to_json();
    assert!(!server.send(&sign(&wire::digest(b"other")), &body).ok);
    // One question through the socket, as a user would ask it.
    let out = Command::new(common::BIN)
        .args(["query", "--config"])
        .arg(&server.config)
        .args(["jobs", "-u", "alice"])
        .env("RUNLEDGER_CONF", &server.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Root reads the file directly; ask through the socket explicitly, as users do.
    let argv: Vec<String> = ["query", "job", "1", "--efficiency"].iter().map(|s| s.to_string()).collect();
    let cmd = clap::Parser::try_parse_from(std::iter::once("collector".to_string()).chain(argv.iter().cloned()))
        .map(|c: runledger_collector::cli::Cli| c.command)
        .unwrap();
    runledger_collector::daemon::local::ask_with(&server.socket, &argv, cmd, &mut Vec::new()).unwrap();

    let (head, text) = scrape(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK") && head.contains("text/plain; version=0.0.4"), "{head}");
    eprintln!("{text}");
    assert_eq!(value(&text, "runledger_batches_accepted_total"), Some(3.0), "{text}");
    assert_eq!(value(&text, "runledger_records_accepted_total"), Some(items as f64), "{text}");
    assert_eq!(value(&text, "runledger_requests_refused_total{reason=\"digest mismatch\"}"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "runledger_merge_seconds_count"),
        value(&text, "runledger_merge_seconds_bucket{le=\"+Inf\"}")
    );
    assert!(value(&text, "runledger_merge_seconds_count").unwrap() >= 1.0, "{text}");
    assert_eq!(value(&text, "runledger_socket_queries_total{kind=\"query job\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "runledger_jobs{state=\"COMPLETED\"}"), Some(2.0), "{text}");
    assert_eq!(value(&text, "runledger_jobs{state=\"OUT_OF_MEMORY\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "runledger_failed_jobs{category=\"out_of_memory\"}"), Some(1.0), "{text}");
    assert!(value(&text, "runledger_ledger_bytes").unwrap() > 4096.0, "{text}");
    assert_eq!(value(&text, "runledger_ledger_read_ok"), Some(1.0));

    // Prometheus' own checker.
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) on PATH");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (head, _) = scrape(&addr, "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Every metric the Grafana dashboard asks for is one the endpoint has.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/grafana/runledger-collector.json"))
            .unwrap(),
    )
    .unwrap();
    let mut exprs = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            exprs += 1;
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("runledger_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                let base = n.trim_end_matches("_bucket");
                assert!(text.contains(&format!("# TYPE {base} ")), "the dashboard asks for {n}, not served");
            }
        }
    }
    assert!(exprs >= 8, "{exprs} queries in the dashboard");
}

#[test]
fn metrics_say_what_happened() {
    metrics_body(false);
}

#[test]
#[ignore = "needs munged; fails instead of skipping"]
fn metrics_say_what_happened_strict() {
    metrics_body(true);
}
