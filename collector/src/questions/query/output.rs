//! How `query jobs` shows its jobs: an aligned table (sacct's look) or CSV of the fields chosen
//! with `-o` ([`FIELDS`], listed by `--helpformat`). Its JSON, and `query job ID`, are
//! [`super::detail`]'s.

pub use super::text::{aligned, shown};
use super::text::{aligned_with, csv_cell, csv_text_cell};
use super::{FactValue, JobRow, StepRow};
use crate::questions::timefmt;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// What a field needs beyond the `jobs` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Row,
    Modules,
    Tags,
    Packages,
}

/// Per-job data fetched for the whole result set.
#[derive(Default)]
pub struct Extras {
    pub modules: HashMap<i64, Vec<String>>,
    /// Python packages (`name/version`) the job's processes imported.
    pub packages: HashMap<i64, Vec<String>>,
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

pub(crate) fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_default()
}

/// A text column's cell, borrowed.
fn text(v: &Option<String>) -> Cow<'_, str> {
    Cow::Borrowed(v.as_deref().unwrap_or(""))
}

pub(crate) fn exit_code(j: &JobRow) -> String {
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
    field!(
        "Packages",
        "Python packages the job's processes imported (name/version, space separated)",
        false,
        Needs::Packages,
        |j, x| x.packages.get(&j.id).map(|v| v.join(" ")).unwrap_or_default()
    ),
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

    /// Empties the listing for the next rows, keeping what it allocated.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.ids.clear();
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
