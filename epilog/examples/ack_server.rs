//! A stand-in collector for benchmarks: acknowledges every well-formed request.
//!
//! `cargo run --release -p runledger-epilog --example ack_server [ADDR]` (default 127.0.0.1:0)
//! prints `listening on <addr>` and serves until killed. Like the real collector it decodes the
//! MUNGE credential and checks it against the body's digest before replying `ok`, but it stores
//! nothing (no SQLite commit), so it measures the epilog, not the collector.

use runledger_record::wire::{self, Reply, ReplyKind};
use runledger_record::Batch;
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let l = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    println!("listening on {}", l.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok((cred, body)) = wire::read_request(&mut s, wire::DEFAULT_MAX_FRAME) else { return };
            let reply = match munge::decode(&cred) {
                Err(e) => Reply::refused(ReplyKind::Retry, format!("credential: {e}")),
                Ok(d) if d.payload != wire::digest(&body).as_bytes() => {
                    Reply::refused(ReplyKind::Retry, "body does not match credential")
                }
                Ok(_) => match Batch::from_json(&body) {
                    Ok(b) => Reply::ok(b.items.len()),
                    Err(e) => Reply::refused(ReplyKind::Permanent, e),
                },
            };
            let _ = wire::write_frame(&mut s, &serde_json::to_vec(&reply).unwrap());
        });
    }
}
