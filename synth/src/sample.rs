//! Realistic made-up node records, for the tests, the load generator and the query bench.
//!
//! A [`Sample`] is one job as the plugin and epilog would describe it: on every node a step 0
//! with two tasks and a `JobEnd`, plus the batch step on the first node; about fifty environment
//! variables and two modules. Everything is derived from the fields, so the same sample always
//! gives the same items.

use crate::timeline::{self, Shape};
use runledger_record::{
    Batch, ExitStatus, Fact, Item, JobEnd, JobState, Module, StepEnd, StepStart, TaskExit, Timestamp, STEP_BATCH,
};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Sample {
    pub cluster: String,
    pub job_id: u32,
    pub user: String,
    pub uid: u32,
    pub account: String,
    pub partition: String,
    pub start: Timestamp,
    pub duration: i64,
    /// Nodes `first_node`, `first_node + 1`, … are named `n0001`, `n0002`, …
    pub nnodes: u32,
    pub first_node: u32,
    pub env_vars: usize,
    pub modules: Vec<Module>,
    pub tags: BTreeMap<String, String>,
    /// State and exit of each node's JobEnd; the last node may differ (see `last_node`).
    pub state: JobState,
    pub exit: ExitStatus,
    /// State and exit of the last node, when it ended differently.
    pub last_node: Option<(JobState, ExitStatus)>,
    pub facts: Vec<Fact>,
    /// What the job's Python processes reported, on the first node's `JobEnd` (rank 0 runs there).
    pub python: Option<runledger_record::python::PythonReport>,
    /// When set, every step carries a usage series of this shape ([`crate::timeline`]): step 0
    /// on each node as given, the batch step idle in its `srun`. None: no series (sampling off).
    pub timeline: Option<Shape>,
}

impl Sample {
    pub fn new(cluster: &str, job_id: u32, start: Timestamp) -> Self {
        Sample {
            cluster: cluster.into(),
            job_id,
            user: "alice".into(),
            uid: 1000,
            account: "physics".into(),
            partition: "compute".into(),
            start,
            duration: 30,
            nnodes: 1,
            first_node: 1,
            env_vars: 50,
            modules: vec![
                Module {
                    name: "gcc".into(),
                    version: Some("12.2.0".into()),
                    file: Some("/opt/mf/gcc/12.2.0.lua".into()),
                },
                Module {
                    name: "openmpi".into(),
                    version: Some("4.1.4".into()),
                    file: Some("/opt/mf/openmpi/4.1.4.lua".into()),
                },
            ],
            tags: BTreeMap::from([("project".to_string(), "alpha".to_string())]),
            state: JobState::Completed,
            exit: ExitStatus::default(),
            last_node: None,
            facts: Vec::new(),
            python: None,
            timeline: None,
        }
    }

    /// Gives the job a solver log as the epilog reads it: the per-file facts (source = the log's
    /// path) and the job-level verdict (source = ""), with `extra` facts (key, value) in both.
    pub fn set_log(
        &mut self,
        program: &str,
        outcome: &str,
        category: Option<&str>,
        error: Option<&str>,
        extra: &[(&str, &str)],
    ) -> &mut Self {
        let path = format!("/home/{}/run/log.{}", self.user, self.job_id);
        for source in [path.as_str(), ""] {
            let mut add = |key: &str, value: &str| {
                self.facts.push(Fact { source: source.into(), key: key.into(), value: value.into(), unit: None })
            };
            add("program", program);
            add("outcome", outcome);
            if let Some(c) = category {
                add("failure_category", c);
            }
            if let Some(e) = error {
                add("error", e);
            }
            for (k, v) in extra {
                add(k, v);
            }
            if source.is_empty() {
                add("error_source", &path);
            }
        }
        self
    }

    pub fn node_name(&self, i: u32) -> String {
        format!("n{:04}", self.first_node + i)
    }

    pub fn end(&self) -> Timestamp {
        self.start + self.duration
    }

    /// The step environment (same on every node and step, as a real job's mostly is).
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("USER".into(), self.user.clone());
        env.insert("HOME".into(), format!("/home/{}", self.user));
        env.insert("SLURM_JOB_ACCOUNT".into(), self.account.clone());
        env.insert("SLURM_JOB_PARTITION".into(), self.partition.clone());
        env.insert("OMP_NUM_THREADS".into(), "4".into());
        env.insert("LOADEDMODULES".into(), self.modules.iter().map(|m| m.full_name()).collect::<Vec<_>>().join(":"));
        for i in env.len()..self.env_vars {
            env.insert(format!("APP_SETTING_{i:02}"), format!("value-{i}-/opt/app/share/{}", i * 7));
        }
        env
    }

    fn step_start(&self, node: u32, step_id: u32, argv: &[&str], start: Timestamp) -> StepStart {
        let batch = step_id == STEP_BATCH;
        StepStart {
            cluster: self.cluster.clone(),
            job_id: self.job_id,
            step_id,
            node: self.node_name(node),
            node_id: node,
            array_job_id: None,
            array_task_id: None,
            uid: self.uid,
            gid: self.uid,
            user: self.user.clone(),
            nnodes: if batch { 1 } else { self.nnodes },
            local_tasks: if batch { 1 } else { 2 },
            total_tasks: if batch { 1 } else { 2 * self.nnodes },
            ncpus: 4,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            exe: Some(if argv[0].starts_with('/') { argv[0].to_string() } else { format!("/usr/bin/{}", argv[0]) }),
            cwd: Some(format!("/home/{}/run", self.user)),
            account: Some(self.account.clone()),
            partition: Some(self.partition.clone()),
            qos: Some("normal".into()),
            job_name: Some(format!("sim-{}", self.job_id)),
            env: self.env(),
            modules: self.modules.clone(),
            tags: self.tags.clone(),
            start,
            slurm_version: "23.02.6".into(),
            // Limits asked for (#15) are left out of the made-up jobs.
            ..Default::default()
        }
    }

    fn outcome(&self, node: u32) -> (JobState, ExitStatus) {
        match self.last_node {
            Some(o) if node + 1 == self.nnodes => o,
            _ => (self.state, self.exit),
        }
    }

    /// What the epilog of node `node` (0-based) sends.
    pub fn node_items(&self, node: u32) -> Vec<Item> {
        let mut items = Vec::new();
        let (start, end) = (self.start, self.end());
        let (state, exit) = self.outcome(node);
        let raw = if exit.signal != 0 { exit.signal } else { exit.code << 8 };
        if node == 0 {
            let script = format!("/home/{}/run/job.sh", self.user);
            let s = self.step_start(node, STEP_BATCH, &[script.as_str()], start);
            items.push(Item::StepStart(s));
            items.push(Item::StepEnd(StepEnd {
                cluster: self.cluster.clone(),
                job_id: self.job_id,
                step_id: STEP_BATCH,
                node: self.node_name(node),
                start,
                end,
                tasks: vec![TaskExit::from_wait(0, 0, raw, end)],
                cpu_user_s: 1.5,
                cpu_sys_s: 0.25,
                max_rss_kib: 20_000,
                stdout: Some(format!("/home/{}/run/slurm-{}.out", self.user, self.job_id)),
                stderr: None,
                series: self.timeline.and_then(|sh| {
                    let batch = Shape { busy_cores: 0.0, idle_from: None, rss_growth_kib: 0, processes: 2, ..sh };
                    timeline::series(self.seed(node, STEP_BATCH), start, end, &batch)
                }),
            }));
        }
        let s0 = start + 2;
        items.push(Item::StepStart(self.step_start(node, 0, &["srun", "./sim", "--steps", "100"], s0)));
        let tasks = (0..2)
            .map(|t| {
                let r = if t == 1 { raw } else { 0 };
                TaskExit::from_wait(t, node * 2 + t, r, end - 1)
            })
            .collect();
        items.push(Item::StepEnd(StepEnd {
            cluster: self.cluster.clone(),
            job_id: self.job_id,
            step_id: 0,
            node: self.node_name(node),
            start: s0,
            end: end - 1,
            tasks,
            cpu_user_s: 100.0 + f64::from(node),
            cpu_sys_s: 2.0,
            max_rss_kib: 1_000_000 + u64::from(node) * 1000,
            stdout: None,
            stderr: None,
            series: self.timeline.and_then(|sh| timeline::series(self.seed(node, 0), s0, end - 1, &sh)),
        }));
        items.push(Item::JobEnd(JobEnd {
            cluster: self.cluster.clone(),
            job_id: self.job_id,
            node: self.node_name(node),
            uid: self.uid,
            user: self.user.clone(),
            account: Some(self.account.clone()),
            partition: Some(self.partition.clone()),
            work_dir: Some(format!("/home/{}/run", self.user)),
            exit,
            derived_exit: Some(exit),
            state,
            state_evidence: (state != JobState::Completed).then(|| format!("{state} on {}", self.node_name(node))),
            start: Some(start),
            end,
            stdout: (node == 0).then(|| format!("/home/{}/run/slurm-{}.out", self.user, self.job_id)),
            stderr: None,
            facts: self.facts.clone(),
            python: if node == 0 { self.python.clone() } else { None },
            // Limits asked for (#15) are left out of the made-up jobs.
            ..Default::default()
        }));
        items
    }

    fn seed(&self, node: u32, step: u32) -> u64 {
        (u64::from(self.job_id) << 32) ^ (u64::from(node) << 16) ^ u64::from(step)
    }

    pub fn batch(&self, node: u32) -> Batch {
        let mut b = Batch::new(self.node_name(node), self.node_items(node));
        b.created = self.end();
        b
    }
}

/// The load generator's node records (`collector/examples/loadgen.rs`, and the benches that read
/// or merge what it sends): `n` of them, one per node of jobs numbered from `first_job` and
/// started a second apart from `t0`, of 200 users on 512 nodes, every third job on two nodes, so
/// that its second record merges into an existing job.
pub fn load_records(cluster: &str, first_job: u32, n: usize, t0: Timestamp) -> Vec<Batch> {
    let mut out = Vec::with_capacity(n);
    let mut job = 0u32;
    while out.len() < n {
        let mut s = Sample::new(cluster, first_job + job, t0 + i64::from(job));
        s.user = format!("user{:03}", job % 200);
        s.uid = 10_000 + job % 200;
        s.first_node = (job * 7) % 512;
        s.nnodes = if job % 3 == 0 { 2 } else { 1 };
        out.extend((0..s.nnodes).map(|node| s.batch(node)));
        job += 1;
    }
    out.truncate(n);
    out
}
