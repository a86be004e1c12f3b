//! The ledger's schema as a list of steps: [`MIGRATIONS`]`[i]` takes a database from version `i`
//! to `i + 1`. A schema change is one new entry appended here; [`crate::db`] applies them.
//!
//! # Tables (version 3; 4 adds the delivery tables, 5 an index)
//!
//! | table                | key                                | what |
//! |----------------------|------------------------------------|------|
//! | `jobs`               | `id` (row id)                      | one row per job instance; aggregates recomputed from the rows below; `nodes` with runs as `n[01-64]`; `cpu_seconds` generated; `env` and `module_set` ids; `grp`: its rollup group |
//! | `job_nodes`          | (`job`, `node`)                    | one node's `JobEnd`: state (a `states` id), exit, evidence, times, output paths; job attributes by `attrs` id |
//! | `steps`              | (`job`, `node`, `step_id`)         | one step on one node: `StepStart` + `StepEnd` fields; `attrs`, `argv`, `exe`, `cwd`, `env`, `modules` by id; `tasks`: every task's exit, one blob |
//! | `states`             | `id`; unique `name`                | the seven job states (`0` UNKNOWN … `6` NODE_FAIL) |
//! | `hosts`              | `id`; unique `name`                | every node name |
//! | `strings`            | `id`; unique `value`               | argv (JSON), executables, working directories, modulefiles |
//! | `attrs`              | `id`                               | the job attributes a step or node record carries: uid, gid, user, account, partition, qos, job name, work dir, Slurm version |
//! | `environments`       | `id`; unique `hash`                | each distinct step environment once (sha256 of canonical JSON) |
//! | `modules`            | `id`; unique (`name`, `version`)   | every distinct module (`version` is `''` when none) |
//! | `module_lists`       | `id`; unique `items`               | a step's modules in load order with their modulefiles: `module:file,…` (file a `strings` id) |
//! | `module_sets`        | `id`; unique `modules`             | a job's distinct modules, ascending ids: `3,7,12` |
//! | `module_set_members` | (`module`, `module_set`)           | the sets holding a module (`--module`, `who-used`) |
//! | `tags`               | (`job`, `key`)                     | `--runledger-tag` pairs; `step_rank` says which step's value won |
//! | `facts`              | (`job`, `node`, `source`, `key`)   | facts read from solver logs by the epilog |
//! | `rollup`, `rollup_cells`, `rollup_modules`, `rollup_module_names`, `rollup_ends` | | per group of alike jobs, what `query summary`, `modules` and `throughput` need ([`crate::rollup`]) |
//!
//! Events (`step_started`, `task_exited`, `step_ended`, `job_ended`) are not stored: each is a
//! step's start or end, a task's exit or a node's end record, and `query job` and `query events`
//! derive them (the collector's `query::events_of`). The encodings are [`crate::store`]'s.
//!
//! # History
//!
//! - Version 1: the tables above as they were (`events` stored; each step's job attributes,
//!   argv, paths and environment hash in its row; `tasks` one row per task; `step_modules` and
//!   `job_modules` one row per module).
//! - Version 2: `jobs` gains the job-level verdict read from solver logs, for fast filtering and
//!   the error statistics: `program`, `outcome` (success | failed | incomplete | unknown),
//!   `category` (the failure category) and `error` (the evidence line), indexed on `program`
//!   (case-insensitive) and `category`. The merge recomputes them from the job-level facts
//!   (`source = ''`) of every node ([`crate::merge::recompute`]); the migration fills them for
//!   jobs already recorded.
//! - Version 3: the same facts in an eighth of the space, and rollups. At a million made-up jobs
//!   (`examples/gen.rs`) version 2 took 7,226 bytes per job: events 2,824 (all derivable), steps
//!   1,408 (job attributes, argv, paths and a 64-character environment hash repeated on every
//!   node), per-step module rows 1,091, one row per task 959, node records 421. Version 3 drops
//!   the events, keeps a step's tasks as runs of alike exits in one blob, refers to every
//!   repeated value (node names, attributes, strings, environments, states) by an integer id and
//!   to each distinct module list and set once, keeps node lists as ranges, and adds the
//!   rollups, so the manager queries read thousands of rows instead of a million: 953 bytes per
//!   job (steps 415, node records 177, jobs 161, indexes ~165). Everything `query` shows is kept;
//!   the migration converts a version 2 ledger in place, then compacts the file.
//! - Version 4: delivery accounting, read by `collector audit`. `rejections` (key `reason`):
//!   requests `collector serve` refused, per reason over the ledger's life — `count`,
//!   `first_time`, `last_time` and `last_peer` (the last refused host), written by the writer
//!   thread from in-memory counters ([`crate::rejections`]). `node_drops` (key `cluster`, `node`):
//!   the largest running total of batches, items and bytes a node reported dropping from its
//!   over-full outbox (`Batch::dropped`), when it last dropped and when we first heard of that
//!   total; kept by the merge.
//! - Version 5: `query jobs -u NAME` reads one index, not the table. `jobs_user` (`user`,
//!   `start`) becomes `jobs_user_listing`, which also holds every column the default listing
//!   shows (the collector's `query::output::LEAN_FIELDS`): a user's 3,500 jobs of a million sit on about
//!   75 adjacent index pages instead of 3,500 table pages scattered over the file (18 to 13 ms at
//!   a million jobs). It costs 65 bytes per job; the indexes on `program`, `outcome` and
//!   `category` pay 26 of them back by leaving out the jobs without a verdict (most jobs run no
//!   solver the log parsers know, and most do not fail), which no filter on them can match
//!   anyway: 953 to 992 bytes per job.
//! - Retention (`collector prune`, [`crate::retention`]): `prunes` keeps one row per prune run
//!   (when, the date before which jobs went, what was removed, as JSON), so the ledger says which
//!   period only its rollups still hold. `retiring` (key `kind`, `id`) is empty except while a
//!   prune sweeps the rows no job references any more: the ids it is about to delete, which the
//!   merge takes off again when it reuses one ([`crate::store`]).
//! - Export marks (`collector export --partition-by`): `export_marks` (key `cluster`, `month`: the
//!   UTC month of the job's start, `unknown` without one) counts the changes to the jobs of each
//!   partition; a partitioned export rewrites only the partitions whose count moved since the
//!   last one. Triggers keep it: a new job, an update of a job that changes an exported column
//!   (so a delivery repeated after a lost ack changes nothing), a new or changed fact, and (with
//!   the Python tables) a changed package set count the job's partition; a start that moves to
//!   another month counts the old one too. Deletions (a prune) do not count: an export
//!   keeps what the ledger no longer holds.
//! - Usage series (issue #16): what each job did over time. `step_series` (unique `job`, `node`,
//!   `step_id`): one step's usage series on one node as the plugin sampled it, one versioned
//!   varint blob ([`crate::timeline`]). A rowid table, not `WITHOUT ROWID`: there a row of more
//!   than about 1 KB (a long step's blob) spills to overflow pages of its own, which doubled the
//!   table's size; a rowid table keeps rows up to about 4 KB on its leaf pages; `jobs.idle_core_s`: the allocated core-seconds the job
//!   left idle (below 10 % of the allocation for an hour or more), NULL when none, with the
//!   partial index `jobs_idle` over the idle jobs only. Ledgers of version 5 have no series, so
//!   nothing is converted.
//!
//! - Python: what the jobs' Python processes reported (issue #14; [`crate::python`]).
//!   `py_packages` (unique `name`, `version`; `version` is `''` when unknown) interns every
//!   package version once; `py_package_sets` (unique `packages`: ascending ids `3,7,12`) each
//!   distinct set once, and `py_package_set_members` the sets holding a package (`who-used
//!   --python`). `py_procs` (key `job`, `node`, `pid`, `started`): one recorded interpreter
//!   process (rank, interpreter, version, prefix, base prefix and main as `strings` ids, its
//!   package set, how it ended). `py_nodes` (key `job`, `node`): that a node's epilog read the
//!   job's Python directory, and what it could not take (`rejected`, JSON; `skipped`).
//!   `jobs.py_set`: the union of the job's processes' packages, indexed where present. Every
//!   row is the job's user's word, marked so by being in these tables only.
//!
//! - What a job asked for (#15; appended after version 5): each node's `job_nodes` row gains
//!   `alloc_mem_mb` (`S_JOB_ALLOC_MEM`: the job's memory on that node, MiB), `time_limit_s` and
//!   `time_limit_source` (0: the step environment, 1: `scontrol`, [`crate::store::limit_source`];
//!   a source without seconds is an unlimited job) and `time_limit_missing` (why the batch node
//!   could not learn the limit). All NULL for records from older nodes: nothing is guessed for
//!   them. About 8 bytes per node record when known (4 header bytes, the memory and the
//!   seconds; SQLite stores the integers 0 and 1 in the header alone). The collector's
//!   `query job --efficiency` reads them.
//!
//! - Rollup cells (#17; appended): `rollup_cells` (key `dim`, `grp`, `val`) splits each rollup
//!   group by the jobs' start month bucket, module set or Python package set, with the group's
//!   sums; `rollup_cell_walls` their elapsed times in chunks; `jobs.rollup_py` the package set
//!   the cells count. See [`crate::rollup`].
//!
//! - Wall-time histograms and idle core-seconds in the rollups (#16, #17; appended): `rollup_hist`
//!   (key `grp`, `chunk`) and `rollup_cell_hist` (key `dim`, `grp`, `val`, `chunk`) keep the jobs'
//!   elapsed times as a bounded histogram ([`crate::walls`]), a row per chunk of 256 buckets so that
//!   the merge rewrites at most about a KiB, in place of every time in chunks (`rollup_walls` and
//!   `rollup_cell_walls`, dropped). At ten million jobs those lists were 350 MB, read and selected at
//!   every summary; a histogram is at most ~1,100 buckets whatever the jobs. Medians and percentiles
//!   are exact when their bucket's times are equal (every time below 128 s) and within 1.6 %
//!   otherwise. Tables of their own, read in key order beside the sums by the summaries that need
//!   them, so the questions that read only the sums (`modules`, `throughput`, `packages`) do not read
//!   the histograms. `rollup.idle` and `rollup_cells.idle`: the jobs' idle core-seconds
//!   (`jobs.idle_core_s`, exact sums), so `summary`'s idle core-hours come from the rollups and still
//!   count pruned jobs. The migration fills both from the jobs.
//!
//! - The inbox (#17; appended): `inbox` (row id) holds node batches `collector serve` committed
//!   during a burst without merging them yet: when it received each, from whom, the body as
//!   signed (Snappy-compressed), and the merge's error for one it refused. See [`crate::inbox`].
//!
//! - Evidence and standard error as nothing (#17; appended): `job_nodes.state_evidence` and
//!   `jobs.state_evidence` hold an empty blob where the evidence is exactly the epilog's wording
//!   of the row's own exit code and signal (`exit code 0 (exit 0:0)` on most nodes of most jobs:
//!   22 bytes a node record), and `steps.stderr` and `job_nodes.stderr` where the path is the
//!   row's `stdout` (Slurm's one `slurm-%j.out` for both); the readers give the text back
//!   ([`crate::store::pack_evidence`], [`crate::store::pack_stderr`]). Rows stored before keep
//!   their text, which reads the same; nothing is converted.
//!
//! - A step's CPU time in whole microseconds (#17; appended): `steps.cpu_user_us` and
//!   `steps.cpu_sys_us` (were `cpu_user_s`, `cpu_sys_s`) hold the step's user and system CPU
//!   time as integers of microseconds, the unit of `getrusage`, which is where the plugin reads
//!   them: so nothing is lost. SQLite stores a fractional second in 8 bytes and a microsecond
//!   count in 3 to 6 (5.4 on average at a million made-up jobs, 5.1 steps a job: `steps` took
//!   472 bytes a job instead of 505). The column keeps its REAL affinity (SQLite cannot change a type in place); integral
//!   values are stored as integers all the same. The migration converts every row. Readers
//!   divide by 10^6; a job's CPU time is the sum of its steps' microseconds, so it is exact
//!   whatever the order the steps came in ([`crate::store::micros`]).
//!
//! - A node record's output path as nothing (#17; appended): `job_nodes.stdout` holds an empty
//!   blob where it is the path the node's batch step recorded (`steps.stdout`, step
//!   4294967291), which the readers give back ([`crate::store::pack_node_stdout`],
//!   [`crate::store::NODE_STDOUT_SQL`]): the batch script's output path (about 34 bytes) is
//!   stored once a job, not twice (`job_nodes` 233 bytes a job instead of 271 at a million
//!   made-up jobs). The merge keeps the rule whichever record comes first; the
//!   migration packs the rows stored before.
//!
//! Child rows reference `jobs(id)` with `ON DELETE CASCADE` (the rollups are kept by the merge,
//! not by deletions: see [`crate::rollup`]). Times are Unix seconds (local time only at display),
//! states are sacct's names (`COMPLETED`, `OUT_OF_MEMORY`, …).

use rusqlite::Connection;

/// One schema step: SQL, then (in the same transaction) what SQL cannot express.
pub struct Migration {
    pub sql: &'static str,
    pub then: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

/// Schema steps; `MIGRATIONS.len()` is the version this build writes.
pub const MIGRATIONS: &[Migration] = &[
    Migration { sql: V1, then: None },
    Migration { sql: V2, then: None },
    V3,
    Migration { sql: V4_DELIVERY, then: None },
    Migration { sql: V5_LISTING, then: None },
    Migration { sql: V_RETENTION, then: None },
    Migration { sql: V_EXPORT_MARKS, then: None },
    Migration { sql: V_PYTHON, then: None },
    Migration { sql: V_SERIES, then: None },
    Migration { sql: V_ASKED, then: None },
    Migration { sql: V_CELLS, then: Some(crate::rollup::rebuild_cells) },
    Migration { sql: V_HISTS_IDLE, then: Some(crate::rollup::fill_hists_and_idle) },
    Migration { sql: V_INBOX, then: None },
    Migration { sql: V_EVIDENCE, then: None },
    Migration { sql: V_CPU_MICROS, then: None },
    Migration { sql: V_NODE_STDOUT, then: None },
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) const V1: &str = r#"
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
pub(crate) const V2: &str = r#"
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

/// Version 3: the same facts in an eighth of the space, and rollups for the manager queries (see
/// the module documentation). The SQL builds the new tables; [`v3_convert`] moves the rows.
pub(crate) const V3: Migration = Migration { sql: V3_SQL, then: Some(v3_convert) };

pub(crate) const V3_SQL: &str = r#"
DROP TABLE events;
ALTER TABLE steps RENAME TO steps_v2;
ALTER TABLE job_nodes RENAME TO job_nodes_v2;
ALTER TABLE environments RENAME TO environments_v2;

CREATE TABLE hosts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE strings (
    id INTEGER PRIMARY KEY,
    value TEXT NOT NULL UNIQUE
);

CREATE TABLE attrs (
    id INTEGER PRIMARY KEY,
    uid INTEGER,
    gid INTEGER,
    user TEXT,
    account TEXT,
    partition TEXT,
    qos TEXT,
    job_name TEXT,
    work_dir TEXT,
    slurm_version TEXT
);
CREATE INDEX attrs_lookup ON attrs(user, account, partition, job_name);

CREATE TABLE environments (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    content TEXT NOT NULL
);
INSERT INTO environments (hash, content) SELECT hash, content FROM environments_v2 ORDER BY hash;

CREATE TABLE module_lists (
    id INTEGER PRIMARY KEY,
    items TEXT NOT NULL UNIQUE
);

CREATE TABLE module_sets (
    id INTEGER PRIMARY KEY,
    modules TEXT NOT NULL UNIQUE
);

CREATE TABLE module_set_members (
    module INTEGER NOT NULL REFERENCES modules(id),
    module_set INTEGER NOT NULL REFERENCES module_sets(id),
    PRIMARY KEY (module, module_set)
) WITHOUT ROWID;

CREATE TABLE states (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO states (id, name) VALUES (0, 'UNKNOWN'), (1, 'COMPLETED'), (2, 'FAILED'), (3, 'OUT_OF_MEMORY'),
    (4, 'CANCELLED'), (5, 'TIMEOUT'), (6, 'NODE_FAIL');

CREATE TABLE job_nodes (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node INTEGER NOT NULL REFERENCES hosts(id),
    attrs INTEGER REFERENCES attrs(id),
    exit_code INTEGER NOT NULL,
    signal INTEGER NOT NULL,
    core_dumped INTEGER NOT NULL DEFAULT 0,
    derived_exit_code INTEGER,
    derived_signal INTEGER,
    state INTEGER NOT NULL REFERENCES states(id),
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
    node INTEGER NOT NULL REFERENCES hosts(id),
    step_id INTEGER NOT NULL,
    seen_start INTEGER NOT NULL DEFAULT 0,
    seen_end INTEGER NOT NULL DEFAULT 0,
    start INTEGER,
    end INTEGER,
    node_id INTEGER,
    attrs INTEGER REFERENCES attrs(id),
    array_job_id INTEGER,
    array_task_id INTEGER,
    nnodes INTEGER,
    argv INTEGER REFERENCES strings(id),
    exe INTEGER REFERENCES strings(id),
    cwd INTEGER REFERENCES strings(id),
    ntasks INTEGER,
    local_tasks INTEGER,
    ncpus INTEGER,
    env INTEGER REFERENCES environments(id),
    modules INTEGER REFERENCES module_lists(id),
    cpu_user_s REAL,
    cpu_sys_s REAL,
    max_rss_kib INTEGER,
    stdout TEXT,
    stderr TEXT,
    tasks BLOB,
    PRIMARY KEY (job, node, step_id)
) WITHOUT ROWID;

ALTER TABLE jobs ADD COLUMN env INTEGER REFERENCES environments(id);
ALTER TABLE jobs ADD COLUMN module_set INTEGER REFERENCES module_sets(id);
ALTER TABLE jobs ADD COLUMN grp INTEGER;
UPDATE jobs SET env = (SELECT e.id FROM environments e WHERE e.hash = jobs.env_hash) WHERE env_hash IS NOT NULL;
ALTER TABLE jobs DROP COLUMN env_hash;
ALTER TABLE jobs DROP COLUMN cpu_seconds;
ALTER TABLE jobs ADD COLUMN cpu_seconds REAL GENERATED ALWAYS AS (cpu_user_s + cpu_sys_s) VIRTUAL;
DROP INDEX jobs_cluster_job;
DROP INDEX jobs_job;
CREATE INDEX jobs_job_cluster ON jobs(job_id, cluster);
DROP INDEX jobs_user;
CREATE INDEX jobs_user ON jobs(user, start);
DROP INDEX jobs_uid;
DROP INDEX jobs_partition;

CREATE TABLE rollup (
    id INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL,
    account TEXT,
    partition TEXT,
    user TEXT,
    state TEXT NOT NULL,
    jobs INTEGER NOT NULL DEFAULT 0,
    walls INTEGER NOT NULL DEFAULT 0,
    core_s INTEGER NOT NULL DEFAULT 0,
    eff_core_s INTEGER NOT NULL DEFAULT 0,
    cpu BLOB,
    eff_cpu BLOB
);
CREATE INDEX rollup_key ON rollup(cluster, account, partition, user, state);

CREATE TABLE rollup_walls (
    grp INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    walls BLOB NOT NULL,
    PRIMARY KEY (grp, chunk)
) WITHOUT ROWID;

CREATE TABLE rollup_modules (
    grp INTEGER NOT NULL,
    module INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    PRIMARY KEY (grp, module)
) WITHOUT ROWID;

CREATE TABLE rollup_module_names (
    grp INTEGER NOT NULL,
    name TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    PRIMARY KEY (grp, name)
) WITHOUT ROWID;

CREATE TABLE rollup_ends (
    slot INTEGER PRIMARY KEY,
    jobs INTEGER NOT NULL,
    failed INTEGER NOT NULL
);
"#;

/// Moves version 2's steps, tasks, node records and module rows into version 3's tables (the
/// encodings of [`crate::store`], as the merge writes them), drops the old tables (events are
/// derived from steps, tasks and node records now) and builds the rollups.
///
/// Reads each old table once in key order; the steps' tasks and modules are merged in by cursor.
/// Ids are memoized here, in one transaction without savepoints, where the merge cannot.
fn v3_convert(conn: &Connection) -> rusqlite::Result<()> {
    use crate::rows::TaskRow;
    use crate::store::{self, Attrs};
    use std::collections::HashMap;

    let mut hosts: HashMap<String, i64> = HashMap::new();
    let mut host = |name: &str| -> rusqlite::Result<i64> {
        if let Some(&id) = hosts.get(name) {
            return Ok(id);
        }
        let id = store::host_id(conn, name)?;
        hosts.insert(name.to_string(), id);
        Ok(id)
    };
    let mut strings: HashMap<String, i64> = HashMap::new();
    let mut string = |s: Option<String>| -> rusqlite::Result<Option<i64>> {
        let Some(s) = s else { return Ok(None) };
        if let Some(&id) = strings.get(&s) {
            return Ok(Some(id));
        }
        let id = store::string_id(conn, &s)?;
        strings.insert(s, id);
        Ok(Some(id))
    };
    type AttrKey = (Option<i64>, Option<i64>, [Option<String>; 7]);
    let mut attrs: HashMap<AttrKey, i64> = HashMap::new();
    let mut attrs_of = |k: AttrKey| -> rusqlite::Result<i64> {
        if let Some(&id) = attrs.get(&k) {
            return Ok(id);
        }
        let [user, account, partition, qos, job_name, work_dir, slurm_version] = &k.2;
        let a = Attrs {
            uid: k.0,
            gid: k.1,
            user: user.as_deref(),
            account: account.as_deref(),
            partition: partition.as_deref(),
            qos: qos.as_deref(),
            job_name: job_name.as_deref(),
            work_dir: work_dir.as_deref(),
            slurm_version: slurm_version.as_deref(),
        };
        let id = store::attrs_id(conn, &a)?;
        attrs.insert(k, id);
        Ok(id)
    };
    let envs: HashMap<String, i64> = {
        let mut st = conn.prepare("SELECT hash, id FROM environments")?;
        let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        v
    };
    let mut lists: HashMap<store::ModuleList, Option<i64>> = HashMap::new();

    // Steps, with their tasks and modules: three cursors over (job, node, step_id).
    type StepKey = (i64, String, i64);
    {
        let mut steps = conn.prepare(
            "SELECT job, node, step_id, seen_start, seen_end, start, end, node_id, uid, gid, user, account, partition,
                qos, job_name, array_job_id, array_task_id, nnodes, argv, exe, cwd, ntasks, local_tasks, ncpus,
                env_hash, slurm_version, cpu_user_s, cpu_sys_s, max_rss_kib, stdout, stderr
         FROM steps_v2 ORDER BY job, node, step_id",
        )?;
        let mut tasks = conn.prepare(
            "SELECT job, node, step_id, global_rank, task_id, exit_code, signal, core_dumped, raw_status, time
         FROM tasks ORDER BY job, node, step_id, global_rank",
        )?;
        let mut mods = conn.prepare(
            "SELECT job, node, step_id, module, position, file FROM step_modules ORDER BY job, node, step_id, module",
        )?;
        let mut insert = conn.prepare(
            "INSERT INTO steps (job, node, step_id, seen_start, seen_end, start, end, node_id, attrs, array_job_id,
                            array_task_id, nnodes, argv, exe, cwd, ntasks, local_tasks, ncpus, env, modules,
                            cpu_user_s, cpu_sys_s, max_rss_kib, stdout, stderr, tasks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                 ?22, ?23, ?24, ?25, ?26)",
        )?;
        let mut trows = tasks.query([])?;
        let mut mrows = mods.query([])?;
        let mut tnext: Option<(StepKey, TaskRow)> = None;
        // (position, module, file)
        type StepModule = (i64, i64, Option<String>);
        let mut mnext: Option<(StepKey, StepModule)> = None;
        let mut srows = steps.query([])?;
        while let Some(r) = srows.next()? {
            let key: StepKey = (r.get(0)?, r.get(1)?, r.get(2)?);
            let mut step_tasks = Vec::new();
            loop {
                if tnext.is_none() {
                    if let Some(t) = trows.next()? {
                        let task = TaskRow {
                            global_rank: t.get(3)?,
                            task_id: t.get(4)?,
                            exit_code: t.get(5)?,
                            signal: t.get(6)?,
                            core_dumped: t.get(7)?,
                            raw_status: t.get(8)?,
                            time: t.get(9)?,
                        };
                        tnext = Some(((t.get(0)?, t.get(1)?, t.get(2)?), task));
                    }
                }
                match tnext.take() {
                    // A task without its step cannot happen (one item carries both); skipped.
                    Some((k, _)) if k < key => continue,
                    Some((k, t)) if k == key => step_tasks.push(t),
                    other => {
                        tnext = other;
                        break;
                    }
                }
            }
            let mut step_mods = Vec::new();
            loop {
                if mnext.is_none() {
                    if let Some(m) = mrows.next()? {
                        mnext = Some(((m.get(0)?, m.get(1)?, m.get(2)?), (m.get(4)?, m.get(3)?, m.get(5)?)));
                    }
                }
                match mnext.take() {
                    Some((k, _)) if k < key => continue,
                    Some((k, m)) if k == key => step_mods.push(m),
                    other => {
                        mnext = other;
                        break;
                    }
                }
            }
            step_mods.sort();
            let list: store::ModuleList = step_mods.into_iter().map(|(_, module, file)| (module, file)).collect();
            let modules = match lists.get(&list) {
                Some(id) => *id,
                None => {
                    let id = store::module_list_id(conn, &list)?;
                    lists.insert(list, id);
                    id
                }
            };
            let seen_start: bool = r.get(3)?;
            let attrs = if seen_start {
                let t = |i: usize| r.get::<_, Option<String>>(i);
                Some(attrs_of((r.get(8)?, r.get(9)?, [t(10)?, t(11)?, t(12)?, t(13)?, t(14)?, None, t(25)?]))?)
            } else {
                None
            };
            let env = r.get::<_, Option<String>>(24)?.and_then(|h| envs.get(&h).copied());
            let end = r.get::<_, Option<i64>>(6)?.unwrap_or(0);
            let blob = (!step_tasks.is_empty()).then(|| store::encode_tasks(&step_tasks, end));
            insert.execute(rusqlite::params![
                key.0,
                host(&key.1)?,
                key.2,
                seen_start,
                r.get::<_, bool>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                attrs,
                r.get::<_, Option<i64>>(15)?,
                r.get::<_, Option<i64>>(16)?,
                r.get::<_, Option<i64>>(17)?,
                string(r.get(18)?)?,
                string(r.get(19)?)?,
                string(r.get(20)?)?,
                r.get::<_, Option<i64>>(21)?,
                r.get::<_, Option<i64>>(22)?,
                r.get::<_, Option<i64>>(23)?,
                env,
                modules,
                r.get::<_, Option<f64>>(26)?,
                r.get::<_, Option<f64>>(27)?,
                r.get::<_, Option<i64>>(28)?,
                r.get::<_, Option<String>>(29)?,
                r.get::<_, Option<String>>(30)?,
                blob,
            ])?;
        }
    }

    {
        let mut st = conn.prepare(
            "SELECT job, node, uid, user, account, partition, work_dir, exit_code, signal, core_dumped,
                    derived_exit_code, derived_signal, state, state_evidence, start, end, stdout, stderr, received_at
             FROM job_nodes_v2 ORDER BY job, node",
        )?;
        let mut insert = conn.prepare(
            "INSERT INTO job_nodes (job, node, attrs, exit_code, signal, core_dumped, derived_exit_code,
                                    derived_signal, state, state_evidence, start, end, stdout, stderr, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT id FROM states WHERE name = ?9), ?10, ?11, ?12, ?13,
                     ?14, ?15)",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let t = |i: usize| r.get::<_, Option<String>>(i);
            let attrs = attrs_of((r.get(2)?, None, [t(3)?, t(4)?, t(5)?, None, None, t(6)?, None]))?;
            let name: String = r.get(1)?;
            insert.execute(rusqlite::params![
                r.get::<_, i64>(0)?,
                host(&name)?,
                attrs,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, Option<i64>>(10)?,
                r.get::<_, Option<i64>>(11)?,
                r.get::<_, String>(12)?,
                t(13)?,
                r.get::<_, Option<i64>>(14)?,
                r.get::<_, i64>(15)?,
                t(16)?,
                t(17)?,
                r.get::<_, i64>(18)?,
            ])?;
        }
    }

    // Each job's modules become a module set.
    {
        let mut st = conn.prepare("SELECT job, module FROM job_modules ORDER BY job, module")?;
        let mut update = conn.prepare("UPDATE jobs SET module_set = ?2 WHERE id = ?1")?;
        let mut sets: HashMap<Vec<i64>, Option<i64>> = HashMap::new();
        let mut flush = |job: i64, modules: &mut Vec<i64>| -> rusqlite::Result<()> {
            let set = match sets.get(modules.as_slice()) {
                Some(id) => *id,
                None => {
                    let id = store::module_set_id(conn, modules)?;
                    sets.insert(modules.clone(), id);
                    id
                }
            };
            update.execute(rusqlite::params![job, set])?;
            modules.clear();
            Ok(())
        };
        let mut rows = st.query([])?;
        let mut cur: Option<i64> = None;
        let mut modules = Vec::new();
        while let Some(r) = rows.next()? {
            let job: i64 = r.get(0)?;
            if cur.is_some_and(|c| c != job) {
                flush(cur.unwrap_or_default(), &mut modules)?;
            }
            cur = Some(job);
            modules.push(r.get(1)?);
        }
        if let Some(job) = cur {
            flush(job, &mut modules)?;
        }
    }

    // Node lists in their compressed form (only lists of three or more nodes can change).
    {
        let mut st = conn.prepare("SELECT id, nodes FROM jobs WHERE nodes LIKE '%,%,%'")?;
        let mut update = conn.prepare("UPDATE jobs SET nodes = ?2 WHERE id = ?1")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let nodes: String = r.get(1)?;
            let short = store::compress_nodes(&nodes);
            if short != nodes {
                update.execute(rusqlite::params![r.get::<_, i64>(0)?, short])?;
            }
        }
    }

    conn.execute_batch(
        "DROP TABLE tasks; DROP TABLE step_modules; DROP TABLE job_modules; DROP TABLE steps_v2;
         DROP TABLE job_nodes_v2; DROP TABLE environments_v2;
         CREATE INDEX jobs_module_set ON jobs(module_set);",
    )?;
    crate::rollup::rebuild(conn)
}

/// What went wrong on the way to the ledger: the rejection counters ([`crate::rejections`]) and
/// the records nodes dropped from full outboxes ([`runledger_record::Batch::dropped`]), both read
/// by `collector audit`.
pub(crate) const V4_DELIVERY: &str = r#"
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

/// Version 5 (see the module documentation). The listing index's columns after `user, start`
/// must stay those the collector's `query` lean listing selects, or SQLite reads the table again.
pub(crate) const V5_LISTING: &str = r#"
DROP INDEX jobs_user;
CREATE INDEX jobs_user_listing ON jobs(user, start, end, job_id, array_job_id, array_task_id, job_name,
    account, partition, state, exit_code, signal, nnodes, nodes);
DROP INDEX jobs_program;
CREATE INDEX jobs_program ON jobs(program COLLATE NOCASE) WHERE program IS NOT NULL;
DROP INDEX jobs_outcome;
CREATE INDEX jobs_outcome ON jobs(outcome) WHERE outcome IS NOT NULL;
DROP INDEX jobs_category;
CREATE INDEX jobs_category ON jobs(category) WHERE category IS NOT NULL;
"#;

/// Retention (see the module documentation and [`crate::retention`]).
pub(crate) const V_RETENTION: &str = r#"
CREATE TABLE prunes (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    before INTEGER NOT NULL,
    drop_rollups INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    report TEXT NOT NULL
);

CREATE TABLE retiring (
    kind TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"#;

/// Export marks (see the module documentation); filled for the jobs already recorded.
pub(crate) const V_EXPORT_MARKS: &str = r#"
CREATE TABLE export_marks (
    cluster TEXT NOT NULL,
    month TEXT NOT NULL,
    changes INTEGER NOT NULL,
    PRIMARY KEY (cluster, month)
) WITHOUT ROWID;

INSERT INTO export_marks (cluster, month, changes)
    SELECT cluster, COALESCE(strftime('%Y-%m', start, 'unixepoch'), 'unknown'), 1 FROM jobs GROUP BY 1, 2;

CREATE TRIGGER export_mark_new AFTER INSERT ON jobs BEGIN
    INSERT INTO export_marks (cluster, month, changes)
        VALUES (NEW.cluster, COALESCE(strftime('%Y-%m', NEW.start, 'unixepoch'), 'unknown'), 1)
        ON CONFLICT (cluster, month) DO UPDATE SET changes = changes + 1;
END;

CREATE TRIGGER export_mark_job AFTER UPDATE ON jobs
WHEN OLD.array_job_id IS NOT NEW.array_job_id OR OLD.array_task_id IS NOT NEW.array_task_id OR OLD.user IS NOT NEW.user
     OR OLD.uid IS NOT NEW.uid OR OLD.account IS NOT NEW.account OR OLD.partition IS NOT NEW.partition
     OR OLD.qos IS NOT NEW.qos OR OLD.job_name IS NOT NEW.job_name OR OLD.start IS NOT NEW.start
     OR OLD.end IS NOT NEW.end OR OLD.state IS NOT NEW.state OR OLD.exit_code IS NOT NEW.exit_code
     OR OLD.signal IS NOT NEW.signal OR OLD.nnodes IS NOT NEW.nnodes OR OLD.ncpus IS NOT NEW.ncpus
     OR OLD.cpu_user_s IS NOT NEW.cpu_user_s OR OLD.cpu_sys_s IS NOT NEW.cpu_sys_s OR OLD.max_rss_kib IS NOT NEW.max_rss_kib
     OR OLD.nodes IS NOT NEW.nodes OR OLD.program IS NOT NEW.program OR OLD.outcome IS NOT NEW.outcome
     OR OLD.category IS NOT NEW.category OR OLD.module_set IS NOT NEW.module_set BEGIN
    INSERT INTO export_marks (cluster, month, changes)
        VALUES (NEW.cluster, COALESCE(strftime('%Y-%m', NEW.start, 'unixepoch'), 'unknown'), 1)
        ON CONFLICT (cluster, month) DO UPDATE SET changes = changes + 1;
END;

CREATE TRIGGER export_mark_fact AFTER INSERT ON facts BEGIN
    INSERT INTO export_marks (cluster, month, changes)
        SELECT cluster, COALESCE(strftime('%Y-%m', start, 'unixepoch'), 'unknown'), 1 FROM jobs WHERE id = NEW.job
        ON CONFLICT (cluster, month) DO UPDATE SET changes = changes + 1;
END;

CREATE TRIGGER export_mark_fact_value AFTER UPDATE ON facts
WHEN OLD.value IS NOT NEW.value OR OLD.unit IS NOT NEW.unit BEGIN
    INSERT INTO export_marks (cluster, month, changes)
        SELECT cluster, COALESCE(strftime('%Y-%m', start, 'unixepoch'), 'unknown'), 1 FROM jobs WHERE id = NEW.job
        ON CONFLICT (cluster, month) DO UPDATE SET changes = changes + 1;
END;

CREATE TRIGGER export_mark_moved AFTER UPDATE OF start ON jobs
WHEN COALESCE(strftime('%Y-%m', OLD.start, 'unixepoch'), 'unknown')
     IS NOT COALESCE(strftime('%Y-%m', NEW.start, 'unixepoch'), 'unknown') BEGIN
    INSERT INTO export_marks (cluster, month, changes)
        VALUES (OLD.cluster, COALESCE(strftime('%Y-%m', OLD.start, 'unixepoch'), 'unknown'), 1)
        ON CONFLICT (cluster, month) DO UPDATE SET changes = changes + 1;
END;
"#;

/// The jobs' Python processes and packages (see the module documentation).
pub(crate) const V_PYTHON: &str = r#"
CREATE TABLE py_packages (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    UNIQUE (name, version)
);

CREATE TABLE py_package_sets (
    id INTEGER PRIMARY KEY,
    packages TEXT NOT NULL UNIQUE
);

CREATE TABLE py_package_set_members (
    package INTEGER NOT NULL REFERENCES py_packages(id),
    package_set INTEGER NOT NULL REFERENCES py_package_sets(id),
    PRIMARY KEY (package, package_set)
) WITHOUT ROWID;

CREATE TABLE py_nodes (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node INTEGER NOT NULL REFERENCES hosts(id),
    skipped INTEGER NOT NULL DEFAULT 0,
    rejected TEXT,
    PRIMARY KEY (job, node)
) WITHOUT ROWID;

CREATE TABLE py_procs (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node INTEGER NOT NULL REFERENCES hosts(id),
    pid INTEGER NOT NULL,
    started INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    interpreter INTEGER NOT NULL REFERENCES strings(id),
    py_version TEXT NOT NULL,
    prefix INTEGER REFERENCES strings(id),
    base_prefix INTEGER REFERENCES strings(id),
    main INTEGER REFERENCES strings(id),
    packages INTEGER REFERENCES py_package_sets(id),
    ended TEXT NOT NULL,
    PRIMARY KEY (job, node, pid, started)
) WITHOUT ROWID;

ALTER TABLE jobs ADD COLUMN py_set INTEGER REFERENCES py_package_sets(id);
CREATE INDEX jobs_py_set ON jobs(py_set) WHERE py_set IS NOT NULL;

CREATE TRIGGER export_mark_packages AFTER UPDATE OF py_set ON jobs WHEN OLD.py_set IS NOT NEW.py_set BEGIN
    INSERT INTO export_marks (cluster, month, changes)
        VALUES (NEW.cluster, COALESCE(strftime('%Y-%m', NEW.start, 'unixepoch'), 'unknown'), 1)
        ON CONFLICT (cluster, month) DO UPDATE SET changes = changes + 1;
END;
"#;

/// Usage series (see the module documentation and [`crate::timeline`]).
pub(crate) const V_SERIES: &str = r#"
CREATE TABLE step_series (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node INTEGER NOT NULL REFERENCES hosts(id),
    step_id INTEGER NOT NULL,
    series BLOB NOT NULL
);
CREATE UNIQUE INDEX step_series_key ON step_series(job, node, step_id);
ALTER TABLE jobs ADD COLUMN idle_core_s REAL;
CREATE INDEX jobs_idle ON jobs(grp, idle_core_s) WHERE idle_core_s IS NOT NULL;
"#;

/// What a job asked for (see the module documentation): memory and time limit, per node record.
pub(crate) const V_ASKED: &str = r#"
ALTER TABLE job_nodes ADD COLUMN alloc_mem_mb INTEGER;
ALTER TABLE job_nodes ADD COLUMN time_limit_s INTEGER;
ALTER TABLE job_nodes ADD COLUMN time_limit_source INTEGER;
ALTER TABLE job_nodes ADD COLUMN time_limit_missing TEXT;
"#;

/// The rollups' cells (see [`crate::rollup`]): each group split by start month, module set or
/// Python package set, built from the jobs and their groups; `jobs.rollup_py` is the package set
/// the cells count (the merge writes `py_set` before it recomputes the job).
pub(crate) const V_CELLS: &str = r#"
ALTER TABLE jobs ADD COLUMN rollup_py INTEGER;
CREATE TABLE rollup_cells (
    dim INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    val INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    walls INTEGER NOT NULL,
    core_s INTEGER NOT NULL,
    eff_core_s INTEGER NOT NULL,
    cpu BLOB,
    eff_cpu BLOB,
    PRIMARY KEY (dim, grp, val)
) WITHOUT ROWID;
CREATE TABLE rollup_cell_walls (
    dim INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    val INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    walls BLOB NOT NULL,
    PRIMARY KEY (dim, grp, val, chunk)
);
"#;

pub(crate) const V_HISTS_IDLE: &str = r#"
CREATE TABLE rollup_hist (
    grp INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    hist BLOB NOT NULL,
    PRIMARY KEY (grp, chunk)
) WITHOUT ROWID;
CREATE TABLE rollup_cell_hist (
    dim INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    val INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    hist BLOB NOT NULL,
    PRIMARY KEY (dim, grp, val, chunk)
) WITHOUT ROWID;
ALTER TABLE rollup ADD COLUMN idle BLOB;
ALTER TABLE rollup_cells ADD COLUMN idle BLOB;
DROP TABLE rollup_walls;
DROP TABLE rollup_cell_walls;
"#;

/// Batches stored during a burst, merged later ([`crate::inbox`]).
pub(crate) const V_INBOX: &str = r#"
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    peer TEXT NOT NULL,
    body BLOB NOT NULL,
    error TEXT
);
"#;

/// Evidence and standard error as nothing (#17; see the module documentation): no table
/// changes, only what a value may be, so that a collector that would read them as empty does
/// not open the ledger.
pub(crate) const V_EVIDENCE: &str = "-- state_evidence and stderr may be an empty blob";

/// A step's CPU time in whole microseconds (see the module documentation).
pub(crate) const V_CPU_MICROS: &str = r#"
ALTER TABLE steps RENAME COLUMN cpu_user_s TO cpu_user_us;
ALTER TABLE steps RENAME COLUMN cpu_sys_s TO cpu_sys_us;
UPDATE steps SET cpu_user_us = round(cpu_user_us * 1000000), cpu_sys_us = round(cpu_sys_us * 1000000)
WHERE cpu_user_us IS NOT NULL OR cpu_sys_us IS NOT NULL;
"#;

/// A node record's output path as nothing (#17; see the module documentation): no table
/// changes, only what a value may be (so that a collector that would fail to read the blob does
/// not open the ledger), and the rows stored before packed as the merge now stores them.
pub(crate) const V_NODE_STDOUT: &str = r#"
UPDATE job_nodes SET stdout = x''
WHERE typeof(stdout) = 'text'
  AND stdout = (SELECT b.stdout FROM steps b WHERE b.job = job_nodes.job AND b.node = job_nodes.node
                                              AND b.step_id = 4294967291);
"#;
