//! `collector serve` under idle connections, with real epilog senders: 500 connections that
//! never send a byte do not keep 20 epilogs, using the epilog's own sender and delivery settings,
//! from delivering. (Moved here from collector/tests/serve.rs: the collector does not depend on
//! the epilog, not even for its tests.)
//!
//! Needs munged. Without it the plain test prints a note and passes; its `_strict` twin (ignored
//! by default) fails instead.

#[path = "../../collector/tests/common/mod.rs"]
mod common;

use common::{need_munged, Limits, Server};
use runledger_synth::Sample;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Connections to the collector held by a user process, which reopens any the collector closes.
struct Hog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Hog {
    /// Opens `n` connections that never send a byte; returns once all are open.
    fn start(addr: std::net::SocketAddr, n: usize) -> Hog {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
            for c in &conns {
                c.set_nonblocking(true).unwrap();
            }
            let _ = ready_tx.send(());
            let mut reopened = 0;
            while !s2.load(Ordering::Relaxed) {
                for c in conns.iter_mut() {
                    let mut b = [0u8; 64];
                    let closed = match c.peek(&mut b) {
                        Ok(_) => true, // a refusal: the collector is done with it
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed {
                        if let Ok(n) = TcpStream::connect(addr) {
                            n.set_nonblocking(true).unwrap();
                            *c = n;
                            reopened += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            reopened
        });
        ready_rx.recv().unwrap();
        Hog { stop, thread: Some(thread) }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn idle_connections_do_not_keep_epilogs_out_body(strict: bool) {
    if !need_munged(strict, "the idle-connections test") {
        return;
    }
    use runledger_epilog::deliver::{Outcome, Sender};
    use runledger_epilog::retry::{random_source, Backoff};
    // The defaults of a real site: 64 slots, 256 waiting connections, 1 s for the credential.
    let limits = Limits { max_connections: 64, read_timeout_ms: 10_000, rust_log: "info", ..Limits::default() };
    let server = Server::start_with(&limits);
    let hog = Hog::start(server.addr, 500);
    // 20 jobs end at once while the connections are held; each epilog run sends its batch with
    // the epilog's own sender and delivery settings, within the epilog's budget.
    let epilog = runledger_record::config::EpilogConfig::default();
    let senders: Vec<_> = (0..20u32)
        .map(|i| {
            let addr = server.addr.to_string();
            let epilog = epilog.clone();
            std::thread::spawn(move || {
                let body = Sample::new("idle", 5000 + i, runledger_record::now() - 60).batch(0).to_json();
                let mut s = Sender::new(&addr, Duration::from_millis(epilog.connect_timeout_ms))
                    .reply_timeout(Duration::from_millis(epilog.reply_timeout_ms))
                    .retrying(Backoff::new(epilog.retries, epilog.retry_base_ms, epilog.retry_max_ms), random_source());
                s.send(&body, Instant::now() + Duration::from_millis(epilog.budget_ms))
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let reopened = hog.stop();
    let failed: Vec<_> = outcomes.iter().enumerate().filter(|(_, o)| !matches!(o, Outcome::Committed(_))).collect();
    assert!(failed.is_empty(), "not delivered while 500 idle connections were held: {failed:?}");
    eprintln!("20 of 20 delivered; the idle connections were reopened {reopened} times");
    // Twenty at once may be a burst, answered from the inbox and merged right after.
    server.wait_merged();
    let out = server.query(&["jobs", "-n", "-o", "JobID"]);
    let ids = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ids.lines().count(), 20, "{ids}");
}

#[test]
fn idle_connections_do_not_keep_epilogs_out() {
    idle_connections_do_not_keep_epilogs_out_body(false);
}

#[test]
#[ignore = "needs munged"]
fn idle_connections_do_not_keep_epilogs_out_strict() {
    idle_connections_do_not_keep_epilogs_out_body(true);
}
