//! `runledger-seff` and `collector query job --efficiency` on a real ledger file, and through a
//! real `collector serve`'s socket as an unprivileged user (their own job only).

mod common;

use common::{Limits, Server, BIN};
use runledger_record::{Batch, Item, LimitSource, TimeLimit};
use runledger_synth::Sample;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SEFF: &str = env!("CARGO_BIN_EXE_runledger-seff");
const T0: i64 = 1_700_000_000;

/// One node's batch of a sample job that asked for `mem_mb` and `limit_s`.
fn asked(s: &Sample, mem_mb: u64, limit_s: u64) -> Batch {
    let mut b = s.batch(0);
    for item in &mut b.items {
        if let Item::JobEnd(j) = item {
            j.alloc_mem_mb = Some(mem_mb);
            j.time_limit = Some(TimeLimit { seconds: Some(limit_s), source: LimitSource::Scontrol });
        }
    }
    b
}

fn store(db: &Path, batches: &[Batch]) {
    let conn = runledger_ledger::db::open_rw(db).unwrap();
    let refs: Vec<_> = batches.iter().collect();
    for r in runledger_ledger::merge::apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn seff_reads_a_ledger_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    // Two hours on one node with 4 CPUs and about 100 CPU seconds, asked for 64 GiB and 2 days;
    // the sample's peak is 976.56 MiB.
    let mut s = Sample::new("tc", 77, T0);
    s.duration = 7200;
    store(&db, &[asked(&s, 65536, 2 * 86_400)]);

    let (code, out, err) = run(Command::new(SEFF).arg("77").arg("--database").arg(&db));
    assert_eq!(code, 0, "{err}");
    for line in [
        "Job ID: 77\n",
        "Cluster: tc\n",
        "State: COMPLETED (exit code 0)\n",
        "Nodes: 1\n",
        "Memory Efficiency: 1.49% of 64.00 GB\n",
        "Time Limit: 2-00:00:00 (from scontrol)\n",
        "Time Efficiency: 4.17% of 2-00:00:00 time limit\n",
        "Failure: none\n",
        "Suggestion: asked 64.00 GB per node, peak 976.56 MB: --mem=2G\n",
        "Suggestion: used 02:00:00 of its 2-00:00:00 limit: --time=03:15:00 (shorter jobs start sooner)\n",
        "Suggestion: used 0.0 of its 4 CPUs on average: ask for 1 (e.g. --cpus-per-task=1 or --ntasks=1)",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(out.starts_with("Job ID: 77\nCluster: tc\nUser/Group: alice/"), "{out}");

    // The same report from collector, and its JSON.
    let (code, same, _) =
        run(Command::new(BIN).args(["query", "--database"]).arg(&db).args(["job", "77", "--efficiency"]));
    assert_eq!((code, same.as_str()), (0, out.as_str()));
    let (code, json, err) = run(Command::new(SEFF).args(["77", "--json", "--database"]).arg(&db));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["memory"][0]["alloc_mib"], 65536, "{v}");
    assert_eq!(v[0]["time_limit"]["seconds"], 2 * 86_400);
    assert!(v[0]["failure"].is_null());

    // A job not recorded, and a bad id.
    let (code, _, err) = run(Command::new(SEFF).args(["78", "--database"]).arg(&db));
    assert_eq!((code, err.trim()), (1, "runledger-seff: error: no job 78 is recorded"));
    let (code, _, err) = run(Command::new(SEFF).args(["7x", "--database"]).arg(&db));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("'7x'"), "{err}");
}

#[test]
fn through_the_socket_a_user_sees_only_their_own_job() {
    if runledger_record::users::euid() != 0 {
        eprintln!("NOTE: not root: the socket test needs runuser; skipped");
        return;
    }
    let nobody = runledger_record::users::user_by_name("nobody").expect("the user nobody");
    let server = Server::start_with(&Limits::default());
    server.wait_log("'answering queries on'", |l| l.contains("answering queries on"));
    let mut mine = Sample::new("tc", 11, T0);
    mine.user = "nobody".into();
    mine.uid = nobody.uid;
    let theirs = Sample::new("tc", 12, T0); // alice, uid 1000
    store(&server.database, &[asked(&mine, 2048, 3600), asked(&theirs, 2048, 3600)]);
    // The ledger stays the collector's; the user may read the config and reach the socket.
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&server.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&server.database, std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_nobody = |id: &str| {
        run(Command::new("runuser").args(["-u", "nobody", "--", SEFF, "--config"]).arg(&server.config).arg(id))
    };
    let (code, out, err) = as_nobody("11");
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    assert!(out.contains("Job ID: 11\n") && out.contains("User/Group: nobody/"), "{out}");
    assert!(out.contains("Memory Efficiency: ") && out.contains("of 2.00 GB\n"), "{out}");
    let (code, out, err) = as_nobody("12");
    assert_eq!(code, 1, "{out}");
    assert_eq!(err.trim(), "runledger-seff: error: no job 12 is recorded", "another user's job is not recorded");
    // [collector] slurm_user (slurmctld's, which runs runledger-mail) sees every job.
    if runledger_record::users::user_by_name("slurm").is_some() {
        let out =
            run(Command::new("runuser").args(["-u", "slurm", "--", SEFF, "--config"]).arg(&server.config).arg("12"));
        assert_eq!(out.0, 0, "slurm: {}", out.2);
        assert!(out.1.contains("Job ID: 12\n") && out.1.contains("User/Group: alice/"), "{}", out.1);
    } else {
        eprintln!("NOTE: no user slurm here: the slurm_user view is not checked");
    }
}
