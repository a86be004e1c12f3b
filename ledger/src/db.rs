//! The ledger database file: SQLite in WAL mode, opened for the one writer or read-only.
//!
//! One file holds everything. `collector serve` is the only writer (one thread owns the
//! connection); `collector query` opens the file read-only and, thanks to WAL, reads while the
//! writer commits. The schema version is SQLite's `PRAGMA user_version`: [`MIGRATIONS`]`[i]`
//! takes the database from version `i` to `i + 1`, each in its own transaction, so an old ledger
//! is upgraded in place the first time a newer collector opens it, and a ledger written by a
//! newer collector is refused rather than misread.
//!
//!
//! The tables and their history are [`crate::migrations`]'s.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

pub use crate::migrations::{Migration, MIGRATIONS, SCHEMA_VERSION};

/// How long a statement waits on a lock held by another connection before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) the database for writing and brings its schema up to date.
pub fn open_rw(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    configure_rw(&conn).map_err(|e| format!("database {}: {e}", path.display()))?;
    migrate(&conn).map_err(|e| format!("database {}: {e}", path.display()))?;
    Ok(conn)
}

/// An in-memory database with the current schema, for tests and tools.
pub fn open_memory() -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory SQLite");
    configure_rw(&conn).expect("pragmas on an in-memory database");
    migrate(&conn).expect("schema on an in-memory database");
    conn
}

fn configure_rw(conn: &Connection) -> Result<(), String> {
    // journal_mode answers with a row (the mode now in force), so it is read, not executed.
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| format!("enabling WAL: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(format!("cannot enable WAL (journal_mode is {mode})"));
    }
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    // FULL: a commit is on disk (the WAL fsync'd) before the writer replies, so a batch the
    // epilog deleted after its ack survives a power loss too (NORMAL would lose the last commits).
    // Group commit pays for it: one fsync covers every batch waiting in the writer's queue.
    // temp_store: the per-batch savepoints' sub-journals stay in memory instead of a temp file
    // (they were the largest single cost of a merge); cache_size: 64 MiB keeps the indexes hot.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536;",
    )
    .map_err(|e| e.to_string())?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Applies the migrations the database lacks; refuses a database newer than this build.
pub fn migrate(conn: &Connection) -> Result<(), String> {
    let have = schema_version(conn)?;
    if have > SCHEMA_VERSION {
        return Err(format!(
            "schema version {have} is newer than this collector understands ({SCHEMA_VERSION}); upgrade runledger"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let to = i + 1;
        let started = std::time::Instant::now();
        let run = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute_batch(sql.sql)?;
            if let Some(then) = sql.then {
                then(conn)?;
            }
            conn.execute_batch(&format!("PRAGMA user_version = {to}"))?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(format!("migration to schema version {to} failed: {e}"));
        }
        log::info!("database schema migrated to version {to} in {:.1} s", started.elapsed().as_secs_f64());
    }
    if have > 0 && (have as usize) < MIGRATIONS.len() {
        vacuum_if_mostly_free(conn).map_err(|e| format!("compacting the database after the migration: {e}"))?;
    }
    Ok(())
}

/// Gives the pages a migration freed back to the file system when they are most of it (version
/// 3 keeps a version 2 ledger in an eighth of the space). VACUUM cannot run inside the
/// migration's transaction, so it runs after; it needs as much free disk as the new size.
fn vacuum_if_mostly_free(conn: &Connection) -> rusqlite::Result<()> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if free * 2 > pages {
        let started = std::time::Instant::now();
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        log::info!(
            "database compacted from {pages} to {} pages in {:.1} s",
            pages - free,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn schema_version(conn: &Connection) -> Result<u32, String> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0)).map_err(|e| e.to_string())
}

/// Opens the database read-only for queries, with errors an admin can act on.
pub fn open_ro(path: &Path) -> Result<Connection, String> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no ledger database at {} (has `collector serve` run with this configuration? \
                 --database or the config's collector.database names another file)",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(permission_error(path)),
        Err(e) => return Err(format!("cannot open database {}: {e}", path.display())),
    }
    if let Err(e) = std::fs::File::open(path) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            return Err(permission_error(path));
        }
        return Err(format!("cannot open database {}: {e}", path.display()));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    // A query reads most pages once, so a big page cache only costs the memory it fills (page
    // faults): 256 KiB instead of SQLite's 2 MiB took `query jobs -u NAME`, 3,500 scattered rows
    // of a million, from 21 to 19.5 ms of CPU. (A memory map instead of reads was slower.)
    conn.execute_batch("PRAGMA cache_size = -256").map_err(|e| e.to_string())?;
    let version = schema_version(&conn).map_err(|e| {
        if e.contains("readonly") || e.contains("unable to open") {
            format!(
                "cannot read the ledger database {} read-only: {e} (in WAL mode a reader needs the -shm file \
                 to exist or write access to the directory: run as root or the collector's user)",
                path.display()
            )
        } else {
            format!("cannot read database {}: {e}", path.display())
        }
    })?;
    if version == 0 {
        return Err(format!("{} is not a runledger database (schema version 0)", path.display()));
    }
    if version > SCHEMA_VERSION {
        return Err(format!(
            "database {} has schema version {version}, newer than this collector understands ({SCHEMA_VERSION}); \
             upgrade runledger",
            path.display()
        ));
    }
    if version < SCHEMA_VERSION {
        return Err(format!(
            "database {} has schema version {version}; restart `collector serve` to upgrade it to {SCHEMA_VERSION}",
            path.display()
        ));
    }
    Ok(conn)
}

fn permission_error(path: &Path) -> String {
    format!(
        "permission denied reading the ledger database {}: only root and the collector's user can read it \
         (user access through the collector's socket comes later)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::*;

    #[test]
    fn an_acknowledged_commit_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_rw(&dir.path().join("l.db")).unwrap();
        // 2 = FULL: the WAL is synced at every commit, before the writer replies.
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn fresh_database_gets_current_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let conn = open_rw(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        drop(conn);
        // Reopening applies nothing and keeps the version.
        let conn = open_rw(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        let ro = open_ro(&path).unwrap();
        let n: i64 = ro.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_version_1_ledger_is_upgraded_in_place_with_its_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(V1).unwrap();
            c.execute_batch("PRAGMA user_version = 1").unwrap();
            c.execute_batch(
                "INSERT INTO jobs (id, cluster, job_id, state) VALUES (1, 'c', 10, 'FAILED'), (2, 'c', 11, 'COMPLETED'),
                                                                 (3, 'c', 12, 'COMPLETED');
                 INSERT INTO facts (job, node, source, key, value) VALUES
                    (1, 'n1', '', 'program', 'LAMMPS'), (1, 'n1', '', 'outcome', 'failed'),
                    (1, 'n1', '', 'failure_category', 'mpi_abort'), (1, 'n1', '', 'error', 'MPI_ABORT'),
                    (1, 'n2', '', 'outcome', 'failed'), (1, 'n2', '', 'failure_category', 'input_error'),
                    (1, 'n2', '', 'error', 'ERROR: Unknown command'),
                    (1, 'n3', '', 'outcome', 'success'),
                    (1, 'n1', '/run/log.lammps', 'outcome', 'failed'),
                    (2, 'n1', '', 'program', 'GROMACS gmx mdrun'), (2, 'n1', '', 'outcome', 'success'),
                    (3, 'n1', '', 'program', 'WRF');",
            )
            .unwrap();
        }
        // The reader refuses the old schema until the writer upgraded it.
        assert!(open_ro(&path).unwrap_err().contains("schema version 1"));
        let conn = open_rw(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        let row = |id: i64| {
            conn.query_row("SELECT program, outcome, category, error FROM jobs WHERE id = ?1", [id], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .unwrap()
        };
        let s = |v: &str| Some(v.to_string());
        // The worst node (failed), then the most specific category; the program from any node.
        assert_eq!(row(1), (s("LAMMPS"), s("failed"), s("input_error"), s("ERROR: Unknown command")));
        assert_eq!(row(2), (s("GROMACS gmx mdrun"), s("success"), None, None));
        assert_eq!(row(3), (s("WRF"), None, None, None));
        // The merge computes the same as the backfill.
        assert_eq!(
            crate::merge::verdict(&conn, 1).unwrap(),
            crate::merge::JobVerdict {
                program: s("LAMMPS"),
                outcome: s("failed"),
                category: s("input_error"),
                error: s("ERROR: Unknown command")
            }
        );
        let plan: String = conn
            .query_row("EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE category = 'input_error'", [], |r| r.get(3))
            .unwrap();
        assert!(plan.contains("jobs_category"), "{plan}");
        drop(conn);
        assert!(open_ro(&path).is_ok());
    }

    /// The recorded version 2 ledger of `tests/migrate_v2.rs`, migrated, holds the same rows as
    /// one merged afresh from the same batches: the conversion writes what the merge writes, and
    /// the rollups it builds from scratch are those the merge keeps up to date job by job.
    #[test]
    fn a_version_2_ledger_migrates_to_what_the_merge_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(include_str!("../tests/data/v2-ledger.sql")).unwrap();
            c.execute_batch("PRAGMA user_version = 2").unwrap();
        }
        let migrated = open_rw(&path).unwrap();
        assert_eq!(schema_version(&migrated).unwrap(), SCHEMA_VERSION);
        for gone in ["events", "tasks", "step_modules", "job_modules", "steps_v2", "job_nodes_v2", "environments_v2"] {
            let n: i64 =
                migrated.query_row("SELECT count(*) FROM sqlite_master WHERE name = ?1", [gone], |r| r.get(0)).unwrap();
            assert_eq!(n, 0, "{gone}");
        }
        let fresh = open_memory();
        let batches = runledger_synth::synth::fixture_batches();
        let refs: Vec<_> = batches.iter().collect();
        for r in crate::merge::apply_group(&fresh, &refs, runledger_synth::synth::FIXTURE_END).unwrap() {
            r.unwrap();
        }
        let (a, b) = (crate::merge::tests::dump(&migrated), crate::merge::tests::dump(&fresh));
        if a != b {
            let (w, g) = a.lines().zip(b.lines()).find(|(x, y)| x != y).unwrap_or(("(length)", "(length)"));
            panic!("migrated and fresh ledgers differ:\n  migrated {w}\n  fresh    {g}");
        }
        // And the rollups rebuilt from scratch are what the merge kept.
        crate::rollup::rebuild(&fresh).unwrap();
        assert_eq!(crate::merge::tests::dump(&fresh), b);
    }

    /// Version 15 turns a step's CPU seconds into whole microseconds, in every row, and every
    /// reader divides them back: a ledger of version 14 reads as before.
    #[test]
    fn a_version_14_ledger_gets_its_steps_cpu_in_microseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v14.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
            for m in &MIGRATIONS[..14] {
                c.execute_batch(m.sql).unwrap();
                if let Some(then) = m.then {
                    then(&c).unwrap();
                }
            }
            c.execute_batch(
                "PRAGMA user_version = 14;
                 INSERT INTO hosts (id, name) VALUES (1, 'n1');
                 INSERT INTO jobs (id, cluster, job_id, start, end, cpu_user_s, cpu_sys_s)
                     VALUES (1, 'c', 10, 100, 200, 3.334567, 0.5);
                 INSERT INTO steps (job, node, step_id, start, end, cpu_user_s, cpu_sys_s)
                     VALUES (1, 1, 0, 100, 200, 3.234567, 0.499999), (1, 1, 1, 100, 200, 0.1, 0.000001),
                            (1, 1, 2, 100, 200, NULL, NULL);",
            )
            .unwrap();
        }
        let conn = open_rw(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        type Cpu = (Option<f64>, Option<f64>, Option<f64>, Option<f64>);
        let rows: Vec<Cpu> = conn
            .prepare("SELECT cpu_user_us, cpu_sys_us, cpu_user_us / 1e6, cpu_sys_us / 1e6 FROM steps ORDER BY step_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (Some(3_234_567.0), Some(499_999.0), Some(3.234567), Some(0.499999)),
                (Some(100_000.0), Some(1.0), Some(0.1), Some(0.000001)),
                (None, None, None, None)
            ]
        );
        // The merge's recompute reads the new columns: the job's sums come out exact.
        crate::merge::recompute(&conn, 1).unwrap();
        let job: (f64, f64) =
            conn.query_row("SELECT cpu_user_s, cpu_sys_s FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(job, (3.334567, 0.5));
    }

    #[test]
    fn newer_or_foreign_databases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE x(a); PRAGMA user_version = 99").unwrap();
        }
        assert!(open_rw(&path).unwrap_err().contains("newer than this collector"));
        assert!(open_ro(&path).unwrap_err().contains("newer than this collector"));
        let other = dir.path().join("o.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE x(a)").unwrap();
        assert!(open_ro(&other).unwrap_err().contains("not a runledger database"));
        assert!(open_ro(&dir.path().join("missing.db")).unwrap_err().contains("no ledger database"));
    }
}
