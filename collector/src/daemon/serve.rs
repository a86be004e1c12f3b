//! `collector serve`: receive signed batches over TCP and merge them with group commit.
//!
//! One thread per connection reads one request ([`runledger_record::wire`]): the credential
//! frame first, which is verified ([`crate::daemon::auth`]) before the body is read, so an
//! unauthenticated peer can make the collector read at most a few KiB; then the body, bounded by
//! `max_message_bytes` (refused from its header alone). The whole request must arrive within
//! `read_timeout_ms` — one deadline for all reads, so a peer dribbling a byte a second is cut off
//! like a silent one.
//!
//! Anyone who can reach the port can open connections, and on a compute node a user shares the
//! node's address with its epilog, so neither a per-address limit nor one pool of slots keeps
//! idle users from starving epilogs. Connections are therefore held apart until they have
//! authenticated ([`Pending`]): the credential must arrive within `auth_timeout_ms`, at most
//! `max_unauthenticated` connections wait for theirs, and when one more arrives the oldest idle
//! one (nothing waiting to be read) is closed — an epilog sends its whole request as soon as it
//! connects, so it is neither idle nor the oldest for long, while idle connections are both.
//! Once its credential has arrived a connection leaves [`Pending`] for a queue of at most
//! `max_queued` requests: [`DECODERS`] credentials are verified at a time, and only an
//! authenticated connection (root or the slurm user) takes one of the `max_connections` slots,
//! waiting for one if need be. A request that gets neither within [`QUEUE_WAIT`] (and one over
//! `max_queued`) is answered "busy; retry later" and closed: the N epilogs of a job ending on N
//! nodes at once queue rather than being turned away (`bench/epilog-storm`).
//!
//! Accepted batches go to the single writer thread, which owns the SQLite connection. It takes
//! whatever is queued (up to [`MAX_GROUP`] batches), applies all of them in one transaction
//! (each in its own savepoint, see [`merge::apply_group`]), commits, and only then answers each
//! connection: `ok` means committed. Grouping is what makes the ingest rate: a commit costs the
//! same for one batch or a hundred. During a burst ([`INBOX_FROM`] batches waiting together) the
//! writer commits the batches' bodies to the ledger's inbox instead and answers at once; it
//! merges them when no request waits ([`runledger_ledger::inbox`] says why that is as safe).
//!
//! Every refused request is logged with the peer's address and the reason, and counted by reason
//! in memory; the writer adds the counts to the ledger's `rejections` table about once a second
//! ([`runledger_ledger::rejections`]), so refusals never cost a database write of their own.

use crate::daemon::auth::{self, Policy, Reject};
use crate::daemon::slots::{Place, Queue, Slots};
use crate::daemon::stats::Stats;
use runledger_ledger::rejections;
use runledger_ledger::{db, merge};
use runledger_record::wire::{self, Reply, ReplyKind};
use runledger_record::Batch;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Most batches applied in one transaction.
pub const MAX_GROUP: usize = 256;

/// A group of this many batches, or of two while earlier ones wait in the inbox, is a burst:
/// stored in the inbox and answered before it is merged. Fewer are merged at once, so that the
/// few epilogs of a small job find their rows merged when they are answered, as before.
pub const INBOX_FROM: usize = 8;

/// How long the writer leaves the inbox alone after a transaction that merges from it failed
/// as a whole (a full disk, say), so that it does not retry in a loop.
const INBOX_PAUSE: Duration = Duration::from_secs(1);

/// The inbox is merged once no request has come for this long: the burst is over. Merging
/// while it goes on would only take the writer from the requests it answers.
const INBOX_IDLE: Duration = Duration::from_millis(20);

/// Under a load that never leaves the writer idle, it still merges from the inbox this often,
/// so that what is stored there is merged within seconds whatever comes.
const INBOX_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// Batches merged from the inbox at a time: large enough to merge many node records of one job
/// together, small enough (~0.2 s here) to keep a request that arrives meanwhile waiting briefly.
/// `bench/collector-ingest` (10,000 records, 16 connections) merged the whole burst 0.65x as fast
/// with 32, 1.12x with 256 and 1.22x with 512 as with 128, and answered 0.85x as fast with 512.
const INBOX_CHUNK: usize = 256;

/// Credentials verified at once. munged runs two worker threads by default; a few requests in
/// flight keep them busy, more only wait in its socket's backlog or overflow it.
pub const DECODERS: usize = 4;

/// How long a request whose credential has arrived may wait for munged and then for a slot
/// before it is answered "busy": well under the epilog's `reply_timeout_ms` (2 s by default), so
/// that a sender hears "retry later" rather than nothing.
pub const QUEUE_WAIT: Duration = Duration::from_millis(1000);

/// How long writing a reply may block on a peer that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the counters are logged (when they changed).
const STATS_EVERY: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct Options {
    pub listen: String,
    pub database: PathBuf,
    pub policy: Policy,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub read_timeout: Duration,
    /// How long a connection may take to send its credential.
    pub auth_timeout: Duration,
    /// Connections waiting for their credential, at most ([`Pending`]).
    pub max_unauthenticated: usize,
    /// Requests whose credential has arrived, waiting for munged or for a slot, at most.
    pub max_queued: usize,
    /// The local socket for users' queries ([`crate::daemon::query_socket`]); `None` disables it.
    pub local: Option<crate::daemon::query_socket::Options>,
    /// `[collector] metrics`: where Prometheus scrapes [`crate::daemon::metrics`]; empty: nowhere.
    pub metrics: String,
    /// `[collector] node_binding`: whose records a node's credential may carry.
    pub binding: std::sync::Arc<crate::daemon::binding::Binding>,
    /// `[retention]`: the daily prune ([`crate::upkeep::spawn_daily`]).
    pub retention: runledger_record::config::RetentionConfig,
}

/// A batch waiting for the writer, and where to send the verdict.
struct Work {
    batch: Batch,
    /// The body as signed, for the inbox (empty for a batch taken from it).
    body: Vec<u8>,
    peer: SocketAddr,
    reply: Sender<Reply>,
}

struct Shared {
    opts: Options,
    stats: Stats,
    /// Authenticated requests being read, merged and answered (`max_connections`).
    slots: Arc<Queue>,
    /// Requests whose credential has arrived, until they hold a slot (`max_queued`).
    queued: Arc<Slots>,
    /// Credentials being verified by munged at once ([`DECODERS`]).
    decoders: Arc<Queue>,
    pending: Arc<Pending>,
    writer: Mutex<Sender<Work>>,
}

/// Runs the collector until the process is stopped.
pub fn run(opts: Options) -> Result<(), String> {
    crate::daemon::query_socket::protect_database(&opts.database);
    let conn = db::open_rw(&opts.database)?;
    match rejections::read(&conn) {
        Ok(rows) => log::info!("requests refused so far (this ledger): {}", rejections::describe(&rows)),
        Err(e) => log::warn!("cannot read the rejection counts: {e}"),
    }
    let listener = TcpListener::bind(&opts.listen).map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if let Err(e) = crate::sys::set_backlog(&listener, 4096) {
        log::warn!("cannot enlarge the listen backlog: {e}");
    }
    log::info!(
        "listening on {local}; database {}; accepting node records from {}; limits: {} bytes, {} connections, \
         {} ms to read a request, {} connections waiting at most {} ms for their credential",
        opts.database.display(),
        opts.policy.describe(),
        opts.max_message_bytes,
        opts.max_connections,
        opts.read_timeout.as_millis(),
        opts.max_unauthenticated,
        opts.auth_timeout.as_millis()
    );
    log::info!("{}", opts.binding.describe());
    // After the writer's connection brought the schema up to date.
    crate::upkeep::spawn_daily(opts.database.clone(), opts.retention.clone())?;
    if let Some(local) = opts.local.clone() {
        // Ingest matters more than users' queries: without the socket, root still reads the file.
        if let Err(e) = crate::daemon::query_socket::spawn(local) {
            log::error!("{e}: users cannot query their jobs until this is fixed");
        }
    }
    let (tx, rx) = mpsc::channel::<Work>();
    let shared = Arc::new(Shared {
        slots: Queue::new(opts.max_connections),
        queued: Slots::new(opts.max_queued),
        decoders: Queue::new(DECODERS),
        pending: Pending::new(opts.max_unauthenticated),
        opts,
        stats: Stats::default(),
        writer: Mutex::new(tx),
    });
    {
        let shared = shared.clone();
        thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let _guard = ExitOnPanic("writer");
                writer_loop(conn, rx, &shared.stats)
            })
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    }
    if !shared.opts.metrics.is_empty() {
        let s = shared.clone();
        let render = move |f: &Result<_, String>| crate::daemon::metrics::render(&s.stats, f);
        match crate::daemon::metrics::spawn(&shared.opts.metrics, shared.opts.database.clone(), render) {
            Ok(addr) => log::info!("metrics for Prometheus on http://{addr}/metrics"),
            // Ingest matters more than monitoring.
            Err(e) => log::error!("{e}: no metrics until this is fixed"),
        }
    }
    {
        let shared = shared.clone();
        thread::Builder::new()
            .name("stats".into())
            .spawn(move || {
                let mut last = String::new();
                loop {
                    thread::sleep(STATS_EVERY);
                    let s = shared.stats.summary();
                    if s != last {
                        log::info!("{s}");
                        last = s;
                    }
                }
            })
            .map_err(|e| format!("cannot start the stats thread: {e}"))?;
    }
    accept_loop(listener, shared);
    Ok(())
}

/// Makes a panic in a thread the whole collector depends on end the process (the service
/// manager restarts it) rather than leave a collector that accepts but never commits.
struct ExitOnPanic(&'static str);

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            log::error!("the {} thread panicked; exiting", self.0);
            std::process::exit(70);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::error!("accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        // Never refused here: a newcomer closes the oldest idle connection still waiting to authenticate.
        let waiting = shared.pending.admit(&stream);
        let s2 = shared.clone();
        let spawned = thread::Builder::new().name(format!("conn {peer}")).stack_size(512 * 1024).spawn(move || {
            handle(stream, peer, &s2, waiting);
        });
        if let Err(e) = spawned {
            log::error!("{peer}: cannot start a thread for the connection: {e}");
        }
    }
}

/// Connections that have not authenticated yet, oldest first, apart from the [`Slots`] of those
/// that have: idle or slow connections can fill only this queue, never the slots epilogs need.
pub(crate) struct Pending {
    max: usize,
    next: AtomicU64,
    queue: Mutex<VecDeque<Waiting>>,
}

struct Waiting {
    id: u64,
    /// A handle on the connection, to close it when it is evicted.
    stream: Option<TcpStream>,
    evicted: Arc<AtomicBool>,
}

/// A connection's place in [`Pending`], left when dropped (authenticated, refused or closed).
pub(crate) struct Admission {
    pending: Arc<Pending>,
    id: u64,
    evicted: Arc<AtomicBool>,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Arc<Pending> {
        Arc::new(Pending { max: max.max(1), next: AtomicU64::new(0), queue: Mutex::new(VecDeque::new()) })
    }

    /// Queues a new connection; when `max` are waiting, the oldest idle one (else the oldest)
    /// is shut down to make room.
    pub(crate) fn admit(self: &Arc<Self>, stream: &TcpStream) -> Admission {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(AtomicBool::new(false));
        let me = Waiting { id, stream: stream.try_clone().ok(), evicted: evicted.clone() };
        let oldest = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = if q.len() >= self.max {
                let idle = q.iter().position(|w| w.stream.as_ref().is_none_or(|s| !crate::sys::bytes_waiting(s)));
                q.remove(idle.unwrap_or(0))
            } else {
                None
            };
            q.push_back(me);
            oldest
        };
        if let Some(old) = oldest {
            old.evicted.store(true, Ordering::Release);
            if let Some(s) = old.stream {
                // Its thread's read returns at once and it reports the eviction.
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        Admission { pending: self.clone(), id, evicted }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.lock().unwrap().len()
    }
}

impl Admission {
    fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut q = self.pending.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = q.iter().position(|w| w.id == self.id) {
            q.remove(i);
        }
    }
}

/// Reads from a socket under one deadline for all reads together.
pub struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    /// Bytes read so far: zero at EOF means the peer sent nothing (a port probe).
    pub bytes: usize,
}

impl<'a> DeadlineReader<'a> {
    pub fn new(stream: &'a TcpStream, timeout: Duration) -> Self {
        DeadlineReader { stream, deadline: Instant::now() + timeout, bytes: 0 }
    }

    /// Moves the deadline (from the credential's to the whole request's).
    pub fn until(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "read deadline passed"));
        }
        // A zero timeout means "block forever" to setsockopt: never pass one.
        self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match (&mut &*self.stream).read(buf) {
            Ok(n) => {
                self.bytes += n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(io::ErrorKind::TimedOut, e)),
            Err(e) => Err(e),
        }
    }
}

/// Reads, verifies and parses one request: the credential within `auth_timeout` while the
/// connection waits among the [`Pending`], then, holding one of the [`Slots`], the body.
fn read_request(
    stream: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    waiting: Admission,
) -> Result<(Batch, Vec<u8>, auth::Sender, Place), Option<Reject>> {
    let opts = &shared.opts;
    let started = Instant::now();
    let mut r = DeadlineReader::new(stream, opts.auth_timeout.min(opts.read_timeout));
    let cred = match wire::read_frame(&mut r, wire::MAX_CREDENTIAL_FRAME) {
        Ok(c) => c,
        Err(_) if waiting.evicted() => return Err(Some(Reject::Evicted(opts.max_unauthenticated))),
        // Connected and closed without a byte: a port probe, not worth a warning.
        Err(wire::FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof && r.bytes == 0 => return Err(None),
        Err(wire::FrameError::Io(e)) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
            return Err(Some(Reject::AuthTimeout(opts.auth_timeout.min(opts.read_timeout))))
        }
        Err(e) => return Err(Some(Reject::from_frame(e))),
    };
    // Its credential has arrived: it no longer waits for it, and it no longer holds a place that
    // an idle connection could be denied. From here it waits, if it must, in the bounded queue.
    drop(waiting);
    let queued = shared.queued.take().ok_or(Reject::Queued(opts.max_queued))?;
    let cred = String::from_utf8(cred).map_err(|_| Reject::BadFrame("credential is not text".into()))?;
    let wait_until = Instant::now() + QUEUE_WAIT;
    let sender = {
        // munged answers a few requests at a time; thousands at once only overflow its socket's
        // backlog, and libmunge then fails ("Resource temporarily unavailable").
        let _decoder = shared.decoders.take_until(wait_until).ok_or(Reject::VerifyBusy(QUEUE_WAIT))?;
        verify_patiently(&opts.policy, &cred, wait_until)?
    };
    let slot = shared.slots.take_until(wait_until).ok_or(Reject::TooManyConnections(opts.max_connections))?;
    drop(queued);
    log::debug!("{peer}: authenticated uid {}; reading the body", sender.uid);
    r.until(started + opts.read_timeout);
    let body = wire::read_frame(&mut r, opts.max_message_bytes).map_err(Reject::from_frame)?;
    auth::check_digest(&sender, &body)?;
    // The format is checked apart from the parse: a newer epilog's batch is kept by its sender
    // for an upgraded collector, while one that is not a batch at all never will be.
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| Reject::Malformed(format!("malformed batch: {e}")))?;
    if batch.format != runledger_record::FORMAT_VERSION {
        return Err(Some(Reject::Unsupported(format!(
            "batch format {} is not supported (this build speaks {})",
            batch.format,
            runledger_record::FORMAT_VERSION
        ))));
    }
    merge::validate(&batch).map_err(|e| Reject::Malformed(format!("invalid batch: {e}")))?;
    opts.binding.check(&batch, sender.origin)?;
    Ok((batch, body, sender, slot))
}

/// Verifies a credential, asking munged again while its socket refuses (its backlog overflows
/// when other clients on this host sign or verify in a burst too) until `until`: the request
/// is then refused as before, "munged unavailable", which the sender retries later.
fn verify_patiently(policy: &Policy, cred: &str, until: Instant) -> Result<auth::Sender, Reject> {
    let mut pause = Duration::from_millis(5);
    loop {
        match auth::verify_credential(policy, cred, munge::decode) {
            Err(Reject::MungeUnavailable(e))
                if e.code == munge::ErrorKind::Socket && Instant::now() + pause < until =>
            {
                log::debug!("munged refused a connection ({}); asking again in {} ms", e.message, pause.as_millis());
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn handle(stream: TcpStream, peer: SocketAddr, shared: &Shared, waiting: Admission) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (batch, body, sender, _slot) = match read_request(&stream, peer, shared, waiting) {
        Ok(x) => x,
        Err(None) => {
            log::debug!("{peer}: closed without sending anything");
            return;
        }
        Err(Some(r)) => {
            shared.stats.reject(peer, &r);
            if !matches!(r, Reject::Evicted(_)) {
                send_reply(&stream, &Reply::refused(r.kind(), r.to_string()));
                linger(&stream);
            }
            return;
        }
    };
    let items = batch.items.len();
    let from = batch.sender.clone();
    let (tx, rx) = mpsc::channel();
    let queued = shared.writer.lock().unwrap_or_else(|p| p.into_inner()).send(Work { batch, body, peer, reply: tx });
    let reply = match queued {
        Ok(()) => {
            rx.recv().unwrap_or_else(|_| Reply::refused(ReplyKind::Retry, "collector is shutting down; not stored"))
        }
        Err(_) => Reply::refused(ReplyKind::Retry, "collector is shutting down; not stored"),
    };
    if reply.ok {
        log::debug!("{peer}: batch from {from} (uid {}): {items} items committed", sender.uid);
    }
    send_reply(&stream, &reply);
    let _ = stream.shutdown(Shutdown::Write);
}

fn send_reply(stream: &TcpStream, reply: &Reply) {
    let json = serde_json::to_vec(reply).expect("a Reply always serializes");
    if let Err(e) = wire::write_frame(&mut &*stream, &json) {
        log::debug!("cannot send the reply: {e}");
    }
}

/// After refusing a request the peer may still be sending: half-close, then swallow a little
/// for a short while so our error reply is read rather than lost to a connection reset.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut r = DeadlineReader::new(stream, Duration::from_millis(200));
    let mut buf = [0u8; 8192];
    while r.bytes < 256 * 1024 {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// How often the writer refreshes the query planner's statistics (`PRAGMA optimize`).
const OPTIMIZE_EVERY: Duration = Duration::from_secs(3600);

fn optimize(conn: &rusqlite::Connection, pragma: &str) {
    let t = Instant::now();
    match conn.execute_batch(pragma) {
        Ok(()) => log::debug!("{pragma} took {:?}", t.elapsed()),
        Err(e) => log::warn!("{pragma} failed: {e}"),
    }
}

fn writer_loop(conn: rusqlite::Connection, rx: Receiver<Work>, stats: &Stats) {
    // Statistics let the planner choose between the jobs indexes as the ledger grows.
    optimize(&conn, "PRAGMA optimize = 0x10002");
    let mut optimized = Instant::now();
    let mut flushed = Instant::now();
    // The ids interned so far, kept across groups (merge::Cache says why that stays right).
    let mut cache = merge::Cache::new();
    // Freeing a group's batches (hundreds of allocations per record) is left to another thread:
    // the writer is the one thread every record waits for. Without it, the writer frees them.
    let (free, to_free) = mpsc::channel::<Vec<Work>>();
    let freer = thread::Builder::new().name("free".into()).spawn(move || to_free.into_iter().for_each(drop));
    if let Err(e) = &freer {
        log::warn!("cannot start the thread that frees merged batches ({e}); the writer frees them");
    }
    // What an earlier run stored and did not merge (it stopped during a burst) is merged first.
    let mut inbox = match runledger_ledger::inbox::waiting(&conn) {
        Ok(n) => n,
        Err(e) => {
            log::error!("cannot read the inbox ({e}); batches stored in it wait for a restart");
            u64::MAX
        }
    };
    if inbox > 0 && inbox != u64::MAX {
        log::info!("{inbox} batches wait in the inbox; merging them");
    }
    let mut inbox_paused_until = Instant::now();
    let mut inbox_merged = Instant::now();
    loop {
        let draining = inbox > 0 && inbox != u64::MAX && Instant::now() >= inbox_paused_until;
        stats.inbox_waiting.store(if inbox == u64::MAX { 0 } else { inbox }, Ordering::Relaxed);
        // Wake up without work too, so refusals reach the table while no batch arrives, and
        // (with batches in the inbox) to merge them as soon as the requests stop.
        let first = match rx.recv_timeout(if draining { INBOX_IDLE } else { rejections::FLUSH_EVERY }) {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if flushed.elapsed() >= rejections::FLUSH_EVERY {
            stats.flush_rejections(&conn);
            flushed = Instant::now();
        }
        if draining && (first.is_none() || inbox_merged.elapsed() >= INBOX_AT_LEAST_EVERY) {
            match merge_from_inbox(&conn, &mut cache, stats) {
                // None found: the count was off (it cannot be, but waking every 20 ms for
                // nothing would be a poor way to learn it).
                Ok(0) => inbox = 0,
                Ok(done) => inbox = inbox.saturating_sub(done),
                Err(e) => {
                    log::error!("cannot merge from the inbox ({e}); trying again in {INBOX_PAUSE:?}");
                    inbox_paused_until = Instant::now() + INBOX_PAUSE;
                }
            }
            inbox_merged = Instant::now();
        }
        let Some(first) = first else { continue };
        if optimized.elapsed() > OPTIMIZE_EVERY {
            optimize(&conn, "PRAGMA optimize");
            optimized = Instant::now();
        }
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let burst = group.len() >= INBOX_FROM || (inbox > 0 && group.len() >= 2);
        if burst && inbox != u64::MAX && inbox + (group.len() as u64) <= runledger_ledger::inbox::MAX_BATCHES {
            match store_in_inbox(&conn, &group, runledger_record::now()) {
                Ok(()) => {
                    inbox += group.len() as u64;
                    stats.inboxed.fetch_add(group.len() as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(group.len() as u64, Ordering::Relaxed);
                    for w in &group {
                        let n = w.batch.items.len();
                        stats.items.fetch_add(n as u64, Ordering::Relaxed);
                        let _ = w.reply.send(Reply::ok(n));
                    }
                    log::trace!("stored {} batches in the inbox ({inbox} waiting)", group.len());
                    if freer.is_ok() {
                        let _ = free.send(group);
                    }
                    continue;
                }
                // Merged at once below instead, as without a burst.
                Err(e) => log::warn!("cannot store {} batches in the inbox ({e}); merging them now", group.len()),
            }
        }
        let started = Instant::now();
        let results = apply_combined(&conn, &mut cache, &mut group, runledger_record::now());
        stats.merge_seconds.observe(started.elapsed());
        match results {
            Ok(results) => {
                let mut ok = 0;
                for (w, r) in group.iter().zip(results) {
                    let reply = match r {
                        Ok(n) => {
                            ok += 1;
                            stats.items.fetch_add(n as u64, Ordering::Relaxed);
                            Reply::ok(n)
                        }
                        Err(e) => {
                            stats.merge_failures.fetch_add(1, Ordering::Relaxed);
                            log::error!("{}: batch from {} not merged: {e}", w.peer, w.batch.sender);
                            Reply::refused(ReplyKind::Retry, storage_error(&e.to_string()))
                        }
                    };
                    let _ = w.reply.send(reply);
                }
                stats.batches.fetch_add(ok, Ordering::Relaxed);
                log::trace!(
                    "committed {ok} of {} batches in {:?} (id cache: {} hits, {} misses so far)",
                    group.len(),
                    started.elapsed(),
                    cache.hits,
                    cache.misses
                );
            }
            Err(e) => {
                stats.merge_failures.fetch_add(group.len() as u64, Ordering::Relaxed);
                log::error!("transaction of {} batches failed, nothing stored: {e}", group.len());
                for w in &group {
                    let _ =
                        w.reply.send(Reply::refused(ReplyKind::Retry, storage_error(&format!("database error: {e}"))));
                }
            }
        }
        if freer.is_ok() {
            let _ = free.send(group);
        }
    }
    stats.flush_rejections(&conn);
    log::info!("writer stopped");
}

/// Commits the group's bodies to the inbox, in one transaction.
fn store_in_inbox(conn: &rusqlite::Connection, group: &[Work], received_at: i64) -> rusqlite::Result<()> {
    // Rolled back when dropped uncommitted.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    for w in group {
        runledger_ledger::inbox::put(&tx, received_at, &w.peer.to_string(), &w.body)?;
    }
    tx.commit()
}

/// Merges the oldest batches of the inbox (up to [`INBOX_CHUNK`]), those received in the same
/// second together as [`apply_combined`] does, then deletes them; keeps one the merge refuses,
/// with its error. Returns how many left the queue. An error is one of the transactions as a
/// whole: the batches stay for the next try.
fn merge_from_inbox(conn: &rusqlite::Connection, cache: &mut merge::Cache, stats: &Stats) -> rusqlite::Result<u64> {
    let entries = runledger_ledger::inbox::oldest(conn, INBOX_CHUNK)?;
    let started = Instant::now();
    let mut merged = Vec::with_capacity(entries.len());
    let mut refused = Vec::new();
    let mut run: Vec<(i64, Work)> = Vec::new();
    let mut entries = entries.into_iter().peekable();
    while let Some(e) = entries.next() {
        let peer = e.peer.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        match serde_json::from_slice::<Batch>(&e.body) {
            Ok(batch) if batch.format == runledger_record::FORMAT_VERSION => {
                run.push((e.id, Work { batch, body: Vec::new(), peer, reply: mpsc::channel().0 }))
            }
            Ok(batch) => refused.push((e.id, format!("batch format {} is not supported", batch.format))),
            Err(err) => refused.push((e.id, format!("malformed batch: {err}"))),
        }
        let same_second = entries.peek().is_some_and(|next| next.received_at == e.received_at);
        if same_second || run.is_empty() {
            continue;
        }
        let (ids, mut group): (Vec<i64>, Vec<Work>) = std::mem::take(&mut run).into_iter().unzip();
        let results = apply_combined(conn, cache, &mut group, e.received_at)?;
        for ((id, w), r) in ids.iter().zip(&group).zip(results) {
            match r {
                Ok(n) => {
                    merged.push(*id);
                    log::trace!("{}: batch from {} merged from the inbox: {n} items", w.peer, w.batch.sender);
                }
                Err(err) => {
                    stats.merge_failures.fetch_add(1, Ordering::Relaxed);
                    log::error!("{}: batch from {} in the inbox not merged, kept there: {err}", w.peer, w.batch.sender);
                    refused.push((*id, err.to_string()));
                }
            }
        }
    }
    for (id, why) in &refused {
        log::error!("inbox batch {id} cannot be merged, kept there: {why}");
    }
    runledger_ledger::inbox::settle(conn, &merged, &refused)?;
    stats.merge_seconds.observe(started.elapsed());
    Ok((merged.len() + refused.len()) as u64)
}

/// Applies the group as [`merge::apply_group`] does, one result per batch, but first as one
/// combined batch: a merge recomputes each job it touches once per batch, from all the job's
/// rows so far, so the N node records of one job ending at once (an epilog storm) cost O(N²)
/// applied one by one, and O(N²/group) combined. The result is the same: the merge is
/// idempotent and its recomputation does not depend on the order items arrive in. Batches that
/// carry a drop total (kept per sender) go on their own. When the combined batch fails (one of
/// its batches is invalid, or two repeat a record), it is rolled back and the batches are
/// applied one by one in a new transaction, each in its own savepoint, exactly as before.
fn apply_combined(
    conn: &rusqlite::Connection,
    cache: &mut merge::Cache,
    group: &mut [Work],
    received_at: runledger_record::Timestamp,
) -> rusqlite::Result<Vec<Result<usize, merge::MergeError>>> {
    let members: Vec<usize> = (0..group.len()).filter(|&i| group[i].batch.dropped.is_none()).collect();
    if members.len() < 2 {
        let batches: Vec<&Batch> = group.iter().map(|w| &w.batch).collect();
        return merge::apply_group_with(conn, cache, &batches, received_at);
    }
    let counts: Vec<usize> = members.iter().map(|&i| group[i].batch.items.len()).collect();
    let mut combined = Batch::new(group[members[0]].batch.sender.clone(), Vec::with_capacity(counts.iter().sum()));
    for &i in &members {
        combined.items.append(&mut group[i].batch.items);
    }
    let alone: Vec<usize> = (0..group.len()).filter(|i| !members.contains(i)).collect();
    let mut batches: Vec<&Batch> = vec![&combined];
    batches.extend(alone.iter().map(|&i| &group[i].batch));
    let results = merge::apply_group_with(conn, cache, &batches, received_at);
    drop(batches);
    // The items go back to their batches: the log names them, and a failure retries them.
    let mut items = std::mem::take(&mut combined.items).into_iter();
    for (&i, &n) in members.iter().zip(&counts) {
        group[i].batch.items = items.by_ref().take(n).collect();
    }
    let mut results = results?.into_iter();
    let together = results.next().expect("one result per batch");
    let mut out: Vec<Option<Result<usize, merge::MergeError>>> = (0..group.len()).map(|_| None).collect();
    for (&i, r) in alone.iter().zip(results) {
        out[i] = Some(r);
    }
    match together {
        Ok(_) => {
            for (&i, &n) in members.iter().zip(&counts) {
                out[i] = Some(Ok(n));
            }
        }
        Err(e) => {
            log::debug!("{} batches did not merge together ({e}); merging them one by one", members.len());
            let batches: Vec<&Batch> = members.iter().map(|&i| &group[i].batch).collect();
            for (&i, r) in members.iter().zip(merge::apply_group_with(conn, cache, &batches, received_at)?) {
                out[i] = Some(r);
            }
        }
    }
    Ok(out.into_iter().map(|r| r.expect("every batch has its result")).collect())
}

/// The text of a refusal for a storage error: never permanent (the kind says so), and worded so
/// that an epilog of the last release, which classifies by wording, does not read SQLite's
/// "database disk image is malformed" as a bad batch and set every queued batch aside. The
/// collector's own log keeps SQLite's words.
fn storage_error(e: &str) -> String {
    format!("not stored: {}", e.replace("malformed", "damaged"))
}

#[cfg(test)]
mod tests {
    use super::{storage_error, Pending};
    use crate::daemon::auth::Reject;
    use crate::daemon::slots::Slots;
    use runledger_record::wire::ReplyKind;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn storage_errors_are_never_permanent_in_kind_or_in_words() {
        let text = storage_error("database error: database disk image is malformed");
        assert!(!text.contains("malformed"), "{text}");
        assert!(text.starts_with("not stored: database error: database disk image is damaged"), "{text}");
        // What the last release's epilog read as permanent: a text starting "malformed batch".
        assert!(!text.trim_start().to_ascii_lowercase().starts_with("malformed"));
        assert_eq!(Reject::Malformed("malformed batch: x".into()).kind(), ReplyKind::Permanent);
        assert_eq!(Reject::TooLarge { len: 2, max: 1 }.kind(), ReplyKind::Permanent);
        assert_eq!(Reject::TooManyConnections(4).kind(), ReplyKind::Busy);
        assert_eq!(Reject::Unsupported("batch format 2".into()).kind(), ReplyKind::Retry);
        assert_eq!(Reject::Timeout.kind(), ReplyKind::Retry);
    }

    #[test]
    fn a_newcomer_evicts_the_oldest_waiting_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let served: Vec<TcpStream> = (0..4).map(|_| l.accept().unwrap().0).collect();
        let pending = Pending::new(2);
        let a = pending.admit(&served[0]);
        let b = pending.admit(&served[1]);
        assert!(!a.evicted() && !b.evicted());
        let c = pending.admit(&served[2]);
        assert!(a.evicted(), "the oldest made room");
        assert!(!b.evicted() && !c.evicted());
        assert_eq!(pending.len(), 2);
        // The evicted connection is closed: its peer reads EOF.
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &clients[0], &mut buf).unwrap(), 0);
        drop(b);
        assert_eq!(pending.len(), 1, "an authenticated (or finished) connection leaves the queue");
        drop(a);
        assert_eq!(pending.len(), 1, "the evicted one was already gone");
        drop(c);
        assert_eq!(pending.len(), 0);

        // A connection whose request is waiting to be read is passed over for an idle one.
        let busy = pending.admit(&served[3]);
        std::io::Write::write_all(&mut clients[3], b"credential").unwrap();
        while !crate::sys::bytes_waiting(&served[3]) {
            std::thread::yield_now();
        }
        let idle = pending.admit(&served[1]);
        let _newcomer = pending.admit(&served[2]);
        assert!(idle.evicted() && !busy.evicted(), "the idle one made room, though the busy one is older");
    }

    #[test]
    fn a_group_merges_as_one_and_falls_back_to_one_by_one() {
        use super::{apply_combined, Work};
        let dir = tempfile::tempdir().unwrap();
        let conn = runledger_ledger::db::open_rw(&dir.path().join("l.db")).unwrap();
        let mut cache = runledger_ledger::merge::Cache::new();
        let mut s = runledger_synth::Sample::new("c", 42, runledger_record::now() - 600);
        s.nnodes = 3;
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let work =
            |b: runledger_record::Batch| Work { body: Vec::new(), batch: b, peer, reply: std::sync::mpsc::channel().0 };
        let nodes = |conn: &rusqlite::Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM job_nodes", [], |r| r.get(0)).unwrap()
        };
        // Three node records of one job: merged together, each told its own item count.
        let mut group: Vec<Work> = (0..3).map(|i| work(s.batch(i))).collect();
        let r = apply_combined(&conn, &mut cache, &mut group, runledger_record::now()).unwrap();
        let want: Vec<usize> = (0..3).map(|i| s.batch(i).items.len()).collect();
        assert_eq!(r.iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(), want);
        assert_eq!(group.iter().map(|w| w.batch.items.len()).collect::<Vec<_>>(), want, "items given back");
        assert_eq!(nodes(&conn), 3);
        // A repeated delivery next to a new job: together they repeat a record, so each goes on
        // its own; both are stored (the repeat changes nothing), once.
        let mut t = s.clone();
        t.job_id = 43;
        t.nnodes = 1;
        let mut group = vec![work(s.batch(0)), work(s.batch(0)), work(t.batch(0))];
        let r = apply_combined(&conn, &mut cache, &mut group, runledger_record::now()).unwrap();
        assert!(r.iter().all(Result::is_ok), "{r:?}");
        assert_eq!(nodes(&conn), 4);
    }

    /// A burst stored in the inbox and merged from it later leaves the ledger a direct merge
    /// leaves, the time each batch was received included; the inbox is then empty.
    #[test]
    fn a_burst_merged_from_the_inbox_leaves_what_a_direct_merge_leaves() {
        use super::{apply_combined, merge_from_inbox, store_in_inbox, Work, INBOX_CHUNK};
        let dir = tempfile::tempdir().unwrap();
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let work = |b: runledger_record::Batch| Work {
            body: b.to_json(),
            batch: b,
            peer,
            reply: std::sync::mpsc::channel().0,
        };
        // More batches than a chunk, a few jobs of several nodes, received over two seconds.
        let t0 = runledger_record::now() - 3600;
        let mut groups: Vec<(i64, Vec<Work>)> = Vec::new();
        for (second, jobs) in [(t0, 0..120u32), (t0 + 1, 120..140)] {
            let mut g = Vec::new();
            for j in jobs {
                let mut s = runledger_synth::Sample::new("c", 100 + j, t0 - 600 + i64::from(j));
                s.nnodes = 1 + j % 4;
                g.extend((0..s.nnodes).map(|n| work(s.batch(n))));
            }
            groups.push((second, g));
        }
        assert!(groups[0].1.len() > INBOX_CHUNK, "the first second alone takes two chunks");
        let dump = |conn: &rusqlite::Connection| -> Vec<String> {
            let mut out = Vec::new();
            for t in ["jobs", "job_nodes", "steps", "rollup", "rollup_cells"] {
                let mut st = conn.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2, 3")).unwrap();
                let n = st.column_count();
                let rows = st
                    .query_map([], |r| {
                        Ok((0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
                    })
                    .unwrap();
                out.extend(rows.map(|r| format!("{t}: {}", r.unwrap())));
            }
            out
        };

        let direct = runledger_ledger::db::open_rw(&dir.path().join("direct.db")).unwrap();
        let mut cache = runledger_ledger::merge::Cache::new();
        for (second, g) in &mut groups {
            let r = apply_combined(&direct, &mut cache, g, *second).unwrap();
            assert!(r.iter().all(Result::is_ok), "{r:?}");
        }

        let later = runledger_ledger::db::open_rw(&dir.path().join("inbox.db")).unwrap();
        for (second, g) in &groups {
            store_in_inbox(&later, g, *second).unwrap();
        }
        let stored: u64 = groups.iter().map(|(_, g)| g.len() as u64).sum();
        assert_eq!(runledger_ledger::inbox::waiting(&later).unwrap(), stored);
        assert_eq!(
            later.query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, i64>(0)).unwrap(),
            0,
            "not merged yet"
        );
        let (mut cache, stats) = (runledger_ledger::merge::Cache::new(), crate::daemon::stats::Stats::default());
        let mut merged = 0;
        while merged < stored {
            let n = merge_from_inbox(&later, &mut cache, &stats).unwrap();
            assert!(n > 0 && n <= INBOX_CHUNK as u64);
            merged += n;
        }
        assert_eq!(runledger_ledger::inbox::waiting(&later).unwrap(), 0);
        assert!(runledger_ledger::inbox::refused(&later).unwrap().is_empty());
        assert_eq!(merge_from_inbox(&later, &mut cache, &stats).unwrap(), 0, "nothing left");
        let (a, b) = (dump(&direct), dump(&later));
        assert!(a.len() > 200, "{}", a.len());
        assert_eq!(a, b);
    }

    #[test]
    fn a_queue_place_is_waited_for_until_given_back_or_the_deadline() {
        use crate::daemon::slots::Queue;
        use std::time::{Duration, Instant};
        let q = Queue::new(1);
        let held = q.take_until(Instant::now()).expect("a free place needs no wait");
        assert!(q.take_until(Instant::now()).is_none(), "full, and the deadline has passed");
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || {
            tx.send(()).unwrap();
            q2.take_until(Instant::now() + Duration::from_secs(3600)).is_some()
        });
        rx.recv().unwrap();
        drop(held);
        assert!(waiter.join().unwrap(), "the waiter got the place given back");
        assert!(q.take_until(Instant::now()).is_some(), "and gave it back in turn");
    }

    #[test]
    fn slots_are_limited_and_given_back_even_by_a_panicking_thread() {
        let slots = Slots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none(), "a third connection is over the limit");
        drop(a);
        let c = slots.take().expect("a place given back is free again");
        let panicked = std::thread::spawn(move || {
            let _slot = b;
            panic!("a bug in the connection's thread");
        })
        .join();
        assert!(panicked.is_err());
        assert!(slots.take().is_some(), "the panicking thread's place came back");
        drop(c);
    }
}
