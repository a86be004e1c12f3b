//! `collector query summary --by KEY[,KEY…]`: jobs grouped by one or more keys, with what a
//! manager asks about each group.
//!
//! Columns per group:
//!
//! | column           | meaning |
//! |------------------|---------|
//! | `jobs`           | jobs in the group |
//! | `users`          | distinct users |
//! | `core_hours`     | allocated core-hours: Σ elapsed × ncpus / 3600 |
//! | `cpu_hours`      | used CPU-hours: Σ (user + system CPU seconds) / 3600 |
//! | `cpu_efficiency` | cpu_hours / core_hours (jobs with a known elapsed and ncpus) |
//! | `failure_rate`   | jobs ending FAILED, TIMEOUT, OUT_OF_MEMORY or NODE_FAIL over jobs with a final state (UNKNOWN excluded; CANCELLED counts as ended, not failed) |
//! | `wall_p50_s`, `wall_p95_s` | median and 95th percentile of elapsed (linear interpolation) |
//!
//! With `module` or `module_version` among the keys a job counts once in every module it loaded
//! (jobs without modules are left out). Time keys use the job's start in local time.
//!
//! Keys and filters the rollups hold (user, account, partition, cluster, state) are answered from
//! them ([`runledger_ledger::rollup`]), others by a scan of the jobs; both sum CPU seconds exactly
//! ([`ExactSum`]: the correctly rounded total, where a sum of floats in row order drifts in the
//! 12th digit at a million jobs), so they agree to the last digit.

use super::filter::Filter;
use super::report::{quantile_select, Cell, Report};
use super::Interner;
use runledger_ledger::store::ExactSum;
use rusqlite::{params_from_iter, Connection};
use rustc_hash::FxHashMap;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    User,
    Account,
    Partition,
    Cluster,
    Program,
    Module,
    ModuleVersion,
    State,
    Category,
    Nodes,
    Ranks,
    Year,
    Month,
    Week,
    Day,
    Hour,
    Weekday,
    /// A job-level fact (`fact:NAME`; parameters included: `fact:param.pair_style`). Holds the
    /// whole `fact:NAME` spelling, interned ([`fact_key`]) so that keys stay `Copy`.
    Fact(&'static str),
}

pub const KEYS: &[(&str, Key)] = &[
    ("user", Key::User),
    ("account", Key::Account),
    ("partition", Key::Partition),
    ("cluster", Key::Cluster),
    ("program", Key::Program),
    ("module", Key::Module),
    ("module_version", Key::ModuleVersion),
    ("state", Key::State),
    ("category", Key::Category),
    ("nodes", Key::Nodes),
    ("ranks", Key::Ranks),
    ("year", Key::Year),
    ("month", Key::Month),
    ("week", Key::Week),
    ("day", Key::Day),
    ("hour", Key::Hour),
    ("weekday", Key::Weekday),
];

/// A clap value parser for one `--by` key: one of [`KEYS`], or `fact:NAME`.
pub fn parse_key(s: &str) -> Result<Key, String> {
    if let Some(k) = fact_key(s)? {
        return Ok(k);
    }
    let t = s.trim().to_ascii_lowercase().replace('-', "_");
    KEYS.iter().find(|(n, _)| *n == t).map(|(_, k)| *k).ok_or_else(|| {
        format!(
            "unknown --by key '{s}' (expected one or more of: {}, or fact:NAME)",
            KEYS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )
    })
}

/// `fact:NAME` as a key (`None` when `s` does not start with `fact:`). Each distinct spelling is
/// leaked once, so a key is `Copy` and names its column for the program's life (a handful per
/// process).
pub fn fact_key(s: &str) -> Result<Option<Key>, String> {
    let t = s.trim();
    let Some(name) = t.get(..5).filter(|p| p.eq_ignore_ascii_case("fact:")).map(|_| &t[5..]) else {
        return Ok(None);
    };
    super::filter::check_fact_name(name).map_err(|e| format!("--by fact:NAME: {e}"))?;
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let full = format!("fact:{name}");
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let interned = match names.iter().find(|n| **n == full) {
        Some(n) => *n,
        None => {
            let n: &'static str = Box::leak(full.into_boxed_str());
            names.push(n);
            n
        }
    };
    Ok(Some(Key::Fact(interned)))
}

impl Key {
    pub fn name(self) -> &'static str {
        if let Key::Fact(n) = self {
            return n;
        }
        KEYS.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Keys whose natural order is their value (time, sizes): sorted by key, not by jobs.
    pub fn ordered(self) -> bool {
        matches!(
            self,
            Key::Nodes | Key::Ranks | Key::Year | Key::Month | Key::Week | Key::Day | Key::Hour | Key::Weekday
        )
    }

    fn sql(self) -> String {
        let s = match self {
            Key::User => "COALESCE(jobs.user, CAST(jobs.uid AS TEXT))",
            Key::Account => "jobs.account",
            Key::Partition => "jobs.partition",
            Key::Cluster => "jobs.cluster",
            Key::Program => "jobs.program",
            Key::Category => "jobs.category",
            Key::Module => "m.name",
            Key::ModuleVersion => "m.name || CASE WHEN m.version = '' THEN '' ELSE '/' || m.version END",
            Key::State => "jobs.state",
            Key::Nodes => "jobs.nnodes",
            Key::Ranks => "(SELECT MAX(s.ntasks) FROM steps s WHERE s.job = jobs.id AND s.step_id <> 4294967291)",
            Key::Year => "CAST(strftime('%Y', jobs.start, 'unixepoch', 'localtime') AS INTEGER)",
            Key::Month => "strftime('%Y-%m', jobs.start, 'unixepoch', 'localtime')",
            // ISO-8601-ish: the Monday that starts the week.
            Key::Week => "date(jobs.start, 'unixepoch', 'localtime', '-6 days', 'weekday 1')",
            Key::Day => "date(jobs.start, 'unixepoch', 'localtime')",
            Key::Hour => "CAST(strftime('%H', jobs.start, 'unixepoch', 'localtime') AS INTEGER)",
            // Monday = 1 … Sunday = 7.
            Key::Weekday => "((CAST(strftime('%w', jobs.start, 'unixepoch', 'localtime') AS INTEGER) + 6) % 7 + 1)",
            // The name is checked ([`super::filter::check_fact_name`]): no quote can end the literal. One value
            // per job (nodes may each report it): the smallest.
            Key::Fact(n) => {
                return format!(
                    "(SELECT MIN(f.value) FROM facts f WHERE f.job = jobs.id AND f.source = '' AND f.key = '{}')",
                    &n[5..]
                )
            }
        };
        s.to_string()
    }

    fn column(self) -> Option<&'static str> {
        match self {
            Key::Program => Some("program"),
            Key::Category => Some("category"),
            _ => None,
        }
    }
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Every value a key can take when that set is fixed and small (the hours of a day, the days of
/// a week), as the summary's cells write them: a chart keeps its frame whatever the data.
pub fn frame(key: Key) -> Option<Vec<Cell>> {
    match key {
        Key::Hour => Some((0..24).map(Cell::Int).collect()),
        Key::Weekday => Some((1..=7).map(|d| Cell::Text(format!("{d} {}", WEEKDAYS[d - 1]))).collect()),
        _ => None,
    }
}

/// Whether `jobs` has this column (the verdict columns came with schema version 2).
pub fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?.exists([table, column])
}

/// The states counted as failures in `failure_rate` (the rollups count the same).
pub use runledger_ledger::rollup::FAILED_STATES;

/// Per-group accumulator. Sums are integers or exact ([`ExactSum`]), so a group summed from the
/// rollups ([`runledger_ledger::rollup`]) and one summed job by job agree to the last digit.
#[derive(Default)]
pub struct Agg {
    pub jobs: i64,
    pub users: rustc_hash::FxHashSet<u32>,
    pub core_s: i64,
    pub cpu_s: ExactSum,
    /// Core-seconds and cpu-seconds of the jobs where both are known (the efficiency's terms).
    pub eff_core_s: i64,
    pub eff_cpu_s: ExactSum,
    pub ended: i64,
    pub failed: i64,
    pub walls: Vec<i64>,
}

impl Agg {
    pub fn add(&mut self, user: u32, elapsed: Option<i64>, ncpus: Option<i64>, cpu_s: f64, state: &str) {
        self.jobs += 1;
        self.users.insert(user);
        self.cpu_s.add(cpu_s);
        if let Some(e) = elapsed {
            self.walls.push(e);
            if let Some(n) = ncpus {
                let core = e * n;
                self.core_s += core;
                if core > 0 {
                    self.eff_core_s += core;
                    self.eff_cpu_s.add(cpu_s);
                }
            }
        }
        self.add_state(state, 1);
    }

    fn add_state(&mut self, state: &str, n: i64) {
        if state != "UNKNOWN" {
            self.ended += n;
            if FAILED_STATES.contains(&state) {
                self.failed += n;
            }
        }
    }

    /// Adds a rollup group of jobs (`user`: its user, numbered; `walls`: its elapsed times).
    pub fn add_group(&mut self, user: u32, g: &runledger_ledger::rollup::Group, walls: &[i64]) {
        self.jobs += g.jobs;
        self.users.insert(user);
        self.core_s += g.core_s;
        self.cpu_s.0 = self.cpu_s.0.wrapping_add(g.cpu.0);
        self.eff_core_s += g.eff_core_s;
        self.eff_cpu_s.0 = self.eff_cpu_s.0.wrapping_add(g.eff_cpu.0);
        self.walls.extend_from_slice(walls);
        self.add_state(&g.key.state, g.jobs);
    }

    pub fn cells(&mut self) -> Vec<Cell> {
        vec![
            Cell::Int(self.jobs),
            Cell::Int(self.users.len() as i64),
            Cell::Float(self.core_s as f64 / 3600.0, 1),
            Cell::Float(self.cpu_s.value() / 3600.0, 1),
            Cell::opt_ratio(self.eff_cpu_s.value(), self.eff_core_s as f64),
            Cell::opt_ratio(self.failed as f64, self.ended as f64),
            quantile_select(&mut self.walls, 0.5).map(Cell::Secs).unwrap_or(Cell::Null),
            quantile_select(&mut self.walls, 0.95).map(Cell::Secs).unwrap_or(Cell::Null),
        ]
    }
}

pub const METRICS: &[&str] =
    &["jobs", "users", "core_hours", "cpu_hours", "cpu_efficiency", "failure_rate", "wall_p50_s", "wall_p95_s"];

/// Groups the jobs matching `filter` by `keys`: from the rollups when they hold the keys and
/// the filters ([`runledger_ledger::rollup`]), else job by job.
pub fn summary(conn: &Connection, filter: &Filter, keys: &[Key]) -> Result<Report, String> {
    let db = |e: rusqlite::Error| format!("reading the database: {e}");
    for k in keys {
        if let Some(c) = k.column() {
            if !has_column(conn, "jobs", c).map_err(db)? {
                return Err(format!(
                    "--by {}: this ledger has no jobs.{c} column yet (schema version 2 adds it; restart \
                     `collector serve` to upgrade the database)",
                    k.name()
                ));
            }
        }
    }
    let groups = if keys.iter().all(|k| k.in_rollup()) && super::rollups::covers(filter) {
        from_rollup(conn, filter, keys).map_err(db)?
    } else {
        scan(conn, filter, keys).map_err(db)?
    };
    let mut cols: Vec<&str> = keys.iter().map(|k| k.name()).collect();
    cols.extend_from_slice(METRICS);
    let mut report = Report::new(&cols);
    let mut groups: Vec<(Vec<KeyVal>, Agg)> = groups.into_iter().collect();
    // Natural order of the keys first (stable under the later sort by a metric).
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, mut agg) in groups {
        let mut row: Vec<Cell> = k
            .iter()
            .zip(keys)
            .map(|(v, key)| match (v, key) {
                (KeyVal::Int(d), Key::Weekday) => Cell::Text(format!("{d} {}", WEEKDAYS[(*d as usize + 6) % 7])),
                (KeyVal::Int(i), _) => Cell::Int(*i),
                (KeyVal::Text(t), _) => Cell::Text(t.clone()),
                (KeyVal::Null, _) => Cell::Null,
            })
            .collect();
        row.extend(agg.cells());
        report.rows.push(row);
    }
    Ok(report)
}

impl Key {
    /// Whether a rollup group has this key.
    fn in_rollup(self) -> bool {
        matches!(self, Key::User | Key::Account | Key::Partition | Key::Cluster | Key::State)
    }
}

/// The groups summed from the rollups: a few thousand rows and the groups' elapsed times.
fn from_rollup(conn: &Connection, filter: &Filter, keys: &[Key]) -> rusqlite::Result<HashMap<Vec<KeyVal>, Agg>> {
    let rollups = super::rollups::groups(conn, filter)?;
    let mut walls = runledger_ledger::rollup::walls(conn)?;
    let mut users = Interner::default();
    let mut out: HashMap<Vec<KeyVal>, Agg> = HashMap::new();
    let text = |v: &Option<String>| v.clone().map_or(KeyVal::Null, KeyVal::Text);
    for g in &rollups {
        let k = &g.key;
        let key: Vec<KeyVal> = keys
            .iter()
            .map(|key| match key {
                Key::User => text(&k.user),
                Key::Account => text(&k.account),
                Key::Partition => text(&k.partition),
                Key::Cluster => KeyVal::Text(k.cluster.clone()),
                _ => KeyVal::Text(k.state.clone()),
            })
            .collect();
        let user = users.id(k.user.as_deref().unwrap_or("").as_bytes());
        let w = walls.remove(&g.id).unwrap_or_default();
        out.entry(key).or_default().add_group(user, g, &w);
    }
    Ok(out)
}

/// The groups summed job by job.
fn scan(conn: &Connection, filter: &Filter, keys: &[Key]) -> rusqlite::Result<HashMap<Vec<KeyVal>, Agg>> {
    let with_modules = keys.iter().any(|k| matches!(k, Key::Module | Key::ModuleVersion));
    let (where_sql, params) = filter.to_sql();
    // Module keys come from the job's module set, expanded here (sets are few).
    let key_sql: Vec<String> = keys
        .iter()
        .map(|k| if matches!(k, Key::Module | Key::ModuleVersion) { "NULL".to_string() } else { k.sql() })
        .collect();
    let sql = format!(
        "SELECT COALESCE(jobs.user, CAST(jobs.uid AS TEXT), ''), jobs.end - jobs.start, jobs.ncpus, jobs.cpu_seconds, \
         jobs.state{}, jobs.module_set FROM jobs WHERE {where_sql}",
        key_sql.iter().map(|k| format!(", {k}")).collect::<String>(),
    );
    // Group keys as small integers: text values interned, integers as themselves, tagged so the
    // two never collide.
    let mut texts = Interner::default();
    // Module set -> the values its jobs take for the module keys (in key order), each once: a
    // job counts once per group (two versions of one module, by name). Worked out per set, not
    // per job (sets are few).
    let mut set_labels: FxHashMap<i64, Vec<Vec<i64>>> = FxHashMap::default();
    if with_modules {
        let mut labels: HashMap<i64, Vec<i64>> = HashMap::new();
        for (id, (name, version)) in super::module_names(conn)? {
            let full = super::full_name(&name, &version);
            let per_key = keys
                .iter()
                .filter_map(|k| match k {
                    Key::Module => Some(i64::from(texts.id(name.as_bytes()))),
                    Key::ModuleVersion => Some(i64::from(texts.id(full.as_bytes()))),
                    _ => None,
                })
                .collect();
            labels.insert(id, per_key);
        }
        for (set, modules) in runledger_ledger::store::module_sets(conn)? {
            let mut values: Vec<Vec<i64>> = modules.iter().filter_map(|m| labels.get(m).cloned()).collect();
            values.sort_unstable();
            values.dedup();
            set_labels.insert(set, values);
        }
    }
    let module_keys: Vec<usize> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| matches!(k, Key::Module | Key::ModuleVersion))
        .map(|(i, _)| i)
        .collect();
    let mut st = conn.prepare(&sql)?;
    let mut rows = st.query(params_from_iter(params.iter()))?;
    let mut users = Interner::default();
    let mut groups: FxHashMap<Vec<(u8, i64)>, Agg> = FxHashMap::default();
    let mut key: Vec<(u8, i64)> = Vec::with_capacity(keys.len());
    while let Some(r) = rows.next()? {
        let user = users.id(r.get_ref(0)?.as_bytes().unwrap_or(b""));
        let elapsed: Option<i64> = r.get::<_, Option<i64>>(1)?.map(|e| e.max(0));
        let ncpus: Option<i64> = r.get(2)?;
        let cpu: f64 = r.get::<_, Option<f64>>(3)?.unwrap_or(0.0);
        let state = r.get_ref(4)?.as_str().unwrap_or("UNKNOWN");
        key.clear();
        for i in 0..keys.len() {
            key.push(match r.get_ref(5 + i)? {
                rusqlite::types::ValueRef::Integer(v) => (1, v),
                rusqlite::types::ValueRef::Real(f) => (1, f as i64),
                rusqlite::types::ValueRef::Text(t) => (2, i64::from(texts.id(t))),
                _ => (0, 0),
            });
        }
        let mut add = |k: &Vec<(u8, i64)>| match groups.get_mut(k) {
            Some(a) => a.add(user, elapsed, ncpus, cpu, state),
            None => groups.entry(k.clone()).or_default().add(user, elapsed, ncpus, cpu, state),
        };
        if !with_modules {
            add(&key);
            continue;
        }
        let set: Option<i64> = r.get(5 + keys.len())?;
        for values in set.and_then(|s| set_labels.get(&s)).into_iter().flatten() {
            for (&i, &v) in module_keys.iter().zip(values) {
                key[i] = (2, v);
            }
            add(&key);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(k, a)| {
            let k = k
                .into_iter()
                .map(|(tag, v)| match tag {
                    1 => KeyVal::Int(v),
                    2 => KeyVal::Text(texts.text(v as u32).to_string()),
                    _ => KeyVal::Null,
                })
                .collect();
            (k, a)
        })
        .collect())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyVal {
    Null,
    Int(i64),
    Text(String),
}

/// Sorts a summary: by `sort` (a metric, descending; a key, ascending), else by the keys when
/// they are ordered ones (time, sizes), else by jobs, most first. Then keeps `limit` rows.
pub fn sort_and_limit(
    report: &mut Report,
    keys: &[Key],
    sort: Option<&str>,
    limit: Option<usize>,
) -> Result<(), String> {
    match sort {
        Some(name) => {
            let name = name.trim().to_ascii_lowercase();
            let Some(col) = report.col(&name) else {
                return Err(format!("unknown --sort column '{name}' (expected one of: {})", report.columns.join(", ")));
            };
            report.sort_by(col, col >= keys.len());
        }
        None => {
            if !keys.iter().all(|k| k.ordered()) {
                let jobs = report.col("jobs").expect("summary has jobs");
                report.sort_by(jobs, true);
            }
        }
    }
    if let Some(n) = limit {
        report.rows.truncate(n);
    }
    Ok(())
}
