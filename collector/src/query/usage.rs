//! Software usage: which modules are loaded, by how many jobs and users (`query modules`), who
//! used one module and how it went before and after an update (`query who-used`), and which
//! modules go together (`query co-usage`, phi correlation over jobs).
//!
//! Each job counts once per module however many of its steps loaded it (`job_modules`), and
//! each user once per row, so one user's thousand-job array does not look like wide adoption.

use super::filter::Filter;
use super::report::{quantile, Cell, Report};
use super::summary::FAILED_STATES;
use runledger_record::Module;
use rusqlite::{params_from_iter, Connection};
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

/// `query modules`: one row per module version (or per name with `names`), jobs, distinct
/// users and the share of all matching jobs; most jobs first (most users with `by_users`).
///
/// One pass each over the matching jobs and over `job_modules` (its primary key, in job order),
/// counted in memory: much cheaper than SQL's COUNT(DISTINCT) over a join.
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
    // The matching jobs: id -> user number (dense ids, so a vector).
    const NONE: u32 = u32::MAX;
    let (where_sql, params) = filter.to_sql();
    let mut user_of: Vec<u32> = Vec::new();
    let mut selected: Vec<i64> = Vec::new();
    let mut user_ids: HashMap<String, u32> = HashMap::new();
    {
        let sql = format!("SELECT id, COALESCE(user, CAST(uid AS TEXT), '') FROM jobs WHERE {where_sql}");
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let id: i64 = r.get(0).map_err(db)?;
            let u = r.get_ref(1).map_err(db)?.as_str().unwrap_or("");
            let n = user_ids.len() as u32;
            let uid = *user_ids.entry(u.to_string()).or_insert(n);
            let Ok(i) = usize::try_from(id) else { continue };
            if i >= user_of.len() {
                user_of.resize(i + 1, NONE);
            }
            user_of[i] = uid;
            selected.push(id);
        }
    }
    let total = selected.len() as i64;
    let mut jobs = vec![0i64; labels.len()];
    let mut users: Vec<HashSet<u32>> = vec![HashSet::new(); labels.len()];
    let mut seen: Vec<usize> = Vec::new();
    let mut cur_job = i64::MIN;
    let mut add = |job: i64, module: i64, seen: &mut Vec<usize>| {
        let Some(&row) = mods.get(&module) else { return };
        let Some(&u) = usize::try_from(job).ok().and_then(|i| user_of.get(i)) else { return };
        if u == NONE {
            return;
        }
        if job != cur_job {
            seen.clear();
            cur_job = job;
        }
        // With names, a job that loaded two versions of one module counts once.
        if seen.contains(&row) {
            return;
        }
        seen.push(row);
        jobs[row] += 1;
        users[row].insert(u);
    };
    let all = conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0)).map_err(db)?;
    if total * 20 < all {
        // Few jobs: look each one up.
        let mut st = conn.prepare("SELECT module FROM job_modules WHERE job = ?1").map_err(db)?;
        for &job in &selected {
            let mut rows = st.query([job]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                add(job, r.get(0).map_err(db)?, &mut seen);
            }
        }
    } else {
        let mut st = conn.prepare("SELECT job, module FROM job_modules ORDER BY job").map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            add(r.get(0).map_err(db)?, r.get(1).map_err(db)?, &mut seen);
        }
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
            Cell::Int(users[i].len() as i64),
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

/// The jobs matching `filter`, as a membership vector indexed by row id (ids are dense).
fn job_set(conn: &Connection, filter: &Filter) -> Result<(Vec<bool>, i64), String> {
    let (where_sql, params) = filter.to_sql();
    let mut st = conn.prepare(&format!("SELECT id FROM jobs WHERE {where_sql}")).map_err(db)?;
    let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
    let mut set = Vec::new();
    let mut n = 0;
    while let Some(r) = rows.next().map_err(db)? {
        let Ok(i) = usize::try_from(r.get::<_, i64>(0).map_err(db)?) else { continue };
        if i >= set.len() {
            set.resize(i + 1, false);
        }
        set[i] = true;
        n += 1;
    }
    Ok((set, n))
}

/// `query who-used`: for jobs that loaded `module` (and match `filter`), per period and per
/// version: jobs, users, accounts, failure rate, core-hours, median wall time; the top users.
///
/// One indexed read of the module's jobs (`job_modules` by module), one pass over the matching
/// jobs; everything else is counted in memory.
pub fn who_used(conn: &Connection, filter: &Filter, module: &Module, periods: &[Period]) -> Result<Report, String> {
    let mut versions: HashMap<i64, String> = HashMap::new();
    {
        let mut st = conn.prepare("SELECT id, version FROM modules WHERE name = ?1").map_err(db)?;
        let mut rows = st.query([&module.name]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let v: String = r.get(1).map_err(db)?;
            if module.version.as_deref().is_none_or(|want| want == v) {
                versions.insert(r.get(0).map_err(db)?, v);
            }
        }
    }
    // Job -> the versions it loaded.
    let mut loaded: HashMap<i64, Vec<String>> = HashMap::new();
    {
        let mut st = conn.prepare("SELECT job FROM job_modules WHERE module = ?1").map_err(db)?;
        for (id, v) in &versions {
            let mut rows = st.query([id]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                loaded.entry(r.get(0).map_err(db)?).or_default().push(v.clone());
            }
        }
    }
    #[derive(Default)]
    struct G {
        jobs: i64,
        users: HashMap<String, i64>,
        accounts: HashSet<String>,
        ended: i64,
        failed: i64,
        core_s: f64,
        walls: Vec<f64>,
    }
    let mut groups: HashMap<(usize, String), G> = HashMap::new();
    if !loaded.is_empty() {
        let (where_sql, params) = filter.to_sql();
        let sql = format!(
            "SELECT id, COALESCE(user, CAST(uid AS TEXT), ''), COALESCE(account, ''), start, end - start, ncpus, state
             FROM jobs WHERE {where_sql}"
        );
        let mut st = conn.prepare(&sql).map_err(db)?;
        let mut rows = st.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let id: i64 = r.get(0).map_err(db)?;
            let Some(vs) = loaded.get(&id) else { continue };
            let user: String = r.get(1).map_err(db)?;
            let account: String = r.get(2).map_err(db)?;
            let start: Option<i64> = r.get(3).map_err(db)?;
            let elapsed: Option<i64> = r.get(4).map_err(db)?;
            let ncpus: Option<i64> = r.get(5).map_err(db)?;
            let state = r.get_ref(6).map_err(db)?.as_str().unwrap_or("UNKNOWN");
            let mut keys: Vec<&str> = vs.iter().map(String::as_str).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.push("*");
            for (pi, p) in periods.iter().enumerate() {
                let inside = match start {
                    Some(s) => p.from.is_none_or(|f| s >= f) && p.to.is_none_or(|t| s < t),
                    None => p.from.is_none() && p.to.is_none(),
                };
                if !inside {
                    continue;
                }
                for v in &keys {
                    let g = groups.entry((pi, v.to_string())).or_default();
                    g.jobs += 1;
                    match g.users.get_mut(&user) {
                        Some(n) => *n += 1,
                        None => {
                            g.users.insert(user.clone(), 1);
                        }
                    }
                    if !g.accounts.contains(&account) {
                        g.accounts.insert(account.clone());
                    }
                    if state != "UNKNOWN" {
                        g.ended += 1;
                        if FAILED_STATES.contains(&state) {
                            g.failed += 1;
                        }
                    }
                    if let Some(e) = elapsed {
                        g.walls.push(e.max(0) as f64);
                        g.core_s += (e.max(0) * ncpus.unwrap_or(0)) as f64;
                    }
                }
            }
        }
    }
    let mut report = Report::new(&[
        "period",
        "module",
        "jobs",
        "users",
        "accounts",
        "failure_rate",
        "core_hours",
        "wall_p50_s",
        "top_users",
    ]);
    let mut keys: Vec<(usize, String)> = groups.keys().cloned().collect();
    // Per period: the versions in order, then the all-versions line (when there are several).
    keys.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (a.1 == "*").cmp(&(b.1 == "*"))).then_with(|| a.1.cmp(&b.1)));
    let versions_per_period = |pi: usize| keys.iter().filter(|k| k.0 == pi && k.1 != "*").count();
    for k in &keys {
        if k.1 == "*" && versions_per_period(k.0) <= 1 {
            continue;
        }
        let g = groups.get_mut(k).expect("key from the map");
        g.walls.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let label = if k.1 == "*" { format!("{} (all versions)", module.name) } else { full(&module.name, &k.1) };
        let mut top: Vec<(&String, &i64)> = g.users.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let top: Vec<String> = top.iter().take(3).map(|(u, n)| format!("{u}({n})")).collect();
        report.rows.push(vec![
            Cell::Text(periods[k.0].label.clone()),
            Cell::Text(label),
            Cell::Int(g.jobs),
            Cell::Int(g.users.len() as i64),
            Cell::Int(g.accounts.len() as i64),
            Cell::opt_ratio(g.failed as f64, g.ended as f64),
            Cell::Float(g.core_s / 3600.0, 1),
            quantile(&g.walls, 0.5).map(Cell::Secs).unwrap_or(Cell::Null),
            Cell::Text(top.join(" ")),
        ]);
    }
    Ok(report)
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
    let (set, total) = job_set(conn, filter)?;
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
    let mut single: Vec<i64> = vec![0; names.len()];
    let mut pairs: HashMap<(usize, usize), i64> = HashMap::new();
    let mut cur_job = i64::MIN;
    let mut cur: Vec<usize> = Vec::new();
    let flush = |cur: &mut Vec<usize>, single: &mut Vec<i64>, pairs: &mut HashMap<(usize, usize), i64>| {
        cur.sort_unstable();
        cur.dedup();
        for (i, &a) in cur.iter().enumerate() {
            single[a] += 1;
            for &b in &cur[i + 1..] {
                *pairs.entry((a, b)).or_default() += 1;
            }
        }
        cur.clear();
    };
    {
        // The primary key's order: job by job.
        let mut st = conn.prepare("SELECT job, module FROM job_modules ORDER BY job").map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let job: i64 = r.get(0).map_err(db)?;
            if !usize::try_from(job).ok().and_then(|i| set.get(i)).copied().unwrap_or(false) {
                continue;
            }
            let Some(&row) = module_row.get(&r.get::<_, i64>(1).map_err(db)?) else { continue };
            if job != cur_job {
                flush(&mut cur, &mut single, &mut pairs);
                cur_job = job;
            }
            cur.push(row);
        }
        flush(&mut cur, &mut single, &mut pairs);
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
