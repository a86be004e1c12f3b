//! Who sees what, on the real local cluster: two ordinary users and an admin run the same
//! `collector query` commands; the ledger file is the collector's alone; each user sees exactly
//! their own jobs (counts match root's view of them), nothing of the other's environment, and the
//! admin (a member of collector.admin_group) sees every job.

use runledger_e2e::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const ADMIN: &str = "rladmin";

/// `collector <args> --json`-style command as `user`; returns (exit code, stdout, stderr).
fn collector_as(user: &str, args: &str) -> (i32, String, String) {
    let out = as_user(user, &format!("{COLLECTOR} {args}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn jobs_as(user: &str, args: &str) -> Vec<Value> {
    let (code, out, err) = collector_as(user, &format!("query jobs --json {args}"));
    assert_eq!(code, 0, "{user}: query jobs {args}: {err}");
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

fn ids(rows: &[Value]) -> Vec<u64> {
    let mut v: Vec<u64> = rows.iter().map(|r| r["job_id"].as_u64().unwrap()).collect();
    v.sort_unstable();
    v
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn each_user_sees_only_their_own_jobs_and_the_admin_sees_all() {
    require_cluster();
    let marker = format!("rl-private-{}", std::process::id());
    let a1 = sbatch(USER, "privacy-a1", &[], "#!/bin/bash\ntrue\n");
    let a2 = sbatch(USER, "privacy-a2", &[], "#!/bin/bash\nexit 3\n");
    // rltest2's job carries a value in its environment (and argv) that rltest must never see.
    let prelude = format!("export RL_PRIVATE_MARKER={marker}");
    let b1 = sbatch_after(USER2, &prelude, "privacy-b1", &[], &format!("#!/bin/bash\nsrun echo {marker}\n"));
    for j in [a1, a2, b1] {
        finished(j);
    }
    let b1_full = query(&["job", &b1.to_string()]);
    assert!(b1_full.to_string().contains(&marker), "the marker is recorded for rltest2's job: {b1_full:#}");

    // The database is the collector's alone.
    let cfg = runledger_record::config::Config::load(&runledger_record::config::Config::default_path()).unwrap();
    let meta = std::fs::metadata(&cfg.collector.database).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", cfg.collector.database.display());
    let owner = user_name_of(meta.uid());
    assert_eq!(owner, "runledger");
    let db = cfg.collector.database.display().to_string();
    let (code, _, err) = collector_as(USER, &format!("query --database {db} jobs"));
    assert_ne!(code, 0, "rltest opened the ledger file directly");
    assert!(err.contains("ermission denied") || err.contains("unable to open"), "{err}");

    let all = query(&["jobs"]).as_array().unwrap().clone();
    let mut leaked = 0;
    for (user, mine) in [(USER, vec![a1, a2]), (USER2, vec![b1])] {
        let seen = jobs_as(user, "");
        leaked += seen.iter().filter(|r| r["user"] != user).count();
        assert!(seen.iter().all(|r| r["user"] == user), "{user} sees others' jobs");
        for j in &mine {
            assert!(ids(&seen).contains(&u64::from(*j)), "{user} misses own job {j}");
        }
        // Counts match root's view of that user's jobs.
        let roots = all.iter().filter(|r| r["user"] == user).count();
        assert_eq!(seen.len(), roots, "{user}: own jobs through the socket vs root's count");
        // Summaries and exports are narrowed the same way.
        let (code, out, err) = collector_as(user, "query summary --by user --json");
        assert_eq!(code, 0, "{err}");
        let groups: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(groups.as_array().unwrap().len(), 1, "{user}: {groups:#}");
        assert_eq!(groups[0]["user"], user);
        assert_eq!(groups[0]["jobs"].as_u64(), Some(roots as u64));
    }
    assert_eq!(leaked, 0);

    // Nothing of rltest2's job reaches rltest, by any command.
    for cmd in [
        "query jobs --json".to_string(),
        format!("query job {b1} --json"),
        "query events --json".to_string(),
        "export --format jsonl".to_string(),
        format!("query jobs -j {b1} --json"),
    ] {
        let (_, out, err) = collector_as(USER, &cmd);
        assert!(!out.contains(&marker) && !err.contains(&marker), "{cmd}: rltest2's job leaked");
        assert!(!out.contains(USER2), "{cmd}: {out}");
    }
    let (code, out, err) = collector_as(USER, &format!("query job {b1}"));
    assert_eq!(code, 1, "{out}");
    assert!(err.contains(&format!("no job {b1} is recorded")), "{err}");
    let (code, _, err) = collector_as(USER, &format!("query jobs -u {USER2}"));
    assert_eq!(code, 2);
    assert!(err.contains("only your own jobs"), "{err}");

    // A chart asked for through the socket lands in the user's own directory, owned by them.
    let dir = user_dir(USER, "privacy");
    let chart = dir.join("mine.svg");
    let (code, _, err) = collector_as(USER, &format!("query summary --by state --plot {}", chart.display()));
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::metadata(&chart).unwrap();
    assert_eq!(user_name_of(meta.uid()), USER);
    assert!(!std::fs::read_to_string(&chart).unwrap().contains(USER2));

    // The admin sees every job, as root does, and rltest2's full record.
    let admin = jobs_as(ADMIN, "");
    assert_eq!(ids(&admin), ids(&all));
    let (code, out, err) = collector_as(ADMIN, &format!("query job {b1} --json"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&marker));
}

/// A user whose name is all digits (rltest2's uid, see `digit_user`) sees their own jobs and never
/// those of the user whose uid their name spells: the socket narrows by the caller's uid, not by a
/// name the job filter would read as a uid.
#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn an_all_digit_user_name_is_never_taken_for_a_uid() {
    require_cluster();
    let digits = digit_user();
    let theirs = sbatch(USER2, "privacy-uid-theirs", &[], "#!/bin/bash\ntrue\n");
    let mine = sbatch(&digits, "privacy-uid-mine", &[], "#!/bin/bash\ntrue\n");
    for j in [theirs, mine] {
        finished(j);
    }
    let root_view = query(&["jobs", "-j", &mine.to_string()]);
    assert_eq!(root_view[0]["user"], digits.as_str(), "the job is recorded under the all-digit name");
    let roots = query(&["jobs"]).as_array().unwrap().iter().filter(|r| r["user"] == digits.as_str()).count();
    for filter in [String::new(), format!("-u {digits}")] {
        let seen = jobs_as(&digits, &filter);
        assert!(!ids(&seen).contains(&u64::from(theirs)), "{digits} {filter}: sees {USER2}'s job {theirs}: {seen:#?}");
        assert!(seen.iter().all(|r| r["user"] == digits.as_str()), "{digits} {filter}: sees others' jobs: {seen:#?}");
        assert!(ids(&seen).contains(&u64::from(mine)), "{digits} {filter}: misses own job {mine}");
        assert_eq!(seen.len(), roots, "{digits} {filter}: own jobs through the socket vs root's count");
    }
    let (code, out, err) = collector_as(&digits, "query summary --by user --json");
    assert_eq!(code, 0, "{err}");
    let groups: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups:#}");
    assert_eq!(groups[0]["user"], digits.as_str());
    let (_, out, _) = collector_as(&digits, "export --format jsonl");
    assert!(!out.contains(USER2), "{out}");
    let (code, _, err) = collector_as(&digits, &format!("query job {theirs}"));
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no job {theirs} is recorded")), "{err}");
    // rltest2 still sees their own job.
    assert!(ids(&jobs_as(USER2, "")).contains(&u64::from(theirs)));
}

/// The user name of a uid.
fn user_name_of(uid: u32) -> String {
    let out = std::process::Command::new("id").args(["-nu", &uid.to_string()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `packaging/demo` writes its job scripts into rltest's home as rltest (lib.sh's `rl_write_as`):
/// a link rltest planted at a script's name cannot lead root's write to a file of root's.
#[test]
#[ignore = "needs root and the test users: packaging/local-cluster up"]
fn the_demo_writes_in_a_users_directory_as_that_user() {
    use std::io::Write;
    let dir = user_dir(USER, "demo-links");
    let victim = std::path::PathBuf::from(format!("/var/tmp/rl-victim-{}", std::process::id()));
    std::fs::write(&victim, "root's\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("ok.sh")).unwrap();
    let write_as = |path: &std::path::Path, text: &str| {
        let lib = repo_root().join("packaging/lib.sh");
        let mut child = std::process::Command::new("bash")
            .args(["-c", "set -euo pipefail; source \"$1\"; rl_write_as \"$2\" \"$3\"", "bash"])
            .arg(&lib)
            .arg(USER)
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = write_as(&dir.join("ok.sh"), "pwned\n");
    let after = std::fs::read_to_string(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    assert_eq!(after, "root's\n", "root's file was written through the user's link");
    assert!(!out.status.success(), "the write through the link is refused");
    // An ordinary script lands where asked, the user's own, in a directory made as the user.
    let script = dir.join("sub/fails.sh");
    let out = write_as(&script, "#!/bin/bash\nexit 3\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&script).unwrap(), "#!/bin/bash\nexit 3\n");
    assert_eq!(user_name_of(std::fs::metadata(&script).unwrap().uid()), USER);
    assert_eq!(user_name_of(std::fs::metadata(script.parent().unwrap()).unwrap().uid()), USER);
}
