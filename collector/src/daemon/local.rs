//! Who sees what: the ledger file is private, and users ask the daemon about their own jobs.
//!
//! The database belongs to the collector's user with mode 0600 ([`protect_database`]); root and
//! that user read it directly. Everyone else runs the same `collector query …` / `collector
//! export …` command line, which [`route`] sends over the daemon's local socket ([`ask`]). The
//! daemon learns the caller's uid from the kernel (`SO_PEERCRED`; nothing the client says about
//! itself is believed), then runs the command in-process ([`answer`]):
//!
//! - root, the collector's user, `collector.slurm_user` (slurmctld's user, which runs
//!   `runledger-mail` as its MailProg and already reads every job's script and environment in
//!   slurmctld's state) and members of `collector.admin_group` see every job;
//! - anyone else sees only their own jobs, as with sacct's `PrivateData=jobs`: the job filters of
//!   every query and export are narrowed to `-u <caller>` (asking for another user's jobs is a
//!   clear error), and `query job ID` of someone else's job answers "not recorded", so neither the
//!   environment, argv nor existence of other users' jobs leaks;
//! - `--database` is refused (the daemon would otherwise open any file it can read for anyone).
//!
//! One connection carries one command: a request frame `{"args": [...]}` (the argv after
//! `collector`), then the reply: a header frame, standard output, and the contents of each output
//! file (`--plot`, `export -o`), which the daemon renders into a private temporary directory and
//! the client writes where it was asked, as the calling user.
//!
//! A user's query must never take the daemon down or hold up ingest: one query can ask for
//! every pair of thousands of modules. So each command is answered by a child process of its own
//! ([`worker_main`], the same binary) whose address space, CPU time and output are capped
//! (`collector.query_max_memory_mb`, `query_timeout_ms`, `query_max_output_bytes`) and which is
//! killed at its wall-clock deadline; the daemon keeps only the connection. Past a bound the user
//! gets a clear refusal saying which bound and how to narrow the query. The request itself must
//! arrive within `read_timeout_ms` (one deadline for all reads, as on TCP), and one uid may have
//! at most `query_max_per_user` connections at once, so a user can hold neither the socket's
//! slots nor the machine.

use crate::cli::{self, Cli, Command, Failure, FailureKind, Owner, QueryCommand, Scope};
use crate::questions::query::jobfilter::JobFilterArgs;
use crate::sys;
use clap::Parser;
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

/// Largest request: an argv.
const MAX_REQUEST: usize = 64 * 1024;
/// Largest reply frame the client accepts (an export of many jobs).
const MAX_REPLY_FRAME: usize = 1 << 30;
/// How long the client waits for an answer (a query over a big ledger, an export).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize, Debug)]
struct Request {
    args: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct ReplyHeader {
    /// The exit code `collector` would have had, run directly.
    code: i32,
    /// Its standard error (already formatted).
    stderr: String,
    /// How many output-file frames follow standard output; an empty frame is a file the command
    /// did not write.
    files: usize,
}

/// Where a ledger command reads from.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Open the database file (root, the collector's user, or `--database`).
    Direct(PathBuf),
    /// Ask the daemon over its socket.
    Socket(PathBuf),
}

/// Decides how this process reads the ledger: directly when it may open the file, else through
/// the daemon's socket.
pub fn route(config: &Option<PathBuf>, flag: Option<PathBuf>) -> Result<Route, Failure> {
    if let Some(db) = flag {
        return Ok(Route::Direct(db));
    }
    let cfg = cli::load_config(config)?.collector;
    if users::euid() == 0 {
        return Ok(Route::Direct(cfg.database));
    }
    match std::fs::File::open(&cfg.database) {
        Ok(_) => Ok(Route::Direct(cfg.database)),
        Err(e) if cfg.socket.exists() => {
            log::debug!("{}: {e}; asking the collector through {}", cfg.database.display(), cfg.socket.display());
            Ok(Route::Socket(cfg.socket))
        }
        Err(e) => Err(Failure::new(format!(
            "cannot read the ledger {} ({e}), and the collector's socket {} does not exist: run this on the \
             collector's host while `collector serve` runs",
            cfg.database.display(),
            cfg.socket.display()
        ))),
    }
}

fn plot(p: &mut Option<crate::questions::plot::PlotTarget>) -> Option<&mut PathBuf> {
    p.as_mut().map(|t| &mut t.path)
}

/// The output files a command writes, in a fixed order the client and the daemon agree on.
fn output_files(command: &mut Command) -> Vec<&mut PathBuf> {
    let one = match command {
        Command::Export(a) => a.output.as_mut().filter(|p| p.as_path() != Path::new("-")),
        Command::Report(a) => Some(a.page()),
        Command::Query(q) => match &mut q.what {
            QueryCommand::Jobs(_) | QueryCommand::Job(_) => None,
            QueryCommand::Errors(a) => plot(&mut a.plot),
            QueryCommand::Efficiency(a) => plot(&mut a.plot),
            QueryCommand::Summary(a) => plot(&mut a.plot),
            QueryCommand::Modules(a) => plot(&mut a.plot),
            QueryCommand::WhoUsed(_) | QueryCommand::CoUsage(_) | QueryCommand::Events(_) => None,
            QueryCommand::Throughput(a) | QueryCommand::Utilization(a) => plot(&mut a.plot),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) => None,
    };
    one.into_iter().collect()
}

/// The job filters of a command (every ledger command has them except `query job`).
fn filters(command: &mut Command) -> Option<&mut JobFilterArgs> {
    match command {
        Command::Export(a) => Some(&mut a.filter),
        Command::Report(a) => Some(&mut a.filter),
        Command::Query(q) => match &mut q.what {
            QueryCommand::Jobs(a) => Some(&mut a.filter),
            QueryCommand::Job(_) => None,
            QueryCommand::Errors(a) => Some(&mut a.filter),
            QueryCommand::Efficiency(a) => Some(&mut a.filter),
            QueryCommand::Summary(a) => Some(&mut a.filter),
            QueryCommand::Modules(a) => Some(&mut a.filter),
            QueryCommand::WhoUsed(a) => Some(&mut a.filter),
            QueryCommand::CoUsage(a) => Some(&mut a.filter),
            QueryCommand::Events(a) => Some(&mut a.filter),
            QueryCommand::Throughput(a) | QueryCommand::Utilization(a) => Some(&mut a.filter),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) => None,
    }
}

/// Narrows a command to the caller's own jobs: their uid, on the clusters whose uids are this
/// host's. `-u` may name only the caller (by name or uid) and is then dropped, not matched: the
/// filter reads an all-digit name as a uid, so a user called "1002" would see uid 1002's jobs.
///
/// A manager keeps `-u` (any user: the answer is narrowed to their accounts anyway) and may name
/// only accounts they manage with `-A`; their view is their own jobs and those accounts' jobs.
fn restrict(command: &mut Command, me: &Owner) -> Result<(), Failure> {
    if let Some(f) = filters(command) {
        let uid = me.uid.to_string();
        if let Some(managed) = me.managed() {
            let foreign: Vec<&String> =
                f.account.iter().filter(|a| !runledger_record::access::account_matches(&managed.accounts, a)).collect();
            if !foreign.is_empty() {
                return Err(Failure::usage(format!(
                    "you manage the accounts {}, not -A {}; ask an admin of the ledger",
                    managed.accounts.join(","),
                    foreign.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
                )));
            }
            f.managed = Some(managed);
        } else if !f.user.is_empty() && !f.user.iter().any(|u| *u == me.name || *u == uid) {
            return Err(Failure::usage(format!(
                "you may see only your own jobs ({}), not those of -u {}; ask an admin of the ledger",
                me.name,
                f.user.join(",")
            )));
        }
        if f.managed.is_none() {
            f.user.clear();
            f.owner_uid = Some(me.uid);
        }
        if !me.clusters.is_empty() {
            if f.cluster.is_empty() {
                f.cluster = me.clusters.clone();
            } else {
                let asked = f.cluster.join(",");
                f.cluster.retain(|c| me.clusters.contains(c));
                if f.cluster.is_empty() {
                    return Err(Failure::usage(format!(
                        "your account here is the one of cluster {}, not of -M {asked}; ask an admin of the ledger",
                        me.clusters.join(",")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Who a caller is to the ledger. `clusters`: `[collector] user_clusters`; `access`: the
/// account managers, whose groups are looked up now (a membership change counts at once).
pub fn scope_of(
    uid: u32,
    admin_group: Option<&str>,
    clusters: &[String],
    access: &runledger_record::access::AccessConfig,
) -> Result<Scope, String> {
    if uid == 0 || uid == users::euid() {
        return Ok(Scope::All);
    }
    let user = users::user_by_uid(uid).ok_or_else(|| format!("uid {uid} has no passwd entry"))?;
    let groups = users::groups_of(&user.name, user.gid);
    if let Some(gid) = admin_group.filter(|g| !g.is_empty()).and_then(users::group_id) {
        if groups.contains(&gid) {
            return Ok(Scope::All);
        }
    }
    let manages = access.managed_by(&user.name, |g| users::group_id(g).is_some_and(|gid| groups.contains(&gid)));
    Ok(Scope::Own(Owner { uid, name: user.name, clusters: clusters.to_vec(), manages }))
}

/// What the daemon answers to one command line: exit code, stdout, stderr, output files.
pub struct Answer {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub files: Vec<Vec<u8>>,
}

impl Answer {
    fn failed(f: &Failure) -> Answer {
        let (code, stderr) = f.report();
        Answer { code, stdout: Vec::new(), stderr, files: Vec::new() }
    }
}

/// Runs one client's command line against `db` within `scope`. Never exits the process.
pub fn answer(args: &[String], db: &Path, scope: &Scope) -> Answer {
    let argv = std::iter::once("collector".to_string()).chain(args.iter().cloned());
    let mut parsed = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            return Answer { code: e.exit_code(), stdout: Vec::new(), stderr: e.render().to_string(), files: vec![] }
        }
    };
    let database_flag = match &parsed.command {
        Command::Query(q) => q.database.is_some(),
        Command::Export(a) => a.database.is_some(),
        Command::Report(a) => a.database.is_some(),
        _ => {
            return Answer::failed(&Failure::usage(
                "only `collector query`, `collector export` and `collector report` are answered here",
            ))
        }
    };
    if database_flag {
        return Answer::failed(&Failure::usage(
            "--database is not accepted through the collector's socket (it answers from its own ledger)",
        ));
    }
    if let Command::Export(a) = &mut parsed.command {
        a.no_progress = true; // the daemon's terminal, if any, is not the caller's
    }
    if let Scope::Own(me) = scope {
        if let Err(f) = restrict(&mut parsed.command, me) {
            return Answer::failed(&f);
        }
    }
    // Output files are rendered in a directory only the daemon can read, then sent back. Its
    // name is unpredictable and it is created exclusively, mode 0700 (mkdtemp), so no local user
    // can make the daemon write through a link or read a chart in the making; under systemd
    // (PrivateTmp=yes) it is in the service's own /tmp. Removed when `scratch` drops.
    let scratch = match scratch_dir() {
        Ok(d) => d,
        Err(e) => {
            return Answer::failed(&Failure::new(format!(
                "cannot create a scratch directory in {}: {e}",
                std::env::temp_dir().display()
            )))
        }
    };
    let mut targets = Vec::new();
    for (i, p) in output_files(&mut parsed.command).into_iter().enumerate() {
        let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
        *p = scratch.path().join(format!("out{i}{ext}"));
        targets.push(p.clone());
    }
    let mut stdout = Vec::new();
    let result = cli::run_ledger(parsed.command, db, scope, &mut stdout);
    let files = targets.iter().map(|p| std::fs::read(p).unwrap_or_default()).collect();
    drop(scratch);
    match result {
        Ok(()) => Answer { code: 0, stdout, stderr: String::new(), files },
        Err(f) => Answer { stdout, files, ..Answer::failed(&f) },
    }
}

/// A new private scratch directory (see [`answer`]).
fn scratch_dir() -> io::Result<tempfile::TempDir> {
    // 0700 whatever the umask (mkdir's mode is masked by it, never widened).
    tempfile::Builder::new().prefix("runledger-query-").permissions(std::fs::Permissions::from_mode(0o700)).tempdir()
}

/// Sends this process's command line to the daemon and relays the answer.
pub fn ask(socket: &Path, command: Command, out: &mut dyn Write) -> Result<(), Failure> {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    ask_with(socket, &args, command, out)
}

/// Sends `args` (the argv after `collector`, parsed as `command`) to the daemon at `socket`.
pub fn ask_with(socket: &Path, args: &[String], mut command: Command, out: &mut dyn Write) -> Result<(), Failure> {
    let unreachable = |e: io::Error| {
        Failure::new(format!(
            "cannot ask the collector through {}: {e} (is `collector serve` running?)",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let body = serde_json::to_vec(&Request { args: args.to_vec() }).map_err(|e| Failure::new(e.to_string()))?;
    // A refusal (busy, too many queries of this user) is sent before the request is read, and
    // the connection closed: a write that fails is reported only if no answer can be read.
    let sent = wire::write_frame(&mut stream, &body);
    let frame = |s: &mut UnixStream| {
        wire::read_frame(s, MAX_REPLY_FRAME).map_err(|e| Failure::new(format!("reading the collector's answer: {e}")))
    };
    let header = match (frame(&mut stream), sent) {
        (Ok(h), _) => h,
        (Err(_), Err(e)) => return Err(unreachable(e)),
        (Err(f), Ok(())) => return Err(f),
    };
    let header: ReplyHeader = serde_json::from_slice(&header)
        .map_err(|e| Failure::new(format!("the collector's answer is not understood: {e}")))?;
    let stdout = frame(&mut stream)?;
    let mut files = Vec::with_capacity(header.files);
    for _ in 0..header.files {
        files.push(frame(&mut stream)?);
    }
    cli::write_out(out, &stdout)?;
    // The daemon wrote into its own scratch files; they land where the caller asked, as the caller.
    for (path, bytes) in output_files(&mut command).into_iter().zip(files) {
        if !bytes.is_empty() {
            std::fs::write(&*path, bytes).map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    if header.code != 0 {
        return Err(Failure { msg: header.stderr, kind: FailureKind::Relayed(header.code) });
    }
    if !header.stderr.is_empty() {
        eprint!("{}", header.stderr);
    }
    Ok(())
}

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
    let slots = crate::daemon::serve::Slots::new(opts.max_connections);
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

#[cfg(test)]
mod manager_tests;
#[cfg(test)]
mod tests;
