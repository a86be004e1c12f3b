//! `collector query`: read the ledger the way admins read sacct.
//!
//! The job list comes from the `jobs` table alone (its aggregates are kept current by the
//! merge), through the indexes its filters use ([`filter`]). What a row does not hold — modules,
//! tags, steps and tasks — is fetched for the whole result set in one query per kind
//! (`job IN json_each(?)`), never once per job, and only when the chosen output needs it.
//! Rendering lives in [`output`].

pub mod detail;
pub mod efficiency;
pub mod errors;
pub mod events;
pub mod filter;
pub mod jobeff;
pub mod jobfilter;
pub mod output;
pub mod packages;
pub mod report;
pub mod rollups;
pub mod summary;
pub mod text;
pub mod timeline;
pub mod usage;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, Row};
use std::collections::{BTreeMap, HashMap};

pub use runledger_ledger::rows::*;

/// The `jobs` columns a [`JobRow`] is read from, in order, and whether a listing of the
/// [`output::LEAN_FIELDS`] needs them. Those needed are exactly the columns of the index
/// `jobs_user_listing` (schema version 5), so a user's listing never reads the table.
const JOB_COLUMNS: [(&str, bool); 31] = [
    ("id", true),
    ("cluster", false),
    ("job_id", true),
    ("array_job_id", true),
    ("array_task_id", true),
    ("uid", false),
    ("user", true),
    ("gid", false),
    ("account", true),
    ("partition", true),
    ("qos", false),
    ("job_name", true),
    ("work_dir", false),
    ("start", true),
    ("end", true),
    ("state", true),
    ("exit_code", true),
    ("signal", true),
    ("state_evidence", false),
    ("nnodes", true),
    ("ncpus", false),
    ("cpu_user_s", false),
    ("cpu_sys_s", false),
    ("cpu_seconds", false),
    ("max_rss_kib", false),
    ("nodes", true),
    ("env", false),
    ("program", false),
    ("outcome", false),
    ("category", false),
    ("error", false),
];

/// The select list of [`JOB_COLUMNS`]; `lean`: NULL (and defaults) for what a lean listing
/// does not show. Reading a column costs more than finding its row (70 ns a value): a listing of
/// thousands of jobs reads half as many.
fn job_columns(lean: bool) -> String {
    JOB_COLUMNS
        .iter()
        .map(|&(c, needed)| match (lean && !needed, c) {
            (false, c) => c,
            (true, "cpu_user_s" | "cpu_sys_s" | "cpu_seconds") => "0.0",
            (true, "cluster") => "''",
            (true, _) => "NULL",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `jobs` row read back in [`JOB_COLUMNS`] order.
fn job_row(r: &Row) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        cluster: r.get(1)?,
        job_id: r.get(2)?,
        array_job_id: r.get(3)?,
        array_task_id: r.get(4)?,
        uid: r.get(5)?,
        user: r.get(6)?,
        gid: r.get(7)?,
        account: r.get(8)?,
        partition: r.get(9)?,
        qos: r.get(10)?,
        job_name: r.get(11)?,
        work_dir: r.get(12)?,
        start: r.get(13)?,
        end: r.get(14)?,
        state: r.get(15)?,
        exit_code: r.get(16)?,
        signal: r.get(17)?,
        state_evidence: runledger_ledger::store::evidence_at(r, 18, r.get(16)?, r.get(17)?)?,
        nnodes: r.get(19)?,
        ncpus: r.get(20)?,
        cpu_user_s: r.get(21)?,
        cpu_sys_s: r.get(22)?,
        cpu_seconds: r.get(23)?,
        max_rss_kib: r.get(24)?,
        nodes: r.get::<_, Option<String>>(25)?.map(|n| {
            if n.contains('[') {
                runledger_ledger::store::expand_nodes(&n)
            } else {
                n
            }
        }),
        // The id for now: [`each_job`] puts the hash in (a lookup per row would cost
        // as much as reading the row).
        env_hash: r.get::<_, Option<i64>>(26)?.map(|id| id.to_string()),
        program: r.get(27)?,
        outcome: r.get(28)?,
        category: r.get(29)?,
        error: r.get(30)?,
    })
}

/// The jobs matching `filter`, oldest first; with `limit`, the newest `limit` of them.
pub fn find_jobs(conn: &Connection, filter: &filter::Filter, limit: Option<usize>) -> rusqlite::Result<Vec<JobRow>> {
    find_jobs_with(conn, filter, limit, false)
}

/// [`find_jobs`]; `lean`: only the columns [`output::LEAN_FIELDS`] show (others None or 0).
pub fn find_jobs_with(
    conn: &Connection,
    filter: &filter::Filter,
    limit: Option<usize>,
    lean: bool,
) -> rusqlite::Result<Vec<JobRow>> {
    let mut rows = Vec::new();
    each_job(conn, filter, limit, lean, |j| rows.push(j))?;
    if limit.is_some() {
        rows.reverse();
    }
    Ok(rows)
}

/// Hands each job [`find_jobs_with`] finds to `each` as it is read, without keeping it: oldest
/// first, or with `limit` newest first. A listing of thousands of jobs then fills one text
/// buffer ([`output::Listing`]) instead of thousands of rows of a dozen strings each.
pub fn each_job(
    conn: &Connection,
    filter: &filter::Filter,
    limit: Option<usize>,
    lean: bool,
    mut each: impl FnMut(JobRow),
) -> rusqlite::Result<()> {
    let (sql, params) = listing_sql(filter, limit, lean);
    let mut st = conn.prepare(&sql)?;
    let mut rows = st.query(params_from_iter(params))?;
    // Environment id -> hash, read once if a row has one (a lookup per row would cost as much as
    // reading the row).
    let mut hashes: Option<HashMap<String, String>> = None;
    while let Some(r) = rows.next()? {
        let mut j = job_row(r)?;
        if let Some(id) = j.env_hash.take() {
            if hashes.is_none() {
                let mut st = conn.prepare_cached("SELECT id, hash FROM environments")?;
                let all = st.query_map([], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))?;
                hashes = Some(all.collect::<Result<_, _>>()?);
            }
            j.env_hash = hashes.as_ref().and_then(|h| h.get(&id).cloned());
        }
        each(j);
    }
    Ok(())
}

/// The `jobs` row with this row id (its environment left as an id: the idle listing shows none).
pub fn find_job_by_row(conn: &Connection, id: i64) -> rusqlite::Result<Option<JobRow>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(&format!("SELECT {} FROM jobs WHERE id = ?1", job_columns(false)))?
        .query_row([id], job_row)
        .optional()
}

/// The statement [`find_jobs_with`] runs, and its parameters.
fn listing_sql(filter: &filter::Filter, limit: Option<usize>, lean: bool) -> (String, Vec<Value>) {
    let (cond, params) = filter.to_sql();
    let cols = job_columns(lean);
    let sql = match limit {
        Some(n) => format!("SELECT {cols} FROM jobs WHERE {cond} ORDER BY start DESC, id DESC LIMIT {n}"),
        None => format!("SELECT {cols} FROM jobs WHERE {cond} ORDER BY start, id"),
    };
    (sql, params)
}

/// All rows of one job id (several when Slurm reused it), newest first.
pub fn find_job(conn: &Connection, sel: &filter::JobSel, clusters: &[String]) -> rusqlite::Result<Vec<JobRow>> {
    let filter = filter::Filter { jobs: vec![sel.clone()], clusters: clusters.to_vec(), ..Default::default() };
    let mut rows = find_jobs_with(conn, &filter, None, false)?;
    rows.reverse();
    Ok(rows)
}

/// The job-level facts (`source = ''`) of each job, key → value: of several nodes, the first by
/// name that has the key; `program`, `outcome`, `failure_category` and `error` as in the job row
/// (the worst node's, see [`runledger_ledger::merge::verdict`]).
pub fn job_facts_of(conn: &Connection, rows: &[JobRow]) -> rusqlite::Result<HashMap<i64, BTreeMap<String, FactValue>>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut out: HashMap<i64, BTreeMap<String, FactValue>> = HashMap::new();
    let mut found: Vec<(i64, String, String, FactValue)> = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT job, node, key, value, unit FROM facts WHERE source = '' AND job IN (SELECT value FROM json_each(?1))",
        )?;
        let mut q = st.query([id_list(&ids)])?;
        while let Some(r) = q.next()? {
            found.push((r.get(0)?, r.get(1)?, r.get(2)?, FactValue { value: r.get(3)?, unit: r.get(4)? }));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| runledger_ledger::names::natural_cmp(&a.1, &b.1)));
    for (job, _, key, v) in found {
        out.entry(job).or_default().entry(key).or_insert(v);
    }
    for r in rows {
        let pairs =
            [("program", &r.program), ("outcome", &r.outcome), ("failure_category", &r.category), ("error", &r.error)];
        for (k, v) in pairs {
            if let Some(v) = v {
                out.entry(r.id).or_default().insert(k.to_string(), FactValue { value: v.clone(), unit: None });
            }
        }
    }
    Ok(out)
}

/// The job row ids as one JSON array parameter, for `job IN (SELECT value FROM json_each(?))`.
pub(crate) fn id_list(ids: &[i64]) -> Value {
    Value::Text(serde_json::to_string(ids).expect("integers serialize"))
}

/// Every module: id -> (name, version).
pub fn module_names(conn: &Connection) -> rusqlite::Result<HashMap<i64, (String, String)>> {
    let mut st = conn.prepare_cached("SELECT id, name, version FROM modules")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
    rows.collect()
}

/// `name/version`, or `name` for a module without a version.
pub fn full_name(name: &str, version: &str) -> String {
    if version.is_empty() {
        name.to_string()
    } else {
        format!("{name}/{version}")
    }
}

/// Modules (`name/version`) of each job, in name order.
pub fn modules_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    let names = module_names(conn)?;
    let mut st = conn.prepare_cached(
        "SELECT j.id, s.modules FROM jobs j JOIN module_sets s ON s.id = j.module_set
         WHERE j.id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        let mut mods: Vec<&(String, String)> = runledger_ledger::store::parse_module_set(r.get_ref(1)?.as_str()?)
            .iter()
            .filter_map(|m| names.get(m))
            .collect();
        mods.sort();
        out.insert(r.get(0)?, mods.into_iter().map(|(n, v)| full_name(n, v)).collect());
    }
    Ok(out)
}

pub fn tags_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, BTreeMap<String, String>>> {
    let mut out: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
    let mut st =
        conn.prepare_cached("SELECT job, key, value FROM tags WHERE job IN (SELECT value FROM json_each(?1))")?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().insert(r.get(1)?, r.get(2)?);
    }
    Ok(out)
}

pub fn steps_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<StepRow>>> {
    let mut out: HashMap<i64, Vec<StepRow>> = HashMap::new();
    let mut st = conn.prepare_cached(
        "SELECT s.job, h.name, s.step_id, s.start, s.end, argv.value, exe.value, cwd.value, s.ntasks, s.local_tasks,
                s.ncpus, e.hash, s.cpu_user_us / 1e6, s.cpu_sys_us / 1e6, s.max_rss_kib, s.stdout, s.stderr, a.slurm_version,
                s.tasks
         FROM steps s JOIN hosts h ON h.id = s.node
              LEFT JOIN strings argv ON argv.id = s.argv LEFT JOIN strings exe ON exe.id = s.exe
              LEFT JOIN strings cwd ON cwd.id = s.cwd LEFT JOIN environments e ON e.id = s.env
              LEFT JOIN attrs a ON a.id = s.attrs
         WHERE s.job IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        let job: i64 = r.get(0)?;
        let argv: Option<String> = r.get(5)?;
        let stdout: Option<String> = r.get(15)?;
        let stderr = runledger_ledger::store::stderr_at(r, 16, stdout.as_deref())?;
        let step = StepRow {
            node: r.get(1)?,
            step_id: r.get(2)?,
            start: r.get(3)?,
            end: r.get(4)?,
            argv: argv.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default(),
            exe: r.get(6)?,
            cwd: r.get(7)?,
            ntasks: r.get(8)?,
            local_tasks: r.get(9)?,
            ncpus: r.get(10)?,
            env_hash: r.get(11)?,
            cpu_user_s: r.get(12)?,
            cpu_sys_s: r.get(13)?,
            max_rss_kib: r.get(14)?,
            stdout,
            stderr,
            slurm_version: r.get(17)?,
            tasks: r
                .get_ref(18)?
                .as_blob_or_null()?
                .map(|b| {
                    runledger_ledger::store::decode_tasks(b, r.get::<_, Option<i64>>(4).ok().flatten().unwrap_or(0))
                })
                .unwrap_or_default(),
        };
        out.entry(job).or_default().push(step);
    }
    for v in out.values_mut() {
        v.sort_by_key(|a| a.sort_key());
    }
    Ok(out)
}

pub fn job_detail(conn: &Connection, job: JobRow) -> rusqlite::Result<JobDetail> {
    let id = job.id;
    let nodes = conn
        .prepare_cached(&format!(
            "SELECT h.name, st.name, n.exit_code, n.signal, n.core_dumped, n.derived_exit_code, n.derived_signal,
                    n.state_evidence, n.start, n.end, {}, n.stderr, n.received_at, n.alloc_mem_mb,
                    n.time_limit_s, {}, n.time_limit_missing
             FROM job_nodes n JOIN hosts h ON h.id = n.node JOIN states st ON st.id = n.state WHERE n.job = ?1",
            runledger_ledger::store::NODE_STDOUT_SQL,
            runledger_ledger::store::LIMIT_SOURCE_SQL
        ))?
        .query_map([id], |r| {
            let dc: Option<i64> = r.get(5)?;
            let ds: Option<i64> = r.get(6)?;
            let stdout: Option<String> = r.get(10)?;
            let stderr = runledger_ledger::store::stderr_at(r, 11, stdout.as_deref())?;
            Ok(NodeRow {
                node: r.get(0)?,
                state: r.get(1)?,
                exit_code: r.get(2)?,
                signal: r.get(3)?,
                core_dumped: r.get(4)?,
                derived_exit: dc.map(|c| (c, ds.unwrap_or(0))),
                state_evidence: runledger_ledger::store::evidence_at(r, 7, r.get(2)?, r.get(3)?)?,
                start: r.get(8)?,
                end: r.get(9)?,
                stdout,
                stderr,
                received_at: r.get(12)?,
                alloc_mem_mb: r.get(13)?,
                time_limit_s: r.get(14)?,
                time_limit_source: r.get(15)?,
                time_limit_missing: r.get(16)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut nodes = nodes;
    nodes.sort_by(|a, b| runledger_ledger::names::natural_cmp(&a.node, &b.node));
    let steps = steps_of(conn, &[id])?.remove(&id).unwrap_or_default();
    // Each step's modules in load order; steps by id, then node name (as a text), as they were listed.
    let mut modules = Vec::new();
    {
        let names = module_names(conn)?;
        let mut st = conn.prepare_cached(
            "SELECT h.name, s.step_id, l.items FROM steps s JOIN hosts h ON h.id = s.node
             JOIN module_lists l ON l.id = s.modules WHERE s.job = ?1 ORDER BY s.step_id, h.name",
        )?;
        let mut rows = st.query([id])?;
        while let Some(r) = rows.next()? {
            let (node, step_id): (String, i64) = (r.get(0)?, r.get(1)?);
            for (m, file) in runledger_ledger::store::parse_module_list(r.get_ref(2)?.as_str()?) {
                let Some((name, version)) = names.get(&m) else { continue };
                let file = match file {
                    Some(id) => {
                        conn.prepare_cached("SELECT value FROM strings WHERE id = ?1")?.query_row([id], |r| r.get(0))?
                    }
                    None => None,
                };
                modules.push(StepModule {
                    node: node.clone(),
                    step_id,
                    name: name.clone(),
                    version: version.clone(),
                    file,
                });
            }
        }
    }
    let mut environments = BTreeMap::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT hash, content FROM environments
             WHERE id IN (SELECT env FROM steps WHERE job = ?1) OR hash = ?2",
        )?;
        let mut rows = st.query(params![id, job.env_hash])?;
        while let Some(r) = rows.next()? {
            let (hash, content): (String, String) = (r.get(0)?, r.get(1)?);
            environments.insert(hash, serde_json::from_str(&content).unwrap_or_default());
        }
    }
    let tags = tags_of(conn, &[id])?.remove(&id).unwrap_or_default();
    let mut events = events_of(conn, &[id])?.remove(&id).unwrap_or_default();
    events.sort_by(|a, b| {
        (a.time, kind_order(&a.kind), &a.node, &a.detail).cmp(&(b.time, kind_order(&b.kind), &b.node, &b.detail))
    });
    let facts = conn
        .prepare_cached("SELECT node, source, key, value, unit FROM facts WHERE job = ?1 ORDER BY node, source, key")?
        .query_map([id], |r| {
            Ok(FactRow { node: r.get(0)?, source: r.get(1)?, key: r.get(2)?, value: r.get(3)?, unit: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let (python, python_nodes) = packages::python_of(conn, id)?;
    let (timeline, unreadable_series) = runledger_ledger::timeline::read(conn, id)?;
    Ok(JobDetail {
        job,
        nodes,
        steps,
        modules,
        environments,
        tags,
        events,
        facts,
        python,
        python_nodes,
        timeline,
        unreadable_series,
    })
}

/// The order of event kinds at one time: a step starts, its tasks exit, it ends, the job ends.
fn kind_order(kind: &str) -> u8 {
    match kind {
        "step_started" => 0,
        "task_exited" => 1,
        "step_ended" => 2,
        _ => 3,
    }
}

/// The events of each job, derived from what is stored: a step's start (`step_started`, when
/// its StepStart was merged) and end (`step_ended`, when its StepEnd was), each task's exit
/// (`task_exited`) and each node's end record (`job_ended`). Unordered.
pub fn events_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<EventRow>>> {
    let mut out: HashMap<i64, Vec<EventRow>> = HashMap::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT s.job, h.name, s.step_id, s.seen_start, s.start, s.seen_end, s.end, s.tasks
             FROM steps s JOIN hosts h ON h.id = s.node WHERE s.job IN (SELECT value FROM json_each(?1))",
        )?;
        let mut rows = st.query([id_list(ids)])?;
        while let Some(r) = rows.next()? {
            let v = out.entry(r.get(0)?).or_default();
            let node: String = r.get(1)?;
            let step = runledger_record::step_name(r.get::<_, i64>(2)? as u32);
            let event = |time: i64, kind: &str, detail: String| EventRow {
                time,
                node: node.clone(),
                kind: kind.to_string(),
                detail,
            };
            if let (true, Some(t)) = (r.get::<_, bool>(3)?, r.get::<_, Option<i64>>(4)?) {
                v.push(event(t, "step_started", format!("step={step}")));
            }
            let end = r.get::<_, Option<i64>>(6)?.unwrap_or(0);
            for t in r
                .get_ref(7)?
                .as_blob_or_null()?
                .map(|b| runledger_ledger::store::decode_tasks(b, end))
                .unwrap_or_default()
            {
                let detail =
                    format!("step={step} rank={} task={} exit={}:{}", t.global_rank, t.task_id, t.exit_code, t.signal);
                v.push(event(t.time, "task_exited", detail));
            }
            if let (true, Some(t)) = (r.get::<_, bool>(5)?, r.get::<_, Option<i64>>(6)?) {
                v.push(event(t, "step_ended", format!("step={step}")));
            }
        }
    }
    let mut st = conn.prepare_cached(
        "SELECT n.job, h.name, n.end, st.name, n.exit_code, n.signal
         FROM job_nodes n JOIN hosts h ON h.id = n.node JOIN states st ON st.id = n.state
         WHERE n.job IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        let (state, code, signal): (String, i64, i64) = (r.get(3)?, r.get(4)?, r.get(5)?);
        out.entry(r.get(0)?).or_default().push(EventRow {
            time: r.get(2)?,
            node: r.get(1)?,
            kind: "job_ended".into(),
            detail: format!("state={state} exit={code}:{signal}"),
        });
    }
    Ok(out)
}

/// Strings as small integers: grouping by a text or counting its distinct values then costs one
/// hash lookup, and no allocation for a value already seen (the scans see a million jobs and a
/// few hundred users).
#[derive(Default)]
pub(crate) struct Interner {
    ids: rustc_hash::FxHashMap<Box<[u8]>, u32>,
    texts: Vec<String>,
}

impl Interner {
    pub(crate) fn id(&mut self, t: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(t) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.ids.insert(t.into(), id);
        self.texts.push(String::from_utf8_lossy(t).into_owned());
        id
    }

    pub(crate) fn text(&self, id: u32) -> &str {
        &self.texts[id as usize]
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod analysis_tests;

#[cfg(test)]
mod timeline_tests;
