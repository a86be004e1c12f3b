//! Delivery and authentication on the real local cluster: a collector outage loses nothing and
//! duplicates nothing; records that are not MUNGE-signed by root or SlurmUser are refused.
//! Both tests touch the running collector, so they take turns.

use runledger_e2e::*;
use runledger_record::{config::Config, wire, Batch, Item, JobEnd, JobState};
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

static COLLECTOR_IN_USE: Mutex<()> = Mutex::new(());

fn outbox_len() -> usize {
    std::fs::read_dir("/var/spool/runledger/outbox").map(|d| d.flatten().count()).unwrap_or(0)
}

/// The node side's flush: the installed epilog, run by hand as root.
const EPILOG: &str = "/usr/sbin/runledger-epilog";

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn collector_outage_loses_and_duplicates_nothing() {
    let _turn = COLLECTOR_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    local_cluster("stop-collector");
    let before = outbox_len();
    let a = sbatch(USER, "outage-a", &[], "#!/bin/bash\necho while the collector is down\n");
    wait_until("job A to finish", Duration::from_secs(120), || (!job_active(a)).then_some(()));
    // The epilog ran, could not deliver, and kept the batch in the node's outbox.
    wait_until("A's batch in the outbox", Duration::from_secs(30), || (outbox_len() > before).then_some(()));
    assert!(query(&["jobs", "-j", &a.to_string()]).as_array().unwrap().is_empty());

    local_cluster("start-collector");
    // The next job's epilog retries the older batch first.
    let b = sbatch(USER, "outage-b", &[], "#!/bin/bash\necho collector is back\n");
    let job_b = finished(b);
    assert_eq!(job_b["state"], "COMPLETED");
    let job_a = ledger_job(a, Duration::from_secs(60));
    assert_eq!(job_a["state"], "COMPLETED");

    let rows = query(&["jobs", "-j", &a.to_string()]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "job A duplicated: {rows:#}");
    let batch_steps = job_a["steps"].as_array().unwrap().iter().filter(|s| s["step"] == "batch").count();
    assert_eq!(batch_steps, 1, "{job_a:#}");
    assert_eq!(outbox_len(), before, "outbox not drained");
}

/// Sends one request to the running collector and returns its reply.
fn send(credential: &str, body: &[u8]) -> wire::Reply {
    let cfg = Config::load(&Config::default_path()).expect("the local cluster's runledger.toml");
    let mut s = TcpStream::connect(&cfg.collector.address).expect("collector reachable");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    wire::write_request(&mut s, credential, body).unwrap();
    s.flush().unwrap();
    let reply = wire::read_frame(&mut s, 1 << 20).expect("a reply frame");
    serde_json::from_slice(&reply).expect("a JSON reply")
}

fn munge_as(user: &str, payload: &str) -> String {
    let out = Command::new("runuser").args(["-u", user, "--", "munge", "-s", payload]).output().unwrap();
    assert!(out.status.success(), "munge as {user}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn unsigned_and_user_signed_records_are_rejected() {
    let _turn = COLLECTOR_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let forged_id = 3_999_999_001u32;
    let end = JobEnd {
        cluster: "localcluster".into(),
        job_id: forged_id,
        node: "forged".into(),
        user: USER.into(),
        state: JobState::Completed,
        end: runledger_record::now(),
        ..Default::default()
    };
    let body = Batch::new("forged", vec![Item::JobEnd(end)]).to_json();
    let digest = wire::digest(&body);

    let garbage = send("MUNGE:AwQFAAAgarbage:", &body);
    assert!(!garbage.ok, "garbage credential accepted");
    let empty = send("", &body);
    assert!(!empty.ok, "missing credential accepted");
    let by_user = send(&munge_as(USER, &digest), &body);
    assert!(!by_user.ok, "a record signed by {USER} was accepted");
    assert!(by_user.error.unwrap_or_default().to_lowercase().contains("uid"), "reason should name the uid");
    // Root's credential over a different body: the digest binds the content.
    let tampered = send(&munge_as("root", &wire::digest(b"something else")), &body);
    assert!(!tampered.ok, "a body that does not match its credential was accepted");

    assert!(query(&["jobs", "-j", &forged_id.to_string()]).as_array().unwrap().is_empty());
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn hundred_jobs_during_an_outage_all_arrive_once() {
    let _turn = COLLECTOR_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    local_cluster("stop-collector");
    let before = outbox_len();
    let array = sbatch(USER, "outage-100", &["--array=0-99"], "#!/bin/bash\ntrue\n");
    wait_until("100 array jobs to finish", Duration::from_secs(600), || (!job_active(array)).then_some(()));
    wait_until("100 batches in the outbox", Duration::from_secs(60), || (outbox_len() >= before + 100).then_some(()));

    local_cluster("start-collector");
    let restarted = std::time::Instant::now();
    // The next epilog on the node drains the outbox, oldest first.
    let trigger = sbatch(USER, "outage-trigger", &[], "#!/bin/bash\ntrue\n");
    finished(trigger);
    let rows = wait_until("all 100 jobs in the ledger", Duration::from_secs(60), || {
        let rows = query(&["jobs", "-u", USER, "-s", "CD"]);
        let mine: Vec<_> = rows.as_array()?.iter().filter(|j| j["array_job_id"] == array).cloned().collect();
        (mine.len() >= 100).then_some(mine)
    });
    eprintln!("100 queued jobs in the ledger {:?} after the collector restarted", restarted.elapsed());
    let mut tasks: Vec<i64> = rows.iter().map(|j| j["array_task_id"].as_i64().unwrap()).collect();
    tasks.sort_unstable();
    assert_eq!(tasks, (0..100).collect::<Vec<i64>>(), "each array task exactly once");
    assert_eq!(outbox_len(), before, "outbox not drained");
}

/// A job whose epilog never ran on a node still reaches the ledger whole: the step records the
/// plugin spooled for it are sent by a later run once they are an hour old and no slurmstepd of
/// the job is left. Here the plugin spools into a second spool that the job's own epilog does
/// not read (so the ledger first has the job's end only), the files are aged two hours, and
/// `runledger-epilog --flush --spool` on that spool sends them.
#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn records_of_a_job_whose_epilog_never_ran_are_sent_later() {
    let _turn = COLLECTOR_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let spool = "/var/spool/runledger-e2e-orphans";
    let _ = std::fs::remove_dir_all(spool);
    std::fs::create_dir_all(spool).unwrap();
    let job = {
        let _elsewhere = SpoolElsewhere::new(spool);
        let job = sbatch(USER, "orphan", &[], "#!/bin/bash\nsrun -n 1 hostname\n");
        wait_until("the job to finish", Duration::from_secs(120), || (!job_active(job)).then_some(()));
        job
    };
    let before = ledger_job(job, Duration::from_secs(60));
    let detail = query(&["job", &job.to_string()]);
    assert!(step(&detail[0], "batch").is_none(), "its epilog saw steps it should not have: {detail}");
    let dir = format!("{spool}/jobs/{job}");
    assert!(std::path::Path::new(&format!("{dir}/batch.start.json")).exists(), "the plugin spooled nothing in {dir}");

    let aged = Command::new("sh").args(["-c", &format!("touch -d '2 hours ago' {dir}/* {dir}")]).status().unwrap();
    assert!(aged.success());
    let out = Command::new(EPILOG).args(["--flush", "--stderr", "--spool", spool]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "runledger-epilog --flush failed: {log}");
    assert!(log.contains(&format!("job {job}: no epilog ran for it on this node")), "{log}");

    let detail = wait_until("the job's steps in the ledger", Duration::from_secs(30), || {
        let d = query(&["job", &job.to_string()]);
        (step(&d[0], "batch").is_some() && step(&d[0], "0").is_some()).then_some(d)
    });
    assert_eq!(detail[0]["state"], before["state"], "the job's end, from its epilog, is kept");
    assert!(std::path::Path::new(&format!("{dir}/orphan-sent")).exists(), "not marked sent");
    // Sent once: a second flush sends nothing more.
    let out = Command::new(EPILOG).args(["--flush", "--stderr", "--spool", spool]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no epilog ran"), "sent twice");
    let _ = std::fs::remove_dir_all(spool);
}

/// One job's records can never hold up a node: a job of 100 steps, each with some 200 KiB of
/// environment (about 21 MB of records, over the collector's 16 MiB message limit), and then a
/// small job on the same node. Each reaches the ledger whole through its own epilog run: the
/// large job before the small one is even submitted, the small one right after it ends.
#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn a_huge_job_arrives_whole_and_never_blocks_the_next() {
    let _turn = COLLECTOR_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let before = outbox_len();
    // 52 variables of 4,000 bytes (the plugin keeps values up to 4 KiB) in every step.
    let script = "#!/bin/bash\n\
        v=$(head -c 4000 /dev/zero | tr '\\0' x)\n\
        for i in $(seq 1 52); do export RL_BIG_$i=$v; done\n\
        for s in $(seq 1 100); do srun -n 1 -N 1 true || exit 1; done\n";
    let big = sbatch(USER, "huge-env", &["-N", "1"], script);
    wait_until("the large job to finish", Duration::from_secs(600), || (!job_active(big)).then_some(()));
    // Its own epilog delivered it: nothing else runs an epilog on the node before the next job.
    let job = ledger_job(big, Duration::from_secs(60));
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    let detail = query(&["job", &big.to_string()]);
    let detail = if detail.is_array() { detail[0].clone() } else { detail };
    let steps = detail["steps"].as_array().expect("steps");
    let numbered = steps.iter().filter(|s| s["step"].as_str().is_some_and(|n| n.parse::<u32>().is_ok())).count();
    assert_eq!(numbered, 100, "steps 0..99 all recorded");
    // The srun steps inherit the variables (the batch step started before the script set them).
    for name in ["0", "50", "99"] {
        let s = step(&detail, name).unwrap_or_else(|| panic!("step {name} missing"));
        let hash = s["env_hash"].as_str().unwrap_or_else(|| panic!("step {name} has no environment: {s}"));
        let env = &detail["environments"][hash];
        assert!(
            env["RL_BIG_1"].as_str().is_some_and(|v| v.len() == 4000) && env["RL_BIG_52"].is_string(),
            "step {name}'s environment is not whole"
        );
    }

    let small = sbatch(USER, "after-huge", &[], "#!/bin/bash\necho small\n");
    let small_job = finished(small);
    assert_eq!(small_job["state"], "COMPLETED");
    assert_eq!(outbox_len(), before, "batches left in the outbox");
}

/// A user on the node holds hundreds of connections to the collector, reopening them as the
/// collector closes them (it shares the node's address with the epilog), while 20 of their jobs
/// end: every job's records arrive with its own epilog run, and none waits in the outbox.
#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn idle_connections_of_a_user_do_not_keep_jobs_out() {
    let _turn = COLLECTOR_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let addr = Config::load(std::path::Path::new("/etc/runledger/runledger.toml")).unwrap().collector.address;
    let (host, port) = addr.rsplit_once(':').unwrap();
    // bash's /dev/tcp: no helper to install. It prints its pid, then "ready" after each round of
    // 500 connections; each round is held half a second, then closed and opened again.
    let script = format!(
        "shopt -s execfail; echo $$; while :; do fds=(); for i in $(seq 500); do \
         exec {{fd}}<>/dev/tcp/{host}/{port} 2>/dev/null && fds+=($fd); done; echo ready ${{#fds[@]}}; \
         sleep 0.5; for fd in \"${{fds[@]}}\"; do exec {{fd}}>&-; done; done"
    );
    let mut hog = Command::new("runuser")
        .args(["-u", USER, "--", "bash", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(hog.stdout.take().unwrap()));
    let pid: i32 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let ready = lines.next().unwrap().unwrap();
    eprintln!("the user's process holds connections: {ready}");
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).filter(|l| l.starts_with("ready")).count());

    let jobs: Vec<u32> =
        (0..20).map(|i| sbatch(USER, &format!("idle-{i}"), &[], "#!/bin/bash\necho under siege\n")).collect();
    for id in &jobs {
        wait_until(&format!("job {id} to finish"), Duration::from_secs(300), || (!job_active(*id)).then_some(()));
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = hog.wait();
    let rounds = reader.join().unwrap();
    eprintln!("the user's process opened 500 connections {rounds} times while the jobs ran and ended");
    for id in &jobs {
        let job = ledger_job(*id, Duration::from_secs(60));
        assert_ne!(job["state"], "UNKNOWN", "job {id}: its epilog's end did not arrive: {job:#}");
    }
    assert_eq!(outbox_len(), 0, "batches left waiting in the outbox");
}
