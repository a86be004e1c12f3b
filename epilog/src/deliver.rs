//! Getting batches to the collector without losing one.
//!
//! The order of one run (see [`deliver`]):
//!
//! 1. The caller has put the new batch in the outbox durably (or could not: then it exists only in
//!    memory and is sent first, since it is the only copy — the older ones are safe on disk).
//!    Stored parts are read back one at a time as they are sent.
//! 2. Older outbox batches are retried, oldest first, for at most half the remaining time.
//! 3. The new batch is sent. A batch leaves the outbox only when the collector replied `ok`,
//!    which it does only after committing it.
//!
//! Each attempt is one TCP connection: a fresh MUNGE credential over the body's digest, connect
//! (`connect_timeout_ms`), the request, one reply frame.
//!
//! Failures that cost little and often pass (connection refused, reset or dropped before the
//! reply — the collector restarting —, munged's socket refusing or overflowing, and the
//! collector's "busy; retry later") are retried after a backoff with full jitter ([`crate::retry`]): at most `[epilog] retries` in
//! a row (any answer from the collector starts the count again), and never a wait that would end
//! past the deadline. A down collector thus costs an epilog `retries` extra connection attempts
//! and at most 100 + 200 + 400 ms of waiting with the defaults, not its budget; the next run or
//! the flush timer tries again. Failures that would not pass within a run, or that already took
//! their time, are not retried: the name does not resolve, the connection timed out, no reply in
//! time. The credential is made before connecting, so a connection carries its request at once.
//!
//! When the collector still cannot be reached, this run sends nothing more: the rest waits in the
//! outbox for the next epilog. A refusal carries its kind ([`ReplyKind`]), decided by the
//! collector where it refused: `busy` is retried as above; `retry` (a storage error, a credential,
//! munged) is logged, the batch kept and the next batch tried; `permanent` (the batch itself is
//! not a batch, invalid, or over the collector's size limit) can never succeed, so the file is
//! moved to `<spool>/rejected/` for an admin to look at. A collector of the last release sends
//! no kind: then, and only then, its wording decides ([`legacy_kind`]).

use crate::retry::{Backoff, RandomSource};
use runledger_record::spool::Spool;
use runledger_record::wire::{self, Reply, ReplyKind};
use runledger_record::{Batch, DropCount};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Largest reply frame read: a [`Reply`] is a few dozen bytes.
pub const MAX_REPLY: usize = 64 * 1024;

/// What became of one attempt.
#[derive(Debug)]
pub enum Outcome {
    /// The collector committed the batch.
    Committed(Reply),
    /// The collector answered `ok: false`; the batch may succeed later.
    Refused(String),
    /// The collector says the batch can never be accepted.
    Malformed(String),
    /// The collector (or munged) cannot be reached now, or there is no time left: stop sending.
    Down(String),
}

/// Sends batches to one collector; remembers, for the rest of the run, that it is down.
pub struct Sender {
    address: String,
    connect_timeout: Duration,
    reply_timeout: Duration,
    resolved: Option<Vec<SocketAddr>>,
    down: Option<String>,
    backoff: Backoff,
    random: RandomSource,
    /// Transient failures since the collector last answered.
    failures: u32,
    retried: usize,
    /// Largest batch sent in one request (`[epilog] batch_max_bytes`); a larger one left in the
    /// outbox (by an older release) is cut into parts before it is sent.
    batch_max: usize,
    /// Makes the credential for a body's digest: munged, except in unit tests of what follows
    /// the signing (they must not depend on a running munged).
    sign: Signer,
}

/// A munge socket error faster than this is munged's backlog overflowing, worth a retry; a
/// slower one is libmunge giving up after its own retries.
const SIGN_RETRY_BELOW: Duration = Duration::from_millis(250);

/// Signs a batch digest; [`munge::encode`] in the product.
pub type Signer = fn(&[u8]) -> Result<String, munge::Error>;

impl Sender {
    /// A sender that does not retry; see [`Sender::retrying`].
    pub fn new(address: &str, connect_timeout: Duration) -> Self {
        Sender {
            address: address.trim().to_string(),
            connect_timeout,
            reply_timeout: Duration::MAX,
            resolved: None,
            down: None,
            backoff: Backoff::NONE,
            random: crate::retry::random_source(),
            failures: 0,
            retried: 0,
            batch_max: runledger_record::config::DEFAULT_BATCH_MAX_BYTES as usize,
            sign: munge::encode,
        }
    }

    /// Signs with `sign` instead of munged.
    pub fn signing_with(mut self, sign: Signer) -> Self {
        self.sign = sign;
        self
    }

    /// Sends batches of at most `n` bytes (at least 1 KiB).
    pub fn batch_max_bytes(mut self, n: u64) -> Self {
        self.batch_max = usize::try_from(n).unwrap_or(usize::MAX).clamp(1024, wire::DEFAULT_MAX_FRAME);
        self
    }

    pub fn batch_max(&self) -> usize {
        self.batch_max
    }

    /// Gives up on a collector that does not read or answer within `d` (per read or write).
    pub fn reply_timeout(mut self, d: Duration) -> Self {
        self.reply_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Retries transient failures with `backoff`, its jitter drawn from `random`.
    pub fn retrying(mut self, backoff: Backoff, random: RandomSource) -> Self {
        self.backoff = backoff;
        self.random = random;
        self
    }

    /// Why sending stopped, if it did.
    pub fn down(&self) -> Option<&str> {
        self.down.as_deref()
    }

    /// Retries made so far.
    pub fn retried(&self) -> usize {
        self.retried
    }

    /// Delivers `body`, retrying transient failures, finished by `deadline`. `Down` is for the
    /// whole run (every later call returns it at once) unless it only means that `deadline` left
    /// no time for the next retry: a later call with a later deadline tries again.
    pub fn send(&mut self, body: &[u8], deadline: Instant) -> Outcome {
        loop {
            if let Some(why) = &self.down {
                return Outcome::Down(why.clone());
            }
            let why = match self.attempt(body, deadline) {
                Ok(outcome) => {
                    match &outcome {
                        Outcome::Down(why) => self.down = Some(why.clone()),
                        _ => self.failures = 0, // it answered
                    }
                    return outcome;
                }
                Err(transient) => transient,
            };
            if self.failures >= self.backoff.retries {
                let why = match self.backoff.retries {
                    0 => why,
                    n => format!("{why} (gave up after {n} retries in a row)"),
                };
                self.down = Some(why.clone());
                return Outcome::Down(why);
            }
            let wait = self.backoff.delay(self.failures, (self.random)());
            if Instant::now() + wait >= deadline {
                return Outcome::Down(format!("{why}; no time left to retry"));
            }
            self.failures += 1;
            self.retried += 1;
            log::info!("{why}; retry {}/{} in {} ms", self.failures, self.backoff.retries, wait.as_millis());
            std::thread::sleep(wait);
        }
    }

    /// One connection. `Err` is a transient failure, worth a retry (see the module docs).
    fn attempt(&mut self, body: &[u8], deadline: Instant) -> Result<Outcome, String> {
        let addrs = match self.addresses(deadline) {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::Down(e)),
        };
        let left = |what: &str| -> Result<Duration, String> {
            let d = deadline.saturating_duration_since(Instant::now());
            if d < Duration::from_millis(1) {
                Err(format!("no time left to {what} collector"))
            } else {
                Ok(d)
            }
        };
        // A fresh credential for every attempt: munged refuses replays and old credentials. Made
        // before connecting, so that the request follows the connection at once: the collector
        // closes the oldest connection that has sent nothing when too many wait (issue #10), and
        // one whose sender is still waiting for munged looks exactly like that.
        let signing = Instant::now();
        let cred = match (self.sign)(wire::digest(body).as_bytes()) {
            Ok(c) => c,
            // munged's socket overflowed at once: a storm of signers on one host; cheap to retry,
            // like a collector that refused the connection. A socket error that took long comes
            // after libmunge's own retries (some 2 s): munged is not there, and retrying would
            // spend the rest of the budget on it.
            Err(e) if e.code == munge::ErrorKind::Socket && signing.elapsed() < SIGN_RETRY_BELOW => {
                return Err(format!("cannot sign the batch ({e})"))
            }
            Err(e) => return Ok(Outcome::Down(format!("cannot sign the batch ({e}): is munged running?"))),
        };
        let mut stream = None;
        let mut errors = Vec::new();
        let mut all_cheap = true;
        for a in &addrs {
            let t = match left("connect to the") {
                Ok(t) => t.min(self.connect_timeout),
                Err(e) => return Ok(Outcome::Down(e)),
            };
            match TcpStream::connect_timeout(a, t) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => {
                    // A timed-out connect already cost connect_timeout_ms: not retried.
                    all_cheap &= is_transient(&e);
                    errors.push(format!("{a}: {e}"));
                }
            }
        }
        let Some(mut s) = stream else {
            let why = format!("cannot connect to collector {}: {}", self.address, errors.join("; "));
            return if all_cheap { Err(why) } else { Ok(Outcome::Down(why)) };
        };
        let io_timeout = match left("talk to the") {
            Ok(t) => t.min(self.reply_timeout),
            Err(e) => return Ok(Outcome::Down(e)),
        };
        let _ = s.set_nodelay(true);
        if let Err(e) = s.set_read_timeout(Some(io_timeout)).and_then(|_| s.set_write_timeout(Some(io_timeout))) {
            return Ok(Outcome::Down(format!("collector {}: {e}", self.address)));
        }
        // Both frames in one write: one segment for small batches, no Nagle/delayed-ACK stall.
        let mut request = Vec::with_capacity(cred.len() + body.len() + 16);
        wire::write_request(&mut request, &cred, body).expect("writing to a Vec");
        if let Err(e) = s.write_all(&request) {
            // A collector that refuses from the header (a batch over its size limit) replies and
            // closes without reading the rest, and the write fails: its reply, if it arrived,
            // says what is wrong, which a reset alone would not.
            if let Ok(frame) = wire::read_frame(&mut s, MAX_REPLY) {
                if let Ok(r) = serde_json::from_slice::<Reply>(&frame) {
                    return self.outcome(r);
                }
            }
            let why = format!("sending to collector {}: {e}", self.address);
            return if is_transient(&e) { Err(why) } else { Ok(Outcome::Down(why)) };
        }
        let frame = match wire::read_frame(&mut s, MAX_REPLY) {
            Ok(f) => f,
            Err(wire::FrameError::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Ok(Outcome::Down(format!("collector {} sent no reply in time", self.address)))
            }
            Err(wire::FrameError::Io(e)) if is_transient(&e) => {
                return Err(format!("collector {} closed the connection without a reply: {e}", self.address))
            }
            Err(e) => return Ok(Outcome::Down(format!("reading the reply of collector {}: {e}", self.address))),
        };
        match serde_json::from_slice::<Reply>(&frame) {
            Ok(r) => Ok(self.outcome(r)?),
            Err(e) => {
                Ok(Outcome::Down(format!("collector {} replied with something else than a reply: {e}", self.address)))
            }
        }
    }

    /// What a reply means: its kind, as the collector decided it where it refused the batch.
    /// `Err` is a busy collector, retried after a backoff.
    fn outcome(&self, r: Reply) -> Result<Outcome, String> {
        let kind = r.kind();
        if kind == Some(ReplyKind::Ok) {
            return Ok(Outcome::Committed(r));
        }
        let why = r.error.unwrap_or_else(|| "no reason given".into());
        let kind = kind.unwrap_or_else(|| legacy_kind(&why));
        match kind {
            ReplyKind::Permanent => Ok(Outcome::Malformed(why)),
            ReplyKind::Busy => Err(format!("collector {} is busy: {why}", self.address)),
            ReplyKind::Retry | ReplyKind::Unknown | ReplyKind::Ok => Ok(Outcome::Refused(why)),
        }
    }

    /// The collector's addresses. An IP literal needs no lookup; a name is resolved once per run,
    /// in a helper thread so that a hung resolver cannot take more than the connect timeout.
    fn addresses(&mut self, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
        if let Some(a) = &self.resolved {
            return Ok(a.clone());
        }
        let addr = with_default_port(&self.address);
        if let Ok(a) = addr.parse::<SocketAddr>() {
            self.resolved = Some(vec![a]);
            return Ok(vec![a]);
        }
        let wait = deadline.saturating_duration_since(Instant::now()).min(self.connect_timeout);
        let (tx, rx) = mpsc::channel();
        let name = addr.clone();
        std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(|i| i.collect::<Vec<_>>()));
            })
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
        match rx.recv_timeout(wait) {
            Ok(Ok(a)) if !a.is_empty() => {
                self.resolved = Some(a.clone());
                Ok(a)
            }
            Ok(Ok(_)) => Err(format!("collector address {addr} resolves to nothing")),
            Ok(Err(e)) => Err(format!("cannot resolve collector address {addr}: {e}")),
            Err(_) => Err(format!("resolving collector address {addr} took longer than {} ms", wait.as_millis())),
        }
    }
}

/// The kind of a refusal from a collector of the last release, whose replies carry none: the only
/// place where wording decides, and as narrowly as that collector worded things. Permanent only
/// for its parse error ("malformed batch: …", from `Batch::from_json`) and its validation
/// ("invalid batch: …"), both at the start of the text: its storage errors start "not stored:",
/// so SQLite's "database disk image is malformed" inside one is not a bad batch. Busy for its
/// "too many connections (limit N); retry later"; anything else is kept for a later run.
fn legacy_kind(why: &str) -> ReplyKind {
    let w = why.trim_start().to_ascii_lowercase();
    if w.starts_with("malformed batch") || w.starts_with("invalid batch") {
        ReplyKind::Permanent
    } else if w.starts_with("too many connections") && w.contains("retry later") {
        ReplyKind::Busy
    } else {
        ReplyKind::Retry
    }
}

/// Whether a connection error is cheap and often passes within seconds (a collector restarting
/// refuses or resets; one that dropped us mid-request closes early).
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
}

/// `host` → `host:6820`; anything with a port (or an IPv6 literal in brackets with one) as is.
fn with_default_port(a: &str) -> String {
    let has_port = match a.rsplit_once(':') {
        Some((host, port)) => port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')),
        None => false,
    };
    if has_port || a.parse::<SocketAddr>().is_ok() {
        a.to_string()
    } else if a.contains(':') && !a.starts_with('[') {
        format!("[{a}]:{}", wire::DEFAULT_PORT) // a bare IPv6 address
    } else {
        format!("{a}:{}", wire::DEFAULT_PORT)
    }
}

/// One part of the new batch of this run (a job's records travel in as many parts as it takes
/// to keep each under `[epilog] batch_max_bytes`).
pub struct Current {
    /// The batch, or `None` to read it from `path` when it is sent (one part at a time in memory).
    pub body: Option<Vec<u8>>,
    /// Its outbox file, or `None` if it could not be stored (it exists only in memory).
    pub path: Option<PathBuf>,
    pub label: String,
}

/// What one run delivered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether every part of the current batch was committed.
    pub current_sent: bool,
    /// Older outbox batches committed / still waiting / moved to `rejected/`.
    pub old_sent: usize,
    pub old_left: usize,
    pub rejected: usize,
    /// Retries after transient failures.
    pub retries: usize,
    /// Why sending stopped early, if it did.
    pub stopped: Option<String>,
}

/// Delivers the parts of `current` (none: `--flush`) and the older outbox batches; see the module
/// docs for the order. Without a current batch the outbox gets all the time.
pub fn deliver(spool: &Spool, sender: &mut Sender, current: &[Current], deadline: Instant) -> Report {
    let mut report = Report::default();
    let mut current_sent = 0;
    // Not stored durably: this is the only copy, so it goes first.
    for cur in current.iter().filter(|c| c.path.is_none()) {
        current_sent += usize::from(send_current(spool, sender, cur, deadline, &mut report));
    }

    let retry_until = match current.is_empty() {
        false => Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2,
        true => deadline,
    };
    let current_paths: Vec<&Path> = current.iter().filter_map(|c| c.path.as_deref()).collect();
    let mut old: VecDeque<PathBuf> =
        spool.outbox().into_iter().filter(|p| !current_paths.contains(&p.as_path())).collect();
    let drops = if old.is_empty() { None } else { drop_stamp(spool) };
    while let Some(path) = old.pop_front() {
        if sender.down().is_some() || Instant::now() >= retry_until {
            report.old_left += 1 + old.len();
            if sender.down().is_none() {
                report.stopped = Some("no time left for older batches".into());
            }
            break;
        }
        let mut batch = match spool.outbox_read(&path) {
            Ok(b) => b,
            Err(e) if e.starts_with("malformed") => {
                report.rejected += 1;
                reject(spool, &path, &e);
                continue;
            }
            // Delivered and removed meanwhile by a concurrent epilog (two jobs ending at once
            // both retry the outbox; the collector's merge makes the duplicate harmless).
            Err(_) if !path.exists() => continue,
            Err(e) => {
                log::warn!("outbox {}: {e}; left for a later run", path.display());
                report.old_left += 1;
                continue;
            }
        };
        stamp(&mut batch, drops);
        let body = batch.to_json();
        if body.len() > sender.batch_max() && batch.items.len() > 1 {
            // Too large for one request (an older release stored a job whole): cut into parts,
            // stored before the whole goes, and sent in its place, in order.
            match resplit(spool, &path, batch, sender.batch_max()) {
                Ok(parts) => {
                    for p in parts.into_iter().rev() {
                        old.push_front(p);
                    }
                }
                Err(e) => {
                    log::warn!("outbox {}: too large to send whole and not cut into parts: {e}", path.display());
                    report.old_left += 1;
                }
            }
            continue;
        }
        match sender.send(&body, retry_until) {
            Outcome::Committed(_) => match spool.outbox_remove(&path) {
                Ok(()) => report.old_sent += 1,
                Err(e) => {
                    log::warn!("outbox {}: committed but not removed: {e}", path.display());
                    report.old_sent += 1;
                }
            },
            Outcome::Refused(why) => {
                log::warn!("outbox {}: collector refused it: {why}; kept", path.display());
                report.old_left += 1;
            }
            Outcome::Malformed(why) => {
                report.rejected += 1;
                reject(spool, &path, &format!("collector: {why}"));
            }
            Outcome::Down(why) => {
                // Down for the run, or no time left in this phase: either way the rest waits.
                report.old_left += 1 + old.len();
                report.stopped = Some(why);
                break;
            }
        }
    }

    for cur in current.iter().filter(|c| c.path.is_some()) {
        current_sent += usize::from(send_current(spool, sender, cur, deadline, &mut report));
    }
    report.current_sent = !current.is_empty() && current_sent == current.len();
    if let Some(why) = sender.down() {
        report.stopped = Some(why.to_string());
    }
    report.retries = sender.retried();
    report
}

/// Replaces the outbox file `path` by the parts of `batch` cut to `max` bytes: the parts are
/// stored durably first, then the whole is removed (a crash in between sends some items twice,
/// which the merge makes harmless, and loses none).
fn resplit(spool: &Spool, path: &Path, batch: Batch, max: usize) -> std::io::Result<Vec<PathBuf>> {
    let parts = batch.split(max);
    let paths = spool.outbox_replace_with_parts(path, &parts)?;
    log::info!("outbox {}: over {max} bytes, cut into {} batches", path.display(), paths.len());
    Ok(paths)
}

/// This node's running total of dropped batches, if any, to put on the batches it sends.
pub fn drop_stamp(spool: &Spool) -> Option<DropCount> {
    match spool.drop_count() {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(e) => {
            log::error!("drop counter unreadable ({e}); batches go without it until the next drop rewrites it");
            None
        }
    }
}

/// Puts the node's drop total on `batch`, unless it already carries a later one.
pub fn stamp(batch: &mut Batch, drops: Option<DropCount>) {
    if let Some(d) = drops {
        if batch.dropped.is_none_or(|had| had.last <= d.last) {
            batch.dropped = Some(d);
        }
    }
}

/// Sends the run's own batch; removes its outbox file once committed.
fn send_current(spool: &Spool, sender: &mut Sender, cur: &Current, deadline: Instant, report: &mut Report) -> bool {
    let read;
    let body = match (&cur.body, &cur.path) {
        (Some(b), _) => b,
        (None, Some(p)) => match spool.outbox_bytes(p) {
            Ok(b) => {
                read = b;
                &read
            }
            // A concurrent epilog took it as an older batch (and sent, rejected or dropped it,
            // logging which): this run has nothing left of it to send.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("{}: {} left the outbox through another run", cur.label, p.display());
                return true;
            }
            Err(e) => {
                log::warn!("{}: cannot read {}: {e}; kept for a later run", cur.label, p.display());
                return false;
            }
        },
        (None, None) => return false,
    };
    match sender.send(body, deadline) {
        Outcome::Committed(r) => {
            log::debug!("{}: committed ({} items applied)", cur.label, r.applied);
            if let Some(p) = &cur.path {
                if let Err(e) = spool.outbox_remove(p) {
                    log::warn!("{}: committed but {} not removed: {e} (it will be sent again)", cur.label, p.display());
                }
            }
            return true;
        }
        Outcome::Refused(why) if cur.path.is_some() => {
            log::warn!("{}: collector refused it: {why}; kept for a later run", cur.label)
        }
        Outcome::Refused(why) => log::error!("{}: collector refused it: {why}", cur.label),
        Outcome::Malformed(why) => match &cur.path {
            Some(p) => {
                report.rejected += 1;
                reject(spool, p, &format!("collector: {why}"));
            }
            None => log::error!("{}: collector says it is malformed ({why}) and it could not be kept", cur.label),
        },
        Outcome::Down(why) => {
            log::debug!("{}: not sent: {why}", cur.label);
            report.stopped = Some(why);
        }
    }
    false
}

/// Moves an outbox file that can never be delivered to `<spool>/rejected/`, loudly.
pub(crate) fn reject(spool: &Spool, path: &Path, why: &str) {
    let dir = spool.rejected_dir();
    let moved = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|_| std::fs::rename(path, dir.join(path.file_name().unwrap_or_default())));
    match moved {
        Ok(()) => log::error!(
            "outbox {} can never be delivered ({why}): moved to {}/ for an admin to inspect",
            path.display(),
            dir.display()
        ),
        Err(e) => {
            log::error!("outbox {} can never be delivered ({why}) and could not be moved aside: {e}", path.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests are about what follows the signing: they must pass without munged.
    fn fake_sign(_: &[u8]) -> Result<String, munge::Error> {
        Ok("MUNGE:test".into())
    }

    #[test]
    fn an_old_collectors_wording_is_read_narrowly() {
        assert_eq!(legacy_kind("malformed batch: expected value at line 1"), ReplyKind::Permanent);
        assert_eq!(legacy_kind("invalid batch: item 0 (job_end) has an empty cluster name"), ReplyKind::Permanent);
        assert_eq!(legacy_kind("credential refused: Expired credential"), ReplyKind::Retry);
        assert_eq!(legacy_kind("too many connections (limit 64); retry later"), ReplyKind::Busy);
        assert_eq!(legacy_kind("not stored: database error: disk I/O error"), ReplyKind::Retry);
        // The wording that used to set every queued batch aside when the ledger was corrupt.
        assert_eq!(legacy_kind("not stored: database error: database disk image is malformed"), ReplyKind::Retry);
        assert_eq!(legacy_kind("batch format 2 is not supported (this build speaks 1)"), ReplyKind::Retry);
    }

    #[test]
    fn a_typed_reply_is_obeyed_whatever_its_words() {
        let s = Sender::new("127.0.0.1:1", Duration::from_millis(1));
        let permanent = Reply::refused(ReplyKind::Permanent, "the words do not matter");
        assert!(matches!(s.outcome(permanent), Ok(Outcome::Malformed(_))));
        let retry = Reply::refused(ReplyKind::Retry, "not stored: database disk image is malformed");
        assert!(matches!(s.outcome(retry), Ok(Outcome::Refused(_))));
        assert!(s.outcome(Reply::refused(ReplyKind::Busy, "anything")).is_err());
        let newer = Reply { ok: false, applied: 0, kind: Some(ReplyKind::Unknown), error: Some("malformed".into()) };
        assert!(matches!(s.outcome(newer), Ok(Outcome::Refused(_))));
        assert!(matches!(s.outcome(Reply::ok(2)), Ok(Outcome::Committed(_))));
    }

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(with_default_port("ledger"), "ledger:6820");
        assert_eq!(with_default_port("ledger:7000"), "ledger:7000");
        assert_eq!(with_default_port("10.0.0.1"), "10.0.0.1:6820");
        assert_eq!(with_default_port("[::1]:7000"), "[::1]:7000");
        assert_eq!(with_default_port("::1"), "[::1]:6820");
    }

    #[test]
    fn refused_connection_is_down_and_stays_down() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let mut s = Sender::new(&addr.to_string(), Duration::from_millis(500)).signing_with(fake_sign);
        assert!(matches!(s.send(b"{}", Instant::now() + Duration::from_secs(2)), Outcome::Down(_)));
        // Stays down: with the collector back, the next batch of this run does not even connect.
        let back = std::net::TcpListener::bind(addr).unwrap();
        back.set_nonblocking(true).unwrap();
        assert!(matches!(s.send(b"{}", Instant::now() + Duration::from_secs(2)), Outcome::Down(_)));
        assert!(back.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "it connected again");
        assert!(s.down().unwrap().contains("cannot connect"), "{:?}", s.down());
    }

    #[test]
    fn refused_connections_are_retried_then_down_for_the_run() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        // Waits of 0 ms: a unit test does not sleep.
        let mut s = Sender::new(&addr.to_string(), Duration::from_millis(500))
            .signing_with(fake_sign)
            .retrying(Backoff::new(2, 1, 1), Box::new(|| 0));
        let r = s.send(b"{}", Instant::now() + Duration::from_secs(5));
        assert!(matches!(&r, Outcome::Down(w) if w.contains("gave up after 2 retries")), "{r:?}");
        assert_eq!(s.retried(), 2);
        // Down for the run: no more connections, no more retries.
        assert!(matches!(s.send(b"{}", Instant::now() + Duration::from_secs(5)), Outcome::Down(_)));
        assert_eq!(s.retried(), 2);
    }

    #[test]
    fn a_retry_that_cannot_end_before_the_deadline_is_not_waited_for_nor_final() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        // The wait drawn is a full hour: far past the deadline, so it is not started.
        let mut s = Sender::new(&addr.to_string(), Duration::from_millis(500))
            .signing_with(fake_sign)
            .retrying(Backoff::new(3, 3_600_000, 3_600_000), Box::new(|| 3_600_000));
        let r = s.send(b"{}", Instant::now() + Duration::from_secs(5));
        assert!(matches!(&r, Outcome::Down(w) if w.contains("no time left to retry")), "{r:?}");
        assert_eq!((s.retried(), s.down()), (0, None), "a later deadline may still try");
    }

    #[test]
    fn only_cheap_failures_and_a_busy_collector_are_transient() {
        use io::ErrorKind::*;
        for k in [ConnectionRefused, ConnectionReset, ConnectionAborted, BrokenPipe, UnexpectedEof] {
            assert!(is_transient(&io::Error::from(k)), "{k:?}");
        }
        for k in [TimedOut, WouldBlock, PermissionDenied, AddrNotAvailable] {
            assert!(!is_transient(&io::Error::from(k)), "{k:?}");
        }
    }

    #[test]
    fn batches_carry_the_latest_drop_total() {
        let mut b = Batch::new("n", vec![]);
        stamp(&mut b, None);
        assert_eq!(b.dropped, None);
        let older = DropCount { batches: 1, items: 2, bytes: 3, last: 10 };
        let newer = DropCount { batches: 4, items: 5, bytes: 6, last: 20 };
        stamp(&mut b, Some(older));
        assert_eq!(b.dropped, Some(older));
        stamp(&mut b, Some(newer));
        assert_eq!(b.dropped, Some(newer));
        // A counter reset by an admin does not replace what a stored batch already says.
        stamp(&mut b, Some(older));
        assert_eq!(b.dropped, Some(newer));
    }

    #[test]
    fn unresolvable_name_is_down() {
        let mut s = Sender::new("no-such-host.invalid:6820", Duration::from_millis(500));
        let r = s.send(b"{}", Instant::now() + Duration::from_secs(2));
        assert!(matches!(&r, Outcome::Down(w) if w.contains("resol")), "{r:?}");
    }
}
