//! `collector query job ID --efficiency` and `runledger-seff ID`: how well one job used what it
//! asked for, in `seff`'s words, for its user.
//!
//! seff (Slurm's contrib script) prints CPU and memory efficiency from slurmdbd. This report says
//! the same from the ledger, in the same lines and units, and adds what seff leaves out: the
//! time used against the limit, the failure category with its evidence line, and a concrete
//! suggestion where the numbers call for one. Where a figure is not recorded it says so, and
//! why when the record knows ("not known: scontrol timed out").
//!
//! What the figures are:
//! - CPU efficiency = CPU seconds of every step on every node / (elapsed × allocated CPUs), as
//!   `query efficiency` counts it ([`super::efficiency::cpu_efficiency`]).
//! - Memory: per node, the largest peak resident memory of any step (`getrusage` of the step's
//!   processes in slurmstepd: the largest single process, like sacct's MaxRSS); against that
//!   node's allocation (`S_JOB_ALLOC_MEM`, `--mem` is per node). With several nodes, the node
//!   that came closest to its allocation is shown.
//! - Time: elapsed against the limit the batch node recorded (the step environment on 23.02+,
//!   else one `scontrol show job`).

use super::errors::failure_category;
use super::{JobDetail, NodeRow};
use crate::questions::timefmt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A job's time limit as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    Seconds {
        seconds: i64,
        source: String,
    },
    Unlimited {
        source: String,
    },
    /// Not recorded; the batch node's reason, when it gave one.
    Unknown(Option<String>),
}

/// One node's memory: its peak and what the job had there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMemory {
    pub node: String,
    pub peak_kib: Option<i64>,
    pub alloc_mib: Option<i64>,
}

/// Everything the report says about one job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEfficiency {
    pub job_id: String,
    /// The raw id, shown beside an array task's `ARRAY_TASK` id as seff does.
    pub job_id_raw: i64,
    pub cluster: String,
    pub user: String,
    pub group: String,
    pub account: Option<String>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    /// No node's end record has arrived: the job may still be running.
    pub partial: bool,
    pub nnodes: i64,
    /// CPUs per node: one value when every node had the same.
    pub cores_per_node: Vec<i64>,
    pub ncpus: Option<i64>,
    pub cpu_s: f64,
    pub elapsed_s: Option<i64>,
    pub cpu_efficiency: Option<f64>,
    pub memory: Vec<NodeMemory>,
    pub limit: Limit,
    /// The failure category and its evidence line; None when the job did not fail.
    pub failure: Option<(String, Option<String>)>,
    pub suggestions: Vec<String>,
}

impl JobEfficiency {
    /// The node whose peak came closest to its allocation (or, without allocations, the
    /// largest peak): (peak KiB, allocation MiB).
    pub fn memory_headline(&self) -> Option<(i64, Option<i64>)> {
        let ratio = |m: &NodeMemory| match (m.peak_kib, m.alloc_mib) {
            (Some(p), Some(a)) if a > 0 => p as f64 / (a as f64 * 1024.0),
            _ => -1.0,
        };
        let with_alloc = self.memory.iter().filter(|m| m.peak_kib.is_some() && m.alloc_mib.is_some_and(|a| a > 0));
        if let Some(m) = with_alloc.max_by(|a, b| ratio(a).total_cmp(&ratio(b))) {
            return Some((m.peak_kib?, m.alloc_mib));
        }
        let peak = self.memory.iter().filter_map(|m| m.peak_kib).max()?;
        Some((peak, None))
    }

    /// Memory efficiency: the headline node's peak over its allocation.
    pub fn memory_efficiency(&self) -> Option<f64> {
        match self.memory_headline()? {
            (p, Some(a)) if a > 0 => Some(p as f64 / (a as f64 * 1024.0)),
            _ => None,
        }
    }

    /// Elapsed over the time limit.
    pub fn time_efficiency(&self) -> Option<f64> {
        match (&self.limit, self.elapsed_s) {
            (Limit::Seconds { seconds, .. }, Some(e)) if *seconds > 0 => Some(e as f64 / *seconds as f64),
            _ => None,
        }
    }
}

/// Reads the report out of everything recorded about a job.
pub fn of(d: &JobDetail) -> JobEfficiency {
    let j = &d.job;
    let mut peak: BTreeMap<&str, i64> = BTreeMap::new();
    let mut cores: BTreeMap<&str, i64> = BTreeMap::new();
    for s in &d.steps {
        if let Some(r) = s.max_rss_kib {
            let p = peak.entry(&s.node).or_default();
            *p = (*p).max(r);
        }
        if let Some(c) = s.ncpus {
            let e = cores.entry(&s.node).or_default();
            *e = (*e).max(c);
        }
    }
    let mut names: Vec<&str> = d.nodes.iter().map(|n| n.node.as_str()).chain(peak.keys().copied()).collect();
    names.sort_by(|a, b| runledger_ledger::names::natural_cmp(a, b));
    names.dedup();
    let node = |name: &str| d.nodes.iter().find(|n| n.node == name);
    let memory: Vec<NodeMemory> = names
        .iter()
        .map(|&n| NodeMemory {
            node: n.to_string(),
            peak_kib: peak.get(n).copied(),
            alloc_mib: node(n).and_then(|r| r.alloc_mem_mb).filter(|&a| a > 0),
        })
        .collect();
    let mut cores_per_node: Vec<i64> = cores.values().copied().collect();
    cores_per_node.sort_unstable();
    cores_per_node.dedup();

    let limit = limit_of(&d.nodes);
    let outcome_failed = j.outcome.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("failed"));
    let failed = outcome_failed || !matches!(j.state.as_str(), "COMPLETED" | "UNKNOWN");
    let failure = failed.then(|| {
        let (category, from_log) = failure_category(&j.state, j.outcome.as_deref(), j.category.as_deref());
        let evidence = if from_log { j.error.clone().or(j.state_evidence.clone()) } else { j.state_evidence.clone() };
        (category, evidence.or(j.error.clone()))
    });
    let group = match j.gid {
        Some(g) => runledger_record::users::group_name(g as u32).unwrap_or_else(|| g.to_string()),
        None => "?".into(),
    };
    let mut e = JobEfficiency {
        job_id: j.display_id(),
        job_id_raw: j.job_id,
        cluster: j.cluster.clone(),
        user: j.user.clone().or(j.uid.map(|u| u.to_string())).unwrap_or_else(|| "?".into()),
        group,
        account: j.account.clone(),
        state: j.state.clone(),
        exit_code: j.exit_code,
        signal: j.signal,
        partial: d.nodes.is_empty(),
        nnodes: j.nnodes.unwrap_or(names.len() as i64),
        cores_per_node,
        ncpus: j.ncpus,
        cpu_s: j.cpu_seconds,
        elapsed_s: j.elapsed(),
        cpu_efficiency: super::efficiency::cpu_efficiency(j.cpu_seconds, j.elapsed(), j.ncpus),
        memory,
        limit,
        failure,
        suggestions: Vec::new(),
    };
    e.suggestions = suggestions(&e);
    e
}

/// The time limit from the node records: a known limit first (seconds, then unlimited), else
/// the reason a node gave for not knowing it.
fn limit_of(nodes: &[NodeRow]) -> Limit {
    if let Some(n) = nodes.iter().find(|n| n.time_limit_s.is_some() && n.time_limit_source.is_some()) {
        return Limit::Seconds {
            seconds: n.time_limit_s.unwrap_or_default(),
            source: n.time_limit_source.clone().unwrap_or_default(),
        };
    }
    if let Some(src) = nodes.iter().find_map(|n| n.time_limit_source.clone()) {
        return Limit::Unlimited { source: src };
    }
    Limit::Unknown(nodes.iter().find_map(|n| n.time_limit_missing.clone()))
}

/// A size for `--mem`: MiB rounded up to a quarter GiB under 1 GiB, else to whole GiB.
pub fn mem_flag(mib: i64) -> String {
    let mib = mib.max(1);
    if mib <= 1024 {
        let q = (mib + 255) / 256 * 256;
        if q == 1024 {
            "1G".into()
        } else {
            format!("{q}M")
        }
    } else {
        format!("{}G", (mib + 1023) / 1024)
    }
}

/// A duration for `--time`: rounded up to 15 minutes, as `[D-]HH:MM:SS`.
pub fn time_flag(secs: i64) -> String {
    let q = (secs.max(1) + 899) / 900 * 900;
    timefmt::elapsed(q)
}

/// What the numbers call for, each concrete; none when the job used what it asked for.
fn suggestions(e: &JobEfficiency) -> Vec<String> {
    let mut out = Vec::new();
    let category = e.failure.as_ref().map(|(c, _)| c.as_str());
    let headline = e.memory_headline();
    match (category, headline) {
        (Some("out_of_memory"), Some((peak, Some(alloc)))) => out.push(format!(
            "it ran out of memory: asked {} per node, peak {}: ask for more, e.g. --mem={}",
            seff_size(alloc * 1024),
            seff_size(peak),
            mem_flag(alloc * 2)
        )),
        (Some("out_of_memory"), _) => {
            out.push("it ran out of memory: ask for more (--mem, or --mem-per-cpu), e.g. twice what it had".into())
        }
        (_, Some((peak, Some(alloc)))) if e.failure.is_none() => {
            // A fifth above the peak, rounded up, and only when it saves a real share.
            let want = (peak as f64 * 1.2 / 1024.0).ceil() as i64;
            let flag = mem_flag(want);
            let flag_mib = if let Some(g) = flag.strip_suffix('G') {
                g.parse::<i64>().unwrap_or(0) * 1024
            } else {
                flag.trim_end_matches('M').parse::<i64>().unwrap_or(0)
            };
            if flag_mib * 2 <= alloc && alloc - flag_mib >= 512 {
                out.push(format!("asked {} per node, peak {}: --mem={flag}", seff_size(alloc * 1024), seff_size(peak)));
            }
        }
        _ => {}
    }
    match (&e.limit, category, e.elapsed_s) {
        (Limit::Seconds { seconds, .. }, Some("time_limit"), _) => out.push(format!(
            "it reached its time limit of {}: if it was making progress, ask for more (e.g. --time={}) or \
             restart it from a checkpoint",
            timefmt::elapsed(*seconds),
            time_flag(seconds * 2)
        )),
        (_, Some("time_limit"), _) => out.push(
            "it reached its time limit: if it was making progress, ask for more (--time) or restart it from a \
             checkpoint"
                .into(),
        ),
        (Limit::Seconds { seconds, .. }, None, Some(used)) if used * 4 <= *seconds && seconds - used >= 3600 => out
            .push(format!(
                "used {} of its {} limit: --time={} (shorter jobs start sooner)",
                timefmt::elapsed(used),
                timefmt::elapsed(*seconds),
                time_flag(used + used / 2 + 300)
            )),
        _ => {}
    }
    if let (Some(eff), Some(n), Some(wall)) = (e.cpu_efficiency, e.ncpus, e.elapsed_s) {
        if n >= 2 && wall >= 60 && eff < 0.5 {
            let used = (e.cpu_s / wall as f64).max(0.0);
            let want = (used.ceil() as i64).max(1);
            out.push(format!(
                "used {used:.1} of its {n} CPUs on average: ask for {want} (e.g. --cpus-per-task={want} or \
                 --ntasks={want}), or check that the program runs in parallel (threads, MPI ranks)"
            ));
        }
    }
    out
}

/// seff's memory form: KiB in the largest unit that keeps the number at least 1, two decimals
/// (`1.23 GB`, `512.00 KB`, `0.00 MB`).
pub fn seff_size(kib: i64) -> String {
    if kib <= 0 {
        return "0.00 MB".into();
    }
    let units = ["KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = kib as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", units[u])
}

fn pct(f: f64) -> String {
    format!("{:.2}%", f * 100.0)
}

/// The report as text: seff's lines first, in seff's order and words, then runledger's.
pub fn text(e: &JobEfficiency) -> String {
    let mut o = String::new();
    if e.job_id != e.job_id_raw.to_string() {
        let _ = writeln!(o, "Job ID: {}", e.job_id_raw);
        let _ = writeln!(o, "Array Job ID: {}", e.job_id);
    } else {
        let _ = writeln!(o, "Job ID: {}", e.job_id);
    }
    let _ = writeln!(o, "Cluster: {}", e.cluster);
    let _ = writeln!(o, "User/Group: {}/{}", e.user, e.group);
    if let Some(a) = &e.account {
        let _ = writeln!(o, "Account: {a}");
    }
    let state = match (e.exit_code, e.signal) {
        (_, Some(s)) if s > 0 => format!("{} (signal {s})", e.state),
        (Some(c), _) => format!("{} (exit code {c})", e.state),
        _ => e.state.clone(),
    };
    let _ = writeln!(o, "State: {state}");
    if e.partial {
        let _ = writeln!(
            o,
            "WARNING: no node has reported the job's end yet (still running, or its records are on the way): \
             the figures below are partial."
        );
    }
    let _ = writeln!(o, "Nodes: {}", e.nnodes);
    let cores = match e.cores_per_node.as_slice() {
        [] => "not recorded".to_string(),
        [c] => c.to_string(),
        many => format!("{} to {}", many[0], many[many.len() - 1]),
    };
    let _ = writeln!(o, "Cores per node: {cores}");
    let _ = writeln!(o, "CPU Utilized: {}", timefmt::elapsed(e.cpu_s.round() as i64));
    match (e.cpu_efficiency, e.elapsed_s, e.ncpus) {
        (Some(f), Some(w), Some(n)) => {
            let _ = writeln!(o, "CPU Efficiency: {} of {} core-walltime", pct(f), timefmt::elapsed(w * n));
        }
        _ => {
            let _ = writeln!(o, "CPU Efficiency: not known (no elapsed time or CPU count recorded)");
        }
    }
    match e.elapsed_s {
        Some(w) => {
            let _ = writeln!(o, "Job Wall-clock time: {}", timefmt::elapsed(w));
        }
        None => {
            let _ = writeln!(o, "Job Wall-clock time: not recorded");
        }
    }
    let per_node = if e.memory.len() > 1 { " per node" } else { "" };
    match e.memory_headline() {
        Some((peak, alloc)) => {
            let on = if e.memory.len() > 1 {
                let n = e.memory.iter().find(|m| m.peak_kib == Some(peak) && m.alloc_mib == alloc);
                n.map(|m| format!(", on {}", m.node)).unwrap_or_default()
            } else {
                String::new()
            };
            let _ = writeln!(o, "Memory Utilized: {} (largest process{on})", seff_size(peak));
            match alloc {
                Some(a) => {
                    let f = peak as f64 / (a as f64 * 1024.0);
                    let _ = writeln!(o, "Memory Efficiency: {} of {}{per_node}", pct(f), seff_size(a * 1024));
                }
                None => {
                    let _ = writeln!(
                        o,
                        "Memory Efficiency: not known (no memory allocation recorded: Slurm gave the job none, or \
                         its nodes run an older runledger)"
                    );
                }
            }
        }
        None => {
            let _ = writeln!(o, "Memory Utilized: not recorded (no step end arrived)");
            if let Some(a) = e.memory.iter().find_map(|m| m.alloc_mib) {
                let _ = writeln!(o, "Memory Efficiency: not known, of {}{per_node}", seff_size(a * 1024));
            }
        }
    }
    match &e.limit {
        Limit::Seconds { seconds, source } => {
            let _ = writeln!(o, "Time Limit: {} (from {source})", timefmt::elapsed(*seconds));
            if let Some(f) = e.time_efficiency() {
                let _ = writeln!(o, "Time Efficiency: {} of {} time limit", pct(f), timefmt::elapsed(*seconds));
            }
        }
        Limit::Unlimited { source } => {
            let _ = writeln!(o, "Time Limit: UNLIMITED (from {source})");
        }
        Limit::Unknown(Some(why)) => {
            let _ = writeln!(o, "Time Limit: not known ({why})");
        }
        Limit::Unknown(None) => {
            let _ = writeln!(o, "Time Limit: not recorded");
        }
    }
    match &e.failure {
        Some((c, ev)) => {
            let _ = writeln!(o, "Failure: {c}");
            if let Some(ev) = ev {
                let _ = writeln!(o, "Evidence: {ev}");
            }
        }
        None if e.partial => {}
        None => {
            let _ = writeln!(o, "Failure: none");
        }
    }
    for s in &e.suggestions {
        let _ = writeln!(o, "Suggestion: {s}");
    }
    o
}

/// The report as JSON: the same figures, numbers as numbers (seconds, KiB, MiB, fractions).
pub fn json(e: &JobEfficiency) -> Value {
    let limit = match &e.limit {
        Limit::Seconds { seconds, source } => json!({"seconds": seconds, "source": source}),
        Limit::Unlimited { source } => json!({"seconds": null, "unlimited": true, "source": source}),
        Limit::Unknown(why) => json!({"seconds": null, "missing": why}),
    };
    json!({
        "job_id": e.job_id,
        "job_id_raw": e.job_id_raw,
        "cluster": e.cluster,
        "user": e.user,
        "group": e.group,
        "account": e.account,
        "state": e.state,
        "exit_code": e.exit_code,
        "signal": e.signal,
        "partial": e.partial,
        "nnodes": e.nnodes,
        "ncpus": e.ncpus,
        "cores_per_node": e.cores_per_node,
        "cpu_seconds": e.cpu_s,
        "elapsed_s": e.elapsed_s,
        "cpu_efficiency": e.cpu_efficiency,
        "memory": e.memory.iter().map(|m| json!({
            "node": m.node, "peak_kib": m.peak_kib, "alloc_mib": m.alloc_mib,
        })).collect::<Vec<_>>(),
        "memory_efficiency": e.memory_efficiency(),
        "time_limit": limit,
        "time_efficiency": e.time_efficiency(),
        "failure": e.failure.as_ref().map(|(c, ev)| json!({"category": c, "evidence": ev})),
        "suggestions": e.suggestions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::questions::query::{JobRow, StepRow};

    fn job(state: &str, elapsed: i64, ncpus: i64, cpu_s: f64) -> JobDetail {
        JobDetail {
            job: JobRow {
                id: 1,
                cluster: "tc".into(),
                job_id: 42,
                uid: Some(1000),
                user: Some("alice".into()),
                gid: Some(4_000_000_000),
                account: Some("chem".into()),
                start: Some(1_700_000_000),
                end: Some(1_700_000_000 + elapsed),
                state: state.into(),
                exit_code: Some(0),
                signal: Some(0),
                nnodes: Some(1),
                ncpus: Some(ncpus),
                cpu_seconds: cpu_s,
                ..Default::default()
            },
            nodes: vec![NodeRow {
                node: "n1".into(),
                state: state.into(),
                end: 1_700_000_000 + elapsed,
                alloc_mem_mb: Some(65536),
                time_limit_s: Some(2 * 86_400),
                time_limit_source: Some("scontrol".into()),
                ..Default::default()
            }],
            steps: vec![StepRow {
                node: "n1".into(),
                step_id: i64::from(runledger_record::STEP_BATCH),
                ncpus: Some(ncpus),
                max_rss_kib: Some(3_250_586), // 3.10 GiB
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn seff_lines_and_a_memory_suggestion() {
        let e = of(&job("COMPLETED", 3600, 4, 4.0 * 3600.0 * 0.9));
        let t = text(&e);
        let expect = [
            "Job ID: 42\n",
            "Cluster: tc\n",
            "User/Group: alice/4000000000\n",
            "State: COMPLETED (exit code 0)\n",
            "Nodes: 1\n",
            "Cores per node: 4\n",
            "CPU Utilized: 03:36:00\n",
            "CPU Efficiency: 90.00% of 04:00:00 core-walltime\n",
            "Job Wall-clock time: 01:00:00\n",
            "Memory Utilized: 3.10 GB (largest process)\n",
            "Memory Efficiency: 4.84% of 64.00 GB\n",
            "Time Limit: 2-00:00:00 (from scontrol)\n",
            "Time Efficiency: 2.08% of 2-00:00:00 time limit\n",
            "Failure: none\n",
            "Suggestion: asked 64.00 GB per node, peak 3.10 GB: --mem=4G\n",
            "Suggestion: used 01:00:00 of its 2-00:00:00 limit: --time=01:45:00 (shorter jobs start sooner)\n",
        ];
        let mut at = 0;
        for line in expect {
            let found = t[at..].find(line).unwrap_or_else(|| panic!("{line:?} (in order) not in\n{t}"));
            at += found + line.len();
        }
        assert!(!t.contains("CPUs on average"), "90% is efficient: {t}");
        let j = json(&e);
        assert_eq!(j["memory"][0]["alloc_mib"], 65536);
        assert!((j["memory_efficiency"].as_f64().unwrap() - 0.0484).abs() < 1e-3, "{j}");
        assert_eq!(j["time_limit"]["source"], "scontrol");
    }

    #[test]
    fn a_timeout_shows_its_category_evidence_and_what_to_ask() {
        let mut d = job("TIMEOUT", 600, 8, 600.0);
        d.job.state_evidence = Some("slurmstepd: error: *** JOB 42 ON n1 CANCELLED AT x DUE TO TIME LIMIT ***".into());
        d.nodes[0].time_limit_s = Some(600);
        let e = of(&d);
        let t = text(&e);
        assert!(t.contains("Failure: time_limit\nEvidence: slurmstepd: error: *** JOB 42"), "{t}");
        assert!(t.contains("Time Efficiency: 100.00% of 00:10:00 time limit"), "{t}");
        assert!(t.contains("reached its time limit of 00:10:00") && t.contains("--time=00:30:00"), "{t}");
        assert!(t.contains("used 1.0 of its 8 CPUs on average: ask for 1 (e.g. --cpus-per-task=1"), "{t}");
        assert!(!t.contains("--mem="), "a failed job gets no memory cut: {t}");
    }

    #[test]
    fn out_of_memory_asks_for_more() {
        let mut d = job("OUT_OF_MEMORY", 60, 1, 50.0);
        d.nodes[0].alloc_mem_mb = Some(1024);
        d.steps[0].max_rss_kib = Some(1024 * 1024);
        let t = text(&of(&d));
        assert!(t.contains("Memory Efficiency: 100.00% of 1.00 GB"), "{t}");
        assert!(t.contains("Failure: out_of_memory"), "{t}");
        assert!(
            t.contains("it ran out of memory: asked 1.00 GB per node, peak 1.00 GB: ask for more, e.g. --mem=2G"),
            "{t}"
        );
    }

    #[test]
    fn what_is_not_recorded_is_said_not_guessed() {
        let mut d = job("COMPLETED", 60, 1, 50.0);
        d.nodes[0].alloc_mem_mb = None;
        d.nodes[0].time_limit_s = None;
        d.nodes[0].time_limit_source = None;
        d.nodes[0].time_limit_missing = Some("scontrol timed out after 2 s".into());
        let t = text(&of(&d));
        assert!(t.contains("Memory Efficiency: not known (no memory allocation recorded"), "{t}");
        assert!(t.contains("Time Limit: not known (scontrol timed out after 2 s)"), "{t}");
        assert!(!t.contains("Suggestion"), "nothing calls for one: {t}");
        d.nodes[0].time_limit_source = Some("environment".into());
        assert!(text(&of(&d)).contains("Time Limit: UNLIMITED (from environment)"));
        // No end record yet: said, and no verdict.
        d.nodes.clear();
        let t = text(&of(&d));
        assert!(t.contains("WARNING: no node has reported the job's end yet"), "{t}");
        assert!(!t.contains("Failure:"), "{t}");
    }

    #[test]
    fn several_nodes_show_the_one_closest_to_its_allocation() {
        let mut d = job("COMPLETED", 600, 8, 4000.0);
        d.job.nnodes = Some(2);
        d.job.array_job_id = Some(40);
        d.job.array_task_id = Some(2);
        let mut n2 = d.nodes[0].clone();
        n2.node = "n2".into();
        n2.alloc_mem_mb = Some(2048);
        d.nodes.push(n2);
        let mut s2 = d.steps[0].clone();
        s2.node = "n2".into();
        s2.ncpus = Some(2);
        s2.max_rss_kib = Some(1024 * 1024);
        d.steps.push(s2);
        let e = of(&d);
        let t = text(&e);
        assert!(t.starts_with("Job ID: 42\nArray Job ID: 40_2\n"), "{t}");
        assert!(t.contains("Cores per node: 2 to 8"), "{t}");
        assert!(t.contains("Memory Utilized: 1.00 GB (largest process, on n2)"), "{t}");
        assert!(t.contains("Memory Efficiency: 50.00% of 2.00 GB per node"), "{t}");
    }

    #[test]
    fn flag_sizes_round_up() {
        assert_eq!(mem_flag(100), "256M");
        assert_eq!(mem_flag(1000), "1G");
        assert_eq!(mem_flag(3810), "4G");
        assert_eq!(time_flag(1), "00:15:00");
        assert_eq!(time_flag(3 * 86_400 + 1), "3-00:15:00");
        assert_eq!(seff_size(0), "0.00 MB");
        assert_eq!(seff_size(512), "512.00 KB");
        assert_eq!(seff_size(1536 * 1024), "1.50 GB");
    }
}
