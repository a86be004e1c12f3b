//! A whole job for scripts and for reading: the JSON of `query jobs --json` and `query job ID
//! --json`, and the text of `query job ID`. JSON always carries the whole job, with times as RFC
//! 3339 local time (null when unknown) and elapsed seconds, so scripts never parse display
//! formats.

use super::output::{exit_code, opt, Extras};
use super::text::shown;
use super::{FactValue, JobDetail, JobRow, StepRow};
use crate::questions::timefmt;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

fn time_json(t: Option<i64>) -> Value {
    t.map(|t| Value::String(timefmt::rfc3339(t))).unwrap_or(Value::Null)
}

fn step_json(s: &StepRow) -> Value {
    let cpu = match (s.cpu_user_s, s.cpu_sys_s) {
        (None, None) => Value::Null,
        (u, y) => json!(u.unwrap_or(0.0) + y.unwrap_or(0.0)),
    };
    json!({
        "step": s.name(),
        "step_id": s.step_id,
        "node": s.node,
        "argv": s.argv,
        "exe": s.exe,
        "cwd": s.cwd,
        "start": time_json(s.start),
        "end": time_json(s.end),
        "elapsed_s": s.start.zip(s.end).map(|(a, b)| (b - a).max(0)),
        "ntasks": s.ntasks,
        "local_tasks": s.local_tasks,
        "ncpus": s.ncpus,
        "cpu_user_s": s.cpu_user_s,
        "cpu_sys_s": s.cpu_sys_s,
        "cpu_seconds": cpu,
        "max_rss_kib": s.max_rss_kib,
        "env_hash": s.env_hash,
        "stdout": s.stdout,
        "stderr": s.stderr,
        "tasks": s.tasks.iter().map(|t| json!({
            "task_id": t.task_id,
            "rank": t.global_rank,
            "exit_code": t.exit_code,
            "signal": t.signal,
            "core_dumped": t.core_dumped,
            "time": time_json(Some(t.time)),
        })).collect::<Vec<_>>(),
    })
}

/// A job as JSON: the row, its modules, tags and steps.
pub fn job_json(j: &JobRow, extras: &Extras) -> Map<String, Value> {
    let v = json!({
        "cluster": j.cluster,
        "job_id": j.job_id,
        "array_job_id": j.array_job_id,
        "array_task_id": j.array_task_id,
        "user": j.user,
        "uid": j.uid,
        "gid": j.gid,
        "account": j.account,
        "partition": j.partition,
        "qos": j.qos,
        "job_name": j.job_name,
        "work_dir": j.work_dir,
        "state": j.state,
        "exit_code": j.exit_code,
        "signal": j.signal,
        "state_evidence": j.state_evidence,
        "start": time_json(j.start),
        "end": time_json(j.end),
        "elapsed_s": j.elapsed(),
        "nnodes": j.nnodes,
        "ncpus": j.ncpus,
        "nodes": j.node_list(),
        "cpu_user_s": j.cpu_user_s,
        "cpu_sys_s": j.cpu_sys_s,
        "cpu_seconds": j.cpu_seconds,
        "max_rss_kib": j.max_rss_kib,
        "env_hash": j.env_hash,
        "program": j.program,
        "outcome": j.outcome,
        "category": j.category,
        "error": j.error,
        "job_facts": extras.facts.get(&j.id).map(|f| f.iter().map(|(k, v)| (k.clone(), json!(v.value))).collect::<Map<_, _>>()).unwrap_or_default(),
        "job_fact_units": extras.facts.get(&j.id).map(|f| f.iter().filter_map(|(k, v)| Some((k.clone(), json!(v.unit.as_ref()?)))).collect::<Map<_, _>>()).unwrap_or_default(),
        "modules": extras.modules.get(&j.id).cloned().unwrap_or_default(),
        "packages": extras.packages.get(&j.id).cloned().unwrap_or_default(),
        "tags": extras.tags.get(&j.id).cloned().unwrap_or_default(),
        "steps": extras.steps.get(&j.id).map(|s| s.iter().map(step_json).collect::<Vec<_>>()).unwrap_or_default(),
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal"),
    }
}

/// `query jobs --json` of `rows` as one string (the command writes it a chunk at a time,
/// `questions::jobs`): what the tests compare it with.
#[cfg(test)]
pub fn jobs_json(rows: &[JobRow], extras: &Extras) -> String {
    let mut out = Vec::new();
    write_json_array(&mut out, rows.iter().map(|j| Value::Object(job_json(j, extras))))
        .expect("JSON values serialize into memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// A pretty JSON array of `values` and a newline, written to `out` a value at a time, as they
/// come: a listing of thousands of jobs is never held whole, as values or as text (that took
/// 258 MB for the 3,469 jobs of one user in a million).
pub fn write_json_array(out: &mut dyn std::io::Write, values: impl Iterator<Item = Value>) -> std::io::Result<()> {
    use serde::Serializer;
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, out);
    serde_json::Serializer::pretty(&mut w).collect_seq(values).map_err(std::io::Error::from)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// `query job --json`: one object per job row (newest first).
pub fn detail_json(details: &[JobDetail]) -> String {
    let arr: Vec<Value> = details
        .iter()
        .map(|d| {
            let extras = Extras {
                modules: HashMap::from([(d.job.id, module_names(d))]),
                packages: HashMap::from([(d.job.id, detail_packages(d))]),
                tags: HashMap::from([(d.job.id, d.tags.clone())]),
                steps: HashMap::from([(d.job.id, d.steps.clone())]),
                facts: HashMap::from([(d.job.id, detail_job_facts(d))]),
            };
            let mut m = job_json(&d.job, &extras);
            m.insert(
                "module_files".into(),
                Value::Array(
                    d.modules
                        .iter()
                        .map(|sm| {
                            json!({
                                "step": runledger_record::step_name(sm.step_id as u32),
                                "node": sm.node,
                                "name": sm.name,
                                "version": (!sm.version.is_empty()).then_some(&sm.version),
                                "file": sm.file,
                            })
                        })
                        .collect(),
                ),
            );
            m.insert("environments".into(), json!(d.environments));
            m.insert("python".into(), Value::Array(d.python.iter().map(python_json).collect()));
            if d.python_nodes.iter().any(|n| n.skipped > 0 || !n.rejected.is_empty()) {
                m.insert(
                    "python_not_recorded".into(),
                    Value::Array(
                        d.python_nodes
                            .iter()
                            .filter(|n| n.skipped > 0 || !n.rejected.is_empty())
                            .map(|n| json!({"node": n.node, "skipped_files": n.skipped, "rejected": n.rejected}))
                            .collect(),
                    ),
                );
            }
            m.insert("timeline".into(), super::timeline::timeline_json(&d.timeline));
            m.insert("idle".into(), super::timeline::idle_json(&d.timeline));
            m.insert(
                "node_records".into(),
                Value::Array(
                    d.nodes
                        .iter()
                        .map(|n| {
                            let mut v = json!({
                                "node": n.node,
                                "state": n.state,
                                "exit_code": n.exit_code,
                                "signal": n.signal,
                                "core_dumped": n.core_dumped,
                                "derived_exit_code": n.derived_exit.map(|d| d.0),
                                "derived_signal": n.derived_exit.map(|d| d.1),
                                "state_evidence": n.state_evidence,
                                "start": time_json(n.start),
                                "end": time_json(Some(n.end)),
                                "stdout": n.stdout,
                                "stderr": n.stderr,
                                "received_at": time_json(Some(n.received_at)),
                            });
                            // What the job asked for (#15), only when recorded: records from older
                            // nodes print as they always did.
                            let asked = [
                                ("alloc_mem_mb", n.alloc_mem_mb.map(Value::from)),
                                ("time_limit_s", n.time_limit_s.map(Value::from)),
                                ("time_limit_source", n.time_limit_source.clone().map(Value::from)),
                                ("time_limit_missing", n.time_limit_missing.clone().map(Value::from)),
                            ];
                            for (k, x) in asked {
                                if let Some(x) = x {
                                    v[k] = x;
                                }
                            }
                            v
                        })
                        .collect(),
                ),
            );
            m.insert(
                "events".into(),
                Value::Array(
                    d.events
                        .iter()
                        .map(|e| json!({"time": time_json(Some(e.time)), "node": e.node, "kind": e.kind, "detail": e.detail}))
                        .collect(),
                ),
            );
            m.insert(
                "facts".into(),
                Value::Array(
                    d.facts
                        .iter()
                        .map(|f| json!({"node": f.node, "source": f.source, "key": f.key, "value": f.value, "unit": f.unit}))
                        .collect(),
                ),
            );
            Value::Object(m)
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&arr).expect("JSON values serialize");
    s.push('\n');
    s
}

/// The job-level facts of a detail, as [`super::job_facts_of`] gives them for a list.
fn detail_job_facts(d: &JobDetail) -> BTreeMap<String, FactValue> {
    let mut rows: Vec<&super::FactRow> = d.facts.iter().filter(|f| f.source.is_empty()).collect();
    rows.sort_by(|a, b| runledger_ledger::names::natural_cmp(&a.node, &b.node));
    let mut out = BTreeMap::new();
    for f in rows {
        out.entry(f.key.clone()).or_insert_with(|| FactValue { value: f.value.clone(), unit: f.unit.clone() });
    }
    let j = &d.job;
    for (k, v) in
        [("program", &j.program), ("outcome", &j.outcome), ("failure_category", &j.category), ("error", &j.error)]
    {
        if let Some(v) = v {
            out.insert(k.to_string(), FactValue { value: v.clone(), unit: None });
        }
    }
    out
}

/// One recorded Python process, as `query job --json` gives it.
fn python_json(p: &super::PythonProcRow) -> Value {
    json!({
        "node": p.node,
        "pid": p.pid,
        "rank": p.rank,
        "start": time_json(Some(p.start)),
        "interpreter": p.interpreter,
        "version": p.version,
        "prefix": p.prefix,
        "base_prefix": p.base_prefix,
        "main": p.main,
        "packages": p.packages.iter().map(|(n, v)| super::full_name(n, v)).collect::<Vec<_>>(),
        "ended": p.ended,
    })
}

/// The job's packages (every process, deduplicated), as `query jobs --json` lists them.
fn detail_packages(d: &JobDetail) -> Vec<String> {
    let mut v: Vec<String> =
        d.python.iter().flat_map(|p| p.packages.iter().map(|(n, v)| super::full_name(n, v))).collect();
    v.sort();
    v.dedup();
    v
}

fn module_names(d: &JobDetail) -> Vec<String> {
    let mut v: Vec<String> = d
        .modules
        .iter()
        .map(|m| if m.version.is_empty() { m.name.clone() } else { format!("{}/{}", m.name, m.version) })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn kv(out: &mut String, key: &str, value: impl AsRef<str>) {
    let v = value.as_ref();
    if !v.is_empty() {
        let _ = writeln!(out, "  {key:<12} {}", shown(v));
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
                a.clone()
            } else {
                format!("'{}'", shown(&a.replace('\'', "'\\''")))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `query job`: everything about one job row, for people.
pub fn detail_text(d: &JobDetail) -> String {
    let j = &d.job;
    let mut o = String::new();
    let _ = writeln!(o, "Job {} on cluster {}", j.display_id(), shown(&j.cluster));
    if j.array_job_id.is_some() {
        kv(&mut o, "JobIDRaw", j.job_id.to_string());
    }
    let user = match (&j.user, j.uid, j.gid) {
        (Some(u), Some(uid), Some(gid)) => format!("{u} (uid {uid}, gid {gid})"),
        (Some(u), Some(uid), None) => format!("{u} (uid {uid})"),
        (u, uid, _) => u.clone().or(uid.map(|x| format!("uid {x}"))).unwrap_or_default(),
    };
    kv(&mut o, "User", user);
    kv(&mut o, "Name", opt(&j.job_name));
    kv(&mut o, "Account", opt(&j.account));
    kv(&mut o, "Partition", opt(&j.partition));
    kv(&mut o, "QOS", opt(&j.qos));
    kv(&mut o, "WorkDir", opt(&j.work_dir));
    let ec = exit_code(j);
    kv(&mut o, "State", if ec.is_empty() { j.state.clone() } else { format!("{} (exit {ec})", j.state) });
    kv(&mut o, "Evidence", opt(&j.state_evidence));
    kv(&mut o, "Program", opt(&j.program));
    if j.outcome.is_some() {
        let outcome = match &j.category {
            Some(c) => format!("{} ({c})", opt(&j.outcome)),
            None => opt(&j.outcome),
        };
        kv(&mut o, "Log outcome", outcome);
    }
    kv(&mut o, "Log error", opt(&j.error));
    if let Some(f) = d.facts.iter().find(|f| f.source.is_empty() && f.key == "state_disagreement") {
        kv(&mut o, "Disagreement", &f.value);
    }
    kv(&mut o, "Start", timefmt::display(j.start));
    kv(&mut o, "End", timefmt::display(j.end));
    kv(&mut o, "Elapsed", j.elapsed().map(timefmt::elapsed).unwrap_or_default());
    kv(
        &mut o,
        "Nodes",
        format!(
            "{} ({} node{}, {} CPUs)",
            j.nodes.as_deref().unwrap_or(""),
            opt(&j.nnodes),
            if j.nnodes == Some(1) { "" } else { "s" },
            opt(&j.ncpus)
        ),
    );
    kv(&mut o, "CPU", format!("{:.2} s (user {:.2} s, system {:.2} s)", j.cpu_seconds, j.cpu_user_s, j.cpu_sys_s));
    kv(&mut o, "MaxRSS", j.max_rss_kib.map(timefmt::kib).unwrap_or_default());
    if !d.tags.is_empty() {
        kv(&mut o, "Tags", d.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    }

    if !d.nodes.is_empty() {
        let _ = writeln!(o, "\nNode records:");
        for n in &d.nodes {
            let _ = writeln!(
                o,
                "  {}  {} exit {}:{}{}  {} .. {}  received {}",
                shown(&n.node),
                n.state,
                n.exit_code,
                n.signal,
                if n.core_dumped { " (core dumped)" } else { "" },
                timefmt::display(n.start),
                timefmt::display(Some(n.end)),
                timefmt::display(Some(n.received_at)),
            );
            if let Some(e) = &n.state_evidence {
                let _ = writeln!(o, "      evidence: {}", shown(e));
            }
            if let Some(p) = &n.stdout {
                let _ = writeln!(o, "      stdout: {}", shown(p));
            }
            if let Some(p) = &n.stderr {
                let _ = writeln!(o, "      stderr: {}", shown(p));
            }
            if let Some(m) = n.alloc_mem_mb {
                let _ = writeln!(o, "      memory asked: {}", timefmt::kib(m.saturating_mul(1024)));
            }
            match (n.time_limit_s, &n.time_limit_source, &n.time_limit_missing) {
                (Some(s), Some(src), _) => {
                    let _ = writeln!(o, "      time limit: {} (from {src})", timefmt::elapsed(s));
                }
                (None, Some(src), _) => {
                    let _ = writeln!(o, "      time limit: none (from {src})");
                }
                (_, None, Some(why)) => {
                    let _ = writeln!(o, "      time limit: not known ({})", shown(why));
                }
                _ => {}
            }
        }
    } else {
        let _ = writeln!(o, "\nNode records: none yet (no epilog record received: state unknown)");
    }

    if !d.steps.is_empty() {
        let _ = writeln!(o, "\nSteps:");
        for s in &d.steps {
            let cpu = s.cpu_user_s.unwrap_or(0.0) + s.cpu_sys_s.unwrap_or(0.0);
            let _ = writeln!(
                o,
                "  {}.{} on {}: {} .. {}, {} task(s), cpu {:.2} s, max rss {}",
                j.job_id,
                s.name(),
                shown(&s.node),
                timefmt::display(s.start),
                timefmt::display(s.end),
                opt(&s.ntasks),
                cpu,
                s.max_rss_kib.map(timefmt::kib).unwrap_or_else(|| "?".into()),
            );
            if !s.argv.is_empty() {
                let _ = writeln!(o, "      argv: {}", shell_words(&s.argv));
            }
            if let Some(e) = &s.exe {
                let _ = writeln!(o, "      exe:  {}", shown(e));
            }
            if let Some(c) = &s.cwd {
                let _ = writeln!(o, "      cwd:  {}", shown(c));
            }
            if let Some(h) = &s.env_hash {
                let _ = writeln!(o, "      env:  {}", &h[..h.len().min(12)]);
            }
            for t in &s.tasks {
                let _ = writeln!(
                    o,
                    "      task {} (rank {}): exit {}:{}{} at {}",
                    t.task_id,
                    t.global_rank,
                    t.exit_code,
                    t.signal,
                    if t.core_dumped { " (core dumped)" } else { "" },
                    timefmt::display(Some(t.time))
                );
            }
        }
    }

    if !d.modules.is_empty() {
        let _ = writeln!(o, "\nModules:");
        let mut seen = std::collections::BTreeSet::new();
        for m in &d.modules {
            let full = if m.version.is_empty() { m.name.clone() } else { format!("{}/{}", m.name, m.version) };
            if seen.insert((full.clone(), m.file.clone())) {
                let _ = writeln!(o, "  {:<30} {}", shown(&full), shown(m.file.as_deref().unwrap_or("")));
            }
        }
    }

    if !d.python.is_empty() || !d.python_nodes.is_empty() {
        let _ = writeln!(o, "\nPython (as the job's processes reported, rank 0):");
        if d.python.is_empty() {
            let _ = writeln!(o, "  no Python process recorded");
        }
        for p in &d.python {
            let _ = writeln!(
                o,
                "  {} pid {} at {}: {} (Python {}), {}",
                shown(&p.node),
                p.pid,
                timefmt::display(Some(p.start)),
                shown(&p.interpreter),
                p.version,
                p.ended
            );
            if let Some(m) = &p.main {
                let _ = writeln!(o, "      main:     {}", shown(m));
            }
            match (&p.prefix, &p.base_prefix) {
                (Some(pre), Some(base)) => {
                    let _ = writeln!(o, "      prefix:   {} (environment on {})", shown(pre), shown(base));
                }
                (Some(pre), None) => {
                    let _ = writeln!(o, "      prefix:   {}", shown(pre));
                }
                _ => {}
            }
            let pkgs: Vec<String> = p.packages.iter().map(|(n, v)| super::full_name(n, v)).collect();
            let pkgs = if pkgs.is_empty() { "none".to_string() } else { shown(&pkgs.join(" ")).into_owned() };
            let _ = writeln!(o, "      packages: {pkgs}");
        }
        for n in &d.python_nodes {
            if n.skipped > 0 {
                let _ = writeln!(
                    o,
                    "  {}: {} file(s) not read (over the bound or the time budget)",
                    shown(&n.node),
                    n.skipped
                );
            }
            for r in &n.rejected {
                let _ = writeln!(o, "  {}: not recorded: {}", shown(&n.node), shown(r));
            }
        }
    }

    for (hash, env) in &d.environments {
        let used: Vec<String> = d
            .steps
            .iter()
            .filter(|s| s.env_hash.as_deref() == Some(hash))
            .map(|s| format!("{}@{}", s.name(), shown(&s.node)))
            .collect();
        let _ = writeln!(o, "\nEnvironment {} (steps {}):", &hash[..hash.len().min(12)], used.join(", "));
        for (k, v) in env {
            let _ = writeln!(o, "  {}={}", shown(k), shown(v));
        }
    }

    if !d.events.is_empty() {
        let _ = writeln!(o, "\nEvents:");
        for e in &d.events {
            let _ = writeln!(
                o,
                "  {}  {:<8} {:<13} {}",
                timefmt::display(Some(e.time)),
                shown(&e.node),
                e.kind,
                shown(&e.detail)
            );
        }
    }

    if !d.facts.is_empty() {
        // One block per (node, source): the job-level verdict first, then each log file.
        let mut groups: Vec<(&str, &str)> = d.facts.iter().map(|f| (f.node.as_str(), f.source.as_str())).collect();
        groups.sort_by(|a, b| {
            (!a.1.is_empty())
                .cmp(&!b.1.is_empty())
                .then_with(|| runledger_ledger::names::natural_cmp(a.0, b.0))
                .then_with(|| a.1.cmp(b.1))
        });
        groups.dedup();
        for (node, source) in groups {
            if source.is_empty() {
                let _ = writeln!(o, "\nFacts (job level, from {}'s epilog):", shown(node));
            } else {
                let _ = writeln!(o, "\nFacts from {} (on {}):", shown(source), shown(node));
            }
            let mut facts: Vec<&super::FactRow> =
                d.facts.iter().filter(|f| f.node == node && f.source == source).collect();
            // The verdict first, in the order it reads, then the rest by name.
            let first = ["program", "programs", "outcome", "failure_category", "error", "error_source"];
            facts.sort_by_key(|f| (first.iter().position(|k| *k == f.key).unwrap_or(first.len()), f.key.clone()));
            let width = facts.iter().map(|f| f.key.chars().count()).max().unwrap_or(0).min(24);
            for f in facts {
                let unit = f.unit.as_deref().map(|u| format!(" {}", shown(u))).unwrap_or_default();
                let _ = writeln!(o, "  {:<width$} {}{unit}", shown(&f.key), shown(&f.value));
            }
        }
    }
    o
}
