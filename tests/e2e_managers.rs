//! Account managers, on the real local cluster: rltest and rltest2 run jobs in account `chem`,
//! rlphys in `phys`, and rlmanager (member of the Unix group rl-chem-leads, which
//! `[access.managers] chem = ["@rl-chem-leads"]` names in the cluster's runledger.toml) asks the
//! same `collector` commands through the socket. Everything rlmanager sees must be root's view
//! narrowed to `-A chem` — the same rows, counts, summaries, exports, charts and report tables —
//! except the environment values and argv of other users' jobs, which read `<hidden>`; phys's
//! job is "not recorded" for them.

use runledger_e2e::*;
use serde_json::Value;

const MANAGER: &str = "rlmanager";
const PHYS: &str = "rlphys";

fn collector_as(user: &str, args: &str) -> (i32, String, String) {
    let out = as_user(user, &format!("{COLLECTOR} {args}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok_as(user: &str, args: &str) -> String {
    let (code, out, err) = collector_as(user, args);
    assert_eq!(code, 0, "{user}: collector {args}: {err}");
    out
}

/// `collector ARGS` as root (reads the ledger directly).
fn ok_root(args: &str) -> String {
    let out = std::process::Command::new("bash").args(["-c", &format!("{COLLECTOR} {args}")]).output().unwrap();
    assert!(out.status.success(), "root: collector {args}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Job rows without the steps' argv (which a manager sees hidden for others' jobs).
fn without_argv(rows: &Value) -> Value {
    let mut rows = rows.clone();
    for r in rows.as_array_mut().unwrap() {
        if let Some(steps) = r["steps"].as_array_mut() {
            for s in steps {
                s.as_object_mut().unwrap().remove("argv");
            }
        }
    }
    rows
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn a_manager_sees_their_accounts_as_an_admin_does_without_others_env_and_argv() {
    require_cluster();
    let marker = format!("rl-manager-secret-{}", std::process::id());
    let prelude = format!("export RL_MANAGER_MARKER={marker}");
    let script = format!("#!/bin/bash\nsrun echo {marker}\n");
    let c1 = sbatch_after(USER, &prelude, "mgr-chem-a", &["--account=chem"], &script);
    let c2 = sbatch(USER, "mgr-chem-b", &["--account=chem"], "#!/bin/bash\nexit 3\n");
    let c3 = sbatch_after(USER2, &prelude, "mgr-chem-c", &["--account=chem"], &script);
    let p1 = sbatch_after(PHYS, &prelude, "mgr-phys", &["--account=phys"], &script);
    for j in [c1, c2, c3, p1] {
        finished(j);
    }
    let full = query(&["job", &c3.to_string()]);
    assert_eq!(full[0]["account"], "chem", "Slurm records --account without slurmdbd: {full:#}");
    assert!(full.to_string().contains(&marker), "root sees rltest2's environment and argv: {full:#}");

    // Listings: the same jobs, the same rows, argv hidden for others.
    let root_rows = json(&ok_root("query jobs --json -A chem"));
    let mine = json(&ok_as(MANAGER, "query jobs --json"));
    assert_eq!(without_argv(&mine), without_argv(&root_rows), "rlmanager's listing vs root's -A chem");
    let ids: Vec<u64> = mine.as_array().unwrap().iter().map(|r| r["job_id"].as_u64().unwrap()).collect();
    for j in [c1, c2, c3] {
        assert!(ids.contains(&u64::from(j)), "rlmanager misses chem job {j}");
    }
    assert!(!ids.contains(&u64::from(p1)), "rlmanager sees phys's job {p1}");
    assert!(!mine.to_string().contains(&marker), "a chem user's argv leaked to the manager");
    for r in mine.as_array().unwrap().iter().filter(|r| [c1, c3].contains(&(r["job_id"].as_u64().unwrap() as u32))) {
        let srun = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "0").expect("srun step");
        assert_eq!(srun["argv"], serde_json::json!(["<hidden>"]), "{r:#}");
    }
    // The plain table and CSV say the same.
    assert_eq!(ok_as(MANAGER, "query jobs --csv"), ok_root("query jobs --csv -A chem"));

    // One job: others' environment values and argv hidden, keys kept; phys's job not recorded.
    let detail = ok_as(MANAGER, &format!("query job {c3}"));
    assert!(!detail.contains(&marker), "{detail}");
    assert!(detail.contains("RL_MANAGER_MARKER=<hidden>"), "{detail}");
    assert!(detail.contains("argv: <hidden>") || detail.contains("argv: '<hidden>'"), "{detail}");
    let dj = json(&ok_as(MANAGER, &format!("query job {c3} --json")));
    assert_eq!(dj[0]["job_id"].as_u64(), Some(u64::from(c3)));
    let envs = dj[0]["environments"].as_object().unwrap();
    assert!(
        !envs.is_empty() && envs.values().all(|e| e.as_object().unwrap().values().all(|v| v == "<hidden>")),
        "{dj:#}"
    );
    let (code, _, err) = collector_as(MANAGER, &format!("query job {p1}"));
    assert_ne!(code, 0);
    assert!(err.contains(&format!("no job {p1}")) && err.contains("recorded"), "{err}");
    let (code, _, err) = collector_as(MANAGER, "query jobs -A phys");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("chem"), "the refusal says which accounts they manage: {err}");
    // A user of chem is still only a user.
    let own = json(&ok_as(USER2, "query jobs --json -A chem"));
    assert!(own.as_array().unwrap().iter().all(|r| r["user"] == USER2), "{own:#}");
    let (code, _, _) = collector_as(USER2, &format!("query job {c1}"));
    assert_ne!(code, 0, "rltest2 reads rltest's job");

    // Summaries and other analyses: grouped as for an admin, the same numbers.
    for q in [
        "query summary --by user --json",
        "query summary --by user,state --json",
        "query errors --by user --json",
        "query modules --json",
        "query throughput --interval 1d --json",
        "query utilization --interval 1d --json",
    ] {
        let m = ok_as(MANAGER, q);
        let r = ok_root(&format!("{q} -A chem"));
        assert_eq!(json(&m), json(&r), "{q}");
    }
    let users = json(&ok_as(MANAGER, "query summary --by user --json"));
    let names: Vec<&str> = users.as_array().unwrap().iter().filter_map(|r| r["user"].as_str()).collect();
    assert!(names.contains(&USER) && names.contains(&USER2) && !names.contains(&PHYS), "{names:?}");

    // Exports and charts: byte for byte root's -A chem (the charts' subtitle names the filter,
    // so both ask with -A chem; the manager may name their own account).
    assert_eq!(ok_as(MANAGER, "export --format csv -o -"), ok_root("export --format csv -o - -A chem"));
    let dir = user_dir(MANAGER, "mgr-charts");
    let mine = dir.join("m.svg");
    let roots = std::env::temp_dir().join(format!("rl-mgr-{}.svg", std::process::id()));
    ok_as(MANAGER, &format!("query summary --by user -A chem --plot {}", mine.display()));
    ok_root(&format!("query summary --by user -A chem --plot {}", roots.display()));
    assert_eq!(std::fs::read(&mine).unwrap(), std::fs::read(&roots).unwrap(), "the charts differ");
    let _ = std::fs::remove_file(&roots);

    // The report: the manager's page holds chem's table and no trace of phys or the marker.
    let rdir = user_dir(MANAGER, "mgr-report");
    ok_as(MANAGER, &format!("report --html {}", rdir.display()));
    let page = std::fs::read_to_string(rdir.join("index.html")).unwrap();
    assert!(page.contains("Account chem: jobs per user"), "no chem table");
    assert!(!page.contains("Account phys") && !page.contains(PHYS) && !page.contains(&marker));
    let root_dir = std::env::temp_dir().join(format!("rl-mgr-report-{}", std::process::id()));
    ok_root(&format!("report --html {} -A chem", root_dir.display()));
    let root_page = std::fs::read_to_string(root_dir.join("index.html")).unwrap();
    assert_eq!(tables(&page), tables(&root_page), "report tables: manager vs root -A chem");
    let _ = std::fs::remove_dir_all(&root_dir);
}

/// The report's tables (everything from the first `<table` on, minus the charts, which name the
/// filters in their subtitles).
fn tables(page: &str) -> Vec<String> {
    page.split("<table").skip(1).map(|t| t.split("</table>").next().unwrap_or("").to_string()).collect()
}
