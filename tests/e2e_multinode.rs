//! End to end on several nodes: `packaging/local-cluster up --nodes 3` runs three slurmd (n1, n2,
//! n3) on this machine, each with its own plugin instance, spool and epilog, all reporting to one
//! collector. Jobs span the nodes; the ledger must hold one job with every node's part of it,
//! also when a node dies mid-job or the collector restarts while the nodes send.
//!
//! On a cluster of fewer nodes each test says it is skipped, and why, on stderr (`--nocapture`
//! shows it), and fails instead when RUNLEDGER_E2E_NODES asks for the nodes, as
//! packaging/run-tests does. Every test's name starts with `three_nodes_`, so a single-node run
//! can leave them out (`--skip three_nodes_`).

use runledger_e2e::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Burns CPU for about `secs` seconds (bash arithmetic only).
fn burn(secs: u32) -> String {
    format!("bash -c 'end=$((SECONDS+{secs})); while [ $SECONDS -lt $end ]; do :; done'")
}

/// A node's runledger spool on the multi-node local cluster (`spool=/var/spool/runledger/%n`).
fn spool_of(node: &str) -> PathBuf {
    Path::new("/var/spool/runledger").join(node)
}

/// Names of the nodes a job's step `name` ran on, sorted.
fn nodes_of_step(job: &Value, name: &str) -> BTreeSet<String> {
    steps_named(job, name).iter().map(|s| s["node"].as_str().unwrap().to_string()).collect()
}

/// rank -> (node, exit code) of every task of step `name`.
fn ranks(job: &Value, name: &str) -> BTreeMap<u64, (String, i64)> {
    let mut out = BTreeMap::new();
    for s in steps_named(job, name) {
        for t in s["tasks"].as_array().unwrap() {
            let prev = out.insert(
                t["rank"].as_u64().unwrap(),
                (s["node"].as_str().unwrap().to_string(), t["exit_code"].as_i64().unwrap()),
            );
            assert!(prev.is_none(), "rank recorded twice: {t} in {s:#}");
        }
    }
    out
}

fn set(nodes: &[String]) -> BTreeSet<String> {
    nodes.iter().cloned().collect()
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_one_job_six_ranks() {
    let Some(nodes) = require_nodes("three_nodes_one_job_six_ranks", 3) else { return };
    let nodes = nodes[..3].to_vec();
    let script = format!("#!/bin/bash\nsrun -N 3 -n 6 {}\n", burn(3));
    let id = sbatch(USER, "mn-six", &["-N", "3", "-n", "6", "-w", &nodes.join(",")], &script);
    let job = finished_on(id, &nodes);

    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["nnodes"], 3, "{job:#}");
    let listed: BTreeSet<String> =
        job["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().into()).collect();
    assert_eq!(listed, set(&nodes), "{job:#}");
    assert_eq!(query(&["jobs", "-j", &id.to_string()]).as_array().unwrap().len(), 1, "one job, not one per node");

    // Every node's steps: the batch step on the first node, step 0 on all three.
    assert_eq!(nodes_of_step(&job, "batch"), BTreeSet::from([nodes[0].clone()]), "{job:#}");
    assert_eq!(nodes_of_step(&job, "0"), set(&nodes), "{job:#}");
    for s in steps_named(&job, "0") {
        assert_eq!(s["ntasks"], 6, "{s:#}");
        assert_eq!(s["tasks"].as_array().unwrap().len(), 2, "two tasks per node: {s:#}");
        assert!(s["end"].is_string(), "step ended on {}: {s:#}", s["node"]);
    }
    // Six task exits, ranks 0..5, two on each node, all exit 0.
    let r = ranks(&job, "0");
    assert_eq!(r.keys().copied().collect::<Vec<_>>(), (0..6).collect::<Vec<u64>>(), "{r:?}");
    for n in &nodes {
        assert_eq!(r.values().filter(|(node, _)| node == n).count(), 2, "{r:?}");
    }
    assert!(r.values().all(|(_, code)| *code == 0), "{r:?}");

    // The job's CPU time is the sum over its steps on every node, and each node burnt some.
    let per_step: f64 = job["steps"].as_array().unwrap().iter().filter_map(|s| s["cpu_seconds"].as_f64()).sum();
    let total = job["cpu_seconds"].as_f64().unwrap();
    assert!((total - per_step).abs() < 0.05, "job cpu {total} vs sum over steps and nodes {per_step}");
    for s in steps_named(&job, "0") {
        let cpu = s["cpu_seconds"].as_f64().unwrap_or(0.0);
        assert!(cpu > 0.3, "node {} burnt {cpu} s: {s:#}", s["node"]);
    }
    // Each node's epilog reported the job.
    let reporting: BTreeSet<String> =
        job["node_records"].as_array().unwrap().iter().map(|r| r["node"].as_str().unwrap().into()).collect();
    assert_eq!(reporting, set(&nodes));
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_failing_rank_on_the_third_node() {
    let Some(nodes) = require_nodes("three_nodes_failing_rank_on_the_third_node", 3) else { return };
    let nodes = nodes[..3].to_vec();
    // Block distribution: ranks 4 and 5 run on the third node; rank 5 exits 3.
    let script = "#!/bin/bash\n\
                  srun -N 3 -n 6 bash -c 'sleep 1; [ \"$SLURM_PROCID\" = 5 ] && exit 3; exit 0'\n\
                  exit $?\n";
    let id = sbatch(USER, "mn-fail", &["-N", "3", "-n", "6", "-w", &nodes.join(",")], script);
    let job = finished_on(id, &nodes);
    assert_eq!(job["state"], "FAILED", "{job:#}");
    assert_eq!(job["exit_code"], 3, "{job:#}");

    let r = ranks(&job, "0");
    assert_eq!(r.len(), 6, "{r:?}");
    let failed: Vec<(&u64, &(String, i64))> = r.iter().filter(|(_, (_, code))| *code != 0).collect();
    assert_eq!(failed, vec![(&5, &(nodes[2].clone(), 3))], "only rank 5, on {}, failed: {r:?}", nodes[2]);

    // The text of `query job` names the node and the rank, as an admin reads it.
    let out = Command::new(COLLECTOR).args(["query", "job", &id.to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let third = text.split(&format!("{id}.0 on {}:", nodes[2])).nth(1).unwrap_or_else(|| panic!("{text}"));
    let third = third.split(&format!("{id}.")).next().unwrap();
    assert!(third.contains("(rank 5): exit 3:0"), "step 0 on {} should show rank 5 exiting 3:\n{text}", nodes[2]);
}

/// Brings a stopped node back when dropped, whatever happened in the test.
struct NodeBack(String);

impl Drop for NodeBack {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("packaging/local-cluster")).args(["start-node", &self.0]).output();
    }
}

/// `collector audit --json` over the last hour.
fn audit() -> Value {
    let out =
        Command::new(COLLECTOR).args(["audit", "--since", "now-1hour", "--grace", "1s", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit: not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

fn lists(audit: &Value, kind: &str, job: u32, node: &str) -> bool {
    audit[kind].as_array().unwrap().iter().any(|f| f["job_id"] == job && f["node"] == node)
}

/// `runledger-epilog --flush` as the node `node` runs it, with `[epilog] orphan_grace_s = 1`.
fn flush_node(node: &str, conf: &Path) -> String {
    let out = Command::new("runledger-epilog")
        .args(["--flush", "--stderr"])
        .env("PATH", format!("/usr/local/sbin:/usr/sbin:{}", std::env::var("PATH").unwrap_or_default()))
        .env("SLURMD_NODENAME", node)
        .env("RUNLEDGER_CONF", conf)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "runledger-epilog --flush on {node} failed: {log}");
    log
}

/// The cluster's runledger.toml with a one-second orphan grace, in a file of the test's own.
fn short_grace_config() -> PathBuf {
    let text = std::fs::read_to_string("/etc/runledger/runledger.toml").unwrap();
    assert!(text.contains("[epilog]\n"), "{text}");
    let path = std::env::temp_dir().join(format!("rl-e2e-multinode-{}.toml", std::process::id()));
    std::fs::write(&path, text.replacen("[epilog]\n", "[epilog]\norphan_grace_s = 1\n", 1)).unwrap();
    path
}

/// Slurm's JobState of a job while it still knows it.
fn slurm_state(job: u32) -> Option<String> {
    let out = in_cluster(None, &["scontrol", "show", "job", "-o", &job.to_string()]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).map(str::to_string)
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_node_dies_mid_job_audited_then_flushed() {
    let Some(nodes) = require_nodes("three_nodes_node_dies_mid_job_audited_then_flushed", 3) else { return };
    let nodes = nodes[..3].to_vec();
    let dead = nodes[2].clone();
    let script = "#!/bin/bash\nsrun -N 3 -n 3 sleep 600\n";
    let id = sbatch(USER, "mn-nodefail", &["-N", "3", "-n", "3", "--no-requeue", "-w", &nodes.join(",")], script);
    let spooled = spool_of(&dead).join("jobs").join(id.to_string()).join("0.start.json");
    wait_until(&format!("step {id}.0 spooled on {dead}"), Duration::from_secs(120), || spooled.exists().then_some(()));

    let back = NodeBack(dead.clone());
    local_cluster_args(&["stop-node", &dead]);

    // Slurm notices the dead node and ends the job; its state is Slurm's to decide.
    let mut seen = None;
    wait_until(&format!("job {id} to end"), Duration::from_secs(300), || {
        if let Some(s) = slurm_state(id) {
            seen = Some(s);
        }
        (!job_active(id)).then_some(())
    });
    let live = &nodes[..2];
    let job = finished_on(id, live);
    if let Some(state) = seen.filter(|s| !matches!(s.as_str(), "RUNNING" | "PENDING" | "COMPLETING")) {
        assert_eq!(job["state"], state.as_str(), "the ledger's state is Slurm's: {job:#}");
    }
    assert!(
        ["NODE_FAIL", "FAILED", "CANCELLED"].contains(&job["state"].as_str().unwrap()),
        "a job that lost a node did not complete: {job:#}"
    );
    assert!(!nodes_of_step(&job, "0").contains(&dead), "{dead} sent nothing yet: {job:#}");

    // Before the node is back the audit names the job and the node.
    let a = wait_until("the audit to name the dead node", Duration::from_secs(30), || {
        let a = audit();
        lists(&a, "node_missing", id, &dead).then_some(a)
    });
    assert_eq!(a["by_kind"]["node_missing"].as_u64().map(|n| n >= 1), Some(true), "{a:#}");

    // The node is back: at boot its flush timer sends what the plugin spooled there (before
    // slurmd, which may then run the job's epilog there too).
    let conf = short_grace_config();
    let log = flush_node(&dead, &conf);
    assert!(log.contains(&format!("job {id}: no epilog ran for it on this node")), "{log}");
    let job = wait_until("the dead node's records in the ledger", Duration::from_secs(30), || {
        let d = job_detail(id);
        nodes_of_step(&d, "0").contains(&dead).then_some(d)
    });
    assert_eq!(nodes_of_step(&job, "0"), set(&nodes), "{job:#}");
    let a = audit();
    assert!(!lists(&a, "node_missing", id, &dead), "the audit still misses {dead}: {a:#}");

    // slurmd back too. Whatever Slurm then has the node do for the job, each record is in the
    // ledger once, and a second flush sends nothing more.
    drop(back);
    wait_until(&format!("{dead} back in Slurm"), Duration::from_secs(60), || {
        let out = in_cluster(None, &["sinfo", "-h", "-n", &dead, "-o", "%T"]).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        matches!(s.as_str(), "idle" | "mixed" | "allocated").then_some(())
    });
    let log = flush_node(&dead, &conf);
    assert!(!log.contains(&format!("job {id}: no epilog ran")), "sent twice: {log}");
    let again = job_detail(id);
    assert_eq!(steps_named(&again, "0").len(), 3, "one step 0 per node: {again:#}");
    assert_eq!(again["steps"].as_array().unwrap().len(), job["steps"].as_array().unwrap().len(), "{again:#}");
    assert_eq!(again["state"], job["state"]);
    assert_eq!(query(&["jobs", "-j", &id.to_string()]).as_array().unwrap().len(), 1);
    let _ = std::fs::remove_file(conf);
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_array_tasks_on_different_nodes() {
    let Some(_) = require_nodes("three_nodes_array_tasks_on_different_nodes", 3) else { return };
    // --exclusive: one task per node, so three tasks running at once take three nodes.
    let id = sbatch(USER, "mn-array", &["--array=1-3", "-N", "1", "--exclusive"], "#!/bin/bash\nsleep 3\n");
    wait_until("the array to finish", Duration::from_secs(300), || (!job_active(id)).then_some(()));
    let rows = wait_until("three array tasks in the ledger", Duration::from_secs(90), || {
        let mine = ended_array_tasks(USER, id);
        (mine.len() == 3).then_some(mine)
    });
    let tasks: BTreeSet<u64> = rows.iter().map(|j| j["array_task_id"].as_u64().unwrap()).collect();
    assert_eq!(tasks, BTreeSet::from([1, 2, 3]));
    let mut on = BTreeSet::new();
    for j in &rows {
        assert_eq!(j["state"], "COMPLETED", "{j:#}");
        assert_eq!(j["nnodes"], 1, "{j:#}");
        let nodes = j["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1, "{j:#}");
        on.insert(nodes[0].as_str().unwrap().to_string());
        assert_eq!(nodes_of_step(j, "batch").into_iter().collect::<Vec<_>>(), vec![nodes[0].as_str().unwrap()]);
    }
    assert!(on.len() >= 2, "the array's tasks all ran on {on:?}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_concurrent_steps_on_disjoint_nodes() {
    let Some(nodes) = require_nodes("three_nodes_concurrent_steps_on_disjoint_nodes", 3) else { return };
    let nodes = nodes[..3].to_vec();
    // Two steps at once: one on the first node, one on the other two (-r: relative node index).
    let script = "#!/bin/bash\n\
                  srun -N 1 -n 1 -r 0 --exact sleep 4 &\n\
                  srun -N 2 -n 2 -r 1 --exact sleep 4 &\n\
                  wait\n";
    let id = sbatch(USER, "mn-steps", &["-N", "3", "-n", "3", "-w", &nodes.join(",")], script);
    let job = finished_on(id, &nodes);
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    let (a, b) = (nodes_of_step(&job, "0"), nodes_of_step(&job, "1"));
    assert!(a.is_disjoint(&b), "steps 0 on {a:?} and 1 on {b:?} share nodes");
    assert_eq!(a.union(&b).cloned().collect::<BTreeSet<_>>(), set(&nodes), "{job:#}");
    assert_eq!([a.len(), b.len()].into_iter().collect::<BTreeSet<_>>(), BTreeSet::from([1, 2]));
    // They ran at the same time: each started before the other ended.
    let span = |name: &str| -> (String, String) {
        let s = steps_named(&job, name);
        let start = s.iter().map(|s| s["start"].as_str().unwrap().to_string()).min().unwrap();
        let end = s.iter().map(|s| s["end"].as_str().unwrap().to_string()).max().unwrap();
        (start, end)
    };
    let (s0, s1) = (span("0"), span("1"));
    assert!(s0.0 < s1.1 && s1.0 < s0.1, "steps did not overlap: 0 {s0:?}, 1 {s1:?}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_collector_restart_while_sending() {
    let Some(nodes) = require_nodes("three_nodes_collector_restart_while_sending", 3) else { return };
    let nodes = nodes[..3].to_vec();
    // Four jobs on all three nodes end together: twelve epilogs send at once.
    let script = "#!/bin/bash\nsrun -N 3 -n 3 true\n";
    let ids: Vec<u32> = (0..4)
        .map(|i| sbatch(USER, &format!("mn-restart{i}"), &["-N", "3", "-n", "3", "-w", &nodes.join(",")], script))
        .collect();
    // As soon as the first end arrives, the collector restarts while the rest are being sent.
    wait_until("a first job end in the ledger", Duration::from_secs(300), || {
        ids.iter()
            .any(|id| query(&["jobs", "-j", &id.to_string()]).as_array().is_some_and(|r| !r.is_empty()))
            .then_some(())
    });
    local_cluster("restart-collector");
    for id in &ids {
        wait_until(&format!("job {id} to finish"), Duration::from_secs(300), || (!job_active(*id)).then_some(()));
    }
    // Whatever the restart left in an outbox, each node's flush sends now.
    let conf = short_grace_config();
    for n in &nodes {
        flush_node(n, &conf);
        let left = std::fs::read_dir(spool_of(n).join("outbox")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{n}'s outbox not empty after its flush");
    }
    for id in &ids {
        let job = finished_on(*id, &nodes);
        assert_eq!(job["state"], "COMPLETED", "{job:#}");
        assert_eq!(nodes_of_step(&job, "0"), set(&nodes), "{job:#}");
        assert_eq!(steps_named(&job, "0").len(), 3, "step 0 once per node: {job:#}");
        assert_eq!(steps_named(&job, "batch").len(), 1, "{job:#}");
        assert_eq!(job["node_records"].as_array().unwrap().len(), 3, "one end per node: {job:#}");
        assert_eq!(ranks(&job, "0").len(), 3, "{job:#}");
        assert_eq!(query(&["jobs", "-j", &id.to_string()]).as_array().unwrap().len(), 1);
    }
    let _ = std::fs::remove_file(conf);
}

/// What a job did over time (#16, tests/e2e_timeline.rs) on three nodes: sampled every 5 s, a
/// 3-node job has one series per node for its step 0, each busy on its own node.
#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up --nodes 3"]
fn three_nodes_one_sample_series_per_node() {
    let Some(nodes) = require_nodes("three_nodes_one_sample_series_per_node", 3) else { return };
    let _every = SampleEvery::new(5);
    let script = "#!/bin/bash\n\
        srun -N 3 -n 3 bash -c 'end=$((SECONDS + 20)); while [ $SECONDS -lt $end ]; do :; done'\n\
        echo done\n";
    let job = sbatch(USER, "rl-timeline3", &["-N", "3", "-n", "3"], script);
    let d = finished_on(job, &nodes[..3]);
    let tl = d["timeline"].as_array().unwrap_or_else(|| panic!("no timeline: {d}"));
    let mut step0: Vec<&str> = tl.iter().filter(|s| s["step"] == "0").filter_map(|s| s["node"].as_str()).collect();
    step0.sort_unstable();
    let mut want: Vec<&str> = nodes[..3].iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(step0, want, "{tl:?}");
    for s in tl.iter().filter(|s| s["step"] == "0") {
        let cores: Vec<f64> =
            s["points"].as_array().unwrap().iter().map(|p| p["cpu_cores"].as_f64().unwrap()).collect();
        assert!(cores.len() >= 3 && cores.iter().cloned().fold(0.0, f64::max) >= 0.5, "{s}");
    }
}
