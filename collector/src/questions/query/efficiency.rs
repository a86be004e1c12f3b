//! `collector query efficiency`: do runs use the CPUs they hold, and how does a code scale?
//!
//! Per job:
//! - CPU efficiency = cpu_seconds / (elapsed × allocated CPUs), from Slurm's accounting of the
//!   job's steps (1.0 = every allocated CPU busy for the whole run);
//! - runcrawler's efficiency = elapsed × ranks / (size × steps): core-seconds per size unit per
//!   step (lower is better), with `size` the first of the job-level facts [`SIZE_KEYS`] the
//!   job has, `steps` its `steps` fact, and `ranks` its `mpi_ranks` fact, else its CPUs.
//!
//! Jobs are grouped (`--by ranks`, `partition`, `nodes` or `program`) and each group shows its
//! job count and the mean and median of both measures over the jobs that have them.

use super::filter::Filter;
use super::jobfilter::JobFilterArgs;
use super::{job_facts_of, FactValue, JobRow};
use crate::questions::parse::CmdError;
use crate::questions::plot::{self, fmt_num, PlotTarget};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Facts that measure a problem's size, in order of preference.
pub const SIZE_KEYS: [&str; 5] = ["atoms", "cells", "mesh_nodes", "grid_points", "k_points"];

pub const ABOUT: &str = "CPU efficiency and core-seconds per size unit per step, by ranks, partition, nodes or program";

pub const LONG_ABOUT: &str = "\
How well jobs use what they hold, and how a code scales.

For each job:

  CPU efficiency = CPU seconds / (elapsed seconds × allocated CPUs)
      from Slurm's accounting of the job's steps: 1.0 means every allocated CPU was busy all
      the time; 0.25 means three quarters sat idle.

  efficiency = elapsed seconds × ranks / (size × steps)
      runcrawler's measure, in core-seconds per size unit per step (lower is better): size is
      the problem size the job's logs report (atoms, else cells, mesh_nodes, grid_points or
      k_points), steps the number of steps the run made (the steps fact), and ranks its MPI
      ranks (the mpi_ranks fact, else the job's allocated CPUs). Jobs whose logs give no size or
      no steps have no value. Sizes differ between codes (atoms for LAMMPS, cells for OpenFOAM):
      compare one program at a time with --program.

Jobs are grouped by --by (ranks by default; fact:NAME groups by a job-level fact such as an input \
parameter, fact:param.pair_style, with \"-\" for jobs without it) and each group shows its jobs, the mean and median \
CPU efficiency, and the number of jobs with a size and steps with their mean and median \
efficiency. Only jobs that ended COMPLETED count, unless -s/--state chooses other states.

--plot FILE.png or FILE.svg draws efficiency against ranks (1200×800, logarithmic ranks axis): one \
point per job (coloured by group when --by is not ranks), and a line through the median of \
each rank count.";

pub const AFTER_HELP: &str = "\
Examples:
  collector query efficiency --program lammps
  collector query efficiency --program lammps --plot lammps-scaling.png
  collector query efficiency --by partition -S now-30days
  collector query efficiency --by program --json
  collector query efficiency --program lammps --by fact:param.pair_style
  collector query efficiency --program gromacs --by nodes -s CD,TO --csv";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EfficiencyBy {
    #[default]
    Ranks,
    Partition,
    Nodes,
    Program,
    /// A job-level fact, parameters included: `fact:param.pair_style` (the whole spelling, as
    /// [`super::summary::fact_key`] interns it).
    Fact(&'static str),
}

impl EfficiencyBy {
    pub fn name(self) -> &'static str {
        match self {
            EfficiencyBy::Ranks => "ranks",
            EfficiencyBy::Partition => "partition",
            EfficiencyBy::Nodes => "nodes",
            EfficiencyBy::Program => "program",
            EfficiencyBy::Fact(n) => n,
        }
    }
}

/// A clap value parser for `--by`: ranks, partition, nodes, program or fact:NAME.
pub fn parse_by(s: &str) -> Result<EfficiencyBy, String> {
    if let Some(super::summary::Key::Fact(n)) = super::summary::fact_key(s)? {
        return Ok(EfficiencyBy::Fact(n));
    }
    match s.trim().to_ascii_lowercase().as_str() {
        "ranks" => Ok(EfficiencyBy::Ranks),
        "partition" => Ok(EfficiencyBy::Partition),
        "nodes" => Ok(EfficiencyBy::Nodes),
        "program" => Ok(EfficiencyBy::Program),
        _ => Err(format!("unknown --by key '{s}' (expected ranks, partition, nodes, program or fact:NAME)")),
    }
}

#[derive(Debug)]
pub struct EfficiencyArgs {
    /// Group by: ranks (default), partition, nodes, program, or fact:NAME (a job-level fact, e.g. fact:param.pair_style).
    pub by: EfficiencyBy,

    pub filter: JobFilterArgs,

    /// Also draw efficiency against ranks to this file (.png or .svg, 1200×800).
    pub plot: Option<PlotTarget>,

    /// Print JSON.
    pub json: bool,

    /// Print CSV.
    pub csv: bool,

    /// No header line (table and CSV).
    pub noheader: bool,
}

/// One job's measures.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEfficiency {
    pub job: String,
    pub group: String,
    pub program: Option<String>,
    pub ranks: Option<f64>,
    pub cpu_efficiency: Option<f64>,
    /// Core-seconds per size unit per step.
    pub efficiency: Option<f64>,
    pub size_key: Option<&'static str>,
}

/// The leading number of a fact's value ("4000", "250 (lines …)", "1.5e3").
pub fn number(v: &str) -> Option<f64> {
    let t = v.trim();
    let end = t.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(t.len());
    t[..end].parse::<f64>().ok().filter(|x| x.is_finite())
}

/// CPU seconds / (elapsed × CPUs); `None` when elapsed or CPUs are unknown or zero.
pub fn cpu_efficiency(cpu_seconds: f64, elapsed: Option<i64>, ncpus: Option<i64>) -> Option<f64> {
    let (e, n) = (elapsed?, ncpus?);
    (e > 0 && n > 0).then(|| cpu_seconds / (e as f64 * n as f64))
}

/// elapsed × ranks / (size × steps); `None` when any is unknown or zero.
pub fn runcrawler_efficiency(elapsed: f64, ranks: f64, size: f64, steps: f64) -> Option<f64> {
    (elapsed > 0.0 && ranks > 0.0 && size > 0.0 && steps > 0.0).then(|| elapsed * ranks / (size * steps))
}

/// The measures of one job from its row and job-level facts.
pub fn measure(row: &JobRow, facts: Option<&BTreeMap<String, FactValue>>, by: EfficiencyBy) -> JobEfficiency {
    let fact = |k: &str| facts.and_then(|f| f.get(k)).and_then(|v| number(&v.value));
    let ranks = fact("mpi_ranks").filter(|r| *r > 0.0).or(row.ncpus.filter(|n| *n > 0).map(|n| n as f64));
    let elapsed = row.elapsed().filter(|e| *e > 0).map(|e| e as f64).or(fact("wall_seconds"));
    let size = SIZE_KEYS.iter().find_map(|k| fact(k).filter(|v| *v > 0.0).map(|v| (*k, v)));
    let efficiency = match (elapsed, ranks, size, fact("steps")) {
        (Some(e), Some(r), Some((_, s)), Some(n)) => runcrawler_efficiency(e, r, s, n),
        _ => None,
    };
    let group = match by {
        EfficiencyBy::Ranks => ranks.map(fmt_num).unwrap_or_else(|| "?".into()),
        EfficiencyBy::Partition => row.partition.clone().unwrap_or_else(|| "(unknown)".into()),
        EfficiencyBy::Nodes => row.nnodes.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        EfficiencyBy::Program => row.program.clone().unwrap_or_else(|| "(no log)".into()),
        EfficiencyBy::Fact(n) => {
            facts.and_then(|f| f.get(&n[5..])).map(|v| v.value.clone()).unwrap_or_else(|| "-".into())
        }
    };
    JobEfficiency {
        job: row.display_id(),
        group,
        program: row.program.clone(),
        ranks,
        cpu_efficiency: cpu_efficiency(row.cpu_seconds, row.elapsed(), row.ncpus),
        efficiency,
        size_key: efficiency.and(size.map(|s| s.0)),
    }
}

pub fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 })
}

/// One group's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    pub group: String,
    pub jobs: usize,
    pub cpu_jobs: usize,
    pub cpu_mean: Option<f64>,
    pub cpu_median: Option<f64>,
    pub sized_jobs: usize,
    pub eff_mean: Option<f64>,
    pub eff_median: Option<f64>,
    /// The size facts used (atoms, cells…).
    pub sizes: Vec<&'static str>,
    /// For ordering: the group's ranks / nodes as a number when it is one.
    order: Option<f64>,
}

pub fn summarise(jobs: &[JobEfficiency]) -> Vec<GroupStats> {
    let mut groups: BTreeMap<&str, Vec<&JobEfficiency>> = BTreeMap::new();
    for j in jobs {
        groups.entry(&j.group).or_default().push(j);
    }
    let mut out: Vec<GroupStats> = groups
        .into_iter()
        .map(|(g, js)| {
            let cpu: Vec<f64> = js.iter().filter_map(|j| j.cpu_efficiency).collect();
            let eff: Vec<f64> = js.iter().filter_map(|j| j.efficiency).collect();
            let sizes: BTreeSet<&'static str> = js.iter().filter_map(|j| j.size_key).collect();
            GroupStats {
                group: g.to_string(),
                jobs: js.len(),
                cpu_jobs: cpu.len(),
                cpu_mean: mean(&cpu),
                cpu_median: median(&cpu),
                sized_jobs: eff.len(),
                eff_mean: mean(&eff),
                eff_median: median(&eff),
                sizes: sizes.into_iter().collect(),
                order: g.parse::<f64>().ok(),
            }
        })
        .collect();
    out.sort_by(|a, b| match (a.order, b.order) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.group.cmp(&b.group),
    });
    out
}

/// The jobs and their measures.
pub fn efficiency_jobs(conn: &Connection, filter: &Filter, by: EfficiencyBy) -> rusqlite::Result<Vec<JobEfficiency>> {
    let rows = super::find_jobs(conn, filter, None)?;
    let facts = if rows.is_empty() { Default::default() } else { job_facts_of(conn, &rows)? };
    Ok(rows.iter().map(|r| measure(r, facts.get(&r.id), by)).collect())
}

fn o(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "-".into())
}

fn o_pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", 100.0 * x)).unwrap_or_else(|| "-".into())
}

fn cells(groups: &[GroupStats], by: EfficiencyBy) -> (Vec<String>, Vec<bool>, Vec<Vec<String>>) {
    let mut first = by.name().to_string();
    first[..1].make_ascii_uppercase();
    let header: Vec<String> =
        [first.as_str(), "Jobs", "CPUEffMean", "CPUEffMedian", "SizedJobs", "EffMean", "EffMedian", "Size"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let right = vec![by == EfficiencyBy::Ranks || by == EfficiencyBy::Nodes, true, true, true, true, true, true, false];
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.group.clone(),
                g.jobs.to_string(),
                o_pct(g.cpu_mean),
                o_pct(g.cpu_median),
                g.sized_jobs.to_string(),
                o(g.eff_mean),
                o(g.eff_median),
                g.sizes.join(","),
            ]
        })
        .collect();
    (header, right, rows)
}

pub fn to_json(groups: &[GroupStats], jobs: &[JobEfficiency], by: EfficiencyBy) -> Value {
    json!({
        "by": by.name(),
        "unit": "core-seconds per size unit per step",
        "groups": groups.iter().map(|g| json!({
            by.name(): g.group,
            "jobs": g.jobs,
            "cpu_efficiency": {"jobs": g.cpu_jobs, "mean": g.cpu_mean, "median": g.cpu_median},
            "efficiency": {"jobs": g.sized_jobs, "mean": g.eff_mean, "median": g.eff_median, "size": g.sizes},
        })).collect::<Vec<_>>(),
        "jobs": jobs.iter().map(|j| json!({
            "job": j.job, "group": j.group, "program": j.program, "ranks": j.ranks,
            "cpu_efficiency": j.cpu_efficiency, "efficiency": j.efficiency, "size": j.size_key,
        })).collect::<Vec<_>>(),
    })
}

/// Draws efficiency against ranks.
pub fn draw(jobs: &[JobEfficiency], by: EfficiencyBy, target: &PlotTarget, what: &str) -> Result<(), String> {
    let pts: Vec<&JobEfficiency> = jobs.iter().filter(|j| j.efficiency.is_some() && j.ranks.is_some()).collect();
    let mut series: Vec<plot::Series> = Vec::new();
    if by == EfficiencyBy::Ranks {
        series.push(plot::Series {
            label: "jobs".into(),
            points: pts.iter().map(|j| (j.ranks.unwrap_or(1.0), j.efficiency.unwrap_or(0.0))).collect(),
            colour: plot::colour(0),
        });
    } else {
        let mut by_group: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for j in &pts {
            by_group.entry(&j.group).or_default().push((j.ranks.unwrap_or(1.0), j.efficiency.unwrap_or(0.0)));
        }
        for (i, (g, p)) in by_group.into_iter().enumerate() {
            series.push(plot::Series { label: g.to_string(), points: p, colour: plot::colour(i) });
        }
    }
    let mut per_ranks: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for j in &pts {
        per_ranks.entry(j.ranks.unwrap_or(1.0).round() as u64).or_default().push(j.efficiency.unwrap_or(0.0));
    }
    let med: Vec<(f64, f64)> = per_ranks.iter().filter_map(|(r, v)| median(v).map(|m| (*r as f64, m))).collect();
    let sizes: BTreeSet<&str> = pts.iter().filter_map(|j| j.size_key).collect();
    let size = if sizes.len() == 1 {
        sizes.iter().next().map(|s| s.trim_end_matches('s').replace('_', " ")).unwrap_or_default()
    } else {
        "size unit".to_string()
    };
    let title = format!("Efficiency against MPI ranks{what}");
    let y = format!("efficiency: core-seconds per {size} per step (lower is better)");
    plot::scatter(target, &title, "MPI ranks (logarithmic)", &y, &series, &med)
}

/// `collector query efficiency`.
pub fn run(conn: &Connection, args: &EfficiencyArgs) -> Result<String, CmdError> {
    args.filter.check().map_err(CmdError::Usage)?;
    if let Some(t) = &args.plot {
        t.check().map_err(CmdError::Usage)?;
    }
    let mut filter = args.filter.to_filter();
    if filter.states.is_empty() {
        filter.states = vec![runledger_record::JobState::Completed];
    }
    let jobs = efficiency_jobs(conn, &filter, args.by)?;
    let groups = summarise(&jobs);
    let programs: BTreeSet<&str> = jobs.iter().filter_map(|j| j.program.as_deref()).collect();
    if let Some(t) = &args.plot {
        let what = match programs.len() {
            1 => format!(" — {}", programs.iter().next().copied().unwrap_or_default()),
            _ => String::new(),
        };
        draw(&jobs, args.by, t, &what).map_err(CmdError::Failure)?;
    }
    let (header, right, rows) = cells(&groups, args.by);
    Ok(if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(&groups, &jobs, args.by)).expect("JSON values serialize");
        s.push('\n');
        s
    } else if args.csv {
        super::errors::csv(&header, &rows, !args.noheader)
    } else {
        let mut s = String::new();
        if !args.noheader {
            let sized = jobs.iter().filter(|j| j.efficiency.is_some()).count();
            let _ = writeln!(
                s,
                "{} jobs ({} with size and steps in their logs). CPUEff = CPU time / (elapsed × CPUs); \
                 Eff = elapsed × ranks / (size × steps), core-seconds per size unit per step.",
                jobs.len(),
                sized
            );
            if programs.len() > 1 && args.by != EfficiencyBy::Program {
                let _ = writeln!(
                    s,
                    "Note: {} programs are mixed ({}); their sizes are not comparable: use --program.",
                    programs.len(),
                    programs.iter().copied().collect::<Vec<_>>().join(", ")
                );
            }
            s.push('\n');
        }
        s.push_str(&super::errors::table(&header, &right, &rows, !args.noheader));
        if let Some(t) = &args.plot {
            if !args.noheader {
                let _ = writeln!(s, "\nChart written to {}", t.path.display());
            }
        }
        s
    })
}
