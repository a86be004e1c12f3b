//! The plugin never harms a job: registered as `required`, with its spool missing, read-only or
//! full, or facing an enormous, non-UTF-8 environment, every task still launches and runs.
//!
//! Each scenario points plugstack.conf's `spool=` elsewhere for a moment (srun re-reads it for
//! every step) and puts it back, whatever happens, when the guard drops. Nothing else may use
//! the cluster meanwhile: run it alone (packaging/run-tests does).

use runledger_e2e::*;
use std::process::Command;
use std::time::Duration;

/// Points the spool elsewhere and unmounts the scenario's file systems when dropped.
#[derive(Default)]
struct Scenario {
    spool: Option<SpoolElsewhere>,
    mounts: Vec<String>,
}

impl Scenario {
    fn spool(&mut self, spool: &str) {
        self.spool = None; // plugstack.conf back first: each scenario starts from the real one
        self.spool = Some(SpoolElsewhere::new(spool));
    }

    fn tmpfs(&mut self, dir: &str, opts: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs", dir]).status().unwrap().success();
        assert!(ok, "mount tmpfs on {dir}");
        self.mounts.push(dir.to_string());
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.spool = None;
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&m).status();
        }
    }
}

/// Runs a two-task step as the test user; returns (success, output).
fn srun_as_user(extra: &str, name: &str) -> (bool, String) {
    let out = as_user(USER, &format!("{extra} srun -J {name} -n 2 bash -c 'echo task $SLURM_PROCID ran'"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn assert_both_tasks_ran(what: &str, (ok, text): (bool, String)) {
    assert!(ok, "{what}: srun failed:\n{text}");
    assert!(text.contains("task 0 ran") && text.contains("task 1 ran"), "{what}: tasks did not run:\n{text}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn tasks_launch_whatever_happens_to_the_spool_or_the_environment() {
    require_cluster();
    let mut s = Scenario::default();

    // A spool that cannot exist (a path below a regular file).
    s.spool("/etc/hostname/spool");
    assert_both_tasks_ran("spool missing", srun_as_user("", "rl-robust"));

    // A read-only spool.
    s.tmpfs("/run/rl-e2e-ro-spool", "ro,size=64k,mode=0700");
    s.spool("/run/rl-e2e-ro-spool");
    assert_both_tasks_ran("read-only spool", srun_as_user("", "rl-robust"));

    // A full spool.
    s.tmpfs("/run/rl-e2e-full-spool", "size=64k,mode=0700");
    let _ = Command::new("dd").args(["if=/dev/zero", "of=/run/rl-e2e-full-spool/fill", "bs=4k"]).output();
    s.spool("/run/rl-e2e-full-spool");
    assert_both_tasks_ran("full spool", srun_as_user("", "rl-robust"));
    drop(s);

    // 10,000 variables, 100 KiB values, non-UTF-8 bytes, with the real spool: the step runs
    // and its record arrives with the environment bounded.
    let env = "for i in $(seq 1 10000); do export RLV$i=value$i; done; \
               export RL_BIG=$(head -c 100000 /dev/zero | tr '\\0' x); export RL_BAD=$'\\xff\\xfe\\x80';";
    let name = format!("rl-hugeenv-{}", runledger_record::now());
    assert_both_tasks_ran("huge environment", srun_as_user(env, &name));
    let id: u32 = wait_until("the huge-environment job in the ledger", Duration::from_secs(60), || {
        let jobs = query(&["jobs", "-u", USER]);
        jobs.as_array()?
            .iter()
            .rev()
            .find(|j| j["job_name"] == name.as_str() && j["state"] == "COMPLETED")
            .and_then(|j| j["job_id"].as_u64())
            .map(|i| i as u32)
    });
    let detail = query(&["job", &id.to_string()]);
    let text = detail.to_string();
    assert!(text.contains("RUNLEDGER_ENV_DROPPED"), "no drop counter in the recorded environment");
    assert!(text.contains("SLURM_JOB_ID"), "Slurm's variables were pushed out of the record");
}
