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
//! | `wall_p50_s`, `wall_p95_s` | median and 95th percentile of elapsed (linear interpolation), over the wall times' histogram ([`runledger_ledger::walls`]: within 1.6 %, exact below 128 s) |
//! | `idle_core_hours` | allocated core-hours left idle: below 10 % of a node's allocation for an hour or more, from the jobs' usage series (`query idle`) |
//!
//! With `module` or `module_version` among the keys a job counts once in every module it loaded
//! (jobs without modules are left out); with `package` or `package_version` once in every Python
//! package its processes imported (jobs without any are left out). Time keys use the job's start in local time.
//!
//! Keys and filters the rollups hold (user, account, partition, cluster, state) are answered from
//! them ([`runledger_ledger::rollup`]), with one more key of month or year, module or module
//! version, or package or package version from their cells; others by a scan of the jobs; both sum CPU seconds exactly
//! ([`ExactSum`]: the correctly rounded total, where a sum of floats in row order drifts in the
//! 12th digit at a million jobs), so they agree to the last digit.

use super::filter::Filter;
use super::report::{Cell, Report};
use super::Interner;
use runledger_ledger::rollup::{self, Dim};
use runledger_ledger::store::ExactSum;
use runledger_ledger::walls;
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
    /// A Python package the job's processes imported (issue #14), by name or name/version.
    Package,
    PackageVersion,
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
    ("package", Key::Package),
    ("package_version", Key::PackageVersion),
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
            // Expanded from the job's package set by the scan, never read as SQL.
            Key::Package | Key::PackageVersion => "NULL",
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
    /// Elapsed times: of the jobs added one by one, and the histograms of the rollups' groups
    /// and cells added.
    pub walls: walls::Acc,
    /// Idle core-seconds (`jobs.idle_core_s`, exact sum).
    pub idle_s: ExactSum,
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
    pub fn add_group(&mut self, user: u32, g: &runledger_ledger::rollup::Group, walls: &[u8]) {
        self.jobs += g.jobs;
        self.users.insert(user);
        self.core_s += g.core_s;
        self.cpu_s.0 = self.cpu_s.0.wrapping_add(g.cpu.0);
        self.eff_core_s += g.eff_core_s;
        self.eff_cpu_s.0 = self.eff_cpu_s.0.wrapping_add(g.eff_cpu.0);
        self.idle_s.0 = self.idle_s.0.wrapping_add(g.idle.0);
        self.walls.add_encoded(walls);
        self.add_state(&g.key.state, g.jobs);
    }

    /// Adds a rollup cell of jobs of one group (`user`, `state`: the group's).
    pub fn add_cell(&mut self, user: u32, state: &str, c: &rollup::Cell) {
        self.jobs += c.jobs;
        self.users.insert(user);
        self.core_s += c.core_s;
        self.cpu_s.0 = self.cpu_s.0.wrapping_add(c.cpu.0);
        self.eff_core_s += c.eff_core_s;
        self.eff_cpu_s.0 = self.eff_cpu_s.0.wrapping_add(c.eff_cpu.0);
        self.idle_s.0 = self.idle_s.0.wrapping_add(c.idle.0);
        self.walls.add_encoded(&c.walls);
        self.add_state(state, c.jobs);
    }

    /// The row's values. Median and 95th percentile come from the histogram of every elapsed
    /// time ([`runledger_ledger::walls`]): the rollups and the scan give the same.
    pub fn cells(&mut self) -> Vec<Cell> {
        let walls = std::mem::take(&mut self.walls).finish();
        vec![
            Cell::Int(self.jobs),
            Cell::Int(self.users.len() as i64),
            Cell::Float(self.core_s as f64 / 3600.0, 1),
            Cell::Float(self.cpu_s.value() / 3600.0, 1),
            Cell::opt_ratio(self.eff_cpu_s.value(), self.eff_core_s as f64),
            Cell::opt_ratio(self.failed as f64, self.ended as f64),
            walls.quantile(0.5).map(Cell::Secs).unwrap_or(Cell::Null),
            walls.quantile(0.95).map(Cell::Secs).unwrap_or(Cell::Null),
            Cell::Float(self.idle_s.value() / 3600.0, 1),
        ]
    }
}

pub const METRICS: &[&str] = &[
    "jobs",
    "users",
    "core_hours",
    "cpu_hours",
    "cpu_efficiency",
    "failure_rate",
    "wall_p50_s",
    "wall_p95_s",
    "idle_core_hours",
];

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
    let covered = super::rollups::covers(filter);
    let groups = if keys.iter().all(|k| k.in_rollup()) && covered {
        from_rollup(conn, filter, keys).map_err(db)?
    } else if let Some(dim) = cell_dim(keys).filter(|_| covered) {
        from_cells(conn, filter, keys, dim).map_err(db)?
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
        let agg = out.entry(key).or_default();
        agg.add_group(user, g, &w);
    }
    Ok(out)
}

/// The rollups' cells that hold these keys: group keys, and keys of one cell dimension (the
/// local month and year are constant over a month bucket: [`rollup::month_bucket`]).
fn cell_dim(keys: &[Key]) -> Option<Dim> {
    let mut dim = None;
    for k in keys {
        let d = match k {
            k if k.in_rollup() => continue,
            Key::Month | Key::Year => Dim::Month,
            // By version when any key is (a module id is one name and version), else by name.
            Key::Module | Key::ModuleVersion if keys.contains(&Key::ModuleVersion) => Dim::Module,
            Key::Module => Dim::ModuleName,
            Key::Package | Key::PackageVersion => Dim::PySet,
            _ => return None,
        };
        if dim.is_some_and(|x| x != d) {
            return None;
        }
        dim = Some(d);
    }
    dim
}

fn group_val(key: Key, k: &rollup::Key) -> KeyVal {
    let text = |v: &Option<String>| v.clone().map_or(KeyVal::Null, KeyVal::Text);
    match key {
        Key::User => text(&k.user),
        Key::Account => text(&k.account),
        Key::Partition => text(&k.partition),
        Key::Cluster => KeyVal::Text(k.cluster.clone()),
        _ => KeyVal::Text(k.state.clone()),
    }
}

/// The groups summed from the cells of `dim`: per cell, its group's keys and the values its
/// jobs take for the other keys (one local month; its module; each package of its set, once).
fn from_cells(
    conn: &Connection,
    filter: &Filter,
    keys: &[Key],
    dim: Dim,
) -> rusqlite::Result<HashMap<Vec<KeyVal>, Agg>> {
    let groups: FxHashMap<i64, rollup::Group> =
        super::rollups::groups(conn, filter)?.into_iter().map(|g| (g.id, g)).collect();
    // The values of the keys that are not the group's, in key order: `label_keys[i]` is label
    // i's; cell value -> its labels.
    let mut label_keys: Vec<Vec<KeyVal>> = Vec::new();
    let mut labels: FxHashMap<i64, Vec<usize>> = FxHashMap::default();
    // Months are labelled as their buckets are met (below); the other dimensions' labels first.
    let exprs: Vec<String> =
        keys.iter().filter(|k| !k.in_rollup()).map(|k| k.sql().replace("jobs.start", "?1")).collect();
    let mut month_st = match dim {
        Dim::Month => Some(conn.prepare(&format!("SELECT {}", exprs.join(", ")))?),
        _ => None,
    };
    let mut months: HashMap<Vec<KeyVal>, usize> = HashMap::new();
    // The scan's own expressions at the bucket's instant: the same zone, the same text.
    let mut month_label =
        |st: &mut rusqlite::Statement, val: i64, label_keys: &mut Vec<Vec<KeyVal>>| -> rusqlite::Result<usize> {
            let row = st.query_row([rollup::bucket_instant(val)], |r| {
                (0..exprs.len())
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Integer(v) => KeyVal::Int(v),
                            rusqlite::types::ValueRef::Real(f) => KeyVal::Int(f as i64),
                            rusqlite::types::ValueRef::Text(t) => KeyVal::Text(String::from_utf8_lossy(t).into_owned()),
                            _ => KeyVal::Null,
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?;
            // Many buckets make one month: one label.
            let n = months.len();
            let l = *months.entry(row.clone()).or_insert(n);
            if l == n {
                label_keys.push(row);
            }
            Ok(l)
        };
    match dim {
        Dim::Month => {}
        Dim::Module | Dim::ModuleName => {
            for (id, (name, version)) in super::module_names(conn)? {
                let full = super::full_name(&name, &version);
                let values: Vec<KeyVal> = keys
                    .iter()
                    .filter(|k| !k.in_rollup())
                    .map(|k| KeyVal::Text(if *k == Key::Module { name.clone() } else { full.clone() }))
                    .collect();
                let val = if dim == Dim::Module { id } else { rollup::name_key(&name) };
                if labels.contains_key(&val) {
                    continue;
                }
                label_keys.push(values);
                labels.insert(val, vec![label_keys.len() - 1]);
            }
        }
        Dim::PySet => {
            let mut texts = Interner::default();
            let names = runledger_ledger::python::package_names(conn)?;
            let per_set =
                set_labels(keys, &mut texts, names, runledger_ledger::python::package_sets(conn)?, is_package_key);
            let mut index: HashMap<Vec<i64>, usize> = HashMap::new();
            for (set, values) in per_set {
                let ids = values
                    .into_iter()
                    .map(|v| {
                        *index.entry(v.clone()).or_insert_with(|| {
                            label_keys
                                .push(v.iter().map(|t| KeyVal::Text(texts.text(*t as u32).to_string())).collect());
                            label_keys.len() - 1
                        })
                    })
                    .collect();
                labels.insert(set, ids);
            }
        }
    }
    // Summed by (group keys, label), both as small integers.
    let mut group_keys: HashMap<Vec<KeyVal>, usize> = HashMap::new();
    // Group id -> (its group keys' index, its user's number).
    let mut group_key_of: FxHashMap<i64, (usize, u32)> = FxHashMap::default();
    let mut users = Interner::default();
    let mut sums: FxHashMap<(usize, usize), Agg> = FxHashMap::default();
    rollup::each_cell(conn, dim, true, |c| {
        let Some(g) = groups.get(&c.grp) else { return Ok(()) };
        if let Some(st) = month_st.as_mut().filter(|_| !labels.contains_key(&c.val)) {
            let l = month_label(st, c.val, &mut label_keys)?;
            labels.insert(c.val, vec![l]);
        }
        let Some(ls) = labels.get(&c.val) else { return Ok(()) };
        let (gk, user) = *group_key_of.entry(c.grp).or_insert_with(|| {
            let v: Vec<KeyVal> = keys.iter().filter(|k| k.in_rollup()).map(|k| group_val(*k, &g.key)).collect();
            let n = group_keys.len();
            (*group_keys.entry(v).or_insert(n), users.id(g.key.user.as_deref().unwrap_or("").as_bytes()))
        });
        for &l in ls {
            sums.entry((gk, l)).or_default().add_cell(user, &g.key.state, c);
        }
        Ok(())
    })?;
    let mut by_index: Vec<Vec<KeyVal>> = vec![Vec::new(); group_keys.len()];
    for (k, i) in group_keys {
        by_index[i] = k;
    }
    Ok(sums
        .into_iter()
        .map(|((gk, l), agg)| {
            let (mut gv, mut lv) = (by_index[gk].iter(), label_keys[l].iter());
            let key = keys
                .iter()
                .map(|k| if k.in_rollup() { gv.next() } else { lv.next() }.cloned().unwrap_or(KeyVal::Null))
                .collect();
            (key, agg)
        })
        .collect())
}

/// Which keys a job takes several values of, from one of its sets.
fn is_module_key(k: &Key) -> bool {
    matches!(k, Key::Module | Key::ModuleVersion)
}

fn is_package_key(k: &Key) -> bool {
    matches!(k, Key::Package | Key::PackageVersion)
}

/// Set id -> the values its jobs take for the keys `pick` selects (in key order), each once: a
/// job counts once per group (two versions of one module, by name). Worked out per set, not per
/// job (sets are few).
fn set_labels(
    keys: &[Key],
    texts: &mut Interner,
    names: HashMap<i64, (String, String)>,
    sets: HashMap<i64, Vec<i64>>,
    pick: fn(&Key) -> bool,
) -> FxHashMap<i64, Vec<Vec<i64>>> {
    let mut labels: HashMap<i64, Vec<i64>> = HashMap::new();
    for (id, (name, version)) in names {
        let full = super::full_name(&name, &version);
        let per_key = keys
            .iter()
            .filter(|k| pick(k))
            .map(|k| match k {
                Key::Module | Key::Package => i64::from(texts.id(name.as_bytes())),
                _ => i64::from(texts.id(full.as_bytes())),
            })
            .collect();
        labels.insert(id, per_key);
    }
    let mut out = FxHashMap::default();
    for (set, members) in sets {
        let mut values: Vec<Vec<i64>> = members.iter().filter_map(|m| labels.get(m).cloned()).collect();
        values.sort_unstable();
        values.dedup();
        out.insert(set, values);
    }
    out
}

/// The groups summed job by job.
fn scan(conn: &Connection, filter: &Filter, keys: &[Key]) -> rusqlite::Result<HashMap<Vec<KeyVal>, Agg>> {
    let with_modules = keys.iter().any(is_module_key);
    let with_packages = keys.iter().any(is_package_key);
    let (where_sql, params) = filter.to_sql();
    // Module and package keys come from the job's sets, expanded here (sets are few).
    let key_sql: Vec<String> =
        keys.iter().map(|k| if is_module_key(k) || is_package_key(k) { "NULL".to_string() } else { k.sql() }).collect();
    let sql = format!(
        "SELECT COALESCE(jobs.user, CAST(jobs.uid AS TEXT), ''), jobs.end - jobs.start, jobs.ncpus, jobs.cpu_seconds, \
         jobs.state{}, jobs.module_set, jobs.py_set, jobs.idle_core_s FROM jobs WHERE {where_sql}",
        key_sql.iter().map(|k| format!(", {k}")).collect::<String>(),
    );
    // Group keys as small integers: text values interned, integers as themselves, tagged so the
    // two never collide.
    let mut texts = Interner::default();
    let module_labels = if with_modules {
        set_labels(
            keys,
            &mut texts,
            super::module_names(conn)?,
            runledger_ledger::store::module_sets(conn)?,
            is_module_key,
        )
    } else {
        FxHashMap::default()
    };
    let package_labels = if with_packages {
        let names = runledger_ledger::python::package_names(conn)?;
        set_labels(keys, &mut texts, names, runledger_ledger::python::package_sets(conn)?, is_package_key)
    } else {
        FxHashMap::default()
    };
    let positions = |pick: fn(&Key) -> bool| -> Vec<usize> {
        keys.iter().enumerate().filter(|(_, k)| pick(k)).map(|(i, _)| i).collect()
    };
    let (module_keys, package_keys) = (positions(is_module_key), positions(is_package_key));
    let none: Vec<Vec<i64>> = vec![Vec::new()];
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
        let idle: Option<f64> = r.get(7 + keys.len())?;
        let mut add = |k: &Vec<(u8, i64)>| {
            let a = match groups.get_mut(k) {
                Some(a) => a,
                None => groups.entry(k.clone()).or_default(),
            };
            a.add(user, elapsed, ncpus, cpu, state);
            if let Some(i) = idle {
                a.idle_s.add(i);
            }
        };
        if !with_modules && !with_packages {
            add(&key);
            continue;
        }
        // Every combination of the job's module values and package values.
        let mset: Option<i64> = if with_modules { r.get(5 + keys.len())? } else { None };
        let pset: Option<i64> = if with_packages { r.get(6 + keys.len())? } else { None };
        let mvalues = if with_modules { mset.and_then(|s| module_labels.get(&s)) } else { Some(&none) };
        let pvalues = if with_packages { pset.and_then(|s| package_labels.get(&s)) } else { Some(&none) };
        let (Some(mvalues), Some(pvalues)) = (mvalues, pvalues) else { continue };
        for mv in mvalues {
            for (&i, &v) in module_keys.iter().zip(mv) {
                key[i] = (2, v);
            }
            for pv in pvalues {
                for (&i, &v) in package_keys.iter().zip(pv) {
                    key[i] = (2, v);
                }
                add(&key);
            }
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
