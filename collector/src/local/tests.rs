//! What a non-admin can learn through the socket: every ledger command, run as alice, must show
//! alice's jobs and nothing of bob's; admins see both.

use super::*;
use crate::merge::apply_group;
use crate::sample::Sample;
use runledger_record::{ExitStatus, JobState};

const T0: i64 = 1_700_000_000;

/// A ledger file with alice's jobs 1 and 2 and bob's jobs 3 and 4 (bob's carry a telltale
/// environment value and error).
fn ledger() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let conn = crate::db::open_rw(&path).unwrap();
    let mut jobs = Vec::new();
    for (id, user) in [(1, "alice"), (2, "alice"), (3, "bob"), (4, "bob")] {
        let mut s = Sample::new("tc", id, T0 + i64::from(id) * 3600);
        s.user = user.into();
        s.uid = if user == "alice" { 2001 } else { 2002 };
        s.account = format!("acct-{user}");
        // Module sets that differ between the two users, so co-usage tells them apart.
        if id == 1 {
            s.modules.truncate(1);
        }
        if id == 2 || id == 3 {
            s.modules.push(runledger_record::Module {
                name: "fftw".into(),
                version: Some("3.3.10".into()),
                file: None,
            });
        }
        if id % 2 == 0 {
            s.state = JobState::Failed;
            s.exit = ExitStatus { code: 1, signal: 0, core_dumped: false };
            s.set_log("LAMMPS", "failed", Some("input_error"), Some(&format!("ERROR: {user}'s input")), &[]);
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

fn alice() -> Scope {
    Scope::Own("alice".into())
}

/// Every ledger command, as a user would type it (after `collector`).
const COMMANDS: &[&str] = &[
    "query jobs",
    "query jobs --json",
    "query jobs --csv -o JobID,User,Account,State,Evidence",
    "query jobs -s FAILED --json",
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
fn a_user_sees_only_their_own_jobs_in_every_command() {
    let (_dir, db) = ledger();
    for cmd in COMMANDS {
        let own = answer(&args(cmd), &db, &alice());
        assert_eq!(own.code, 0, "{cmd}: {}", own.stderr);
        let out = String::from_utf8(own.stdout).unwrap();
        assert!(!out.contains("bob"), "{cmd}: bob's jobs leaked to alice:\n{out}");
        // Alice's view is exactly an admin's view of `-u alice` …
        let as_admin = answer(&args(&format!("{cmd} -u alice")), &db, &Scope::All);
        assert_eq!(as_admin.code, 0, "{cmd}: {}", as_admin.stderr);
        assert_eq!(out, String::from_utf8(as_admin.stdout).unwrap(), "{cmd}");
        // … and not the admin's view of everything, so the narrowing is what hid bob.
        let all = answer(&args(cmd), &db, &Scope::All);
        assert_eq!(all.code, 0, "{cmd}: {}", all.stderr);
        assert_ne!(out, String::from_utf8(all.stdout).unwrap(), "{cmd}: the test ledger does not tell users apart");
    }
}

#[test]
fn counts_match_per_user() {
    let (_dir, db) = ledger();
    let count = |scope: &Scope| {
        let a = answer(&args("query jobs --json"), &db, scope);
        serde_json::from_slice::<serde_json::Value>(&a.stdout).unwrap().as_array().unwrap().len()
    };
    assert_eq!(count(&alice()), 2);
    assert_eq!(count(&Scope::Own("bob".into())), 2);
    assert_eq!(count(&Scope::Own("carol".into())), 0);
    assert_eq!(count(&Scope::All), 4);
}

#[test]
fn another_users_job_reads_as_not_recorded() {
    let (_dir, db) = ledger();
    let own = answer(&args("query job 1 --json"), &db, &alice());
    assert_eq!(own.code, 0, "{}", own.stderr);
    assert!(String::from_utf8_lossy(&own.stdout).contains("\"alice\""));
    let other = answer(&args("query job 3"), &db, &alice());
    let missing = answer(&args("query job 99"), &db, &alice());
    assert_eq!((other.code, missing.code), (1, 1));
    assert!(other.stdout.is_empty());
    assert_eq!(other.stderr.replace(" 3 ", " N "), missing.stderr.replace(" 99 ", " N "));
    let admin = answer(&args("query job 3 --json"), &db, &Scope::All);
    assert!(String::from_utf8_lossy(&admin.stdout).contains("\"bob\""));
}

#[test]
fn asking_for_someone_else_is_a_clear_usage_error() {
    let (_dir, db) = ledger();
    let a = answer(&args("query jobs -u bob"), &db, &alice());
    assert_eq!(a.code, 2);
    assert!(a.stderr.contains("only your own jobs"), "{}", a.stderr);
    assert!(a.stdout.is_empty());
    let a = answer(&args("query summary --by user -u alice,bob"), &db, &alice());
    assert_eq!(a.code, 0, "naming yourself among others narrows to yourself: {}", a.stderr);
    assert!(!String::from_utf8_lossy(&a.stdout).contains("bob"));
}

#[test]
fn the_socket_takes_no_database_and_no_other_command() {
    let (_dir, db) = ledger();
    for cmd in ["query --database /etc/shadow jobs", "export --database /etc/shadow --format csv"] {
        let a = answer(&args(cmd), &db, &Scope::All);
        assert_eq!(a.code, 2, "{cmd}");
        assert!(a.stderr.contains("--database is not accepted"), "{cmd}: {}", a.stderr);
    }
    for cmd in ["serve --listen 0.0.0.0:1", "parse /etc/shadow"] {
        let a = answer(&args(cmd), &db, &Scope::All);
        assert_eq!(a.code, 2, "{cmd}");
        assert!(a.stderr.contains("only `collector query` and `collector export`"), "{cmd}: {}", a.stderr);
    }
    let a = answer(&args("query jobs -S tomorrowish"), &db, &Scope::All);
    assert_eq!(a.code, 2);
    assert!(a.stderr.contains("tomorrowish"), "{}", a.stderr);
    let a = answer(&args("query jobs -S 2026-02-01 -E 2026-01-01"), &db, &Scope::All);
    assert_eq!(a.code, 2, "a usage error found after parsing does not exit the daemon");
}

#[test]
fn output_files_come_back_as_bytes() {
    let (_dir, db) = ledger();
    let a = answer(&args("export --format csv -o /nonexistent-dir/mine.csv"), &db, &alice());
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.files.len(), 1);
    let csv = String::from_utf8(a.files[0].clone()).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and alice's two jobs:\n{csv}");
    assert!(!csv.contains("bob"));
    let a = answer(&args("query summary --by user --plot /nonexistent-dir/u.svg"), &db, &alice());
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert!(String::from_utf8_lossy(&a.files[0]).contains("<svg"));
    assert!(!String::from_utf8_lossy(&a.files[0]).contains("bob"));
}

#[test]
fn scope_of_root_and_of_the_daemons_own_user_is_everything() {
    assert_eq!(scope_of(0, None), Ok(Scope::All));
    assert_eq!(scope_of(sys::euid(), Some("no-such-group")), Ok(Scope::All));
    if let Some(nobody) = sys::user_by_name("nobody").filter(|u| u.uid != sys::euid()) {
        assert_eq!(scope_of(nobody.uid, None), Ok(Scope::Own("nobody".into())));
        assert_eq!(scope_of(nobody.uid, Some("no-such-group")), Ok(Scope::Own("nobody".into())));
        assert_eq!(scope_of(nobody.uid, Some("nogroup")), Ok(Scope::All), "nobody's primary group is nogroup");
    }
    assert!(scope_of(4_000_000_000, None).unwrap_err().contains("no passwd entry"));
}

#[test]
fn protect_database_makes_existing_files_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let old = sys::set_umask(0o022);
    protect_database(&db);
    let after = sys::set_umask(old);
    assert_eq!(after, 0o077, "new files (the -wal and -shm) are created private");
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
}
