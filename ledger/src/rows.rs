//! The row types: what one ledger row (or one job with everything known about it) holds once
//! read back. The merge writes rows of these shapes ([`crate::store`] encodes a step's
//! [`TaskRow`]s); the queries read and print them.

use std::collections::BTreeMap;

/// One `jobs` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub cluster: String,
    pub job_id: i64,
    pub array_job_id: Option<i64>,
    pub array_task_id: Option<i64>,
    pub uid: Option<i64>,
    pub user: Option<String>,
    pub gid: Option<i64>,
    pub account: Option<String>,
    pub partition: Option<String>,
    pub qos: Option<String>,
    pub job_name: Option<String>,
    pub work_dir: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub state_evidence: Option<String>,
    pub nnodes: Option<i64>,
    pub ncpus: Option<i64>,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub cpu_seconds: f64,
    pub max_rss_kib: Option<i64>,
    pub nodes: Option<String>,
    pub env_hash: Option<String>,
    /// The job-level verdict from its solver logs (schema version 2).
    pub program: Option<String>,
    pub outcome: Option<String>,
    pub category: Option<String>,
    pub error: Option<String>,
}

impl JobRow {
    /// sacct's JobID: `ARRAYID_TASK` for an array task, else the job id.
    pub fn display_id(&self) -> String {
        match (self.array_job_id, self.array_task_id) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => self.job_id.to_string(),
        }
    }

    pub fn elapsed(&self) -> Option<i64> {
        Some((self.end? - self.start?).max(0))
    }

    pub fn node_list(&self) -> Vec<String> {
        self.nodes.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
}

/// One fact as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactValue {
    pub value: String,
    pub unit: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskRow {
    pub global_rank: i64,
    pub task_id: i64,
    pub exit_code: i64,
    pub signal: i64,
    pub core_dumped: bool,
    pub raw_status: i64,
    pub time: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRow {
    pub node: String,
    pub step_id: i64,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub argv: Vec<String>,
    pub exe: Option<String>,
    pub cwd: Option<String>,
    pub ntasks: Option<i64>,
    pub local_tasks: Option<i64>,
    pub ncpus: Option<i64>,
    pub env_hash: Option<String>,
    pub cpu_user_s: Option<f64>,
    pub cpu_sys_s: Option<f64>,
    pub max_rss_kib: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub slurm_version: Option<String>,
    pub tasks: Vec<TaskRow>,
}

impl StepRow {
    pub fn name(&self) -> String {
        runledger_record::step_name(self.step_id as u32)
    }

    /// Batch step first, then by step id, then node.
    pub fn sort_key(&self) -> (bool, i64, String) {
        (self.step_id != i64::from(runledger_record::STEP_BATCH), self.step_id, self.node.clone())
    }
}

/// One node's end record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRow {
    pub node: String,
    pub state: String,
    pub exit_code: i64,
    pub signal: i64,
    pub core_dumped: bool,
    pub derived_exit: Option<(i64, i64)>,
    pub state_evidence: Option<String>,
    pub start: Option<i64>,
    pub end: i64,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub received_at: i64,
    /// The job's memory on this node, MiB (`S_JOB_ALLOC_MEM`); None from older nodes or when
    /// Slurm gave none.
    pub alloc_mem_mb: Option<i64>,
    /// The job's time limit as this node learned it: `time_limit_source` says from where
    /// (`environment`, `scontrol`); a source without seconds is an unlimited job; neither: not
    /// known, and `time_limit_missing` may say why.
    pub time_limit_s: Option<i64>,
    pub time_limit_source: Option<String>,
    pub time_limit_missing: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepModule {
    pub node: String,
    pub step_id: i64,
    pub name: String,
    pub version: String,
    pub file: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventRow {
    pub time: i64,
    pub node: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactRow {
    pub node: String,
    pub source: String,
    pub key: String,
    pub value: String,
    pub unit: Option<String>,
}

/// One recorded Python interpreter process: the job user's word.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PythonProcRow {
    pub node: String,
    pub pid: i64,
    pub start: i64,
    pub rank: i64,
    pub interpreter: String,
    /// `major.minor.micro`.
    pub version: String,
    pub prefix: Option<String>,
    /// Only when it differs from `prefix` (a venv or conda environment).
    pub base_prefix: Option<String>,
    pub main: Option<String>,
    /// `(name, version)`, by name; version `''` when unknown.
    pub packages: Vec<(String, String)>,
    /// `normal`, `exception:<Type>` or `unfinished`.
    pub ended: String,
}

/// That a node's epilog read a job's Python directory, and what it left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PythonNodeRow {
    pub node: String,
    pub skipped: i64,
    pub rejected: Vec<String>,
}

/// Everything known about one job row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobDetail {
    pub job: JobRow,
    pub nodes: Vec<NodeRow>,
    pub steps: Vec<StepRow>,
    pub modules: Vec<StepModule>,
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
    pub tags: BTreeMap<String, String>,
    pub events: Vec<EventRow>,
    pub facts: Vec<FactRow>,
    /// The job's recorded Python processes, by node, start and pid.
    pub python: Vec<PythonProcRow>,
    pub python_nodes: Vec<PythonNodeRow>,
    /// Each step's usage series per node (#16), by node then step.
    pub timeline: Vec<crate::timeline::StepSeries>,
    /// Stored series that could not be read (damaged, or of a newer format).
    pub unreadable_series: usize,
}
