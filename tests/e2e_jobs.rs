//! End to end on the real local cluster: jobs submitted with sbatch as an unprivileged user,
//! recorded by the plugin and the epilog, merged by `collector serve`, answered by
//! `collector query`. Run by `packaging/run-tests` after `packaging/local-cluster up`.

use runledger_e2e::*;
use serde_json::Value;
use std::time::Duration;

/// Burns a fixed amount of CPU: about 0.8 s of user time here, however loaded the machine (a
/// loop bounded by wall time got less than 0.5 s of CPU at load 10). Bash arithmetic only: no
/// helper binaries needed.
fn burn(iterations: u32) -> String {
    format!("bash -c 'i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done'")
}

fn modules_of(job: &Value) -> Vec<String> {
    job["modules"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect()
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn completed_job_with_modules_account_and_two_tasks() {
    require_cluster();
    let script = format!("#!/bin/bash -l\nmodule load gcc/12.2.0 openmpi/4.1.4\nsrun -n 2 {}\n", burn(300_000));
    let id = sbatch(USER, "modules", &["-A", "physics", "-n", "2"], &script);
    let job = finished(id);
    assert_eq!(job["user"], USER);
    assert_eq!(job["account"], "physics");
    assert_eq!(job["partition"], "debug");
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    assert_eq!(job["exit_code"], 0);
    let mods = modules_of(&job);
    assert!(mods.contains(&"gcc/12.2.0".to_string()) && mods.contains(&"openmpi/4.1.4".to_string()), "{mods:?}");

    assert!(step(&job, "batch").is_some(), "no batch step: {job:#}");
    let s0 = step(&job, "0").unwrap_or_else(|| panic!("no step 0: {job:#}"));
    let tasks = s0["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{s0:#}");
    for t in tasks {
        assert_eq!((t["exit_code"].as_i64(), t["signal"].as_i64()), (Some(0), Some(0)), "{t}");
    }
    let cpu = job["cpu_seconds"].as_f64().unwrap();
    assert!(cpu > 0.5, "cpu_seconds {cpu}");
    assert!(s0["argv"].as_array().unwrap().iter().any(|a| a == "bash"), "{s0:#}");

    // The same job through the filters an admin would use.
    let by_module = query(&["jobs", "-u", USER, "--module", "openmpi/4.1.4", "-A", "physics", "-s", "CD"]);
    assert!(by_module.as_array().unwrap().iter().any(|j| j["job_id"] == id));
    let by_other = query(&["jobs", "-j", &id.to_string(), "--module", "gcc/0.0"]);
    assert!(by_other.as_array().unwrap().is_empty());

    // `query job` has everything, with the environment redacted at the source.
    let detail = query(&["job", &id.to_string()]);
    let detail = if detail.is_array() { detail[0].clone() } else { detail };
    let text = detail.to_string();
    assert!(text.contains("LOADEDMODULES"), "environment missing from query job");
    assert!(!detail["events"].as_array().map(|e| e.is_empty()).unwrap_or(true), "no events: {detail:#}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn failing_job_records_exit_code() {
    require_cluster();
    let id = sbatch(USER, "exit3", &[], "#!/bin/bash\necho about to fail\nexit 3\n");
    let job = finished(id);
    assert_eq!(job["state"], "FAILED", "{job:#}");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["signal"], 0);
    let failed = query(&["jobs", "-u", USER, "-s", "FAILED"]);
    assert!(failed.as_array().unwrap().iter().any(|j| j["job_id"] == id));
    // The epilog's evidence and the one output file of both streams, read back whole: the
    // ledger stores each as nothing where it repeats the exit status or the standard output.
    let detail = job_detail(id);
    assert_eq!(detail["state_evidence"], "exit code 3 (exit 3:0)", "{detail:#}");
    let out = home(USER).join(format!("rl-e2e/exit3-{id}.out")).to_string_lossy().into_owned();
    let node = &detail["node_records"][0];
    assert_eq!(node["state_evidence"], "exit code 3 (exit 3:0)", "{detail:#}");
    let batch = step(&detail, "batch").unwrap_or_else(|| panic!("no batch step: {detail:#}"));
    for record in [node, batch] {
        assert_eq!((record["stdout"].as_str(), record["stderr"].as_str()), (Some(&*out), Some(&*out)), "{record:#}");
    }
}

/// Slurm's own start and end of a finished job, in epoch seconds, read with `scontrol show job`
/// while the controller still keeps it (MinJobAge).
fn slurm_times(job: u32) -> (i64, i64) {
    wait_until(&format!("Slurm's times of finished job {job}"), Duration::from_secs(120), || {
        let out = slurm(&["env", "SLURM_TIME_FORMAT=%s", "scontrol", "show", "job", "-o", &job.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| text.split_whitespace().find_map(|f| f.strip_prefix(key)).map(str::to_string);
        assert!(out.status.success() && !text.trim().is_empty(), "job {job} was purged before it was seen finished");
        if field("JobState=")? != "COMPLETED" {
            return None;
        }
        Some((field("StartTime=")?.parse().ok()?, field("EndTime=")?.parse().ok()?))
    })
}

fn epoch(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not an RFC 3339 time: {rfc3339} ({e})"))
        .timestamp()
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn job_times_are_slurms() {
    require_cluster();
    let id = sbatch(USER, "times", &[], "#!/bin/bash\nsleep 2\n");
    let (start, end) = slurm_times(id);
    let job = ledger_job(id, Duration::from_secs(60));
    let (ledger_start, ledger_end) = (epoch(&job["start"]), epoch(&job["end"]));
    if slurm_release() >= (23, 2) {
        // The epilog has SLURM_JOB_START_TIME and SLURM_JOB_END_TIME: Slurm's own times.
        assert_eq!((ledger_start, ledger_end), (start, end), "{job:#}");
    } else {
        // 22.05: the first step's start and the epilog's clock, both at or after Slurm's.
        assert!(ledger_start >= start && ledger_end >= end, "slurm {start}..{end}, ledger: {job:#}");
    }
    assert!(ledger_end - ledger_start >= 2, "the job slept 2 s: {job:#}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn segfaulting_task_records_signal_11() {
    require_cluster();
    let id = sbatch(USER, "segv", &[], "#!/bin/bash\nsrun -n 1 bash -c 'kill -SEGV $$'\nexit 0\n");
    let job = finished(id);
    let s0 = step(&job, "0").unwrap_or_else(|| panic!("no step 0: {job:#}"));
    let t = &s0["tasks"][0];
    assert_eq!(t["signal"], 11, "{s0:#}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn scancel_gives_cancelled() {
    require_cluster();
    let id = sbatch(USER, "cancel", &[], "#!/bin/bash\nsleep 300\n");
    wait_until("job to run", Duration::from_secs(120), || {
        let out = as_user(USER, &format!("squeue -h -o %T -j {id}"));
        (String::from_utf8_lossy(&out.stdout).trim() == "RUNNING").then_some(())
    });
    // The plugin has recorded the batch step's start: the event the cancel must come after.
    wait_until("the batch step's start in the spool", Duration::from_secs(60), || {
        spooled(id, "batch.start.json").then_some(())
    });
    let out = as_user(USER, &format!("scancel {id}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = finished(id);
    assert_eq!(job["state"], "CANCELLED", "{job:#}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn time_limit_gives_timeout() {
    require_cluster();
    // A work directory of its own: the epilog reads the job's logs there, and no other job's.
    let dir = user_dir(USER, "timeout");
    let id =
        sbatch(USER, "timeout", &["-t", "1", "-D", &dir.to_string_lossy()], "#!/bin/bash\necho working\nsleep 600\n");
    let job = finished(id);
    assert_eq!(job["state"], "TIMEOUT", "{job:#}");
    let out = dir.join(format!("timeout-{id}.out"));
    assert!(std::fs::read_to_string(&out).unwrap_or_default().contains("DUE TO TIME LIMIT"));
    // The epilog's solver-log facts (tests/e2e_logs.rs has the others; a time limit is tested
    // once, here, as each costs a minute): slurmstepd's line in the output names the cause.
    let d = job_detail(id);
    assert_eq!(job_value(&d, "outcome"), "failed", "{:#}", d["facts"]);
    assert_eq!(job_value(&d, "failure_category"), "time_limit");
    assert!(job_value(&d, "error").contains("DUE TO TIME LIMIT"), "{:#}", d["facts"]);
    assert_eq!(job_value(&d, "error_source"), out.to_string_lossy());
    assert!(job_fact(&d, "state_disagreement").is_none(), "{:#}", d["facts"]);
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn job_array_gives_one_job_per_task() {
    require_cluster();
    let id = sbatch(USER, "array", &["--array=1-3"], "#!/bin/bash\necho task $SLURM_ARRAY_TASK_ID\n");
    wait_until("array to finish", Duration::from_secs(300), || (!job_active(id)).then_some(()));
    let rows = wait_until("three array tasks in the ledger", Duration::from_secs(60), || {
        let mine = ended_array_tasks(USER, id);
        (mine.len() >= 3).then_some(mine)
    });
    let mut tasks: Vec<i64> = rows.iter().map(|j| j["array_task_id"].as_i64().unwrap()).collect();
    tasks.sort();
    assert_eq!(tasks, vec![1, 2, 3]);
    for j in &rows {
        assert_eq!(j["state"], "COMPLETED", "{j:#}");
    }
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn tags_are_stored_and_queryable() {
    require_cluster();
    let id = sbatch(USER, "tagged", &["--runledger-tag", "exp=alpha,run=7"], "#!/bin/bash\ntrue\n");
    let job = finished(id);
    assert_eq!(job["tags"]["exp"], "alpha", "{job:#}");
    assert_eq!(job["tags"]["run"], "7");
    let by_tag = query(&["jobs", "--tag", "exp=alpha"]);
    assert!(by_tag.as_array().unwrap().iter().any(|j| j["job_id"] == id));
    let other = query(&["jobs", "--tag", "exp=beta", "-j", &id.to_string()]);
    assert!(other.as_array().unwrap().is_empty());

    // Bad input is refused by sbatch itself, with the reason.
    let out = as_user(USER, "sbatch --runledger-tag 'bad key=x' --wrap true");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runledger-tag"), "{out:?}");
}

/// A small Lennard-Jones melt, as in LAMMPS's examples/melt.
const MELT: &str = "units lj\natom_style atomic\nlattice fcc 0.8442\nregion box block 0 10 0 10 0 10\n\
create_box 1 box\ncreate_atoms 1 box\nmass 1 1.0\nvelocity all create 3.0 87287 loop geom\n\
pair_style lj/cut 2.5\npair_coeff 1 1 1.0 1.0 2.5\nneighbor 0.3 bin\nneigh_modify every 20 delay 0 check no\n\
fix 1 all nve\nthermo 50\nrun 1000\n";

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn real_lammps_run_is_recorded_with_cpu_time() {
    require_cluster();
    // The usual pattern where MPI is launched without srun: the module is loaded inside the
    // script, so only the plugin's look at the script's processes can see it.
    let script = format!(
        "#!/bin/bash -l\nmodule load lammps/20220106\ncat > in.melt <<'IN'\n{MELT}IN\n\
         mpirun -np 2 lmp -in in.melt -log log.lammps\n"
    );
    let id = sbatch(USER, "lammps", &["-n", "2"], &script);
    let job = finished(id);
    assert_eq!(job["state"], "COMPLETED", "{job:#}\n{}", output_of(USER, "lammps", id));
    assert!(output_of(USER, "lammps", id).contains("Loop time"), "LAMMPS did not run");
    assert!(modules_of(&job).contains(&"lammps/20220106".to_string()));
    let cpu = job["cpu_seconds"].as_f64().unwrap();
    assert!(cpu > 0.0, "cpu_seconds {cpu}");
}
