//! The one record model of runledger, shared by the SPANK plugin, the epilog and the collector.
//!
//! A job reaches the ledger as a handful of [`Item`]s per node: the plugin writes a [`StepStart`]
//! and a [`StepEnd`] for every step into the node-local [`spool`], the epilog adds one [`JobEnd`]
//! (the node's view of how the job ended) and ships all of them, MUNGE-signed, in one [`Batch`]
//! over the [`wire`]. The collector merges each item idempotently, so items may arrive twice, in
//! any order, or from several nodes of the same job.
//!
//! This crate is pure Rust with no native dependencies (libc only): the plugin links it into
//! slurmstepd. It has no `unsafe` code: the passwd/group look-ups of [`users`] go through `nix`.

#![deny(unsafe_code)]

pub mod access;
pub mod config;
pub mod env;
pub mod hostlist;
mod item_de;
pub mod limits;
pub mod modules;
pub mod python;
pub mod series;
pub mod spool;
pub mod users;
pub mod wire;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub use limits::{LimitSource, TimeLimit};
pub use modules::Module;

/// Version of the item format; bumped when a change is not backward compatible.
pub const FORMAT_VERSION: u32 = 1;

/// Slurm's special step ids (slurm.h, 22.05 and later).
pub const STEP_PENDING: u32 = 0xffff_fffd;
pub const STEP_EXTERN: u32 = 0xffff_fffc;
pub const STEP_BATCH: u32 = 0xffff_fffb;
pub const STEP_INTERACTIVE: u32 = 0xffff_fffa;

/// A step id as sacct prints it: `batch`, `extern`, `interactive` or the number.
pub fn step_name(step_id: u32) -> String {
    match step_id {
        STEP_BATCH => "batch".into(),
        STEP_EXTERN => "extern".into(),
        STEP_INTERACTIVE => "interactive".into(),
        STEP_PENDING => "pending".into(),
        n => n.to_string(),
    }
}

/// Parses what [`step_name`] prints.
pub fn parse_step_name(s: &str) -> Option<u32> {
    match s {
        "batch" => Some(STEP_BATCH),
        "extern" => Some(STEP_EXTERN),
        "interactive" => Some(STEP_INTERACTIVE),
        "pending" => Some(STEP_PENDING),
        n => n.parse().ok(),
    }
}

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

/// Now, in seconds since the Unix epoch.
pub fn now() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A raw wait(2) status split the way sacct shows `ExitCode` (`code:signal`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code if the process exited, else 0.
    pub code: i32,
    /// Terminating signal if the process was killed, else 0.
    pub signal: i32,
    /// Whether a core was dumped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

impl ExitStatus {
    /// Decodes a raw wait status (S_TASK_EXIT_STATUS, SLURM_JOB_EXIT_CODE).
    pub fn from_wait_status(raw: i32) -> Self {
        let termsig = raw & 0x7f;
        if termsig == 0 {
            // WIFEXITED
            ExitStatus { code: (raw >> 8) & 0xff, signal: 0, core_dumped: false }
        } else if termsig != 0x7f {
            // WIFSIGNALED
            ExitStatus { code: 0, signal: termsig, core_dumped: raw & 0x80 != 0 }
        } else {
            // Stopped: not an end state; keep the stop signal visible.
            ExitStatus { code: 0, signal: (raw >> 8) & 0xff, core_dumped: false }
        }
    }

    /// Parses Slurm's `exit:signal` form (SLURM_JOB_EXIT_CODE2).
    pub fn from_code_signal(s: &str) -> Option<Self> {
        let (c, sig) = s.trim().split_once(':')?;
        Some(ExitStatus { code: c.parse().ok()?, signal: sig.parse().ok()?, core_dumped: false })
    }

    pub fn success(&self) -> bool {
        self.code == 0 && self.signal == 0
    }

    /// Orders statuses from harmless to worst, so a multi-node job keeps its worst exit.
    pub fn severity(&self) -> (i32, i32) {
        (i32::from(self.signal != 0), if self.signal != 0 { self.signal } else { self.code })
    }

    /// The evidence of a job's state read from this status alone, as a node record carries it
    /// (`exit code 0 (exit 0:0)`): the epilog words it so when no slurmstepd message says more,
    /// and the ledger stores such a text as nothing beside the status it comes from.
    pub fn evidence(&self) -> String {
        let why = if self.signal == libc::SIGTERM || self.signal == libc::SIGKILL {
            format!("killed by signal {} and no slurmstepd message", self.signal)
        } else if self.signal != 0 {
            format!("killed by signal {}", self.signal)
        } else {
            format!("exit code {}", self.code)
        };
        format!("{why} (exit {self})")
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.code, self.signal)
    }
}

/// How a job ended, as far as one node can tell. Names and meanings follow sacct's `State`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Not known (yet): e.g. steps seen but no epilog record.
    #[default]
    Unknown,
    Completed,
    Failed,
    OutOfMemory,
    Cancelled,
    Timeout,
    NodeFail,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Unknown,
        JobState::Completed,
        JobState::Failed,
        JobState::OutOfMemory,
        JobState::Cancelled,
        JobState::Timeout,
        JobState::NodeFail,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Unknown => "UNKNOWN",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
        }
    }

    /// Merging node views keeps the most specific cause: the declaration order above is the
    /// ranking (a time-limit kill looks like a plain failure or cancel on some nodes).
    pub fn worst(self, other: JobState) -> JobState {
        self.max(other)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    /// Accepts sacct's names and short forms (CD, F, OOM, CA, TO, NF), any case.
    fn from_str(s: &str) -> Result<Self, String> {
        let up = s.trim().to_ascii_uppercase();
        Ok(match up.as_str() {
            "UNKNOWN" => JobState::Unknown,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            _ => {
                return Err(format!(
                    "unknown job state '{s}' (expected one of COMPLETED, FAILED, OUT_OF_MEMORY, \
                     CANCELLED, TIMEOUT, NODE_FAIL, UNKNOWN or CD, F, OOM, CA, TO, NF)"
                ))
            }
        })
    }
}

/// Written by the plugin when a step starts on a node (slurm_spank_init_post_opt, as root).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StepStart {
    pub cluster: String,
    pub job_id: u32,
    pub step_id: u32,
    pub node: String,
    pub node_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub nnodes: u32,
    pub local_tasks: u32,
    pub total_tasks: u32,
    pub ncpus: u32,
    pub argv: Vec<String>,
    /// argv[0] resolved on the step's PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The step environment after [`env::EnvFilter`]: allow/deny lists applied, secrets redacted.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub modules: Vec<Module>,
    /// `--runledger-tag key=value` pairs.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub start: Timestamp,
    #[serde(default)]
    pub slurm_version: String,
    /// `S_JOB_ALLOC_MEM`: the job's memory on this node, MiB; absent when not known (or 0, no
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alloc_mem_mb: Option<u64>,
    /// The job's time limit, when the step's environment carries it (23.02+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<TimeLimit>,
    /// The per-job directory the plugin made for the Python hook (owned by the job's user), when
    /// Python recording is on; the epilog reads and removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_dir: Option<String>,
}

/// One task's end, recorded in slurm_spank_task_exit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskExit {
    pub task_id: u32,
    pub global_rank: u32,
    /// The raw wait status, kept for the record; `status` is its decoded form.
    pub raw_status: i32,
    pub status: ExitStatus,
    pub time: Timestamp,
}

impl TaskExit {
    /// A task that ended with the raw wait status `raw` (decoded into `status`).
    pub fn from_wait(task_id: u32, global_rank: u32, raw: i32, time: Timestamp) -> TaskExit {
        TaskExit { task_id, global_rank, raw_status: raw, status: ExitStatus::from_wait_status(raw), time }
    }
}

/// Written by the plugin when a step ends on a node (slurm_spank_exit, as root).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StepEnd {
    pub cluster: String,
    pub job_id: u32,
    pub step_id: u32,
    pub node: String,
    pub start: Timestamp,
    pub end: Timestamp,
    #[serde(default)]
    pub tasks: Vec<TaskExit>,
    /// CPU time of the step's tasks on this node (getrusage RUSAGE_CHILDREN in slurmstepd).
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub max_rss_kib: u64,
    /// Where task 0 of the batch step wrote stdout/stderr, when known: the epilog reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// The step's use over time on this node, when the plugin sampled it (`sample_interval=`).
    /// Absent from older spools and ignored by older collectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<series::Series>,
}

/// A fact read from a job's solver logs (an extension point the epilog fills).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Fact {
    /// The file it was read from.
    pub source: String,
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Written by the epilog: one node's view of how the job ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JobEnd {
    pub cluster: String,
    pub job_id: u32,
    pub node: String,
    pub uid: u32,
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    /// SLURM_JOB_EXIT_CODE, decoded.
    pub exit: ExitStatus,
    /// SLURM_JOB_DERIVED_EC, decoded: the worst of the job's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_exit: Option<ExitStatus>,
    pub state: JobState,
    /// The line that shows why the state is what it is (e.g. slurmstepd's time-limit line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_evidence: Option<String>,
    /// SLURM_JOB_START_TIME (23.02+) or the earliest step start in the spool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    /// SLURM_JOB_END_TIME (23.02+) or when the epilog ran.
    pub end: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(default)]
    pub facts: Vec<Fact>,
    /// The job's memory on this node, MiB (`S_JOB_ALLOC_MEM`, from the batch step, else any step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alloc_mem_mb: Option<u64>,
    /// The job's time limit; absent on nodes other than the batch node when no step's
    /// environment carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<TimeLimit>,
    /// Why the batch node has no time limit to report (scontrol missing, timed out, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_missing: Option<String>,
    /// What the job's Python processes on this node reported: the user's word, validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<python::PythonReport>,
}

/// One unit of merge. The collector applies each independently and idempotently.
/// Deserialized by [`item_de`], which reads `kind` first without buffering the item.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    StepStart(StepStart),
    StepEnd(StepEnd),
    JobEnd(JobEnd),
}

impl Item {
    pub fn cluster(&self) -> &str {
        match self {
            Item::StepStart(s) => &s.cluster,
            Item::StepEnd(s) => &s.cluster,
            Item::JobEnd(j) => &j.cluster,
        }
    }

    pub fn job_id(&self) -> u32 {
        match self {
            Item::StepStart(s) => s.job_id,
            Item::StepEnd(s) => s.job_id,
            Item::JobEnd(j) => j.job_id,
        }
    }

    pub fn node(&self) -> &str {
        match self {
            Item::StepStart(s) => &s.node,
            Item::StepEnd(s) => &s.node,
            Item::JobEnd(j) => &j.node,
        }
    }

    /// The time span the item covers; the collector uses it to tell a reused job id apart.
    pub fn span(&self) -> (Timestamp, Timestamp) {
        match self {
            Item::StepStart(s) => (s.start, s.start),
            Item::StepEnd(s) => (s.start, s.end),
            Item::JobEnd(j) => (j.start.unwrap_or(j.end), j.end),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Item::StepStart(_) => "step_start",
            Item::StepEnd(_) => "step_end",
            Item::JobEnd(_) => "job_end",
        }
    }
}

/// What one epilog run sends: every item it knows for one job on one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Batch {
    pub format: u32,
    /// The node that sent it (SLURMD_NODENAME).
    pub sender: String,
    /// When the batch was first put together; unchanged across retries.
    pub created: Timestamp,
    pub items: Vec<Item>,
    /// The sender's running total of batches it dropped unsent (its outbox was over its bounds),
    /// as of sending; absent while it has dropped none. Totals only grow, so a receiver keeps the
    /// largest it has seen per sender; batches sent before the field existed simply lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<DropCount>,
}

/// Records a node dropped without delivering them: its outbox `<spool>/dropped.json`, and
/// [`Batch::dropped`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct DropCount {
    pub batches: u64,
    pub items: u64,
    pub bytes: u64,
    /// When the latest drop happened (0: never).
    pub last: Timestamp,
}

impl DropCount {
    pub fn is_zero(&self) -> bool {
        self.batches == 0 && self.items == 0 && self.bytes == 0
    }

    /// Adds `other`'s counts; `last` becomes the later of the two.
    pub fn add(&mut self, other: &DropCount) {
        self.batches += other.batches;
        self.items += other.items;
        self.bytes += other.bytes;
        self.last = self.last.max(other.last);
    }
}

impl Batch {
    pub fn new(sender: impl Into<String>, items: Vec<Item>) -> Self {
        Batch { format: FORMAT_VERSION, sender: sender.into(), created: now(), items, dropped: None }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Batch always serializes")
    }

    /// This batch cut into batches whose JSON is at most `max_bytes` each, items in their order
    /// (so a job's `JobEnd`, last, arrives with or after its steps), each part with this batch's
    /// sender, creation time and drop total. Every part is a whole batch the collector merges on
    /// its own. An item larger than `max_bytes` by itself travels alone (the collector's limit is
    /// then the judge). A batch that fits is returned as is.
    pub fn split(self, max_bytes: usize) -> Vec<Batch> {
        let whole = self.to_json().len();
        if whole <= max_bytes || self.items.len() <= 1 {
            return vec![self];
        }
        let empty = Batch { items: Vec::new(), ..self.clone() };
        let mut cut = Cutter::new(&empty, max_bytes);
        let mut parts = Vec::new();
        let mut cur = empty.clone();
        for item in self.items {
            if cut.starts_part(Cutter::item_len(&item)) {
                parts.push(std::mem::replace(&mut cur, empty.clone()));
            }
            cur.items.push(item);
        }
        if !cur.items.is_empty() {
            parts.push(cur);
        }
        parts
    }

    /// Parses and checks a batch; the error says what is wrong, for the sender's log.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let b: Batch = serde_json::from_slice(bytes).map_err(|e| format!("malformed batch: {e}"))?;
        if b.format != FORMAT_VERSION {
            return Err(format!("batch format {} is not supported (this build speaks {FORMAT_VERSION})", b.format));
        }
        Ok(b)
    }
}

/// The one rule for cutting a job's items into batches of at most `max` bytes of JSON, kept as
/// the items come: [`Batch::split`] and the epilog's streaming writer both ask it, so a job is cut
/// the same way whether it is split in memory or written part by part.
#[derive(Clone, Copy, Debug)]
pub struct Cutter {
    max: usize,
    /// The envelope's size (a batch with no items).
    base: usize,
    size: usize,
    items: usize,
}

impl Cutter {
    /// `envelope`: the batch every part copies, without items.
    pub fn new(envelope: &Batch, max: usize) -> Cutter {
        let base = envelope.to_json().len();
        Cutter { max, base, size: base, items: 0 }
    }

    /// An item's JSON size.
    pub fn item_len(item: &Item) -> usize {
        serde_json::to_vec(item).expect("an Item always serializes").len()
    }

    /// Counts an item of `len` bytes in; true when it must start a new part because the current
    /// one would grow past the limit (an item larger than the limit alone still travels alone).
    pub fn starts_part(&mut self, len: usize) -> bool {
        // A comma per item after the first.
        let new = self.items > 0 && self.size + len + 1 > self.max;
        if new {
            self.size = self.base;
            self.items = 0;
        }
        self.size += len + usize::from(self.items > 0);
        self.items += 1;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decodes_exit_and_signal() {
        assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus { code: 3, signal: 0, core_dumped: false });
        assert_eq!(ExitStatus::from_wait_status(11), ExitStatus { code: 0, signal: 11, core_dumped: false });
        assert_eq!(ExitStatus::from_wait_status(11 | 0x80), ExitStatus { code: 0, signal: 11, core_dumped: true });
        assert!(ExitStatus::from_wait_status(0).success());
        assert_eq!(ExitStatus::from_code_signal("0:15"), Some(ExitStatus { code: 0, signal: 15, core_dumped: false }));
        assert_eq!(ExitStatus::from_code_signal("garbage"), None);
    }

    #[test]
    fn worst_state_prefers_specific_cause() {
        assert_eq!(JobState::Completed.worst(JobState::Failed), JobState::Failed);
        assert_eq!(JobState::Cancelled.worst(JobState::Timeout), JobState::Timeout);
        assert_eq!(JobState::Unknown.worst(JobState::Completed), JobState::Completed);
        assert_eq!("oom".parse::<JobState>().unwrap(), JobState::OutOfMemory);
        assert!("RUNNING?".parse::<JobState>().unwrap_err().contains("unknown job state"));
    }

    #[test]
    fn step_names_round_trip() {
        for id in [0, 7, STEP_BATCH, STEP_EXTERN, STEP_INTERACTIVE] {
            assert_eq!(parse_step_name(&step_name(id)), Some(id));
        }
    }

    #[test]
    fn batch_round_trips_and_rejects_other_formats() {
        let item = Item::StepStart(StepStart { cluster: "c".into(), job_id: 5, ..Default::default() });
        let b = Batch::new("n1", vec![item]);
        let back = Batch::from_json(&b.to_json()).unwrap();
        assert_eq!(back, b);
        let mut other = b.clone();
        other.format = 99;
        assert!(Batch::from_json(&other.to_json()).unwrap_err().contains("not supported"));
        assert!(Batch::from_json(b"{").unwrap_err().contains("malformed"));
    }

    #[test]
    fn a_large_batch_splits_into_parts_under_the_limit_in_order() {
        let step = |id: u32| {
            let env = (0..50).map(|i| (format!("V{i}"), "x".repeat(1000))).collect();
            Item::StepStart(StepStart { cluster: "c".into(), job_id: 9, step_id: id, env, ..Default::default() })
        };
        let mut items: Vec<Item> = (0..40).map(step).collect();
        items.push(Item::JobEnd(JobEnd { cluster: "c".into(), job_id: 9, node: "n".into(), ..Default::default() }));
        let mut b = Batch::new("n", items.clone());
        b.dropped = Some(DropCount { batches: 1, items: 1, bytes: 1, last: 1 });
        let max = 200 * 1024;
        let parts = b.clone().split(max);
        assert!(parts.len() >= 10, "{} parts", parts.len());
        for p in &parts {
            let len = p.to_json().len();
            assert!(len <= max, "a part of {len} bytes");
            assert_eq!((p.sender.as_str(), p.created, p.dropped), ("n", b.created, b.dropped));
            assert_eq!(Batch::from_json(&p.to_json()).unwrap(), *p);
        }
        let back: Vec<Item> = parts.into_iter().flat_map(|p| p.items).collect();
        assert_eq!(back, items, "every item, in order, once");
        // A batch that fits stays whole; an item over the limit travels alone.
        assert_eq!(b.clone().split(usize::MAX), vec![b.clone()]);
        let alone = b.split(10);
        assert_eq!(alone.len(), 41);
        assert!(alone.iter().all(|p| p.items.len() == 1));
    }

    #[test]
    fn step_series_is_optional_both_ways() {
        // An old spool's end (no series) parses; an end without a series writes none.
        let old = r#"{"kind":"step_end","cluster":"c","job_id":5,"step_id":0,"node":"n","start":1,"end":2,
                      "tasks":[],"cpu_user_s":1.0,"cpu_sys_s":0.0,"max_rss_kib":3}"#;
        let Item::StepEnd(end) = serde_json::from_str::<Item>(old).unwrap() else { panic!() };
        assert_eq!(end.series, None);
        assert!(!serde_json::to_string(&Item::StepEnd(end.clone())).unwrap().contains("series"));
        // An older collector's StepEnd (the fields it knew, unknown ones ignored as serde does)
        // still reads an end that carries a series.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct OldStepEnd {
            cluster: String,
            job_id: u32,
            step_id: u32,
            node: String,
            start: Timestamp,
            end: Timestamp,
            tasks: Vec<TaskExit>,
            cpu_user_s: f64,
            cpu_sys_s: f64,
            max_rss_kib: u64,
        }
        let mut b = series::SeriesBuilder::new(30);
        b.push(series::Point { t: 2, secs: 1.0, cpu_cores: 1.0, ..Default::default() });
        let with = StepEnd { series: Some(b.finish()), ..end };
        let text = serde_json::to_string(&with).unwrap();
        assert!(text.contains(r#""series":{"interval_s":30,"per_point":1,"points":[{"t":2,"#), "{text}");
        let old: OldStepEnd = serde_json::from_str(&text).unwrap();
        assert_eq!((old.job_id, old.max_rss_kib), (5, 3));
        assert_eq!(serde_json::from_str::<StepEnd>(&text).unwrap(), with);
    }

    #[test]
    fn drop_count_is_optional_on_the_wire() {
        let item = Item::JobEnd(JobEnd { cluster: "c".into(), job_id: 5, node: "n".into(), ..Default::default() });
        let mut b = Batch::new("n", vec![item]);
        // None is left out entirely: what an older collector receives is byte-for-byte the old shape.
        assert!(!String::from_utf8(b.to_json()).unwrap().contains("dropped"));
        // A batch from a sender that predates the field still parses.
        let old = r#"{"format":1,"sender":"n","created":7,"items":[]}"#;
        assert_eq!(Batch::from_json(old.as_bytes()).unwrap().dropped, None);
        b.dropped = Some(DropCount { batches: 2, items: 9, bytes: 4096, last: 1_700_000_000 });
        let text = String::from_utf8(b.to_json()).unwrap();
        assert!(text.contains(r#""dropped":{"batches":2,"items":9,"bytes":4096,"last":1700000000}"#), "{text}");
        assert_eq!(Batch::from_json(text.as_bytes()).unwrap(), b);
        let mut total = DropCount::default();
        assert!(total.is_zero());
        total.add(&DropCount { batches: 1, items: 3, bytes: 10, last: 5 });
        total.add(&DropCount { batches: 1, items: 1, bytes: 20, last: 4 });
        assert_eq!(total, DropCount { batches: 2, items: 4, bytes: 30, last: 5 });
    }
}
