//! The daemon's side of the local socket ([`crate::daemon::local`] says who sees what and how a
//! user's `collector` asks): [`spawn`] listens on `collector.socket`, learns each caller's uid
//! from the kernel, holds at most `query_max_per_user` connections per uid and
//! `max_connections` in all, and answers each command in a child process of its own
//! ([`worker_main`], the same binary) whose memory, CPU time, output and wall-clock time are
//! capped ([`Limits`]).

use crate::daemon::local::{answer, scope_of, Answer, ReplyHeader, Request, CLIENT_TIMEOUT, MAX_REQUEST};
use crate::failure::Failure;
use crate::questions::scope::{Owner, Scope};
use crate::sys;
use runledger_record::{users, wire};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Makes new database files private (umask 077) and an existing ledger's files mode 0600.
pub fn protect_database(db: &Path) {
    sys::set_umask(0o077);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => log::warn!("{} was mode {mode:o}: now 0600 (users query through the socket)", p.display()),
                Err(e) => log::error!("{} is mode {mode:o} and cannot be made 0600: {e}", p.display()),
            }
        }
    }
}

/// The local socket's settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    pub database: PathBuf,
    pub admin_group: Option<String>,
    /// Clusters whose uids are this host's (`[collector] user_clusters`; empty: all).
    pub user_clusters: Vec<String>,
    /// `[access]`: who manages which accounts.
    pub access: runledger_record::access::AccessConfig,
    /// `[collector] slurm_user`: slurmctld's user, which runs `runledger-mail` as its MailProg,
    /// sees every job (it already reads every job's script and environment in slurmctld's state).
    pub slurm_user: String,
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub limits: Limits,
    /// The executable that answers each query ([`worker_main`]): `/proc/self/exe`, this very
    /// binary even after a package upgrade replaced the file.
    pub program: PathBuf,
}

/// What one user query may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall clock, from the request to the answer.
    pub timeout: Duration,
    /// Address space of the process answering.
    pub max_memory_bytes: u64,
    /// Connections one uid may have open at once.
    pub per_user: usize,
    /// The answer's size (output and files together).
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let c = runledger_record::config::CollectorConfig::default();
        Limits {
            timeout: Duration::from_millis(c.query_timeout_ms),
            max_memory_bytes: c.query_max_memory_mb << 20,
            per_user: c.query_max_per_user,
            max_output_bytes: c.query_max_output_bytes,
        }
    }
}

/// The first argument that makes `collector` a query worker (not a user-facing command).
pub const WORKER_ARG: &str = "--answer-local-query";

/// What the daemon hands its query worker on standard input.
#[derive(Serialize, Deserialize, Debug)]
struct WorkerRequest {
    args: Vec<String>,
    database: PathBuf,
    /// `None`: every job; else this user's own (by uid and cluster, never by name).
    own: Option<Owner>,
    max_memory_bytes: u64,
    max_output_bytes: u64,
    cpu_seconds: u64,
}

/// `collector --answer-local-query`: caps itself, answers the request on standard input, and
/// writes the reply frames (as sent to the client) to standard output. Run by the daemon only;
/// anyone else running it gets no more than their own rights.
pub fn worker_main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = io::stdin().lock().take(2 * MAX_REQUEST as u64).read_to_end(&mut input) {
        eprintln!("collector: query worker: cannot read the request: {e}");
        return 70;
    }
    let req: WorkerRequest = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("collector: query worker: bad request: {e}");
            return 70;
        }
    };
    // Room for the frames' headers on top of the answer itself.
    if let Err(e) = sys::limit_self(req.max_memory_bytes, req.max_output_bytes + 4096, req.cpu_seconds) {
        eprintln!("collector: query worker: cannot set its limits: {e}");
        return 70;
    }
    let scope = match req.own {
        Some(user) => Scope::Own(user),
        None => Scope::All,
    };
    let a = answer(&req.args, &req.database, &scope);
    let mut out = io::stdout().lock();
    match write_answer(&mut out, &a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("collector: query worker: cannot write the answer: {e}");
            70
        }
    }
}

/// Why a query was not answered, told to the user.
fn over(what: &str, key: &str) -> Failure {
    Failure::new(format!(
        "your query was stopped: it {what} (collector.{key}); narrow it (-S/-E, -j, -A, --module …) or ask an \
         admin of the ledger"
    ))
}

/// Answers one command in a capped child process; returns a file holding the reply frames.
fn answer_in_worker(args: &[String], scope: &Scope, opts: &Options) -> Result<std::fs::File, Failure> {
    let lim = &opts.limits;
    // Unnamed files, gone when closed: the answer never sits where anyone could open it.
    let scratch = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(std::env::temp_dir())
            .map_err(|e| {
                Failure::new(format!("cannot create a scratch file in {}: {e}", std::env::temp_dir().display()))
            })
    };
    let (mut out, mut err) = (scratch()?, scratch()?);
    let request = WorkerRequest {
        args: args.to_vec(),
        database: opts.database.clone(),
        own: match scope {
            Scope::Own(u) => Some(u.clone()),
            Scope::All => None,
        },
        max_memory_bytes: lim.max_memory_bytes,
        max_output_bytes: lim.max_output_bytes,
        cpu_seconds: lim.timeout.as_secs().max(1),
    };
    let clone = |f: &std::fs::File| f.try_clone().map_err(|e| Failure::new(format!("scratch file: {e}")));
    let mut child = Process::new(&opts.program)
        .arg(WORKER_ARG)
        .stdin(Stdio::piped())
        .stdout(clone(&out)?)
        .stderr(clone(&err)?)
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start a query process: {e}")))?;
    let body = serde_json::to_vec(&request).map_err(|e| Failure::new(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body);
    }
    let deadline = Instant::now() + lim.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(Failure::new(format!("query process: {e}"))),
        }
    };
    let took = format!("took longer than {} s", lim.timeout.as_secs_f64());
    let Some(status) = status else { return Err(over(&took, "query_timeout_ms")) };
    let mut why = String::new();
    let _ = err.rewind();
    let _ = (&mut err).take(4096).read_to_string(&mut why);
    let memory = format!("needed more than {} MiB of memory", lim.max_memory_bytes >> 20);
    let size = format!("answered more than {} bytes", lim.max_output_bytes);
    match status.signal() {
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) if why.is_empty() => return Err(over(&took, "query_timeout_ms")),
        Some(libc::SIGXFSZ) => return Err(over(&size, "query_max_output_bytes")),
        Some(_) if why.contains("memory allocation") => return Err(over(&memory, "query_max_memory_mb")),
        Some(sig) => return Err(Failure::new(format!("the query process died (signal {sig}): {}", why.trim()))),
        None if status.success() => {}
        None if why.contains("memory allocation") || why.contains("out of memory") => {
            return Err(over(&memory, "query_max_memory_mb"))
        }
        None => return Err(Failure::new(format!("the query process failed ({status}): {}", why.trim()))),
    }
    let len = out.seek(io::SeekFrom::End(0)).map_err(|e| Failure::new(e.to_string()))?;
    if len > lim.max_output_bytes + 4096 {
        return Err(over(&size, "query_max_output_bytes"));
    }
    out.rewind().map_err(|e| Failure::new(e.to_string()))?;
    Ok(out)
}

/// Connections open per uid on the local socket, against `per_user`.
struct Users {
    open: Mutex<HashMap<u32, usize>>,
    max: usize,
}

/// One connection of a uid, given back when dropped.
struct Turn(Arc<Users>, u32);

impl Users {
    fn take(self: &Arc<Self>, uid: u32) -> Option<Turn> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(uid).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Turn(self.clone(), uid))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Reads from the socket under one deadline for all reads together (a byte a second does not
/// keep a connection alive).
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request not received in time"));
        }
        // A zero timeout means "block forever" to setsockopt: never pass one.
        self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match (&mut &*self.stream).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "request not received in time"))
            }
            r => r,
        }
    }
}

/// Binds the socket (mode 0666: anyone may ask, the kernel says who asks) and serves it on its
/// own threads.
pub fn spawn(opts: Options) -> Result<(), String> {
    if let Some(dir) = opts.socket.parent() {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    // A socket left by a previous run; anything else at that path is not ours to remove.
    if let Ok(meta) = std::fs::symlink_metadata(&opts.socket) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", opts.socket.display()));
        }
        if UnixStream::connect(&opts.socket).is_ok() {
            return Err(format!("{} is in use by another collector", opts.socket.display()));
        }
        let _ = std::fs::remove_file(&opts.socket);
    }
    let listener =
        UnixListener::bind(&opts.socket).map_err(|e| format!("cannot bind {}: {e}", opts.socket.display()))?;
    std::fs::set_permissions(&opts.socket, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("cannot chmod {}: {e}", opts.socket.display()))?;
    log::info!(
        "answering queries on {}: every job for root, {} and the group {}; their own jobs for other users",
        opts.socket.display(),
        users::user_by_uid(users::euid()).map(|u| u.name).unwrap_or_else(|| format!("uid {}", users::euid())),
        opts.admin_group.as_deref().unwrap_or("(none)")
    );
    let opts = Arc::new(opts);
    thread::Builder::new()
        .name("local socket".into())
        .spawn(move || accept_loop(listener, opts))
        .map_err(|e| format!("cannot start the local socket thread: {e}"))?;
    Ok(())
}

fn accept_loop(listener: UnixListener, opts: Arc<Options>) {
    let slots = crate::daemon::slots::Slots::new(opts.max_connections);
    let users = Arc::new(Users { open: Mutex::new(HashMap::new()), max: opts.limits.per_user.max(1) });
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::error!("local socket: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let refuse = |mut s: UnixStream, why: String| {
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = send(&mut s, &Answer::failed(&Failure::new(why)));
        };
        let cred = match sys::peer_cred(&stream) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("local socket: no peer credentials: {e}");
                continue;
            }
        };
        let Some(turn) = users.take(cred.uid) else {
            log::warn!("local socket: uid {} pid {}: refused: over {} queries at once", cred.uid, cred.pid, users.max);
            refuse(
                stream,
                format!(
                    "you already have {} queries running (collector.query_max_per_user); wait for them to finish",
                    users.max
                ),
            );
            continue;
        };
        let Some(slot) = slots.take() else {
            refuse(stream, "the collector is busy answering other queries; try again".into());
            continue;
        };
        let opts = opts.clone();
        let spawned = thread::Builder::new().name("local query".into()).spawn(move || {
            let _slot = slot;
            let _turn = turn;
            serve_one(stream, cred, &opts);
        });
        if let Err(e) = spawned {
            log::error!("local socket: cannot start a thread: {e}");
        }
    }
}

fn serve_one(mut stream: UnixStream, cred: sys::PeerCred, opts: &Options) {
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let mut reader = DeadlineReader { stream: &stream, deadline: Instant::now() + opts.read_timeout };
    let request = match wire::read_frame(&mut reader, MAX_REQUEST) {
        Ok(b) => serde_json::from_slice::<Request>(&b).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let scope = match users::user_by_name(&opts.slurm_user) {
        Some(u) if u.uid == cred.uid && !opts.slurm_user.is_empty() => Ok(Scope::All),
        _ => scope_of(cred.uid, opts.admin_group.as_deref(), &opts.user_clusters, &opts.access),
    };
    if let Ok(r) = &request {
        crate::daemon::metrics::count_query(&r.args);
    }
    let answer = match (request, scope) {
        (Err(e), _) => {
            log::warn!("local socket: uid {} pid {}: bad request: {e}", cred.uid, cred.pid);
            Answer::failed(&Failure::new(format!("bad request: {e}")))
        }
        (_, Err(e)) => {
            log::warn!("local socket: pid {}: refused: {e}", cred.pid);
            Answer::failed(&Failure::new(e))
        }
        (Ok(req), Ok(scope)) => {
            let started = std::time::Instant::now();
            match answer_in_worker(&req.args, &scope, opts) {
                Ok(mut reply) => {
                    log::debug!(
                        "local socket: uid {} ({scope:?}): {:?} answered in {} ms",
                        cred.uid,
                        req.args,
                        started.elapsed().as_millis()
                    );
                    if let Err(e) = io::copy(&mut reply, &mut stream) {
                        log::debug!("local socket: uid {}: reply not delivered: {e}", cred.uid);
                    }
                    return;
                }
                Err(f) => {
                    log::warn!("local socket: uid {} pid {}: {:?}: {}", cred.uid, cred.pid, req.args, f.msg);
                    Answer::failed(&f)
                }
            }
        }
    };
    if let Err(e) = send(&mut stream, &answer) {
        log::debug!("local socket: uid {}: reply not delivered: {e}", cred.uid);
    }
}

fn send(stream: &mut UnixStream, a: &Answer) -> io::Result<()> {
    write_answer(stream, a)
}

/// The reply frames: header, standard output, one frame per output file.
fn write_answer(out: &mut dyn Write, a: &Answer) -> io::Result<()> {
    let header = ReplyHeader { code: a.code, stderr: a.stderr.clone(), files: a.files.len() };
    let header = serde_json::to_vec(&header).map_err(io::Error::other)?;
    let mut w = io::BufWriter::new(out);
    wire::write_frame(&mut w, &header)?;
    wire::write_frame(&mut w, &a.stdout)?;
    for f in &a.files {
        wire::write_frame(&mut w, f)?;
    }
    w.flush()
}
