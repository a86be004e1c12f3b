use super::filter::{Filter, JobSel};
use super::output::{self, Extras};
use super::*;
use runledger_ledger::db;
use runledger_ledger::merge::apply_group;
use runledger_record::{ExitStatus, JobState, Module};
use runledger_synth::Sample;

const T0: i64 = 1_700_000_000;

/// Five jobs: alice ×3 (one failed, one with another module), bob, an array task of carol.
fn ledger() -> Connection {
    let conn = db::open_memory();
    let mut batches = Vec::new();
    let a1 = Sample::new("tc", 100, T0);
    let mut a2 = Sample::new("tc", 101, T0 + 3600);
    a2.state = JobState::Failed;
    a2.exit = ExitStatus { code: 2, signal: 0, core_dumped: false };
    a2.nnodes = 2;
    let mut a3 = Sample::new("tc", 102, T0 + 7200);
    a3.modules = vec![Module { name: "python".into(), version: Some("3.11".into()), file: None }];
    a3.tags.insert("project".into(), "beta".into());
    let mut b = Sample::new("tc", 103, T0 + 86_400);
    b.user = "bob".into();
    b.uid = 1001;
    b.account = "chem".into();
    b.partition = "gpu".into();
    let mut c = Sample::new("other", 205, T0 + 100);
    c.user = "carol".into();
    c.uid = 1002;
    let mut citems = c.node_items(0);
    for item in &mut citems {
        if let runledger_record::Item::StepStart(s) = item {
            s.array_job_id = Some(200);
            s.array_task_id = Some(5);
        }
    }
    for s in [&a1, &a2, &a3, &b] {
        for n in 0..s.nnodes {
            batches.push(s.batch(n));
        }
    }
    batches.push(runledger_record::Batch::new("x", citems));
    let refs: Vec<&runledger_record::Batch> = batches.iter().collect();
    for r in apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
    conn
}

fn ids(rows: &[JobRow]) -> Vec<String> {
    rows.iter().map(|r| r.display_id()).collect()
}

fn find(conn: &Connection, f: Filter) -> Vec<String> {
    ids(&find_jobs(conn, &f, None).unwrap())
}

#[test]
fn filters_select_the_right_jobs() {
    let c = ledger();
    assert_eq!(find(&c, Filter::default()), vec!["100", "200_5", "101", "102", "103"]);
    assert_eq!(find(&c, Filter { users: vec!["alice".into()], ..Default::default() }), vec!["100", "101", "102"]);
    assert_eq!(
        find(&c, Filter { users: vec!["1001".into(), "carol".into()], ..Default::default() }),
        vec!["200_5", "103"]
    );
    assert_eq!(find(&c, Filter { accounts: vec!["chem".into()], ..Default::default() }), vec!["103"]);
    assert_eq!(find(&c, Filter { partitions: vec!["gpu".into()], ..Default::default() }), vec!["103"]);
    assert_eq!(find(&c, Filter { clusters: vec!["other".into()], ..Default::default() }), vec!["200_5"]);
    assert_eq!(find(&c, Filter { states: vec![JobState::Failed], ..Default::default() }), vec!["101"]);
    let python = Module { name: "python".into(), version: None, file: None };
    assert_eq!(find(&c, Filter { modules: vec![python.clone()], ..Default::default() }), vec!["102"]);
    let gcc12 = Module { name: "gcc".into(), version: Some("12.2.0".into()), file: None };
    assert_eq!(find(&c, Filter { modules: vec![gcc12.clone()], ..Default::default() }).len(), 4);
    assert!(find(&c, Filter { modules: vec![gcc12, python], ..Default::default() }).is_empty());
    let tag = |k: &str, v: Option<&str>| vec![(k.to_string(), v.map(str::to_string))];
    assert_eq!(find(&c, Filter { tags: tag("project", Some("beta")), ..Default::default() }), vec!["102"]);
    assert_eq!(find(&c, Filter { tags: tag("project", None), ..Default::default() }).len(), 5);
    // Array selection: the array id finds its tasks; the task's own id finds it too.
    assert_eq!(find(&c, Filter { jobs: vec![JobSel { id: 200, task: None }], ..Default::default() }), vec!["200_5"]);
    assert_eq!(find(&c, Filter { jobs: vec![JobSel { id: 200, task: Some(5) }], ..Default::default() }), vec!["200_5"]);
    assert_eq!(find(&c, Filter { jobs: vec![JobSel { id: 205, task: None }], ..Default::default() }), vec!["200_5"]);
    assert!(find(&c, Filter { jobs: vec![JobSel { id: 200, task: Some(6) }], ..Default::default() }).is_empty());
}

#[test]
fn time_window_means_ran_at_some_time_in_between() {
    let c = ledger();
    // Job 100 runs T0..T0+30, 101 T0+3600..+30.
    let w = |s: Option<i64>, e: Option<i64>| find(&c, Filter { start: s, end: e, ..Default::default() });
    assert_eq!(w(Some(T0 + 10), Some(T0 + 20)), vec!["100"]);
    assert_eq!(w(Some(T0 + 31), Some(T0 + 99)), Vec::<String>::new());
    assert_eq!(w(Some(T0 + 20), Some(T0 + 3600)), vec!["100", "200_5", "101"]);
    assert_eq!(w(Some(T0 + 86_400), None), vec!["103"]);
    assert_eq!(w(None, Some(T0)), vec!["100"]);
}

#[test]
fn limit_keeps_the_newest_listed_oldest_first() {
    let c = ledger();
    assert_eq!(ids(&find_jobs(&c, &Filter::default(), Some(2)).unwrap()), vec!["102", "103"]);
}

#[test]
fn json_has_the_documented_shape() {
    let c = ledger();
    let rows =
        find_jobs(&c, &Filter { jobs: vec![JobSel { id: 101, task: None }], ..Default::default() }, None).unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let extras = Extras {
        modules: modules_of(&c, &ids).unwrap(),
        tags: tags_of(&c, &ids).unwrap(),
        steps: steps_of(&c, &ids).unwrap(),
        ..Default::default()
    };
    let v: serde_json::Value = serde_json::from_str(&detail::jobs_json(&rows, &extras)).unwrap();
    let j = &v[0];
    for key in [
        "cluster",
        "job_id",
        "array_job_id",
        "array_task_id",
        "user",
        "account",
        "partition",
        "state",
        "exit_code",
        "signal",
        "start",
        "end",
        "elapsed_s",
        "nodes",
        "cpu_seconds",
        "max_rss_kib",
        "modules",
        "tags",
        "steps",
    ] {
        assert!(j.get(key).is_some(), "missing {key}: {j}");
    }
    assert_eq!(j["job_id"], 101);
    assert_eq!(j["state"], "FAILED");
    assert_eq!(j["exit_code"], 2);
    assert_eq!(j["nodes"], serde_json::json!(["n0001", "n0002"]));
    assert_eq!(j["modules"], serde_json::json!(["gcc/12.2.0", "openmpi/4.1.4"]));
    assert_eq!(j["tags"], serde_json::json!({"project": "alpha"}));
    assert_eq!(j["elapsed_s"], 30);
    assert_eq!(j["array_job_id"], serde_json::Value::Null);
    let start = j["start"].as_str().unwrap();
    assert_eq!(chrono::DateTime::parse_from_rfc3339(start).unwrap().timestamp(), T0 + 3600);
    let steps = j["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["step"], "batch");
    assert_eq!(steps[1]["step"], "0");
    assert_eq!(steps[1]["node"], "n0001");
    assert_eq!(steps[1]["argv"], serde_json::json!(["srun", "./sim", "--steps", "100"]));
    let tasks = steps[1]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["rank"], 1);
    assert_eq!(tasks[1]["exit_code"], 2);
    for k in ["task_id", "rank", "exit_code", "signal"] {
        assert!(tasks[0].get(k).is_some());
    }
}

#[test]
fn table_and_csv_render_the_chosen_fields() {
    let c = ledger();
    let rows = find_jobs(&c, &Filter { users: vec!["alice".into()], ..Default::default() }, None).unwrap();
    let fields: Vec<_> = ["JobID", "User", "State", "ExitCode", "NodeList", "Modules"]
        .iter()
        .map(|n| output::parse_field(n).unwrap())
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let extras = Extras { modules: modules_of(&c, &ids).unwrap(), ..Default::default() };
    let t = output::table(&rows, &fields, &extras, true);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 5, "{t}");
    assert!(lines[0].starts_with("JobID User  State     ExitCode NodeList    Modules"), "{t}");
    assert!(lines[3].starts_with("101   alice FAILED    2:0      n0001,n0002 gcc/12.2.0 openmpi/4.1.4"), "{t}");
    let no_header = output::table(&rows, &fields, &extras, false);
    assert_eq!(no_header.lines().count(), 3);
    let csv = output::csv(&rows, &fields, &extras, true);
    assert_eq!(csv.lines().nth(2).unwrap(), "101,alice,FAILED,2:0,\"n0001,n0002\",gcc/12.2.0 openmpi/4.1.4");
    assert!(output::parse_field("nope").unwrap_err().contains("'nope'"));
    assert!(output::helpformat().contains("MaxRSS"));
}

#[test]
fn detail_shows_everything_and_every_instance_of_a_reused_id() {
    let c = ledger();
    // Job 100 again, a week later (reused id).
    let mut again = Sample::new("tc", 100, T0 + 7 * 86_400);
    again.user = "dave".into();
    apply_group(&c, &[&again.batch(0)], T0 + 8 * 86_400).unwrap();
    let rows = find_job(&c, &JobSel { id: 100, task: None }, &[]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].user.as_deref(), Some("dave"), "newest first");
    let d = job_detail(&c, rows[1].clone()).unwrap();
    assert_eq!(d.nodes.len(), 1);
    assert_eq!(d.steps.len(), 2);
    assert_eq!(d.modules.len(), 4);
    assert_eq!(d.environments.len(), 1);
    assert_eq!(d.events.len(), 8);
    let text = detail::detail_text(&d);
    for needle in ["Job 100 on cluster tc", "alice (uid 1000", "COMPLETED", "/opt/mf/gcc/12.2.0.lua", "APP_SETTING_10"]
    {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&detail::detail_json(&[d])).unwrap();
    assert_eq!(json[0]["node_records"][0]["node"], "n0001");
    assert_eq!(json[0]["module_files"][0]["file"], "/opt/mf/gcc/12.2.0.lua");
    assert_eq!(json[0]["events"].as_array().unwrap().len(), 8);
    assert!(json[0]["environments"].as_object().unwrap().len() == 1);
}

#[test]
fn lean_fields_show_the_same_from_a_lean_read() {
    let c = ledger();
    let full = find_jobs(&c, &Filter::default(), None).unwrap();
    let lean = find_jobs_with(&c, &Filter::default(), None, true).unwrap();
    let ids: Vec<i64> = full.iter().map(|r| r.id).collect();
    let extras =
        Extras { modules: modules_of(&c, &ids).unwrap(), tags: tags_of(&c, &ids).unwrap(), ..Default::default() };
    let fields: Vec<_> = output::FIELDS.iter().filter(|f| f.lean()).collect();
    assert_eq!(fields.len(), output::LEAN_FIELDS.len(), "every lean field exists");
    for f in fields {
        for (a, b) in full.iter().zip(&lean) {
            assert_eq!((f.get)(a, &extras), (f.get)(b, &extras), "{}", f.name);
        }
    }
    assert!(output::default_fields().iter().all(|f| f.lean()));
    // The others do read what a lean read leaves out.
    assert_ne!(full[0].qos, lean[0].qos);
}

fn plan(conn: &Connection, sql: &str, params: Vec<rusqlite::types::Value>) -> String {
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = st.query_map(params_from_iter(params), |r| r.get::<_, String>(3)).unwrap();
    rows.collect::<Result<Vec<_>, _>>().unwrap().join("; ")
}

/// A user's default listing reads only `jobs_user_listing` (schema version 5): a column added to
/// the lean listing but not to the index would send every row back to the table, silently.
#[test]
fn a_users_listing_reads_only_its_index() {
    let conn = ledger();
    let f = Filter { users: vec!["alice".into()], ..Default::default() };
    for limit in [None, Some(2)] {
        let (sql, params) = listing_sql(&f, limit, true);
        let p = plan(&conn, &sql, params);
        assert!(p.contains("USING COVERING INDEX jobs_user_listing (user=?)"), "{p}");
    }
    assert!(output::default_fields().iter().all(|f| f.lean()));
    // With the time window of sacct's -S/-E too.
    let f = Filter { start: Some(T0), end: Some(T0 + 3600), ..f };
    let (sql, params) = listing_sql(&f, None, true);
    assert!(plan(&conn, &sql, params).contains("COVERING INDEX jobs_user_listing"));
    // The sparse verdict columns' partial indexes still serve their filters.
    for (f, index) in [
        (Filter { categories: vec!["input_error".into()], ..Default::default() }, "jobs_category"),
        (Filter { outcomes: vec!["failed".into(), "incomplete".into()], ..Default::default() }, "jobs_outcome"),
        (Filter { programs: vec!["lammps".into()], ..Default::default() }, "jobs_program"),
    ] {
        let (sql, params) = listing_sql(&f, None, false);
        let p = plan(&conn, &sql, params);
        assert!(p.contains(index), "{index}: {p}");
    }
}

/// A listing rendered as its rows are read (what `query jobs` prints) is the table of the rows
/// read first: newest-first `--limit` rows turned around, and the module and tag cells filled in
/// afterwards.
#[test]
fn a_streamed_listing_renders_what_the_rows_render() {
    let c = ledger();
    let fields: Vec<_> =
        ["JobID", "Modules", "User", "Tags", "Start"].iter().map(|n| output::parse_field(n).unwrap()).collect();
    for limit in [None, Some(2)] {
        let rows = find_jobs(&c, &Filter::default(), limit).unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let extras =
            Extras { modules: modules_of(&c, &ids).unwrap(), tags: tags_of(&c, &ids).unwrap(), ..Default::default() };
        let mut listing = output::Listing::new(&fields, limit.is_some());
        each_job(&c, &Filter::default(), limit, false, |j| listing.push(&j)).unwrap();
        listing.complete(&extras);
        let table = output::table(&rows, &fields, &extras, true);
        assert_eq!(listing.table(true), table);
        assert_eq!(listing.csv(true), output::csv(&rows, &fields, &extras, true));
        assert_eq!(table.lines().count(), 2 + limit.unwrap_or(5), "{table}");
        let line = table.lines().find(|l| l.starts_with("102 ")).expect("job 102 is listed");
        assert!(line.contains("python/3.11") && line.contains("project=beta"), "{table}");
        if limit.is_some() {
            assert!(table.lines().nth(2).unwrap().starts_with("102 "), "oldest of the newest two first: {table}");
        }
    }
}

/// Events are derived, not stored (the merge tests' sample job: eight from its first node's
/// batch), and a batch applied twice gives them once.
#[test]
fn a_batch_applied_twice_gives_its_events_once() {
    let conn = db::open_memory();
    let mut s = Sample::new("tc", 42, T0);
    s.nnodes = 2;
    s.env_vars = 8;
    let b = s.batch(0);
    for _ in 0..2 {
        apply_group(&conn, &[&b], T0 + 1000).unwrap()[0].as_ref().unwrap();
    }
    assert_eq!(events_of(&conn, &[1]).unwrap()[&1].len(), 8);
}
