//! Loss detection on the real local cluster: a canary submitted by packaging/canary arrives and
//! the audit counts it; a canary that was logged but never ran is reported missing, and the audit
//! then exits 1.

use runledger_e2e::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn audit(canaries: &std::path::Path) -> (i32, Value) {
    let out = Command::new(COLLECTOR)
        .args(["audit", "--grace", "1s", "--json", "--canaries"])
        .arg(canaries)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit: not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn canaries_are_submitted_and_audited() {
    require_cluster();
    let dir = std::env::temp_dir().join(format!("rl-e2e-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("canaries.tsv");
    // This checkout's canary, read from stdin by a shell in the cluster's environment (where its
    // sbatch and scontrol are those of the running Slurm release).
    let script = std::fs::File::open(repo_root().join("packaging/canary")).unwrap();
    let out = in_cluster(None, &["bash", "-s", "--", "-u", USER, "-l", &log.to_string_lossy()])
        .stdin(script)
        .output()
        .unwrap();
    assert!(out.status.success(), "canary: {}", String::from_utf8_lossy(&out.stderr));
    let line = std::fs::read_to_string(&log).unwrap();
    let fields: Vec<&str> = line.trim().split('\t').collect();
    assert_eq!(fields.len(), 3, "{line:?}");
    let job: u32 = fields[2].parse().unwrap();
    let rec = finished(job);
    assert_eq!(rec["job_name"], "rl-canary");
    assert!(rec["tags"].to_string().contains("canary"), "the canary carries its tag: {rec:#}");

    // The audit judges the canary once it is older than --grace: wait for that, not a guess.
    let v = wait_until("the audit to judge the canary", Duration::from_secs(60), || {
        let (_, v) = audit(&log);
        (v["canaries_checked"] == 1).then_some(v)
    });
    assert_eq!(v["canaries_missing"].as_array().unwrap().len(), 0, "{v:#}");

    // A canary that never reached the ledger (logged, never recorded).
    let when = runledger_record::now() - 60;
    std::fs::write(&log, format!("{line}{when}\t{}\t{}\n", fields[1], 999_999_999)).unwrap();
    let (code, v) = audit(&log);
    assert_eq!(code, 1, "a finding makes the audit exit 1: {v:#}");
    assert_eq!(v["canaries_checked"], 2);
    let missing = v["canaries_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{v:#}");
    assert_eq!(missing[0]["job_id"], 999_999_999);
    assert_eq!(v["by_kind"]["canary"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}
