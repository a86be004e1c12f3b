//! Merging node records into the ledger: idempotent, order-independent upserts.
//!
//! Every [`Item`] lands in the child table it describes, keyed so that applying it again
//! overwrites a row with the same values ([`crate::db`] lists the keys): a retried batch, a batch
//! whose items arrive in another order (a `StepEnd` before its `StepStart`, a `JobEnd` before
//! the steps) or the batches of several nodes of one job all end in the same rows. The `jobs`
//! row is never updated from an item directly: after a batch's items are applied, its aggregates
//! are recomputed from the child rows ([`recompute`]), with deterministic tie-breaks, so they
//! cannot depend on arrival order either.
//!
//! # Job identity
//!
//! Slurm reuses job ids (wrap-around at `MaxJobId`, or a reset controller state), so
//! `(cluster, job_id)` alone does not name a job. [`resolve_job`] picks the row once per
//! (batch, cluster, job id), from the union of the time spans ([`Item::span`]) of that batch's
//! items for the job: an existing row with the same cluster and job id matches when its
//! `[start, end]` overlaps the span within [`REUSE_SLACK_S`] seconds, and it does not already
//! hold the same (node, step) — or the same node's `JobEnd` — with a different start time (a
//! step cannot start twice). Of several matching rows the closest in time wins; with none, a new
//! row is created.
//!
//! # Group commit
//!
//! [`apply_group`] applies many batches in one transaction, each inside its own savepoint: a
//! batch that fails is rolled back alone and reported, the others commit together. A writer
//! that applies group after group passes its [`Cache`] of interned ids ([`apply_group_with`]).
//! The rollups' changes of the whole transaction wait in that cache and are written just
//! before the commit, each row once ([`crate::rollup::Deltas`]); a batch rolled back takes its
//! changes with it.

mod cache;
mod recompute;
pub use cache::Cache;
pub use recompute::{category_rank, outcome_rank, recompute, recompute_with, verdict, JobVerdict};

use crate::rows::TaskRow;
pub use crate::store::env_hash;
use crate::store::{self, Attrs};
use runledger_record::{Batch, Item, JobEnd, StepEnd, StepStart, Timestamp, STEP_BATCH};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// How far apart (seconds) a batch's span and a job row's span may be and still be one job.
pub const REUSE_SLACK_S: i64 = 60;

/// Why a batch was not merged.
#[derive(Debug)]
pub enum MergeError {
    /// The batch makes no sense (empty cluster, node…): the sender's bug, retrying won't help.
    Invalid(String),
    Db(rusqlite::Error),
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::Invalid(m) => write!(f, "invalid batch: {m}"),
            MergeError::Db(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for MergeError {}

impl From<rusqlite::Error> for MergeError {
    fn from(e: rusqlite::Error) -> Self {
        MergeError::Db(e)
    }
}

/// Checks what parsing cannot: every item names a cluster, a node and a job, and no record
/// appears twice (an epilog's spool holds one file per step and kind, so two differing copies
/// of one record can only be forged or corrupt, and no merge of them could be idempotent).
pub fn validate(batch: &Batch) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in batch.items.iter().enumerate() {
        let what = || format!("item {i} ({})", item.kind());
        let step = match item {
            Item::StepStart(s) => Some(s.step_id),
            Item::StepEnd(s) => Some(s.step_id),
            Item::JobEnd(_) => None,
        };
        if !seen.insert((item.kind(), item.cluster(), item.job_id(), item.node(), step)) {
            let step = step.map(|s| format!(" step {}", runledger_record::step_name(s))).unwrap_or_default();
            return Err(format!(
                "{} repeats the record of job {}{step} on node {}",
                what(),
                item.job_id(),
                item.node()
            ));
        }
        if item.cluster().trim().is_empty() {
            return Err(format!("{} has an empty cluster name", what()));
        }
        if item.node().trim().is_empty() {
            return Err(format!("{} has an empty node name", what()));
        }
        if item.job_id() == 0 {
            return Err(format!("{} has job id 0", what()));
        }
        let (start, end) = item.span();
        if end < start {
            return Err(format!("{} ends ({end}) before it starts ({start})", what()));
        }
    }
    Ok(())
}

/// Applies `batches` in one transaction, each in its own savepoint (a lone batch: the transaction).
///
/// Returns one result per batch (items applied, or why that batch was rolled back); `Err` when
/// the transaction as a whole could not be begun or committed, in which case nothing is stored.
pub fn apply_group(
    conn: &Connection,
    batches: &[&Batch],
    received_at: Timestamp,
) -> rusqlite::Result<Vec<Result<usize, MergeError>>> {
    apply_group_with(conn, &mut Cache::new(), batches, received_at)
}

/// [`apply_group`] with the writer's cache of interned ids, kept from one group to the next.
pub fn apply_group_with(
    conn: &Connection,
    cache: &mut Cache,
    batches: &[&Batch],
    received_at: Timestamp,
) -> rusqlite::Result<Vec<Result<usize, MergeError>>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let fail = |cache: &mut Cache, e| {
        // Nothing of this transaction stays: neither do the ids it added.
        cache.clear();
        let _ = conn.execute_batch("ROLLBACK");
        Err(e)
    };
    if let Err(e) = cache.begin(conn) {
        return fail(cache, e);
    }
    if let [batch] = batches {
        // One batch needs no savepoint of its own: the transaction is its savepoint. An open
        // savepoint copies every page the batch first touches to the statement journal (about
        // a tenth of the collector's CPU when each group is merged as one batch).
        return match apply_batch_with(conn, cache, batch, received_at) {
            Ok(n) => match cache.flush_rollups(conn).and_then(|()| conn.execute_batch("COMMIT")) {
                Ok(()) => {
                    cache.release_batch();
                    Ok(vec![Ok(n)])
                }
                Err(e) => fail(cache, e),
            },
            Err(e) => {
                cache.rollback_batch();
                if let Err(e2) = conn.execute_batch("ROLLBACK") {
                    return fail(cache, e2);
                }
                Ok(vec![Err(e)])
            }
        };
    }
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        if let Err(e) = conn.execute_batch("SAVEPOINT batch") {
            return fail(cache, e);
        }
        match apply_batch_with(conn, cache, batch, received_at) {
            Ok(n) => {
                if let Err(e) = conn.execute_batch("RELEASE batch") {
                    return fail(cache, e);
                }
                cache.release_batch();
                out.push(Ok(n));
            }
            Err(e) => {
                cache.rollback_batch();
                if let Err(e2) = conn.execute_batch("ROLLBACK TO batch; RELEASE batch") {
                    return fail(cache, e2);
                }
                out.push(Err(e));
            }
        }
    }
    if let Err(e) = cache.flush_rollups(conn).and_then(|()| conn.execute_batch("COMMIT")) {
        return fail(cache, e);
    }
    Ok(out)
}

/// Applies one batch (inside the caller's transaction). Returns the number of items applied.
pub fn apply_batch(conn: &Connection, batch: &Batch, received_at: Timestamp) -> Result<usize, MergeError> {
    let mut cache = Cache::new();
    let n = apply_batch_with(conn, &mut cache, batch, received_at)?;
    cache.flush_rollups(conn)?;
    Ok(n)
}

fn apply_batch_with(
    conn: &Connection,
    cache: &mut Cache,
    batch: &Batch,
    received_at: Timestamp,
) -> Result<usize, MergeError> {
    validate(batch).map_err(MergeError::Invalid)?;
    let mut groups: BTreeMap<(&str, u32), Vec<&Item>> = BTreeMap::new();
    for item in &batch.items {
        groups.entry((item.cluster(), item.job_id())).or_default().push(item);
    }
    for ((cluster, job_id), items) in groups {
        let job = resolve_job_with(conn, cache, cluster, job_id, &items)?;
        for item in &items {
            apply_item(conn, cache, job, item, received_at)?;
        }
        recompute_with(conn, cache, job)?;
    }
    if let Some(d) = batch.dropped.filter(|d| !d.is_zero()) {
        note_drops(conn, batch, &d, received_at)?;
    }
    Ok(batch.items.len())
}

/// Keeps the largest drop total each node has reported ([`runledger_record::Batch::dropped`]):
/// totals only grow, so a re-sent or reordered batch changes nothing.
fn note_drops(
    conn: &Connection,
    batch: &Batch,
    d: &runledger_record::DropCount,
    received_at: Timestamp,
) -> rusqlite::Result<()> {
    let cluster = batch.items.first().map(|i| i.cluster()).unwrap_or("");
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO node_drops (cluster, node, batches, items, bytes, last_drop, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (cluster, node) DO UPDATE SET
            batches = max(node_drops.batches, excluded.batches),
            items = max(node_drops.items, excluded.items),
            bytes = max(node_drops.bytes, excluded.bytes),
            last_drop = max(node_drops.last_drop, excluded.last_drop),
            reported_at = CASE WHEN excluded.batches > node_drops.batches
                               THEN excluded.reported_at ELSE node_drops.reported_at END",
    )?
    .execute(rusqlite::params![
        cluster,
        batch.sender,
        clamp(d.batches),
        clamp(d.items),
        clamp(d.bytes),
        d.last,
        received_at
    ])?;
    Ok(())
}

/// The time span of a set of items: earliest start, latest end.
fn union_span(items: &[&Item]) -> (Timestamp, Timestamp) {
    items.iter().map(|i| i.span()).fold((Timestamp::MAX, Timestamp::MIN), |(s, e), (s2, e2)| (s.min(s2), e.max(e2)))
}

/// Finds the job row these items (one cluster, one job id) belong to, creating it if none fits.
pub fn resolve_job(conn: &Connection, cluster: &str, job_id: u32, items: &[&Item]) -> rusqlite::Result<i64> {
    resolve_job_with(conn, &mut Cache::new(), cluster, job_id, items)
}

fn resolve_job_with(
    conn: &Connection,
    cache: &mut Cache,
    cluster: &str,
    job_id: u32,
    items: &[&Item],
) -> rusqlite::Result<i64> {
    let (span_start, span_end) = union_span(items);
    let mut candidates = Vec::new();
    {
        let mut st = conn.prepare_cached("SELECT id, start, end FROM jobs WHERE cluster = ?1 AND job_id = ?2")?;
        let rows = st.query_map(params![cluster, job_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?))
        })?;
        for row in rows {
            candidates.push(row?);
        }
    }
    let mut best: Option<(i64, i64)> = None; // (distance, id)
    for (id, start, end) in candidates {
        let Some(start) = start else { continue };
        let end = end.unwrap_or(start).max(start);
        if start - REUSE_SLACK_S > span_end || span_start > end + REUSE_SLACK_S {
            continue;
        }
        if conflicts(conn, cache, id, items)? {
            continue;
        }
        let distance = (start - span_start).abs() + (end - span_end).abs();
        if best.is_none_or(|(d, bid)| (distance, -id) < (d, -bid)) {
            best = Some((distance, id));
        }
    }
    if let Some((_, id)) = best {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO jobs (cluster, job_id, start, end) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![cluster, job_id, span_start, span_end])?;
    Ok(conn.last_insert_rowid())
}

/// Whether job row `job` already holds one of these steps (or node end records) started at
/// another time: then it is another instance of a reused job id.
///
/// A step's stored start comes from its StepStart once one was seen (`seen_start`), else from
/// its StepEnd; each kind of item is compared only with a start of its own kind, so a StepStart
/// and a StepEnd that disagree about the start merge the same way in any order and any number
/// of times (found by fuzzing: comparing a StepEnd with its StepStart's start made a re-sent
/// batch look like a reused job id).
fn conflicts(conn: &Connection, cache: &mut Cache, job: i64, items: &[&Item]) -> rusqlite::Result<bool> {
    let mut step_q = conn.prepare_cached(
        "SELECT 1 FROM steps WHERE job = ?1 AND node = ?2 AND step_id = ?3
           AND seen_start = ?5 AND start IS NOT NULL AND start <> ?4",
    )?;
    let mut node_q = conn
        .prepare_cached("SELECT 1 FROM job_nodes WHERE job = ?1 AND node = ?2 AND start IS NOT NULL AND start <> ?3")?;
    for item in items {
        let hit = match item {
            Item::StepStart(s) => {
                let node = cache.host_id(conn, &s.node)?;
                step_q.exists(params![job, node, s.step_id, s.start, 1])?
            }
            Item::StepEnd(s) => {
                let node = cache.host_id(conn, &s.node)?;
                step_q.exists(params![job, node, s.step_id, s.start, 0])?
            }
            Item::JobEnd(j) => match j.start {
                Some(start) => {
                    let node = cache.host_id(conn, &j.node)?;
                    node_q.exists(params![job, node, start])?
                }
                None => false,
            },
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

fn apply_item(
    conn: &Connection,
    cache: &mut Cache,
    job: i64,
    item: &Item,
    received_at: Timestamp,
) -> rusqlite::Result<()> {
    match item {
        Item::StepStart(s) => apply_step_start(conn, cache, job, s),
        Item::StepEnd(s) => apply_step_end(conn, cache, job, s),
        Item::JobEnd(j) => apply_job_end(conn, cache, job, j, received_at),
    }
}

/// Which step's tag value wins when steps disagree: the batch step, then the lowest step id.
fn step_rank(step_id: u32) -> i64 {
    if step_id == STEP_BATCH {
        0
    } else {
        i64::from(step_id) + 1
    }
}

fn apply_step_start(conn: &Connection, cache: &mut Cache, job: i64, s: &StepStart) -> rusqlite::Result<()> {
    let node = cache.host_id(conn, &s.node)?;
    let attrs = cache.attrs_id(
        conn,
        &Attrs {
            uid: Some(i64::from(s.uid)),
            gid: Some(i64::from(s.gid)),
            user: non_empty(&s.user),
            account: s.account.as_deref(),
            partition: s.partition.as_deref(),
            qos: s.qos.as_deref(),
            job_name: s.job_name.as_deref(),
            work_dir: None,
            slurm_version: non_empty(&s.slurm_version),
        },
    )?;
    let argv = cache.string_id(conn, &serde_json::to_string(&s.argv).expect("strings serialize"))?;
    let exe = s.exe.as_deref().map(|e| cache.string_id(conn, e)).transpose()?;
    let cwd = s.cwd.as_deref().map(|c| cache.string_id(conn, c)).transpose()?;
    let env = cache.env_id(conn, &s.env)?;
    // A module listed twice keeps its last place and file.
    let mut by_module: BTreeMap<i64, (usize, Option<String>)> = BTreeMap::new();
    for (position, m) in s.modules.iter().enumerate() {
        let module = cache.module_id(conn, &m.name, m.version.as_deref().unwrap_or(""))?;
        by_module.insert(module, (position, m.file.clone()));
    }
    let mut list: Vec<(usize, i64, Option<String>)> = by_module.into_iter().map(|(m, (p, f))| (p, m, f)).collect();
    list.sort();
    let modules = cache.module_list_id(conn, &list.into_iter().map(|(_, m, f)| (m, f)).collect())?;
    conn.prepare_cached(
        "INSERT INTO steps (job, node, step_id, seen_start, start, node_id, attrs, array_job_id, array_task_id, nnodes,
                            argv, exe, cwd, ntasks, local_tasks, ncpus, env, modules)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (job, node, step_id) DO UPDATE SET
            seen_start = 1, start = excluded.start, node_id = excluded.node_id, attrs = excluded.attrs,
            array_job_id = excluded.array_job_id, array_task_id = excluded.array_task_id,
            nnodes = excluded.nnodes, argv = excluded.argv, exe = excluded.exe, cwd = excluded.cwd,
            ntasks = excluded.ntasks, local_tasks = excluded.local_tasks, ncpus = excluded.ncpus,
            env = excluded.env, modules = excluded.modules",
    )?
    .execute(params![
        job,
        node,
        s.step_id,
        s.start,
        s.node_id,
        attrs,
        s.array_job_id,
        s.array_task_id,
        s.nnodes,
        argv,
        exe,
        cwd,
        s.total_tasks,
        s.local_tasks,
        s.ncpus,
        env,
        modules,
    ])?;
    let rank = step_rank(s.step_id);
    for (key, value) in &s.tags {
        conn.prepare_cached(
            "INSERT INTO tags (job, key, value, step_rank) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (job, key) DO UPDATE SET value = excluded.value, step_rank = excluded.step_rank
             WHERE (excluded.step_rank, excluded.value) < (tags.step_rank, tags.value)",
        )?
        .execute(params![job, key, value, rank])?;
    }
    Ok(())
}

fn apply_step_end(conn: &Connection, cache: &mut Cache, job: i64, s: &StepEnd) -> rusqlite::Result<()> {
    let node = cache.host_id(conn, &s.node)?;
    // Tasks are kept by rank: a StepEnd sent again overwrites its ranks' exits and keeps others.
    // The stored tasks blob and end, and the stored output path (see store::batch_output_changed).
    type Stored = (Option<Vec<u8>>, Option<i64>);
    let old: Option<(Stored, Option<String>)> = conn
        .prepare_cached("SELECT tasks, end, stdout FROM steps WHERE job = ?1 AND node = ?2 AND step_id = ?3")?
        .query_row(params![job, node, s.step_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .optional()?;
    let (old, old_stdout) = old.map_or((None, None), |(stored, stdout)| (Some(stored), stdout));
    let mut tasks: BTreeMap<i64, TaskRow> = match old {
        Some((Some(b), end)) => {
            store::decode_tasks(&b, end.unwrap_or(0)).into_iter().map(|t| (t.global_rank, t)).collect()
        }
        _ => BTreeMap::new(),
    };
    for t in &s.tasks {
        let row = TaskRow {
            global_rank: t.global_rank.into(),
            task_id: t.task_id.into(),
            exit_code: t.status.code.into(),
            signal: t.status.signal.into(),
            core_dumped: t.status.core_dumped,
            raw_status: t.raw_status.into(),
            time: t.time,
        };
        tasks.insert(row.global_rank, row);
    }
    let tasks: Vec<TaskRow> = tasks.into_values().collect();
    let blob = (!tasks.is_empty()).then(|| store::encode_tasks(&tasks, s.end));
    conn.prepare_cached(
        "INSERT INTO steps (job, node, step_id, seen_end, start, end, cpu_user_us, cpu_sys_us, max_rss_kib, stdout,
                            stderr, tasks)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (job, node, step_id) DO UPDATE SET
            seen_end = 1, start = CASE WHEN steps.seen_start THEN steps.start ELSE excluded.start END,
            end = excluded.end, cpu_user_us = excluded.cpu_user_us, cpu_sys_us = excluded.cpu_sys_us,
            max_rss_kib = excluded.max_rss_kib, stdout = excluded.stdout, stderr = excluded.stderr,
            tasks = excluded.tasks",
    )?
    .execute(params![
        job,
        node,
        s.step_id,
        s.start,
        s.end,
        store::micros(s.cpu_user_s),
        store::micros(s.cpu_sys_s),
        s.max_rss_kib as i64,
        s.stdout,
        store::pack_stderr(s.stderr.as_deref(), s.stdout.as_deref()),
        blob
    ])?;
    if s.step_id == STEP_BATCH {
        store::batch_output_changed(conn, job, node, old_stdout.as_deref(), s.stdout.as_deref())?;
    }
    // The series, when the plugin sampled the step; an end without one leaves a stored one alone.
    if let Some(series) = &s.series {
        crate::timeline::store(conn, job, node, s.step_id, series)?;
    }
    Ok(())
}

fn apply_job_end(
    conn: &Connection,
    cache: &mut Cache,
    job: i64,
    j: &JobEnd,
    received_at: Timestamp,
) -> rusqlite::Result<()> {
    let derived = j.derived_exit;
    let node = cache.host_id(conn, &j.node)?;
    let attrs = cache.attrs_id(
        conn,
        &Attrs {
            uid: Some(i64::from(j.uid)),
            user: non_empty(&j.user),
            account: j.account.as_deref(),
            partition: j.partition.as_deref(),
            work_dir: j.work_dir.as_deref(),
            ..Default::default()
        },
    )?;
    // received_at is kept from the first delivery, so a retried batch changes nothing.
    let limit = j.time_limit.as_ref();
    conn.prepare_cached(
        "INSERT INTO job_nodes (job, node, attrs, exit_code, signal, core_dumped, derived_exit_code, derived_signal,
                                state, state_evidence, start, end, stdout, stderr, received_at, alloc_mem_mb,
                                time_limit_s, time_limit_source, time_limit_missing)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT id FROM states WHERE name = ?9), ?10, ?11, ?12, ?13, ?14, ?15,
                 ?16, ?17, ?18, ?19)
         ON CONFLICT (job, node) DO UPDATE SET
            attrs = excluded.attrs, exit_code = excluded.exit_code, signal = excluded.signal,
            core_dumped = excluded.core_dumped, derived_exit_code = excluded.derived_exit_code,
            derived_signal = excluded.derived_signal, state = excluded.state,
            state_evidence = excluded.state_evidence, start = excluded.start, end = excluded.end,
            stdout = excluded.stdout, stderr = excluded.stderr, alloc_mem_mb = excluded.alloc_mem_mb,
            time_limit_s = excluded.time_limit_s, time_limit_source = excluded.time_limit_source,
            time_limit_missing = excluded.time_limit_missing",
    )?
    .execute(params![
        job,
        node,
        attrs,
        j.exit.code,
        j.exit.signal,
        j.exit.core_dumped,
        derived.map(|d| d.code),
        derived.map(|d| d.signal),
        j.state.as_str(),
        store::pack_evidence(j.state_evidence.clone(), Some(j.exit.code.into()), Some(j.exit.signal.into())),
        j.start,
        j.end,
        store::pack_node_stdout(conn, job, node, j.stdout.as_deref())?,
        store::pack_stderr(j.stderr.as_deref(), j.stdout.as_deref()),
        received_at,
        j.alloc_mem_mb.and_then(|m| i64::try_from(m).ok()),
        limit.and_then(|l| l.seconds).and_then(|s| i64::try_from(s).ok()),
        limit.map(|l| store::limit_source(l.source)),
        j.time_limit_missing,
    ])?;
    for f in &j.facts {
        conn.prepare_cached(
            "INSERT INTO facts (job, node, source, key, value, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (job, node, source, key) DO UPDATE SET value = excluded.value, unit = excluded.unit",
        )?
        .execute(params![job, j.node, f.source, f.key, f.value, f.unit])?;
    }
    crate::python::apply(conn, job, node, j.python.as_ref())?;
    Ok(())
}

fn non_empty(s: &str) -> Option<&str> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

#[cfg(test)]
pub(crate) mod tests;
