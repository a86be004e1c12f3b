//! A stand-in collector for the epilog's tests (dev-only: not part of the epilog's library): it
//! checks a request the way `collector serve` does — the MUNGE credential must sign the body's
//! digest and the body must be a batch — and answers as told, storing what it accepted in memory.
//!
//! Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use runledger_record::wire::{self, Reply, ReplyKind};
use runledger_record::Batch;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A test that needs munged: skipped with a note without it; its strict twin (`#[ignore = "needs
/// munged"]`, run by packaging/run-tests) fails instead. The test file must import [`munge_up`].
#[allow(unused_macros)]
macro_rules! munge_test {
    ($name:ident, $strict:ident, $body:ident) => {
        #[test]
        fn $name() {
            if !munge_up() {
                eprintln!("SKIPPED {}: munged is not running (see {})", stringify!($name), stringify!($strict));
                return;
            }
            $body()
        }

        #[test]
        #[ignore = "needs munged"]
        fn $strict() {
            $body()
        }
    };
}

/// Whether munged answers (tests that sign requests skip, saying so, without it).
pub fn munge_up() -> bool {
    !matches!(munge::encode(b"probe"), Err(e) if e.code == munge::ErrorKind::Socket)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Replies `ok` to every good request.
    Ack,
    /// Accepts, reads the request, never replies (holds the connection open).
    Silent,
    /// Replies that the batch is malformed (kind `permanent`).
    Malformed,
    /// Accepts a good request, then answers with these exact reply bytes, whatever it says: a
    /// reply recorded from another release of the collector.
    Replay(&'static [u8]),
}

/// What the fake collector accepted, in order.
#[derive(Debug)]
pub struct Received {
    pub cred_uid: u32,
    pub batch: Batch,
}

pub struct FakeCollector {
    pub addr: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl FakeCollector {
    /// Listens on a free port of 127.0.0.1.
    pub fn start(behaviour: Behaviour) -> Self {
        Self::start_at("127.0.0.1:0", behaviour)
    }

    /// Listens on `addr` (e.g. a port an epilog is already retrying).
    pub fn start_at(addr: &str, behaviour: Behaviour) -> Self {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = l.local_addr().unwrap().to_string();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let Ok((cred, body)) = wire::read_request(&mut s, wire::DEFAULT_MAX_FRAME) else { continue };
                let reply = match munge::decode(&cred) {
                    Err(e) => Reply::refused(ReplyKind::Retry, format!("credential: {e}")),
                    Ok(d) if d.payload != wire::digest(&body).as_bytes() => {
                        Reply::refused(ReplyKind::Retry, "digest mismatch")
                    }
                    Ok(d) => match Batch::from_json(&body) {
                        Err(e) => Reply::refused(ReplyKind::Permanent, e),
                        Ok(batch) => {
                            let n = batch.items.len();
                            g.lock().unwrap().push(Received { cred_uid: d.uid, batch });
                            Reply::ok(n)
                        }
                    },
                };
                match behaviour {
                    Behaviour::Silent => held.push(s),
                    Behaviour::Malformed => {
                        let r = Reply::refused(ReplyKind::Permanent, "malformed batch: test");
                        let _ = wire::write_frame(&mut s, &serde_json::to_vec(&r).unwrap());
                    }
                    Behaviour::Replay(bytes) => {
                        let _ = wire::write_frame(&mut s, bytes);
                    }
                    Behaviour::Ack => {
                        let _ = wire::write_frame(&mut s, &serde_json::to_vec(&reply).unwrap());
                    }
                }
            }
        });
        FakeCollector { addr, got }
    }

    /// The job id of each batch received, in order.
    pub fn jobs(&self) -> Vec<u32> {
        self.got.lock().unwrap().iter().map(|r| r.batch.items.last().unwrap().job_id()).collect()
    }
}

/// An address nobody listens on (a port just released). The epilog signs before it connects:
/// without munged (CI's unit-test step), libmunge's own retries cost some 2 s before the run
/// learns it cannot send, so runs against this address get a budget well above that (the run
/// ends as soon as it knows; the budget is not waited for).
pub fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
