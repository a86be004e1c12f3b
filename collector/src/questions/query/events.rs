//! The event log and what follows from it over time: `query events` (a Balsam-style log of
//! state transitions), `query throughput` (jobs finished per interval, cumulative) and
//! `query utilization` (jobs, nodes and cores busy per interval).
//!
//! Transitions: `step_started` is PENDING → RUNNING, `task_exited` RUNNING → EXITED,
//! `step_ended` RUNNING → ENDED and `job_ended` RUNNING → the node's job state (COMPLETED,
//! FAILED, …).
//!
//! Intervals are aligned to the local UTC offset at the start of the range (a `1d` bucket starts
//! at local midnight), and every interval of the range is listed, empty ones included.

use super::filter::Filter;
use super::report::{Cell, Report};
use chrono::{Local, Offset, TimeZone};
use rusqlite::{params_from_iter, Connection};
use std::collections::HashMap;

fn db(e: rusqlite::Error) -> String {
    format!("reading the database: {e}")
}

pub const KINDS: &[&str] = &["step_started", "task_exited", "step_ended", "job_ended"];

/// A clap value parser for `--kind`.
pub fn parse_kind(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    if KINDS.contains(&t.as_str()) {
        Ok(t)
    } else {
        Err(format!("unknown event kind '{s}' (expected one of: {})", KINDS.join(", ")))
    }
}

/// A clap value parser for `--interval`: `N` followed by s, m, h, d or w (`10m`, `1h`, `1d`).
pub fn parse_interval(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad = || format!("invalid interval '{s}' (expected a number and a unit: 30s, 10m, 1h, 1d, 1w)");
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    Ok(n * mult)
}

/// (from, to) states of an event.
pub fn transition(kind: &str, detail: &str) -> (&'static str, String) {
    match kind {
        "step_started" => ("PENDING", "RUNNING".into()),
        "task_exited" => ("RUNNING", "EXITED".into()),
        "step_ended" => ("RUNNING", "ENDED".into()),
        "job_ended" => {
            let state =
                detail.split_whitespace().find_map(|w| w.strip_prefix("state=")).unwrap_or("UNKNOWN").to_string();
            ("RUNNING", state)
        }
        _ => ("?", "?".into()),
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub kinds: Vec<String>,
    pub from_state: Vec<String>,
    pub to_state: Vec<String>,
    /// Event times, inclusive.
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

/// `query events`: events of the jobs matching `filter`, oldest first.
///
/// Events are derived from the jobs' steps, tasks and node records ([`super::events_of`]), not
/// stored: every one lies within its job's [start, end], so an event time range narrows the jobs
/// through their indexed start and end first (sacct's -S/-E semantics).
pub fn events(conn: &Connection, filter: &Filter, q: &EventQuery) -> Result<Report, String> {
    let mut filter = filter.clone();
    if let Some(a) = q.after {
        filter.start = Some(filter.start.map_or(a, |s| s.max(a)));
    }
    if let Some(b) = q.before {
        filter.end = Some(filter.end.map_or(b, |e| e.min(b)));
    }
    let (where_sql, params) = filter.to_sql();
    let sql = format!(
        "SELECT id, job_id, array_job_id, array_task_id, COALESCE(user, CAST(uid AS TEXT)), account FROM jobs
         WHERE {where_sql}"
    );
    struct JobInfo {
        job_id: i64,
        jobid: String,
        user: Option<String>,
        account: Option<String>,
    }
    let mut jobs: HashMap<i64, JobInfo> = HashMap::new();
    {
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let job_id: i64 = r.get(1).map_err(db)?;
            let jobid = match (r.get::<_, Option<i64>>(2).map_err(db)?, r.get::<_, Option<i64>>(3).map_err(db)?) {
                (Some(a), Some(t)) => format!("{a}_{t}"),
                _ => job_id.to_string(),
            };
            let info = JobInfo { job_id, jobid, user: r.get(4).map_err(db)?, account: r.get(5).map_err(db)? };
            jobs.insert(r.get(0).map_err(db)?, info);
        }
    }
    let ids: Vec<i64> = jobs.keys().copied().collect();
    let up = |v: &[String]| v.iter().map(|s| s.to_ascii_uppercase()).collect::<Vec<_>>();
    let (from_states, to_states) = (up(&q.from_state), up(&q.to_state));
    let mut found: Vec<(&JobInfo, super::EventRow)> = Vec::new();
    for (id, evs) in super::events_of(conn, &ids).map_err(db)? {
        let Some(info) = jobs.get(&id) else { continue };
        for e in evs {
            if !q.kinds.is_empty() && !q.kinds.contains(&e.kind) {
                continue;
            }
            if q.after.is_some_and(|a| e.time < a) || q.before.is_some_and(|b| e.time > b) {
                continue;
            }
            let (from, to) = transition(&e.kind, &e.detail);
            if !from_states.is_empty() && !from_states.iter().any(|s| s == from) {
                continue;
            }
            if !to_states.is_empty() && !to_states.contains(&to) {
                continue;
            }
            found.push((info, e));
        }
    }
    found.sort_by(|(a, x), (b, y)| {
        (x.time, a.job_id, &x.node, &x.kind, &x.detail).cmp(&(y.time, b.job_id, &y.node, &y.kind, &y.detail))
    });
    if let Some(l) = q.limit {
        found.truncate(l);
    }
    let mut report =
        Report::new(&["time", "jobid", "user", "account", "node", "kind", "from_state", "to_state", "detail"]);
    let opt = |v: &Option<String>| v.clone().map(Cell::Text).unwrap_or(Cell::Null);
    for (info, e) in found {
        let (from, to) = transition(&e.kind, &e.detail);
        report.rows.push(vec![
            Cell::Time(e.time),
            Cell::Text(info.jobid.clone()),
            opt(&info.user),
            opt(&info.account),
            Cell::Text(e.node),
            Cell::Text(e.kind.clone()),
            Cell::Text(from.to_string()),
            Cell::Text(to),
            Cell::Text(e.detail),
        ]);
    }
    Ok(report)
}

/// The local UTC offset (seconds east) at `t`.
fn local_offset(t: i64) -> i64 {
    Local.timestamp_opt(t, 0).single().map(|d| i64::from(d.offset().fix().local_minus_utc())).unwrap_or(0)
}

/// Buckets of `interval` seconds covering [lo, hi], aligned to local time at `lo`.
pub struct Buckets {
    pub first: i64,
    pub interval: i64,
    pub count: usize,
}

impl Buckets {
    pub fn new(lo: i64, hi: i64, interval: i64, offset: i64) -> Buckets {
        let first = (lo + offset).div_euclid(interval) * interval - offset;
        let count = ((hi - first).div_euclid(interval) + 1).max(1) as usize;
        Buckets { first, interval, count }
    }

    pub fn index(&self, t: i64) -> Option<usize> {
        let i = (t - self.first).div_euclid(self.interval);
        (i >= 0 && (i as usize) < self.count).then_some(i as usize)
    }

    pub fn start(&self, i: usize) -> i64 {
        self.first + i as i64 * self.interval
    }
}

/// At most this many intervals (a typo like `--interval 1s` over a year would be 31 M rows).
pub const MAX_BUCKETS: usize = 1_000_000;

fn range_of(filter: &Filter, lo: Option<i64>, hi: Option<i64>) -> Option<(i64, i64)> {
    let lo = filter.start.or(lo)?;
    let hi = filter.end.or(hi)?;
    Some((lo, hi.max(lo)))
}

fn buckets_for(lo: i64, hi: i64, interval: i64, offset: Option<i64>) -> Result<Buckets, String> {
    let b = Buckets::new(lo, hi, interval, offset.unwrap_or_else(|| local_offset(lo)));
    if b.count > MAX_BUCKETS {
        return Err(format!(
            "{} intervals of {interval} s over the range: more than {MAX_BUCKETS}; use a longer --interval or -S/-E",
            b.count
        ));
    }
    Ok(b)
}

/// `query throughput`: jobs that ended in each interval (and how many failed), cumulative.
/// `offset` overrides the local UTC offset (tests).
pub fn throughput(conn: &Connection, filter: &Filter, interval: i64, offset: Option<i64>) -> Result<Report, String> {
    if let Some(r) = throughput_from_rollup(conn, filter, interval, offset)? {
        return Ok(r);
    }
    let (where_sql, params) = filter.to_sql();
    let sql = format!("SELECT end, state FROM jobs WHERE end IS NOT NULL AND state <> 'UNKNOWN' AND {where_sql}");
    let mut ends: Vec<(i64, bool)> = Vec::new();
    {
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let state = r.get_ref(1).map_err(db)?.as_str().unwrap_or("");
            ends.push((r.get(0).map_err(db)?, super::summary::FAILED_STATES.contains(&state)));
        }
    }
    let mut report = Report::new(&["interval_start", "jobs", "failed", "cumulative"]);
    let (lo, hi) = (ends.iter().map(|e| e.0).min(), ends.iter().map(|e| e.0).max());
    let Some((lo, hi)) = range_of(filter, lo, hi) else { return Ok(report) };
    let b = buckets_for(lo, hi, interval, offset)?;
    let mut jobs = vec![0i64; b.count];
    let mut failed = vec![0i64; b.count];
    for (t, f) in ends {
        if let Some(i) = b.index(t) {
            jobs[i] += 1;
            failed[i] += i64::from(f);
        }
    }
    let mut cum = 0;
    for i in 0..b.count {
        cum += jobs[i];
        report.rows.push(vec![Cell::Time(b.start(i)), Cell::Int(jobs[i]), Cell::Int(failed[i]), Cell::Int(cum)]);
    }
    Ok(report)
}

/// `query throughput` from `rollup_ends` (jobs ended per quarter hour), when that gives the same
/// answer as the jobs: no filter, intervals of whole quarter hours, and a UTC offset (constant
/// over the first quarter hour) in whole quarter hours, so every interval is a union of whole
/// slots and the range's first and last intervals are those of the first and last slots.
fn throughput_from_rollup(
    conn: &Connection,
    filter: &Filter,
    interval: i64,
    offset: Option<i64>,
) -> Result<Option<Report>, String> {
    use runledger_ledger::rollup::END_SLOT_S;
    let unfiltered = filter.to_sql().0 == "1";
    if !unfiltered || interval % END_SLOT_S != 0 {
        return Ok(None);
    }
    let slots = runledger_ledger::rollup::ends(conn).map_err(db)?;
    let mut report = Report::new(&["interval_start", "jobs", "failed", "cumulative"]);
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else { return Ok(Some(report)) };
    let (lo, hi) = (first.0 * END_SLOT_S, last.0 * END_SLOT_S);
    let off = match offset {
        Some(o) => o,
        None => {
            let o = local_offset(lo);
            if o != local_offset(lo + END_SLOT_S - 1) {
                return Ok(None);
            }
            o
        }
    };
    if off % END_SLOT_S != 0 {
        return Ok(None);
    }
    let b = buckets_for(lo, hi, interval, Some(off))?;
    let mut jobs = vec![0i64; b.count];
    let mut failed = vec![0i64; b.count];
    for (slot, n, f) in slots {
        if let Some(i) = b.index(slot * END_SLOT_S) {
            jobs[i] += n;
            failed[i] += f;
        }
    }
    let mut cum = 0;
    for i in 0..b.count {
        cum += jobs[i];
        report.rows.push(vec![Cell::Time(b.start(i)), Cell::Int(jobs[i]), Cell::Int(failed[i]), Cell::Int(cum)]);
    }
    Ok(Some(report))
}

/// `query utilization`: per interval, the time-averaged number of running jobs, busy nodes and
/// busy cores (a job counts from its start to its end; still-running jobs up to the range end).
pub fn utilization(conn: &Connection, filter: &Filter, interval: i64, offset: Option<i64>) -> Result<Report, String> {
    let (where_sql, params) = filter.to_sql();
    let sql = format!(
        "SELECT start, end, COALESCE(nnodes, 1), COALESCE(ncpus, 0) FROM jobs WHERE start IS NOT NULL AND {where_sql}"
    );
    let mut spans: Vec<(i64, i64, i64, i64)> = Vec::new();
    {
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let s: i64 = r.get(0).map_err(db)?;
            let e: Option<i64> = r.get(1).map_err(db)?;
            spans.push((s, e.unwrap_or(s).max(s), r.get(2).map_err(db)?, r.get(3).map_err(db)?));
        }
    }
    let mut report = Report::new(&["interval_start", "jobs", "nodes", "cores"]);
    let lo = spans.iter().map(|s| s.0).min();
    let hi = spans.iter().map(|s| s.1).max();
    let Some((lo, hi)) = range_of(filter, lo, hi) else { return Ok(report) };
    let b = buckets_for(lo, hi, interval, offset)?;
    // Integrate each job's busy time over the buckets it overlaps: a difference array of
    // full-bucket counts plus the partial first and last buckets.
    let n = b.count;
    let mut full = vec![[0f64; 3]; n + 1];
    let mut part = vec![[0f64; 3]; n];
    let iv = interval as f64;
    for (s, e, nodes, cores) in spans {
        let w = [1.0, nodes as f64, cores as f64];
        let (s, e) = (s.max(b.first), e.min(b.start(n)));
        if e <= s {
            continue;
        }
        let (i, j) = ((s - b.first) / interval, (e - b.first) / interval);
        let (i, j) = (i as usize, j as usize);
        if i == j {
            for k in 0..3 {
                part[i][k] += w[k] * (e - s) as f64 / iv;
            }
            continue;
        }
        for k in 0..3 {
            part[i][k] += w[k] * (b.start(i + 1) - s) as f64 / iv;
            if j < n {
                part[j][k] += w[k] * (e - b.start(j)) as f64 / iv;
            }
            full[i + 1][k] += w[k];
            full[j][k] -= w[k];
        }
    }
    let mut run = [0f64; 3];
    for i in 0..n {
        for k in 0..3 {
            run[k] += full[i][k];
        }
        let v: Vec<f64> = (0..3).map(|k| run[k] + part[i][k]).collect();
        report.rows.push(vec![
            Cell::Time(b.start(i)),
            Cell::Float(v[0], 2),
            Cell::Float(v[1], 2),
            Cell::Float(v[2], 1),
        ]);
    }
    Ok(report)
}
