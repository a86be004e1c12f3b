//! Tests of the solver-log side of the ledger: the verdict columns, their filters, `query
//! errors` (with the Slurm-state mapping) and `query efficiency`, on made-up jobs with facts.

use super::efficiency::{self, EfficiencyArgs, EfficiencyBy};
use super::errors::{self, failure_category, ErrorsArgs, ErrorsBy};
use super::filter::Filter;
use super::jobfilter::JobFilterArgs;
use super::output::{self, Extras};
use super::*;
use crate::questions::plot::parse_plot_target;
use runledger_ledger::db;
use runledger_ledger::merge::apply_group;
use runledger_record::{ExitStatus, Fact, Item, JobState};
use runledger_synth::Sample;

const T0: i64 = 1_700_000_000;

/// Where a test's charts go: `$RUNLEDGER_KEEP_PLOTS` (to look at them), else a temporary directory.
fn plot_dir() -> (Option<tempfile::TempDir>, std::path::PathBuf) {
    match std::env::var_os("RUNLEDGER_KEEP_PLOTS") {
        Some(d) => (None, d.into()),
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

fn failed() -> ExitStatus {
    ExitStatus { code: 1, signal: 0, core_dumped: false }
}

fn job(id: u32, user: &str, state: JobState) -> Sample {
    let mut s = Sample::new("tc", id, T0 + i64::from(id) * 100);
    s.user = user.into();
    s.uid = 1000 + id;
    s.state = state;
    if state != JobState::Completed {
        s.exit = failed();
    }
    s
}

const LAMMPS_OK: &[(&str, &str)] = &[("mpi_ranks", "4"), ("steps", "1000"), ("atoms", "4000"), ("threads", "1")];

/// Twelve jobs; nine failed (see each line). Returns the ledger.
pub(crate) fn ledger() -> Connection {
    let mut jobs = Vec::new();
    // 1: LAMMPS success, 4 ranks.
    let mut j = job(1, "alice", JobState::Completed);
    j.set_log("LAMMPS", "success", None, None, LAMMPS_OK);
    jobs.push(j);
    // 2: LAMMPS input error.
    let mut j = job(2, "alice", JobState::Failed);
    j.set_log("LAMMPS", "failed", Some("input_error"), Some("ERROR: Illegal pair_style command"), &[]);
    jobs.push(j);
    // 3: LAMMPS lost atoms.
    let mut j = job(3, "bob", JobState::Failed);
    j.set_log("LAMMPS", "failed", Some("numerical_instability"), Some("ERROR: Lost atoms"), &[]);
    jobs.push(j);
    // 4: no log, TIMEOUT → time_limit.
    jobs.push(job(4, "bob", JobState::Timeout));
    // 5: OpenFOAM log just stops (truncated), Slurm says OOM → out_of_memory.
    let mut j = job(5, "carol", JobState::OutOfMemory);
    j.set_log("OpenFOAM pimpleFoam", "incomplete", Some("truncated"), None, &[("cells", "2500")]);
    jobs.push(j);
    // 6: no log, FAILED → unknown.
    jobs.push(job(6, "carol", JobState::Failed));
    // 7: no log, CANCELLED → cancelled.
    jobs.push(job(7, "dave", JobState::Cancelled));
    // 8: LAMMPS success on 2 nodes, 8 ranks.
    let mut j = job(8, "dave", JobState::Completed);
    j.nnodes = 2;
    j.set_log("LAMMPS", "success", None, None, &[("mpi_ranks", "8"), ("steps", "1000"), ("atoms", "4000")]);
    jobs.push(j);
    // 9: GROMACS unspecific failure, Slurm says TIMEOUT → time_limit (from the state).
    let mut j = job(9, "erin", JobState::Timeout);
    j.set_log("GROMACS gmx mdrun", "failed", Some("unknown"), Some("Fatal error"), &[]);
    jobs.push(j);
    // 10: the log says file_not_found but the job exited 0 (state COMPLETED): failed all the same.
    let mut j = job(10, "frank", JobState::Completed);
    j.set_log("LAMMPS", "failed", Some("file_not_found"), Some("ERROR: cannot open file"), &[]);
    jobs.push(j);
    // 11: NODE_FAIL, no log → node_failure.
    jobs.push(job(11, "frank", JobState::NodeFail));
    // 12: COMPLETED, no log: not failed.
    jobs.push(job(12, "frank", JobState::Completed));
    let conn = db::open_memory();
    let batches: Vec<runledger_record::Batch> =
        jobs.iter().flat_map(|s| (0..s.nnodes).map(move |n| s.batch(n))).collect();
    let refs: Vec<&runledger_record::Batch> = batches.iter().collect();
    for r in apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
    conn
}

fn ids(conn: &Connection, f: Filter) -> Vec<String> {
    find_jobs(conn, &f, None).unwrap().iter().map(|r| r.display_id()).collect()
}

#[test]
fn verdict_columns_come_from_the_job_level_facts() {
    let c = ledger();
    let rows = find_jobs(&c, &Filter::default(), None).unwrap();
    let r2 = rows.iter().find(|r| r.job_id == 2).unwrap();
    assert_eq!(r2.program.as_deref(), Some("LAMMPS"));
    assert_eq!(r2.outcome.as_deref(), Some("failed"));
    assert_eq!(r2.category.as_deref(), Some("input_error"));
    assert_eq!(r2.error.as_deref(), Some("ERROR: Illegal pair_style command"));
    let r4 = rows.iter().find(|r| r.job_id == 4).unwrap();
    assert_eq!((r4.program.as_deref(), r4.outcome.as_deref()), (None, None));
}

#[test]
fn the_worst_node_gives_the_verdict() {
    let conn = db::open_memory();
    let mut s = Sample::new("tc", 50, T0);
    s.nnodes = 3;
    let verdicts: [&[(&str, &str)]; 3] = [
        &[("program", "LAMMPS"), ("outcome", "success")],
        &[("outcome", "failed"), ("failure_category", "mpi_abort"), ("error", "MPI_ABORT was invoked")],
        &[("outcome", "failed"), ("failure_category", "numerical_instability"), ("error", "ERROR: Lost atoms")],
    ];
    let mut batches = Vec::new();
    for (n, facts) in verdicts.iter().enumerate() {
        let mut items = s.node_items(n as u32);
        for it in &mut items {
            if let Item::JobEnd(j) = it {
                j.facts = facts
                    .iter()
                    .map(|(k, v)| Fact { source: String::new(), key: k.to_string(), value: v.to_string(), unit: None })
                    .collect();
            }
        }
        batches.push(runledger_record::Batch::new(s.node_name(n as u32), items));
    }
    // Whatever order the nodes report in.
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let conn2 = db::open_memory();
        for i in order {
            apply_group(&conn2, &[&batches[i]], T0).unwrap()[0].as_ref().unwrap();
        }
        let r = &find_jobs(&conn2, &Filter::default(), None).unwrap()[0];
        assert_eq!(r.outcome.as_deref(), Some("failed"), "{order:?}");
        assert_eq!(r.category.as_deref(), Some("numerical_instability"), "the most specific, {order:?}");
        assert_eq!(r.error.as_deref(), Some("ERROR: Lost atoms"));
        assert_eq!(r.program.as_deref(), Some("LAMMPS"), "from the node that names it");
    }
    drop(conn);
}

#[test]
fn filters_on_program_outcome_and_category() {
    let c = ledger();
    let f = |p: &[&str], o: &[&str], cat: &[&str]| Filter {
        programs: p.iter().map(|s| s.to_string()).collect(),
        outcomes: o.iter().map(|s| s.to_string()).collect(),
        categories: cat.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(ids(&c, f(&["lammps"], &[], &[])), vec!["1", "2", "3", "8", "10"]);
    assert_eq!(ids(&c, f(&["lammps"], &["failed"], &[])), vec!["2", "3", "10"]);
    assert_eq!(ids(&c, f(&[], &[], &["input_error", "truncated"])), vec!["2", "5"]);
    // A name matches the labels it begins, in any case; not a mere prefix of a word.
    assert_eq!(ids(&c, f(&["OPENFOAM"], &[], &[])), vec!["5"]);
    assert_eq!(ids(&c, f(&["openfoam pimplefoam"], &[], &[])), vec!["5"]);
    assert!(ids(&c, f(&["open"], &[], &[])).is_empty());
    assert!(ids(&c, f(&["lammps_"], &[], &[])).is_empty(), "LIKE wildcards are escaped");
    assert_eq!(ids(&c, f(&["gromacs", "lammps"], &["success"], &[])), vec!["1", "8"]);
}

#[test]
fn output_fields_json_and_detail_show_the_verdict() {
    let c = ledger();
    let rows = find_jobs(&c, &Filter { jobs: vec![filter::JobSel { id: 2, task: None }], ..Default::default() }, None)
        .unwrap();
    let fields: Vec<_> =
        ["JobID", "Program", "Outcome", "Category", "Error"].iter().map(|n| output::parse_field(n).unwrap()).collect();
    let t = output::table(&rows, &fields, &Extras::default(), true);
    assert!(
        t.lines().nth(2).unwrap().starts_with("2     LAMMPS  failed  input_error ERROR: Illegal pair_style"),
        "{t}"
    );
    let extras = Extras { facts: job_facts_of(&c, &rows).unwrap(), ..Default::default() };
    let v: serde_json::Value = serde_json::from_str(&detail::jobs_json(&rows, &extras)).unwrap();
    assert_eq!(v[0]["program"], "LAMMPS");
    assert_eq!(v[0]["outcome"], "failed");
    assert_eq!(v[0]["category"], "input_error");
    assert_eq!(v[0]["error"], "ERROR: Illegal pair_style command");
    assert_eq!(v[0]["job_facts"]["failure_category"], "input_error");
    assert_eq!(v[0]["job_facts"]["error_source"], "/home/alice/run/log.2");

    let d = job_detail(&c, rows[0].clone()).unwrap();
    let text = detail::detail_text(&d);
    for needle in [
        "Program      LAMMPS",
        "Log outcome  failed (input_error)",
        "Log error    ERROR: Illegal pair_style command",
        "Facts (job level, from n0001's epilog):",
        "Facts from /home/alice/run/log.2 (on n0001):",
        "  program          LAMMPS\n  outcome          failed\n  failure_category input_error\n",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let j: serde_json::Value = serde_json::from_str(&detail::detail_json(&[d])).unwrap();
    assert_eq!(j[0]["job_facts"]["program"], "LAMMPS");
    assert_eq!(j[0]["category"], "input_error");
    assert!(j[0]["facts"].as_array().unwrap().iter().any(|f| f["source"] == "/home/alice/run/log.2"));
}

#[test]
fn state_mapping_rule() {
    // A specific log category wins.
    assert_eq!(failure_category("TIMEOUT", Some("failed"), Some("input_error")), ("input_error".into(), true));
    assert_eq!(failure_category("COMPLETED", Some("failed"), Some("file_not_found")), ("file_not_found".into(), true));
    // Else the Slurm state's meaning.
    assert_eq!(failure_category("TIMEOUT", None, None), ("time_limit".into(), false));
    assert_eq!(
        failure_category("OUT_OF_MEMORY", Some("incomplete"), Some("truncated")),
        ("out_of_memory".into(), false)
    );
    assert_eq!(failure_category("CANCELLED", None, None), ("cancelled".into(), false));
    assert_eq!(failure_category("NODE_FAIL", None, None), ("node_failure".into(), false));
    assert_eq!(failure_category("TIMEOUT", Some("failed"), Some("unknown")), ("time_limit".into(), false));
    // Else the log's unspecific category, else unknown.
    assert_eq!(failure_category("FAILED", Some("incomplete"), Some("truncated")), ("truncated".into(), true));
    assert_eq!(failure_category("FAILED", None, None), ("unknown".into(), false));
    assert_eq!(failure_category("FAILED", Some("success"), None), ("unknown".into(), false));
}

#[test]
fn errors_count_failed_jobs_by_category() {
    let c = ledger();
    let s = errors::error_stats(&c, &Filter::default(), ErrorsBy::Category).unwrap();
    assert_eq!((s.matched, s.failed), (12, 9));
    let get = |cat: &str| s.categories.iter().find(|x| x.0 == cat).map(|x| (x.1, x.2));
    assert_eq!(s.categories[0].0, "time_limit", "most first: {:?}", s.categories);
    assert_eq!(get("time_limit"), Some((2, 0)));
    assert_eq!(get("input_error"), Some((1, 1)));
    assert_eq!(get("numerical_instability"), Some((1, 1)));
    assert_eq!(get("file_not_found"), Some((1, 1)));
    assert_eq!(get("out_of_memory"), Some((1, 0)));
    assert_eq!(get("cancelled"), Some((1, 0)));
    assert_eq!(get("node_failure"), Some((1, 0)));
    assert_eq!(get("unknown"), Some((1, 0)));
    assert_eq!(s.categories.iter().map(|x| x.1).sum::<u64>(), 9);

    let s = errors::error_stats(&c, &Filter::default(), ErrorsBy::User).unwrap();
    let frank = s.groups.iter().find(|g| g.name == "frank").unwrap();
    assert_eq!((frank.jobs, frank.failed), (3, 2));
    assert_eq!(frank.categories.get("file_not_found"), Some(&1));
    assert_eq!(frank.categories.get("node_failure"), Some(&1));
    let s = errors::error_stats(&c, &Filter::default(), ErrorsBy::Program).unwrap();
    let lammps = s.groups.iter().find(|g| g.name == "LAMMPS").unwrap();
    assert_eq!((lammps.jobs, lammps.failed), (5, 3));
    let none = s.groups.iter().find(|g| g.name == "(no log)").unwrap();
    assert_eq!((none.jobs, none.failed), (5, 4));
    // Filters apply.
    let f = Filter { users: vec!["bob".into()], ..Default::default() };
    let s = errors::error_stats(&c, &f, ErrorsBy::Category).unwrap();
    assert_eq!((s.matched, s.failed), (2, 2));
}

fn errors_args(by: ErrorsBy) -> ErrorsArgs {
    ErrorsArgs { by, filter: JobFilterArgs::default(), plot: None, json: false, csv: false, noheader: false }
}

#[test]
fn errors_render_as_table_csv_json_and_charts() {
    let c = ledger();
    let text = errors::run(&c, &errors_args(ErrorsBy::Category)).unwrap();
    assert!(text.starts_with("9 of 12 matching jobs failed (75.0%)."), "{text}");
    assert!(text.contains("Category               Jobs  Share  FromLog"), "{text}");
    assert!(text.contains("time_limit                2  22.2%        0"), "{text}");
    let mut a = errors_args(ErrorsBy::User);
    a.csv = true;
    let csv = errors::run(&c, &a).unwrap();
    assert!(csv.starts_with("User,Jobs,Failed,Failed%,time_limit,"), "{csv}");
    a.csv = false;
    a.json = true;
    let v: serde_json::Value = serde_json::from_str(&errors::run(&c, &a).unwrap()).unwrap();
    assert_eq!(v["failed_jobs"], 9);
    assert_eq!(v["groups"][0]["failed"], 2);
    assert!(v["groups"].as_array().unwrap().iter().any(|g| g["user"] == "carol"));

    let (_keep, dir) = plot_dir();
    for (by, name) in [(ErrorsBy::Category, "pie.png"), (ErrorsBy::User, "users.svg"), (ErrorsBy::Program, "p.png")] {
        let mut a = errors_args(by);
        let path = dir.join(name);
        a.plot = Some(parse_plot_target(path.to_str().unwrap()).unwrap());
        let text = errors::run(&c, &a).unwrap();
        assert!(text.contains("Chart written to"), "{text}");
        let bytes = std::fs::read(&path).unwrap();
        if name.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{name}");
        } else {
            let s = String::from_utf8(bytes).unwrap();
            assert!(s.starts_with("<svg") && s.contains("carol") && s.contains("time limit"), "{name}");
        }
    }
    let mut bad = errors_args(ErrorsBy::Category);
    bad.filter.starttime = Some(T0 + 10);
    bad.filter.endtime = Some(T0);
    assert!(
        matches!(errors::run(&c, &bad), Err(crate::questions::parse::CmdError::Usage(m)) if m.contains("after --endtime"))
    );
    let mut bad = errors_args(ErrorsBy::Category);
    bad.plot = Some(parse_plot_target("/nonexistent/dir/pie.png").unwrap());
    assert!(
        matches!(errors::run(&c, &bad), Err(crate::questions::parse::CmdError::Usage(m)) if m.contains("no directory /nonexistent/dir"))
    );
}

#[test]
fn efficiency_formulas() {
    assert_eq!(efficiency::cpu_efficiency(120.0, Some(30), Some(4)), Some(1.0));
    assert_eq!(efficiency::cpu_efficiency(120.0, Some(0), Some(4)), None);
    assert_eq!(efficiency::cpu_efficiency(120.0, Some(30), None), None);
    // 100 s × 64 ranks / (1e6 atoms × 1000 steps) = 6.4e-6 core-seconds per atom-step.
    assert_eq!(efficiency::runcrawler_efficiency(100.0, 64.0, 1e6, 1000.0), Some(6.4e-6));
    assert_eq!(efficiency::runcrawler_efficiency(100.0, 64.0, 0.0, 1000.0), None);
    assert_eq!(efficiency::number("250 (lines \"Timing for main\")"), Some(250.0));
    assert_eq!(efficiency::number("1.5e3"), Some(1500.0));
    assert_eq!(efficiency::number("x"), None);
    assert_eq!(efficiency::median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(efficiency::median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(efficiency::mean(&[]), None);
}

#[test]
fn efficiency_per_job_and_group_on_the_ledger() {
    let c = ledger();
    let completed = Filter { states: vec![JobState::Completed], ..Default::default() };
    let jobs = efficiency::efficiency_jobs(&c, &completed, EfficiencyBy::Ranks).unwrap();
    assert_eq!(jobs.iter().map(|j| j.job.as_str()).collect::<Vec<_>>(), vec!["1", "8", "10", "12"]);
    let j1 = &jobs[0];
    // Sample jobs: 30 s elapsed, 4 CPUs per node, CPU 1.75 s (batch) + 102 s (step 0) on node 1.
    assert_eq!(j1.ranks, Some(4.0));
    assert!((j1.cpu_efficiency.unwrap() - 103.75 / (30.0 * 4.0)).abs() < 1e-9);
    assert!((j1.efficiency.unwrap() - 30.0 * 4.0 / (4000.0 * 1000.0)).abs() < 1e-15);
    assert_eq!(j1.size_key, Some("atoms"));
    let j8 = &jobs[1];
    assert_eq!(j8.ranks, Some(8.0), "mpi_ranks fact");
    assert!((j8.cpu_efficiency.unwrap() - 206.75 / (30.0 * 8.0)).abs() < 1e-9);
    assert!((j8.efficiency.unwrap() - 30.0 * 8.0 / 4e6).abs() < 1e-15);
    // No mpi_ranks fact: the job's CPUs; no size: no efficiency.
    assert_eq!((jobs[3].ranks, jobs[3].efficiency), (Some(4.0), None));

    let groups = efficiency::summarise(&jobs);
    assert_eq!(groups.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(), vec!["4", "8"]);
    assert_eq!((groups[0].jobs, groups[0].sized_jobs, groups[0].cpu_jobs), (3, 1, 3));
    assert_eq!(groups[0].sizes, vec!["atoms"]);
    assert!((groups[0].eff_median.unwrap() - 3e-5).abs() < 1e-15);

    let by_part = efficiency::efficiency_jobs(&c, &completed, EfficiencyBy::Program).unwrap();
    let g = efficiency::summarise(&by_part);
    assert_eq!(g.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(), vec!["(no log)", "LAMMPS"]);
}

#[test]
fn efficiency_command_defaults_to_completed_and_plots() {
    let c = ledger();
    let (_keep, dir) = plot_dir();
    let path = dir.join("eff.png");
    let mut a = EfficiencyArgs {
        by: EfficiencyBy::Ranks,
        filter: JobFilterArgs { program: vec!["lammps".into()], ..Default::default() },
        plot: Some(parse_plot_target(path.to_str().unwrap()).unwrap()),
        json: false,
        csv: false,
        noheader: false,
    };
    let text = efficiency::run(&c, &a).unwrap();
    assert!(text.starts_with("3 jobs (2 with size and steps"), "{text}");
    assert!(text.contains("Ranks  Jobs  CPUEffMean"), "{text}");
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    a.plot = None;
    a.json = true;
    a.filter.state = vec![JobState::Failed];
    let v: serde_json::Value = serde_json::from_str(&efficiency::run(&c, &a).unwrap()).unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2, "-s chooses the states: {v}");
    a.json = false;
    a.csv = true;
    a.by = EfficiencyBy::Partition;
    a.filter = JobFilterArgs::default();
    let csv = efficiency::run(&c, &a).unwrap();
    assert!(
        csv.starts_with("Partition,Jobs,CPUEffMean,CPUEffMedian,SizedJobs,EffMean,EffMedian,Size\ncompute,4,"),
        "{csv}"
    );
}

/// Five LAMMPS-like jobs with input parameters (job-level `param.*` facts): lj/cut on 1 and 2
/// nodes, soft on 1 node twice, and one job without the parameter.
fn param_ledger() -> Connection {
    let mut jobs = Vec::new();
    for (id, style, nnodes) in
        [(1, Some("lj/cut"), 1), (2, Some("lj/cut"), 2), (3, Some("soft"), 1), (4, Some("soft"), 1), (5, None, 1)]
    {
        let mut j = job(id, "alice", JobState::Completed);
        j.nnodes = nnodes;
        let mut extra = vec![("mpi_ranks", "4"), ("steps", "1000"), ("atoms", "4000")];
        if let Some(s) = style {
            extra.push(("param.pair_style", s));
        }
        j.set_log("LAMMPS", "success", None, None, &extra);
        jobs.push(j);
    }
    let conn = db::open_memory();
    let batches: Vec<runledger_record::Batch> =
        jobs.iter().flat_map(|s| (0..s.nnodes).map(move |n| s.batch(n))).collect();
    let refs: Vec<&runledger_record::Batch> = batches.iter().collect();
    for r in apply_group(&conn, &refs, T0 + 90_000).unwrap() {
        r.unwrap();
    }
    conn
}

fn cell_str(c: &report::Cell) -> String {
    match c {
        report::Cell::Null => "-".into(),
        report::Cell::Text(t) => t.clone(),
        report::Cell::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn summary_groups_by_a_fact_alone_and_with_other_keys() {
    use super::summary::{self, parse_key, Key};
    let c = param_ledger();
    let key = parse_key("fact:param.pair_style").unwrap();
    assert_eq!(key, Key::Fact("fact:param.pair_style"));
    assert_eq!(parse_key("FACT:param.pair_style").unwrap(), key, "interned once, any case of the prefix");
    let groups = |keys: &[Key], f: &Filter| -> Vec<Vec<String>> {
        let r = summary::summary(&c, f, keys).unwrap();
        let jobs = r.col("jobs").unwrap();
        assert_eq!(r.columns[0], keys[0].name());
        r.rows.iter().map(|row| row[..keys.len()].iter().chain([&row[jobs]]).map(cell_str).collect()).collect()
    };
    let s =
        |v: &[&[&str]]| -> Vec<Vec<String>> { v.iter().map(|r| r.iter().map(|x| x.to_string()).collect()).collect() };
    // A job without the fact groups under the missing key (Null, "-"), as other keys' gaps do.
    assert_eq!(groups(&[key], &Filter::default()), s(&[&["-", "1"], &["lj/cut", "2"], &["soft", "2"]]));
    assert_eq!(
        groups(&[key, Key::Nodes], &Filter::default()),
        s(&[&["-", "1", "1"], &["lj/cut", "1", "1"], &["lj/cut", "2", "1"], &["soft", "1", "2"]])
    );
    assert_eq!(groups(&[Key::User, key], &Filter::default()).len(), 3);
    // With a filter on the fact.
    let lj = Filter { facts: vec![("param.pair_style".into(), "lj/cut".into())], ..Default::default() };
    assert_eq!(groups(&[key], &lj), s(&[&["lj/cut", "2"]]));
    // A fact nobody has: one group of every job.
    assert_eq!(groups(&[parse_key("fact:param.kspace_style").unwrap()], &Filter::default()), s(&[&["-", "5"]]));
}

#[test]
fn fact_keys_and_filters_are_validated() {
    use super::summary::parse_key;
    for bad in ["fact:", "fact: ", "fact:a b", "fact:x'y", "fact:a;b"] {
        let e = parse_key(bad).unwrap_err();
        assert!(e.contains("fact name"), "{bad}: {e}");
    }
    assert!(parse_key("facts").unwrap_err().contains("fact:NAME"));
    assert!(efficiency::parse_by("fact:").unwrap_err().contains("empty fact name"));
    assert!(efficiency::parse_by("size").unwrap_err().contains("fact:NAME"));
    assert_eq!(efficiency::parse_by("Nodes").unwrap(), EfficiencyBy::Nodes);
    let cmd = || <crate::cli::Cli as clap::CommandFactory>::command();
    let e = cmd().try_get_matches_from(["collector", "query", "jobs", "--fact", "param.pair_style"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    assert!(e.to_string().contains("NAME=VALUE"), "{e}");
    let e = cmd().try_get_matches_from(["collector", "query", "summary", "--by", "fact:"]).unwrap_err();
    assert!(e.to_string().contains("empty fact name"), "{e}");
}

#[test]
fn jobs_filter_on_facts_and_efficiency_groups_by_one() {
    let c = param_ledger();
    let fact = |pairs: &[(&str, &str)]| Filter {
        facts: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    assert_eq!(ids(&c, fact(&[("param.pair_style", "lj/cut")])), vec!["1", "2"]);
    assert_eq!(ids(&c, fact(&[("param.pair_style", "soft")])), vec!["3", "4"]);
    // Repeated: all must hold.
    assert_eq!(ids(&c, fact(&[("param.pair_style", "soft"), ("mpi_ranks", "4")])), vec!["3", "4"]);
    assert!(ids(&c, fact(&[("param.pair_style", "soft"), ("mpi_ranks", "8")])).is_empty());
    // Only job-level facts (source ''): the same key in a log's per-file facts does not count.
    assert!(ids(&c, fact(&[("error_source", "x")])).is_empty());
    assert_eq!(ids(&c, fact(&[("error_source", "/home/alice/run/log.3")])), vec!["3"]);

    let by = efficiency::parse_by("fact:param.pair_style").unwrap();
    let jobs = efficiency::efficiency_jobs(&c, &Filter::default(), by).unwrap();
    let groups = efficiency::summarise(&jobs);
    let got: Vec<(&str, usize)> = groups.iter().map(|g| (g.group.as_str(), g.jobs)).collect();
    assert_eq!(got, vec![("-", 1), ("lj/cut", 2), ("soft", 2)]);
    let a = EfficiencyArgs {
        by,
        filter: JobFilterArgs { fact: vec![("param.pair_style".into(), "soft".into())], ..Default::default() },
        plot: None,
        json: true,
        csv: false,
        noheader: false,
    };
    let v: serde_json::Value = serde_json::from_str(&efficiency::run(&c, &a).unwrap()).unwrap();
    assert_eq!(v["by"], "fact:param.pair_style");
    assert_eq!(v["groups"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["groups"][0]["fact:param.pair_style"], "soft");
    assert_eq!(v["groups"][0]["jobs"], 2);
}
