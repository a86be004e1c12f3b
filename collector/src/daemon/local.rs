//! Who sees what: the ledger file is private, and users ask the daemon about their own jobs.
//!
//! The database belongs to the collector's user with mode 0600 ([`crate::daemon::query_socket::protect_database`]); root and
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
//! ([`crate::daemon::query_socket`]: the listener, the per-uid bounds and [`crate::daemon::query_socket::worker_main`], the
//! same binary) whose address space, CPU time and output are capped
//! (`collector.query_max_memory_mb`, `query_timeout_ms`, `query_max_output_bytes`) and which is
//! killed at its wall-clock deadline; the daemon keeps only the connection. Past a bound the user
//! gets a clear refusal saying which bound and how to narrow the query. The request itself must
//! arrive within `read_timeout_ms` (one deadline for all reads, as on TCP), and one uid may have
//! at most `query_max_per_user` connections at once, so a user can hold neither the socket's
//! slots nor the machine.

use crate::cli::args::{load_config, Cli, Command, QueryCommand};
use crate::cli::dispatch::run_ledger;
use crate::cli::questions::JobFilterFlags;
use crate::failure::{write_out, Failure, FailureKind};
use crate::questions::scope::{Owner, Scope};
use clap::Parser;
use runledger_record::{users, wire};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest request: an argv.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;
/// Largest reply frame the client accepts (an export of many jobs).
const MAX_REPLY_FRAME: usize = 1 << 30;
/// How long the client waits for an answer (a query over a big ledger, an export).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request {
    pub(crate) args: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ReplyHeader {
    /// The exit code `collector` would have had, run directly.
    pub(crate) code: i32,
    /// Its standard error (already formatted).
    pub(crate) stderr: String,
    /// How many output-file frames follow standard output; an empty frame is a file the command
    /// did not write.
    pub(crate) files: usize,
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
    let cfg = load_config(config)?.collector;
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
            QueryCommand::Jobs(_) | QueryCommand::Idle(_) => None,
            QueryCommand::Job(a) => plot(&mut a.chart.plot),
            QueryCommand::Errors(a) => plot(&mut a.chart.plot),
            QueryCommand::Efficiency(a) => plot(&mut a.chart.plot),
            QueryCommand::Summary(a) => plot(&mut a.chart.plot),
            QueryCommand::Modules(a) => plot(&mut a.chart.plot),
            QueryCommand::Packages(a) => plot(&mut a.chart.plot),
            QueryCommand::WhoUsed(_) | QueryCommand::CoUsage(_) | QueryCommand::Events(_) => None,
            QueryCommand::Throughput(a) | QueryCommand::Utilization(a) => plot(&mut a.chart.plot),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) | Command::Prune(_) | Command::Backup(_) => None,
    };
    one.into_iter().collect()
}

/// The job filters of a command (every ledger command has them except `query job`).
fn filters(command: &mut Command) -> Option<&mut JobFilterFlags> {
    match command {
        Command::Export(a) => Some(&mut a.filter),
        Command::Report(a) => Some(&mut a.filter),
        Command::Query(q) => match &mut q.what {
            QueryCommand::Jobs(a) => Some(&mut a.filter),
            QueryCommand::Idle(a) => Some(&mut a.filter),
            QueryCommand::Job(_) => None,
            QueryCommand::Errors(a) => Some(&mut a.filter),
            QueryCommand::Efficiency(a) => Some(&mut a.filter),
            QueryCommand::Summary(a) => Some(&mut a.filter),
            QueryCommand::Modules(a) => Some(&mut a.filter),
            QueryCommand::Packages(a) => Some(&mut a.filter),
            QueryCommand::WhoUsed(a) => Some(&mut a.filter),
            QueryCommand::CoUsage(a) => Some(&mut a.filter),
            QueryCommand::Events(a) => Some(&mut a.filter),
            QueryCommand::Throughput(a) | QueryCommand::Utilization(a) => Some(&mut a.filter),
        },
        Command::Serve(_) | Command::Parse(_) | Command::Audit(_) | Command::Prune(_) | Command::Backup(_) => None,
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
    pub(crate) fn failed(f: &Failure) -> Answer {
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
    let result = run_ledger(parsed.command, db, scope, &mut stdout);
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
    write_out(out, &stdout)?;
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

#[cfg(test)]
mod manager_tests;
#[cfg(test)]
mod tests;
