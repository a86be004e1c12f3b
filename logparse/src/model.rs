//! What an analysis says: outcome, failure category, evidence and facts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a run failed. A fixed vocabulary, so that a site's pie chart of error types is comparable
/// across codes and across sites; the serde (and `Display`) names are the snake_case ones.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The physics blew up: NaN, lost atoms, SCF not converged, floating point exception.
    NumericalInstability,
    /// The code rejected its input: illegal command, unknown keyword, bad dictionary entry.
    InputError,
    /// A file the run needed is missing ("No such file or directory", "Cannot find file").
    FileNotFound,
    /// Killed for memory: the cgroup OOM killer, `std::bad_alloc`, "Failed to allocate".
    OutOfMemory,
    /// The scheduler stopped the job at its time limit.
    TimeLimit,
    /// MPI_ABORT with no deeper cause shown.
    MpiAbort,
    /// The program never really started: launcher errors, no slots, a binary that cannot run.
    LaunchFailure,
    /// The job's software environment was wrong: a command or module not found, a shared library
    /// that does not load, Python's `ModuleNotFoundError`, Lmod's unknown module. After a software
    /// update this is the category managers watch.
    EnvironmentError,
    /// Disk full, quota, I/O errors.
    IoError,
    /// SIGSEGV, "EXIT CODE: 139".
    Segfault,
    /// Killed by another signal (9, 15, abort, bus error).
    Signal,
    /// Cancelled (scancel, preemption).
    Cancelled,
    /// A node failed under the job.
    NodeFailure,
    /// The log stops with neither the code's success marker nor an error.
    Truncated,
    /// A failure marker that says nothing more specific.
    Unknown,
}

impl Category {
    /// Every category. New ones go last: a category's colour in the collector's charts is its
    /// place here, and a manager's charts should keep their colours across an update.
    pub const ALL: [Category; 15] = [
        Category::NumericalInstability,
        Category::InputError,
        Category::FileNotFound,
        Category::OutOfMemory,
        Category::TimeLimit,
        Category::MpiAbort,
        Category::LaunchFailure,
        Category::IoError,
        Category::Segfault,
        Category::Signal,
        Category::Cancelled,
        Category::NodeFailure,
        Category::Truncated,
        Category::Unknown,
        Category::EnvironmentError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::NumericalInstability => "numerical_instability",
            Category::InputError => "input_error",
            Category::FileNotFound => "file_not_found",
            Category::OutOfMemory => "out_of_memory",
            Category::TimeLimit => "time_limit",
            Category::MpiAbort => "mpi_abort",
            Category::LaunchFailure => "launch_failure",
            Category::EnvironmentError => "environment_error",
            Category::IoError => "io_error",
            Category::Segfault => "segfault",
            Category::Signal => "signal",
            Category::Cancelled => "cancelled",
            Category::NodeFailure => "node_failure",
            Category::Truncated => "truncated",
            Category::Unknown => "unknown",
        }
    }

    /// Default priority of a failure marker of this category (lower wins): an external kill
    /// (0) explains everything printed after it; the code's own diagnosis (1) comes before the
    /// crash it causes (2); MPI_ABORT and unspecific markers (3) are consequences.
    pub fn default_priority(self) -> u8 {
        match self {
            Category::TimeLimit | Category::OutOfMemory | Category::NodeFailure | Category::Cancelled => 0,
            Category::NumericalInstability
            | Category::InputError
            | Category::FileNotFound
            | Category::IoError
            | Category::LaunchFailure
            | Category::EnvironmentError => 1,
            Category::Segfault | Category::Signal => 2,
            Category::MpiAbort | Category::Unknown | Category::Truncated => 3,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Category::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            format!("unknown category {s:?} (one of: {})", names.join(", "))
        })
    }
}

/// How the run ended, as far as this file shows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The code printed its own success marker after any failure marker.
    Success,
    /// A failure marker that no later success marker overrides.
    Failed,
    /// A code was recognised but its log stops without success marker or error (truncated).
    Incomplete,
    /// No code recognised and no failure marker: nothing to say.
    #[default]
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Incomplete => "incomplete",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One extracted fact: `key` from the rules' vocabulary, a normalised `value` (numbers as the
/// log printed them, durations in seconds), and a unit when the rule gives one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactValue {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// How much work one analysis did (deterministic, so tests can bound it without timing).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScanStats {
    /// Bytes scanned after normalisation.
    pub bytes: usize,
    /// Lines scanned.
    pub lines: usize,
    /// Lines longer than the cap, cut.
    pub cut_lines: usize,
    /// Regex searches run (each linear in the text it is given).
    pub searches: usize,
    /// Bytes those searches were given, summed (the true cost measure).
    pub searched_bytes: usize,
}

/// The verdict on one file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Analysis {
    /// The first code recognised (its rule's `label`), e.g. "OpenFOAM pimpleFoam".
    pub program: Option<String>,
    /// Every code recognised, in order of first appearance (coupled runs show several).
    pub programs_seen: Vec<String>,
    pub outcome: Outcome,
    /// Set when `outcome` is `failed` (the chosen marker's category) or `incomplete` (`truncated`).
    pub category: Option<Category>,
    /// The one line that shows the failure, rank prefixes such as `[3] ` removed.
    pub evidence: Option<String>,
    /// Facts in rule order; a key appears at most once.
    pub facts: Vec<FactValue>,
    pub stats: ScanStats,
}

impl Analysis {
    /// The fact with this key, if any.
    pub fn fact(&self, key: &str) -> Option<&FactValue> {
        self.facts.iter().find(|f| f.key == key)
    }

    /// The value of the fact with this key, if any.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.fact(key).map(|f| f.value.as_str())
    }

    /// The analysis as the record's facts, all with `source` (the file they were read from):
    /// `program`, `programs` (only for coupled runs, comma-separated), `outcome`,
    /// `failure_category`, `error`, then every extracted fact.
    pub fn to_facts(&self, source: &str) -> Vec<runledger_record::Fact> {
        let mk = |key: &str, value: &str, unit: Option<&str>| runledger_record::Fact {
            source: source.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            unit: unit.map(str::to_string),
        };
        let mut out = Vec::with_capacity(self.facts.len() + 5);
        if let Some(p) = &self.program {
            out.push(mk("program", p, None));
        }
        if self.programs_seen.len() > 1 {
            out.push(mk("programs", &self.programs_seen.join(", "), None));
        }
        out.push(mk("outcome", self.outcome.as_str(), None));
        if let Some(c) = self.category {
            out.push(mk("failure_category", c.as_str(), None));
        }
        if let Some(e) = &self.evidence {
            out.push(mk("error", e, None));
        }
        out.extend(self.facts.iter().map(|f| mk(&f.key, &f.value, f.unit.as_deref())));
        out
    }
}

/// The job-level verdict from the analyses of several files of one job (typically the batch
/// script's stdout and stderr): see [`combine`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Verdict {
    pub program: Option<String>,
    pub outcome: Outcome,
    pub category: Option<Category>,
    pub evidence: Option<String>,
}

/// Combines the analyses of one job's files. A failure anywhere wins (the one whose category
/// has the highest priority, then the first given): an OpenMC stdout that just stops
/// (`incomplete`) plus a stderr with Slurm's time-limit line is a `time_limit` failure. Otherwise
/// any `incomplete` file makes the job incomplete; otherwise any `success` makes it a success.
pub fn combine(parts: &[&Analysis]) -> Verdict {
    let program = parts.iter().find_map(|a| a.program.clone());
    let failed = parts
        .iter()
        .enumerate()
        .filter(|(_, a)| a.outcome == Outcome::Failed)
        .min_by_key(|(i, a)| (a.category.unwrap_or(Category::Unknown).default_priority(), *i))
        .map(|(_, a)| a);
    if let Some(a) = failed {
        return Verdict { program, outcome: Outcome::Failed, category: a.category, evidence: a.evidence.clone() };
    }
    if parts.iter().any(|a| a.outcome == Outcome::Incomplete) {
        return Verdict { program, outcome: Outcome::Incomplete, category: Some(Category::Truncated), evidence: None };
    }
    if parts.iter().any(|a| a.outcome == Outcome::Success) {
        return Verdict { program, outcome: Outcome::Success, category: None, evidence: None };
    }
    Verdict { program, ..Verdict::default() }
}
