//! What a job's Python processes reported, in the ledger (issue #14).
//!
//! A node's [`JobEnd::python`](runledger_record::JobEnd::python) is the job user's word, read and
//! validated by the epilog. The merge takes it again through [`PythonProcess::validate`] (a
//! process that fails is left out and named in the node's `rejected` list, never the whole
//! batch), and keeps, per (job, node):
//!
//! - `py_nodes`: that the node's epilog read the job's Python directory, with what it could not
//!   take (`rejected`, a JSON list of `file: reason`; `skipped`, files it did not read);
//! - `py_procs`: one row per interpreter process (`pid`, its start), its rank, interpreter,
//!   version, prefixes and main script (as `strings` ids), its imported packages as one
//!   `py_package_sets` id, and how it ended.
//!
//! A node's rows are replaced as a whole by each `JobEnd` of that node, so the same batch twice
//! gives the same rows, and nothing in one node's report touches another node's, another job's
//! or any other column of the ledger: the job's own `py_set` (every package any of its processes
//! imported, deduplicated like a module set) is recomputed from `py_procs` alone.

use crate::store;
use runledger_record::python::{PythonProcess, PythonReport};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeSet, HashMap};

/// A package's id, interned once per (name, version); `version` is `''` when unknown.
pub fn package_id(conn: &Connection, name: &str, version: &str) -> rusqlite::Result<i64> {
    let found = conn
        .prepare_cached("SELECT id FROM py_packages WHERE name = ?1 AND version = ?2")?
        .query_row(params![name, version], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO py_packages (name, version) VALUES (?1, ?2)")?.execute(params![name, version])?;
    Ok(conn.last_insert_rowid())
}

/// The id of a set of package ids (ascending, distinct), created with its members when new;
/// `None` for the empty set.
pub fn package_set_id(conn: &Connection, packages: &[i64]) -> rusqlite::Result<Option<i64>> {
    if packages.is_empty() {
        return Ok(None);
    }
    let text = packages.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    if let Some(id) = conn
        .prepare_cached("SELECT id FROM py_package_sets WHERE packages = ?1")?
        .query_row([&text], |r| r.get(0))
        .optional()?
    {
        return Ok(Some(id));
    }
    conn.prepare_cached("INSERT INTO py_package_sets (packages) VALUES (?1)")?.execute([&text])?;
    let id = conn.last_insert_rowid();
    let mut st =
        conn.prepare_cached("INSERT OR IGNORE INTO py_package_set_members (package, package_set) VALUES (?1, ?2)")?;
    for p in packages {
        st.execute([*p, id])?;
    }
    Ok(Some(id))
}

/// Every package set: id -> its package ids (ascending).
pub fn package_sets(conn: &Connection) -> rusqlite::Result<HashMap<i64, Vec<i64>>> {
    let mut out = HashMap::new();
    let mut st = conn.prepare_cached("SELECT id, packages FROM py_package_sets")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        out.insert(r.get(0)?, store::parse_module_set(r.get_ref(1)?.as_str()?));
    }
    Ok(out)
}

/// Every package: id -> (name, version).
pub fn package_names(conn: &Connection) -> rusqlite::Result<HashMap<i64, (String, String)>> {
    let mut st = conn.prepare_cached("SELECT id, name, version FROM py_packages")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
    rows.collect()
}

/// Replaces node `node`'s Python rows of job row `job` with `report` (none: the node recorded no
/// Python for the job), then recomputes the job's package set.
pub fn apply(conn: &Connection, job: i64, node: i64, report: Option<&PythonReport>) -> rusqlite::Result<()> {
    let had: bool = conn.prepare_cached("SELECT 1 FROM py_nodes WHERE job = ?1 AND node = ?2")?.exists([job, node])?;
    if report.is_none() && !had {
        // Nothing recorded before, nothing now: the common case costs one lookup.
        return Ok(());
    }
    conn.prepare_cached("DELETE FROM py_procs WHERE job = ?1 AND node = ?2")?.execute([job, node])?;
    conn.prepare_cached("DELETE FROM py_nodes WHERE job = ?1 AND node = ?2")?.execute([job, node])?;
    if let Some(r) = report {
        let mut rejected = r.rejected.clone();
        for p in &r.processes {
            match p.validate() {
                Ok(()) => insert_process(conn, job, node, p)?,
                Err(e) => {
                    if rejected.len() < runledger_record::python::MAX_REJECTED {
                        rejected.push(format!("process {}: {e} (refused by the collector)", p.pid));
                    }
                }
            }
        }
        let rejected = (!rejected.is_empty()).then(|| serde_json::to_string(&rejected).expect("strings serialize"));
        conn.prepare_cached("INSERT INTO py_nodes (job, node, skipped, rejected) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![job, node, r.skipped, rejected])?;
    }
    recompute_job_set(conn, job)
}

fn insert_process(conn: &Connection, job: i64, node: i64, p: &PythonProcess) -> rusqlite::Result<()> {
    let mut ids = Vec::with_capacity(p.packages.len());
    for pkg in &p.packages {
        ids.push(package_id(conn, &pkg.name, pkg.version.as_deref().unwrap_or(""))?);
    }
    ids.sort_unstable();
    ids.dedup();
    let set = package_set_id(conn, &ids)?;
    let text = |s: &str| if s.is_empty() { Ok(None) } else { store::string_id(conn, s).map(Some) };
    let interpreter = store::string_id(conn, &p.interpreter)?;
    let (prefix, main) = (text(&p.prefix)?, text(&p.main)?);
    // The base prefix is kept only where it says something: a venv or conda environment.
    let base = if p.base_prefix != p.prefix { text(&p.base_prefix)? } else { None };
    // A pid seen twice in one report (two files of one pid and start): the last one wins, as
    // it does every time the same report is applied.
    conn.prepare_cached(
        "INSERT INTO py_procs (job, node, pid, started, rank, interpreter, py_version, prefix, base_prefix, main,
                               packages, ended)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (job, node, pid, started) DO UPDATE SET
            rank = excluded.rank, interpreter = excluded.interpreter, py_version = excluded.py_version,
            prefix = excluded.prefix, base_prefix = excluded.base_prefix, main = excluded.main,
            packages = excluded.packages, ended = excluded.ended",
    )?
    .execute(params![
        job,
        node,
        p.pid,
        p.start,
        p.rank,
        interpreter,
        p.version,
        prefix,
        base,
        main,
        set,
        p.ended
    ])?;
    Ok(())
}

/// `jobs.py_set`: the union of the packages of every recorded process of the job, any node.
fn recompute_job_set(conn: &Connection, job: i64) -> rusqlite::Result<()> {
    let mut all: BTreeSet<i64> = BTreeSet::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT s.packages FROM py_package_sets s WHERE s.id IN (SELECT packages FROM py_procs WHERE job = ?1)",
        )?;
        let mut rows = st.query([job])?;
        while let Some(r) = rows.next()? {
            all.extend(store::parse_module_set(r.get_ref(0)?.as_str()?));
        }
    }
    let set = package_set_id(conn, &all.into_iter().collect::<Vec<_>>())?;
    conn.prepare_cached("UPDATE jobs SET py_set = ?2 WHERE id = ?1 AND py_set IS NOT ?2")?
        .execute(params![job, set])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{db, merge};
    use runledger_record::python::PythonPackage;
    use runledger_record::{Batch, Item};
    use runledger_synth::Sample;

    const T0: i64 = 1_700_000_000;

    pub(crate) fn process(pid: u32, packages: &[(&str, Option<&str>)], ended: &str) -> PythonProcess {
        PythonProcess {
            pid,
            rank: 0,
            interpreter: "/usr/bin/python3".into(),
            version: "3.11.2".into(),
            prefix: "/usr".into(),
            base_prefix: "/usr".into(),
            main: "run.py".into(),
            start: T0 + 5,
            packages: packages
                .iter()
                .map(|(n, v)| PythonPackage { name: n.to_string(), version: v.map(str::to_string) })
                .collect(),
            ended: ended.into(),
        }
    }

    fn report(processes: Vec<PythonProcess>) -> PythonReport {
        PythonReport { source: "user".into(), processes, rejected: vec![], skipped: 0 }
    }

    /// Every Python row, ids replaced by what they stand for, sorted.
    fn dump(conn: &Connection) -> String {
        let names = package_names(conn).unwrap();
        let sets = package_sets(conn).unwrap();
        let set = |id: Option<i64>| {
            id.map(|id| {
                let mut v: Vec<String> = sets[&id].iter().map(|p| format!("{}/{}", names[p].0, names[p].1)).collect();
                v.sort();
                v.join(" ")
            })
        };
        fn show(v: rusqlite::types::ValueRef) -> String {
            match v {
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                other => format!("{other:?}"),
            }
        }
        let mut out = Vec::new();
        let mut st = conn
            .prepare(
                "SELECT j.job_id, h.name, p.pid, p.started, p.rank, i.value, p.py_version, pre.value, base.value,
                        m.value, p.packages, p.ended
                 FROM py_procs p JOIN jobs j ON j.id = p.job JOIN hosts h ON h.id = p.node
                 JOIN strings i ON i.id = p.interpreter LEFT JOIN strings pre ON pre.id = p.prefix
                 LEFT JOIN strings base ON base.id = p.base_prefix LEFT JOIN strings m ON m.id = p.main",
            )
            .unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cells: Vec<String> = (0..10).map(|i| show(r.get_ref(i).unwrap())).collect();
            out.push(format!(
                "proc {} {:?} {}",
                cells.join(" "),
                set(r.get(10).unwrap()),
                r.get::<_, String>(11).unwrap()
            ));
        }
        let mut st = conn
            .prepare("SELECT j.job_id, h.name, n.skipped, n.rejected FROM py_nodes n JOIN jobs j ON j.id = n.job JOIN hosts h ON h.id = n.node")
            .unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.push(format!("node {:?}", (0..4).map(|i| show(r.get_ref(i).unwrap())).collect::<Vec<_>>()));
        }
        let mut st = conn.prepare("SELECT job_id, py_set FROM jobs").unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.push(format!("job {} {:?}", r.get::<_, i64>(0).unwrap(), set(r.get(1).unwrap())));
        }
        out.sort();
        out.join("\n")
    }

    fn apply(conn: &Connection, batch: &Batch) {
        merge::apply_group(conn, &[batch], T0 + 1000).unwrap().into_iter().next().unwrap().unwrap();
    }

    fn two_node_job() -> (Batch, Batch) {
        let mut s = Sample::new("tc", 7, T0);
        s.nnodes = 2;
        s.python = Some(report(vec![
            process(100, &[("numpy", Some("1.24.2")), ("scipy", Some("1.10.1"))], "normal"),
            process(101, &[("numpy", None)], "unfinished"),
        ]));
        let b0 = s.batch(0);
        // The second node reports a process of its own (a second batch script's python).
        let mut b1 = s.batch(1);
        for it in &mut b1.items {
            if let Item::JobEnd(j) = it {
                j.python = Some(report(vec![process(
                    200,
                    &[("torch", Some("2.1.0")), ("numpy", Some("1.24.2"))],
                    "exception:KeyError",
                )]));
            }
        }
        (b0, b1)
    }

    #[test]
    fn the_same_batches_in_any_order_and_twice_give_the_same_rows() {
        let (b0, b1) = two_node_job();
        let a = db::open_memory();
        apply(&a, &b0);
        apply(&a, &b1);
        let b = db::open_memory();
        apply(&b, &b1);
        apply(&b, &b0);
        apply(&b, &b1);
        apply(&b, &b0);
        let (da, db_) = (dump(&a), dump(&b));
        assert_eq!(da, db_);
        assert!(da.contains("job 7 Some(\"numpy/ numpy/1.24.2 scipy/1.10.1 torch/2.1.0\")"), "{da}");
        assert_eq!(da.matches("proc ").count(), 3, "{da}");
        assert_eq!(da.matches("node ").count(), 2, "{da}");
        // Interned once: three distinct numpy rows would mean the versions were not deduplicated.
        assert_eq!(
            a.query_row("SELECT COUNT(*) FROM py_packages WHERE name = 'numpy'", [], |r| r.get::<_, i64>(0)).unwrap(),
            2
        );
    }

    #[test]
    fn a_node_report_replaces_only_its_own_rows() {
        let (b0, mut b1) = two_node_job();
        let conn = db::open_memory();
        apply(&conn, &b0);
        apply(&conn, &b1);
        // Node 2 reports again without its process (its directory empty this time).
        for it in &mut b1.items {
            if let Item::JobEnd(j) = it {
                j.python = Some(report(vec![]));
            }
        }
        apply(&conn, &b1);
        let d = dump(&conn);
        assert!(!d.contains("torch"), "{d}");
        assert!(d.contains("job 7 Some(\"numpy/ numpy/1.24.2 scipy/1.10.1\")"), "{d}");
        assert_eq!(d.matches("proc ").count(), 2, "{d}");
    }

    #[test]
    fn a_process_that_fails_validation_is_named_not_stored() {
        let mut s = Sample::new("tc", 8, T0);
        let mut bad = process(300, &[("os", None)], "normal");
        bad.rank = 3;
        let mut forged = process(301, &[("numpy", Some("1.0"))], "normal");
        forged.packages[0].name = "../../etc".into();
        s.python = Some(report(vec![process(299, &[("mpi4py", Some("3.1.4"))], "normal"), bad, forged]));
        let conn = db::open_memory();
        apply(&conn, &s.batch(0));
        let d = dump(&conn);
        assert_eq!(d.matches("proc ").count(), 1, "{d}");
        assert!(d.contains("process 300: rank 3"), "{d}");
        assert!(d.contains("process 301: package name"), "{d}");
        assert!(d.contains("job 8 Some(\"mpi4py/3.1.4\")"), "{d}");
    }

    #[test]
    fn a_job_without_python_has_no_rows_and_no_set() {
        let conn = db::open_memory();
        apply(&conn, &Sample::new("tc", 9, T0).batch(0));
        assert_eq!(dump(&conn), "job 9 None");
    }
}
