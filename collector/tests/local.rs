//! The local socket of a real `collector serve`: what a user can ask, and what a user cannot do
//! to the daemon by asking (hold its slots, dribble a request, run a query that would take all
//! its memory).
//!
//! The ingest half of `user_queries_are_bounded_and_ingest_goes_on` needs munged: without it the
//! test still checks the queries and the daemon's memory and prints a note; its `_strict` twin
//! (ignored by default) fails instead.

mod common;

use common::{need_munged, sign, Limits, Server, BIN};
use runledger_collector::cli::{Cli, FailureKind};
use runledger_collector::daemon::local::ask_with;
use runledger_record::wire;
use runledger_record::Module;
use runledger_synth::Sample;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: i64 = 1_700_000_000;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Asks the daemon at `socket` as this process's user; Ok(stdout) or Err(the relayed error).
fn ask(socket: &Path, argv: &[String]) -> Result<String, String> {
    let command = clap::Parser::try_parse_from(std::iter::once("collector".to_string()).chain(argv.iter().cloned()))
        .map(|c: Cli| c.command)
        .unwrap();
    let mut out = Vec::new();
    ask_with(socket, argv, command, &mut out).map_err(|f| f.msg)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Merges `samples` (one node each) into the server's ledger, as the writer would.
fn store(server: &Server, samples: &[Sample]) {
    let conn = runledger_ledger::db::open_rw(&server.database).unwrap();
    let batches: Vec<_> = samples.iter().map(|s| s.batch(0)).collect();
    let refs: Vec<_> = batches.iter().collect();
    for r in runledger_ledger::merge::apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
}

/// A server whose local socket is up (its log says so).
fn server(extra: &str) -> Server {
    let s = Server::start_with(&Limits { extra: extra.into(), ..Limits::default() });
    s.wait_log("'answering queries on'", |l| l.contains("answering queries on"));
    s
}

#[test]
fn round_trip_over_a_real_socket() {
    let server = server("");
    let mut samples = Vec::new();
    for (id, user) in [(1, "alice"), (2, "alice"), (3, "bob"), (4, "bob")] {
        let mut s = Sample::new("tc", id, T0 + i64::from(id) * 3600);
        s.user = user.into();
        samples.push(s);
    }
    store(&server, &samples);
    let mode = std::fs::metadata(&server.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "anyone may connect; the kernel says who they are");
    let out_file = server.dir.path().join("jobs.csv");
    let argv = args(&format!("export --format csv -o {}", out_file.display()));
    ask(&server.socket, &argv).unwrap();
    // This test runs as root or as the ledger's owner: both see every job.
    let csv = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let argv = args("query jobs -u");
    let command = clap::Parser::try_parse_from(["collector", "query", "jobs"]).map(|c: Cli| c.command).unwrap();
    let err = ask_with(&server.socket, &argv, command, &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind, FailureKind::Relayed(2), "{}", err.msg);
}

#[test]
fn one_user_cannot_hold_the_socket_or_dribble_a_request() {
    let server = server("query_max_per_user = 2\n");
    store(&server, &[Sample::new("tc", 1, T0)]);
    // Two connections of this uid, idle: a third is refused at once, with the reason.
    let idle: Vec<UnixStream> = (0..2).map(|_| UnixStream::connect(&server.socket).unwrap()).collect();
    let e = ask(&server.socket, &args("query jobs")).unwrap_err();
    assert!(e.contains("already have 2 queries running") && e.contains("query_max_per_user"), "{e}");
    drop(idle);
    // Given back when they close (the daemon reads their EOF; wait for it, then ask).
    let mut answered = None;
    for _ in 0..300 {
        match ask(&server.socket, &args("query jobs -n -o JobID")) {
            Ok(out) => {
                answered = Some(out);
                break;
            }
            Err(e) if e.contains("already have") => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(answered.expect("the uid's places came back").trim(), "1");

    // One deadline for the whole request (read_timeout_ms = 1500): a byte every 100 ms, which
    // would keep a per-read timeout alive forever, is cut off.
    let mut s = UnixStream::connect(&server.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({ "args": ["query", "jobs"] })).unwrap();
    let mut frame = Vec::new();
    wire::write_frame(&mut frame, &body).unwrap();
    let t0 = Instant::now();
    let mut cut = false;
    for b in frame.iter().take(frame.len() - 1) {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if t0.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let header = wire::read_frame(&mut s, 1 << 20);
    let header = header.map(|h| String::from_utf8_lossy(&h).into_owned()).unwrap_or_default();
    assert!(cut || header.contains("not received in time"), "not cut off: {header:?}");
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The daemon's peak memory stays under this while users ask about jobs with thousands of
/// modules (it starts at about 15 MiB; before queries ran in capped processes of their own,
/// one `co-usage` over such a job took it past 800 MiB).
const DAEMON_PEAK_KIB: u64 = 150 * 1024;

fn user_queries_are_bounded_body(strict: bool) {
    let ingest = need_munged(strict, "the ingest half of user_queries_are_bounded");
    let server = server("query_max_memory_mb = 256\nquery_timeout_ms = 60000\n");
    // Two jobs of `nobody`, each with 6,000 modules (as a plugin before the cap recorded them).
    let jobs: Vec<Sample> = (1..=2)
        .map(|id| {
            let mut s = Sample::new("tc", id, T0 + i64::from(id) * 60);
            s.user = "nobody".into();
            s.uid = 65534;
            s.modules = (0..6000)
                .map(|i| Module { name: format!("mod{i}"), version: Some(format!("1.{id}")), file: None })
                .collect();
            s
        })
        .collect();
    store(&server, &jobs);
    let before = peak_rss_kib(server.pid());

    // Meanwhile epilogs keep delivering: every batch is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = ingest.then(|| {
        let (stop, addr) = (stop.clone(), server.addr);
        std::thread::spawn(move || {
            let mut acked = 0u32;
            let mut id = 1000;
            while !stop.load(Ordering::Relaxed) || acked < 3 {
                let body = Sample::new("tc", id, T0 + 7200).batch(0).to_json();
                let mut buf = Vec::new();
                wire::write_request(&mut buf, &sign(&wire::digest(&body)), &body).unwrap();
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(&buf).unwrap();
                let r = common::read_reply(&mut s).unwrap();
                assert!(r.ok, "batch {id} not stored while users query: {r:?}");
                acked += 1;
                id += 1;
            }
            acked
        })
    });

    // The user asks through the socket, as themselves (the files are theirs to read).
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |q: &str| {
        let out = Command::new("runuser")
            .args(["-u", "nobody", "--", BIN, "query", "--config"])
            .arg(&server.config)
            .args(q.split_whitespace())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for q in ["co-usage --min-jobs 1 --top 5", "summary --by module --limit 3", "who-used mod7"] {
        let (ok, out, err) = as_nobody(q);
        // An answer, or a refusal that says which bound and what to do.
        assert!(
            ok || (err.contains("your query was stopped") && err.contains("collector.query_")),
            "{q}: neither an answer nor a clear refusal:\n{out}\n{err}\n{}",
            server.log_text()
        );
        eprintln!("{q}: {}", if ok { "answered".to_string() } else { err.trim().to_string() });
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = sender {
        let acked = t.join().expect("ingest went on while users queried");
        eprintln!("{acked} batches acknowledged while the queries ran");
    }
    let peak = peak_rss_kib(server.pid());
    eprintln!("collector serve peak RSS: {before} KiB before the queries, {peak} KiB after");
    assert!(peak < DAEMON_PEAK_KIB, "collector serve grew to {peak} KiB (bound {DAEMON_PEAK_KIB} KiB)");
}

#[test]
fn user_queries_are_bounded_and_ingest_goes_on() {
    user_queries_are_bounded_body(false);
}

#[test]
#[ignore = "needs munged"]
fn user_queries_are_bounded_and_ingest_goes_on_strict() {
    user_queries_are_bounded_body(true);
}

#[test]
fn answers_over_their_size_or_time_are_refused_clearly() {
    let server = server("query_max_output_bytes = 2000\n");
    let jobs: Vec<Sample> = (1..=200).map(|id| Sample::new("tc", id, T0 + i64::from(id) * 60)).collect();
    store(&server, &jobs);
    assert_eq!(ask(&server.socket, &args("query jobs -n -o JobID -j 7")).unwrap().trim(), "7", "a small answer");
    let e = ask(&server.socket, &args("query jobs")).unwrap_err();
    assert!(e.contains("answered more than 2000 bytes") && e.contains("collector.query_max_output_bytes"), "{e}");
    // The daemon is unharmed and answers the next query.
    assert_eq!(ask(&server.socket, &args("query jobs -n -o JobID -j 8")).unwrap().trim(), "8");

    // A query that needs seconds (every pair of 6,000 modules) against a limit of 500 ms.
    let slow = self::server("query_timeout_ms = 500\nquery_max_memory_mb = 4096\n");
    let mut job = Sample::new("tc", 1, T0);
    job.modules =
        (0..6000).map(|i| Module { name: format!("mod{i}"), version: Some("1".into()), file: None }).collect();
    store(&slow, &[job]);
    let e = ask(&slow.socket, &args("query co-usage --min-jobs 1")).unwrap_err();
    assert!(e.contains("took longer than 0.5 s") && e.contains("collector.query_timeout_ms"), "{e}");
}
