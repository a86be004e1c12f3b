//! How query results are shown: an aligned table (sacct's look), CSV, or JSON for scripts.
//!
//! Table and CSV show the fields chosen with `-o` ([`FIELDS`], listed by `--helpformat`); JSON
//! always carries the whole job, with times as RFC 3339 local time (null when unknown) and
//! elapsed seconds, so scripts never parse display formats.

use super::report::{csv_cell, csv_text_cell};
use super::{FactValue, JobDetail, JobRow, StepRow};
use crate::questions::timefmt;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// What a field needs beyond the `jobs` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Row,
    Modules,
    Tags,
}

/// Per-job data fetched for the whole result set.
#[derive(Default)]
pub struct Extras {
    pub modules: HashMap<i64, Vec<String>>,
    pub tags: HashMap<i64, BTreeMap<String, String>>,
    pub steps: HashMap<i64, Vec<StepRow>>,
    /// Job-level facts (see [`super::job_facts_of`]); only fetched for JSON.
    pub facts: HashMap<i64, BTreeMap<String, FactValue>>,
}

pub struct Field {
    pub name: &'static str,
    pub help: &'static str,
    pub right: bool,
    pub needs: Needs,
    /// The cell: borrowed from the row where it can be (a listing has thousands of rows).
    pub get: for<'a> fn(&'a JobRow, &'a Extras) -> Cow<'a, str>,
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_default()
}

/// A text column's cell, borrowed.
fn text(v: &Option<String>) -> Cow<'_, str> {
    Cow::Borrowed(v.as_deref().unwrap_or(""))
}

/// A recorded value as a terminal may show it: control characters (C0 including newline and tab,
/// DEL, C1) and the bidirectional overrides that reorder what is shown are written as escapes
/// (`\x1b`, `\n`, `\u{202e}`); everything else, backslashes included, is shown as it is. Job names,
/// argv, environments and log lines are the users' own text: raw, they could move the cursor,
/// retitle or clear the admin's terminal, or fake lines of the output.
pub fn shown(s: &str) -> Cow<'_, str> {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let bad = |c: char| c.is_control() || bidi(c);
    // Most cells are printable ASCII: decided by one pass over the bytes.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) || !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if bad(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn exit_code(j: &JobRow) -> String {
    match (j.exit_code, j.signal) {
        (Some(c), s) => format!("{c}:{}", s.unwrap_or(0)),
        _ => String::new(),
    }
}

macro_rules! field {
    ($name:literal, $help:literal, $right:expr, $needs:expr, |$j:pat_param, $x:pat_param| $get:expr) => {
        Field { name: $name, help: $help, right: $right, needs: $needs, get: |$j, $x| Cow::from($get) }
    };
}

/// Every field `-o` accepts (case-insensitive).
pub static FIELDS: &[Field] = &[
    field!("JobID", "job id; ARRAYID_TASK for an array task", false, Needs::Row, |j, _| j.display_id()),
    field!("JobIDRaw", "the job's own numeric id", true, Needs::Row, |j, _| j.job_id.to_string()),
    field!("ArrayJobID", "the array's job id", true, Needs::Row, |j, _| opt(&j.array_job_id)),
    field!("ArrayTaskID", "the array task index", true, Needs::Row, |j, _| opt(&j.array_task_id)),
    field!("Cluster", "cluster name", false, Needs::Row, |j, _| j.cluster.as_str()),
    field!("User", "user name", false, Needs::Row, |j, _| text(&j.user)),
    field!("UID", "user id", true, Needs::Row, |j, _| opt(&j.uid)),
    field!("GID", "group id", true, Needs::Row, |j, _| opt(&j.gid)),
    field!("Account", "account charged", false, Needs::Row, |j, _| text(&j.account)),
    field!("Partition", "partition", false, Needs::Row, |j, _| text(&j.partition)),
    field!("QOS", "quality of service", false, Needs::Row, |j, _| text(&j.qos)),
    field!("JobName", "job name", false, Needs::Row, |j, _| text(&j.job_name)),
    field!("WorkDir", "working directory", false, Needs::Row, |j, _| text(&j.work_dir)),
    field!("State", "final state: the worst over the job's nodes", false, Needs::Row, |j, _| j.state.as_str()),
    field!("ExitCode", "exit code:signal, the worst over the job's nodes", false, Needs::Row, |j, _| exit_code(j)),
    field!("Evidence", "the log line that shows why the state is what it is", false, Needs::Row, |j, _| text(
        &j.state_evidence
    )),
    field!("Start", "start time (local)", false, Needs::Row, |j, _| timefmt::display(j.start)),
    field!("End", "end time (local)", false, Needs::Row, |j, _| timefmt::display(j.end)),
    field!("Elapsed", "run time as [D-]HH:MM:SS", true, Needs::Row, |j, _| j
        .elapsed()
        .map(timefmt::elapsed)
        .unwrap_or_default()),
    field!("ElapsedRaw", "run time in seconds", true, Needs::Row, |j, _| opt(&j.elapsed())),
    field!("NNodes", "number of nodes", true, Needs::Row, |j, _| opt(&j.nnodes)),
    field!("NCPUS", "CPUs allocated (sum over nodes)", true, Needs::Row, |j, _| opt(&j.ncpus)),
    field!("NodeList", "nodes the job ran on", false, Needs::Row, |j, _| text(&j.nodes)),
    field!("TotalCPU", "user + system CPU time of all steps, [D-]HH:MM:SS", true, Needs::Row, |j, _| {
        timefmt::elapsed(j.cpu_seconds.round() as i64)
    }),
    field!("CPUSeconds", "user + system CPU seconds of all steps", true, Needs::Row, |j, _| format!(
        "{:.2}",
        j.cpu_seconds
    )),
    field!("UserCPU", "user CPU seconds", true, Needs::Row, |j, _| format!("{:.2}", j.cpu_user_s)),
    field!("SystemCPU", "system CPU seconds", true, Needs::Row, |j, _| format!("{:.2}", j.cpu_sys_s)),
    field!("MaxRSS", "largest resident set of any step on any node", true, Needs::Row, |j, _| j
        .max_rss_kib
        .map(timefmt::kib)
        .unwrap_or_default()),
    field!("MaxRSSKiB", "MaxRSS in KiB", true, Needs::Row, |j, _| opt(&j.max_rss_kib)),
    field!("Modules", "environment modules loaded (name/version, space separated)", false, Needs::Modules, |j, x| x
        .modules
        .get(&j.id)
        .map(|m| m.join(" "))
        .unwrap_or_default()),
    field!("Tags", "--runledger-tag pairs (key=value, space separated)", false, Needs::Tags, |j, x| x
        .tags
        .get(&j.id)
        .map(|t| t.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()),
    field!("Program", "the code the job ran, from its logs (e.g. LAMMPS)", false, Needs::Row, |j, _| text(&j.program)),
    field!("Outcome", "what its logs say: success, failed, incomplete, unknown", false, Needs::Row, |j, _| text(
        &j.outcome
    )),
    field!(
        "Category",
        "why it failed, from its logs (e.g. input_error; see `query errors`)",
        false,
        Needs::Row,
        |j, _| text(&j.category)
    ),
    field!("Error", "the log line that shows the failure", false, Needs::Row, |j, _| text(&j.error)),
    field!("EnvHash", "hash of the batch step's environment (see `query job`)", false, Needs::Row, |j, _| text(
        &j.env_hash
    )),
];

/// The fields that read only what a lean listing reads ([`super::find_jobs_with`]): the
/// defaults and their like.
pub const LEAN_FIELDS: &[&str] = &[
    "JobID",
    "JobIDRaw",
    "ArrayJobID",
    "ArrayTaskID",
    "User",
    "Account",
    "Partition",
    "JobName",
    "State",
    "ExitCode",
    "Start",
    "End",
    "Elapsed",
    "ElapsedRaw",
    "NNodes",
    "NodeList",
    "Modules",
    "Tags",
];

impl Field {
    pub fn lean(&self) -> bool {
        LEAN_FIELDS.contains(&self.name)
    }

    /// Whether the field is free text (names, paths, log lines: what users and their logs
    /// choose), which CSV protects from spreadsheets; numbers, ids, states and times are not.
    pub fn text(&self) -> bool {
        !self.right && !matches!(self.name, "JobID" | "State" | "ExitCode" | "Start" | "End")
    }
}

/// Shown when `-o` is not given.
pub const DEFAULT_FIELDS: &str = "JobID,JobName,User,Account,Partition,State,ExitCode,Start,Elapsed,NNodes,NodeList";

pub fn parse_field(name: &str) -> Result<&'static Field, String> {
    let n = name.trim();
    FIELDS.iter().find(|f| f.name.eq_ignore_ascii_case(n)).ok_or_else(|| {
        format!(
            "unknown field '{name}' (accepted: {}; --helpformat describes them)",
            FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
        )
    })
}

pub fn default_fields() -> Vec<&'static Field> {
    DEFAULT_FIELDS.split(',').map(|n| parse_field(n).expect("default fields exist")).collect()
}

/// `--helpformat`.
pub fn helpformat() -> String {
    let width = FIELDS.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut s = String::from("Fields for -o/--format (case-insensitive):\n");
    for f in FIELDS {
        let _ = writeln!(s, "  {:width$}  {}", f.name, f.help);
    }
    let _ = writeln!(s, "\nDefault: {DEFAULT_FIELDS}");
    s
}

/// A listing's cells, rendered as its jobs are read ([`super::each_job`]): every cell in one
/// buffer, so thousands of rows cost one growing string, not thousands of rows and cells.
/// The cells of fields that need [`Extras`] stay empty until [`Listing::complete`], once the
/// extras of all the jobs are fetched.
pub struct Listing<'f> {
    fields: &'f [&'f Field],
    buf: String,
    /// Where each cell ends in `buf`, row after row, field after field.
    ends: Vec<usize>,
    ids: Vec<i64>,
    /// Rows were pushed newest first (a `--limit`); they are shown oldest first.
    newest_first: bool,
    /// What the row fields are given for extras (they read none).
    no_extras: Extras,
}

impl<'f> Listing<'f> {
    pub fn new(fields: &'f [&'f Field], newest_first: bool) -> Listing<'f> {
        Listing {
            fields,
            buf: String::new(),
            ends: Vec::new(),
            ids: Vec::new(),
            newest_first,
            no_extras: Extras::default(),
        }
    }

    pub fn push(&mut self, j: &JobRow) {
        for f in self.fields {
            if f.needs == Needs::Row {
                self.buf.push_str(&(f.get)(j, &self.no_extras));
            }
            self.ends.push(self.buf.len());
        }
        self.ids.push(j.id);
    }

    /// The jobs' row ids, for fetching their [`Extras`].
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Fills in the cells that need `extras`.
    pub fn complete(&mut self, extras: &Extras) {
        if self.fields.iter().all(|f| f.needs == Needs::Row) {
            return;
        }
        let mut buf = String::with_capacity(self.buf.len());
        let mut old_start = 0;
        for (i, &id) in self.ids.iter().enumerate() {
            let j = JobRow { id, ..Default::default() };
            for (c, f) in self.fields.iter().enumerate() {
                let k = i * self.fields.len() + c;
                let old_end = self.ends[k];
                if f.needs == Needs::Row {
                    buf.push_str(&self.buf[old_start..old_end]);
                } else {
                    buf.push_str(&(f.get)(&j, extras));
                }
                self.ends[k] = buf.len();
                old_start = old_end;
            }
        }
        self.buf = buf;
    }

    fn cell_at(&self, k: usize) -> &str {
        &self.buf[if k == 0 { 0 } else { self.ends[k - 1] }..self.ends[k]]
    }

    /// Row `r` (oldest first), column `c`.
    fn cell(&self, r: usize, c: usize) -> &str {
        let r = if self.newest_first { self.ids.len() - 1 - r } else { r };
        self.cell_at(r * self.fields.len() + c)
    }

    pub fn table(&self, header: bool) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        let right: Vec<bool> = self.fields.iter().map(|f| f.right).collect();
        aligned_with(&names, self.ids.len(), |r, c| self.cell(r, c), &right, " ", header)
    }

    pub fn csv(&self, header: bool) -> String {
        let mut out = String::with_capacity(self.buf.len() + self.ends.len());
        if header {
            out.push_str(&self.fields.iter().map(|f| f.name).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        for r in 0..self.ids.len() {
            for c in 0..self.fields.len() {
                if c > 0 {
                    out.push(',');
                }
                let cell = self.cell(r, c);
                if self.fields[c].text() {
                    out.push_str(&csv_text_cell(cell));
                } else {
                    out.push_str(&csv_cell(cell));
                }
            }
            out.push('\n');
        }
        out
    }

    /// The listing of `rows` (oldest first) with their `extras`.
    fn of(rows: &[JobRow], fields: &'f [&'f Field], extras: &Extras) -> Listing<'f> {
        let mut l = Listing::new(fields, false);
        for j in rows {
            l.push(j);
        }
        l.complete(extras);
        l
    }
}

pub fn table(rows: &[JobRow], fields: &[&Field], extras: &Extras, header: bool) -> String {
    Listing::of(rows, fields, extras).table(header)
}

pub fn csv(rows: &[JobRow], fields: &[&Field], extras: &Extras, header: bool) -> String {
    Listing::of(rows, fields, extras).csv(header)
}

/// An aligned text table, as every `query` prints by default: columns as wide as their widest
/// cell (and name, with `header`), right-aligned where `right` says, separated by `sep`, under a
/// header line and a rule of dashes.
pub fn aligned(names: &[String], cells: &[Vec<String>], right: &[bool], sep: &str, header: bool) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    aligned_with(&names, cells.len(), |r, c| cells[r].get(c).map_or("", String::as_str), right, sep, header)
}

/// [`aligned`] over `rows` rows of cells given by `cell(row, column)`.
fn aligned_with<'a>(
    names: &[&'a str],
    rows: usize,
    cell: impl Fn(usize, usize) -> &'a str,
    right: &[bool],
    sep: &str,
    header: bool,
) -> String {
    // Recorded text reaches a terminal: control characters escaped (see [`shown`]).
    let cell = |r: usize, c: usize| shown(cell(r, c));
    // Thousands of rows: the width of a cell counted cheaply, each line written in place.
    let width = |s: &str| if s.is_ascii() { s.len() } else { s.chars().count() };
    let cols = names.len();
    let mut widths: Vec<usize> = names.iter().map(|n| if header { width(n) } else { 0 }).collect();
    for r in 0..rows {
        for (c, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(width(&cell(r, c)));
        }
    }
    let line_len = widths.iter().sum::<usize>() + sep.len() * cols + 1;
    let spaces = |out: &mut String, n: usize| {
        const SPACES: &str = "                                                                ";
        let mut n = n;
        while n > 0 {
            let k = n.min(SPACES.len());
            out.push_str(&SPACES[..k]);
            n -= k;
        }
    };
    let mut out = String::with_capacity(line_len * (rows + 2));
    let line = |out: &mut String, value: &dyn Fn(usize) -> Cow<'a, str>| {
        let start = out.len();
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            let v = value(i);
            let pad = w.saturating_sub(width(&v));
            if right.get(i).copied().unwrap_or(false) {
                spaces(out, pad);
                out.push_str(&v);
            } else {
                out.push_str(&v);
                // The last column's padding would be trimmed off again.
                if i + 1 < cols {
                    spaces(out, pad);
                }
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    if header {
        line(&mut out, &|c| Cow::Borrowed(names[c]));
        let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rules.join(sep));
        out.push('\n');
    }
    for r in 0..rows {
        line(&mut out, &|c| cell(r, c));
    }
    out
}

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
        "tags": extras.tags.get(&j.id).cloned().unwrap_or_default(),
        "steps": extras.steps.get(&j.id).map(|s| s.iter().map(step_json).collect::<Vec<_>>()).unwrap_or_default(),
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal"),
    }
}

pub fn jobs_json(rows: &[JobRow], extras: &Extras) -> String {
    let arr: Vec<Value> = rows.iter().map(|j| Value::Object(job_json(j, extras))).collect();
    let mut s = serde_json::to_string_pretty(&arr).expect("JSON values serialize");
    s.push('\n');
    s
}

/// `query job --json`: one object per job row (newest first).
pub fn detail_json(details: &[JobDetail]) -> String {
    let arr: Vec<Value> = details
        .iter()
        .map(|d| {
            let extras = Extras {
                modules: HashMap::from([(d.job.id, module_names(d))]),
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
    rows.sort_by(|a, b| runledger_ledger::merge::natural_cmp(&a.node, &b.node));
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
                .then_with(|| runledger_ledger::merge::natural_cmp(a.0, b.0))
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
