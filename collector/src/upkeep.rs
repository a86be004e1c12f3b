//! Keeping years of history: `collector prune` (and `[retention] keep_days`, run by `collector
//! serve` once a day) and `collector backup`. Both work on the ledger file while `collector
//! serve` writes it; only root and the collector's user can run them (they read the file).

use crate::failure::{write_out, Failure};
use nix::fcntl::{Flock, FlockArg};
use runledger_ledger::{db, retention};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file that keeps two prunes (the daemon's daily one, an admin's) from running at once:
/// next to the ledger, never the ledger itself (closing another descriptor of the database
/// file would drop SQLite's own locks in this process).
fn lock_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push("-prune.lock");
    PathBuf::from(p)
}

/// Takes the prune lock, or says who holds it.
fn lock(database: &Path) -> Result<Flock<std::fs::File>, String> {
    let path = lock_path(database);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open the prune lock {}: {e}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!("another prune of {} is running (lock {} held: {e})", database.display(), path.display())
    })
}

use std::os::unix::fs::OpenOptionsExt;

/// A prune at least this far in the past: the nodes of a job that just ended may still be
/// sending its records.
pub const MIN_AGE_S: i64 = 86_400;

/// `collector prune` with `opts` (the command line's `--before`, `--drop-rollups`, `--dry-run`, `--batch`).
pub fn prune(database: &Path, opts: &retention::Options, out: &mut dyn Write) -> Result<(), Failure> {
    let now = runledger_record::now();
    if opts.before > now - MIN_AGE_S {
        return Err(Failure::usage(format!(
            "--before {}: at least a day ago (the nodes of a job that ended since may still be sending its records)",
            crate::questions::timefmt::rfc3339(opts.before)
        )));
    }
    if !database.exists() {
        return Err(Failure::new(format!("no ledger database at {}", database.display())));
    }
    let _held = lock(database)?;
    let conn = db::open_rw(database)?;
    let opts = retention::Options { batch: opts.batch.max(1), ..opts.clone() };
    let mut last = std::time::Instant::now();
    let report = retention::prune(&conn, &opts, |r| {
        if last.elapsed() >= Duration::from_secs(10) {
            log::info!("pruning: {} jobs so far, {} transactions", r.jobs, r.transactions);
            last = std::time::Instant::now();
        }
    })
    .map_err(|e| Failure::new(format!("pruning {}: {e}", database.display())))?;
    write_out(out, report.text())
}

/// The daily prune of `[retention] keep_days`, in a thread of `collector serve` with its own
/// connection. The first run is at start-up unless one ran in the last day (the ledger's
/// `prunes` says when); then every 24 hours. A failure is logged and tried again the next day.
pub fn spawn_daily(database: PathBuf, cfg: runledger_record::config::RetentionConfig) -> Result<(), String> {
    if cfg.keep_days == 0 {
        return Ok(());
    }
    let keep_s = i64::try_from(cfg.keep_days).unwrap_or(i64::MAX / 2).saturating_mul(86_400);
    log::info!(
        "retention: jobs that ended more than {} days ago are pruned once a day{}",
        cfg.keep_days,
        if cfg.drop_rollups { ", rollups too" } else { " (rollups kept)" }
    );
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            let wait = match daily_once(&database, keep_s, cfg.drop_rollups) {
                Ok(wait) => wait,
                Err(e) => {
                    log::error!("retention: {e}; trying again in a day");
                    86_400
                }
            };
            std::thread::sleep(Duration::from_secs(wait.max(60) as u64));
        })
        .map(drop)
        .map_err(|e| format!("cannot start the retention thread: {e}"))
}

/// Prunes if no prune ran in the last day; the seconds until the next one is due.
fn daily_once(database: &Path, keep_s: i64, drop_rollups: bool) -> Result<i64, String> {
    let conn = db::open_rw(database)?;
    let now = runledger_record::now();
    let last = retention::last_run(&conn).map_err(|e| e.to_string())?;
    if let Some(t) = last.filter(|t| now - t < 86_400) {
        return Ok(t + 86_400 - now);
    }
    let _held = match lock(database) {
        Ok(h) => h,
        Err(e) => {
            log::info!("retention: {e}; next try in an hour");
            return Ok(3600);
        }
    };
    let opts = retention::Options { drop_rollups, ..retention::Options::new(now - keep_s) };
    let report = retention::prune(&conn, &opts, |_| {}).map_err(|e| format!("pruning: {e}"))?;
    for line in report.text().lines() {
        log::info!("retention: {line}");
    }
    Ok(86_400)
}

/// `collector backup FILE`: a consistent copy of the ledger as of one moment, taken while `serve`
/// writes (`VACUUM INTO` reads one snapshot; the writer goes on). The copy is written next to
/// FILE under a temporary name (mode 0600: it holds everything the ledger holds), synced, checked
/// (`PRAGMA integrity_check`, schema version) and only then renamed to FILE.
pub fn backup(database: &Path, dest: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    if dest.exists() {
        return Err(Failure::new(format!("{} exists: name a new file", dest.display())));
    }
    let started = std::time::Instant::now();
    let src = db::open_ro(database)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest.file_name().ok_or_else(|| Failure::new(format!("{}: not a file name", dest.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".partial-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    // VACUUM INTO writes into an empty file: created here, private.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", tmp.display())))?;
    let cleanup = |e: String| {
        let _ = std::fs::remove_file(&tmp);
        Failure::new(e)
    };
    let tmp_str = tmp.to_str().ok_or_else(|| cleanup(format!("{}: not UTF-8", tmp.display())))?;
    src.execute("VACUUM INTO ?1", [tmp_str]).map_err(|e| cleanup(format!("copying {}: {e}", database.display())))?;
    drop(src);
    let (jobs, version) = check_copy(&tmp).map_err(|e| cleanup(format!("the copy {}: {e}", tmp.display())))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| cleanup(format!("syncing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, dest)
        .map_err(|e| cleanup(format!("renaming {} to {}: {e}", tmp.display(), dest.display())))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    write_out(
        out,
        format!(
            "backed up {} to {}: {jobs} jobs, schema version {version}, {bytes} bytes, integrity ok, {:.1} s\n",
            database.display(),
            dest.display(),
            started.elapsed().as_secs_f64()
        ),
    )
}

/// Opens a copy on its own, checks it whole; (jobs, schema version).
fn check_copy(path: &Path) -> Result<(i64, u32), String> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if ok != "ok" {
        return Err(format!("integrity check: {ok}"));
    }
    let version = db::schema_version(&c)?;
    let jobs = c.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    Ok((jobs, version))
}
