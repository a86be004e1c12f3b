//! An epilog of the last release (4a702ef) talking to this collector: its batch (the request
//! body it sends, `data/4a702ef-batch.json`, in that release's record format) is taken, and the
//! replies still read as it reads them — with its own `Reply` shape (`ok`, `applied`, `error`;
//! no `kind`) and its own wording rule for what is permanent, both copied here from 4a702ef.
//!
//! Needs munged: without it `old_epilog_new_collector` prints a note and passes; the `_strict`
//! twin (ignored by default) fails instead.

mod common;

use common::{need_munged, sign, Server};
use runledger_record::wire;
use serde::Deserialize;

const OLD_BATCH: &[u8] = include_bytes!("data/4a702ef-batch.json");

/// `wire::Reply` as 4a702ef declared it.
#[derive(Deserialize, Debug)]
struct OldReply {
    ok: bool,
    applied: usize,
    #[serde(default)]
    error: Option<String>,
}

/// 4a702ef's epilog/src/deliver.rs `is_permanent`: what it moves to `rejected/`.
fn old_is_permanent(why: &str) -> bool {
    let w = why.trim_start().to_ascii_lowercase();
    w.contains("malformed") || w.starts_with("invalid batch")
}

fn send(server: &Server, body: &[u8]) -> OldReply {
    let r = server.send(&sign(&wire::digest(body)), body);
    // Re-read through the old shape, from the bytes the new collector sent.
    serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).expect("the old epilog parses the reply")
}

fn body(strict: bool) {
    if !need_munged(strict, "the compatibility test") {
        return;
    }
    let server = Server::start();
    // The last release's batch is committed, and the reply says so in the old shape.
    let r = send(&server, OLD_BATCH);
    assert!(r.ok && r.applied == 3, "{r:?}\n{}", server.log_text());
    let out = server.query(&["jobs", "-j", "4701", "-o", "JobID,State,User", "-n"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4701 COMPLETED rltest");
    // A body that is not a batch: the old epilog still sets it aside, as it should.
    let r = send(&server, b"{\"format\":1,");
    assert!(!r.ok && old_is_permanent(r.error.as_deref().unwrap_or("")), "{r:?}");
    // A newer format: kept by the old epilog, for an upgraded collector.
    let newer = String::from_utf8_lossy(OLD_BATCH).replace("\"format\":1", "\"format\":2");
    let r = send(&server, newer.as_bytes());
    assert!(!r.ok && !old_is_permanent(r.error.as_deref().unwrap_or("")), "{r:?}");
}

#[test]
fn old_epilog_new_collector() {
    body(false)
}

#[test]
#[ignore = "needs munged"]
fn old_epilog_new_collector_strict() {
    body(true)
}
