//! What a non-admin can learn through the socket: every ledger command, run as alice, must show
//! alice's jobs and nothing of bob's; admins see both.

use super::*;
use crate::daemon::query_socket::protect_database;
use crate::sys;
use runledger_ledger::merge::apply_group;
use runledger_record::{ExitStatus, JobState};
use runledger_synth::Sample;

const T0: i64 = 1_700_000_000;

/// A ledger file with alice's jobs 1 and 2 and bob's jobs 3 and 4 (bob's carry a telltale
/// environment value and error).
fn ledger() -> (tempfile::TempDir, PathBuf) {
    ledger_of(&[(1, "alice", 2001, "tc"), (2, "alice", 2001, "tc"), (3, "bob", 2002, "tc"), (4, "bob", 2002, "tc")])
}

/// A ledger of these jobs: (job id, user, uid, cluster).
fn ledger_of(list: &[(u32, &str, u32, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let conn = runledger_ledger::db::open_rw(&path).unwrap();
    let mut jobs = Vec::new();
    for &(id, user, uid, cluster) in list {
        let mut s = Sample::new(cluster, id, T0 + i64::from(id) * 3600);
        s.user = user.into();
        s.uid = uid;
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

fn own(name: &str, uid: u32) -> Scope {
    Scope::Own(Owner { uid, name: name.into(), clusters: Vec::new(), manages: Vec::new() })
}

fn alice() -> Scope {
    own("alice", 2001)
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
    assert_eq!(count(&own("bob", 2002)), 2);
    assert_eq!(count(&own("carol", 2003)), 0);
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

/// Job ids in a `query jobs --json` answer.
fn job_ids(a: &Answer) -> Vec<u64> {
    assert_eq!(a.code, 0, "{}", a.stderr);
    let rows: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let mut ids: Vec<u64> = rows.as_array().unwrap().iter().map(|r| r["job_id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

/// A user named "2002" (uid 2005) is narrowed by uid: bob's jobs (uid 2002) stay hidden, whichever
/// way the user names themselves, in every command.
#[test]
fn an_all_digit_name_is_never_read_as_a_uid() {
    let (_dir, db) = ledger_of(&[(1, "alice", 2001, "tc"), (3, "bob", 2002, "tc"), (5, "2002", 2005, "tc")]);
    let digits = own("2002", 2005);
    for filter in ["", " -u 2002", " -u 2005", " -u 2002,bob"] {
        let a = answer(&args(&format!("query jobs --json{filter}")), &db, &digits);
        assert_eq!(job_ids(&a), vec![5], "{filter}");
    }
    for cmd in COMMANDS {
        let a = answer(&args(cmd), &db, &digits);
        assert_eq!(a.code, 0, "{cmd}: {}", a.stderr);
        let out = String::from_utf8(a.stdout).unwrap();
        assert!(!out.contains("bob"), "{cmd}: bob's jobs leaked to the user named 2002:\n{out}");
    }
    assert_eq!(answer(&args("query job 3"), &db, &digits).code, 1);
    assert_eq!(answer(&args("query job 5"), &db, &digits).code, 0);
    // bob, asking by his uid, still sees his own job only.
    assert_eq!(job_ids(&answer(&args("query jobs --json -u 2002"), &db, &own("bob", 2002))), vec![3]);
    let a = answer(&args("query jobs -u 2001"), &db, &digits);
    assert_eq!(a.code, 2, "another uid is someone else");
}

/// Where a ledger holds clusters whose uids mean different people, `user_clusters` keeps a caller
/// to the clusters whose accounts are this host's.
#[test]
fn user_clusters_keep_a_uid_to_its_own_cluster() {
    let (_dir, db) = ledger_of(&[(1, "alice", 2001, "tc"), (2, "zed", 2001, "far"), (3, "bob", 2002, "tc")]);
    let here = Scope::Own(Owner { uid: 2001, name: "alice".into(), clusters: vec!["tc".into()], manages: Vec::new() });
    assert_eq!(job_ids(&answer(&args("query jobs --json"), &db, &here)), vec![1]);
    assert_eq!(job_ids(&answer(&args("query jobs --json -M tc,far"), &db, &here)), vec![1]);
    let a = answer(&args("query jobs -M far"), &db, &here);
    assert_eq!(a.code, 2);
    assert!(a.stderr.contains("cluster tc"), "{}", a.stderr);
    assert_eq!(answer(&args("query job 2"), &db, &here).code, 1, "zed's job on the other cluster");
    let a = answer(&args("export --format jsonl"), &db, &here);
    assert!(!String::from_utf8_lossy(&a.stdout).contains("zed"));
    // Unset, every cluster counts (one user directory for all).
    assert_eq!(job_ids(&answer(&args("query jobs --json"), &db, &alice())), vec![1, 2]);
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
        assert!(a.stderr.contains("only `collector query`, `collector export`"), "{cmd}: {}", a.stderr);
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

/// Charts and exports are drawn in a directory no local user can predict or plant: links at the
/// names the daemon once used (pid and a counter) are neither followed nor in the way.
#[test]
fn the_scratch_directory_is_unpredictable_and_private() {
    let (_dir, db) = ledger();
    let target = tempfile::tempdir().unwrap();
    let planted: Vec<PathBuf> =
        (0..256).map(|i| std::env::temp_dir().join(format!("runledger-query-{}-{i}", std::process::id()))).collect();
    for p in &planted {
        let _ = std::os::unix::fs::symlink(target.path(), p);
    }
    let a = answer(&args("query summary --by user --plot /nonexistent-dir/u.svg"), &db, &alice());
    for p in &planted {
        let _ = std::fs::remove_file(p);
    }
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert!(String::from_utf8_lossy(&a.files[0]).contains("<svg"));
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0, "written through a planted link");
    let (one, two) = (scratch_dir().unwrap(), scratch_dir().unwrap());
    assert_ne!(one.path(), two.path());
    assert_eq!(std::fs::metadata(one.path()).unwrap().permissions().mode() & 0o777, 0o700);
    let name = one.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("runledger-query-") && !name.contains(&std::process::id().to_string()), "{name}");
    let path = one.path().to_path_buf();
    drop(one);
    assert!(!path.exists(), "removed when done");
}

#[test]
fn scope_of_root_and_of_the_daemons_own_user_is_everything() {
    let none = runledger_record::access::AccessConfig::default();
    assert_eq!(scope_of(users::euid(), Some("no-such-group"), &[], &none), Ok(Scope::All));
    if let Some(nobody) = users::user_by_name("nobody").filter(|u| u.uid != users::euid()) {
        let me = Owner { uid: nobody.uid, name: "nobody".into(), clusters: vec!["tc".into()], manages: Vec::new() };
        assert_eq!(scope_of(nobody.uid, None, &me.clusters, &none), Ok(Scope::Own(me.clone())));
        assert_eq!(scope_of(nobody.uid, Some("no-such-group"), &me.clusters, &none), Ok(Scope::Own(me)));
        assert_eq!(
            scope_of(nobody.uid, Some("nogroup"), &[], &none),
            Ok(Scope::All),
            "nobody's primary group is nogroup"
        );
    }
    assert_eq!(scope_of(0, None, &[], &none), Ok(Scope::All));
    assert!(scope_of(4_000_000_000, None, &[], &none).unwrap_err().contains("no passwd entry"));
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

/// A job whose name, argv, environment, account and evidence line carry terminal escapes and
/// spreadsheet formulas: tables and `query job` show them escaped, CSV cells of text are
/// protected, and numbers stay numbers.
#[test]
fn recorded_text_is_escaped_for_terminals_and_protected_in_csv() {
    use runledger_record::Item;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let conn = runledger_ledger::db::open_rw(&db).unwrap();
    let mut s = Sample::new("tc", 7, T0);
    s.account = "=HYPERLINK(\"http://evil\")".into();
    s.state = JobState::Failed;
    s.exit = ExitStatus { code: 1, signal: 0, core_dumped: false };
    let mut b = s.batch(0);
    for i in &mut b.items {
        match i {
            Item::StepStart(st) => {
                st.job_name = Some("job\x1b]0;owned\x07\x1b[2J".into());
                st.argv.push("--x=\x1b[31mred\u{202e}".into());
                st.env.insert("EVIL".into(), "a\nUser         root".into());
            }
            Item::JobEnd(j) => j.state_evidence = Some("-1+2\x1b[1A".into()),
            Item::StepEnd(_) => {}
        }
    }
    for r in apply_group(&conn, &[&b], T0 + 90_000).unwrap() {
        r.unwrap();
    }
    drop(conn);
    let run = |cmd: &str| {
        let a = answer(&args(cmd), &db, &Scope::All);
        assert_eq!(a.code, 0, "{cmd}: {}", a.stderr);
        String::from_utf8(a.stdout).unwrap()
    };
    let raw_control = |s: &str| s.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{202e}');
    for cmd in ["query jobs -o JobID,JobName,Account,Evidence", "query job 7", "query summary --by account"] {
        let out = run(cmd);
        assert!(!raw_control(&out), "{cmd}: raw control characters reach the terminal: {out:?}");
    }
    let table = run("query jobs -o JobID,JobName,Evidence");
    assert!(table.contains("job\\x1b]0;owned\\x07\\x1b[2J"), "{table}");
    let detail = run("query job 7");
    assert!(detail.contains("\\x1b[31mred\\u{202e}"), "argv: {detail}");
    assert!(detail.contains("EVIL=a\\nUser         root"), "the environment cannot fake a line: {detail}");
    assert!(!detail.lines().any(|l| l.trim_start().starts_with("User         root")), "{detail}");
    assert!(detail.contains("-1+2\\x1b[1A"), "evidence: {detail}");

    let csv = run("query jobs --csv -o JobID,Account,Evidence,NCPUS,ExitCode");
    let row = csv.lines().nth(1).unwrap();
    assert!(row.starts_with("7,\"'=HYPERLINK(\"\"http://evil\"\")\",'-1+2\u{1b}[1A,"), "{row}");
    assert!(row.ends_with(",1:0"), "numbers and exit codes untouched: {row}");
    let summary = run("query summary --by account --csv");
    assert!(summary.contains("\"'=HYPERLINK("), "{summary}");
    let export = run("export --format csv");
    assert!(export.contains("\"'=HYPERLINK("), "{export}");
}
