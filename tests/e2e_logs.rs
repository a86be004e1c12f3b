//! End to end on the real local cluster: the epilog reads the job's solver logs (as the user,
//! bounded) and the ledger shows the facts, per file and per job (`source = ""`). Each job runs in
//! a work directory of its own so that concurrent tests never see each other's logs. Run by
//! `packaging/run-tests` after `packaging/local-cluster up`. A time limit's facts (slurmstepd's
//! "DUE TO TIME LIMIT" line) are checked by tests/e2e_jobs.rs's `time_limit_gives_timeout`, so
//! that CI waits for a time limit once per cluster, not twice.

use runledger_e2e::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A small Lennard-Jones melt, as in LAMMPS's examples/melt (tests/e2e_jobs.rs has the same).
const MELT: &str = "units lj\natom_style atomic\nlattice fcc 0.8442\nregion box block 0 10 0 10 0 10\n\
create_box 1 box\ncreate_atoms 1 box\nmass 1 1.0\nvelocity all create 3.0 87287 loop geom\n\
pair_style lj/cut 2.5\npair_coeff 1 1 1.0 1.0 2.5\nneighbor 0.3 bin\nneigh_modify every 20 delay 0 check no\n\
fix 1 all nve\nthermo 50\nrun 1000\n";

const LAMMPS_MODULE: &str = "module load lammps/20220106";

/// Submits `script` as the test user in its own work directory `rl-e2e/<name>` (output
/// `<name>-%j.out` there, unless `args` say otherwise); returns the job id and the directory.
fn submit(name: &str, prelude: &str, args: &[&str], script: &str) -> (u32, std::path::PathBuf) {
    let dir = user_dir(USER, name);
    let d = dir.to_string_lossy().into_owned();
    let mut all = vec!["-D", d.as_str()];
    all.extend_from_slice(args);
    (sbatch_after(USER, prelude, name, &all, script), dir)
}

fn lammps_script(input: &str, extra: &str) -> String {
    format!("#!/bin/bash\ncat > in.x <<'IN'\n{input}IN\nmpirun -np 2 lmp -in in.x -log log.lammps{extra}\n")
}

/// Everything `collector query job ID --json` says about the job.
fn detail(job: u32) -> Value {
    let v = query(&["job", &job.to_string()]);
    v.as_array().and_then(|a| a.first()).cloned().unwrap_or_else(|| panic!("no detail for job {job}: {v:#}"))
}

fn sources(d: &Value) -> Vec<String> {
    let mut s: Vec<String> = facts(d).iter().filter_map(|f| f["source"].as_str().map(str::to_string)).collect();
    s.sort();
    s.dedup();
    s
}

fn out_file(dir: &Path, name: &str, job: u32) -> String {
    std::fs::read_to_string(dir.join(format!("{name}-{job}.out"))).unwrap_or_default()
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn successful_lammps_run_gives_program_size_and_speed() {
    require_cluster();
    let (id, dir) = submit("logs-lmp-ok", LAMMPS_MODULE, &["-n", "2"], &lammps_script(MELT, ""));
    let job = finished(id);
    assert_eq!(job["state"], "COMPLETED", "{job:#}\n{}", out_file(&dir, "logs-lmp-ok", id));
    let d = detail(id);
    assert_eq!(job_value(&d, "program"), "LAMMPS");
    assert_eq!(job_value(&d, "outcome"), "success");
    assert!(!job_value(&d, "version").is_empty());
    assert_eq!(job_value(&d, "mpi_ranks"), "2");
    assert_eq!(job_value(&d, "atoms"), "4000");
    assert_eq!(job_value(&d, "steps"), "1000");
    let (perf, unit) = job_fact(&d, "performance").expect("performance");
    assert!(perf.parse::<f64>().unwrap() > 0.0, "{perf}");
    assert_eq!(unit.as_deref(), Some("tau/day"));
    let (wall, unit) = job_fact(&d, "wall_seconds").expect("wall_seconds");
    assert!(wall.parse::<f64>().is_ok(), "{wall}");
    assert_eq!(unit.as_deref(), Some("s"));
    assert!(job_fact(&d, "failure_category").is_none());
    assert!(job_fact(&d, "state_disagreement").is_none(), "{:#}", d["facts"]);
    // Per-file facts carry the file's absolute path.
    let log = dir.join("log.lammps").to_string_lossy().into_owned();
    assert!(sources(&d).contains(&log), "{:?}", sources(&d));
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn missing_potential_file_is_file_not_found() {
    require_cluster();
    let input = MELT
        .replace("pair_style lj/cut 2.5", "pair_style eam")
        .replace("pair_coeff 1 1 1.0 1.0 2.5", "pair_coeff 1 1 Nope.eam");
    let (id, dir) = submit("logs-lmp-nofile", LAMMPS_MODULE, &["-n", "2"], &lammps_script(&input, ""));
    let job = finished(id);
    let d = detail(id);
    assert_eq!(job_value(&d, "outcome"), "failed", "{:#}\n{}", d["facts"], out_file(&dir, "logs-lmp-nofile", id));
    assert_eq!(job_value(&d, "failure_category"), "file_not_found");
    assert!(job_value(&d, "error").contains("Nope.eam"), "{:#}", d["facts"]);
    let src = job_value(&d, "error_source");
    assert!(src.starts_with(&*dir.to_string_lossy()), "{src}");
    assert_eq!(job["state"], "FAILED", "{job:#}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn exploding_run_is_numerical_instability() {
    require_cluster();
    let input = MELT.replace("velocity all create 3.0", "velocity all create 1e9");
    let (id, dir) = submit("logs-lmp-unstable", LAMMPS_MODULE, &["-n", "2"], &lammps_script(&input, ""));
    finished(id);
    let d = detail(id);
    assert_eq!(
        job_value(&d, "failure_category"),
        "numerical_instability",
        "{:#}\n{}",
        d["facts"],
        out_file(&dir, "logs-lmp-unstable", id)
    );
    assert!(job_value(&d, "error").contains("Lost atoms"), "{:#}", d["facts"]);
    assert_eq!(job_value(&d, "program"), "LAMMPS");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn custom_output_pattern_in_a_subdirectory_is_read() {
    require_cluster();
    let dir = user_dir(USER, "logs-custom-o");
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let owner = format!("{USER}:{USER}");
    assert!(Command::new("chown").arg(&owner).arg(&out).status().unwrap().success());
    let d = dir.to_string_lossy().into_owned();
    // LAMMPS writes no log file (-log none): its screen output in out/%x.%j.txt is the only log.
    let script = lammps_script(MELT, "").replace("-log log.lammps", "-log none");
    let id = sbatch_after(USER, LAMMPS_MODULE, "logs-custom-o", &["-D", &d, "-n", "2", "-o", "out/%x.%j.txt"], &script);
    let job = finished(id);
    let file = out.join(format!("logs-custom-o.{id}.txt"));
    assert!(file.exists(), "sbatch did not write {}", file.display());
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    let det = detail(id);
    let src = file.to_string_lossy().into_owned();
    // The job's facts, the input file's parameters (in.x, named by -in) and the custom log.
    let input = dir.join("in.x").to_string_lossy().into_owned();
    assert_eq!(sources(&det), vec![String::new(), input, src.clone()], "{:#}", det["facts"]);
    assert!(facts(&det).iter().any(|f| f["source"] == src.as_str() && f["key"] == "program" && f["value"] == "LAMMPS"));
    assert_eq!(job_value(&det, "atoms"), "4000");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn symlink_to_shadow_and_fifo_are_not_read() {
    require_cluster();
    let script = "#!/bin/bash\nln -s /etc/shadow log.lammps\nmkfifo md.log\nln -s /etc/shadow shadow.log\necho done\n";
    let (id, dir) = submit("logs-hostile", "true", &[], script);
    let job = finished(id);
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    assert!(out_file(&dir, "logs-hostile", id).contains("done"));
    let d = detail(id);
    for s in sources(&d) {
        assert!(!s.ends_with("log.lammps") && !s.ends_with("md.log") && !s.ends_with("shadow.log"), "{s}");
    }
    for f in facts(&d) {
        assert!(!f["value"].as_str().unwrap_or_default().contains("root:"), "shadow leaked: {f}");
    }
    // The epilog finished in time: the node was not drained.
    let state = String::from_utf8_lossy(&slurm(&["sinfo", "-h", "-o", "%T"]).stdout).trim().to_string();
    assert!(!state.contains("drain") && !state.contains("down"), "node {state}");
}
