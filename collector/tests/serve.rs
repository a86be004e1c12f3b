//! `collector serve` as a process: signed batches in, rows out through `collector query`, and
//! every kind of bad request (expired credentials included) refused with a reason, logged with
//! the peer and counted in the ledger's `rejections` table, across a restart.
//!
//! Needs munged. Without it `serve_accepts_and_rejects` prints a note and passes;
//! `serve_accepts_and_rejects_strict` (ignored by default) fails instead.

mod common;

use common::{expect_rejected, need_munged, read_reply, sign, Limits, Server, BIN};
use runledger_ledger::rejections::{self, Rejection};
use runledger_record::wire::{self, MAGIC};
use runledger_synth::Sample;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const MAX_BYTES: usize = 256 * 1024;
const MAX_CONNECTIONS: usize = 4;

/// Signs `payload` with `munge -t ttl` (the library takes munged's default TTL), as root.
fn sign_with_ttl(payload: &str, ttl: u32) -> Option<String> {
    let o = Command::new("munge").args(["-t", &ttl.to_string(), "-s", payload]).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The `rejections` table once it holds every reason of `want` (the writer stores the counts
/// about once a second), or after 20 s.
fn stored_rejections(server: &Server, want: &[&str]) -> Vec<Rejection> {
    let conn = runledger_ledger::db::open_ro(&server.database).unwrap();
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = rejections::read(&conn).unwrap();
        if want.iter().all(|w| rows.iter().any(|r| r.reason == *w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    rows
}

fn serve_accepts_and_rejects_body(strict: bool) {
    if !need_munged(strict, "the collector serve integration test") {
        return;
    }
    let limits = Limits {
        max_message_bytes: MAX_BYTES,
        max_connections: MAX_CONNECTIONS,
        read_timeout_ms: 1500,
        rust_log: "debug",
        extra: "auth_timeout_ms = 1000\n".into(),
    };
    let mut server = Server::start_with(&limits);
    // A credential that lives one second, used once it has expired (below).
    let expiring_body = Sample::new("itest", 4244, runledger_record::now() - 60).batch(0).to_json();
    let expiring = sign_with_ttl(&wire::digest(&expiring_body), 1);
    let expiring_since = Instant::now();

    // A signed batch is acknowledged, then visible to `collector query`.
    let mut sample = Sample::new("itest", 4242, runledger_record::now() - 120);
    sample.nnodes = 2;
    let body = sample.batch(0).to_json();
    let cred = sign(&wire::digest(&body));
    let r = server.send(&cred, &body);
    assert!(r.ok, "{r:?}\n{}", server.log_text());
    assert_eq!(r.applied, sample.node_items(0).len());
    let out = server.query(&["jobs", "--json", "-j", "4242"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["job_id"], 4242);
    assert_eq!(v[0]["cluster"], "itest");
    assert_eq!(v[0]["state"], "COMPLETED");

    // The second node's batch merges into the same job.
    let body2 = sample.batch(1).to_json();
    assert!(server.send(&sign(&wire::digest(&body2)), &body2).ok);
    let out = server.query(&["jobs", "-j", "4242", "-o", "JobID,NNodes,NodeList", "-n"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4242 2 n0001,n0002");

    // The same credential again: replayed.
    expect_rejected(&server.send(&cred, &body), "replayed");

    // Garbage, and an unsigned "credential".
    expect_rejected(&server.send_raw(b"GET / HTTP/1.0\r\n\r\n").unwrap(), "not a runledger frame");
    expect_rejected(&server.send("MUNGE:AwQDAACxgarbage:", &body), "credential refused");

    // A valid credential over another body.
    let other = sample.batch(1).to_json();
    let mut tampered = other.clone();
    tampered[20] ^= 1;
    expect_rejected(&server.send(&sign(&wire::digest(&other)), &tampered), "digest mismatch");

    // A valid credential and a body header over the limit: refused from the header alone
    // (nothing more is sent, yet the reply comes at once).
    let mut head = Vec::new();
    wire::write_frame(&mut head, sign(&wire::digest(b"x")).as_bytes()).unwrap();
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&((MAX_BYTES as u32) + 1).to_be_bytes());
    expect_rejected(&server.send_raw(&head).unwrap(), "too large");

    // Signed by an ordinary user.
    let nobody = Command::new("runuser").args(["-u", "nobody", "--", "munge", "-s", &wire::digest(&body2)]).output();
    let mut reasons = vec![
        "credential replayed",
        "bad frame",
        "digest mismatch",
        "too large",
        "malformed batch",
        "credential timeout",
        "timeout",
        "too many connections",
    ];
    match nobody {
        Ok(o) if o.status.success() => {
            let cred = String::from_utf8(o.stdout).unwrap();
            expect_rejected(&server.send(cred.trim(), &body2), "uid 65534");
            reasons.push("unauthorized uid");
        }
        other => eprintln!("NOTE: cannot sign as nobody (runuser/munge): {other:?}; uid check not exercised here"),
    }

    // Signed by root, but presented after its one-second TTL (munged allows no grace here: a
    // TTL of 1 expires after 2 s at most; 3 s leaves room for a slow clock tick).
    match &expiring {
        Some(cred) => {
            std::thread::sleep(Duration::from_secs(3).saturating_sub(expiring_since.elapsed()));
            expect_rejected(&server.send(cred, &expiring_body), "expired");
            reasons.push("credential expired");
        }
        None => eprintln!("NOTE: `munge -t 1` failed; expired credentials not exercised here"),
    }

    // A syntactically valid but invalid batch.
    let bad = br#"{"format":1,"sender":"n","created":0,"items":[{"kind":"job_end"}]}"#;
    expect_rejected(&server.send(&sign(&wire::digest(bad)), bad), "malformed batch");

    // A peer dribbling one byte at a time is cut off at the credential's deadline, not per read: a
    // byte every 50 ms would take 10 s to send the frame, far past auth_timeout_ms.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut frame = Vec::new();
    wire::write_frame(&mut frame, &[b'x'; 200]).unwrap();
    let mut cut = false;
    for b in &frame {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut probe = [0u8; 1];
        s.set_nonblocking(true).unwrap();
        let peek = s.peek(&mut probe);
        s.set_nonblocking(false).unwrap();
        if peek.is_ok() {
            cut = true;
            break;
        }
    }
    assert!(cut, "a dribbling peer was not cut off");
    if let Ok(r) = read_reply(&mut s) {
        expect_rejected(&r, "no credential within 1000 ms");
    }
    drop(s);

    // Authenticated, then the body stalls: cut off at read_timeout_ms from the connection's start.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = Vec::new();
    wire::write_frame(&mut head, sign(&wire::digest(b"stalled")).as_bytes()).unwrap();
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&100u32.to_be_bytes());
    head.extend_from_slice(b"only part of the body");
    s.write_all(&head).unwrap();
    expect_rejected(&read_reply(&mut s).unwrap(), "read timeout");
    drop(s);

    // Over max_connections: connections that authenticated hold the slots (an idle one never
    // does), and one more authenticated connection is told to retry later.
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|i| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            let mut cred = Vec::new();
            wire::write_frame(&mut cred, sign(&wire::digest(format!("held {i}").as_bytes())).as_bytes()).unwrap();
            s.write_all(&cred).unwrap();
            let me = format!("{}: authenticated", s.local_addr().unwrap());
            server.wait_log(&format!("'{me}'"), |l| l.contains(&me));
            s
        })
        .collect();
    let mut extra = TcpStream::connect(server.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut cred = Vec::new();
    wire::write_frame(&mut cred, sign(&wire::digest(b"extra")).as_bytes()).unwrap();
    extra.write_all(&cred).unwrap();
    let r = read_reply(&mut extra).unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    expect_rejected(&r, "too many connections");
    drop(held);

    // Every refusal was logged with the peer and counted by reason (the log is read some time
    // after the collector wrote it, and after the reply the test saw: wait for each line)…
    for reason in &reasons {
        let line = format!("[{reason}: 1]");
        server.wait_log(&line, |l| l.contains("127.0.0.1:") && l.contains(&line));
    }
    // …and the counts reached the ledger, with the peer. (Usually 1 each; a connection held
    // past the read timeout by a slow test machine counts as one more timeout, in both.)
    let rows = stored_rejections(&server, &reasons);
    for reason in &reasons {
        let row = rows.iter().find(|r| r.reason == *reason).unwrap_or_else(|| panic!("{reason} not in {rows:?}"));
        let line = format!("[{reason}: {}]", row.count);
        server.wait_log(&format!("{line}, as stored in the ledger"), |l| l.contains(&line));
        assert_eq!(row.last_peer, "127.0.0.1", "{row:?}");
        assert!(row.first_time <= row.last_time && row.last_time <= runledger_record::now(), "{row:?}");
    }
    // They outlive the process: a restarted collector reports them at startup.
    server.restart("debug");
    let log = server.log_text();
    let startup = log.lines().rev().find(|l| l.contains("requests refused so far")).unwrap();
    let rows = stored_rejections(&server, &reasons);
    for row in rows.iter().filter(|r| reasons.contains(&r.reason.as_str())) {
        let want = format!("{}={} (last 127.0.0.1)", row.reason, row.count);
        assert!(startup.contains(&want), "{want} not in {startup}");
    }

    // Still serving after all that.
    let body3 = Sample::new("itest", 4243, runledger_record::now() - 60).batch(0).to_json();
    let mut ok = false;
    for _ in 0..20 {
        let r = server.send(&sign(&wire::digest(&body3)), &body3);
        if r.ok {
            ok = true;
            break;
        }
        // The idle connections may still hold their slots for a moment.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "{}", server.log_text());
}

#[test]
fn serve_accepts_and_rejects() {
    serve_accepts_and_rejects_body(false);
}

#[test]
#[ignore = "needs munged"]
fn serve_accepts_and_rejects_strict() {
    serve_accepts_and_rejects_body(true);
}

#[test]
fn query_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let out = Command::new(BIN).args(["query", "jobs", "--database"]).arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no ledger database at"), "{err}");

    let out = Command::new(BIN).args(["query", "jobs", "-S", "last tuesday"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'last tuesday'") && err.contains("YYYY-MM-DD"), "{err}");

    let out = Command::new(BIN).args(["query", "jobs", "-o", "JobID,Bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'Bogus'"));

    let out = Command::new(BIN).args(["query", "jobs", "-S", "2024-02-01", "-E", "2024-01-01"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("after --endtime"));

    let out = Command::new(BIN).args(["query", "jobs", "--helpformat"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("MaxRSS"));

    // An unreadable database, for a user who is not allowed to read it.
    let db = dir.path().join("ledger.db");
    drop(runledger_ledger::db::open_rw(&db).unwrap());
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&db, perms).unwrap();
    let is_root = runledger_record::users::euid() == 0;
    if is_root {
        let mut dperms = std::fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut dperms, 0o755);
        std::fs::set_permissions(dir.path(), dperms).unwrap();
        let out =
            Command::new("runuser").args(["-u", "nobody", "--", BIN, "query", "jobs", "--database"]).arg(&db).output();
        if let Ok(out) = out {
            if out.status.code() != Some(126) && out.status.code() != Some(127) {
                assert_eq!(out.status.code(), Some(1), "{out:?}");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("permission denied"), "{err}");
            }
        }
    }
}

#[test]
fn query_reads_while_serve_writes() {
    // Through the library: a reader sees committed rows while the writer keeps its connection.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let conn = runledger_ledger::db::open_rw(&db).unwrap();
    let b = Sample::new("c", 7, 1_700_000_000).batch(0);
    runledger_ledger::merge::apply_group(&conn, &[&b], 1_700_000_100).unwrap();
    let out = Command::new(BIN).args(["query", "jobs", "--json", "--database"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["job_id"], 7);
    let out = Command::new(BIN).args(["query", "job", "7", "--database"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Job 7 on cluster c"));
    let out = Command::new(BIN).args(["query", "job", "8", "--database"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 8 is recorded"));
    drop(conn);
}

/// What a collector stored in its inbox during a burst and had not merged when it stopped is
/// merged when it starts again; a stored batch the merge refuses stays there with its error,
/// and `collector audit` reports it. No munged needed: the inbox holds bodies already verified.
#[test]
fn batches_left_in_the_inbox_are_merged_at_the_next_start() {
    let mut server = Server::start();
    server.kill();
    let now = runledger_record::now();
    let mut s = Sample::new("itest", 5151, now - 300);
    s.nnodes = 3;
    {
        let conn = rusqlite::Connection::open(&server.database).unwrap();
        for node in 0..3 {
            runledger_ledger::inbox::put(&conn, now - 5, "127.0.0.1:9", &s.batch(node).to_json()).unwrap();
        }
        runledger_ledger::inbox::put(&conn, now - 5, "127.0.0.1:9", b"{not a batch").unwrap();
    }
    server.restart("info");
    server.wait_log("saying the inbox is merged", |l| l.contains("4 batches wait in the inbox"));
    server.wait_log("refusing the stored non-batch", |l| l.contains("inbox batch") && l.contains("malformed batch"));
    // The refusal is logged once the merge of the others has committed.
    let out = server.query(&["jobs", "-j", "5151", "-o", "JobID,NNodes,NodeList", "-n"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5151 3 n0001,n0002,n0003", "{}", server.log_text());
    let conn = rusqlite::Connection::open(&server.database).unwrap();
    assert_eq!(runledger_ledger::inbox::waiting(&conn).unwrap(), 0);
    let kept = runledger_ledger::inbox::refused(&conn).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].3.contains("malformed batch"), "{kept:?}");
    let audit =
        Command::new(BIN).args(["audit", "--grace", "1s", "--database"]).arg(&server.database).output().unwrap();
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.status.code(), Some(1), "{text}");
    assert!(text.contains("inbox: 1 stored batch(es) the merge refused"), "{text}");
    assert!(text.contains("malformed batch"), "{text}");
}
