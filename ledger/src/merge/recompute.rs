//! The second half of a merge: a job row's aggregates recomputed from its child rows after the
//! items landed ([`recompute`]), and the job-level verdict from the solver-log facts
//! ([`verdict`]). Deterministic tie-breaks, so the row cannot depend on arrival order.

use crate::names::natural_cmp;
use crate::rollup;
use crate::store;
use runledger_record::{ExitStatus, JobState, STEP_BATCH};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};
use std::collections::BTreeMap;

/// The job-level attributes steps carry, first non-null in precedence order.
#[derive(Default)]
struct JobAttrs {
    uid: Option<i64>,
    gid: Option<i64>,
    user: Option<String>,
    account: Option<String>,
    partition: Option<String>,
    qos: Option<String>,
    job_name: Option<String>,
    array_job_id: Option<i64>,
    array_task_id: Option<i64>,
    env: Option<i64>,
    cwd: Option<String>,
    work_dir: Option<String>,
}

fn first<T>(slot: &mut Option<T>, v: Option<T>) {
    if slot.is_none() {
        *slot = v;
    }
}

/// Recomputes a job row's aggregates from its child rows.
///
/// - cpu (user, sys) = sums over all steps on all nodes, of whole microseconds, so exact in any
///   order (the total is a generated column);
///   max_rss = max over steps;
/// - start = earliest step or node start; end = latest step or node end;
/// - nodes = distinct nodes seen (natural order, runs as `n[01-64]`: [`store::compress_nodes`]);
///   nnodes = max(that count, steps' nnodes);
///   ncpus = Σ over nodes of the largest step ncpus on that node;
/// - state = worst [`JobState`] over the node records (UNKNOWN without any); exit code/signal =
///   worst [`ExitStatus::severity`]; evidence = from a node with the worst state;
/// - user, account, partition, … = first known value, batch step first, then steps by id, then
///   node records by node name; env = that of the batch step (else the first step's);
/// - module_set = every module any step loaded;
/// - program, outcome, category, error = the job-level verdict ([`verdict`]);
/// - idle_core_s = the allocated core-seconds left idle, from the steps' series
///   ([`crate::timeline::idle_of`]), moved in the rollups too ([`rollup::set_idle`]);
/// - then the job's contribution to the rollups moves from what the row said before to what it
///   says now ([`rollup::update_into`], written at commit).
pub fn recompute(conn: &Connection, job: i64) -> rusqlite::Result<()> {
    let mut cache = super::Cache::new();
    recompute_with(conn, &mut cache, job)?;
    cache.flush_rollups(conn)
}

/// [`recompute`] with the writer's cache of interned ids (the job's module set).
pub fn recompute_with(conn: &Connection, cache: &mut super::Cache, job: i64) -> rusqlite::Result<()> {
    let (old_grp, old, py, stored) = rollup::read_for_recompute(conn, job, &COLUMNS.join(", "))?;
    let (cpu_user, cpu_sys, max_rss, step_start, step_end, step_nnodes): (
        f64,
        f64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ) = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(cpu_user_us), 0) / 1e6, COALESCE(SUM(cpu_sys_us), 0) / 1e6, MAX(max_rss_kib), MIN(start),
                    MAX(COALESCE(end, start)), MAX(nnodes)
             FROM steps WHERE job = ?1",
        )?
        .query_row([job], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?;
    let ncpus: Option<i64> = conn
        .prepare_cached("SELECT SUM(m) FROM (SELECT MAX(ncpus) AS m FROM steps WHERE job = ?1 GROUP BY node)")?
        .query_row([job], |r| r.get(0))?;

    let mut attrs = JobAttrs::default();
    {
        let mut st = conn.prepare_cached(
            "SELECT a.uid, a.gid, a.user, a.account, a.partition, a.qos, a.job_name, s.array_job_id, s.array_task_id,
                    s.env, cwd.value
             FROM steps s JOIN hosts h ON h.id = s.node LEFT JOIN attrs a ON a.id = s.attrs
                  LEFT JOIN strings cwd ON cwd.id = s.cwd
             WHERE s.job = ?1 AND s.seen_start = 1
             ORDER BY s.step_id <> ?2, s.step_id, h.name",
        )?;
        let mut rows = st.query(params![job, STEP_BATCH])?;
        while let Some(r) = rows.next()? {
            first(&mut attrs.uid, r.get(0)?);
            first(&mut attrs.gid, r.get(1)?);
            first(&mut attrs.user, r.get(2)?);
            first(&mut attrs.account, r.get(3)?);
            first(&mut attrs.partition, r.get(4)?);
            first(&mut attrs.qos, r.get(5)?);
            first(&mut attrs.job_name, r.get(6)?);
            first(&mut attrs.array_job_id, r.get(7)?);
            first(&mut attrs.array_task_id, r.get(8)?);
            first(&mut attrs.env, r.get(9)?);
            first(&mut attrs.cwd, r.get(10)?);
        }
    }

    let mut state = JobState::Unknown;
    let mut exit: Option<ExitStatus> = None;
    let mut evidence: Vec<(JobState, String)> = Vec::new();
    let mut node_start: Option<i64> = None;
    let mut node_end: Option<i64> = None;
    let mut nodes: Vec<String> = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT h.name, a.uid, a.user, a.account, a.partition, a.work_dir, st.name, n.exit_code, n.signal,
                    n.state_evidence, n.start, n.end
             FROM job_nodes n JOIN hosts h ON h.id = n.node JOIN states st ON st.id = n.state
                  LEFT JOIN attrs a ON a.id = n.attrs
             WHERE n.job = ?1 ORDER BY h.name",
        )?;
        let mut rows = st.query([job])?;
        while let Some(r) = rows.next()? {
            nodes.push(r.get(0)?);
            first(&mut attrs.uid, r.get(1)?);
            first(&mut attrs.user, r.get(2)?);
            first(&mut attrs.account, r.get(3)?);
            first(&mut attrs.partition, r.get(4)?);
            first(&mut attrs.work_dir, r.get(5)?);
            let s: String = r.get(6)?;
            let s = s.parse::<JobState>().unwrap_or(JobState::Unknown);
            state = state.worst(s);
            let e = ExitStatus { code: r.get(7)?, signal: r.get(8)?, core_dumped: false };
            if exit.is_none_or(|x| e.severity() > x.severity()) {
                exit = Some(e);
            }
            if let Some(ev) = store::evidence_at(r, 9, Some(e.code.into()), Some(e.signal.into()))? {
                evidence.push((s, ev));
            }
            let start: Option<i64> = r.get(10)?;
            let end: i64 = r.get(11)?;
            let start = start.unwrap_or(end);
            node_start = Some(node_start.map_or(start, |x| x.min(start)));
            node_end = Some(node_end.map_or(end, |x| x.max(end)));
        }
    }
    let state_evidence = evidence.into_iter().find(|(s, _)| *s == state).map(|(_, e)| e);
    {
        let mut st =
            conn.prepare_cached("SELECT DISTINCT h.name FROM steps s JOIN hosts h ON h.id = s.node WHERE s.job = ?1")?;
        let mut rows = st.query([job])?;
        while let Some(r) = rows.next()? {
            nodes.push(r.get(0)?);
        }
    }
    nodes.sort_by(|a, b| natural_cmp(a, b));
    nodes.dedup();
    let start = min_opt(step_start, node_start);
    let end = max_opt(step_end, node_end);
    let nnodes = (nodes.len() as i64).max(step_nnodes.unwrap_or(0));
    let work_dir = attrs.work_dir.or(attrs.cwd);
    // The job's modules: every module any step loaded.
    let mut modules: Vec<i64> = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT l.items FROM module_lists l WHERE l.id IN (SELECT modules FROM steps WHERE job = ?1)",
        )?;
        let mut rows = st.query([job])?;
        while let Some(r) = rows.next()? {
            modules.extend(store::parse_module_list(r.get_ref(0)?.as_str()?).into_iter().map(|(m, _)| m));
        }
    }
    modules.sort_unstable();
    modules.dedup();
    let module_set = cache.module_set_id(conn, &modules)?;
    let v = verdict(conn, job)?;

    let user = attrs.user.clone().or_else(|| attrs.uid.map(|u| u.to_string()));
    let new = rollup::Contribution {
        key: rollup::Key {
            cluster: old.key.cluster.clone(),
            account: attrs.account.clone(),
            partition: attrs.partition.clone(),
            user,
            state: state.as_str().to_string(),
        },
        elapsed: start.zip(end).map(|(s, e)| (e - s).max(0)),
        ncpus,
        cpu: cpu_user + cpu_sys,
        module_set,
        end,
        start,
        py,
        // Moved below, once the row says where the job is counted.
        idle: old.idle,
    };
    let grp = rollup::update_into(conn, &mut cache.rollups, old_grp, &old, &new)?;
    let values: [Value; COLUMNS.len()] = [
        attrs.array_job_id.into(),
        attrs.array_task_id.into(),
        attrs.uid.into(),
        attrs.user.into(),
        attrs.gid.into(),
        attrs.account.into(),
        attrs.partition.into(),
        attrs.qos.into(),
        attrs.job_name.into(),
        work_dir.into(),
        start.into(),
        end.into(),
        state.as_str().to_string().into(),
        exit.map(|e| e.code).into(),
        exit.map(|e| e.signal).into(),
        store::pack_evidence(state_evidence, exit.map(|e| e.code.into()), exit.map(|e| e.signal.into())),
        nnodes.into(),
        ncpus.into(),
        cpu_user.into(),
        cpu_sys.into(),
        max_rss.into(),
        store::compress_nodes(&nodes.join(",")).into(),
        attrs.env.into(),
        module_set.into(),
        v.program.into(),
        v.outcome.into(),
        v.category.into(),
        v.error.into(),
        grp.into(),
        py.into(),
    ];
    // Only the columns that changed are written: SQLite rewrites every index on a column named
    // in SET, changed or not (13 on jobs), and a row with nothing new is not written at all.
    let changed: Vec<usize> = (0..COLUMNS.len()).filter(|&i| !same(&stored[i], &values[i])).collect();
    if !changed.is_empty() {
        let set: Vec<String> =
            changed.iter().enumerate().map(|(n, &i)| format!("{} = ?{}", COLUMNS[i], n + 2)).collect();
        let mut p: Vec<&Value> = Vec::with_capacity(changed.len() + 1);
        let id = Value::Integer(job);
        p.push(&id);
        p.extend(changed.iter().map(|&i| &values[i]));
        conn.prepare_cached(&format!("UPDATE jobs SET {} WHERE id = ?1", set.join(", ")))?
            .execute(params_from_iter(p))?;
    }
    rollup::set_idle(conn, &mut cache.rollups, job, grp, &new, crate::timeline::idle_of(conn, job)?)
}

/// The columns [`recompute_with`] writes (`grp` and `rollup_py`: the rollups' bookkeeping).
const COLUMNS: [&str; 30] = [
    "array_job_id",
    "array_task_id",
    "uid",
    "user",
    "gid",
    "account",
    "partition",
    "qos",
    "job_name",
    "work_dir",
    "start",
    "end",
    "state",
    "exit_code",
    "signal",
    "state_evidence",
    "nnodes",
    "ncpus",
    "cpu_user_s",
    "cpu_sys_s",
    "max_rss_kib",
    "nodes",
    "env",
    "module_set",
    "program",
    "outcome",
    "category",
    "error",
    "grp",
    "rollup_py",
];

/// Whether a stored value is the one about to be written: same type, same value (reals bit for
/// bit), so a doubt always writes.
fn same(stored: &Value, new: &Value) -> bool {
    match (stored, new) {
        (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
        (a, b) => a == b,
    }
}

/// A job's verdict from its solver logs, as stored in the `jobs` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobVerdict {
    pub program: Option<String>,
    pub outcome: Option<String>,
    pub category: Option<String>,
    pub error: Option<String>,
}

/// Rank of a job-level outcome: the worst (lowest) wins across nodes.
pub fn outcome_rank(outcome: Option<&str>) -> u8 {
    match outcome.map(str::to_ascii_lowercase).as_deref() {
        Some("failed") => 0,
        Some("incomplete") => 1,
        Some("success") => 2,
        Some(_) => 3,
        None => 4,
    }
}

/// Rank of a failure category: the most specific (lowest) wins among equally bad outcomes; the
/// same order the log parser uses to pick a job's marker (an external kill, then the code's own
/// diagnosis, then a crash, then MPI_ABORT and unspecific markers).
pub fn category_rank(category: Option<&str>) -> u8 {
    match category.and_then(|c| c.parse::<logparse::Category>().ok()) {
        Some(c) => c.default_priority(),
        None if category.is_some() => 4,
        None => 5,
    }
}

/// The job-level verdict from the job-level facts (`source = ''`) of every node: the node with
/// the worst outcome (failed, incomplete, success, unknown), then the most specific failure
/// category, then the first by name, gives outcome, category and error; the program is that
/// node's, else the first node's that names one.
pub fn verdict(conn: &Connection, job: i64) -> rusqlite::Result<JobVerdict> {
    let mut per_node: BTreeMap<String, JobVerdict> = BTreeMap::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT node, key, value FROM facts
             WHERE job = ?1 AND source = '' AND key IN ('program', 'outcome', 'failure_category', 'error')",
        )?;
        let mut rows = st.query([job])?;
        while let Some(r) = rows.next()? {
            let (node, key, value): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let v = per_node.entry(node).or_default();
            match key.as_str() {
                "program" => v.program = Some(value),
                "outcome" => v.outcome = Some(value.to_ascii_lowercase()),
                "failure_category" => v.category = Some(value.to_ascii_lowercase()),
                _ => v.error = Some(value),
            }
        }
    }
    let mut nodes: Vec<(String, JobVerdict)> = per_node.into_iter().collect();
    nodes.sort_by(|(a, va), (b, vb)| {
        (outcome_rank(va.outcome.as_deref()), category_rank(va.category.as_deref()))
            .cmp(&(outcome_rank(vb.outcome.as_deref()), category_rank(vb.category.as_deref())))
            .then_with(|| natural_cmp(a, b))
    });
    let any_program = {
        let mut by_name: Vec<&(String, JobVerdict)> = nodes.iter().collect();
        by_name.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        by_name.iter().find_map(|(_, v)| v.program.clone())
    };
    Ok(match nodes.into_iter().next() {
        Some((_, mut v)) => {
            if v.program.is_none() {
                v.program = any_program;
            }
            v
        }
        None => JobVerdict::default(),
    })
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
