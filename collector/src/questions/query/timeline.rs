//! What a job did over time (#16): `query job ID --timeline [--plot FILE]`, the `timeline` of
//! `query job --json`, and `query idle`: jobs that held CPUs and left them idle.
//!
//! The series are the plugin's ([`runledger_record::series`]), one per step and node, as the
//! ledger keeps them ([`runledger_ledger::timeline`]). A node's use at a moment is the sum over
//! its steps (the batch step waits in `srun` while step 0 works); its allocation is the largest
//! CPU count of the job's steps on it.

use super::filter::Filter;
use super::jobfilter::JobFilterArgs;
use super::report::{Cell, Report};
use crate::questions::plot::PlotTarget;
use crate::questions::plot_usage::{self, TimeSeries};
use crate::questions::timefmt;
use runledger_ledger::rows::JobRow;
use runledger_ledger::timeline::{self, NodeIdle, StepSeries, IDLE_BELOW, IDLE_FOR_S};
use runledger_record::series::{Gauges, Point};
use rusqlite::{params_from_iter, Connection};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn gauges_json(g: &Option<Gauges>) -> Value {
    match g {
        Some(g) => {
            json!({"cpu_cores": g.cpu_cores, "rss_kib": g.rss_kib, "processes": g.processes, "threads": g.threads})
        }
        None => Value::Null,
    }
}

fn point_json(p: &Point) -> Value {
    let mut m = Map::new();
    m.insert("t".into(), json!(timefmt::rfc3339(p.t)));
    m.insert("secs".into(), json!(p.secs));
    m.insert("cpu_cores".into(), json!(p.cpu_cores));
    m.insert("rss_kib".into(), json!(p.rss_kib));
    m.insert("read_bytes".into(), json!(p.read_bytes));
    m.insert("write_bytes".into(), json!(p.write_bytes));
    m.insert("processes".into(), json!(p.processes));
    m.insert("threads".into(), json!(p.threads));
    if p.min.is_some() || p.max.is_some() {
        m.insert("min".into(), gauges_json(&p.min));
        m.insert("max".into(), gauges_json(&p.max));
    }
    Value::Object(m)
}

/// `timeline` of `query job --json`: one entry per step and node, each point with its end time
/// (`t`, RFC 3339) and the span it covers (`secs`).
pub fn timeline_json(series: &[StepSeries]) -> Value {
    Value::Array(
        series
            .iter()
            .map(|s| {
                json!({
                    "step": runledger_record::step_name(s.step_id),
                    "node": s.node,
                    "alloc_cpus": s.alloc_cpus,
                    "interval_s": s.series.interval_s,
                    "samples_per_point": s.series.per_point,
                    "rss_peak_kib": s.series.rss_peak_kib,
                    "missed_samples": s.series.missed,
                    "points": s.series.points.iter().map(point_json).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// The idle spans of `query job --json` (default thresholds).
pub fn idle_json(series: &[StepSeries]) -> Value {
    Value::Array(
        timeline::idle(series, IDLE_BELOW, IDLE_FOR_S)
            .iter()
            .flat_map(|n| {
                n.spans.iter().map(move |s| {
                    json!({
                        "node": n.node,
                        "alloc_cpus": n.alloc_cpus,
                        "start": timefmt::rfc3339(s.start.floor() as i64),
                        "end": timefmt::rfc3339(s.end.ceil() as i64),
                        "seconds": s.end - s.start,
                        "idle_core_seconds": s.idle_core_seconds,
                    })
                })
            })
            .collect(),
    )
}

/// One node's use, as elementary segments `(start, end, cores, rss_kib)` between the edges of its
/// steps' points: the sum of the points covering each (time no point covers: 0).
fn node_segments(list: &[&StepSeries]) -> Vec<(f64, f64, f64, f64)> {
    let pts: Vec<(f64, f64, f64, f64)> = list
        .iter()
        .flat_map(|s| s.series.points.iter())
        .filter(|p| p.secs > 0.0)
        .map(|p| (p.t as f64 - p.secs, p.t as f64, p.cpu_cores, p.rss_kib as f64))
        .collect();
    let mut edges: Vec<f64> = pts.iter().flat_map(|&(a, b, _, _)| [a, b]).collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    edges
        .windows(2)
        .map(|w| {
            let cover = pts.iter().filter(|&&(s, e, _, _)| s < w[1] && e > w[0]);
            let (c, r) = cover.fold((0.0, 0.0), |(c, r), p| (c + p.2, r + p.3));
            (w[0], w[1], c, r)
        })
        .collect()
}

fn by_node(series: &[StepSeries]) -> BTreeMap<(usize, String), Vec<&StepSeries>> {
    // Keyed by first appearance: `series` is in natural node order already.
    let mut order: Vec<&str> = Vec::new();
    let mut out: BTreeMap<(usize, String), Vec<&StepSeries>> = BTreeMap::new();
    for s in series {
        let i = order.iter().position(|n| *n == s.node).unwrap_or_else(|| {
            order.push(&s.node);
            order.len() - 1
        });
        out.entry((i, s.node.clone())).or_default().push(s);
    }
    out
}

fn bytes(n: u64) -> String {
    if n == 0 {
        "0".into()
    } else {
        timefmt::kib((n as i64 + 1023) / 1024)
    }
}

/// `query job ID --timeline`: per node and step, the step's points (use in cores and as a share
/// of the node's allocation, memory, I/O, processes), then the idle spans at the default
/// thresholds (the node's steps together).
pub fn timeline_text(job: &JobRow, series: &[StepSeries], unreadable: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Job {} on cluster {}: use over time", job.display_id(), job.cluster);
    if series.is_empty() {
        let _ = writeln!(
            o,
            "  no usage series recorded (the plugin samples with sample_interval= in plugstack.conf, default \
             30 s; steps shorter than one interval have none)"
        );
    }
    if unreadable > 0 {
        let _ = writeln!(o, "  {unreadable} stored series could not be read (damaged or of a newer format)");
    }
    for ((_, node), list) in by_node(series) {
        let alloc = list.iter().filter_map(|s| s.alloc_cpus).max();
        let steps: Vec<String> = list.iter().map(|s| runledger_record::step_name(s.step_id)).collect();
        let s0 = &list[0].series;
        let _ = writeln!(
            o,
            "\nNode {node}: {} CPUs allocated; steps {}; a sample every {} s, {} per point",
            alloc.map_or("?".to_string(), |a| a.to_string()),
            steps.join(", "),
            s0.interval_s,
            list.iter().map(|s| s.series.per_point).max().unwrap_or(1),
        );
        for s in &list {
            let name = runledger_record::step_name(s.step_id);
            let _ = writeln!(
                o,
                "\n  Step {name} on {node}{}",
                if s.series.missed > 0 {
                    format!(" ({} samples missed: unreadable /proc)", s.series.missed)
                } else {
                    String::new()
                }
            );
            let _ = writeln!(
                o,
                "  {:<19} {:>7} {:>9} {:>5} {:>9} {:>9} {:>9} {:>5} {:>7}",
                "End (local)", "Secs", "CPU cores", "Use", "RSS", "Read", "Written", "Procs", "Threads"
            );
            for p in &s.series.points {
                let share = alloc.filter(|&a| a > 0).map(|a| format!("{:.0}%", 100.0 * p.cpu_cores / a as f64));
                let cores = format!("{:.3}", p.cpu_cores);
                let _ = writeln!(
                    o,
                    "  {:<19} {:>7.1} {:>9} {:>5} {:>9} {:>9} {:>9} {:>5} {:>7}",
                    timefmt::display(Some(p.t)),
                    p.secs,
                    cores,
                    share.unwrap_or_default(),
                    timefmt::kib(p.rss_kib as i64),
                    bytes(p.read_bytes),
                    bytes(p.write_bytes),
                    p.processes,
                    p.threads,
                );
            }
        }
    }
    let idle = timeline::idle(series, IDLE_BELOW, IDLE_FOR_S);
    if !series.is_empty() {
        let _ = writeln!(
            o,
            "\nIdle (below {:.0}% of the allocation for {} or more): {}",
            IDLE_BELOW * 100.0,
            timefmt::elapsed(IDLE_FOR_S as i64),
            if idle.is_empty() { "none".to_string() } else { String::new() }
        );
        for n in &idle {
            for s in &n.spans {
                let _ = writeln!(
                    o,
                    "  {}: {} .. {} ({}), {:.2} idle core-hours",
                    n.node,
                    timefmt::display(Some(s.start.floor() as i64)),
                    timefmt::display(Some(s.end.ceil() as i64)),
                    timefmt::elapsed((s.end - s.start).round() as i64),
                    s.idle_core_seconds / 3600.0
                );
            }
        }
    }
    o
}

/// `query job ID --timeline --plot FILE`: CPU cores in use per node (steps summed), the
/// allocation as a line, and the job's resident memory (all nodes) on the right axis.
pub fn plot(target: &PlotTarget, job: &JobRow, series: &[StepSeries]) -> Result<(), String> {
    if series.is_empty() {
        return Err(format!("job {} has no usage series to draw", job.display_id()));
    }
    let mut left: Vec<TimeSeries> = Vec::new();
    let mut allocs: Vec<i64> = Vec::new();
    for ((_, node), list) in by_node(series) {
        allocs.extend(list.iter().filter_map(|s| s.alloc_cpus));
        let points = node_segments(&list).into_iter().map(|(a, _, c, _)| (a.floor() as i64, c)).collect();
        left.push(TimeSeries { label: format!("{node} CPU cores"), points });
    }
    let all: Vec<&StepSeries> = series.iter().collect();
    let segs = node_segments(&all);
    let (t0, t1) = (segs.first().map_or(0.0, |s| s.0), segs.last().map_or(0.0, |s| s.1));
    if let Some(&a) = allocs.iter().max() {
        let label =
            if left.len() > 1 { format!("allocation per node ({a} cores)") } else { format!("allocation ({a} cores)") };
        left.push(TimeSeries { label, points: vec![(t0.floor() as i64, a as f64), (t1.ceil() as i64, a as f64)] });
    }
    let mem = TimeSeries {
        label: "memory, GiB (all nodes)".into(),
        points: segs.iter().map(|&(a, _, _, r)| (a.floor() as i64, r / (1024.0 * 1024.0))).collect(),
    };
    // The last value holds for one span (the step plot's "interval").
    let hold = segs.last().map_or(1, |s| (s.1 - s.0).round().max(1.0) as i64);
    let title = format!("Job {}: CPU and memory over time", job.display_id());
    let subtitle = format!(
        "{} · {} · {} node{}, sampled every {} s",
        job.user.as_deref().unwrap_or("?"),
        job.cluster,
        left.len() - usize::from(!allocs.is_empty()),
        if left.len() - usize::from(!allocs.is_empty()) == 1 { "" } else { "s" },
        series[0].series.interval_s
    );
    plot_usage::steps(target, &title, &subtitle, ("CPU cores in use", &left), Some(("GiB", &mem)), hold)
}

pub const IDLE_ABOUT: &str = "Jobs that held CPUs and left them idle: when, where, how many core-hours";

pub const IDLE_LONG_ABOUT: &str = "\
Jobs that held allocated CPUs and left them mostly idle.

From each job's usage series (the plugin samples every step, sample_interval= in plugstack.conf,
default 30 s): a node is idle while its steps together use less than --below times its allocated
CPUs, for at least --for in a row. Per job: the idle core-hours (allocated cores not used over
those spans, summed over the nodes), when the first idle span began, how long the longest one
lasted, and the idle share of the job's allocated core-hours. Jobs without series (sampling off,
or shorter than one interval) are not listed. Takes the job filters of `query jobs`; users see
their own jobs, managers their accounts', admins all. Sorted by idle core-hours, most first.";

pub const IDLE_AFTER_HELP: &str = "\
Examples:
  collector query idle -S now-7days
  collector query idle --below 0.25 --for 30m -A physics --limit 20
  collector query idle -u alice --json";

/// `query idle`'s options (its flags: the CLI's `IdleFlags`).
#[derive(Debug, Clone)]
pub struct IdleArgs {
    /// Idle below this fraction of the allocation (0 to 1).
    pub below: f64,
    /// For at least this many seconds in a row.
    pub for_s: i64,
    /// Only the N idlest jobs.
    pub limit: Option<usize>,
    pub filter: JobFilterArgs,
    pub out: crate::questions::analytics::OutArgs,
}

/// A clap value parser for `--below`: a fraction from 0 to 1.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("'{s}': expected a fraction from 0 to 1 (e.g. 0.1 for 10 %)")),
    }
}

/// One idle job.
#[derive(Clone, Debug)]
pub struct IdleJob {
    pub job: JobRow,
    pub nodes: Vec<NodeIdle>,
}

impl IdleJob {
    pub fn idle_core_seconds(&self) -> f64 {
        self.nodes.iter().map(NodeIdle::idle_core_seconds).sum()
    }
    fn first(&self) -> f64 {
        self.nodes.iter().flat_map(|n| n.spans.iter().map(|s| s.start)).fold(f64::INFINITY, f64::min)
    }
    fn longest(&self) -> f64 {
        self.nodes.iter().flat_map(|n| n.spans.iter().map(|s| s.end - s.start)).fold(0.0, f64::max)
    }
}

/// The jobs `filter` selects that sat idle (below `below` × allocation for `for_s` seconds),
/// idlest first. At the default thresholds only the jobs the merge marked idle
/// (`jobs.idle_core_s`, partial index) are read; otherwise every matching job with a series.
pub fn idle_jobs(conn: &Connection, filter: &Filter, below: f64, for_s: i64) -> rusqlite::Result<Vec<IdleJob>> {
    let (where_sql, params) = filter.to_sql();
    let defaults = below == IDLE_BELOW && for_s as f64 == IDLE_FOR_S;
    let narrow = if defaults {
        "jobs.idle_core_s IS NOT NULL".to_string()
    } else {
        format!(
            "EXISTS (SELECT 1 FROM step_series ss WHERE ss.job = jobs.id) AND jobs.end - jobs.start >= {}",
            for_s.max(0)
        )
    };
    let sql = format!("SELECT jobs.id FROM jobs WHERE ({where_sql}) AND {narrow}");
    let ids: Vec<i64> =
        conn.prepare(&sql)?.query_map(params_from_iter(params.iter()), |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        let (series, _) = timeline::read(conn, id)?;
        let nodes = timeline::idle(&series, below, for_s as f64);
        if nodes.is_empty() {
            continue;
        }
        let Some(job) = super::find_job_by_row(conn, id)? else { continue };
        out.push(IdleJob { job, nodes });
    }
    out.sort_by(|a, b| b.idle_core_seconds().total_cmp(&a.idle_core_seconds()).then(a.job.id.cmp(&b.job.id)));
    Ok(out)
}

pub const IDLE_COLUMNS: &[&str] = &[
    "job_id",
    "user",
    "account",
    "start",
    "nodes",
    "alloc_cpus",
    "idle_nodes",
    "idle_from",
    "longest_idle_s",
    "idle_core_hours",
    "idle_share",
];

/// `query idle` as a report.
pub fn idle_report(jobs: &[IdleJob]) -> Report {
    let mut r = Report::new(IDLE_COLUMNS);
    for j in jobs {
        let core_s = j.job.elapsed().zip(j.job.ncpus).map(|(e, n)| (e * n) as f64);
        let idle = j.idle_core_seconds();
        r.rows.push(vec![
            Cell::Text(j.job.display_id()),
            j.job.user.clone().map_or(Cell::Null, Cell::Text),
            j.job.account.clone().map_or(Cell::Null, Cell::Text),
            j.job.start.map_or(Cell::Null, Cell::Time),
            j.job.nodes.clone().map_or(Cell::Null, Cell::Text),
            j.job.ncpus.map_or(Cell::Null, Cell::Int),
            Cell::Text(j.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(",")),
            Cell::Time(j.first().floor() as i64),
            Cell::Secs(j.longest().round()),
            Cell::Float(idle / 3600.0, 2),
            core_s.map_or(Cell::Null, |c| Cell::opt_ratio(idle, c)),
        ]);
    }
    r
}

/// `collector query idle`.
pub fn run_idle(conn: &Connection, a: &IdleArgs) -> Result<Report, String> {
    let mut jobs =
        idle_jobs(conn, &a.filter.to_filter(), a.below, a.for_s).map_err(|e| format!("reading the database: {e}"))?;
    if let Some(n) = a.limit {
        jobs.truncate(n);
    }
    Ok(idle_report(&jobs))
}
