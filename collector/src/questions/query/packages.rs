//! What Python did in the jobs (issue #14): `query packages`, the packages of listed jobs, and a
//! job's recorded interpreter processes for `query job`.
//!
//! Everything here is what the jobs' users' Python processes reported about themselves (rank 0
//! only), read by the ledger's [`runledger_ledger::python`] tables. A job counts once per package
//! however many of its processes imported it (its package set, `jobs.py_set`), and each user
//! once per row, as modules do.

use super::filter::Filter;
use super::report::{Cell, Report};
use super::{full_name, id_list, Interner, PythonNodeRow, PythonProcRow};
use runledger_ledger::python::{package_names, package_sets};
use rusqlite::{params_from_iter, Connection};
use std::collections::{HashMap, HashSet};

fn db(e: rusqlite::Error) -> String {
    format!("reading the database: {e}")
}

/// A clap value parser for `--interpreter`: a Python version or its start (`3`, `3.11`, `3.11.2`).
pub fn parse_interpreter(s: &str) -> Result<String, String> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.split('.').count() <= 3
        && t.split('.').all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!("'{s}' is not a Python version (expected e.g. 3, 3.11 or 3.11.2)"))
    }
}

/// A clap value parser for a Python package: `NAME`, `NAME/VERSION` or `NAME==VERSION`.
pub fn parse_package(s: &str) -> Result<runledger_record::Module, String> {
    let t = s.trim();
    let (name, version) = match t.split_once("==").or_else(|| t.split_once('/')) {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (t, None),
    };
    if !runledger_record::python::valid_package_name(name) {
        return Err(format!(
            "'{s}': '{name}' is not a Python package name (a top-level import name such as numpy; \
             expected NAME, NAME/VERSION or NAME==VERSION)"
        ));
    }
    if let Some(v) = version.filter(|v| !runledger_record::python::valid_version(v)) {
        return Err(format!("'{s}': '{v}' is not a package version (expected e.g. numpy/1.26.4)"));
    }
    Ok(runledger_record::Module { name: name.to_string(), version: version.map(str::to_string), file: None })
}

/// Whether a process's version `v` is `want` or starts with `want.`.
fn version_matches(v: &str, want: &str) -> bool {
    v == want || v.strip_prefix(want).is_some_and(|rest| rest.starts_with('.'))
}

/// The package sets of each job's processes run by an interpreter of version `want`.
fn sets_by_interpreter(conn: &Connection, want: &str) -> rusqlite::Result<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut st = conn.prepare("SELECT job, packages, py_version FROM py_procs")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        if !version_matches(r.get_ref(2)?.as_str()?, want) {
            continue;
        }
        let sets = out.entry(r.get(0)?).or_default();
        if let Some(s) = r.get::<_, Option<i64>>(1)? {
            sets.push(s);
        }
    }
    Ok(out)
}

/// `query packages`: one row per package version (or per name with `names`): jobs that imported
/// it, distinct users, its share of all matching jobs and of those that ran Python; most jobs
/// first (most users with `by_users`). `interpreter`: only processes of that Python version.
pub fn packages(
    conn: &Connection,
    filter: &Filter,
    names: bool,
    by_users: bool,
    top: Option<usize>,
    interpreter: Option<&str>,
) -> Result<Report, String> {
    let mut ids: Vec<(i64, (String, String))> = package_names(conn).map_err(db)?.into_iter().collect();
    ids.sort_by(|a, b| a.1.cmp(&b.1));
    // Package id -> row; rows are versions, or names.
    let mut row_of: HashMap<i64, usize> = HashMap::new();
    let mut labels: Vec<(String, String)> = Vec::new();
    // Per row, the versions seen in the matching jobs (not the ledger's: a user learns nothing of
    // the versions only others imported).
    let mut versions: Vec<HashSet<i64>> = Vec::new();
    let mut known: HashSet<i64> = HashSet::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (id, (name, version)) in ids {
        if !version.is_empty() {
            known.insert(id);
        }
        let row = if names {
            *by_name.entry(name.clone()).or_insert_with(|| {
                labels.push((name.clone(), String::new()));
                versions.push(HashSet::new());
                labels.len() - 1
            })
        } else {
            labels.push((name, version));
            versions.push(HashSet::new());
            labels.len() - 1
        };
        row_of.insert(id, row);
    }
    let sets = package_sets(conn).map_err(db)?;
    let (mut total, mut python_jobs) = (0i64, 0i64);
    let mut jobs = vec![0i64; labels.len()];
    let mut users: Vec<HashSet<u32>> = vec![HashSet::new(); labels.len()];
    let mut user_ids = Interner::default();
    let mut seen: Vec<usize> = Vec::new();
    // Counts `n` jobs of user `u` with package set `set`, as the scan counts each job.
    let mut count = |set: Option<&Vec<i64>>, n: i64, u: u32, seen: &mut Vec<usize>| {
        seen.clear();
        for p in set.into_iter().flatten() {
            let Some(&row) = row_of.get(p) else { continue };
            if known.contains(p) {
                versions[row].insert(*p);
            }
            if seen.contains(&row) {
                continue;
            }
            seen.push(row);
            jobs[row] += n;
            users[row].insert(u);
        }
    };
    if interpreter.is_none() && super::rollups::covers(filter) {
        // From the rollups' package-set cells (jobs.rollup_py): every job of a cell has the same
        // set, and a cell exists only for jobs that ran Python.
        let groups: HashMap<i64, runledger_ledger::rollup::Group> =
            super::rollups::groups(conn, filter).map_err(db)?.into_iter().map(|g| (g.id, g)).collect();
        total = groups.values().map(|g| g.jobs).sum();
        for c in runledger_ledger::rollup::cells(conn, runledger_ledger::rollup::Dim::PySet, false).map_err(db)? {
            let Some(g) = groups.get(&c.grp) else { continue };
            python_jobs += c.jobs;
            let u = user_ids.id(g.key.user.as_deref().unwrap_or("").as_bytes());
            count(sets.get(&c.val), c.jobs, u, &mut seen);
        }
    } else {
        let by_interpreter = interpreter.map(|v| sets_by_interpreter(conn, v)).transpose().map_err(db)?;
        let (where_sql, params) = filter.to_sql();
        // The jobs that recorded any Python process: one pass over py_procs' key, not a lookup per
        // job (a process may have imported nothing, so py_set alone does not say).
        let with_python: rustc_hash::FxHashSet<i64> = match &by_interpreter {
            Some(m) => m.keys().copied().collect(),
            None => {
                let mut st = conn.prepare("SELECT DISTINCT job FROM py_procs").map_err(db)?;
                let ids = st.query_map([], |r| r.get(0)).map_err(db)?;
                ids.collect::<Result<_, _>>().map_err(db)?
            }
        };
        let sql = format!("SELECT id, COALESCE(user, CAST(uid AS TEXT), ''), py_set FROM jobs WHERE {where_sql}");
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            total += 1;
            let id: i64 = r.get(0).map_err(db)?;
            let job_sets: Vec<i64> = match &by_interpreter {
                Some(m) => match m.get(&id) {
                    Some(s) => s.clone(),
                    None => continue,
                },
                None => {
                    if !with_python.contains(&id) {
                        continue;
                    }
                    r.get::<_, Option<i64>>(2).map_err(db)?.into_iter().collect()
                }
            };
            python_jobs += 1;
            let u = user_ids.id(r.get_ref(1).map_err(db)?.as_bytes().unwrap_or(b""));
            let all: Vec<i64> = job_sets.iter().filter_map(|s| sets.get(s)).flatten().copied().collect();
            count(Some(&all), 1, u, &mut seen);
        }
    }
    let mut report = if names {
        Report::new(&["package", "versions", "jobs", "users", "job_share", "python_share"])
    } else {
        Report::new(&["package", "version", "jobs", "users", "job_share", "python_share"])
    };
    for (i, (name, version)) in labels.into_iter().enumerate() {
        if jobs[i] == 0 {
            continue;
        }
        let second = if names { Cell::Int(versions[i].len() as i64) } else { Cell::Text(version) };
        report.rows.push(vec![
            Cell::Text(name),
            second,
            Cell::Int(jobs[i]),
            Cell::Int(users[i].len() as i64),
            Cell::opt_ratio(jobs[i] as f64, total as f64),
            Cell::opt_ratio(jobs[i] as f64, python_jobs as f64),
        ]);
    }
    // Stable sorts: name, then the secondary count, then the primary one.
    report.sort_by(0, false);
    report.sort_by(if by_users { 2 } else { 3 }, true);
    report.sort_by(if by_users { 3 } else { 2 }, true);
    if let Some(n) = top {
        report.rows.truncate(n);
    }
    Ok(report)
}

/// Packages (`name/version`, or `name` when the version is unknown) of each job, in name order.
pub fn packages_of(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    let names = package_names(conn)?;
    let mut st = conn.prepare_cached(
        "SELECT j.id, s.packages FROM jobs j JOIN py_package_sets s ON s.id = j.py_set
         WHERE j.id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = st.query([id_list(ids)])?;
    while let Some(r) = rows.next()? {
        let mut pkgs: Vec<&(String, String)> = runledger_ledger::store::parse_module_set(r.get_ref(1)?.as_str()?)
            .iter()
            .filter_map(|p| names.get(p))
            .collect();
        pkgs.sort();
        out.insert(r.get(0)?, pkgs.into_iter().map(|(n, v)| full_name(n, v)).collect());
    }
    Ok(out)
}

/// A job's recorded Python processes (by node, start, pid) and its nodes' reports.
pub fn python_of(conn: &Connection, job: i64) -> rusqlite::Result<(Vec<PythonProcRow>, Vec<PythonNodeRow>)> {
    let names = package_names(conn)?;
    let sets = package_sets(conn)?;
    let mut procs = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT h.name, p.pid, p.started, p.rank, i.value, p.py_version, pre.value, base.value, m.value, p.packages,
                p.ended
         FROM py_procs p JOIN hosts h ON h.id = p.node JOIN strings i ON i.id = p.interpreter
              LEFT JOIN strings pre ON pre.id = p.prefix LEFT JOIN strings base ON base.id = p.base_prefix
              LEFT JOIN strings m ON m.id = p.main
         WHERE p.job = ?1",
    )?;
    let mut rows = st.query([job])?;
    while let Some(r) = rows.next()? {
        let mut packages: Vec<(String, String)> = r
            .get::<_, Option<i64>>(9)?
            .and_then(|s| sets.get(&s))
            .into_iter()
            .flatten()
            .filter_map(|p| names.get(p).cloned())
            .collect();
        packages.sort();
        procs.push(PythonProcRow {
            node: r.get(0)?,
            pid: r.get(1)?,
            start: r.get(2)?,
            rank: r.get(3)?,
            interpreter: r.get(4)?,
            version: r.get(5)?,
            prefix: r.get(6)?,
            base_prefix: r.get(7)?,
            main: r.get(8)?,
            packages,
            ended: r.get(10)?,
        });
    }
    procs.sort_by(|a, b| {
        runledger_ledger::names::natural_cmp(&a.node, &b.node).then_with(|| (a.start, a.pid).cmp(&(b.start, b.pid)))
    });
    let mut nodes: Vec<PythonNodeRow> = conn
        .prepare_cached(
            "SELECT h.name, n.skipped, n.rejected FROM py_nodes n JOIN hosts h ON h.id = n.node WHERE n.job = ?1",
        )?
        .query_map([job], |r| {
            let rejected: Option<String> = r.get(2)?;
            Ok(PythonNodeRow {
                node: r.get(0)?,
                skipped: r.get(1)?,
                rejected: rejected.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    nodes.sort_by(|a, b| runledger_ledger::names::natural_cmp(&a.node, &b.node));
    Ok((procs, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_and_interpreter_arguments() {
        let p = parse_package("numpy").unwrap();
        assert_eq!((p.name.as_str(), p.version), ("numpy", None));
        for s in ["numpy/1.26.4", "numpy==1.26.4"] {
            assert_eq!(parse_package(s).unwrap().version.as_deref(), Some("1.26.4"), "{s}");
        }
        assert!(parse_package("num-py").unwrap_err().contains("'num-py'"));
        assert!(parse_package("numpy/1 2").unwrap_err().contains("'1 2'"));
        assert_eq!(parse_interpreter(" 3.11 ").unwrap(), "3.11");
        assert!(parse_interpreter("3.x").is_err() && parse_interpreter("3.11.2.1").is_err());
        assert!(version_matches("3.11.2", "3.11") && version_matches("3.11.2", "3"));
        assert!(!version_matches("3.1.2", "3.11") && !version_matches("3.110.0", "3.11"));
    }
}

/// The questions over a small ledger: alice imports numpy 1.24.2 then 1.26.4 (after the
/// update), scipy once, under Python 3.11; bob torch and numpy 1.26.4 under 3.12; carol runs
/// no Python and loads no module; dave's Python is killed before its exit (numpy, version unknown).
#[cfg(test)]
mod ledger_tests {
    use super::super::summary::{self, Key};
    use super::super::usage::{self, Period, Software};
    use super::*;
    use crate::questions::scope::{Owner, Scope};
    use runledger_ledger::{db, merge};
    use runledger_record::python::{PythonPackage, PythonProcess, PythonReport};
    use runledger_synth::Sample;

    const T0: i64 = 1_700_000_000;
    const UPDATE: i64 = T0 + 10 * 86_400;

    fn proc(pid: u32, version: &str, pkgs: &[(&str, Option<&str>)], ended: &str) -> PythonProcess {
        PythonProcess {
            pid,
            rank: 0,
            interpreter: format!("/usr/bin/python{}", &version[..version.rfind('.').unwrap()]),
            version: version.into(),
            prefix: "/usr".into(),
            base_prefix: "/usr".into(),
            main: "/home/u/train.py".into(),
            start: T0,
            packages: pkgs
                .iter()
                .map(|(n, v)| PythonPackage { name: n.to_string(), version: v.map(str::to_string) })
                .collect(),
            ended: ended.into(),
        }
    }

    pub(crate) fn ledger_conn() -> rusqlite::Connection {
        let conn = db::open_memory();
        let jobs: Vec<(u32, &str, i64, Option<Vec<PythonProcess>>)> = vec![
            (
                1,
                "alice",
                T0,
                Some(vec![proc(10, "3.11.2", &[("numpy", Some("1.24.2")), ("scipy", Some("1.10.1"))], "normal")]),
            ),
            (
                2,
                "alice",
                UPDATE + 3600,
                Some(vec![proc(11, "3.11.2", &[("numpy", Some("1.26.4"))], "exception:ValueError")]),
            ),
            (
                3,
                "bob",
                UPDATE + 7200,
                Some(vec![proc(12, "3.12.1", &[("numpy", Some("1.26.4")), ("torch", Some("2.1.0"))], "normal")]),
            ),
            (4, "carol", T0 + 3600, None),
            (5, "dave", UPDATE + 9000, Some(vec![proc(13, "3.11.2", &[("numpy", None)], "unfinished")])),
        ];
        let mut batches = Vec::new();
        for (id, user, start, procs) in jobs {
            let mut s = Sample::new("tc", id, start);
            s.user = user.into();
            s.uid = 2000 + id;
            if user == "carol" {
                s.modules.clear();
            }
            s.python = procs.map(|processes| PythonReport { source: "user".into(), processes, ..Default::default() });
            batches.push(s.batch(0));
        }
        let refs: Vec<_> = batches.iter().collect();
        for r in merge::apply_group(&conn, &refs, UPDATE + 86_400).unwrap() {
            r.unwrap();
        }
        conn
    }

    fn rows(r: &Report) -> Vec<String> {
        r.csv(false).lines().map(str::to_string).collect()
    }

    #[test]
    fn packages_by_version_name_users_and_interpreter() {
        let conn = ledger_conn();
        let all = Filter::default();
        let r = packages(&conn, &all, false, false, None, None).unwrap();
        assert_eq!(r.columns, ["package", "version", "jobs", "users", "job_share", "python_share"]);
        // Five jobs, four with Python.
        assert_eq!(
            rows(&r),
            [
                "numpy,1.26.4,2,2,0.4,0.5",
                "numpy,,1,1,0.2,0.25",
                "numpy,1.24.2,1,1,0.2,0.25",
                "scipy,1.10.1,1,1,0.2,0.25",
                "torch,2.1.0,1,1,0.2,0.25"
            ]
        );
        let r = packages(&conn, &all, true, true, Some(1), None).unwrap();
        assert_eq!(rows(&r), ["numpy,2,4,3,0.8,1"]);
        let r = packages(&conn, &all, true, false, None, Some("3.12")).unwrap();
        assert_eq!(rows(&r), ["numpy,1,1,1,0.2,1", "torch,1,1,1,0.2,1"]);
        let bob = Filter { users: vec!["bob".into()], ..Default::default() };
        assert_eq!(rows(&packages(&conn, &bob, true, false, None, None).unwrap()).len(), 2);
    }

    #[test]
    fn who_used_python_tells_versions_and_periods_apart() {
        let conn = ledger_conn();
        let m = parse_package("numpy").unwrap();
        let periods = [
            Period { label: "before".into(), from: None, to: Some(UPDATE) },
            Period { label: "after".into(), from: Some(UPDATE), to: None },
        ];
        let r = usage::who_used_python(&conn, &Filter::default(), &m, &periods).unwrap();
        assert_eq!(r.columns[1], "package");
        let lines: Vec<String> = r.rows.iter().map(|row| format!("{:?} {:?} {:?}", row[0], row[1], row[2])).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].contains("\"before\"") && lines[0].contains("numpy/1.24.2") && lines[0].contains("Int(1)"));
        assert!(lines[1].contains("\"after\"") && lines[1].contains("\"numpy\"") && lines[1].contains("Int(1)"));
        assert!(lines[2].contains("numpy/1.26.4") && lines[2].contains("Int(2)"), "{lines:#?}");
        assert!(lines[3].contains("numpy (all versions)") && lines[3].contains("Int(3)"), "{lines:#?}");
        // One version only, through the index or in one pass, the same.
        let v = parse_package("numpy==1.26.4").unwrap();
        let one = [Period { label: "all".into(), from: None, to: None }];
        let a = usage::who_used_python(&conn, &Filter::default(), &v, &one).unwrap();
        assert_eq!(a.rows.len(), 1);
        assert!(a.csv(false).contains("bob(1)"), "{}", a.csv(true));
        let _ = Software::Python;
    }

    #[test]
    fn summary_by_package_and_co_usage_with_modules() {
        let conn = ledger_conn();
        let r = summary::summary(&conn, &Filter::default(), &[Key::Package]).unwrap();
        let jobs: Vec<(String, String)> =
            r.rows.iter().map(|row| (format!("{:?}", row[0]), format!("{:?}", row[1]))).collect();
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert!(jobs.contains(&("Text(\"numpy\")".into(), "Int(4)".into())), "{jobs:?}");
        let r = summary::summary(&conn, &Filter::default(), &[Key::PackageVersion, Key::Module]).unwrap();
        // Every sample job loads gcc and openmpi: numpy/1.26.4 x 2 modules, two jobs each.
        let c = r.csv(false);
        assert!(c.contains("numpy/1.26.4,gcc,2,2,") && c.contains("numpy/1.26.4,openmpi,2,2,"), "{c}");
        assert!(!c.contains("numpy/1.26.4,gcc,4"), "{c}");
        let r = usage::co_usage_with(&conn, &Filter::default(), false, 1, None, true).unwrap();
        let c = r.csv(false);
        // gcc is in the four jobs that ran Python, not carol's: phi 1.
        assert!(c.contains("gcc,python:numpy,4,4,4,1"), "{c}");
        assert!(c.contains("python:numpy,python:torch,4,1,1,"), "{c}");
        let plain = usage::co_usage(&conn, &Filter::default(), false, 1, None).unwrap();
        assert!(!plain.csv(false).contains("python:"));
    }

    #[test]
    fn jobs_and_job_json_carry_packages_and_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let conn = ledger_conn();
        conn.execute("VACUUM INTO ?1", [path.to_str().unwrap()]).unwrap();
        let ask = |cmd: &str, scope: &Scope| {
            let args: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            let a = crate::daemon::local::answer(&args, &path, scope);
            assert_eq!(a.code, 0, "{cmd}: {}", a.stderr);
            String::from_utf8(a.stdout).unwrap()
        };
        let l: serde_json::Value = serde_json::from_str(&ask("query jobs --json -j 1,4", &Scope::All)).unwrap();
        assert_eq!(l[0]["packages"], serde_json::json!(["numpy/1.24.2", "scipy/1.10.1"]));
        assert_eq!(l[1]["packages"], serde_json::json!([]));
        let t = ask("query jobs -o JobID,Packages -j 3", &Scope::All);
        assert!(t.contains("numpy/1.26.4 torch/2.1.0"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&ask("query job 5 --json", &Scope::All)).unwrap();
        let p = &j[0]["python"][0];
        assert_eq!(p["ended"], "unfinished");
        assert_eq!(p["packages"], serde_json::json!(["numpy"]));
        assert_eq!((p["rank"].as_i64(), p["interpreter"].as_str()), (Some(0), Some("/usr/bin/python3.11")));
        assert_eq!(p["main"], "/home/u/train.py");
        let text = ask("query job 2", &Scope::All);
        assert!(text.contains("Python (as the job's processes reported, rank 0):"), "{text}");
        assert!(text.contains("exception:ValueError") && text.contains("packages: numpy/1.26.4"), "{text}");
        // A user sees their own; another's job reads as not recorded, and their packages are not counted.
        let bob = Scope::Own(Owner { uid: 2003, name: "bob".into(), clusters: vec![], manages: vec![] });
        let mine = ask("query packages --names --csv", &bob);
        assert_eq!(mine, "package,versions,jobs,users,job_share,python_share\nnumpy,1,1,1,1,1\ntorch,1,1,1,1,1\n");
        let args: Vec<String> = "query job 1 --json".split_whitespace().map(String::from).collect();
        let a = crate::daemon::local::answer(&args, &path, &bob);
        assert_eq!(a.code, 1, "{}", a.stderr);
        assert!(!String::from_utf8_lossy(&a.stdout).contains("numpy"));
        let who = ask("query who-used --python numpy --csv", &bob);
        assert!(who.contains("bob(1)") && !who.contains("alice"), "{who}");
    }
}
