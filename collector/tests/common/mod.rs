//! A live `collector serve` for the integration tests, and the MUNGE helpers they share.
//!
//! Each test file compiles this module on its own and uses part of it: the collector's tests, and
//! those of `integration/` (the collector with the epilog's sender), which include it by path.
#![allow(dead_code)]

use runledger_record::wire::{self, Reply};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The `collector` binary: this package's, or the same entry point built by `integration/`.
pub const BIN: &str = match (option_env!("CARGO_BIN_EXE_collector"), option_env!("CARGO_BIN_EXE_collector-under-test"))
{
    (Some(bin), _) | (None, Some(bin)) => bin,
    (None, None) => panic!("no collector binary to test"),
};

/// The `[collector]` limits a test runs the server with, and its log level.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub read_timeout_ms: u64,
    pub rust_log: &'static str,
    /// More `[collector]` lines (`auth_timeout_ms = 500`, the query bounds…).
    pub extra: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * 1024,
            max_connections: 4,
            read_timeout_ms: 1500,
            rust_log: "debug",
            extra: String::new(),
        }
    }
}

/// `collector serve` on a fresh database in a temporary directory and an ephemeral port.
/// [`Server::kill`] and [`Server::restart`] bring it down and up again on the same port and file.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub database: PathBuf,
    /// The local socket users' queries go through.
    pub socket: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&Limits::default())
    }

    pub fn start_with(limits: &Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("runledger.toml");
        let database = dir.path().join("ledger.db");
        // Each server its own socket: never the system's /run/runledger one.
        let socket = dir.path().join("collector.sock");
        std::fs::write(
            &config,
            format!(
                "[collector]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\nslurm_user = \"slurm\"\n\
                 socket = \"{}\"\nmax_message_bytes = {}\nmax_connections = {}\nread_timeout_ms = {}\n{}\n",
                database.display(),
                socket.display(),
                limits.max_message_bytes,
                limits.max_connections,
                limits.read_timeout_ms,
                limits.extra
            ),
        )
        .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, addr) = spawn(&config, None, limits.rust_log, &log);
        Server { child: Some(child), addr, config, database, socket, log, dir }
    }

    /// The process id of `collector serve`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the collector runs").id()
    }

    /// Waits (up to 30 s) until a line of the collector's log satisfies `f`: a line is read
    /// from the collector's stderr some time after the collector wrote it, and after any reply
    /// the client saw. Panics with the log when it does not come.
    pub fn wait_log(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| f(l)) {
                return l.clone();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no log line {what} within 30 s:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no chance to finish a transaction or answer anyone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the collector again on the same port and database (after [`Server::kill`]).
    pub fn restart(&mut self, rust_log: &str) {
        self.kill();
        let (child, addr) = spawn(&self.config, Some(self.addr), rust_log, &self.log);
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    /// Waits (up to 60 s) until the collector has merged what it stored in its inbox: during a
    /// burst it answers once a batch is committed there, before the batch's rows exist.
    pub fn wait_merged(&self) {
        let t0 = std::time::Instant::now();
        let conn = rusqlite::Connection::open_with_flags(&self.database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening the ledger");
        loop {
            let waiting: i64 =
                conn.query_row("SELECT count(*) FROM inbox WHERE error IS NULL", [], |r| r.get(0)).unwrap();
            if waiting == 0 {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{waiting} batches still in the inbox after 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends raw bytes, returns the reply (or what went wrong).
    pub fn send_raw(&self, bytes: &[u8]) -> Result<Reply, String> {
        let mut s = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(bytes).map_err(|e| e.to_string())?;
        read_reply(&mut s)
    }

    pub fn send(&self, credential: &str, body: &[u8]) -> Reply {
        let mut buf = Vec::new();
        wire::write_request(&mut buf, credential, body).unwrap();
        self.send_raw(&buf).unwrap()
    }

    pub fn query(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN).arg("query").arg("--config").arg(&self.config).args(args).output().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `collector serve` and waits for its "listening on" line; its stderr goes to `log`.
fn spawn(
    config: &PathBuf,
    listen: Option<SocketAddr>,
    rust_log: &str,
    log: &Arc<Mutex<Vec<String>>>,
) -> (Child, SocketAddr) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(config);
    if let Some(a) = listen {
        cmd.arg("--listen").arg(a.to_string());
    }
    let mut child = cmd.env("RUST_LOG", rust_log).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split(';').next().unwrap().to_string();
                let _ = tx.send(addr);
            }
            log2.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("collector serve did not start: {:?}", log.lock().unwrap());
    });
    (child, addr.parse().unwrap())
}

pub fn read_reply(s: &mut TcpStream) -> Result<Reply, String> {
    let body = wire::read_frame(s, 1 << 20).map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// A fresh credential (as root, the test's user) over `payload`.
pub fn sign(payload: &str) -> String {
    munge::encode(payload.as_bytes()).expect("munge encode")
}

pub fn expect_rejected(r: &Reply, needle: &str) {
    assert!(!r.ok, "expected a rejection containing '{needle}', got {r:?}");
    let e = r.error.as_deref().unwrap_or("");
    assert!(e.to_lowercase().contains(&needle.to_lowercase()), "expected '{needle}' in {e:?}");
}

pub fn munged_reachable() -> bool {
    munge::encode(b"").is_ok()
}

/// Whether a munged test may run: with munged down, strict twins fail and the others skip.
pub fn need_munged(strict: bool, what: &str) -> bool {
    if munged_reachable() {
        return true;
    }
    assert!(!strict, "munged is not reachable (start it: runuser -u munge -- /usr/sbin/munged)");
    eprintln!("NOTE: munged is not reachable; skipping {what}");
    false
}
