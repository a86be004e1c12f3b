//! The ledger database: SQLite in WAL mode, its schema and the migrations that build it.
//!
//! One file holds everything. `collector serve` is the only writer (one thread owns the
//! connection); `collector query` opens the file read-only and, thanks to WAL, reads while the
//! writer commits. The schema version is SQLite's `PRAGMA user_version`: [`MIGRATIONS`]`[i]`
//! takes the database from version `i` to `i + 1`, each in its own transaction, so an old ledger
//! is upgraded in place the first time a newer collector opens it, and a ledger written by a
//! newer collector is refused rather than misread.
//!
//! # Tables (version 1)
//!
//! | table          | key                               | what                                                   |
//! |----------------|-----------------------------------|--------------------------------------------------------|
//! | `jobs`         | `id` (row id)                     | one row per job instance; aggregates recomputed from the rows below |
//! | `job_nodes`    | (`job`, `node`)                   | one node's `JobEnd`: state, exit, evidence, times, output paths |
//! | `steps`        | (`job`, `node`, `step_id`)        | one step on one node: `StepStart` + `StepEnd` fields     |
//! | `tasks`        | (`job`, `node`, `step_id`, `global_rank`) | one task's exit                                 |
//! | `modules`      | `id`; unique (`name`, `version`)  | every distinct module (`version` is `''` when none)     |
//! | `job_modules`  | (`job`, `module`)                 | modules loaded by any step of the job                   |
//! | `step_modules` | (`job`, `node`, `step_id`, `module`) | per step, with the modulefile and load order        |
//! | `environments` | `hash`                            | each distinct step environment once (sha256 of canonical JSON) |
//! | `tags`         | (`job`, `key`)                    | `--runledger-tag` pairs; `step_rank` says which step's value won |
//! | `events`       | (`job`, `node`, `time`, `kind`, `detail`) | step_started, task_exited, step_ended, job_ended |
//! | `facts`        | (`job`, `node`, `source`, `key`)  | facts read from solver logs by the epilog               |
//!
//! # Version 2
//!
//! `jobs` gains the job-level verdict read from solver logs, for fast filtering and the error
//! statistics: `program`, `outcome` (success | failed | incomplete | unknown), `category` (the
//! failure category) and `error` (the evidence line), indexed on `program` (case-insensitive)
//! and `category`. The merge recomputes them from the job-level facts (`source = ''`) of every
//! node ([`crate::merge::recompute`]); the migration fills them for jobs already recorded.
//!
//! # Delivery accounting (version 3)
//!
//! `rejections` (key `reason`): requests `collector serve` refused, per reason over the ledger's
//! life — `count`, `first_time`, `last_time` and `last_peer` (the last refused host). Written
//! by the writer thread from in-memory counters, read by [`crate::rejections::read`].
//!
//! `node_drops` (key `cluster`, `node`): the largest running total of batches, items and bytes a
//! node reported dropping from its over-full outbox (`Batch::dropped`), when it last dropped and
//! when we first heard of that total. Kept by the merge, read by `collector audit`.
//!
//! The migration is `V_REJECTIONS`, independent of the job tables, so that it can be renumbered
//! when another schema step lands before it.
//!
//! Child rows reference `jobs(id)` with `ON DELETE CASCADE`. Times are Unix seconds (local time
//! only at display), states are sacct's names (`COMPLETED`, `OUT_OF_MEMORY`, …).

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Schema steps; `MIGRATIONS.len()` is the version this build writes.
pub const MIGRATIONS: &[&str] = &[V1, V2, V_REJECTIONS];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits on a lock held by another connection before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const V1: &str = r#"
CREATE TABLE environments (
    hash TEXT PRIMARY KEY,
    content TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    array_job_id INTEGER,
    array_task_id INTEGER,
    uid INTEGER,
    user TEXT,
    gid INTEGER,
    account TEXT,
    partition TEXT,
    qos TEXT,
    job_name TEXT,
    work_dir TEXT,
    start INTEGER,
    end INTEGER,
    state TEXT NOT NULL DEFAULT 'UNKNOWN',
    exit_code INTEGER,
    signal INTEGER,
    state_evidence TEXT,
    nnodes INTEGER,
    ncpus INTEGER,
    cpu_user_s REAL NOT NULL DEFAULT 0,
    cpu_sys_s REAL NOT NULL DEFAULT 0,
    cpu_seconds REAL NOT NULL DEFAULT 0,
    max_rss_kib INTEGER,
    nodes TEXT,
    env_hash TEXT
);
CREATE INDEX jobs_cluster_job ON jobs(cluster, job_id);
CREATE INDEX jobs_job ON jobs(job_id);
CREATE INDEX jobs_array ON jobs(array_job_id) WHERE array_job_id IS NOT NULL;
CREATE INDEX jobs_user ON jobs(user);
CREATE INDEX jobs_uid ON jobs(uid);
CREATE INDEX jobs_account ON jobs(account);
CREATE INDEX jobs_partition ON jobs(partition);
CREATE INDEX jobs_start ON jobs(start);
CREATE INDEX jobs_end ON jobs(end);
CREATE INDEX jobs_state ON jobs(state);

CREATE TABLE job_nodes (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    uid INTEGER,
    user TEXT,
    account TEXT,
    partition TEXT,
    work_dir TEXT,
    exit_code INTEGER NOT NULL,
    signal INTEGER NOT NULL,
    core_dumped INTEGER NOT NULL DEFAULT 0,
    derived_exit_code INTEGER,
    derived_signal INTEGER,
    state TEXT NOT NULL,
    state_evidence TEXT,
    start INTEGER,
    end INTEGER NOT NULL,
    stdout TEXT,
    stderr TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (job, node)
) WITHOUT ROWID;

CREATE TABLE steps (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    seen_start INTEGER NOT NULL DEFAULT 0,
    seen_end INTEGER NOT NULL DEFAULT 0,
    start INTEGER,
    end INTEGER,
    node_id INTEGER,
    uid INTEGER,
    gid INTEGER,
    user TEXT,
    account TEXT,
    partition TEXT,
    qos TEXT,
    job_name TEXT,
    array_job_id INTEGER,
    array_task_id INTEGER,
    nnodes INTEGER,
    argv TEXT,
    exe TEXT,
    cwd TEXT,
    ntasks INTEGER,
    local_tasks INTEGER,
    ncpus INTEGER,
    env_hash TEXT REFERENCES environments(hash),
    slurm_version TEXT,
    cpu_user_s REAL,
    cpu_sys_s REAL,
    max_rss_kib INTEGER,
    stdout TEXT,
    stderr TEXT,
    PRIMARY KEY (job, node, step_id)
) WITHOUT ROWID;

CREATE TABLE tasks (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    global_rank INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    signal INTEGER NOT NULL,
    core_dumped INTEGER NOT NULL DEFAULT 0,
    raw_status INTEGER NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (job, node, step_id, global_rank)
) WITHOUT ROWID;

CREATE TABLE modules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    UNIQUE (name, version)
);
CREATE INDEX modules_version ON modules(version);

CREATE TABLE job_modules (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    module INTEGER NOT NULL REFERENCES modules(id),
    PRIMARY KEY (job, module)
) WITHOUT ROWID;
CREATE INDEX job_modules_module ON job_modules(module);

CREATE TABLE step_modules (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    module INTEGER NOT NULL REFERENCES modules(id),
    position INTEGER NOT NULL,
    file TEXT,
    PRIMARY KEY (job, node, step_id, module)
) WITHOUT ROWID;

CREATE TABLE tags (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    step_rank INTEGER NOT NULL,
    PRIMARY KEY (job, key)
) WITHOUT ROWID;
CREATE INDEX tags_key_value ON tags(key, value);

CREATE TABLE events (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    time INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, node, time, kind, detail)
) WITHOUT ROWID;

CREATE TABLE facts (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    unit TEXT,
    PRIMARY KEY (job, node, source, key)
) WITHOUT ROWID;
"#;

/// Version 2: the job-level verdict columns (see the module documentation). The backfill picks,
/// per job, the node whose job-level `outcome` is worst (failed, incomplete, success, unknown),
/// then whose failure category is most specific, as the merge does.
const V2: &str = r#"
ALTER TABLE jobs ADD COLUMN program TEXT;
ALTER TABLE jobs ADD COLUMN outcome TEXT;
ALTER TABLE jobs ADD COLUMN category TEXT;
ALTER TABLE jobs ADD COLUMN error TEXT;
CREATE INDEX jobs_program ON jobs(program COLLATE NOCASE);
CREATE INDEX jobs_category ON jobs(category);
CREATE INDEX jobs_outcome ON jobs(outcome);

UPDATE jobs SET (program, outcome, category, error) = (
    SELECT
        COALESCE(
            (SELECT p.value FROM facts p WHERE p.job = o.job AND p.node = o.node AND p.source = '' AND p.key = 'program'),
            (SELECT p.value FROM facts p WHERE p.job = o.job AND p.source = '' AND p.key = 'program' ORDER BY p.node LIMIT 1)),
        o.value,
        (SELECT c.value FROM facts c WHERE c.job = o.job AND c.node = o.node AND c.source = '' AND c.key = 'failure_category'),
        (SELECT e.value FROM facts e WHERE e.job = o.job AND e.node = o.node AND e.source = '' AND e.key = 'error')
    FROM facts o
    WHERE o.job = jobs.id AND o.source = '' AND o.key = 'outcome'
    ORDER BY
        CASE lower(o.value) WHEN 'failed' THEN 0 WHEN 'incomplete' THEN 1 WHEN 'success' THEN 2 ELSE 3 END,
        COALESCE((SELECT CASE c.value
                    WHEN 'time_limit' THEN 0 WHEN 'out_of_memory' THEN 0 WHEN 'node_failure' THEN 0
                    WHEN 'cancelled' THEN 0
                    WHEN 'numerical_instability' THEN 1 WHEN 'input_error' THEN 1 WHEN 'file_not_found' THEN 1
                    WHEN 'io_error' THEN 1 WHEN 'launch_failure' THEN 1
                    WHEN 'segfault' THEN 2 WHEN 'signal' THEN 2
                    WHEN 'mpi_abort' THEN 3 WHEN 'unknown' THEN 3 WHEN 'truncated' THEN 3
                    ELSE 4 END
         FROM facts c WHERE c.job = o.job AND c.node = o.node AND c.source = '' AND c.key = 'failure_category'), 4),
        o.node
    LIMIT 1)
WHERE id IN (SELECT job FROM facts WHERE source = '' AND key = 'outcome');

UPDATE jobs SET program = (
    SELECT p.value FROM facts p WHERE p.job = jobs.id AND p.source = '' AND p.key = 'program' ORDER BY p.node LIMIT 1)
WHERE program IS NULL AND id IN (SELECT job FROM facts WHERE source = '' AND key = 'program');
"#;

/// What went wrong on the way to the ledger: the rejection counters ([`crate::rejections`]) and
/// the records nodes dropped from full outboxes ([`runledger_record::Batch::dropped`]), both read
/// by `collector audit`. Touches no other table, so it may take any place in [`MIGRATIONS`] after V1.
const V_REJECTIONS: &str = r#"
CREATE TABLE rejections (
    reason TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    first_time INTEGER NOT NULL,
    last_time INTEGER NOT NULL,
    last_peer TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE node_drops (
    cluster TEXT NOT NULL,
    node TEXT NOT NULL,
    batches INTEGER NOT NULL,
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    last_drop INTEGER NOT NULL,
    reported_at INTEGER NOT NULL,
    PRIMARY KEY (cluster, node)
) WITHOUT ROWID;
"#;

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
    // NORMAL in WAL mode: a commit survives a crash of the process; only a power loss can
    // drop the last commits, never corrupt the file.
    // temp_store: the per-batch savepoints' sub-journals stay in memory instead of a temp file
    // (they were the largest single cost of a merge); cache_size: 64 MiB keeps the indexes hot.
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
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
        let run = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!("PRAGMA user_version = {to}"))?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(format!("migration to schema version {to} failed: {e}"));
        }
        log::info!("database schema migrated to version {to}");
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
