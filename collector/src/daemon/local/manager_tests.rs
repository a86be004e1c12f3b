//! What an account manager learns through the socket: every ledger command, run as the manager of
//! `chem`, says what an admin's `-A chem` says, except other users' environment values and argv;
//! nothing of `phys`.

use super::*;
use crate::questions::scope::HIDDEN;
use runledger_ledger::merge::apply_group;
use runledger_record::access::AccessConfig;
use runledger_record::{ExitStatus, JobState};
use runledger_synth::Sample;

const T0: i64 = 1_700_000_000;
const MGR_UID: u32 = 3000;

/// alice (jobs 1, 2) and carol (3) in chem, bob (4, 5) in phys, and the manager's own job 6 in
/// chem-extra (a second managed account, through the glob `chem*`).
fn ledger() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let conn = runledger_ledger::db::open_rw(&path).unwrap();
    let mut jobs = Vec::new();
    for (id, user, uid, account) in [
        (1, "alice", 2001, "chem"),
        (2, "alice", 2001, "chem"),
        (3, "carol", 2003, "chem"),
        (4, "bob", 2002, "phys"),
        (5, "bob", 2002, "phys"),
        (6, "mgr", MGR_UID, "chem-extra"),
    ] {
        let mut s = Sample::new("tc", id, T0 + i64::from(id) * 3600);
        s.user = user.into();
        s.uid = uid;
        s.account = account.into();
        if id % 2 == 0 {
            s.state = JobState::Failed;
            s.exit = ExitStatus { code: 1, signal: 0, core_dumped: false };
            s.set_log("LAMMPS", "failed", Some("input_error"), Some("ERROR: bad input"), &[]);
        } else {
            s.set_log("LAMMPS", "success", None, None, &[("mpi_ranks", "4")]);
        }
        jobs.push(s);
    }
    let batches: Vec<_> = jobs.iter().map(|s| s.batch(0)).collect();
    let refs: Vec<_> = batches.iter().collect();
    for r in apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
    drop(conn);
    (dir, path)
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn manager() -> Scope {
    Scope::Own(Owner { uid: MGR_UID, name: "mgr".into(), clusters: Vec::new(), manages: vec!["chem*".into()] })
}

fn text(a: &Answer) -> String {
    String::from_utf8(a.stdout.clone()).unwrap()
}

/// Every ledger command whose answer carries no argv or environment value.
const COMMANDS: &[&str] = &[
    "query jobs",
    "query jobs --csv -o JobID,User,Account,State,Evidence",
    "query jobs -s FAILED",
    "query errors --json",
    "query errors --by user",
    "query efficiency --json",
    "query summary --by user --json",
    "query summary --by account,state",
    "query modules --json",
    "query modules --by-users",
    "query who-used openmpi --json",
    "query co-usage --min-jobs 1 --json",
    "query events --json",
    "query throughput --interval 1d --json",
    "query utilization --interval 1h --json",
    "export --format jsonl",
    "export --format csv",
];

#[test]
fn a_manager_sees_their_accounts_as_an_admin_does() {
    let (_dir, db) = ledger();
    for cmd in COMMANDS {
        let mine = answer(&args(cmd), &db, &manager());
        assert_eq!(mine.code, 0, "{cmd}: {}", mine.stderr);
        let out = text(&mine);
        assert!(!out.contains("bob") && !out.contains("phys"), "{cmd}: phys leaked:\n{out}");
        let admin = answer(&args(&format!("{cmd} -A chem,chem-extra")), &db, &Scope::All);
        assert_eq!(admin.code, 0, "{cmd}: {}", admin.stderr);
        assert_eq!(out, text(&admin), "{cmd}: the manager's view vs the admin's -A chem,chem-extra");
        // Grouped as for an admin: carol's jobs are not folded into the manager's.
        if cmd.contains("--by user") {
            assert!(out.contains("alice") && out.contains("carol"), "{cmd}: {out}");
        }
    }
    // Naming an account they manage narrows further; -u names anyone (within their accounts).
    let a = answer(&args("query jobs --json -A chem -u carol"), &db, &manager());
    assert_eq!(a.code, 0, "{}", a.stderr);
    let rows: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let a = answer(&args("query jobs --json -u bob"), &db, &manager());
    assert_eq!(a.code, 0, "{}", a.stderr);
    let rows: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(rows, serde_json::json!([]), "bob is in phys");
}

#[test]
fn other_accounts_are_refused_or_not_recorded() {
    let (_dir, db) = ledger();
    let a = answer(&args("query jobs -A phys"), &db, &manager());
    assert_eq!(a.code, 2);
    assert!(a.stderr.contains("you manage the accounts chem*") && a.stderr.contains("-A phys"), "{}", a.stderr);
    assert!(a.stdout.is_empty());
    for id in [4, 5] {
        let a = answer(&args(&format!("query job {id}")), &db, &manager());
        assert_eq!(a.code, 1, "bob's job {id}");
        assert!(a.stderr.contains(&format!("no job {id} is recorded")), "{}", a.stderr);
    }
}

#[test]
fn others_env_values_and_argv_are_hidden_the_managers_own_are_not() {
    let (_dir, db) = ledger();
    let a = answer(&args("query job 3"), &db, &manager());
    assert_eq!(a.code, 0, "{}", a.stderr);
    let out = text(&a);
    // The executable stays (which program ran is the team's business); the argv does not.
    let argv: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("argv:")).collect();
    assert_eq!(argv, vec!["      argv: '<hidden>'"; 2], "carol's argv:\n{out}");
    assert!(!out.contains("./sim") && !out.contains("--steps"), "carol's argv:\n{out}");
    assert!(!out.contains("value-10-"), "carol's environment values:\n{out}");
    assert!(out.contains("HOME=<hidden>"), "{out}");
    let j: serde_json::Value =
        serde_json::from_slice(&answer(&args("query job 3 --json"), &db, &manager()).stdout).unwrap();
    let envs = j[0]["environments"].as_object().unwrap();
    assert!(!envs.is_empty());
    assert!(envs.values().flat_map(|e| e.as_object().unwrap().values()).all(|v| v == HIDDEN), "{j:#}");
    assert!(j[0]["steps"].as_array().unwrap().iter().all(|s| s["argv"] == serde_json::json!([HIDDEN])), "{j:#}");
    // The listing's steps too.
    let l: serde_json::Value =
        serde_json::from_slice(&answer(&args("query jobs --json -j 1,3"), &db, &manager()).stdout).unwrap();
    assert_eq!(l.as_array().unwrap().len(), 2);
    assert!(!l.to_string().contains("./sim"), "{l:#}");
    // The manager's own job shows whole.
    let own = text(&answer(&args("query job 6"), &db, &manager()));
    assert!(own.contains("/home/mgr/run/job.sh") && own.contains("value-10-"), "{own}");
    // A plain user sees their own job whole, an admin everyone's.
    let alice = Scope::Own(Owner { uid: 2001, name: "alice".into(), clusters: Vec::new(), manages: Vec::new() });
    assert!(text(&answer(&args("query job 1"), &db, &alice)).contains("/home/alice/run/job.sh"));
    assert!(text(&answer(&args("query job 3"), &db, &Scope::All)).contains("/home/carol/run/job.sh"));
}

#[test]
fn managers_come_from_names_and_groups() {
    let access = AccessConfig {
        managers: [("chem".to_string(), vec!["nobody".to_string()]), ("phys-*".to_string(), vec!["@nogroup".into()])]
            .into_iter()
            .collect(),
    };
    if let Some(nobody) = users::user_by_name("nobody").filter(|u| u.uid != users::euid()) {
        // nobody's primary group is nogroup: a manager of both, by name and by group.
        let Ok(Scope::Own(me)) = scope_of(nobody.uid, None, &[], &access) else { panic!("nobody is a user") };
        assert_eq!(me.manages, vec!["chem", "phys-*"]);
        let plain = scope_of(nobody.uid, None, &[], &AccessConfig::default()).unwrap();
        assert!(matches!(plain, Scope::Own(o) if o.manages.is_empty()));
    }
}

#[test]
fn the_report_through_the_socket_is_the_callers_view() {
    let (_dir, db) = ledger();
    let a = answer(&args("report --html /nonexistent-dir/r"), &db, &manager());
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.files.len(), 1);
    let page = String::from_utf8(a.files[0].clone()).unwrap();
    assert!(page.contains("Account chem: jobs per user") && page.contains("Account chem-extra"), "no chem tables");
    assert!(!page.contains("bob") && !page.contains("phys"), "phys leaked into the manager's report");
    assert!(page.contains("alice") && page.contains("carol"));
    let alice = Scope::Own(Owner { uid: 2001, name: "alice".into(), clusters: Vec::new(), manages: Vec::new() });
    let a = answer(&args("report --html /nonexistent-dir/r"), &db, &alice);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let page = String::from_utf8(a.files[0].clone()).unwrap();
    assert!(page.contains("alice&#39;s jobs") && !page.contains("carol") && !page.contains("bob"));
    let a = answer(&args("report --html /x -A phys"), &db, &manager());
    assert_eq!(a.code, 2, "{}", a.stderr);
}
