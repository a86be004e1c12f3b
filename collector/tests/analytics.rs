//! The manager-facing queries (summary, modules, who-used, co-usage, events, throughput,
//! utilization) on a small hand-made ledger whose answers are worked out by hand below.

use clap::Parser;
use runledger_collector::cli::Cli;
use runledger_collector::questions::query::events::{self, EventQuery};
use runledger_collector::questions::query::filter::Filter;
use runledger_collector::questions::query::report::{Cell, Report};
use runledger_collector::questions::query::summary::{self, Key};
use runledger_collector::questions::query::usage::{self, Period};
use runledger_ledger::{db, merge};
use runledger_record::{ExitStatus, JobState, Module};
use runledger_synth::Sample;
use rusqlite::Connection;

/// Midnight UTC, so day buckets (offset 0) are easy to count.
const T0: i64 = 1_699_920_000;
const DAY: i64 = 86_400;

/// Five jobs (Sample: 4 CPUs per node; CPU seconds 1.75 for the batch step + 102 + node index
/// for step 0 on each node):
///
/// | job | user  | account | start      | wall | nodes | state     | modules               |
/// |-----|-------|---------|------------|------|-------|-----------|-----------------------|
/// | 100 | alice | physics | T0         | 100  | 1     | COMPLETED | gcc/12.2.0 openmpi/4.1.4 |
/// | 101 | alice | physics | T0+3600    | 200  | 2     | FAILED    | gcc openmpi           |
/// | 102 | bob   | chem    | T0+7200    | 300  | 1     | COMPLETED | python/3.11           |
/// | 103 | bob   | chem    | T0+1d      | 400  | 1     | TIMEOUT   | gcc openmpi           |
/// | 104 | carol | physics | T0+2d      | 1000 | 1     | CANCELLED | gcc openmpi           |
fn ledger() -> Connection {
    let conn = db::open_memory();
    let mk = |id: u32, user: &str, account: &str, start: i64, dur: i64, nnodes: u32, state: JobState| {
        let mut s = Sample::new("tc", id, start);
        s.user = user.into();
        s.uid = 1000 + id;
        s.account = account.into();
        s.duration = dur;
        s.nnodes = nnodes;
        s.state = state;
        if state != JobState::Completed {
            s.exit = ExitStatus { code: 1, signal: 0, core_dumped: false };
        }
        s
    };
    let mut jobs = [
        mk(100, "alice", "physics", T0, 100, 1, JobState::Completed),
        mk(101, "alice", "physics", T0 + 3600, 200, 2, JobState::Failed),
        mk(102, "bob", "chem", T0 + 7200, 300, 1, JobState::Completed),
        mk(103, "bob", "chem", T0 + DAY, 400, 1, JobState::Timeout),
        mk(104, "carol", "physics", T0 + 2 * DAY, 1000, 1, JobState::Cancelled),
    ];
    jobs[2].modules = vec![Module { name: "python".into(), version: Some("3.11".into()), file: None }];
    let batches: Vec<_> = jobs.iter().flat_map(|s| (0..s.nnodes).map(move |n| s.batch(n))).collect();
    let refs: Vec<_> = batches.iter().collect();
    for r in merge::apply_group(&conn, &refs, T0 + 3 * DAY).unwrap() {
        r.unwrap();
    }
    conn
}

fn col<'a>(r: &'a Report, row: usize, name: &str) -> &'a Cell {
    &r.rows[row][r.col(name).unwrap_or_else(|| panic!("no column {name}"))]
}

fn num(c: &Cell) -> f64 {
    c.num().unwrap_or_else(|| panic!("not a number: {c:?}"))
}

fn text(c: &Cell) -> &str {
    match c {
        Cell::Text(t) => t,
        other => panic!("not text: {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn summary_by_account_counts_exactly() {
    let conn = ledger();
    let mut r = summary::summary(&conn, &Filter::default(), &[Key::Account]).unwrap();
    summary::sort_and_limit(&mut r, &[Key::Account], None, None).unwrap();
    assert_eq!(r.rows.len(), 2);
    // physics first (3 jobs).
    assert_eq!(text(col(&r, 0, "account")), "physics");
    assert_eq!(num(col(&r, 0, "jobs")), 3.0);
    assert_eq!(num(col(&r, 0, "users")), 2.0);
    // Allocated: 100 s x 4 + 200 s x 8 + 1000 s x 4 core-seconds.
    assert!(close(num(col(&r, 0, "core_hours")), 6000.0 / 3600.0));
    // Used: 103.75 + (1.75 + 102 + 103) + 103.75.
    assert!(close(num(col(&r, 0, "cpu_hours")), 414.25 / 3600.0));
    assert!(close(num(col(&r, 0, "cpu_efficiency")), 414.25 / 6000.0));
    // One FAILED of three ended jobs; CANCELLED is not a failure.
    assert!(close(num(col(&r, 0, "failure_rate")), 1.0 / 3.0));
    assert!(close(num(col(&r, 0, "wall_p50_s")), 200.0));
    // numpy.percentile([100, 200, 1000], 95) == 920
    assert!(close(num(col(&r, 0, "wall_p95_s")), 920.0));
    assert_eq!(text(col(&r, 1, "account")), "chem");
    assert_eq!(num(col(&r, 1, "jobs")), 2.0);
    assert_eq!(num(col(&r, 1, "users")), 1.0);
    assert!(close(num(col(&r, 1, "failure_rate")), 0.5));
    assert!(close(num(col(&r, 1, "wall_p50_s")), 350.0));
}

#[test]
fn summary_by_several_keys_modules_and_time() {
    let conn = ledger();
    let keys = [Key::Module];
    let r = summary::summary(&conn, &Filter::default(), &keys).unwrap();
    let by: Vec<(String, f64)> = r.rows.iter().map(|row| (text(&row[0]).to_string(), num(&row[1]))).collect();
    assert_eq!(by, vec![("gcc".into(), 4.0), ("openmpi".into(), 4.0), ("python".into(), 1.0)]);

    let keys = [Key::ModuleVersion, Key::State];
    let r = summary::summary(&conn, &Filter::default(), &keys).unwrap();
    let gcc_failed = r.rows.iter().find(|row| text(&row[0]) == "gcc/12.2.0" && text(&row[1]) == "FAILED").unwrap();
    assert_eq!(num(&gcc_failed[2]), 1.0);

    // Combined filters: physics jobs that completed or failed, by user.
    let f = Filter {
        accounts: vec!["physics".into()],
        states: vec![JobState::Completed, JobState::Failed],
        ..Default::default()
    };
    let r = summary::summary(&conn, &f, &[Key::User, Key::Nodes]).unwrap();
    let rows: Vec<(String, f64, f64)> =
        r.rows.iter().map(|row| (text(&row[0]).to_string(), num(&row[1]), num(&row[2]))).collect();
    assert_eq!(rows, vec![("alice".into(), 1.0, 1.0), ("alice".into(), 2.0, 1.0)]);

    // Ranks: Sample runs 2 tasks per node in step 0.
    let r = summary::summary(&conn, &Filter::default(), &[Key::Ranks]).unwrap();
    let rows: Vec<(f64, f64)> = r.rows.iter().map(|row| (num(&row[0]), num(&row[1]))).collect();
    assert_eq!(rows, vec![(2.0, 4.0), (4.0, 1.0)]);

    // Time keys exist and count every job once.
    for k in [Key::Year, Key::Month, Key::Week, Key::Day, Key::Hour, Key::Weekday] {
        let r = summary::summary(&conn, &Filter::default(), &[k]).unwrap();
        let total: f64 = r.rows.iter().map(|row| num(&row[1])).sum();
        assert_eq!(total, 5.0, "{k:?}");
    }
}

#[test]
fn summary_sort_and_limit() {
    let conn = ledger();
    let keys = [Key::User];
    let mut r = summary::summary(&conn, &Filter::default(), &keys).unwrap();
    summary::sort_and_limit(&mut r, &keys, Some("wall_p50_s"), Some(2)).unwrap();
    let users: Vec<&str> = r.rows.iter().map(|row| text(&row[0])).collect();
    assert_eq!(users, vec!["carol", "bob"]);
    let mut r = summary::summary(&conn, &Filter::default(), &keys).unwrap();
    summary::sort_and_limit(&mut r, &keys, Some("user"), None).unwrap();
    assert_eq!(text(&r.rows[0][0]), "alice");
    let e = summary::sort_and_limit(&mut r, &keys, Some("colour"), None).unwrap_err();
    assert!(e.contains("'colour'") && e.contains("core_hours"), "{e}");
}

#[test]
fn modules_count_jobs_and_distinct_users() {
    let conn = ledger();
    let r = usage::modules(&conn, &Filter::default(), false, false, Some(2)).unwrap();
    assert_eq!(r.rows.len(), 2);
    assert_eq!(text(col(&r, 0, "module")), "gcc");
    assert_eq!(text(col(&r, 0, "version")), "12.2.0");
    assert_eq!(num(col(&r, 0, "jobs")), 4.0);
    assert_eq!(num(col(&r, 0, "users")), 3.0);
    assert!(close(num(col(&r, 0, "job_share")), 0.8));
    let r =
        usage::modules(&conn, &Filter { users: vec!["bob".into()], ..Default::default() }, true, true, None).unwrap();
    let rows: Vec<(String, f64)> = r.rows.iter().map(|row| (text(&row[0]).to_string(), num(&row[3]))).collect();
    assert_eq!(rows, vec![("gcc".into(), 1.0), ("openmpi".into(), 1.0), ("python".into(), 1.0)]);
}

#[test]
fn who_used_before_and_after_a_split() {
    let conn = ledger();
    let m = Module { name: "openmpi".into(), version: None, file: None };
    let periods = [
        Period { label: "before".into(), from: None, to: Some(T0 + 5000) },
        Period { label: "after".into(), from: Some(T0 + 5000), to: None },
    ];
    let r = usage::who_used(&conn, &Filter::default(), &m, &periods).unwrap();
    assert_eq!(r.rows.len(), 2, "{}", r.table(true));
    assert_eq!(text(col(&r, 0, "period")), "before");
    assert_eq!(text(col(&r, 0, "module")), "openmpi/4.1.4");
    assert_eq!(num(col(&r, 0, "jobs")), 2.0);
    assert_eq!(num(col(&r, 0, "users")), 1.0);
    assert!(close(num(col(&r, 0, "failure_rate")), 0.5));
    assert_eq!(text(col(&r, 0, "top_users")), "alice(2)");
    assert_eq!(num(col(&r, 1, "jobs")), 2.0);
    assert_eq!(num(col(&r, 1, "users")), 2.0);
    assert_eq!(num(col(&r, 1, "accounts")), 2.0);
    assert!(close(num(col(&r, 1, "failure_rate")), 0.5));
    // Unknown module: no rows, no error.
    let none = Module { name: "nope".into(), version: None, file: None };
    assert!(usage::who_used(&conn, &Filter::default(), &none, &periods[..1]).unwrap().rows.is_empty());
}

#[test]
fn phi_on_constructed_cases() {
    // Always together: 1; never together, complementary: -1; independent: 0.
    assert!(close(usage::phi(4.0, 2.0, 2.0, 2.0).unwrap(), 1.0));
    assert!(close(usage::phi(4.0, 2.0, 2.0, 0.0).unwrap(), -1.0));
    assert!(close(usage::phi(4.0, 2.0, 2.0, 1.0).unwrap(), 0.0));
    assert!(close(usage::phi(4.0, 2.0, 1.0, 0.0).unwrap(), -2.0 / 12f64.sqrt()));
    assert_eq!(usage::phi(4.0, 4.0, 2.0, 2.0), None);

    let conn = ledger();
    let r = usage::co_usage(&conn, &Filter::default(), false, 1, None).unwrap();
    assert_eq!(r.rows.len(), 1, "{}", r.table(true));
    assert_eq!((text(&r.rows[0][0]), text(&r.rows[0][1])), ("gcc", "openmpi"));
    assert_eq!(num(col(&r, 0, "jobs_both")), 4.0);
    // n = 5, a = b = ab = 4: (20 - 16) / sqrt(4 * 1 * 4 * 1) = 1.
    assert!(close(num(col(&r, 0, "phi")), 1.0));
    assert!(usage::co_usage(&conn, &Filter::default(), false, 5, None).unwrap().rows.is_empty());
}

#[test]
fn throughput_buckets_include_empty_ones() {
    let conn = ledger();
    let r = events::throughput(&conn, &Filter::default(), DAY / 2, Some(0)).unwrap();
    let rows: Vec<(f64, f64, f64, f64)> =
        r.rows.iter().map(|row| (num(&row[0]), num(&row[1]), num(&row[2]), num(&row[3]))).collect();
    let t = T0 as f64;
    let h12 = (DAY / 2) as f64;
    assert_eq!(
        rows,
        vec![
            (t, 3.0, 1.0, 3.0),
            (t + h12, 0.0, 0.0, 3.0),
            (t + 2.0 * h12, 1.0, 1.0, 4.0),
            (t + 3.0 * h12, 0.0, 0.0, 4.0),
            (t + 4.0 * h12, 1.0, 0.0, 5.0),
        ]
    );
    // A range from -S/-E: the whole range is listed even where nothing ended.
    let f = Filter { start: Some(T0 - DAY), end: Some(T0 + DAY - 1), ..Default::default() };
    let r = events::throughput(&conn, &f, DAY, Some(0)).unwrap();
    let jobs: Vec<f64> = r.rows.iter().map(|row| num(&row[1])).collect();
    assert_eq!(jobs, vec![0.0, 3.0]);
}

#[test]
fn utilization_integrates_busy_time() {
    let conn = ledger();
    let f = Filter { users: vec!["alice".into()], ..Default::default() };
    let r = events::utilization(&conn, &f, 3600, Some(0)).unwrap();
    assert_eq!(r.rows.len(), 2, "{}", r.table(true));
    assert!(close(num(col(&r, 0, "jobs")), 100.0 / 3600.0));
    assert!(close(num(col(&r, 0, "nodes")), 100.0 / 3600.0));
    assert!(close(num(col(&r, 1, "jobs")), 200.0 / 3600.0));
    assert!(close(num(col(&r, 1, "nodes")), 400.0 / 3600.0));
    assert!(close(num(col(&r, 1, "cores")), 1600.0 / 3600.0));
    // A job spanning several buckets: carol's 1000 s job over 300 s buckets.
    let f = Filter { users: vec!["carol".into()], ..Default::default() };
    let r = events::utilization(&conn, &f, 300, Some(0)).unwrap();
    let jobs: Vec<f64> = r.rows.iter().map(|row| num(&row[1])).collect();
    assert_eq!(jobs.len(), 4);
    assert!(jobs[..3].iter().all(|&j| close(j, 1.0)));
    assert!(close(jobs[3], 100.0 / 300.0));
}

#[test]
fn events_filter_by_job_kind_and_transition() {
    let conn = ledger();
    let all = events::events(&conn, &Filter::default(), &EventQuery::default()).unwrap();
    // Per node: step_started x (1 + batch on the first node), task_exited x (2 + 1), step_ended x
    // (1 + 1), job_ended x 1 -> 8 on a first node, 5 on another; job 101 has two nodes.
    assert_eq!(all.rows.len(), 5 * 8 + 5);
    let q = EventQuery { kinds: vec!["job_ended".into()], ..Default::default() };
    let f = Filter {
        jobs: vec![runledger_collector::questions::query::filter::JobSel { id: 101, task: None }],
        ..Default::default()
    };
    let r = events::events(&conn, &f, &q).unwrap();
    assert_eq!(r.rows.len(), 2);
    assert!(r.rows.iter().all(|row| text(&row[r.col("to_state").unwrap()]) == "FAILED"));
    let q = EventQuery { to_state: vec!["failed".into()], ..Default::default() };
    assert_eq!(events::events(&conn, &Filter::default(), &q).unwrap().rows.len(), 2);
    let q = EventQuery { from_state: vec!["PENDING".into()], after: Some(T0 + DAY), ..Default::default() };
    let r = events::events(&conn, &Filter::default(), &q).unwrap();
    assert_eq!(r.rows.len(), 4, "{}", r.table(true));
    let q = EventQuery { limit: Some(3), ..Default::default() };
    assert_eq!(events::events(&conn, &Filter::default(), &q).unwrap().rows.len(), 3);
}

#[test]
fn intervals_parse_and_bad_ones_are_explained() {
    assert_eq!(events::parse_interval("10m").unwrap(), 600);
    assert_eq!(events::parse_interval("1h").unwrap(), 3600);
    assert_eq!(events::parse_interval("2d").unwrap(), 2 * DAY);
    assert_eq!(events::parse_interval("1w").unwrap(), 7 * DAY);
    for bad in ["", "10", "m", "0h", "5x", "1.5h", "-1h"] {
        let e = events::parse_interval(bad).unwrap_err();
        assert!(e.contains("10m"), "{bad}: {e}");
    }
}

#[test]
fn bad_command_lines_exit_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["query", "summary", "--by", "user,colour"], "'colour'"),
        (&["query", "summary"], "--by"),
        (&["query", "throughput", "--interval", "5x"], "'5x'"),
        (&["query", "utilization", "--interval", "0m"], "'0m'"),
        (&["query", "events", "--kind", "started"], "'started'"),
        (&["query", "who-used", "openmpi", "--split", "2026-01-01", "--after", "2026-02-01"], "--after"),
        (&["query", "modules", "--top", "many"], "'many'"),
    ];
    for (args, needle) in cases {
        let e = Cli::try_parse_from(std::iter::once("collector").chain(args.iter().copied())).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}");
        assert!(e.to_string().contains(needle), "{args:?}: {e}");
    }
    Cli::try_parse_from(["collector", "query", "summary", "--by", "Module_Version,weekday", "-A", "x", "--csv"])
        .unwrap();
}

#[test]
fn program_key_needs_the_column_or_says_why() {
    let conn = ledger();
    let has = summary::has_column(&conn, "jobs", "program").unwrap();
    let r = summary::summary(&conn, &Filter::default(), &[Key::Program]);
    if has {
        assert_eq!(r.unwrap().rows.iter().map(|row| num(&row[1])).sum::<f64>(), 5.0);
    } else {
        assert!(r.unwrap_err().contains("jobs.program"));
    }
}

#[test]
fn plots_are_written_as_png_and_svg() {
    use runledger_collector::questions::plot::{ensure_font, parse_plot_target};
    use runledger_collector::questions::plot_usage::{self, Bar, TimeSeries};
    if let Err(e) = ensure_font() {
        eprintln!("skipped: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for ext in ["png", "svg"] {
        let t = parse_plot_target(dir.path().join(format!("b.{ext}")).to_str().unwrap()).unwrap();
        let bars = vec![Bar { label: "gcc/12".into(), value: 4.0, note: "4 jobs".into() }];
        plot_usage::bars(&t, "Top", "all", "jobs (count)", &bars).unwrap();
        let s = TimeSeries { label: "jobs".into(), points: vec![(T0, 1.0), (T0 + 3600, 0.0), (T0 + 7200, 3.0)] };
        let t2 = parse_plot_target(dir.path().join(format!("s.{ext}")).to_str().unwrap()).unwrap();
        plot_usage::steps(&t2, "T", "all", ("jobs per hour", std::slice::from_ref(&s)), Some(("cumulative", &s)), 3600)
            .unwrap();
        let t3 = parse_plot_target(dir.path().join(format!("h.{ext}")).to_str().unwrap()).unwrap();
        let rows = vec!["Mon".to_string(), "Tue".to_string()];
        let cols: Vec<String> = (0..24).map(|h| h.to_string()).collect();
        let values = vec![vec![1.0; 24], vec![0.0; 24]];
        plot_usage::heatmap(&t3, "H", "all", "weekday", "hour", "jobs", &rows, &cols, &values).unwrap();
        for f in ["b", "s", "h"] {
            let bytes = std::fs::read(dir.path().join(format!("{f}.{ext}"))).unwrap();
            let ok = if ext == "png" { bytes.starts_with(b"\x89PNG") } else { bytes.starts_with(b"<svg") };
            assert!(ok && bytes.len() > 1000, "{f}.{ext}");
        }
    }
}
