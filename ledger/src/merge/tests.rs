use super::*;
use crate::db;
use crate::names::natural_cmp;
use runledger_record::{ExitStatus, Fact, JobState, STEP_BATCH};
use runledger_synth::Sample;
use rusqlite::types::ValueRef;
use std::collections::{BTreeMap, HashMap};

const T0: i64 = 1_700_000_000;
const RECEIVED: i64 = 1_700_001_000;

/// Every table, rows sorted, with ids replaced by what they stand for (ids depend on the order
/// rows were added in), so two databases built in different orders compare equal when they hold
/// the same facts. The tables of distinct values (hosts, strings, attrs, module lists and sets)
/// show through the rows that refer to them; a group's elapsed times as one sorted list.
pub(crate) fn dump(conn: &Connection) -> String {
    fn show(v: ValueRef) -> String {
        match v {
            ValueRef::Null => "NULL".to_string(),
            ValueRef::Integer(n) => n.to_string(),
            ValueRef::Real(f) => format!("{f}"),
            ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
            ValueRef::Blob(b) => format!("{b:?}"),
        }
    }
    fn map(conn: &Connection, sql: &str) -> HashMap<i64, String> {
        let mut out = HashMap::new();
        let mut st = conn.prepare(sql).unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let n = r.as_ref().column_count();
            let text: Vec<String> = (1..n).map(|i| show(r.get_ref(i).unwrap())).collect();
            out.insert(r.get(0).unwrap(), text.join("/"));
        }
        out
    }
    let jobs = map(conn, "SELECT id, cluster, job_id, start FROM jobs");
    let modules = map(conn, "SELECT id, name, version FROM modules");
    let hosts = map(conn, "SELECT id, name FROM hosts");
    let strings = map(conn, "SELECT id, value FROM strings");
    let attrs = map(conn, "SELECT * FROM attrs");
    let envs = map(conn, "SELECT id, hash FROM environments");
    let groups = map(conn, "SELECT id, cluster, account, partition, user, state FROM rollup");
    let resolve_list = |ids: Vec<i64>| ids.iter().map(|m| modules[m].clone()).collect::<Vec<_>>().join(" ");
    let lists: HashMap<i64, String> = conn
        .prepare("SELECT id, items FROM module_lists")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(id, items)| {
            let l = crate::store::parse_module_list(&items);
            let file = |f: Option<i64>| f.map(|f| strings[&f].clone());
            (id, l.into_iter().map(|(m, f)| format!("{}:{:?}", modules[&m], file(f))).collect::<Vec<_>>().join(" "))
        })
        .collect();
    let sets: HashMap<i64, String> =
        crate::store::module_sets(conn).unwrap().into_iter().map(|(id, ms)| (id, resolve_list(ms))).collect();
    let tables = [
        "jobs",
        "job_nodes",
        "steps",
        "modules",
        "environments",
        "tags",
        "facts",
        "rollup",
        "rollup_modules",
        "rollup_module_names",
        "rollup_ends",
        "rollup_cells",
        "rollup_hist",
        "rollup_cell_hist",
        "step_series",
    ];
    let mut out = String::new();
    for table in tables {
        let mut st = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
        let mut lines = Vec::new();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let mut cells = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let v = r.get_ref(i).unwrap();
                let text = show(v);
                let cell = match (table, name.as_str(), v) {
                    ("jobs" | "modules" | "environments" | "rollup", "id", _) => continue,
                    (_, "job", ValueRef::Integer(n)) => jobs[&n].clone(),
                    (_, "module", ValueRef::Integer(n)) => modules[&n].clone(),
                    (_, "node", ValueRef::Integer(n)) => hosts[&n].clone(),
                    (_, "attrs", ValueRef::Integer(n)) => attrs[&n].clone(),
                    (_, "argv" | "exe" | "cwd", ValueRef::Integer(n)) => strings[&n].clone(),
                    (_, "env", ValueRef::Integer(n)) => envs[&n].clone(),
                    (_, "modules", ValueRef::Integer(n)) => lists[&n].clone(),
                    (_, "module_set", ValueRef::Integer(n)) => sets[&n].clone(),
                    (_, "grp", ValueRef::Integer(n)) => groups[&n].clone(),
                    (_, "tasks", ValueRef::Blob(b)) => {
                        let end = r.get::<_, Option<i64>>("end").unwrap().unwrap_or(0);
                        format!("{:?}", crate::store::decode_tasks(b, end))
                    }
                    (_, "cpu" | "eff_cpu" | "idle", ValueRef::Blob(b)) => {
                        crate::store::ExactSum::from_blob(Some(b)).0.to_string()
                    }
                    (_, "hist", ValueRef::Blob(b)) => format!("{:?}", crate::walls::Hist::decode(b)),
                    _ => text,
                };
                cells.push(format!("{name}={cell}"));
            }
            lines.push(cells.join(" "));
        }
        lines.sort();
        out.push_str(&format!("== {table}\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

fn apply(conn: &Connection, batch: &Batch) {
    let r = apply_group(conn, &[batch], RECEIVED).unwrap();
    r.into_iter().next().unwrap().unwrap();
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn sample() -> Sample {
    let mut s = Sample::new("tc", 42, T0);
    s.nnodes = 2;
    s.env_vars = 8;
    s.facts = vec![Fact { source: "out.log".into(), key: "iterations".into(), value: "100".into(), unit: None }];
    s
}

/// A node's evidence worded from its exit status alone is stored as an empty blob, in its node
/// record and in the job's row, and every reader gets the words back (the merge's recompute
/// among them: the job's evidence is a node's).
#[test]
fn evidence_worded_from_the_exit_status_is_stored_as_nothing() {
    let conn = db::open_memory();
    let mut s = sample();
    s.state = JobState::Completed;
    let mut b = s.batch(0);
    let out = Some("/home/alice/slurm-42.out".to_string());
    for it in &mut b.items {
        match it {
            Item::JobEnd(j) => {
                j.exit = ExitStatus::default();
                j.state_evidence = Some("exit code 0 (exit 0:0)".into());
                (j.stdout, j.stderr) = (out.clone(), out.clone());
            }
            Item::StepEnd(e) if e.step_id == STEP_BATCH => (e.stdout, e.stderr) = (out.clone(), out.clone()),
            _ => {}
        }
    }
    apply(&conn, &b);
    let kinds = |sql: &str| count(&conn, &format!("SELECT count(*) FROM {sql} WHERE typeof(state_evidence) = 'blob'"));
    assert_eq!((kinds("job_nodes"), kinds("jobs")), (1, 1));
    // The standard error path, the standard output's: stored as nothing, read back whole.
    // (The node record's stdout is the batch step's, so stored as nothing too: see
    // node_output_path_is_the_batch_steps_stored_once.)
    for (table, stdout) in [("steps n", "n.stdout"), ("job_nodes n", crate::store::NODE_STDOUT_SQL)] {
        let stderr: Vec<(String, Option<String>)> = conn
            .prepare(&format!("SELECT typeof(stderr), {stdout}, stderr FROM {table} WHERE stdout IS NOT NULL"))
            .unwrap()
            .query_map([], |r| {
                let stdout: Option<String> = r.get(1)?;
                Ok((r.get(0)?, crate::store::stderr_at(r, 2, stdout.as_deref())?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stderr, [("blob".to_string(), out.clone())], "{table}");
    }
    let ev: Option<String> = conn
        .query_row("SELECT exit_code, signal, state_evidence FROM jobs", [], |r| {
            crate::store::evidence_at(r, 2, r.get(0)?, r.get(1)?)
        })
        .unwrap();
    assert_eq!(ev.as_deref(), Some("exit code 0 (exit 0:0)"));
    // The second node's failure takes over: its evidence is kept as it came.
    let mut b2 = s.batch(1);
    for it in &mut b2.items {
        if let Item::JobEnd(j) = it {
            j.exit = ExitStatus { code: 0, signal: 11, core_dumped: true };
            j.state = JobState::Failed;
            j.state_evidence = Some("segfault in rank 3".into());
        }
    }
    apply(&conn, &b2);
    assert_eq!((kinds("job_nodes"), kinds("jobs")), (1, 0));
    let (state, ev): (String, Option<String>) =
        conn.query_row("SELECT state, state_evidence FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((state.as_str(), ev.as_deref()), ("FAILED", Some("segfault in rank 3")));
}

/// A step's CPU seconds are stored as whole microseconds (the unit of getrusage, where the
/// plugin reads them) and read back as they came; the job's sum is a sum of integers, exact and
/// the same in any order.
#[test]
fn step_cpu_is_stored_in_microseconds_and_summed_exactly() {
    let s = sample();
    let mut batches = [s.batch(0), s.batch(1)];
    let given = [(0.1, 1.234567), (0.7, 0.000001)];
    // Steps ended on each node, each with its node's CPU times.
    let mut steps = [0u32; 2];
    for ((b, (user, sys)), n) in batches.iter_mut().zip(given).zip(&mut steps) {
        for it in &mut b.items {
            if let Item::StepEnd(e) = it {
                (e.cpu_user_s, e.cpu_sys_s) = (user, sys);
                *n += 1;
            }
        }
    }
    for order in [[0, 1], [1, 0]] {
        let conn = db::open_memory();
        for i in order {
            apply(&conn, &batches[i]);
        }
        let stored: Vec<(String, String, f64, f64)> = conn
            .prepare(
                "SELECT typeof(cpu_user_us), typeof(cpu_sys_us), cpu_user_us, cpu_sys_us FROM steps
                 ORDER BY node, step_id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(stored.iter().all(|(a, b, ..)| a == "real" && b == "real"), "{stored:?}");
        let mut micros: Vec<(f64, f64)> = stored.iter().map(|s| (s.2, s.3)).collect();
        let mut want: Vec<(f64, f64)> = given
            .iter()
            .zip(steps)
            .flat_map(|(&(u, s), n)| std::iter::repeat_n(((u * 1e6_f64).round(), (s * 1e6_f64).round()), n as usize))
            .collect();
        micros.sort_by(|a, b| a.partial_cmp(b).unwrap());
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(micros, want);
        // Integral, so SQLite's record holds each as an integer (not an 8-byte float).
        assert!(micros.iter().all(|&(u, s)| u.fract() == 0.0 && s.fract() == 0.0));
        // Read back as seconds, each exactly as it came.
        let back: Vec<(f64, f64)> = conn
            .prepare("SELECT cpu_user_us / 1e6, cpu_sys_us / 1e6 FROM steps")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (u, s) in back {
            assert!([0.1, 0.7].contains(&u) && [1.234567, 0.000001].contains(&s), "{u} {s}");
        }
        let (user, sys): (f64, f64) =
            conn.query_row("SELECT cpu_user_s, cpu_sys_s FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        // 0.1 s on each of node 0's steps, 0.7 s on node 1's: a sum of tenths, exactly.
        let [n0, n1] = steps.map(f64::from);
        assert_eq!(user, (n0 + 7.0 * n1) / 10.0, "order {order:?}");
        assert_eq!(sys, (1_234_567.0 * n0 + n1) / 1e6, "order {order:?}");
    }
}

/// The batch node's output path is the batch step's: stored once, in the step, whichever record
/// comes first, and read back whole; a node record naming another file keeps its own text, and
/// so does a packed one when the step's path changes after it.
#[test]
fn node_output_path_is_the_batch_steps_stored_once() {
    let s = sample();
    let items = s.node_items(0);
    let out = format!("/home/{}/run/slurm-{}.out", s.user, s.job_id);
    let node_stdout = |conn: &Connection| -> (String, Option<String>) {
        conn.query_row(
            &format!("SELECT typeof(n.stdout), {} FROM job_nodes n", crate::store::NODE_STDOUT_SQL),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (ends, rest): (Vec<Item>, Vec<Item>) = items.iter().cloned().partition(|i| matches!(i, Item::JobEnd(_)));
    for (first, then) in [(&rest, &ends), (&ends, &rest)] {
        let conn = db::open_memory();
        apply(&conn, &Batch::new("n", first.clone()));
        apply(&conn, &Batch::new("n", then.clone()));
        assert_eq!(node_stdout(&conn), ("blob".to_string(), Some(out.clone())));
        // The batch step's path changes (a forged or corrupt record): the node keeps its own.
        let mut changed = rest.clone();
        for it in &mut changed {
            if let Item::StepEnd(e) = it {
                if e.step_id == STEP_BATCH {
                    e.stdout = Some("/elsewhere.out".into());
                }
            }
        }
        apply(&conn, &Batch::new("n", changed));
        assert_eq!(node_stdout(&conn), ("text".to_string(), Some(out.clone())));
        // And back: stored as nothing again.
        apply(&conn, &Batch::new("n", rest.clone()));
        assert_eq!(node_stdout(&conn), ("blob".to_string(), Some(out.clone())));
    }
    // A node record naming another file than its batch step keeps its text.
    let conn = db::open_memory();
    let mut other = items.clone();
    for it in &mut other {
        if let Item::JobEnd(j) = it {
            j.stdout = Some("/home/other.out".into());
        }
    }
    apply(&conn, &Batch::new("n", other));
    assert_eq!(node_stdout(&conn), ("text".to_string(), Some("/home/other.out".into())));
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x.clone());
            out.push(p);
        }
    }
    out
}

#[test]
fn a_batch_whose_step_start_and_end_disagree_is_still_idempotent() {
    // Found by fuzz/merge_batch: the StepStart of step 0 on vm starts after its StepEnd says.
    let bytes = include_bytes!("regressions/fuzz-merge-batch-1e59c376.json");
    let batch = Batch::from_json(bytes).unwrap();
    let conn = db::open_memory();
    apply(&conn, &batch);
    let once = dump(&conn);
    apply(&conn, &batch);
    assert_eq!(once, dump(&conn));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 1);
    // And the StepEnd arriving before its StepStart gives the same rows.
    let (ends, rest): (Vec<_>, Vec<_>) = batch.items.iter().cloned().partition(|i| matches!(i, Item::StepEnd(_)));
    let other = db::open_memory();
    apply(&other, &Batch { items: ends, ..batch.clone() });
    apply(&other, &Batch { items: rest, ..batch.clone() });
    assert_eq!(count(&other, "SELECT COUNT(*) FROM jobs"), 1);
}

#[test]
fn a_batch_repeating_one_record_with_different_contents_is_refused() {
    // Found by fuzz/merge_batch: two step_start items for step 0 on vm2 with different starts.
    let bytes = include_bytes!("regressions/fuzz-merge-batch-0f2f0660.json");
    let batch = Batch::from_json(bytes).unwrap();
    let err = validate(&batch).unwrap_err();
    assert!(err.contains("repeats the record of job 38 step 0 on node vm2"), "{err}");
    // The same item twice is refused too: a well-formed batch never carries it.
    let b = sample().batch(0);
    let mut twice = b.clone();
    twice.items.push(b.items[0].clone());
    assert!(validate(&twice).unwrap_err().contains("repeats the record"));
    assert!(validate(&b).is_ok());
}

#[test]
fn applying_a_batch_twice_changes_nothing() {
    let conn = db::open_memory();
    let b = sample().batch(0);
    apply(&conn, &b);
    let once = dump(&conn);
    apply(&conn, &b);
    assert_eq!(dump(&conn), once);
    // Even with another receive time, nothing changes.
    apply_group(&conn, &[&b], RECEIVED + 500).unwrap()[0].as_ref().unwrap();
    assert_eq!(dump(&conn), once);
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs"), 1);
}

#[test]
fn item_order_does_not_matter_within_a_batch_or_across_batches() {
    let s = sample();
    let items = s.node_items(0);
    assert_eq!(items.len(), 5);
    let reference = {
        let conn = db::open_memory();
        apply(&conn, &Batch::new("n", items.clone()));
        dump(&conn)
    };
    for perm in permutations(&items) {
        // The whole permutation as one batch.
        let conn = db::open_memory();
        apply(&conn, &Batch::new("n", perm.clone()));
        assert_eq!(dump(&conn), reference, "one batch, order {:?}", perm.iter().map(|i| i.kind()).collect::<Vec<_>>());
        // Each item as its own batch, in this order.
        let conn = db::open_memory();
        for item in &perm {
            apply(&conn, &Batch::new("n", vec![item.clone()]));
        }
        assert_eq!(
            dump(&conn),
            reference,
            "separate batches, order {:?}",
            perm.iter().map(|i| i.kind()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn two_nodes_merge_into_one_job_in_either_order() {
    let mut s = sample();
    s.last_node = Some((JobState::Failed, ExitStatus { code: 3, signal: 0, core_dumped: false }));
    let (a, b) = (s.batch(0), s.batch(1));
    let ab = {
        let conn = db::open_memory();
        apply(&conn, &a);
        apply(&conn, &b);
        dump(&conn)
    };
    let conn = db::open_memory();
    apply(&conn, &b);
    apply(&conn, &a);
    assert_eq!(dump(&conn), ab);
    // Both in one group commit, too.
    let conn2 = db::open_memory();
    apply_group(&conn2, &[&b, &a], RECEIVED).unwrap();
    assert_eq!(dump(&conn2), ab);

    let (n, nodes, state, exit, sig, cpu, rss, nnodes, ncpus, ev): (
        i64,
        String,
        String,
        i64,
        i64,
        f64,
        i64,
        i64,
        i64,
        Option<String>,
    ) = conn
        .query_row(
            "SELECT count(*), nodes, state, exit_code, signal, cpu_seconds, max_rss_kib, nnodes, ncpus,
                    state_evidence FROM jobs",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(nodes, "n0001,n0002");
    assert_eq!((state.as_str(), exit, sig), ("FAILED", 3, 0));
    assert_eq!(ev.as_deref(), Some("FAILED on n0002"));
    // batch 1.5+0.25, step 0 on n0001 100+2, on n0002 101+2.
    assert!((cpu - (1.75 + 102.0 + 103.0)).abs() < 1e-9, "{cpu}");
    assert_eq!(rss, 1_001_000);
    assert_eq!((nnodes, ncpus), (2, 8));
    let (user, account, start, end, env): (String, String, i64, i64, Option<String>) = conn
        .query_row(
            "SELECT user, account, start, end, (SELECT hash FROM environments WHERE id = env) FROM jobs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((user.as_str(), account.as_str(), start, end), ("alice", "physics", T0, T0 + 30));
    assert_eq!(env, Some(env_hash(&s.env()).0));
}

#[test]
fn worst_signal_beats_exit_code_and_state_defaults_to_unknown() {
    let mut s = sample();
    s.state = JobState::Failed;
    s.exit = ExitStatus { code: 1, signal: 0, core_dumped: false };
    s.last_node = Some((JobState::Cancelled, ExitStatus { code: 0, signal: 9, core_dumped: false }));
    let conn = db::open_memory();
    apply(&conn, &s.batch(0));
    apply(&conn, &s.batch(1));
    let got: (String, i64, i64) = conn
        .query_row("SELECT state, exit_code, signal FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(got, ("CANCELLED".into(), 0, 9));

    // Steps only, no JobEnd yet: UNKNOWN, no exit.
    let conn = db::open_memory();
    let items: Vec<Item> = s.node_items(0).into_iter().filter(|i| !matches!(i, Item::JobEnd(_))).collect();
    apply(&conn, &Batch::new("n", items));
    let got: (String, Option<i64>) =
        conn.query_row("SELECT state, exit_code FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(got, ("UNKNOWN".into(), None));
}

#[test]
fn a_reused_job_id_gets_its_own_row() {
    let conn = db::open_memory();
    let first = sample();
    apply(&conn, &first.batch(0));
    // A day later, same cluster and job id (controller state reset): a new job.
    let mut later = sample();
    later.start = T0 + 86_400;
    later.user = "bob".into();
    apply(&conn, &later.batch(0));
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs WHERE job_id = 42"), 2);
    // Within the slack, but the same node's batch step started at another time: another job.
    let mut close = sample();
    close.start = T0 + 40;
    close.user = "carol".into();
    apply(&conn, &close.batch(0));
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs WHERE job_id = 42"), 3);
    // Late records of the first job (its second node) still find the first row.
    apply(&conn, &first.batch(1));
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs WHERE job_id = 42"), 3);
    let rows: Vec<(String, i64, String)> = conn
        .prepare("SELECT user, start, nodes FROM jobs ORDER BY start")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![
            ("alice".into(), T0, "n0001,n0002".into()),
            ("carol".into(), T0 + 40, "n0001".into()),
            ("bob".into(), T0 + 86_400, "n0001".into()),
        ]
    );
    // And re-sending the reused job's batch lands on its own row again.
    let before = dump(&conn);
    apply(&conn, &later.batch(0));
    apply(&conn, &close.batch(0));
    assert_eq!(dump(&conn), before);
}

#[test]
fn identical_environments_are_stored_once() {
    let conn = db::open_memory();
    let a = Sample::new("tc", 1, T0);
    let mut b = Sample::new("tc", 2, T0 + 100);
    b.first_node = 9;
    apply(&conn, &a.batch(0));
    apply(&conn, &b.batch(0));
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM environments"), 1);
    assert_eq!(count(&conn, "SELECT count(DISTINCT env) FROM steps"), 1);
    let content: String = conn.query_row("SELECT content FROM environments", [], |r| r.get(0)).unwrap();
    let env: BTreeMap<String, String> = serde_json::from_str(&content).unwrap();
    assert_eq!(env, a.env());
    // A different environment is a second row.
    let mut c = Sample::new("tc", 3, T0 + 200);
    c.user = "bob".into();
    apply(&conn, &c.batch(0));
    assert_eq!(count(&conn, "SELECT count(*) FROM environments"), 2);
    // Modules are shared too.
    assert_eq!(count(&conn, "SELECT count(*) FROM modules"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM module_sets"), 1);
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs WHERE module_set IS NOT NULL"), 3);
}

#[test]
fn malformed_batches_are_refused_and_do_not_spoil_a_group() {
    let good = sample().batch(0);
    let mut bad = sample().batch(1);
    if let Item::JobEnd(j) = bad.items.last_mut().unwrap() {
        j.cluster = String::new();
    }
    assert!(validate(&bad).unwrap_err().contains("empty cluster"));
    let mut zero = sample().batch(0);
    if let Item::StepStart(s) = &mut zero.items[0] {
        s.job_id = 0;
    }
    assert!(validate(&zero).unwrap_err().contains("job id 0"));
    let mut backwards = sample().batch(0);
    if let Item::StepEnd(s) = &mut backwards.items[1] {
        s.end = s.start - 10;
    }
    assert!(validate(&backwards).unwrap_err().contains("before it starts"));
    assert!(Batch::from_json(b"{\"format\":1}").is_err());
    assert!(Batch::from_json(br#"{"format":1,"sender":"n","created":0,"items":[{"kind":"nope"}]}"#).is_err());

    // One failing batch (a database error half-way) is rolled back alone.
    let conn = db::open_memory();
    conn.execute_batch(
        "CREATE TEMP TRIGGER boom BEFORE INSERT ON job_nodes
         WHEN NEW.node = (SELECT id FROM hosts WHERE name = 'n0002')
         BEGIN SELECT RAISE(ABORT, 'boom'); END;",
    )
    .unwrap();
    let other = Sample::new("tc", 77, T0);
    let second_node = sample().batch(1);
    let results = apply_group(&conn, &[&good, &second_node, &bad, &other.batch(0)], RECEIVED).unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(&results[1], Err(MergeError::Db(e)) if e.to_string().contains("boom")), "{:?}", results[1]);
    assert!(matches!(&results[2], Err(MergeError::Invalid(_))));
    assert!(results[3].is_ok());
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM steps s JOIN hosts h ON h.id = s.node WHERE h.name = 'n0002'"), 0);
    let nodes: String = conn.query_row("SELECT nodes FROM jobs WHERE job_id = 42", [], |r| r.get(0)).unwrap();
    assert_eq!(nodes, "n0001");
}

#[test]
fn tags_prefer_the_batch_step_whatever_the_order() {
    let s = sample();
    let mut items = s.node_items(0);
    for item in &mut items {
        if let Item::StepStart(st) = item {
            if st.step_id != STEP_BATCH {
                st.tags.insert("project".into(), "beta".into());
                st.tags.insert("only0".into(), "x".into());
            }
        }
    }
    for perm in permutations(&items[..3]) {
        let conn = db::open_memory();
        for item in perm {
            apply(&conn, &Batch::new("n", vec![item]));
        }
        let tags: Vec<(String, String)> = conn
            .prepare("SELECT key, value FROM tags ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(tags, vec![("only0".into(), "x".into()), ("project".into(), "alpha".into())]);
    }
}

#[test]
fn node_names_sort_naturally() {
    let mut v = vec!["n10", "n2", "n1", "a", "n02"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(v, vec!["a", "n1", "n2", "n02", "n10"]);
}

/// A sampled job (#16): each step's series stored once per node, whatever the order and however
/// often the records come; the idle core-seconds follow from the series of every node.
#[test]
fn series_merge_idempotently_across_nodes_and_give_idle_core_seconds() {
    let mut s = sample();
    s.duration = 3 * 3600;
    s.timeline = Some(runledger_synth::timeline::Shape {
        interval_s: 30,
        busy_cores: 4.0,
        idle_from: Some(T0 + 1800),
        rss_kib: 1 << 20,
        rss_growth_kib: 64,
        processes: 3,
    });
    let (a, b) = (s.batch(0), s.batch(1));
    let reference = {
        let conn = db::open_memory();
        apply(&conn, &a);
        apply(&conn, &b);
        dump(&conn)
    };
    for order in [vec![&b, &a], vec![&a, &b, &a, &b]] {
        let conn = db::open_memory();
        for x in order {
            apply(&conn, x);
        }
        assert_eq!(dump(&conn), reference);
    }
    // Every item alone, backwards.
    let conn = db::open_memory();
    for item in a.items.iter().chain(&b.items).rev() {
        apply(&conn, &Batch::new("n", vec![item.clone()]));
    }
    assert_eq!(dump(&conn), reference);
    // A StepEnd sent again without its series (the plugin's retry of a full spool) keeps it.
    let mut bare = b.clone();
    for item in &mut bare.items {
        if let Item::StepEnd(e) = item {
            e.series = None;
        }
    }
    apply(&conn, &bare);
    assert_eq!(dump(&conn), reference);

    assert_eq!(count(&conn, "SELECT count(*) FROM step_series"), 3, "batch on n0001, step 0 on both");
    let job: i64 = conn.query_row("SELECT id FROM jobs", [], |r| r.get(0)).unwrap();
    let (series, bad) = crate::timeline::read(&conn, job).unwrap();
    assert_eq!(bad, 0);
    let got: Vec<(&str, u32, Option<i64>)> =
        series.iter().map(|x| (x.node.as_str(), x.step_id, x.alloc_cpus)).collect();
    assert_eq!(got, [("n0001", 0, Some(4)), ("n0001", STEP_BATCH, Some(4)), ("n0002", 0, Some(4))]);
    let sent = match &a.items[1] {
        Item::StepEnd(e) => e.series.clone().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(series[1].series, sent, "the batch step's series as sent");
    // Idle from T0+1800 (step 0 started at T0+2) to the end, on both nodes, 4 cores each: the
    // first half hour's work is not idle.
    let idle: f64 = conn.query_row("SELECT idle_core_s FROM jobs", [], |r| r.get(0)).unwrap();
    let expect = 2.0 * 4.0 * (3.0 * 3600.0 - 1800.0);
    assert!((idle - expect).abs() < 2.0 * 4.0 * 120.0, "{idle} against {expect}");
    // A job without series has none.
    let conn = db::open_memory();
    apply(&conn, &sample().batch(0));
    assert_eq!(count(&conn, "SELECT count(*) FROM jobs WHERE idle_core_s IS NULL"), 1);
}

#[test]
fn what_a_job_asked_for_lands_in_its_node_records_once() {
    use runledger_record::{LimitSource, TimeLimit};
    type Asked = (Option<i64>, Option<i64>, Option<String>, Option<String>);
    let conn = db::open_memory();
    let mut b = sample().batch(0);
    let mut ends = 0;
    for item in &mut b.items {
        if let Item::JobEnd(j) = item {
            j.alloc_mem_mb = Some(4096);
            j.time_limit = Some(TimeLimit { seconds: Some(3600), source: LimitSource::Scontrol });
            ends += 1;
        }
    }
    assert_eq!(ends, 1, "the sample's node 0 sends one JobEnd");
    apply(&conn, &b);
    let once = dump(&conn);
    apply(&conn, &b);
    assert_eq!(dump(&conn), once, "sent again, nothing changes");
    let row: Asked = conn
        .query_row(
            &format!(
                "SELECT alloc_mem_mb, time_limit_s, {}, time_limit_missing FROM job_nodes n",
                store::LIMIT_SOURCE_SQL
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, (Some(4096), Some(3600), Some("scontrol".into()), None));

    // An unlimited job: a source without seconds; a node that could not learn it says why.
    let mut b = sample().batch(1);
    for item in &mut b.items {
        if let Item::JobEnd(j) = item {
            j.time_limit = None;
            j.time_limit_missing = Some("scontrol timed out after 2 s".into());
        }
    }
    apply(&conn, &b);
    let mut u = sample().batch(0);
    for item in &mut u.items {
        if let Item::JobEnd(j) = item {
            j.time_limit = Some(TimeLimit { seconds: None, source: LimitSource::Environment });
        }
    }
    apply(&conn, &u);
    let rows: Vec<Asked> = conn
        .prepare(&format!(
            "SELECT n.alloc_mem_mb, n.time_limit_s, {}, n.time_limit_missing
                 FROM job_nodes n JOIN hosts h ON h.id = n.node ORDER BY h.name",
            store::LIMIT_SOURCE_SQL
        ))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (None, None, Some("environment".into()), None),
            (None, None, None, Some("scontrol timed out after 2 s".into())),
        ]
    );
}

/// Batches of several users, nodes and jobs, as a collector receives them: one per node.
fn varied_batches(first_job: u32, n: u32) -> Vec<Batch> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut s = Sample::new("tc", first_job + i, T0 + i64::from(i) * 10);
        s.user = format!("user{}", i % 3);
        s.uid = 1000 + i % 3;
        s.first_node = i % 5;
        s.nnodes = 1 + i % 2;
        s.env_vars = 8;
        for node in 0..s.nnodes {
            out.push(s.batch(node));
        }
    }
    out
}

/// Every stored reference to an interned row points at a row that exists.
fn dangling(conn: &Connection) -> i64 {
    let fk: i64 = conn.prepare("PRAGMA foreign_key_check").unwrap().query_map([], |_| Ok(())).unwrap().count() as i64;
    fk + count(
        conn,
        "SELECT (SELECT count(*) FROM steps WHERE env IS NOT NULL AND env NOT IN (SELECT id FROM environments))
              + (SELECT count(*) FROM steps WHERE attrs IS NOT NULL AND attrs NOT IN (SELECT id FROM attrs))
              + (SELECT count(*) FROM steps WHERE argv IS NOT NULL AND argv NOT IN (SELECT id FROM strings))
              + (SELECT count(*) FROM steps WHERE modules IS NOT NULL AND modules NOT IN (SELECT id FROM module_lists))
              + (SELECT count(*) FROM jobs WHERE module_set IS NOT NULL
                   AND module_set NOT IN (SELECT id FROM module_sets))",
    )
}

#[test]
fn the_id_cache_stores_what_fresh_lookups_store_even_after_a_rolled_back_batch() {
    let batches = varied_batches(100, 12);
    let plain = db::open_memory();
    for b in &batches {
        apply(&plain, b);
    }
    let cached = db::open_memory();
    let mut cache = Cache::new();
    // A batch that fails after it interned new ids (a new node, user and environment): the
    // savepoint takes those rows back, and the cache must forget them too.
    let mut bad = Sample::new("tc", 999, T0 + 5);
    bad.user = "newcomer".into();
    bad.first_node = 77;
    cached
        .execute_batch(
            "CREATE TEMP TRIGGER fail_once BEFORE INSERT ON job_nodes
             WHEN NEW.node = (SELECT id FROM hosts WHERE name = 'n0077') BEGIN SELECT RAISE(ABORT, 'test'); END;",
        )
        .unwrap();
    let bad_batch = bad.batch(0);
    assert_eq!(bad_batch.items.first().map(|i| i.node()), Some("n0077"), "the sample's node naming changed");
    let mut group: Vec<&Batch> = batches[..4].iter().collect();
    group.insert(2, &bad_batch);
    let r = apply_group_with(&cached, &mut cache, &group, RECEIVED).unwrap();
    assert!(r[2].is_err(), "the trigger fails the batch");
    assert!(r.iter().enumerate().all(|(i, r)| i == 2 || r.is_ok()));
    assert_eq!(count(&cached, "SELECT count(*) FROM hosts WHERE name = 'n0077'"), 0);
    // Alone in its group it has no savepoint: the whole transaction goes, and the cache's ids.
    let before = dump(&cached);
    let r = apply_group_with(&cached, &mut cache, &[&bad_batch], RECEIVED).unwrap();
    assert!(r[0].is_err(), "the trigger fails the lone batch");
    assert_eq!(count(&cached, "SELECT count(*) FROM hosts WHERE name = 'n0077'"), 0);
    assert_eq!(dump(&cached), before, "a failed lone batch leaves nothing");
    cached.execute_batch("DROP TRIGGER fail_once").unwrap();
    for b in &batches[4..] {
        for r in apply_group_with(&cached, &mut cache, &[b], RECEIVED).unwrap() {
            r.unwrap();
        }
    }
    assert!(cache.hits > 0, "the cache answered nothing");
    // The failed batch again: its node, user and environment are added afresh, not taken from
    // the cache that saw them rolled back.
    for r in apply_group_with(&cached, &mut cache, &[&bad_batch], RECEIVED).unwrap() {
        r.unwrap();
    }
    apply(&plain, &bad_batch);
    assert_eq!(dangling(&cached), 0);
    assert_eq!(dump(&cached), dump(&plain));
}

#[test]
fn another_connections_prune_empties_the_id_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let writer = db::open_rw(&path).unwrap();
    let mut cache = Cache::new();
    let batches = varied_batches(100, 6);
    for b in &batches {
        apply_group_with(&writer, &mut cache, &[b], RECEIVED).unwrap()[0].as_ref().unwrap();
    }
    // Another connection prunes every job and sweeps the environments, strings and attributes
    // the cache still names.
    let pruner = db::open_rw(&path).unwrap();
    let report = crate::retention::prune(&pruner, &crate::retention::Options::new(T0 + 10 * 86_400), |_| {}).unwrap();
    assert_eq!(count(&writer, "SELECT count(*) FROM jobs"), 0, "{report:?}");
    assert_eq!(count(&writer, "SELECT count(*) FROM environments"), 0);
    // The same records again (a late re-send): stored with fresh rows, none dangling.
    for b in &batches {
        apply_group_with(&writer, &mut cache, &[b], RECEIVED).unwrap()[0].as_ref().unwrap();
    }
    assert_eq!(dangling(&writer), 0);
    assert!(count(&writer, "SELECT count(*) FROM environments") > 0);
}

#[test]
fn a_cached_id_still_leaves_the_sweep_list() {
    let conn = db::open_memory();
    let mut cache = Cache::new();
    let batches = varied_batches(100, 4);
    for b in &batches[..2] {
        apply_group_with(&conn, &mut cache, &[b], RECEIVED).unwrap()[0].as_ref().unwrap();
    }
    // The sweep's candidates, put on the list by this connection (so the cache is not emptied).
    conn.execute_batch(
        "INSERT INTO retiring (kind, id) SELECT 'environments', id FROM environments;
         INSERT INTO retiring (kind, id) SELECT 'attrs', id FROM attrs;
         INSERT INTO retiring (kind, id) SELECT 'strings', id FROM strings;",
    )
    .unwrap();
    let hits = cache.hits;
    for b in &batches[2..] {
        apply_group_with(&conn, &mut cache, &[b], RECEIVED).unwrap()[0].as_ref().unwrap();
    }
    assert!(cache.hits > hits);
    assert!(count(&conn, "SELECT count(*) FROM retiring") > 0, "rows only the first jobs use stay listed");
    // Every row the later batches used is off the list.
    assert_eq!(
        count(
            &conn,
            "WITH later AS (SELECT s.* FROM steps s JOIN jobs j ON j.id = s.job WHERE j.job_id >= 102)
             SELECT count(*) FROM retiring r WHERE (r.kind = 'environments' AND r.id IN (SELECT env FROM later))
               OR (r.kind = 'attrs' AND r.id IN (SELECT attrs FROM later))
               OR (r.kind = 'strings' AND r.id IN (SELECT argv FROM later UNION SELECT exe FROM later
                                                   UNION SELECT cwd FROM later))"
        ),
        0
    );
}
