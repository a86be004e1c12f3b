//! `collector query`: read the ledger the way admins read sacct.
//!
//! The job list comes from the `jobs` table alone (its aggregates are kept current by the
//! merge), through the indexes its filters use ([`filter`]). What a row does not hold — modules,
//! tags, steps and tasks — is fetched for the whole result set in one query per kind
//! (`job IN json_each(?)`), never once per job, and only when the chosen output needs it.
//! Rendering lives in [`output`].

pub mod efficiency;
pub mod errors;
pub mod events;
pub mod filter;
pub mod jobfilter;
pub mod output;
pub mod report;
pub mod summary;
pub mod usage;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, Row};
use std::collections::{BTreeMap, HashMap};

/// One `jobs` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub cluster: String,
    pub job_id: i64,
    pub array_job_id: Option<i64>,
    pub array_task_id: Option<i64>,
    pub uid: Option<i64>,
    pub user: Option<String>,
    pub gid: Option<i64>,
    pub account: Option<String>,
    pub partition: Option<String>,
    pub qos: Option<String>,
    pub job_name: Option<String>,
    pub work_dir: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub state_evidence: Option<String>,
    pub nnodes: Option<i64>,
    pub ncpus: Option<i64>,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub cpu_seconds: f64,
    pub max_rss_kib: Option<i64>,
    pub nodes: Option<String>,
    pub env_hash: Option<String>,
    /// The job-level verdict from its solver logs (schema version 2).
    pub program: Option<String>,
    pub outcome: Option<String>,
    pub category: Option<String>,
    pub error: Option<String>,
}

const JOB_COLUMNS: &str = "id, cluster, job_id, array_job_id, array_task_id, uid, user, gid, account, partition, \
     qos, job_name, work_dir, start, end, state, exit_code, signal, state_evidence, nnodes, ncpus, cpu_user_s, \
     cpu_sys_s, cpu_seconds, max_rss_kib, nodes, env_hash, program, outcome, category, error";

impl JobRow {
    fn from_row(r: &Row) -> rusqlite::Result<JobRow> {
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
            state_evidence: r.get(18)?,
            nnodes: r.get(19)?,
            ncpus: r.get(20)?,
            cpu_user_s: r.get(21)?,
            cpu_sys_s: r.get(22)?,
            cpu_seconds: r.get(23)?,
            max_rss_kib: r.get(24)?,
            nodes: r.get(25)?,
            env_hash: r.get(26)?,
            program: r.get(27)?,
            outcome: r.get(28)?,
            category: r.get(29)?,
            error: r.get(30)?,
        })
    }

    /// sacct's JobID: `ARRAYID_TASK` for an array task, else the job id.
    pub fn display_id(&self) -> String {
        match (self.array_job_id, self.array_task_id) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => self.job_id.to_string(),
        }
    }

    pub fn elapsed(&self) -> Option<i64> {
        Some((self.end? - self.start?).max(0))
    }

    pub fn node_list(&self) -> Vec<String> {
        self.nodes.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
}

/// The jobs matching `filter`, oldest first; with `limit`, the newest `limit` of them.
pub fn find_jobs(conn: &Connection, filter: &filter::Filter, limit: Option<usize>) -> rusqlite::Result<Vec<JobRow>> {
    let (cond, params) = filter.to_sql();
    let sql = match limit {
        Some(n) => format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {cond} ORDER BY start DESC, id DESC LIMIT {n}"),
        None => format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {cond} ORDER BY start, id"),
    };
    let mut st = conn.prepare(&sql)?;
    let mut rows: Vec<JobRow> = st.query_map(params_from_iter(params), JobRow::from_row)?.collect::<Result<_, _>>()?;
    if limit.is_some() {
        rows.reverse();
    }
    Ok(rows)
}

/// All rows of one job id (several when Slurm reused it), newest first.
pub fn find_job(conn: &Connection, sel: &filter::JobSel, clusters: &[String]) -> rusqlite::Result<Vec<JobRow>> {
    let filter = filter::Filter { jobs: vec![sel.clone()], clusters: clusters.to_vec(), ..Default::default() };
    let (cond, params) = filter.to_sql();
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {cond} ORDER BY start DESC, id DESC");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(params), JobRow::from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// One fact as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactValue {
    pub value: String,
    pub unit: Option<String>,
}

/// The job-level facts (`source = ''`) of each job, key → value: of several nodes, the first by
/// name that has the key; `program`, `outcome`, `failure_category` and `error` as in the job row
/// (the worst node's, see [`crate::merge::verdict`]).
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
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| crate::merge::natural_cmp(&a.1, &b.1)));
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
fn id_list(ids: &[i64]) -> Value {
    Value::Text(serde_json::to_string(ids).expect("integers serialize"))
}

/// Modules (`name/version`) of each job, in name order.
pub fn modules_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    let mut st = conn.prepare_cached(
        "SELECT jm.job, m.name, m.version FROM job_modules jm JOIN modules m ON m.id = jm.module
         WHERE jm.job IN (SELECT value FROM json_each(?1)) ORDER BY jm.job, m.name, m.version",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        let (job, name, version): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let full = if version.is_empty() { name } else { format!("{name}/{version}") };
        out.entry(job).or_default().push(full);
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskRow {
    pub global_rank: i64,
    pub task_id: i64,
    pub exit_code: i64,
    pub signal: i64,
    pub core_dumped: bool,
    pub raw_status: i64,
    pub time: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRow {
    pub node: String,
    pub step_id: i64,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub argv: Vec<String>,
    pub exe: Option<String>,
    pub cwd: Option<String>,
    pub ntasks: Option<i64>,
    pub local_tasks: Option<i64>,
    pub ncpus: Option<i64>,
    pub env_hash: Option<String>,
    pub cpu_user_s: Option<f64>,
    pub cpu_sys_s: Option<f64>,
    pub max_rss_kib: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub slurm_version: Option<String>,
    pub tasks: Vec<TaskRow>,
}

impl StepRow {
    pub fn name(&self) -> String {
        runledger_record::step_name(self.step_id as u32)
    }

    /// Batch step first, then by step id, then node.
    fn sort_key(&self) -> (bool, i64, String) {
        (self.step_id != i64::from(runledger_record::STEP_BATCH), self.step_id, self.node.clone())
    }
}

/// Steps (with their tasks) of each job: batch step first, then by step id and node.
pub fn steps_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<StepRow>>> {
    let mut out: HashMap<i64, Vec<StepRow>> = HashMap::new();
    let mut st = conn.prepare_cached(
        "SELECT job, node, step_id, start, end, argv, exe, cwd, ntasks, local_tasks, ncpus, env_hash, cpu_user_s,
                cpu_sys_s, max_rss_kib, stdout, stderr, slurm_version
         FROM steps WHERE job IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    let mut index: HashMap<(i64, String, i64), (i64, usize)> = HashMap::new();
    while let Some(r) = rows.next()? {
        let job: i64 = r.get(0)?;
        let argv: Option<String> = r.get(5)?;
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
            stdout: r.get(15)?,
            stderr: r.get(16)?,
            slurm_version: r.get(17)?,
            tasks: Vec::new(),
        };
        let v = out.entry(job).or_default();
        index.insert((job, step.node.clone(), step.step_id), (job, v.len()));
        v.push(step);
    }
    let mut st = conn.prepare_cached(
        "SELECT job, node, step_id, global_rank, task_id, exit_code, signal, core_dumped, raw_status, time
         FROM tasks WHERE job IN (SELECT value FROM json_each(?1)) ORDER BY global_rank",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        let key: (i64, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let task = TaskRow {
            global_rank: r.get(3)?,
            task_id: r.get(4)?,
            exit_code: r.get(5)?,
            signal: r.get(6)?,
            core_dumped: r.get(7)?,
            raw_status: r.get(8)?,
            time: r.get(9)?,
        };
        // A task whose step row is missing cannot happen (same item); skip rather than panic.
        if let Some(&(job, i)) = index.get(&key) {
            if let Some(s) = out.get_mut(&job).and_then(|v| v.get_mut(i)) {
                s.tasks.push(task);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|a| a.sort_key());
    }
    Ok(out)
}

/// One node's end record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRow {
    pub node: String,
    pub state: String,
    pub exit_code: i64,
    pub signal: i64,
    pub core_dumped: bool,
    pub derived_exit: Option<(i64, i64)>,
    pub state_evidence: Option<String>,
    pub start: Option<i64>,
    pub end: i64,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub received_at: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepModule {
    pub node: String,
    pub step_id: i64,
    pub name: String,
    pub version: String,
    pub file: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventRow {
    pub time: i64,
    pub node: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactRow {
    pub node: String,
    pub source: String,
    pub key: String,
    pub value: String,
    pub unit: Option<String>,
}

/// Everything known about one job row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobDetail {
    pub job: JobRow,
    pub nodes: Vec<NodeRow>,
    pub steps: Vec<StepRow>,
    pub modules: Vec<StepModule>,
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
    pub tags: BTreeMap<String, String>,
    pub events: Vec<EventRow>,
    pub facts: Vec<FactRow>,
}

pub fn job_detail(conn: &Connection, job: JobRow) -> rusqlite::Result<JobDetail> {
    let id = job.id;
    let nodes = conn
        .prepare_cached(
            "SELECT node, state, exit_code, signal, core_dumped, derived_exit_code, derived_signal, state_evidence,
                    start, end, stdout, stderr, received_at
             FROM job_nodes WHERE job = ?1",
        )?
        .query_map([id], |r| {
            let dc: Option<i64> = r.get(5)?;
            let ds: Option<i64> = r.get(6)?;
            Ok(NodeRow {
                node: r.get(0)?,
                state: r.get(1)?,
                exit_code: r.get(2)?,
                signal: r.get(3)?,
                core_dumped: r.get(4)?,
                derived_exit: dc.map(|c| (c, ds.unwrap_or(0))),
                state_evidence: r.get(7)?,
                start: r.get(8)?,
                end: r.get(9)?,
                stdout: r.get(10)?,
                stderr: r.get(11)?,
                received_at: r.get(12)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut nodes = nodes;
    nodes.sort_by(|a, b| crate::merge::natural_cmp(&a.node, &b.node));
    let steps = steps_of(conn, &[id])?.remove(&id).unwrap_or_default();
    let modules = conn
        .prepare_cached(
            "SELECT sm.node, sm.step_id, m.name, m.version, sm.file FROM step_modules sm
             JOIN modules m ON m.id = sm.module WHERE sm.job = ?1 ORDER BY sm.step_id, sm.node, sm.position",
        )?
        .query_map([id], |r| {
            Ok(StepModule { node: r.get(0)?, step_id: r.get(1)?, name: r.get(2)?, version: r.get(3)?, file: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut environments = BTreeMap::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT hash, content FROM environments
             WHERE hash IN (SELECT env_hash FROM steps WHERE job = ?1) OR hash = ?2",
        )?;
        let mut rows = st.query(params![id, job.env_hash])?;
        while let Some(r) = rows.next()? {
            let (hash, content): (String, String) = (r.get(0)?, r.get(1)?);
            environments.insert(hash, serde_json::from_str(&content).unwrap_or_default());
        }
    }
    let tags = tags_of(conn, &[id])?.remove(&id).unwrap_or_default();
    let events = conn
        .prepare_cached(
            "SELECT time, node, kind, detail FROM events WHERE job = ?1
             ORDER BY time, CASE kind WHEN 'step_started' THEN 0 WHEN 'task_exited' THEN 1
                                      WHEN 'step_ended' THEN 2 ELSE 3 END, node, detail",
        )?
        .query_map([id], |r| Ok(EventRow { time: r.get(0)?, node: r.get(1)?, kind: r.get(2)?, detail: r.get(3)? }))?
        .collect::<Result<Vec<_>, _>>()?;
    let facts = conn
        .prepare_cached("SELECT node, source, key, value, unit FROM facts WHERE job = ?1 ORDER BY node, source, key")?
        .query_map([id], |r| {
            Ok(FactRow { node: r.get(0)?, source: r.get(1)?, key: r.get(2)?, value: r.get(3)?, unit: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JobDetail { job, nodes, steps, modules, environments, tags, events, facts })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod analysis_tests;
