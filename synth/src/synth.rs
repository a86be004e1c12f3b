//! A year of realistic made-up jobs, for the generator (`examples/gen.rs`), the analytics bench
//! and the schema-migration tests.
//!
//! What it makes (deterministic for a seed and an end time):
//! - 200 users with Zipf-like activity (user000 the busiest), each in one of 24 accounts;
//! - partitions compute / gpu / bigmem / debug with their own node sizes and wall times;
//! - ~40 module name/versions with Zipf popularity, 1–5 per job, correlated (gpu → cuda,
//!   lammps/gromacs → fftw, wrf → netcdf + hdf5) and updated mid-year (openmpi 4.1.4 → 4.1.5,
//!   gcc 12.2.0 → 13.2.0, cuda 11.8 → 12.2); jobs on openmpi 4.1.5 fail a little more often;
//! - states mostly COMPLETED, some FAILED / TIMEOUT / OUT_OF_MEMORY / CANCELLED;
//! - 1–64 nodes (most jobs on one), 1–32 ranks per node, CPU efficiency 0.2–1.0;
//! - starts over the year before `end` (less three days) with daily and weekly cycles, job ids
//!   in start order;
//! - a dozen distinct step environments;
//! - Python (issue #14) in the jobs that load the python module and in a third of the others:
//!   one interpreter process of rank 0 (a second one in one job in five) importing one of its
//!   user's three environments (3–40 of 40 top-level packages, Zipf popularity) with mid-year
//!   updates (numpy 1.24.4 → 1.26.4 on day
//!   200, …), torch on most GPU jobs, mpi4py on some MPI jobs; a failed job's process ends with
//!   an exception, a killed one's is unfinished (no versions). Drawn from a random stream of
//!   their own per job, so the jobs' other fields are those of a generator without Python
//!   ([`Synth::without_python`]).
//!
//! Each node of a job has its own items (batch step on the first node, step 0 on all, a
//! `JobEnd` each), as the epilogs would send them.

use crate::timeline::{self, Shape};
use runledger_record::{
    Batch, ExitStatus, Fact, Item, JobEnd, JobState, LimitSource, Module, StepEnd, StepStart, TaskExit, TimeLimit,
    Timestamp, STEP_BATCH,
};
use std::collections::BTreeMap;

/// splitmix64: small, fast, reproducible; good enough for made-up data and test schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
}

/// Cumulative weights for picking index i with weight 1/(i+1)^s.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    (0..n)
        .map(|i| {
            acc += 1.0 / ((i + 1) as f64).powf(s);
            acc
        })
        .collect()
}

fn pick(cum: &[f64], rng: &mut Rng) -> usize {
    let x = rng.f() * cum[cum.len() - 1];
    cum.partition_point(|&c| c < x).min(cum.len() - 1)
}

const DAY: i64 = 86_400;

/// Optional modules in popularity order: (name, version before the update, after, update day).
const LIBS: &[(&str, &str, &str, i64)] = &[
    ("python", "3.11.4", "3.11.4", 0),
    ("hdf5", "1.12.2", "1.14.1", 240),
    ("fftw", "3.3.10", "3.3.10", 0),
    ("openblas", "0.3.21", "0.3.24", 150),
    ("netcdf-c", "4.9.0", "4.9.2", 200),
    ("lammps", "2Aug2023", "2Aug2023", 0),
    ("gromacs", "2023.2", "2023.3", 120),
    ("cmake", "3.26.3", "3.27.7", 90),
    ("boost", "1.82.0", "1.83.0", 210),
    ("petsc", "3.19.2", "3.20.0", 230),
    ("wrf", "4.5.1", "4.5.1", 0),
    ("cp2k", "2023.1", "2023.2", 260),
    ("vasp", "6.4.1", "6.4.2", 300),
    ("julia", "1.9.3", "1.9.3", 0),
    ("r", "4.3.1", "4.3.1", 0),
    ("paraview", "5.11.1", "5.11.1", 0),
    ("scalapack", "2.2.0", "2.2.0", 0),
    ("gsl", "2.7.1", "2.7.1", 0),
    ("eigen", "3.4.0", "3.4.0", 0),
    ("quantum-espresso", "7.2", "7.2", 0),
    ("namd", "3.0b3", "3.0b4", 280),
    ("openfoam", "2306", "2306", 0),
    ("tensorflow", "2.13.0", "2.14.0", 250),
    ("pytorch", "2.0.1", "2.1.0", 220),
    ("matlab", "R2023a", "R2023b", 270),
    ("mkl", "2023.1.0", "2023.2.0", 200),
    ("libxc", "6.2.2", "6.2.2", 0),
    ("metis", "5.1.0", "5.1.0", 0),
];

/// (partition, share of jobs, cpus per node, max hours, first node, nodes in partition)
const PARTITIONS: &[(&str, f64, u32, f64, u32, u32)] = &[
    ("compute", 0.68, 64, 48.0, 1, 384),
    ("gpu", 0.12, 32, 24.0, 385, 64),
    ("bigmem", 0.05, 128, 72.0, 449, 32),
    ("debug", 0.15, 16, 0.5, 481, 32),
];

struct Job {
    job_id: u32,
    user: usize,
    account: usize,
    partition: usize,
    start: Timestamp,
    duration: i64,
    nnodes: u32,
    first_node: u32,
    ranks_per_node: u32,
    cpus_per_node: u32,
    efficiency: f64,
    modules: Vec<Module>,
    program: &'static str,
    state: JobState,
    exit: ExitStatus,
    env: usize,
    tag: Option<(String, String)>,
}

/// Python packages in popularity order: (import name, version before the update, after, update
/// day).
const PY_PACKAGES: &[(&str, &str, &str, i64)] = &[
    ("numpy", "1.24.4", "1.26.4", 200),
    ("scipy", "1.10.1", "1.11.4", 200),
    ("pandas", "2.0.3", "2.1.4", 150),
    ("matplotlib", "3.7.2", "3.8.2", 220),
    ("yaml", "6.0", "6.0.1", 90),
    ("packaging", "23.1", "23.2", 60),
    ("dateutil", "2.8.2", "2.8.2", 0),
    ("pytz", "2023.3", "2023.3", 0),
    ("six", "1.16.0", "1.16.0", 0),
    ("tqdm", "4.65.0", "4.66.1", 120),
    ("h5py", "3.9.0", "3.10.0", 240),
    ("mpi4py", "3.1.4", "3.1.5", 180),
    ("sklearn", "1.3.0", "1.3.2", 210),
    ("torch", "2.0.1", "2.1.2", 160),
    ("requests", "2.31.0", "2.31.0", 0),
    ("PIL", "10.0.0", "10.1.0", 190),
    ("netCDF4", "1.6.4", "1.6.5", 100),
    ("xarray", "2023.7.0", "2023.12.0", 230),
    ("numba", "0.57.1", "0.58.1", 200),
    ("llvmlite", "0.40.1", "0.41.1", 200),
    ("dask", "2023.7.1", "2023.12.1", 230),
    ("jinja2", "3.1.2", "3.1.2", 0),
    ("click", "8.1.6", "8.1.7", 70),
    ("cloudpickle", "2.2.1", "3.0.0", 250),
    ("toolz", "0.12.0", "0.12.0", 0),
    ("fsspec", "2023.6.0", "2023.12.2", 230),
    ("psutil", "5.9.5", "5.9.7", 110),
    ("tensorflow", "2.13.0", "2.15.0", 250),
    ("transformers", "4.31.0", "4.36.2", 240),
    ("kiwisolver", "1.4.4", "1.4.5", 0),
    ("cycler", "0.11.0", "0.12.1", 130),
    ("pyparsing", "3.0.9", "3.1.1", 0),
    ("certifi", "2023.7.22", "2023.11.17", 170),
    ("urllib3", "2.0.4", "2.1.0", 0),
    ("idna", "3.4", "3.6", 0),
    ("charset_normalizer", "3.2.0", "3.3.2", 0),
    ("sympy", "1.12", "1.12", 0),
    ("networkx", "3.1", "3.2.1", 140),
    ("ase", "3.22.1", "3.22.1", 0),
    ("pymatgen", "2023.7.20", "2023.12.18", 260),
];

/// What a job's Python processes report, or `None` for a job that ran no Python: from a random
/// stream of the job's own (`seed`, job id), so the other fields never depend on it.
fn python_of(j: &Job, seed: u64, t0: Timestamp, cum: &[f64]) -> Option<runledger_record::python::PythonReport> {
    use runledger_record::python::{PythonPackage, PythonProcess, PythonReport};
    let mut rng = Rng(seed ^ u64::from(j.job_id).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5079_7468_6f6e);
    if j.program != "python3" && !rng.chance(0.33) {
        return None;
    }
    let day = (j.start - t0) / DAY;
    let killed = matches!(j.state, JobState::Timeout | JobState::OutOfMemory | JobState::Cancelled);
    let ended = if killed {
        "unfinished".to_string()
    } else if j.state == JobState::Failed {
        format!("exception:{}", ["RuntimeError", "ValueError", "KeyError", "MemoryError"][rng.below(4)])
    } else {
        "normal".to_string()
    };
    let mut procs = Vec::new();
    let n = if rng.chance(0.2) { 2 } else { 1 };
    for i in 0..n {
        // Users rerun their own few environments (a project's venv or conda env): the package
        // set is the user's environment's, as in real ledgers, not a fresh draw per job.
        let env = rng.below(3) as u64;
        let mut env_rng = Rng(seed ^ (j.user as u64 + 1).wrapping_mul(0x9e37_79b9) ^ (env << 40) ^ 0x0065_6e76);
        let mut picked: Vec<usize> = vec![0];
        let k = 3 + (37.0 * env_rng.f().powf(1.5)) as usize;
        while picked.len() < k {
            let p = pick(cum, &mut env_rng);
            if !picked.contains(&p) {
                picked.push(p);
            }
        }
        if j.partition == 1 && env_rng.chance(0.7) && !picked.contains(&13) {
            picked.push(13);
        }
        if j.nnodes > 1 && env_rng.chance(0.3) && !picked.contains(&11) {
            picked.push(11);
        }
        // A second process (a post-processing script) imports part of the first's.
        if i > 0 {
            picked.truncate(1 + picked.len() / 3);
        }
        picked.sort_unstable();
        let last = i + 1 == n;
        let packages = picked
            .iter()
            .map(|&p| {
                let (name, v0, v1, when) = PY_PACKAGES[p];
                let version = (!(killed && last)).then(|| if day < when { v0 } else { v1 }.to_string());
                PythonPackage { name: name.to_string(), version }
            })
            .collect();
        let main = if j.program == "python3" { "train.py" } else { ["analyse.py", "post.py", "-c"][rng.below(3)] };
        procs.push(PythonProcess {
            pid: 4000 + 17 * i as u32 + (j.job_id % 1000),
            rank: 0,
            interpreter: if j.program == "python3" {
                "/opt/site/python/3.11.4/bin/python3"
            } else {
                "/usr/bin/python3"
            }
            .into(),
            version: if j.program == "python3" { "3.11.4" } else { "3.11.2" }.into(),
            prefix: "/usr".into(),
            base_prefix: "/usr".into(),
            main: if main == "-c" { main.to_string() } else { format!("/home/user{:03}/run/{main}", j.user) },
            start: j.start + 5 + 60 * i as i64,
            packages,
            ended: if last { ended.clone() } else { "normal".to_string() },
        });
    }
    Some(PythonReport { source: "user".into(), processes: procs, ..Default::default() })
}

fn module(name: &str, version: &str) -> Module {
    Module {
        name: name.to_string(),
        version: Some(version.to_string()),
        file: Some(format!("/opt/modulefiles/{name}/{version}.lua")),
    }
}

/// The environments: a dozen site/partition templates (no per-user values, so they dedupe).
fn environments() -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for p in PARTITIONS {
        for variant in 0..3 {
            let mut env = BTreeMap::new();
            env.insert("SLURM_JOB_PARTITION".to_string(), p.0.to_string());
            env.insert("OMP_NUM_THREADS".to_string(), ["1", "4", "8"][variant].to_string());
            env.insert("LMOD_SYSTEM_NAME".to_string(), "bench".to_string());
            env.insert("MODULEPATH".to_string(), "/opt/modulefiles/Core:/opt/modulefiles/site".to_string());
            env.insert("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin:/opt/site/bin".to_string());
            for i in 0..40 {
                env.insert(format!("SITE_SETTING_{i:02}"), format!("value-{i}-/opt/site/share/{}", i * 7));
            }
            out.push(env);
        }
    }
    out
}

fn make_job(rng: &mut Rng, c: &Cum, job_id: u32, start: Timestamp, t0: Timestamp) -> Job {
    let user = pick(&c.users, rng);
    // Each user mostly charges one account, sometimes a second one.
    let account = if rng.chance(0.85) { (user * 7) % 24 } else { (user * 7 + 5) % 24 };
    let x = rng.f();
    let mut acc = 0.0;
    let mut partition = 0;
    for (i, p) in PARTITIONS.iter().enumerate() {
        acc += p.1;
        if x < acc {
            partition = i;
            break;
        }
    }
    let p = PARTITIONS[partition];
    let day = (start - t0) / DAY;
    let nnodes = if partition == 3 {
        1 + rng.below(2) as u32
    } else if rng.chance(0.55) {
        1
    } else {
        1 << (1 + pick(&c.nodes, rng)) // 2, 4, … 64
    };
    let ranks_per_node = [1, 1, 1, 2, 2, 4, 4, 8, 16, 32][rng.below(10)].min(p.2);
    let max_s = p.3 * 3600.0;
    let duration = (60.0 * (max_s / 60.0).powf(rng.f())).round() as i64;
    let efficiency = 0.2 + 0.8 * rng.f().powf(0.6);

    let mut modules = Vec::new();
    let (compiler, mpi) = if day < 180 { ("12.2.0", "4.1.4") } else { ("13.2.0", "4.1.5") };
    if rng.chance(0.8) {
        modules.push(module("gcc", compiler));
    } else {
        modules.push(module("intel", "2023.1.0"));
    }
    let uses_mpi = nnodes > 1 || rng.chance(0.4);
    let mut uses_new_mpi = false;
    if uses_mpi {
        if rng.chance(0.75) {
            // Not everyone moves at once: a quarter stay on the old version for a while.
            let v = if (180..240).contains(&day) && rng.chance(0.25) { "4.1.4" } else { mpi };
            uses_new_mpi = v == "4.1.5";
            modules.push(module("openmpi", v));
        } else {
            modules.push(module("mpich", "4.1.2"));
        }
    }
    if partition == 1 {
        modules.push(module("cuda", if day < 150 { "11.8.0" } else { "12.2.0" }));
    }
    let extra = rng.below(4);
    let mut program = "a.out";
    for _ in 0..extra {
        let (name, v0, v1, when) = LIBS[pick(&c.libs, rng)];
        if modules.iter().any(|m| m.name == name) || modules.len() >= 5 {
            continue;
        }
        modules.push(module(name, if day < when { v0 } else { v1 }));
        match name {
            "lammps" => program = "lmp",
            "gromacs" => program = "gmx_mpi",
            "wrf" => program = "wrf.exe",
            "cp2k" => program = "cp2k.psmp",
            "vasp" => program = "vasp_std",
            "python" => program = "python3",
            "namd" => program = "namd3",
            "quantum-espresso" => program = "pw.x",
            _ => {}
        }
        let need: &[(&str, &str)] = match name {
            "lammps" | "gromacs" => &[("fftw", "3.3.10")],
            "wrf" => &[("netcdf-c", "4.9.2"), ("hdf5", "1.14.1")],
            "cp2k" | "quantum-espresso" => &[("scalapack", "2.2.0")],
            _ => &[],
        };
        for (n, v) in need {
            if modules.len() < 5 && !modules.iter().any(|m| m.name == *n) {
                modules.push(module(n, v));
            }
        }
    }
    let mut fail = 0.06 + if uses_new_mpi { 0.05 } else { 0.0 };
    if partition == 3 {
        fail += 0.04;
    }
    let x = rng.f();
    let (state, exit) = if x < fail {
        (JobState::Failed, ExitStatus { code: 1 + rng.below(3) as i32, signal: 0, core_dumped: false })
    } else if x < fail + 0.04 {
        (JobState::Timeout, ExitStatus { code: 0, signal: 15, core_dumped: false })
    } else if x < fail + 0.06 {
        (JobState::OutOfMemory, ExitStatus { code: 0, signal: 9, core_dumped: false })
    } else if x < fail + 0.09 {
        (JobState::Cancelled, ExitStatus { code: 0, signal: 15, core_dumped: false })
    } else {
        (JobState::Completed, ExitStatus::default())
    };
    let duration = if state == JobState::Timeout { max_s as i64 } else { duration };
    let first_node = p.4 + rng.below((p.5 - nnodes.min(p.5) + 1) as usize) as u32;
    let tag = rng.chance(0.1).then(|| ("exp".to_string(), format!("e{}", rng.below(20))));
    Job {
        job_id,
        user,
        account,
        partition,
        start,
        duration,
        nnodes: nnodes.min(p.5),
        first_node,
        ranks_per_node,
        cpus_per_node: p.2,
        efficiency,
        modules,
        program,
        state,
        exit,
        env: partition * 3 + rng.below(3),
        tag,
    }
}

struct Cum {
    py: Vec<f64>,
    users: Vec<f64>,
    libs: Vec<f64>,
    nodes: Vec<f64>,
}

/// The step's use over time, when the year has timelines: busy at the job's efficiency on
/// every core of the node, except that one job in twelve (chosen by its id) stalls after a
/// while and sits idle to its end, the pattern `query idle` looks for.
fn shape(j: &Job, timelines: bool) -> Option<Shape> {
    if !timelines {
        return None;
    }
    let mut rng = Rng(u64::from(j.job_id).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let stalls = rng.below(12) == 0;
    let idle_from = stalls.then(|| j.start + (j.duration as f64 * (0.1 + 0.5 * rng.below(100) as f64 / 100.0)) as i64);
    Some(Shape {
        interval_s: 30,
        busy_cores: f64::from(j.cpus_per_node) * j.efficiency,
        idle_from,
        rss_kib: 200_000 * u64::from(j.ranks_per_node),
        rss_growth_kib: rng.below(3) as u64 * 64,
        processes: j.ranks_per_node + 1,
    })
}

fn batches(
    j: &Job,
    envs: &[BTreeMap<String, String>],
    python: Option<runledger_record::python::PythonReport>,
    timelines: bool,
    params: bool,
) -> Vec<Batch> {
    let shape = shape(j, timelines);
    let seed = |node: u32, step: u32| (u64::from(j.job_id) << 32) ^ (u64::from(node) << 16) ^ u64::from(step);
    let user = format!("user{:03}", j.user);
    let account = format!("acct{:02}", j.account);
    let partition = PARTITIONS[j.partition].0.to_string();
    let end = j.start + j.duration;
    let tags: BTreeMap<String, String> = j.tag.iter().cloned().collect();
    let raw = if j.exit.signal != 0 { j.exit.signal } else { j.exit.code << 8 };
    let cwd = format!("/home/{user}/run");
    // What a real node record carries too (#15, and what the epilog and the plugin always
    // fill), so that the bytes per job are measured with it: the job's memory on a node, its
    // time limit (the partition's, as most jobs ask), the batch script's output file, and the
    // evidence of the job's state (`epilog::state`'s wording).
    let alloc_mem_mb = u64::from(j.cpus_per_node) * if partition == "bigmem" { 16_000 } else { 4_000 };
    let time_limit =
        TimeLimit { seconds: Some((PARTITIONS[j.partition].3 * 3600.0) as u64), source: LimitSource::Environment };
    let output = format!("{cwd}/slurm-{}.out", j.job_id);
    let step_start = |node: u32, step_id: u32, argv: Vec<String>, start: Timestamp| {
        let batch = step_id == STEP_BATCH;
        StepStart {
            cluster: "bench".into(),
            job_id: j.job_id,
            step_id,
            node: format!("n{:04}", j.first_node + node),
            node_id: node,
            array_job_id: None,
            array_task_id: None,
            uid: 10_000 + j.user as u32,
            gid: 20_000 + j.account as u32,
            user: user.clone(),
            nnodes: if batch { 1 } else { j.nnodes },
            local_tasks: if batch { 1 } else { j.ranks_per_node },
            total_tasks: if batch { 1 } else { j.ranks_per_node * j.nnodes },
            ncpus: j.cpus_per_node,
            exe: Some(argv[argv.len().min(2) - 1].clone()),
            argv,
            cwd: Some(cwd.clone()),
            account: Some(account.clone()),
            partition: Some(partition.clone()),
            qos: Some("normal".into()),
            job_name: Some(format!("{}-run", j.program)),
            env: envs[j.env].clone(),
            modules: j.modules.clone(),
            tags: tags.clone(),
            start,
            slurm_version: "23.02.6".into(),
            alloc_mem_mb: Some(alloc_mem_mb),
            time_limit: Some(time_limit.clone()),
            ..Default::default()
        }
    };
    let cpu_node = j.duration as f64 * f64::from(j.cpus_per_node) * j.efficiency;
    let mut out = Vec::with_capacity(j.nnodes as usize);
    for node in 0..j.nnodes {
        let name = format!("n{:04}", j.first_node + node);
        let mut items = Vec::new();
        if node == 0 {
            items.push(Item::StepStart(step_start(node, STEP_BATCH, vec![format!("{cwd}/job.sh")], j.start)));
            items.push(Item::StepEnd(StepEnd {
                cluster: "bench".into(),
                job_id: j.job_id,
                step_id: STEP_BATCH,
                node: name.clone(),
                start: j.start,
                end,
                tasks: vec![TaskExit::from_wait(0, 0, raw, end)],
                cpu_user_s: 0.5,
                cpu_sys_s: 0.1,
                max_rss_kib: 8_000,
                stdout: Some(output.clone()),
                stderr: Some(output.clone()),
                series: shape.and_then(|sh| {
                    let batch = Shape {
                        busy_cores: 0.0,
                        idle_from: None,
                        rss_growth_kib: 0,
                        processes: 2,
                        rss_kib: 8_000,
                        ..sh
                    };
                    timeline::series(seed(node, STEP_BATCH), j.start, end, &batch)
                }),
            }));
        }
        let s0 = j.start + 1;
        let argv = vec!["srun".to_string(), format!("/opt/apps/bin/{}", j.program)];
        items.push(Item::StepStart(step_start(node, 0, argv, s0)));
        let e0 = (end - 1).max(s0);
        let tasks = (0..j.ranks_per_node)
            .map(|t| {
                let r = if node == 0 && t == 0 { raw } else { 0 };
                TaskExit::from_wait(t, node * j.ranks_per_node + t, r, e0)
            })
            .collect();
        items.push(Item::StepEnd(StepEnd {
            cluster: "bench".into(),
            job_id: j.job_id,
            step_id: 0,
            node: name.clone(),
            start: s0,
            end: e0,
            tasks,
            // Milliseconds, as getrusage gives them (whole seconds would take SQLite 1-3 bytes
            // where a real value takes 8).
            cpu_user_s: (cpu_node * 950.0).round() / 1000.0,
            cpu_sys_s: (cpu_node * 50.0).round() / 1000.0,
            max_rss_kib: 1_000_000 + u64::from(node) * 1000,
            stdout: None,
            stderr: None,
            series: shape.and_then(|sh| timeline::series(seed(node, 0), s0, e0, &sh)),
        }));
        items.push(Item::JobEnd(JobEnd {
            cluster: "bench".into(),
            job_id: j.job_id,
            node: name.clone(),
            uid: 10_000 + j.user as u32,
            user: user.clone(),
            account: Some(account.clone()),
            partition: Some(partition.clone()),
            work_dir: Some(cwd.clone()),
            exit: j.exit,
            derived_exit: Some(j.exit),
            state: j.state,
            state_evidence: Some(evidence(j, node, &name, end)),
            start: Some(j.start),
            end,
            stdout: (node == 0).then(|| output.clone()),
            stderr: (node == 0).then(|| output.clone()),
            facts: if node == 0 { verdict(j, params) } else { Vec::new() },
            python: if node == 0 { python.clone() } else { None },
            alloc_mem_mb: Some(alloc_mem_mb),
            time_limit: Some(time_limit.clone()),
            ..Default::default()
        }));
        let mut b = Batch::new(name, items);
        b.created = end;
        out.push(b);
    }
    out
}

/// A batch as the generator made it before its node records carried [`Synth::node_details`].
fn without_node_details(b: &mut Batch) {
    for it in &mut b.items {
        match it {
            Item::StepStart(s) => (s.alloc_mem_mb, s.time_limit) = (None, None),
            Item::StepEnd(e) => {
                (e.stdout, e.stderr) = (None, None);
                if e.step_id != STEP_BATCH {
                    (e.cpu_user_s, e.cpu_sys_s) = (e.cpu_user_s.round(), e.cpu_sys_s.round());
                }
            }
            Item::JobEnd(j) => {
                (j.alloc_mem_mb, j.time_limit, j.state_evidence) = (None, None, None);
                (j.stdout, j.stderr) = (None, None);
            }
        }
    }
}

/// The evidence a node's epilog gives for the job's state (`epilog::state::classify`): on the
/// batch node the line slurmstepd wrote into the job's output when it ended the job, elsewhere
/// (and for the other states) the exit status.
fn evidence(j: &Job, node: u32, name: &str, end: Timestamp) -> String {
    let at = utc(end);
    match j.state {
        JobState::Timeout if node == 0 => {
            format!("slurmstepd: error: *** JOB {} ON {name} CANCELLED AT {at} DUE TO TIME LIMIT ***", j.job_id)
        }
        JobState::Cancelled if node == 0 => {
            format!("slurmstepd: error: *** JOB {} ON {name} CANCELLED AT {at} ***", j.job_id)
        }
        JobState::OutOfMemory if node == 0 => format!(
            "slurmstepd: error: Detected 1 oom_kill event in StepId={}.0. Some of the step tasks have been OOM Killed.",
            j.job_id
        ),
        _ => j.exit.evidence(),
    }
}

/// Unix seconds as Slurm writes a time (UTC here): `2025-06-15T05:00:00`.
fn utc(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
}

/// What the epilog's log parser would have found: program, outcome and failure category
/// (job-level facts, `source` empty), for the jobs running a known application.
fn verdict(j: &Job, params: bool) -> Vec<Fact> {
    let program = match j.program {
        "lmp" => "LAMMPS",
        "gmx_mpi" => "GROMACS",
        "wrf.exe" => "WRF",
        "cp2k.psmp" => "CP2K",
        "vasp_std" => "VASP",
        "namd3" => "NAMD",
        "pw.x" => "Quantum ESPRESSO",
        _ => return Vec::new(),
    };
    let (outcome, category) = match j.state {
        JobState::Completed => ("success", None),
        JobState::Timeout => ("incomplete", Some("time_limit")),
        JobState::Cancelled => ("incomplete", Some("cancelled")),
        JobState::OutOfMemory => ("failed", Some("out_of_memory")),
        _ => ("failed", Some(["segfault", "mpi_abort", "input_error", "numerical_instability"][j.job_id as usize % 4])),
    };
    let fact = |k: &str, v: &str| Fact { source: String::new(), key: k.into(), value: v.into(), unit: None };
    let mut out = vec![fact("program", program), fact("outcome", outcome)];
    if let Some(c) = category {
        out.push(fact("failure_category", c));
    }
    if params {
        out.extend(input_params(j).into_iter().map(|(k, v)| fact(&format!("param.{k}"), v)));
    }
    out
}

/// The input parameters the log parser would read (`logparse::inputs`, `param.*` facts): for
/// about four jobs of five of a code it knows (the others feed their input through a shell
/// redirection, which is never seen), the keys a site compares, each value one of a few a
/// group's users would pick. Drawn from the job id, not the year's random stream, so the jobs'
/// other fields stay those of a generator without them.
fn input_params(j: &Job) -> Vec<(&'static str, &'static str)> {
    let h = u64::from(j.job_id).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j.user as u64;
    if h % 5 == 0 {
        return Vec::new();
    }
    let keys: &[(&str, &[&str])] = match j.program {
        "lmp" => &[
            ("units", &["lj", "metal", "real"]),
            ("atom_style", &["atomic", "full", "charge"]),
            ("pair_style", &["lj/cut", "eam/alloy", "lj/cut/coul/long", "reaxff"]),
            ("kspace_style", &["pppm", "ewald"]),
            ("timestep", &["0.005", "0.001", "1.0", "2.0"]),
            ("run", &["10000", "100000", "500000"]),
            ("fix", &["nve", "nvt", "npt", "nve,langevin"]),
        ],
        "gmx_mpi" => &[
            ("integrator", &["md", "sd", "steep"]),
            ("dt", &["0.002", "0.004", "0.001"]),
            ("nsteps", &["500000", "5000000", "50000"]),
            ("cutoff-scheme", &["Verlet"]),
            ("coulombtype", &["PME", "Reaction-Field"]),
            ("tcoupl", &["V-rescale", "Nose-Hoover"]),
            ("pcoupl", &["Parrinello-Rahman", "C-rescale", "no"]),
            ("constraints", &["h-bonds", "none"]),
        ],
        "vasp_std" => &[
            ("ENCUT", &["400", "520", "600"]),
            ("PREC", &["Accurate", "Normal"]),
            ("ISMEAR", &["0", "-5", "1"]),
            ("IBRION", &["2", "-1", "1"]),
            ("ALGO", &["Fast", "Normal", "All"]),
            ("GGA", &["PE", "PS"]),
        ],
        "pw.x" => &[
            ("calculation", &["scf", "relax", "vc-relax"]),
            ("ecutwfc", &["30", "45", "60"]),
            ("occupations", &["smearing", "fixed"]),
            ("conv_thr", &["1.0d-8", "1.0d-10"]),
            ("mixing_beta", &["0.7", "0.3"]),
        ],
        "wrf.exe" => &[
            ("time_step", &["60", "90", "180"]),
            ("max_dom", &["1", "2", "3"]),
            ("mp_physics", &["8", "6", "28"]),
            ("cu_physics", &["1", "0", "3"]),
            ("bl_pbl_physics", &["1", "5"]),
        ],
        _ => &[],
    };
    // Each key's value mostly follows the user's habit, sometimes the job's own choice.
    keys.iter()
        .enumerate()
        .map(|(i, (k, vals))| {
            let pick = if (h >> (8 + i)) & 3 == 0 { (h >> 20) as usize + i } else { j.user + i };
            (*k, vals[pick % vals.len()])
        })
        .collect()
}

/// Relative submission rate by local-ish hour and weekday (0 = Monday).
fn rate(t: i64) -> f64 {
    let hour = (t % DAY) / 3600;
    let weekday = ((t / DAY) + 3) % 7; // 1970-01-01 was a Thursday
    let h = match hour {
        0..=6 => 0.25,
        7..=8 => 0.6,
        9..=17 => 1.0,
        18..=21 => 0.6,
        _ => 0.35,
    };
    let w = if weekday >= 5 { 0.35 } else { 1.0 };
    h * w
}

/// The made-up year's first job id: job i (from 0) has id `FIRST_JOB_ID + i`.
pub const FIRST_JOB_ID: u32 = 1000;

/// The jobs of one made-up year, in start order.
pub struct Synth {
    rng: Rng,
    cum: Cum,
    envs: Vec<BTreeMap<String, String>>,
    t0: Timestamp,
    starts: Vec<Timestamp>,
    next: usize,
    seed: u64,
    python: bool,
    /// Whether steps carry usage series (the plugin's sampler at its default 30 s), off by
    /// default so the made-up year stays what it was; the jobs are the same either way (the
    /// series' shapes come from the job id, not the year's random stream).
    pub timelines: bool,
    /// Whether the jobs of a known code carry their input parameters (`param.*` facts); on by
    /// default, off for the fixture (the recorded version 2 ledger predates them).
    pub params: bool,
    /// Whether node records carry what a real one does besides (the job's memory and time
    /// limit, the evidence of its state, the batch script's output file, CPU seconds to the
    /// millisecond); on by default, off for the fixture, recorded before they were made up.
    pub node_details: bool,
}

impl Synth {
    /// `n` jobs starting over the year that ends three days before `end` (so all have ended by then).
    pub fn new(n: u32, seed: u64, end: Timestamp) -> Synth {
        let mut rng = Rng(seed);
        let t0 = (end - 368 * DAY) / DAY * DAY;
        let cum = Cum {
            py: zipf(PY_PACKAGES.len(), 0.8),
            users: zipf(200, 1.1),
            libs: zipf(LIBS.len(), 0.9),
            nodes: zipf(6, 1.3),
        };
        // Start times: accept/reject against the daily and weekly cycle, then sorted so job ids
        // grow with time as Slurm's do.
        let mut starts: Vec<i64> = Vec::with_capacity(n as usize);
        while starts.len() < n as usize {
            let t = t0 + (rng.f() * (365 * DAY) as f64) as i64;
            if rng.f() < rate(t) {
                starts.push(t);
            }
        }
        starts.sort_unstable();
        Synth {
            rng,
            cum,
            envs: environments(),
            t0,
            starts,
            next: 0,
            seed,
            python: true,
            timelines: false,
            params: true,
            node_details: true,
        }
    }

    /// The same jobs without their Python records (the schema-migration fixture, recorded before
    /// them).
    pub fn without_python(mut self) -> Synth {
        self.python = false;
        self
    }

    /// Passes over the next `k` jobs without building their items (the year's random stream is
    /// shared, so each skipped job is still drawn), to resume a generation that stopped.
    pub fn skip(&mut self, k: usize) {
        for _ in 0..k.min(self.starts.len() - self.next) {
            make_job(&mut self.rng, &self.cum, FIRST_JOB_ID + self.next as u32, self.starts[self.next], self.t0);
            self.next += 1;
        }
    }

    /// The next job's items, one batch per node (as its epilogs send them).
    pub fn next_job(&mut self) -> Option<Vec<Batch>> {
        let start = *self.starts.get(self.next)?;
        let job = make_job(&mut self.rng, &self.cum, FIRST_JOB_ID + self.next as u32, start, self.t0);
        self.next += 1;
        let python = if self.python { python_of(&job, self.seed, self.t0, &self.cum.py) } else { None };
        let mut out = batches(&job, &self.envs, python, self.timelines, self.params);
        if !self.node_details {
            for b in &mut out {
                without_node_details(b);
            }
        }
        Some(out)
    }

    /// The next job's items from all its nodes in one batch: the same rows once merged, with
    /// one job lookup and one recomputation instead of one per node.
    pub fn next_job_batch(&mut self) -> Option<Batch> {
        let per_node = self.next_job()?;
        let mut items = Vec::new();
        let sender = per_node[0].sender.clone();
        let created = per_node.iter().map(|b| b.created).max().unwrap_or(0);
        for b in per_node {
            items.extend(b.items);
        }
        let mut b = Batch::new(sender, items);
        b.created = created;
        Some(b)
    }
}

/// When the migration fixture's year ends (2026-01-01T00:00:00Z) and its records were received.
pub const FIXTURE_END: Timestamp = 1_767_225_600;

/// The ledger of the schema-migration test: 30 made-up jobs (seed 7) and a dozen hand-made
/// ones with what the made-up year lacks: array tasks, a reused job id, tasks that exit at other
/// times, dump core or disagree with their raw status, steps without their start or end, a node
/// without its `JobEnd`, a module listed twice, two versions of one module, output paths,
/// evidence, facts with units, empty environments and user names.
pub fn fixture_batches() -> Vec<Batch> {
    use crate::sample::Sample;
    let mut out = Vec::new();
    let mut synth = Synth::new(30, 7, FIXTURE_END).without_python();
    synth.params = false;
    synth.node_details = false;
    while let Some(b) = synth.next_job() {
        out.extend(b);
    }
    let t = FIXTURE_END - 200 * DAY + 3600;
    let mk = |job_id: u32, start: Timestamp| {
        let mut s = Sample::new("bench", job_id, start);
        s.first_node = 200;
        s.duration = 4000;
        s
    };
    let ex = |code: i32, signal: i32| ExitStatus { code, signal, core_dumped: false };
    let mut items_of = |s: &Sample, edit: &dyn Fn(u32, &mut Item)| {
        for node in 0..s.nnodes {
            let mut items = s.node_items(node);
            for it in &mut items {
                edit(node, it);
            }
            let mut b = Batch::new(s.node_name(node), items);
            b.created = s.end();
            out.push(b);
        }
    };
    // Array tasks 7000_1 and 7000_2 (job ids 7001, 7002), two nodes each.
    for task in 1..=2u32 {
        let mut s = mk(7000 + task, t + i64::from(task) * 60);
        s.nnodes = 2;
        s.user = "user003".into();
        s.account = "acct21".into();
        items_of(&s, &|_, it| {
            if let Item::StepStart(st) = it {
                st.array_job_id = Some(7000);
                st.array_task_id = Some(task);
            }
        });
    }
    // Tasks at other times, a core dump, a raw status its decoded form disagrees with, unordered
    // ranks with gaps; two versions of one module and a module listed twice; facts with units.
    let mut s = mk(7100, t + 7200);
    s.nnodes = 3;
    s.state = JobState::Failed;
    s.exit = ex(0, 11);
    s.last_node = Some((JobState::NodeFail, ex(1, 0)));
    s.modules.push(Module { name: "openmpi".into(), version: Some("4.1.5".into()), file: None });
    s.modules.push(Module { name: "gcc".into(), version: Some("12.2.0".into()), file: Some("/other/gcc.lua".into()) });
    s.modules.push(Module { name: "ucx".into(), version: None, file: None });
    s.set_log("LAMMPS", "failed", Some("segfault"), Some("Segmentation fault (core dumped)"), &[("atoms", "32000")]);
    for f in &mut s.facts {
        if f.key == "atoms" {
            f.unit = Some("atoms".into());
        }
    }
    s.facts.push(Fact {
        source: String::new(),
        key: "performance".into(),
        value: "12.5".into(),
        unit: Some("ns/day".into()),
    });
    let end = s.end();
    items_of(&s, &|node, it| {
        if let Item::StepEnd(se) = it {
            if se.step_id == 0 {
                se.tasks = vec![
                    TaskExit {
                        task_id: 3,
                        global_rank: node * 10 + 7,
                        raw_status: 139,
                        status: ExitStatus::from_wait_status(139),
                        time: end - 30,
                    },
                    TaskExit {
                        task_id: 0,
                        global_rank: node * 10,
                        raw_status: 0,
                        status: ExitStatus::default(),
                        time: end - 3,
                    },
                    TaskExit {
                        task_id: 1,
                        global_rank: node * 10 + 1,
                        raw_status: 0,
                        status: ExitStatus::default(),
                        time: end - 3,
                    },
                    TaskExit {
                        task_id: 2,
                        global_rank: node * 10 + 2,
                        raw_status: 256,
                        status: ex(2, 0),
                        time: end - 2,
                    },
                    TaskExit { task_id: 4, global_rank: node * 10 + 8, raw_status: 0, status: ex(5, 0), time: end - 2 },
                ];
                se.stderr = Some(format!("/scratch/err-{node}.log"));
            }
        }
    });
    // A reused job id: job 1003 of the made-up year again, later, elsewhere.
    let mut s = mk(1003, FIXTURE_END - 10 * DAY);
    s.user = "user150".into();
    s.uid = 10_150;
    items_of(&s, &|_, _| {});
    // Steps without their StepStart (and a StepStart without its StepEnd), no JobEnd on the
    // second node: state UNKNOWN there, the first node's elsewhere.
    let mut s = mk(7200, t + 10_800);
    s.nnodes = 2;
    items_of(&s, &|node, it| {
        if node == 1 {
            if let Item::JobEnd(j) = it {
                // Replaced by a StepStart of step 1 that never ended.
                let mut st = match Sample::new("bench", 7200, j.end - 100).node_items(0).remove(2) {
                    Item::StepStart(st) => st,
                    _ => unreachable!("the sample's third item is step 0's start"),
                };
                st.step_id = 1;
                st.node = j.node.clone();
                st.env.clear();
                st.modules.clear();
                *it = Item::StepStart(st);
            }
            if let Item::StepStart(st) = it {
                if st.step_id == 0 {
                    // Its StepStart says another start than its StepEnd.
                    st.start += 5;
                }
            }
        }
    });
    let mut s = mk(7201, t + 14_400);
    items_of(&s.clone(), &|_, it| {
        if let Item::StepStart(st) = it {
            // A step only its StepEnd tells about: make the StepStart another job's.
            st.job_id = 7202;
        }
    });
    // No user name (uid only), no account, an empty environment, a time limit.
    s.job_id = 7300;
    s.start = t + 20_000;
    s.user = String::new();
    s.uid = 4242;
    s.env_vars = 0;
    s.state = JobState::Timeout;
    s.exit = ex(0, 15);
    items_of(&s, &|_, it| match it {
        Item::StepStart(st) => {
            st.account = None;
            st.env.clear();
        }
        Item::JobEnd(j) => {
            j.account = None;
            j.derived_exit = None;
        }
        _ => {}
    });
    // Out of memory and cancelled, another cluster, tags on two steps.
    let mut s = mk(7400, t + 30_000);
    s.cluster = "other".into();
    s.state = JobState::OutOfMemory;
    s.exit = ex(0, 9);
    s.tags.insert("exp".into(), "e3".into());
    items_of(&s, &|_, it| {
        if let Item::StepStart(st) = it {
            if st.step_id == 0 {
                st.tags.insert("exp".into(), "e1".into());
                st.tags.insert("phase".into(), "2".into());
            }
        }
    });
    let mut s = mk(7401, t + 40_000);
    s.state = JobState::Cancelled;
    s.exit = ex(0, 15);
    s.partition = "debug".into();
    items_of(&s, &|_, _| {});
    out
}

#[cfg(test)]
mod python_tests {
    use super::*;

    /// A resumed generation makes the jobs the whole run would have made after the skipped ones.
    #[test]
    fn skip_resumes_the_same_year() {
        let (mut whole, mut resumed) = (Synth::new(50, 42, FIXTURE_END), Synth::new(50, 42, FIXTURE_END));
        for _ in 0..20 {
            whole.next_job_batch();
        }
        resumed.skip(20);
        for _ in 20..50 {
            let (a, b) = (whole.next_job_batch().unwrap(), resumed.next_job_batch().unwrap());
            assert_eq!(a.items, b.items);
        }
        assert!(resumed.next_job_batch().is_none());
        resumed.skip(5);
        assert!(resumed.next_job_batch().is_none());
    }

    /// Python in about a third of the jobs, ~20 packages in a typical one, every record valid,
    /// and the jobs' other fields those of the generator without Python.
    #[test]
    fn python_records_are_plausible_valid_and_leave_the_rest_alone() {
        let end = FIXTURE_END;
        let (mut with, mut without) = (Synth::new(3000, 42, end), Synth::new(3000, 42, end).without_python());
        let (mut jobs, mut python, mut packages) = (0, 0, Vec::new());
        let mut versions = std::collections::BTreeSet::new();
        while let (Some(a), Some(b)) = (with.next_job_batch(), without.next_job_batch()) {
            jobs += 1;
            let mut stripped = a.clone();
            for it in &mut stripped.items {
                if let Item::JobEnd(j) = it {
                    if let Some(r) = j.python.take() {
                        python += 1;
                        for p in &r.processes {
                            p.validate().unwrap();
                            packages.push(p.packages.len());
                            for pkg in p.packages.iter().filter(|p| p.name == "numpy") {
                                versions.insert(pkg.version.clone());
                            }
                        }
                    }
                }
            }
            assert_eq!(stripped, b);
        }
        assert_eq!(jobs, 3000);
        let share = f64::from(python) / f64::from(jobs);
        assert!((0.3..0.5).contains(&share), "{python} of {jobs} jobs ran Python");
        packages.sort_unstable();
        let median = packages[packages.len() / 2];
        assert!((8..=30).contains(&median), "median {median} packages");
        let want: std::collections::BTreeSet<Option<String>> =
            [None, Some("1.24.4".to_string()), Some("1.26.4".to_string())].into_iter().collect();
        assert_eq!(versions, want, "numpy before and after its update, and unknown for killed jobs");
    }
}

#[cfg(test)]
mod node_record_tests {
    use super::*;

    #[test]
    fn times_print_as_slurm_writes_them() {
        assert_eq!(utc(1_750_000_000), "2025-06-15T15:06:40");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc(FIXTURE_END), "2026-01-01T00:00:00");
        assert_eq!(utc(-86_401), "1969-12-30T23:59:59");
    }

    /// Every node record carries what a real one does: the job's memory and time limit, the
    /// evidence of its state, and (the batch node's) the output file; CPU seconds are not
    /// whole numbers.
    #[test]
    fn node_records_carry_what_real_ones_do() {
        let mut synth = Synth::new(2000, 42, FIXTURE_END);
        let (mut ends, mut timeouts, mut fractional) = (0, 0, 0);
        while let Some(b) = synth.next_job_batch() {
            for it in &b.items {
                match it {
                    Item::JobEnd(e) => {
                        ends += 1;
                        assert!(e.alloc_mem_mb.is_some_and(|m| m >= 4_000), "{e:?}");
                        let limit = e.time_limit.as_ref().and_then(|l| l.seconds).unwrap();
                        assert!(limit >= 1800 && e.end - e.start.unwrap() <= limit as i64, "{e:?}");
                        let evidence = e.state_evidence.as_deref().unwrap();
                        assert!(
                            evidence.contains("(exit ") || evidence.starts_with("slurmstepd: error: "),
                            "{evidence}"
                        );
                        if e.state == JobState::Timeout && e.stdout.is_some() {
                            timeouts += 1;
                            assert!(evidence.ends_with("DUE TO TIME LIMIT ***"), "{evidence}");
                        }
                        if let Some(out) = &e.stdout {
                            assert_eq!(out, &format!("{}/slurm-{}.out", e.work_dir.as_deref().unwrap(), e.job_id));
                        }
                    }
                    Item::StepEnd(s) if s.step_id == 0 => {
                        fractional += usize::from(s.cpu_user_s.fract() != 0.0);
                    }
                    _ => {}
                }
            }
        }
        assert!(ends > 2000 && timeouts > 20, "{ends} node records, {timeouts} timeouts");
        assert!(fractional > 1500, "{fractional}");
    }
}
