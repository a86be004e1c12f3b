//! Who sees what: the ledger file is private, and users ask the daemon about their own jobs.
//!
//! The database belongs to the collector's user with mode 0600 ([`protect_database`]); root and
//! that user read it directly. Everyone else runs the same `collector query …` / `collector
//! export …` command line, which [`route`] sends over the daemon's local socket ([`ask`]). The
//! daemon learns the caller's uid from the kernel (`SO_PEERCRED`; nothing the client says about
//! itself is believed), then runs the command in-process ([`answer`]):
//!
//! - root, the collector's user and members of `collector.admin_group` see every job;
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

use crate::cli::{self, Cli, Command, Failure, FailureKind, Owner, QueryCommand, Scope};
use crate::query::jobfilter::JobFilterArgs;
use crate::sys;
use clap::Parser;
use runledger_record::wire;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

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
    if sys::euid() == 0 {
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

fn plot(p: &mut Option<crate::plot::PlotTarget>) -> Option<&mut PathBuf> {
    p.as_mut().map(|t| &mut t.path)
}

/// The output files a command writes, in a fixed order the client and the daemon agree on.
fn output_files(command: &mut Command) -> Vec<&mut PathBuf> {
    let one = match command {
        Command::Export(a) => a.output.as_mut().filter(|p| p.as_path() != Path::new("-")),
        Command::Query(q) => match &mut q.what {
            QueryCommand::Jobs(_) | QueryCommand::Job(_) => None,
            QueryCommand::Errors(a) => plot(&mut a.plot),
            QueryCommand::Efficiency(a) => plot(&mut a.plot),
            QueryCommand::Summary(a) => plot(&mut a.plot),
            QueryCommand::Modules(a) => plot(&mut a.plot),
            QueryCommand::WhoUsed(_) | QueryCommand::CoUsage(_) | QueryCommand::Events(_) => None,
            QueryCommand::Throughput(a) | QueryCommand::Utilization(a) => plot(&mut a.plot),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) | Command::Flush(_) => None,
    };
    one.into_iter().collect()
}

/// The job filters of a command (every ledger command has them except `query job`).
fn filters(command: &mut Command) -> Option<&mut JobFilterArgs> {
    match command {
        Command::Export(a) => Some(&mut a.filter),
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
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) | Command::Flush(_) => None,
    }
}

/// Narrows a command to the caller's own jobs: their uid, on the clusters whose uids are this
/// host's. `-u` may name only the caller (by name or uid) and is then dropped, not matched: the
/// filter reads an all-digit name as a uid, so a user called "1002" would see uid 1002's jobs.
fn restrict(command: &mut Command, me: &Owner) -> Result<(), Failure> {
    if let Some(f) = filters(command) {
        let uid = me.uid.to_string();
        if !f.user.is_empty() && !f.user.iter().any(|u| *u == me.name || *u == uid) {
            return Err(Failure::usage(format!(
                "you may see only your own jobs ({}), not those of -u {}; ask an admin of the ledger",
                me.name,
                f.user.join(",")
            )));
        }
        f.user.clear();
        f.owner_uid = Some(me.uid);
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

/// Who a caller is to the ledger. `clusters`: `[collector] user_clusters`.
pub fn scope_of(uid: u32, admin_group: Option<&str>, clusters: &[String]) -> Result<Scope, String> {
    if uid == 0 || uid == sys::euid() {
        return Ok(Scope::All);
    }
    let user = sys::user_by_uid(uid).ok_or_else(|| format!("uid {uid} has no passwd entry"))?;
    if let Some(gid) = admin_group.filter(|g| !g.is_empty()).and_then(sys::group_id) {
        if sys::groups_of(&user).contains(&gid) {
            return Ok(Scope::All);
        }
    }
    Ok(Scope::Own(Owner { uid, name: user.name, clusters: clusters.to_vec() }))
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
        _ => return Answer::failed(&Failure::usage("only `collector query` and `collector export` are answered here")),
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

fn ask_with(socket: &Path, args: &[String], mut command: Command, out: &mut dyn Write) -> Result<(), Failure> {
    let unreachable = |e: io::Error| {
        Failure::new(format!(
            "cannot ask the collector through {}: {e} (is `collector serve` running?)",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let body = serde_json::to_vec(&Request { args: args.to_vec() }).map_err(|e| Failure::new(e.to_string()))?;
    wire::write_frame(&mut stream, &body).map_err(unreachable)?;
    let frame = |s: &mut UnixStream| {
        wire::read_frame(s, MAX_REPLY_FRAME).map_err(|e| Failure::new(format!("reading the collector's answer: {e}")))
    };
    let header: ReplyHeader = serde_json::from_slice(&frame(&mut stream)?)
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
    pub max_connections: usize,
    pub read_timeout: Duration,
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
        sys::user_by_uid(sys::euid()).map(|u| u.name).unwrap_or_else(|| format!("uid {}", sys::euid())),
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
    let slots = crate::serve::Slots::new(opts.max_connections);
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::error!("local socket: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(slot) = slots.take() else {
            let mut s = stream;
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let busy = Failure::new("the collector is busy answering other queries; try again");
            let _ = send(&mut s, &Answer::failed(&busy));
            continue;
        };
        let opts = opts.clone();
        let spawned = thread::Builder::new().name("local query".into()).spawn(move || {
            let _slot = slot;
            serve_one(stream, &opts);
        });
        if let Err(e) = spawned {
            log::error!("local socket: cannot start a thread: {e}");
        }
    }
}

fn serve_one(mut stream: UnixStream, opts: &Options) {
    let cred = match sys::peer_cred(&stream) {
        Ok(c) => c,
        Err(e) => return log::warn!("local socket: no peer credentials: {e}"),
    };
    let _ = stream.set_read_timeout(Some(opts.read_timeout));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let request = match wire::read_frame(&mut stream, MAX_REQUEST) {
        Ok(b) => serde_json::from_slice::<Request>(&b).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let answer = match (request, scope_of(cred.uid, opts.admin_group.as_deref(), &opts.user_clusters)) {
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
            let a = answer(&req.args, &opts.database, &scope);
            log::debug!(
                "local socket: uid {} ({scope:?}): {:?} -> exit {} in {} ms",
                cred.uid,
                req.args,
                a.code,
                started.elapsed().as_millis()
            );
            a
        }
    };
    if let Err(e) = send(&mut stream, &answer) {
        log::debug!("local socket: uid {}: reply not delivered: {e}", cred.uid);
    }
}

fn send(stream: &mut UnixStream, a: &Answer) -> io::Result<()> {
    let header = ReplyHeader { code: a.code, stderr: a.stderr.clone(), files: a.files.len() };
    let header = serde_json::to_vec(&header).map_err(io::Error::other)?;
    let mut w = io::BufWriter::new(stream);
    wire::write_frame(&mut w, &header)?;
    wire::write_frame(&mut w, &a.stdout)?;
    for f in &a.files {
        wire::write_frame(&mut w, f)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests;
