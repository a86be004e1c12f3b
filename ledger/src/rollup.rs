//! Rollups: what the manager queries need of every job, summed per group of jobs alike, so that
//! `query summary`, `query modules` and `query throughput` read thousands of rows instead of a
//! million.
//!
//! A group (`rollup`) is one (cluster, account, partition, user, state): the keys and filters
//! those queries most often use. Per group: jobs, allocated core-seconds, CPU seconds (exact,
//! see [`ExactSum`]), the same two over the jobs whose core-seconds are positive (the CPU
//! efficiency's terms), their idle core-seconds, and the jobs' elapsed seconds as a bounded
//! histogram (`rollup_hist`, [`crate::walls`]), so medians and percentiles read a few hundred
//! numbers per group. Per group and module (`rollup_modules`) and module name
//! (`rollup_module_names`): the jobs that loaded it. Per quarter hour of the end time
//! (`rollup_ends`): jobs that ended, and how many failed.
//!
//! The merge keeps them current: [`crate::merge::recompute`] reads a job's contribution
//! ([`Contribution`]) before and after it updates the row and applies the difference
//! ([`update_into`]); `jobs.grp` names the group a job is counted in (NULL: not counted yet).
//! Sums are integers (exact), so adding and removing in any order gives what [`rebuild`]
//! computes from scratch; that is also why a transaction's differences can wait in memory
//! ([`Deltas`]) and each row they touch be written once, at commit. A query whose keys or
//! filters a group cannot express scans the jobs instead.
//!
//! Cells (`rollup_cells`, `rollup_cell_hist`) split each group once more along one dimension
//! ([`Dim`]): the job's start month, each module (version) it loaded, each module name, its
//! Python package set. A cell keeps the group's sums and elapsed times for the jobs with that
//! value (its histogram too), so `summary --by user,month`, `--by module_version`, `--by module` and `--by package`
//! and `query packages` read cells, not jobs. Modules one by one (a job's elapsed time is kept
//! once per module it loaded, ~3): module sets are nearly as many as the groups' jobs (42,000
//! sets, 450,000 (group, set) pairs in a million made-up jobs). Package sets as a whole (a job
//! imports ~20 packages; 65,000 (group, set) pairs for 490,000 jobs with Python), expanded when
//! read. The month is the scan's *local* month, which depends on the reader's time zone: see
//! [`month_bucket`].

use crate::store::{self, ExactSum};
use crate::walls::Hist;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap};

/// The states counted as failures (`rollup_ends.failed`, `query summary`'s failure rate).
pub const FAILED_STATES: &[&str] = &["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"];

/// `rollup_ends` slots are this many seconds: every UTC offset in use is a multiple of it, so
/// any interval that is a multiple of it, aligned to local time, is a union of whole slots.
pub const END_SLOT_S: i64 = 900;

/// A group's key: cluster, account, partition, user (the name, else the uid), state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub cluster: String,
    pub account: Option<String>,
    pub partition: Option<String>,
    pub user: Option<String>,
    pub state: String,
}

/// What one job adds to the rollups.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub key: Key,
    /// end - start (at least 0) when both are known.
    pub elapsed: Option<i64>,
    pub ncpus: Option<i64>,
    pub cpu: f64,
    pub module_set: Option<i64>,
    pub end: Option<i64>,
    pub start: Option<i64>,
    /// The Python package set the cells count (`jobs.rollup_py`: the merge sets `py_set`
    /// before it recomputes, so the old value is kept apart): the set, [`NO_PACKAGES`] for a
    /// job that ran Python and imported none, None without Python.
    pub py: Option<i64>,
    /// `jobs.idle_core_s`: allocated core-seconds left idle ([`set_idle`] moves it).
    pub idle: Option<f64>,
}

impl Contribution {
    fn core(&self) -> Option<i64> {
        Some(self.elapsed? * self.ncpus?)
    }

    /// The `rollup_ends` slot and whether it failed, for a job that ended.
    fn ended(&self) -> Option<(i64, bool)> {
        let end = self.end?;
        if self.key.state == "UNKNOWN" {
            return None;
        }
        Some((end.div_euclid(END_SLOT_S), FAILED_STATES.contains(&self.key.state.as_str())))
    }
}

/// The columns [`Contribution`] comes from.
const JOB_COLUMNS: &str = "cluster, account, partition, COALESCE(user, CAST(uid AS TEXT)), state, start, end, ncpus, \
     cpu_seconds, module_set, rollup_py, idle_core_s";

/// How many columns [`JOB_COLUMNS`] names.
const JOB_COLUMNS_N: usize = 12;

fn contribution(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Contribution> {
    let start: Option<i64> = r.get(at + 5)?;
    let end: Option<i64> = r.get(at + 6)?;
    Ok(Contribution {
        key: Key {
            cluster: r.get(at)?,
            account: r.get(at + 1)?,
            partition: r.get(at + 2)?,
            user: r.get(at + 3)?,
            state: r.get(at + 4)?,
        },
        elapsed: start.zip(end).map(|(s, e)| (e - s).max(0)),
        ncpus: r.get(at + 7)?,
        cpu: r.get(at + 8)?,
        module_set: r.get(at + 9)?,
        end,
        start,
        py: r.get(at + 10)?,
        idle: r.get(at + 11)?,
    })
}

/// A job row's group and contribution as stored; the group is None while it is not counted.
pub fn read_job(conn: &Connection, job: i64) -> rusqlite::Result<(Option<i64>, Contribution)> {
    conn.prepare_cached(&format!("SELECT grp, {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([job], |r| Ok((r.get(0)?, contribution(r, 1)?)))
}

/// A job row as the merge's recompute reads it: group, contribution, Python set now, `columns`.
pub(crate) type RowBefore = (Option<i64>, Contribution, Option<i64>, Vec<Value>);

/// What the merge's recompute reads of a job row before it writes it, in one statement: the
/// group and contribution as counted ([`read_job`]), the Python package set the rows say now
/// ([`Contribution::py`]'s new value) and the current values of `columns`.
pub(crate) fn read_for_recompute(conn: &Connection, job: i64, columns: &str) -> rusqlite::Result<RowBefore> {
    conn.prepare_cached(&format!("SELECT grp, {JOB_COLUMNS}, {PY_NOW}, {columns} FROM jobs WHERE id = ?1"))?.query_row(
        [job],
        |r| {
            let n = r.as_ref().column_count();
            let py = 1 + JOB_COLUMNS_N;
            Ok((r.get(0)?, contribution(r, 1)?, r.get(py)?, (py + 1..n).map(|i| r.get(i)).collect::<Result<_, _>>()?))
        },
    )
}

/// Moves a job from its old contribution (counted in group `old_grp`, if any) to `new` (with
/// [`Contribution::py`] as the rows say now), the changes kept in `d` to be written with the
/// transaction's others ([`Deltas::flush`]; the group's row exists from here on, its sums
/// wait). Returns the group the job is counted in now: the caller writes it to `jobs.grp`, and
/// `new.py` to `jobs.rollup_py`, with the rest of the row.
pub fn update_into(
    conn: &Connection,
    d: &mut Deltas,
    old_grp: Option<i64>,
    old: &Contribution,
    new: &Contribution,
) -> rusqlite::Result<i64> {
    if let Some(g) = old_grp.filter(|_| old == new) {
        return Ok(g);
    }
    let new_grp = match old_grp {
        // The job stays in its group (another node's records, typically): only what changed
        // moves.
        Some(g) if old.key == new.key => {
            let s = d.groups.entry(g).or_default();
            s.apply(new, 1);
            s.apply(old, -1);
            if old.module_set != new.module_set {
                move_modules(conn, d, g, new, 1)?;
                move_modules(conn, d, g, old, -1)?;
            }
            if old.ended() != new.ended() {
                d.move_ends(new, 1);
                d.move_ends(old, -1);
            }
            g
        }
        _ => {
            let grp = group_id(conn, &new.key)?;
            d.groups.entry(grp).or_default().apply(new, 1);
            move_modules(conn, d, grp, new, 1)?;
            d.move_ends(new, 1);
            if let Some(g) = old_grp {
                d.groups.entry(g).or_default().apply(old, -1);
                move_modules(conn, d, g, old, -1)?;
                d.move_ends(old, -1);
            }
            grp
        }
    };
    move_cells(conn, d, old_grp.map(|g| (g, old)), Some((new_grp, new)))?;
    Ok(new_grp)
}

/// The rollups' changes of a transaction not yet written: sums to add per group and cell (with
/// the elapsed times to move in their histograms), jobs per group and module or name, per end
/// slot. A transaction of many jobs touches the same groups and cells again and again (the jobs
/// of a day share users, months and modules; a job's nodes report apart); each row is then read
/// and written once at commit instead of once per job. Sums are integers, so the order they are
/// added in does not change the result.
#[derive(Default, Debug)]
pub struct Deltas {
    groups: rustc_hash::FxHashMap<i64, Sums>,
    cells: rustc_hash::FxHashMap<(i64, i64, i64), Sums>,
    modules: rustc_hash::FxHashMap<(i64, i64), i64>,
    names: rustc_hash::FxHashMap<(i64, String), i64>,
    ends: rustc_hash::FxHashMap<i64, (i64, i64)>,
}

impl Deltas {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.cells.is_empty()
            && self.modules.is_empty()
            && self.names.is_empty()
            && self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        *self = Deltas::default();
    }

    /// Adds `other`'s changes to these (a batch's, once its savepoint is released).
    pub fn absorb(&mut self, other: &mut Deltas) {
        for (k, s) in other.groups.drain() {
            self.groups.entry(k).or_default().add(s);
        }
        for (k, s) in other.cells.drain() {
            self.cells.entry(k).or_default().add(s);
        }
        for (k, n) in other.modules.drain() {
            *self.modules.entry(k).or_default() += n;
        }
        for (k, n) in other.names.drain() {
            *self.names.entry(k).or_default() += n;
        }
        for (k, (j, f)) in other.ends.drain() {
            let e = self.ends.entry(k).or_default();
            e.0 += j;
            e.1 += f;
        }
    }

    fn move_ends(&mut self, c: &Contribution, sign: i64) {
        if let Some((slot, failed)) = c.ended() {
            let e = self.ends.entry(slot).or_default();
            e.0 += sign;
            e.1 += sign * i64::from(failed);
        }
    }

    /// Writes the changes (in key order, so that a ledger's rows and ids do not depend on a
    /// hash's order) and forgets them: each group, cell and histogram chunk read and written
    /// once; a group or cell left without jobs is deleted.
    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut groups: Vec<_> = self.groups.drain().collect();
        groups.sort_unstable_by_key(|(k, _)| *k);
        for (grp, d) in groups {
            sums(conn, grp, d)?;
        }
        let mut cells: Vec<_> = self.cells.drain().collect();
        cells.sort_unstable_by_key(|(k, _)| *k);
        for ((dim, grp, val), d) in cells {
            cell_sums(conn, dim, grp, val, d)?;
        }
        let mut modules: Vec<_> = self.modules.drain().filter(|(_, n)| *n != 0).collect();
        modules.sort_unstable();
        for ((grp, m), n) in modules {
            bump(conn, "rollup_modules", "module", grp, &Value::Integer(m), n)?;
        }
        let mut names: Vec<_> = self.names.drain().filter(|(_, n)| *n != 0).collect();
        names.sort_unstable();
        for ((grp, name), n) in names {
            bump(conn, "rollup_module_names", "name", grp, &Value::Text(name), n)?;
        }
        let mut ends: Vec<_> = self.ends.drain().filter(|(_, d)| *d != (0, 0)).collect();
        ends.sort_unstable();
        for (slot, (jobs, failed)) in ends {
            conn.prepare_cached(
                "INSERT INTO rollup_ends (slot, jobs, failed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (slot) DO UPDATE SET jobs = jobs + excluded.jobs, failed = failed + excluded.failed",
            )?
            .execute([slot, jobs, failed])?;
            if jobs < 0 {
                conn.prepare_cached("DELETE FROM rollup_ends WHERE slot = ?1 AND jobs = 0")?.execute([slot])?;
            }
        }
        Ok(())
    }
}

fn group_id(conn: &Connection, k: &Key) -> rusqlite::Result<i64> {
    let p = params![k.cluster, k.account, k.partition, k.user, k.state];
    let found = conn
        .prepare_cached(
            "SELECT id FROM rollup WHERE cluster = ?1 AND account IS ?2 AND partition IS ?3 AND user IS ?4
               AND state = ?5",
        )?
        .query_row(p, |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO rollup (cluster, account, partition, user, state) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(p)?;
    Ok(conn.last_insert_rowid())
}

/// A group's or a cell's sums, and the elapsed times to move in its histogram.
#[derive(Default, Debug)]
struct Sums {
    jobs: i64,
    walls: i64,
    core_s: i64,
    eff_core_s: i64,
    cpu: ExactSum,
    eff_cpu: ExactSum,
    idle: ExactSum,
    /// (elapsed, sign) to apply to its histogram.
    moves: Vec<(i64, i64)>,
}

/// The columns [`Sums::read`] reads, in its order.
const SUMS: &str = "jobs, walls, core_s, eff_core_s, cpu, eff_cpu, idle";

impl Sums {
    fn read(r: &rusqlite::Row) -> rusqlite::Result<Sums> {
        let sum = |i: usize| Ok::<_, rusqlite::Error>(ExactSum::from_blob(r.get_ref(i)?.as_blob_or_null()?));
        Ok(Sums {
            jobs: r.get(0)?,
            walls: r.get(1)?,
            core_s: r.get(2)?,
            eff_core_s: r.get(3)?,
            cpu: sum(4)?,
            eff_cpu: sum(5)?,
            idle: sum(6)?,
            moves: Vec::new(),
        })
    }

    /// Adds another's sums and moves (a delta to a row, or two deltas).
    fn add(&mut self, d: Sums) {
        self.jobs += d.jobs;
        self.walls += d.walls;
        self.core_s += d.core_s;
        self.eff_core_s += d.eff_core_s;
        self.cpu.0 = self.cpu.0.wrapping_add(d.cpu.0);
        self.eff_cpu.0 = self.eff_cpu.0.wrapping_add(d.eff_cpu.0);
        self.idle.0 = self.idle.0.wrapping_add(d.idle.0);
        self.moves.extend(d.moves);
    }

    fn apply(&mut self, c: &Contribution, sign: i64) {
        let add = |s: &mut ExactSum, x: f64| if sign > 0 { s.add(x) } else { s.sub(x) };
        add(&mut self.cpu, c.cpu);
        if let Some(idle) = c.idle {
            add(&mut self.idle, idle);
        }
        if let Some(core) = c.core() {
            self.core_s += sign * core;
            if core > 0 {
                self.eff_core_s += sign * core;
                add(&mut self.eff_cpu, c.cpu);
            }
        }
        self.jobs += sign;
        self.walls += sign * i64::from(c.elapsed.is_some());
        if let Some(e) = c.elapsed {
            self.moves.push((e, sign));
        }
    }
}

/// Where a histogram is kept: a group's (`rollup_hist`) or a cell's (`rollup_cell_hist`), in
/// tables of their own so that the sums' rows stay small for the questions that read only them,
/// a row per chunk of buckets ([`crate::walls::CHUNK_BUCKETS`]: why, in [`crate::walls`]).
#[derive(Clone, Copy, Debug)]
enum HistAt {
    Group(i64),
    /// Dimension ([`Dim`] as stored), group, value.
    Cell(i64, i64, i64),
}

impl HistAt {
    /// The key's values, then `chunk` when given.
    fn keys(self, chunk: Option<i64>) -> Vec<i64> {
        let mut k = match self {
            HistAt::Group(g) => vec![g],
            HistAt::Cell(d, g, v) => vec![d, g, v],
        };
        k.extend(chunk);
        k
    }

    /// Every chunk's statements, by kind: [delete all, select one, delete one, write one].
    fn sql(self) -> [&'static str; 4] {
        match self {
            HistAt::Group(_) => [
                "DELETE FROM rollup_hist WHERE grp = ?1",
                "SELECT hist FROM rollup_hist WHERE grp = ?1 AND chunk = ?2",
                "DELETE FROM rollup_hist WHERE grp = ?1 AND chunk = ?2",
                "INSERT OR REPLACE INTO rollup_hist (grp, chunk, hist) VALUES (?1, ?2, ?3)",
            ],
            HistAt::Cell(..) => [
                "DELETE FROM rollup_cell_hist WHERE dim = ?1 AND grp = ?2 AND val = ?3",
                "SELECT hist FROM rollup_cell_hist WHERE dim = ?1 AND grp = ?2 AND val = ?3 AND chunk = ?4",
                "DELETE FROM rollup_cell_hist WHERE dim = ?1 AND grp = ?2 AND val = ?3 AND chunk = ?4",
                "INSERT OR REPLACE INTO rollup_cell_hist (dim, grp, val, chunk, hist) VALUES (?1, ?2, ?3, ?4, ?5)",
            ],
        }
    }

    fn delete(self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(self.sql()[0])?.execute(params_from_iter(self.keys(None)))?;
        Ok(())
    }

    /// Writes a whole histogram (a rebuild, after the rows were cleared).
    fn insert(self, conn: &Connection, h: &Hist) -> rusqlite::Result<()> {
        let mut st = conn.prepare_cached(self.sql()[3])?;
        for (chunk, blob) in h.encode_chunks() {
            let mut p: Vec<Value> = self.keys(Some(chunk)).into_iter().map(Value::Integer).collect();
            p.push(Value::Blob(blob));
            st.execute(params_from_iter(p))?;
        }
        Ok(())
    }

    /// Applies `moves` ((elapsed, sign) pairs), reading and writing only the chunks they fall
    /// in: nothing to do when they cancel out, as for a job whose elapsed time stayed the same.
    fn apply(self, conn: &Connection, moves: &[(i64, i64)]) -> rusqlite::Result<()> {
        let mut net: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for &(w, sign) in moves {
            *net.entry((crate::walls::chunk(w), w)).or_default() += sign;
        }
        net.retain(|_, n| *n != 0);
        let [_, select, delete, write] = self.sql();
        let mut moves = net.into_iter().peekable();
        while let Some(((chunk, _), _)) = moves.peek() {
            let chunk = *chunk;
            let keys = self.keys(Some(chunk));
            let mut h = conn
                .prepare_cached(select)?
                .query_row(params_from_iter(&keys), |r| Ok(Hist::decode(r.get_ref(0)?.as_blob()?)))
                .optional()?
                .unwrap_or_default();
            while let Some(((_, w), n)) = moves.next_if(|((c, _), _)| *c == chunk) {
                for _ in 0..n.abs() {
                    if !h.add(w, n.signum()) {
                        log::warn!("rollup {self:?} holds no elapsed time of {w} s to remove");
                    }
                }
            }
            if h.is_empty() {
                conn.prepare_cached(delete)?.execute(params_from_iter(&keys))?;
            } else {
                let mut p: Vec<Value> = keys.into_iter().map(Value::Integer).collect();
                p.push(Value::Blob(h.encode()));
                conn.prepare_cached(write)?.execute(params_from_iter(p))?;
            }
        }
        Ok(())
    }
}

/// Adds `d` to group `grp`'s sums and histogram; a group left without jobs is deleted.
fn sums(conn: &Connection, grp: i64, d: Sums) -> rusqlite::Result<()> {
    let mut s =
        conn.prepare_cached(&format!("SELECT {SUMS} FROM rollup WHERE id = ?1"))?.query_row([grp], Sums::read)?;
    s.add(d);
    if s.jobs == 0 {
        conn.prepare_cached("DELETE FROM rollup WHERE id = ?1")?.execute([grp])?;
        return HistAt::Group(grp).delete(conn);
    }
    conn.prepare_cached(
        "UPDATE rollup SET jobs = ?2, walls = ?3, core_s = ?4, eff_core_s = ?5, cpu = ?6, eff_cpu = ?7, idle = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        grp,
        s.jobs,
        s.walls,
        s.core_s,
        s.eff_core_s,
        s.cpu.to_blob(),
        s.eff_cpu.to_blob(),
        s.idle.to_blob()
    ])?;
    HistAt::Group(grp).apply(conn, &s.moves)
}

fn move_modules(conn: &Connection, d: &mut Deltas, grp: i64, c: &Contribution, sign: i64) -> rusqlite::Result<()> {
    let Some(set) = c.module_set else { return Ok(()) };
    let modules: Vec<i64> = conn
        .prepare_cached("SELECT modules FROM module_sets WHERE id = ?1")?
        .query_row([set], |r| Ok(store::parse_module_set(r.get_ref(0)?.as_str()?)))?;
    let mut names: Vec<String> = Vec::with_capacity(modules.len());
    for m in &modules {
        *d.modules.entry((grp, *m)).or_default() += sign;
        let name: String =
            conn.prepare_cached("SELECT name FROM modules WHERE id = ?1")?.query_row([m], |r| r.get(0))?;
        names.push(name);
    }
    // A job that loaded two versions of one module counts once for its name.
    names.sort_unstable();
    names.dedup();
    for n in names {
        *d.names.entry((grp, n)).or_default() += sign;
    }
    Ok(())
}

fn bump(conn: &Connection, table: &str, col: &str, grp: i64, key: &Value, sign: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO {table} (grp, {col}, jobs) VALUES (?1, ?2, ?3)
         ON CONFLICT (grp, {col}) DO UPDATE SET jobs = jobs + excluded.jobs"
    ))?
    .execute(params![grp, key, sign])?;
    if sign < 0 {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE grp = ?1 AND {col} = ?2 AND jobs = 0"))?
            .execute(params![grp, key])?;
    }
    Ok(())
}

/// Takes jobs out of the rollups, as if they had never been merged (`collector prune
/// --drop-rollups`): each job's group and contribution as [`read_job`] gives them.
pub fn remove(conn: &Connection, jobs: &[(i64, Contribution)]) -> rusqlite::Result<()> {
    let mut d = Deltas::default();
    for (grp, c) in jobs {
        d.groups.entry(*grp).or_default().apply(c, -1);
        move_modules(conn, &mut d, *grp, c, -1)?;
        d.move_ends(c, -1);
        move_cells(conn, &mut d, Some((*grp, c)), None)?;
    }
    d.flush(conn)
}

/// Recomputes every rollup from the jobs (the migration to schema version 3, and tests).
pub fn rebuild(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM rollup; DELETE FROM rollup_modules; DELETE FROM rollup_module_names;
         DELETE FROM rollup_ends; UPDATE jobs SET grp = NULL WHERE grp IS NOT NULL;",
    )?;
    #[derive(Default)]
    struct Acc {
        jobs: i64,
        walls: Vec<i64>,
        core_s: i64,
        eff_core_s: i64,
        cpu: ExactSum,
        eff_cpu: ExactSum,
        idle: ExactSum,
        modules: BTreeMap<i64, i64>,
    }
    let sets = store::module_sets(conn)?;
    let mut groups: BTreeMap<Key, Acc> = BTreeMap::new();
    let mut ends: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    {
        let mut st = conn.prepare(&format!("SELECT {} FROM jobs ORDER BY id", job_columns(conn)?))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let c = contribution(r, 0)?;
            if let Some((slot, failed)) = c.ended() {
                let e = ends.entry(slot).or_default();
                e.0 += 1;
                e.1 += i64::from(failed);
            }
            let a = groups.entry(c.key.clone()).or_default();
            a.jobs += 1;
            a.cpu.add(c.cpu);
            if let Some(i) = c.idle {
                a.idle.add(i);
            }
            if let Some(core) = c.core() {
                a.core_s += core;
                if core > 0 {
                    a.eff_core_s += core;
                    a.eff_cpu.add(c.cpu);
                }
            }
            if let Some(e) = c.elapsed {
                a.walls.push(e);
            }
            for m in c.module_set.and_then(|s| sets.get(&s)).into_iter().flatten() {
                *a.modules.entry(*m).or_default() += 1;
            }
        }
    }
    let names: HashMap<i64, String> = {
        let mut st = conn.prepare("SELECT id, name FROM modules")?;
        let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        v
    };
    // Before the histograms' migration (a ledger of version 2 converted in one go) there are no
    // histograms or idle sums to fill: that migration fills them.
    let hists = has_hist(conn)?;
    if hists {
        conn.execute_batch("DELETE FROM rollup_hist;")?;
    }
    let mut ins = conn.prepare(if hists {
        "INSERT INTO rollup (cluster, account, partition, user, state, jobs, walls, core_s, eff_core_s, cpu, eff_cpu, idle)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    } else {
        "INSERT INTO rollup (cluster, account, partition, user, state, jobs, walls, core_s, eff_core_s, cpu, eff_cpu)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    })?;
    let mut ins_mod = conn.prepare("INSERT INTO rollup_modules (grp, module, jobs) VALUES (?1, ?2, ?3)")?;
    let mut ins_name = conn.prepare("INSERT INTO rollup_module_names (grp, name, jobs) VALUES (?1, ?2, ?3)")?;
    for (k, a) in &groups {
        let mut p: Vec<Value> = vec![
            k.cluster.clone().into(),
            k.account.clone().into(),
            k.partition.clone().into(),
            k.user.clone().into(),
            k.state.clone().into(),
            a.jobs.into(),
            (a.walls.len() as i64).into(),
            a.core_s.into(),
            a.eff_core_s.into(),
            a.cpu.to_blob().into(),
            a.eff_cpu.to_blob().into(),
        ];
        if hists {
            p.push(a.idle.to_blob().into());
        }
        ins.execute(params_from_iter(p))?;
        let grp = conn.last_insert_rowid();
        if hists && !a.walls.is_empty() {
            HistAt::Group(grp).insert(conn, &Hist::of(&a.walls))?;
        }
        for (m, n) in &a.modules {
            ins_mod.execute(params![grp, m, n])?;
        }
    }
    conn.execute_batch(
        "UPDATE jobs SET grp = (SELECT r.id FROM rollup r WHERE r.cluster = jobs.cluster AND r.account IS jobs.account
            AND r.partition IS jobs.partition AND r.user IS COALESCE(jobs.user, CAST(jobs.uid AS TEXT))
            AND r.state = jobs.state)",
    )?;
    // By name, a job that loaded two versions of one module counts once: counted per (group,
    // module set), now that the jobs name their group.
    {
        let mut per: BTreeMap<(i64, String), i64> = BTreeMap::new();
        let mut st =
            conn.prepare("SELECT grp, module_set, COUNT(*) FROM jobs WHERE module_set IS NOT NULL GROUP BY 1, 2")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (grp, set, n): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let mut ns: Vec<&String> = sets.get(&set).into_iter().flatten().filter_map(|m| names.get(m)).collect();
            ns.sort_unstable();
            ns.dedup();
            for name in ns {
                *per.entry((grp, name.clone())).or_default() += n;
            }
        }
        for ((grp, name), n) in per {
            ins_name.execute(params![grp, name, n])?;
        }
    }
    let mut ins_end = conn.prepare("INSERT INTO rollup_ends (slot, jobs, failed) VALUES (?1, ?2, ?3)")?;
    for (slot, (jobs, failed)) in ends {
        ins_end.execute([slot, jobs, failed])?;
    }
    if has_cells(conn)? {
        rebuild_cells(conn)?;
    }
    Ok(())
}

/// Whether the ledger has the cells yet (the migration to version 3 rebuilds the groups of a
/// schema that predates them, and the cells' migration builds them).
fn has_cells(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'rollup_py'")?.exists([])
}

/// Whether the groups and cells keep histograms and idle sums yet ([`fill_hists_and_idle`]'s
/// migration).
fn has_hist(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rollup_hist'")?.exists([])
}

/// [`JOB_COLUMNS`], with no Python set before the cells' migration added its column, and no
/// idle core-seconds before the usage series'.
fn job_columns(conn: &Connection) -> rusqlite::Result<String> {
    let mut cols = JOB_COLUMNS.to_string();
    if !has_cells(conn)? {
        cols = cols.replace("rollup_py", "NULL");
    }
    if !conn.prepare_cached("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'idle_core_s'")?.exists([])? {
        cols = cols.replace("idle_core_s", "NULL");
    }
    Ok(cols)
}

/// A cell's dimension (`rollup_cells.dim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// The job's start, by [`month_bucket`].
    Month = 1,
    /// A module (name and version) the job loaded: `modules.id`.
    Module = 2,
    /// [`Contribution::py`] (jobs without Python have no cell).
    PySet = 3,
    /// A module name the job loaded, by [`name_key`] (two versions of one count once).
    ModuleName = 4,
}

pub const DIMS: [Dim; 4] = [Dim::Month, Dim::Module, Dim::ModuleName, Dim::PySet];

/// A module name as a cell value: FNV-1a, 64 bits (stable across prunes, unlike a row id).
pub fn name_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// [`Contribution::py`] of a job that ran Python and imported no package.
pub const NO_PACKAGES: i64 = -1;

/// The month bucket of a job without a start.
pub const NO_START: i64 = i64::MIN;

/// The widest UTC offset from a UTC month boundary to a local one (UTC-12 … UTC+14).
const EDGE_S: i64 = 14 * 3600;

/// The cell a job's start falls in for [`Dim::Month`], such that every start in one bucket has
/// the same local month and year in any time zone whose offsets are whole quarter hours within
/// ±14 h (all of them since 1980): a UTC month less 14 h at either end (odd: `2 × month + 1`,
/// months counted from year 0), and near a boundary the quarter hour (even: `2 × slot`),
/// since a local midnight is a quarter hour. So the reader's zone, not the writer's, decides
/// ([`bucket_instant`]). About 4 % of the jobs (28 h of a month) fall in quarter-hour cells.
pub fn month_bucket(start: Option<i64>) -> i64 {
    let Some(t) = start else { return NO_START };
    let (y, m, _) = civil_from_days(t.div_euclid(86_400));
    let first = days_from_civil(y, m, 1) * 86_400;
    let next = if m == 12 { days_from_civil(y + 1, 1, 1) } else { days_from_civil(y, m + 1, 1) } * 86_400;
    if t >= first + EDGE_S && t < next - EDGE_S {
        (y * 12 + m - 1).saturating_mul(2) + 1
    } else {
        t.div_euclid(END_SLOT_S).saturating_mul(2)
    }
}

/// An instant of [`month_bucket`] `b` (None for [`NO_START`]): a quarter hour's start, a
/// month's middle.
pub fn bucket_instant(b: i64) -> Option<i64> {
    if b == NO_START {
        None
    } else if b.rem_euclid(2) == 0 {
        Some(b / 2 * END_SLOT_S)
    } else {
        let months = (b - 1) / 2;
        Some(days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 15) * 86_400)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// Module set id -> its modules' ids and name keys, read once per use.
#[derive(Default)]
struct SetModules(HashMap<i64, (Vec<i64>, Vec<i64>)>);

impl SetModules {
    fn get(&mut self, conn: &Connection, set: i64) -> rusqlite::Result<&(Vec<i64>, Vec<i64>)> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.0.entry(set) {
            let ids: Vec<i64> = conn
                .prepare_cached("SELECT modules FROM module_sets WHERE id = ?1")?
                .query_row([set], |r| Ok(store::parse_module_set(r.get_ref(0)?.as_str()?)))?;
            let mut names = Vec::with_capacity(ids.len());
            for m in &ids {
                let name: String =
                    conn.prepare_cached("SELECT name FROM modules WHERE id = ?1")?.query_row([m], |r| r.get(0))?;
                names.push(name_key(&name));
            }
            names.sort_unstable();
            names.dedup();
            e.insert((ids, names));
        }
        Ok(&self.0[&set])
    }
}

/// The cell values of a job in `dim` (none: no cell there).
fn vals(
    conn: &Connection,
    sets: &mut SetModules,
    dim: Dim,
    start: Option<i64>,
    module_set: Option<i64>,
    py: Option<i64>,
) -> rusqlite::Result<Vec<i64>> {
    Ok(match (dim, module_set) {
        (Dim::Month, _) => vec![month_bucket(start)],
        (Dim::PySet, _) => py.into_iter().collect(),
        (Dim::Module, Some(s)) => sets.get(conn, s)?.0.clone(),
        (Dim::ModuleName, Some(s)) => sets.get(conn, s)?.1.clone(),
        (_, None) => Vec::new(),
    })
}

/// [`Contribution::py`] as the job's rows say now.
const PY_NOW: &str = "CASE WHEN jobs.py_set IS NOT NULL THEN jobs.py_set \
     WHEN EXISTS (SELECT 1 FROM py_procs p WHERE p.job = jobs.id) THEN -1 END";

/// Moves a job's cells from `old` (its group and contribution as counted) to `new`.
fn move_cells(
    conn: &Connection,
    d: &mut Deltas,
    old: Option<(i64, &Contribution)>,
    new: Option<(i64, &Contribution)>,
) -> rusqlite::Result<()> {
    let mut sets = SetModules::default();
    let mut cells_of = |side: Option<(i64, &Contribution)>, dim: Dim| -> rusqlite::Result<Vec<i64>> {
        match side {
            Some((_, c)) => vals(conn, &mut sets, dim, c.start, c.module_set, c.py),
            None => Ok(Vec::new()),
        }
    };
    for dim in DIMS {
        let (ov, nv) = (cells_of(old, dim)?, cells_of(new, dim)?);
        let same_group = matches!((old, new), (Some((og, _)), Some((ng, _))) if og == ng);
        if let Some((g, c)) = new {
            for &v in &nv {
                match old {
                    // Same cell: the sums and the elapsed time in one write.
                    Some((_, oc)) if same_group && ov.contains(&v) => {
                        if oc.elapsed == c.elapsed && oc.ncpus == c.ncpus && oc.cpu == c.cpu && oc.idle == c.idle {
                            continue;
                        }
                        let s = d.cells.entry((dim as i64, g, v)).or_default();
                        s.apply(c, 1);
                        s.apply(oc, -1);
                    }
                    _ => d.cells.entry((dim as i64, g, v)).or_default().apply(c, 1),
                }
            }
        }
        if let Some((g, c)) = old {
            for &v in ov.iter().filter(|v| !(same_group && nv.contains(v))) {
                d.cells.entry((dim as i64, g, v)).or_default().apply(c, -1);
            }
        }
    }
    Ok(())
}

/// [`sums`] for a cell (`dim` as stored), which is created when missing and deleted when the
/// changes empty it.
fn cell_sums(conn: &Connection, dim: i64, grp: i64, val: i64, d: Sums) -> rusqlite::Result<()> {
    let key = [dim, grp, val];
    let mut s = conn
        .prepare_cached(&format!("SELECT {SUMS} FROM rollup_cells WHERE dim = ?1 AND grp = ?2 AND val = ?3"))?
        .query_row(key, Sums::read)
        .optional()?
        .unwrap_or_default();
    s.add(d);
    let at = HistAt::Cell(dim, grp, val);
    if s.jobs == 0 {
        conn.prepare_cached("DELETE FROM rollup_cells WHERE dim = ?1 AND grp = ?2 AND val = ?3")?.execute(key)?;
        return at.delete(conn);
    }
    conn.prepare_cached(
        "INSERT INTO rollup_cells (dim, grp, val, jobs, walls, core_s, eff_core_s, cpu, eff_cpu, idle)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (dim, grp, val) DO UPDATE SET jobs = excluded.jobs, walls = excluded.walls,
             core_s = excluded.core_s, eff_core_s = excluded.eff_core_s, cpu = excluded.cpu, eff_cpu = excluded.eff_cpu,
             idle = excluded.idle",
    )?
    .execute(params![
        dim,
        grp,
        val,
        s.jobs,
        s.walls,
        s.core_s,
        s.eff_core_s,
        s.cpu.to_blob(),
        s.eff_cpu.to_blob(),
        s.idle.to_blob()
    ])?;
    at.apply(conn, &s.moves)
}

/// Recomputes every cell from the jobs and their groups (`jobs.grp`; [`rebuild`], and the
/// migration that adds the cells to a ledger whose groups are kept).
pub fn rebuild_cells(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "DELETE FROM rollup_cells;
         UPDATE jobs SET rollup_py = {PY_NOW} WHERE rollup_py IS NOT ({PY_NOW});"
    ))?;
    let mut cells: BTreeMap<(i64, i64, i64), (Sums, Vec<i64>)> = BTreeMap::new();
    let mut sets = SetModules::default();
    {
        let mut st = conn.prepare(&format!("SELECT grp, {JOB_COLUMNS} FROM jobs WHERE grp IS NOT NULL ORDER BY id"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let grp: i64 = r.get(0)?;
            let c = contribution(r, 1)?;
            for dim in DIMS {
                for v in vals(conn, &mut sets, dim, c.start, c.module_set, c.py)? {
                    let cell = cells.entry((dim as i64, grp, v)).or_default();
                    cell.0.apply(&c, 1);
                    cell.1.extend(c.elapsed);
                }
            }
        }
    }
    let hists = has_hist(conn)?;
    if hists {
        conn.execute_batch("DELETE FROM rollup_cell_hist;")?;
    }
    let mut ins = conn.prepare(if hists {
        "INSERT INTO rollup_cells (dim, grp, val, jobs, walls, core_s, eff_core_s, cpu, eff_cpu, idle)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    } else {
        "INSERT INTO rollup_cells (dim, grp, val, jobs, walls, core_s, eff_core_s, cpu, eff_cpu)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    })?;
    for ((dim, grp, val), (s, walls)) in cells {
        let mut p: Vec<Value> = vec![
            dim.into(),
            grp.into(),
            val.into(),
            s.jobs.into(),
            s.walls.into(),
            s.core_s.into(),
            s.eff_core_s.into(),
            s.cpu.to_blob().into(),
            s.eff_cpu.to_blob().into(),
        ];
        if hists {
            p.push(s.idle.to_blob().into());
        }
        ins.execute(params_from_iter(p))?;
        if hists && !walls.is_empty() {
            HistAt::Cell(dim, grp, val).insert(conn, &Hist::of(&walls))?;
        }
    }
    Ok(())
}

/// Fills every group's and cell's histogram and idle core-seconds from the jobs (the migration
/// that brought them: the lists of elapsed times they replace may be empty after a conversion
/// from version 2).
pub fn fill_hists_and_idle(conn: &Connection) -> rusqlite::Result<()> {
    let mut groups: HashMap<i64, (Vec<i64>, ExactSum)> = HashMap::new();
    let mut cells: HashMap<(i64, i64, i64), (Vec<i64>, ExactSum)> = HashMap::new();
    let mut sets = SetModules::default();
    {
        let mut st = conn.prepare(&format!("SELECT grp, {JOB_COLUMNS} FROM jobs WHERE grp IS NOT NULL"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let grp: i64 = r.get(0)?;
            let c = contribution(r, 1)?;
            let add = |acc: &mut (Vec<i64>, ExactSum)| {
                acc.0.extend(c.elapsed);
                if let Some(i) = c.idle {
                    acc.1.add(i);
                }
            };
            add(groups.entry(grp).or_default());
            for dim in DIMS {
                for v in vals(conn, &mut sets, dim, c.start, c.module_set, c.py)? {
                    add(cells.entry((dim as i64, grp, v)).or_default());
                }
            }
        }
    }
    conn.execute_batch("DELETE FROM rollup_hist; DELETE FROM rollup_cell_hist;")?;
    let mut set = conn.prepare("UPDATE rollup SET idle = ?2 WHERE id = ?1")?;
    for (grp, (walls, idle)) in groups {
        set.execute(params![grp, idle.to_blob()])?;
        if !walls.is_empty() {
            HistAt::Group(grp).insert(conn, &Hist::of(&walls))?;
        }
    }
    let mut set = conn.prepare("UPDATE rollup_cells SET idle = ?4 WHERE dim = ?1 AND grp = ?2 AND val = ?3")?;
    for ((dim, grp, val), (walls, idle)) in cells {
        set.execute(params![dim, grp, val, idle.to_blob()])?;
        if !walls.is_empty() {
            HistAt::Cell(dim, grp, val).insert(conn, &Hist::of(&walls))?;
        }
    }
    Ok(())
}

/// Sets a job's idle core-seconds (`jobs.idle_core_s`, from its usage series) and moves them in
/// the rollups (kept in `d` with the transaction's other changes): `grp` and `counted` are the
/// group and contribution it is counted with.
pub fn set_idle(
    conn: &Connection,
    d: &mut Deltas,
    job: i64,
    grp: i64,
    counted: &Contribution,
    idle: Option<f64>,
) -> rusqlite::Result<()> {
    if counted.idle == idle {
        return Ok(());
    }
    conn.prepare_cached("UPDATE jobs SET idle_core_s = ?2 WHERE id = ?1")?.execute(params![job, idle])?;
    update_into(conn, d, Some(grp), counted, &Contribution { idle, ..counted.clone() })?;
    Ok(())
}

/// One cell as the queries read it: its group, its value in the dimension, its sums.
#[derive(Clone, Debug)]
pub struct Cell {
    pub grp: i64,
    pub val: i64,
    pub jobs: i64,
    pub core_s: i64,
    pub eff_core_s: i64,
    pub cpu: ExactSum,
    pub eff_cpu: ExactSum,
    /// Idle core-seconds (`jobs.idle_core_s`) of its jobs.
    pub idle: ExactSum,
    /// Its jobs' elapsed times as stored (a [`Hist`] encoded: add it with
    /// [`crate::walls::Acc::add_encoded`]), when asked for ([`cells`]); else empty.
    pub walls: Vec<u8>,
}

/// Every cell of `dim`, in (group, value) order; with their elapsed times when `walls`.
pub fn cells(conn: &Connection, dim: Dim, walls: bool) -> rusqlite::Result<Vec<Cell>> {
    let mut out = Vec::new();
    each_cell(conn, dim, walls, |c| {
        out.push(c.clone());
        Ok(())
    })?;
    Ok(out)
}

/// Every cell of `dim` handed to `each` as it is read, in (group, value) order; with their
/// elapsed times when `walls` (both tables read in key order, side by side). None is kept: a
/// large ledger has a few hundred thousand cells per dimension, and gathering them first took
/// more time (allocations, page faults) than reading them.
pub fn each_cell(
    conn: &Connection,
    dim: Dim,
    walls: bool,
    mut each: impl FnMut(&Cell) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut st = conn.prepare(
        "SELECT grp, val, jobs, core_s, eff_core_s, cpu, eff_cpu, idle FROM rollup_cells WHERE dim = ?1 ORDER BY grp, val",
    )?;
    let mut hist_st =
        conn.prepare("SELECT grp, val, hist FROM rollup_cell_hist WHERE dim = ?1 ORDER BY grp, val, chunk")?;
    let mut rows = st.query([dim as i64])?;
    let mut hist = if walls { Some(hist_st.query([dim as i64])?) } else { None };
    // The histogram chunk read past its cell's end: the next cell's (or a cell's without row).
    let mut ahead: Option<(i64, i64)> = None;
    let mut ahead_blob: Vec<u8> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(r) = rows.next()? {
        let mut c = cell(r)?;
        buf.clear();
        c.walls = std::mem::take(&mut buf);
        let key = (c.grp, c.val);
        if let Some(h) = hist.as_mut() {
            // A cell's chunks in order, one after another, are its histogram.
            loop {
                if let Some(k) = ahead {
                    if k > key {
                        break;
                    }
                    if k == key {
                        c.walls.extend_from_slice(&ahead_blob);
                    }
                    ahead = None;
                }
                let Some(hr) = h.next()? else { break };
                let k: (i64, i64) = (hr.get(0)?, hr.get(1)?);
                let blob = hr.get_ref(2)?.as_blob()?;
                if k == key {
                    c.walls.extend_from_slice(blob);
                } else if k > key {
                    ahead = Some(k);
                    ahead_blob.clear();
                    ahead_blob.extend_from_slice(blob);
                    break;
                }
            }
        }
        each(&c)?;
        buf = c.walls;
    }
    Ok(())
}

/// A cell from its row: grp, val, jobs, core_s, eff_core_s, cpu, eff_cpu, idle (its histogram
/// is read apart).
fn cell(r: &rusqlite::Row) -> rusqlite::Result<Cell> {
    Ok(Cell {
        grp: r.get(0)?,
        val: r.get(1)?,
        jobs: r.get(2)?,
        core_s: r.get(3)?,
        eff_core_s: r.get(4)?,
        cpu: ExactSum::from_blob(r.get_ref(5)?.as_blob_or_null()?),
        eff_cpu: ExactSum::from_blob(r.get_ref(6)?.as_blob_or_null()?),
        idle: ExactSum::from_blob(r.get_ref(7)?.as_blob_or_null()?),
        walls: Vec::new(),
    })
}

/// The cells of `dim` whose value is one of `vals`, with their elapsed times (`who-used`'s
/// module: one module's cells among every module's).
pub fn cells_of(conn: &Connection, dim: Dim, vals: &[i64]) -> rusqlite::Result<Vec<Cell>> {
    // One row per chunk, the cells outside (a LEFT JOIN keeps that order; the histograms' key
    // leads with the group, not the value, so reading them first would read every module's).
    let mut st = conn.prepare(
        "SELECT c.grp, c.val, c.jobs, c.core_s, c.eff_core_s, c.cpu, c.eff_cpu, c.idle, h.hist FROM rollup_cells c
         LEFT JOIN rollup_cell_hist h ON h.dim = c.dim AND h.grp = c.grp AND h.val = c.val
         WHERE c.dim = ?1 AND c.val IN (SELECT value FROM json_each(?2))
         ORDER BY c.grp, c.val, h.chunk",
    )?;
    let list = format!("[{}]", vals.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    let mut rows = st.query(params![dim as i64, list])?;
    let mut out: Vec<Cell> = Vec::new();
    while let Some(r) = rows.next()? {
        let key: (i64, i64) = (r.get(0)?, r.get(1)?);
        if out.last().is_none_or(|c| (c.grp, c.val) != key) {
            out.push(cell(r)?);
        }
        if let (Some(c), Some(h)) = (out.last_mut(), r.get_ref(8)?.as_blob_or_null()?) {
            // A cell's chunks in order, one after another, are its histogram.
            c.walls.extend_from_slice(h);
        }
    }
    Ok(out)
}

/// One group as the queries read it.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: i64,
    pub key: Key,
    pub jobs: i64,
    pub core_s: i64,
    pub eff_core_s: i64,
    pub cpu: ExactSum,
    pub eff_cpu: ExactSum,
    /// Idle core-seconds (`jobs.idle_core_s`) of its jobs.
    pub idle: ExactSum,
}

/// Which groups [`groups`] reads: each list, when not empty, keeps the groups whose key has one
/// of its values. (The questions decide when the groups can answer a filter at all.)
#[derive(Clone, Debug, Default)]
pub struct GroupSel<'a> {
    pub users: &'a [String],
    pub accounts: &'a [String],
    pub partitions: &'a [String],
    pub clusters: &'a [String],
    /// sacct's state names.
    pub states: Vec<String>,
}

/// The groups with jobs that `sel` selects, in id order.
pub fn groups(conn: &Connection, sel: &GroupSel) -> rusqlite::Result<Vec<Group>> {
    let mut conds = vec!["jobs > 0".to_string()];
    let mut params: Vec<Value> = Vec::new();
    for (col, vals) in [
        ("user", sel.users),
        ("account", sel.accounts),
        ("partition", sel.partitions),
        ("cluster", sel.clusters),
        ("state", &sel.states[..]),
    ] {
        if !vals.is_empty() {
            conds.push(format!("{col} IN ({})", vec!["?"; vals.len()].join(", ")));
            params.extend(vals.iter().map(|v| Value::Text(v.clone())));
        }
    }
    let sql = format!(
        "SELECT id, cluster, account, partition, user, state, jobs, core_s, eff_core_s, cpu, eff_cpu, idle FROM rollup
         WHERE {} ORDER BY id",
        conds.join(" AND ")
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(params), |r| {
        Ok(Group {
            id: r.get(0)?,
            key: Key {
                cluster: r.get(1)?,
                account: r.get(2)?,
                partition: r.get(3)?,
                user: r.get(4)?,
                state: r.get(5)?,
            },
            jobs: r.get(6)?,
            core_s: r.get(7)?,
            eff_core_s: r.get(8)?,
            cpu: ExactSum::from_blob(r.get_ref(9)?.as_blob_or_null()?),
            eff_cpu: ExactSum::from_blob(r.get_ref(10)?.as_blob_or_null()?),
            idle: ExactSum::from_blob(r.get_ref(11)?.as_blob_or_null()?),
        })
    })?;
    rows.collect()
}

/// The elapsed times of every group that has any: group id -> its histogram as stored (a
/// [`Hist`] encoded: add it with [`crate::walls::Acc::add_encoded`]).
pub fn walls(conn: &Connection) -> rusqlite::Result<HashMap<i64, Vec<u8>>> {
    let mut out: HashMap<i64, Vec<u8>> = HashMap::new();
    let mut st = conn.prepare("SELECT grp, hist FROM rollup_hist ORDER BY grp, chunk")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        // A group's chunks in order, one after another, are its histogram.
        out.entry(r.get(0)?).or_default().extend_from_slice(r.get_ref(1)?.as_blob()?);
    }
    Ok(out)
}

/// Jobs per group and module (`names`: per module name, each job once): `each(group, module id
/// or name, jobs)` for every row, read as it streams (a large ledger has a few hundred thousand).
pub fn each_module_jobs(
    conn: &Connection,
    names: bool,
    mut each: impl FnMut(i64, rusqlite::types::ValueRef<'_>, i64),
) -> rusqlite::Result<()> {
    let sql = if names {
        "SELECT grp, name, jobs FROM rollup_module_names"
    } else {
        "SELECT grp, module, jobs FROM rollup_modules"
    };
    let mut st = conn.prepare(sql)?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        each(r.get(0)?, r.get_ref(1)?, r.get(2)?);
    }
    Ok(())
}

/// Jobs that ended per `rollup_ends` slot: (slot, jobs, failed), in slot order.
pub fn ends(conn: &Connection) -> rusqlite::Result<Vec<(i64, i64, i64)>> {
    let mut st = conn.prepare("SELECT slot, jobs, failed FROM rollup_ends ORDER BY slot")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use runledger_synth::synth;

    #[test]
    fn a_rebuild_gives_what_the_merge_kept() {
        let conn = crate::db::open_memory();
        for b in &synth::fixture_batches() {
            crate::merge::apply_group(&conn, &[b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
        }
        let kept = crate::merge::tests::dump(&conn);
        assert!(kept.contains("rollup"), "{kept}");
        super::rebuild(&conn).unwrap();
        assert_eq!(crate::merge::tests::dump(&conn), kept);
    }

    /// `n` made-up jobs (seed `seed`) merged one node record at a time, so a job's contribution
    /// changes after it was first counted.
    fn merged_node_by_node(n: u32, seed: u64) -> rusqlite::Connection {
        let conn = crate::db::open_memory();
        let mut synth = runledger_synth::Synth::new(n, seed, synth::FIXTURE_END);
        while let Some(job) = synth.next_job() {
            for b in &job {
                crate::merge::apply_group(&conn, &[b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
            }
        }
        conn
    }

    /// Made-up jobs with Python, merged node by node (each job's nodes in turn, so a job's
    /// package set and contribution change after it was first counted): the cells the merge
    /// kept are those a rebuild computes, and each dimension holds every job it should.
    #[test]
    fn cells_kept_by_the_merge_are_those_a_rebuild_computes() {
        let conn = merged_node_by_node(400, 11);
        let kept = crate::merge::tests::dump(&conn);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let per_dim = |d: super::Dim| -> i64 { super::cells(&conn, d, false).unwrap().iter().map(|c| c.jobs).sum() };
        assert_eq!(per_dim(super::Dim::Month), count("SELECT count(*) FROM jobs"));
        assert_eq!(
            per_dim(super::Dim::Module),
            count("SELECT count(*) FROM jobs j JOIN module_set_members m ON m.module_set = j.module_set")
        );
        let python = count("SELECT count(DISTINCT job) FROM py_procs");
        assert!(python > 50, "{python} jobs with Python");
        assert_eq!(per_dim(super::Dim::PySet), python);
        super::rebuild(&conn).unwrap();
        assert_eq!(crate::merge::tests::dump(&conn), kept);
    }

    /// The rollups' changes wait in memory until the commit ([`super::Deltas`]): many jobs in
    /// one transaction, each batch under its savepoint, and one batch that fails after another
    /// job of it was counted, leave what one transaction per batch leaves and what a rebuild
    /// computes; the failed batch's changes go with its savepoint.
    #[test]
    fn one_transaction_of_many_batches_keeps_what_a_rebuild_computes() {
        let mut synth = runledger_synth::Synth::new(300, 5, synth::FIXTURE_END);
        let mut batches = Vec::new();
        while let Some(b) = synth.next_job_batch() {
            batches.push(b);
        }
        // Jobs 1010 and 1011 in one batch; 1011's node rows fail, after 1010 was counted.
        let mut both = batches[10].clone();
        both.items.extend(batches[11].items.iter().cloned());
        let boom = "CREATE TEMP TRIGGER boom BEFORE INSERT ON job_nodes
                    WHEN (SELECT job_id FROM jobs WHERE id = NEW.job) = 1011
                    BEGIN SELECT RAISE(ABORT, 'boom'); END;";
        let mut all: Vec<&runledger_record::Batch> = batches.iter().collect();
        all[10] = &both;
        all.remove(11);

        let one = crate::db::open_memory();
        one.execute_batch(boom).unwrap();
        let results = crate::merge::apply_group(&one, &all, synth::FIXTURE_END).unwrap();
        assert!(results[10].as_ref().is_err_and(|e| e.to_string().contains("boom")), "{:?}", results[10]);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), all.len() - 1);

        let each = crate::db::open_memory();
        for (_, b) in all.iter().enumerate().filter(|(i, _)| *i != 10) {
            crate::merge::apply_group(&each, &[b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
        }
        let kept = crate::merge::tests::dump(&one);
        assert!(kept.contains("rollup_cell_hist"), "the dump holds no cell histograms");
        assert!(kept.contains("job_id=1009 ") && !kept.contains("job_id=1010 "), "the failed batch's first job stayed");
        assert_eq!(kept, crate::merge::tests::dump(&each));
        super::rebuild(&one).unwrap();
        assert_eq!(crate::merge::tests::dump(&one), kept);
    }

    /// The migration that brought the histograms fills them from the jobs as the merge keeps
    /// them (a ledger converted from version 2 had no elapsed times to carry over).
    #[test]
    fn histograms_filled_from_the_jobs_are_those_the_merge_kept() {
        let conn = merged_node_by_node(300, 7);
        let kept = crate::merge::tests::dump(&conn);
        let filled: i64 = conn
            .query_row("SELECT (SELECT count(*) FROM rollup_hist) + (SELECT count(*) FROM rollup_cell_hist)", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(filled > 100, "{filled} histograms");
        conn.execute_batch(
            "DELETE FROM rollup_hist; DELETE FROM rollup_cell_hist; UPDATE rollup SET idle = NULL;
             UPDATE rollup_cells SET idle = NULL;",
        )
        .unwrap();
        super::fill_hists_and_idle(&conn).unwrap();
        assert_eq!(crate::merge::tests::dump(&conn), kept);
    }

    /// Every start in one month bucket has the same local month under any offset that is a
    /// whole number of quarter hours within UTC-12 … UTC+14, as the bucket's instant does.
    #[test]
    fn a_month_bucket_is_one_local_month_in_every_zone() {
        use super::{bucket_instant, civil_from_days, month_bucket};
        let month = |t: i64| {
            let (y, m, _) = civil_from_days(t.div_euclid(86_400));
            (y, m)
        };
        let mut rng = runledger_synth::synth::Rng(5);
        // Around month boundaries mostly, and anywhere.
        for i in 0..200_000 {
            let t = if i % 2 == 0 {
                let (y, m) = (1990 + rng.below(60) as i64, 1 + rng.below(12) as i64);
                super::days_from_civil(y, m, 1) * 86_400 + rng.below(2 * 86_400) as i64 - 86_400
            } else {
                rng.below(4_000_000_000) as i64
            };
            let b = month_bucket(Some(t));
            let at = bucket_instant(b).unwrap();
            assert_eq!(month_bucket(Some(at)), b, "{t}");
            let offset = (rng.below(26 * 4 + 1) as i64 - 12 * 4) * 900;
            assert_eq!(month(t + offset), month(at + offset), "{t} {offset}");
        }
        assert_eq!(bucket_instant(month_bucket(None)), None);
        assert_eq!(civil_from_days(super::days_from_civil(2026, 2, 28)), (2026, 2, 28));
    }
}
