//! Software usage: which modules are loaded, by how many jobs and users (`query modules`), who
//! used one module and how it went before and after an update (`query who-used`), and which
//! modules go together (`query co-usage`, phi correlation over jobs).
//!
//! Each job counts once per module however many of its steps loaded it (its module set), and
//! each user once per row, so one user's thousand-job array does not look like wide adoption.

use super::filter::Filter;
use super::report::{Cell, Report};
use super::summary::FAILED_STATES;
use super::Interner;
use runledger_ledger::rollup::{self, Dim};
use runledger_ledger::walls;
use runledger_record::Module;
use rusqlite::types::ValueRef;
use rusqlite::{params_from_iter, Connection};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{HashMap, HashSet};

fn db(e: rusqlite::Error) -> String {
    format!("reading the database: {e}")
}

fn full(name: &str, version: &str) -> String {
    if version.is_empty() {
        name.to_string()
    } else {
        format!("{name}/{version}")
    }
}

/// Module id -> row, as a vector indexed by id (ids are small and dense: the interned modules).
fn dense(mods: &HashMap<i64, usize>) -> Vec<Option<usize>> {
    let len = mods.keys().copied().filter(|&id| id >= 0).max().map_or(0, |m| m as usize + 1);
    let mut v = vec![None; len];
    for (&id, &row) in mods.iter().filter(|(&id, _)| id >= 0) {
        v[id as usize] = Some(row);
    }
    v
}

/// `query modules`: one row per module version (or per name with `names`), jobs, distinct
/// users and the share of all matching jobs; most jobs first (most users with `by_users`).
///
/// From the rollups when they hold the filters (a few thousand rows), else one pass over the
/// matching jobs' module sets, counted in memory.
pub fn modules(
    conn: &Connection,
    filter: &Filter,
    names: bool,
    by_users: bool,
    top: Option<usize>,
) -> Result<Report, String> {
    // Module id -> (row index, name, version); rows are versions, or names.
    let mut mods: HashMap<i64, usize> = HashMap::new();
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut versions: Vec<HashSet<String>> = Vec::new();
    {
        let mut st = conn.prepare("SELECT id, name, version FROM modules ORDER BY name, version").map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        let mut by_name: HashMap<String, usize> = HashMap::new();
        while let Some(r) = rows.next().map_err(db)? {
            let (id, name, version): (i64, String, String) =
                (r.get(0).map_err(db)?, r.get(1).map_err(db)?, r.get(2).map_err(db)?);
            let row = if names {
                *by_name.entry(name.clone()).or_insert_with(|| {
                    labels.push((name.clone(), String::new()));
                    versions.push(HashSet::new());
                    labels.len() - 1
                })
            } else {
                labels.push((name, version.clone()));
                versions.push(HashSet::new());
                labels.len() - 1
            };
            versions[row].insert(version);
            mods.insert(id, row);
        }
    }
    let total;
    let mut jobs = vec![0i64; labels.len()];
    // Distinct users per row.
    let users: Vec<usize>;
    let mut user_ids: HashMap<String, u32> = HashMap::new();
    let mut number = |u: &str| {
        let n = user_ids.len() as u32;
        *user_ids.entry(u.to_string()).or_insert(n)
    };
    if super::rollups::covers(filter) {
        // From the rollups: jobs per group and module (or name), a group's user its one user.
        // A large ledger has a few hundred thousand (group, module) rows: lookups by dense index
        // and users as bits, not hashing, keep this pass near SQLite's own reading time.
        let groups = super::rollups::groups(conn, filter).map_err(db)?;
        total = groups.iter().map(|g| g.jobs).sum::<i64>();
        let user_of: FxHashMap<i64, u32> =
            groups.iter().map(|g| (g.id, number(g.key.user.as_deref().unwrap_or("")))).collect();
        let by_id = dense(&mods);
        let by_name: FxHashMap<&str, usize> = labels.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
        let words = user_ids.len().div_ceil(64);
        let mut bits = vec![0u64; labels.len() * words];
        runledger_ledger::rollup::each_module_jobs(conn, names, |grp, module, n| {
            let Some(&u) = user_of.get(&grp) else { return };
            let row = match module {
                ValueRef::Integer(id) => usize::try_from(id).ok().and_then(|i| by_id.get(i).copied().flatten()),
                ValueRef::Text(name) => std::str::from_utf8(name).ok().and_then(|n| by_name.get(n).copied()),
                _ => None,
            };
            if let (Some(row), true) = (row, n > 0) {
                jobs[row] += n;
                bits[row * words + u as usize / 64] |= 1 << (u % 64);
            }
        })
        .map_err(db)?;
        users = (0..labels.len())
            .map(|r| bits[r * words..(r + 1) * words].iter().map(|w| w.count_ones() as usize).sum())
            .collect();
    } else {
        // Job by job: the matching jobs' module sets, expanded (sets are few).
        let sets = runledger_ledger::store::module_sets(conn).map_err(db)?;
        let (where_sql, params) = filter.to_sql();
        let sql = format!("SELECT COALESCE(user, CAST(uid AS TEXT), ''), module_set FROM jobs WHERE {where_sql}");
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        let mut n = 0;
        let mut seen: Vec<usize> = Vec::new();
        let mut user_sets: Vec<HashSet<u32>> = vec![HashSet::new(); labels.len()];
        while let Some(r) = rows.next().map_err(db)? {
            n += 1;
            let Some(set) = r.get::<_, Option<i64>>(1).map_err(db)?.and_then(|s| sets.get(&s)) else { continue };
            let u = number(r.get_ref(0).map_err(db)?.as_str().unwrap_or(""));
            seen.clear();
            for m in set {
                let Some(&row) = mods.get(m) else { continue };
                // With names, a job that loaded two versions of one module counts once.
                if seen.contains(&row) {
                    continue;
                }
                seen.push(row);
                jobs[row] += 1;
                user_sets[row].insert(u);
            }
        }
        users = user_sets.iter().map(HashSet::len).collect();
        total = n;
    }
    let mut report = if names {
        Report::new(&["module", "versions", "jobs", "users", "job_share"])
    } else {
        Report::new(&["module", "version", "jobs", "users", "job_share"])
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
            Cell::Int(users[i] as i64),
            Cell::opt_ratio(jobs[i] as f64, total as f64),
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

/// A period of `who-used`: a label and a half-open start-time range.
#[derive(Clone, Debug)]
pub struct Period {
    pub label: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// `query who-used`: for jobs that loaded `module` (and match `filter`), per period and per
/// version: jobs, users, accounts, failure rate, core-hours, median wall time; the top users.
///
/// The module sets holding the module, then their matching jobs: by the index on `module_set`
/// when the module is rare, else in one pass over the jobs the filter selects (a module in half
/// the jobs, read through that index, is half the table read one page at a time). Users,
/// accounts and versions are counted as small integers.
pub fn who_used(conn: &Connection, filter: &Filter, module: &Module, periods: &[Period]) -> Result<Report, String> {
    who_used_by(conn, filter, Software::Module, module, periods, None)
}

/// `query who-used --python PKG[/VERSION]`: [`who_used`] for a Python package the jobs'
/// processes imported (`jobs.py_set`, `py_package_set_members`).
pub fn who_used_python(
    conn: &Connection,
    filter: &Filter,
    package: &Module,
    periods: &[Period],
) -> Result<Report, String> {
    who_used_by(conn, filter, Software::Python, package, periods, None)
}

/// What `who-used` and `co-usage` count: environment modules, or Python packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Software {
    Module,
    Python,
}

impl Software {
    /// The table of distinct (name, version).
    fn items(self) -> &'static str {
        match self {
            Software::Module => "modules",
            Software::Python => "py_packages",
        }
    }

    /// The sets holding one item.
    fn sets_holding(self) -> &'static str {
        match self {
            Software::Module => "SELECT module_set FROM module_set_members WHERE module = ?1",
            Software::Python => "SELECT package_set FROM py_package_set_members WHERE package = ?1",
        }
    }

    /// The job's set column.
    fn job_set(self) -> &'static str {
        match self {
            Software::Module => "module_set",
            Software::Python => "py_set",
        }
    }

    /// The first column's name in `who-used`.
    fn column(self) -> &'static str {
        match self {
            Software::Module => "module",
            Software::Python => "package",
        }
    }
}

/// [`who_used`], reading the jobs through the index on `module_set` (`Some(true)`), in one pass
/// (`Some(false)`), or as the module's share of the jobs says (`None`).
fn who_used_by(
    conn: &Connection,
    filter: &Filter,
    what: Software,
    module: &Module,
    periods: &[Period],
    through_index: Option<bool>,
) -> Result<Report, String> {
    let mut versions: HashMap<i64, String> = HashMap::new();
    {
        let sql = format!("SELECT id, version FROM {} WHERE name = ?1", what.items());
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query([&module.name]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let v: String = r.get(1).map_err(db)?;
            if module.version.as_deref().is_none_or(|want| want == v) {
                versions.insert(r.get(0).map_err(db)?, v);
            }
        }
    }
    // Group labels: the versions in order, then "*" (all versions); a group is (period, label).
    let mut labels: Vec<String> = versions.values().cloned().collect();
    labels.sort_unstable();
    labels.dedup();
    let all = labels.len();
    labels.push("*".into());
    // Module set -> the labels it counts in, each once.
    let mut loaded: HashMap<i64, Vec<usize>> = HashMap::new();
    {
        let mut st = conn.prepare(what.sets_holding()).map_err(db)?;
        for (id, v) in &versions {
            let label = labels[..all].binary_search(v).expect("every version has a label");
            let mut rows = st.query([id]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                loaded.entry(r.get(0).map_err(db)?).or_default().push(label);
            }
        }
    }
    for ls in loaded.values_mut() {
        ls.sort_unstable();
        ls.dedup();
        ls.push(all);
    }
    #[derive(Default)]
    struct G {
        jobs: i64,
        users: FxHashMap<u32, i64>,
        accounts: FxHashSet<u32>,
        ended: i64,
        failed: i64,
        core_s: i64,
        walls: walls::Acc,
    }
    let mut groups: Vec<G> = (0..periods.len() * labels.len()).map(|_| G::default()).collect();
    let mut users = Interner::default();
    let mut accounts = Interner::default();
    // All time, under filters the rollups hold: a module's cells (per group, version and name)
    // hold every count, not its jobs.
    let from_cells = what == Software::Module
        && through_index.is_none()
        && super::rollups::covers(filter)
        && matches!(periods, [Period { from: None, to: None, .. }]);
    if !loaded.is_empty() && from_cells {
        let selected: HashMap<i64, rollup::Group> =
            super::rollups::groups(conn, filter).map_err(db)?.into_iter().map(|g| (g.id, g)).collect();
        let by_version: HashMap<i64, usize> = versions
            .iter()
            .map(|(id, v)| (*id, labels[..all].binary_search(v).expect("every version has a label")))
            .collect();
        let mut cells: Vec<(usize, rollup::Cell)> = Vec::new();
        for c in rollup::cells_of(conn, Dim::Module, &by_version.keys().copied().collect::<Vec<_>>()).map_err(db)? {
            cells.push((by_version[&c.val], c));
        }
        // All versions: by name, where a job that loaded two versions counts once.
        if module.version.is_none() {
            for c in rollup::cells_of(conn, Dim::ModuleName, &[rollup::name_key(&module.name)]).map_err(db)? {
                cells.push((all, c));
            }
        }
        for (l, c) in cells {
            let Some(grp) = selected.get(&c.grp) else { continue };
            let g = &mut groups[l];
            g.jobs += c.jobs;
            *g.users.entry(users.id(grp.key.user.as_deref().unwrap_or("").as_bytes())).or_default() += c.jobs;
            g.accounts.insert(accounts.id(grp.key.account.as_deref().unwrap_or("").as_bytes()));
            let state = grp.key.state.as_str();
            if state != "UNKNOWN" {
                g.ended += c.jobs;
                if FAILED_STATES.contains(&state) {
                    g.failed += c.jobs;
                }
            }
            g.core_s += c.core_s;
            g.walls.add_encoded(&c.walls);
        }
    } else if !loaded.is_empty() {
        let (where_sql, mut params) = filter.to_sql();
        // A common module's sets are picked out below, as the rows go by: the filter's own
        // index, or one pass (SQLite cannot guess how many jobs json_each selects).
        let mut sets_sql = "";
        let through_index = match through_index {
            Some(b) => b,
            None => match what {
                Software::Module => rare(conn, &versions).map_err(db)?,
                Software::Python => rare_python(conn, &loaded).map_err(db)?,
            },
        };
        let set_col = what.job_set();
        if through_index {
            let sets: Vec<i64> = loaded.keys().copied().collect();
            params.push(rusqlite::types::Value::Text(serde_json::to_string(&sets).expect("integers serialize")));
            sets_sql = match what {
                Software::Module => " AND module_set IN (SELECT value FROM json_each(?))",
                Software::Python => " AND py_set IN (SELECT value FROM json_each(?))",
            };
        }
        let sql = format!(
            "SELECT {set_col}, COALESCE(user, CAST(uid AS TEXT), ''), COALESCE(account, ''), start, end - start, ncpus,
                    state
             FROM jobs WHERE ({where_sql}){sets_sql}"
        );
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let Some(ls) = r.get::<_, Option<i64>>(0).map_err(db)?.and_then(|set| loaded.get(&set)) else { continue };
            let user = users.id(r.get_ref(1).map_err(db)?.as_bytes().unwrap_or(b""));
            let account = accounts.id(r.get_ref(2).map_err(db)?.as_bytes().unwrap_or(b""));
            let start: Option<i64> = r.get(3).map_err(db)?;
            let elapsed: Option<i64> = r.get(4).map_err(db)?;
            let ncpus: Option<i64> = r.get(5).map_err(db)?;
            let state = r.get_ref(6).map_err(db)?.as_str().unwrap_or("UNKNOWN");
            for (pi, p) in periods.iter().enumerate() {
                let inside = match start {
                    Some(s) => p.from.is_none_or(|f| s >= f) && p.to.is_none_or(|t| s < t),
                    None => p.from.is_none() && p.to.is_none(),
                };
                if !inside {
                    continue;
                }
                for &l in ls {
                    let g = &mut groups[pi * labels.len() + l];
                    g.jobs += 1;
                    *g.users.entry(user).or_default() += 1;
                    g.accounts.insert(account);
                    if state != "UNKNOWN" {
                        g.ended += 1;
                        if FAILED_STATES.contains(&state) {
                            g.failed += 1;
                        }
                    }
                    if let Some(e) = elapsed {
                        g.walls.push(e);
                        g.core_s += e.max(0) * ncpus.unwrap_or(0);
                    }
                }
            }
        }
    }
    let mut report = Report::new(&[
        "period",
        what.column(),
        "jobs",
        "users",
        "accounts",
        "failure_rate",
        "core_hours",
        "wall_p50_s",
        "top_users",
    ]);
    // Per period: the versions in order, then the all-versions line (when there are several).
    for (pi, period) in periods.iter().enumerate() {
        let row = &mut groups[pi * labels.len()..(pi + 1) * labels.len()];
        let versions_seen = row[..all].iter().filter(|g| g.jobs > 0).count();
        for (l, g) in row.iter_mut().enumerate() {
            if g.jobs == 0 || (l == all && versions_seen <= 1) {
                continue;
            }
            let walls = std::mem::take(&mut g.walls).finish();
            let label =
                if l == all { format!("{} (all versions)", module.name) } else { full(&module.name, &labels[l]) };
            let mut top: Vec<(&str, i64)> = g.users.iter().map(|(&u, &n)| (users.text(u), n)).collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let top: Vec<String> = top.iter().take(3).map(|(u, n)| format!("{u}({n})")).collect();
            report.rows.push(vec![
                Cell::Text(period.label.clone()),
                Cell::Text(label),
                Cell::Int(g.jobs),
                Cell::Int(g.users.len() as i64),
                Cell::Int(g.accounts.len() as i64),
                Cell::opt_ratio(g.failed as f64, g.ended as f64),
                Cell::Float(g.core_s as f64 / 3600.0, 1),
                walls.quantile(0.5).map(Cell::Secs).unwrap_or(Cell::Null),
                Cell::Text(top.join(" ")),
            ]);
        }
    }
    Ok(report)
}

/// Whether `versions` are loaded by at most one job in twenty, by the rollups' counts (a job
/// loading two versions counts twice: a guess is all the choice of index needs).
fn rare(conn: &Connection, versions: &HashMap<i64, String>) -> rusqlite::Result<bool> {
    let ids = serde_json::to_string(&versions.keys().collect::<Vec<_>>()).expect("integers serialize");
    let with: i64 = conn.query_row(
        "SELECT COALESCE(SUM(jobs), 0) FROM rollup_modules WHERE module IN (SELECT value FROM json_each(?1))",
        [ids],
        |r| r.get(0),
    )?;
    let total: i64 = conn.query_row("SELECT COALESCE(SUM(jobs), 0) FROM rollup", [], |r| r.get(0))?;
    Ok(with * 20 <= total)
}

/// Whether the Python package sets `loaded` are held by at most one job in twenty (counted
/// through the index on `jobs.py_set`, which holds only the jobs that recorded Python).
fn rare_python(conn: &Connection, loaded: &HashMap<i64, Vec<usize>>) -> rusqlite::Result<bool> {
    let ids = serde_json::to_string(&loaded.keys().collect::<Vec<_>>()).expect("integers serialize");
    let with: i64 =
        conn.query_row("SELECT COUNT(*) FROM jobs WHERE py_set IN (SELECT value FROM json_each(?1))", [ids], |r| {
            r.get(0)
        })?;
    let total: i64 = conn.query_row("SELECT COALESCE(SUM(jobs), 0) FROM rollup", [], |r| r.get(0))?;
    Ok(with * 20 <= total)
}

/// Phi (Pearson over 0/1) correlation of two modules over `n` jobs.
pub fn phi(n: f64, a: f64, b: f64, ab: f64) -> Option<f64> {
    let den = (a * (n - a) * b * (n - b)).sqrt();
    if den > 0.0 {
        Some((n * ab - a * b) / den)
    } else {
        None
    }
}

/// `query co-usage`: module pairs by phi correlation over the matching jobs (by name, or by
/// name/version with `versions`), pairs seen together in at least `min_jobs` jobs.
pub fn co_usage(
    conn: &Connection,
    filter: &Filter,
    versions: bool,
    min_jobs: i64,
    top: Option<usize>,
) -> Result<Report, String> {
    co_usage_with(conn, filter, versions, min_jobs, top, false)
}

/// [`co_usage`]; with `python`, over modules and Python packages together (a package is
/// `python:NAME`, or `python:NAME/VERSION` with `versions`).
pub fn co_usage_with(
    conn: &Connection,
    filter: &Filter,
    versions: bool,
    min_jobs: i64,
    top: Option<usize>,
    python: bool,
) -> Result<Report, String> {
    // Module id -> row of `names` (by name, or name/version).
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut module_row: HashMap<i64, usize> = HashMap::new();
    {
        let mut st = conn.prepare("SELECT id, name, version FROM modules").map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let (id, name, version): (i64, String, String) =
                (r.get(0).map_err(db)?, r.get(1).map_err(db)?, r.get(2).map_err(db)?);
            let label = if versions { full(&name, &version) } else { name };
            let n = names.len();
            let row = *ids.entry(label.clone()).or_insert(n);
            if row == n {
                names.push(label);
            }
            module_row.insert(id, row);
        }
    }
    // Package id -> row of `names`, after the modules'.
    let mut package_row: HashMap<i64, usize> = HashMap::new();
    if python {
        for (id, (name, version)) in runledger_ledger::python::package_names(conn).map_err(db)? {
            let label = if versions { format!("python:{}", full(&name, &version)) } else { format!("python:{name}") };
            let n = names.len();
            let row = *ids.entry(label.clone()).or_insert(n);
            if row == n {
                names.push(label);
            }
            package_row.insert(id, row);
        }
    }
    let mut single: Vec<i64> = vec![0; names.len()];
    let mut pairs: HashMap<(usize, usize), i64> = HashMap::new();
    // Jobs per module set, then each set's pairs counted once with its jobs.
    let mut total = 0i64;
    {
        let sets = runledger_ledger::store::module_sets(conn).map_err(db)?;
        let py_sets = if python { runledger_ledger::python::package_sets(conn).map_err(db)? } else { HashMap::new() };
        let (where_sql, params) = filter.to_sql();
        let sql = if python {
            format!("SELECT module_set, COUNT(*), py_set FROM jobs WHERE {where_sql} GROUP BY module_set, py_set")
        } else {
            format!("SELECT module_set, COUNT(*), NULL FROM jobs WHERE {where_sql} GROUP BY module_set")
        };
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        let mut cur: Vec<usize> = Vec::new();
        while let Some(r) = rows.next().map_err(db)? {
            let n: i64 = r.get(1).map_err(db)?;
            total += n;
            let set = r.get::<_, Option<i64>>(0).map_err(db)?.and_then(|s| sets.get(&s));
            let py_set = r.get::<_, Option<i64>>(2).map_err(db)?.and_then(|s| py_sets.get(&s));
            if set.is_none() && py_set.is_none() {
                continue;
            }
            cur.clear();
            cur.extend(set.into_iter().flatten().filter_map(|m| module_row.get(m).copied()));
            cur.extend(py_set.into_iter().flatten().filter_map(|p| package_row.get(p).copied()));
            cur.sort_unstable();
            cur.dedup();
            for (i, &a) in cur.iter().enumerate() {
                single[a] += n;
                for &b in &cur[i + 1..] {
                    *pairs.entry((a, b)).or_default() += n;
                }
            }
        }
    }
    let n = total as f64;
    let mut report = Report::new(&["module_a", "module_b", "jobs_a", "jobs_b", "jobs_both", "phi"]);
    for ((a, b), ab) in pairs {
        if ab < min_jobs {
            continue;
        }
        let Some(p) = phi(n, single[a] as f64, single[b] as f64, ab as f64) else { continue };
        let (a, b) = if names[a] <= names[b] { (a, b) } else { (b, a) };
        report.rows.push(vec![
            Cell::Text(names[a].clone()),
            Cell::Text(names[b].clone()),
            Cell::Int(single[a]),
            Cell::Int(single[b]),
            Cell::Int(ab),
            Cell::Float(p, 3),
        ]);
    }
    // Stable sorts: module_b, then module_a, then phi (the pairs come from a hash map).
    report.sort_by(1, false);
    report.sort_by(0, false);
    report.sort_by(5, true);
    if let Some(t) = top {
        report.rows.truncate(t);
    }
    Ok(report)
}
#[cfg(test)]
mod tests {
    use super::*;
    use runledger_ledger::{db, merge};
    use runledger_synth::synth;

    /// Reading a module's jobs through the index or in one pass gives the same report, for
    /// common and rare modules, with and without filters and periods.
    #[test]
    fn who_used_reads_the_same_either_way() {
        let conn = db::open_memory();
        let batches = synth::fixture_batches();
        let refs: Vec<_> = batches.iter().collect();
        for r in merge::apply_group(&conn, &refs, synth::FIXTURE_END).unwrap() {
            r.unwrap();
        }
        let periods = [
            Period { label: "all".into(), from: None, to: None },
            Period { label: "before".into(), from: None, to: Some(synth::FIXTURE_END - 90 * 86_400) },
            Period { label: "after".into(), from: Some(synth::FIXTURE_END - 90 * 86_400), to: None },
        ];
        let names: Vec<(String, String)> =
            crate::questions::query::module_names(&conn).unwrap().into_values().collect();
        let users = Filter { users: vec!["user000".into(), "user003".into()], ..Default::default() };
        let mut rows = 0;
        for (name, version) in &names {
            for version in [None, Some(version.clone())] {
                let m = Module { name: name.clone(), version, file: None };
                for f in [&Filter::default(), &users] {
                    let a = who_used_by(&conn, f, Software::Module, &m, &periods, Some(true)).unwrap();
                    let b = who_used_by(&conn, f, Software::Module, &m, &periods, Some(false)).unwrap();
                    assert_eq!(a.csv(true), b.csv(true), "{m:?} {f:?}");
                    rows += a.rows.len();
                }
            }
        }
        assert!(names.len() > 5 && rows > 4 * names.len(), "{} modules, {rows} rows", names.len());
    }
}
