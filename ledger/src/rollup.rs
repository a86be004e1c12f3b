//! Rollups: what the manager queries need of every job, summed per group of jobs alike, so that
//! `query summary`, `query modules` and `query throughput` read thousands of rows instead of a
//! million.
//!
//! A group (`rollup`) is one (cluster, account, partition, user, state): the keys and filters
//! those queries most often use. Per group: jobs, allocated core-seconds, CPU seconds (exact,
//! see [`ExactSum`]), the same two over the jobs whose core-seconds are positive (the CPU
//! efficiency's terms), and every job's elapsed seconds (`rollup_walls`, in chunks), so medians
//! and percentiles stay exact. Per group and module (`rollup_modules`) and module name
//! (`rollup_module_names`): the jobs that loaded it. Per quarter hour of the end time
//! (`rollup_ends`): jobs that ended, and how many failed.
//!
//! The merge keeps them current: [`crate::merge::recompute`] reads a job's contribution
//! ([`Contribution`]) before and after it updates the row and applies the difference
//! ([`update`]); `jobs.grp` names the group a job is counted in (NULL: not counted yet). Sums
//! are integers (exact), so adding and removing in any order gives what [`rebuild`] computes
//! from scratch. A query whose keys or filters a group cannot express scans the jobs instead.

use crate::store::{self, ExactSum};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap};

/// Elapsed times per `rollup_walls` row: a blob of about 1.5 KiB, rewritten when a job of the
/// group is added or changes.
/// The states counted as failures (`rollup_ends.failed`, `query summary`'s failure rate).
pub const FAILED_STATES: &[&str] = &["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"];

const WALLS_PER_CHUNK: usize = 512;

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
     cpu_seconds, module_set";

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
    })
}

/// A job row's group and contribution as stored; the group is None while it is not counted.
pub fn read_job(conn: &Connection, job: i64) -> rusqlite::Result<(Option<i64>, Contribution)> {
    conn.prepare_cached(&format!("SELECT grp, {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([job], |r| Ok((r.get(0)?, contribution(r, 1)?)))
}

/// Moves job `job` from its old contribution (counted in group `old_grp`, if any) to `new`.
pub fn update(
    conn: &Connection,
    job: i64,
    old_grp: Option<i64>,
    old: &Contribution,
    new: &Contribution,
) -> rusqlite::Result<()> {
    if old_grp.is_some() && old == new {
        return Ok(());
    }
    match old_grp {
        // The job stays in its group (another node's records, typically): only what changed
        // moves, the sums in one write.
        Some(g) if old.key == new.key => {
            sums(conn, g, &[(new, 1), (old, -1)])?;
            if old.elapsed != new.elapsed {
                move_walls(conn, g, new, 1)?;
                move_walls(conn, g, old, -1)?;
            }
            if old.module_set != new.module_set {
                move_modules(conn, g, new, 1)?;
                move_modules(conn, g, old, -1)?;
            }
            if old.ended() != new.ended() {
                move_ends(conn, new, 1)?;
                move_ends(conn, old, -1)?;
            }
        }
        _ => {
            let grp = group_id(conn, &new.key)?;
            sums(conn, grp, &[(new, 1)])?;
            move_walls(conn, grp, new, 1)?;
            move_modules(conn, grp, new, 1)?;
            move_ends(conn, new, 1)?;
            if let Some(g) = old_grp {
                // An emptied group goes, its elapsed times with it.
                if !sums(conn, g, &[(old, -1)])? {
                    move_walls(conn, g, old, -1)?;
                }
                move_modules(conn, g, old, -1)?;
                move_ends(conn, old, -1)?;
            }
            conn.prepare_cached("UPDATE jobs SET grp = ?2 WHERE id = ?1")?.execute([job, grp])?;
        }
    }
    Ok(())
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

/// Adds (sign 1) and removes (-1) contributions to group `grp`'s sums; true when that emptied
/// the group, which is then deleted with its elapsed times.
fn sums(conn: &Connection, grp: i64, changes: &[(&Contribution, i64)]) -> rusqlite::Result<bool> {
    let (mut jobs, mut walls, mut core_s, mut eff_core_s, mut cpu, mut eff_cpu): (
        i64,
        i64,
        i64,
        i64,
        ExactSum,
        ExactSum,
    ) = conn
        .prepare_cached("SELECT jobs, walls, core_s, eff_core_s, cpu, eff_cpu FROM rollup WHERE id = ?1")?
        .query_row([grp], |r| {
            let sum = |i: usize| Ok::<_, rusqlite::Error>(ExactSum::from_blob(r.get_ref(i)?.as_blob_or_null()?));
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, sum(4)?, sum(5)?))
        })?;
    for &(c, sign) in changes {
        let add = |s: &mut ExactSum, x: f64| if sign > 0 { s.add(x) } else { s.sub(x) };
        add(&mut cpu, c.cpu);
        if let Some(core) = c.core() {
            core_s += sign * core;
            if core > 0 {
                eff_core_s += sign * core;
                add(&mut eff_cpu, c.cpu);
            }
        }
        jobs += sign;
        walls += sign * i64::from(c.elapsed.is_some());
    }
    if jobs == 0 {
        conn.prepare_cached("DELETE FROM rollup WHERE id = ?1")?.execute([grp])?;
        conn.prepare_cached("DELETE FROM rollup_walls WHERE grp = ?1")?.execute([grp])?;
        return Ok(true);
    }
    conn.prepare_cached(
        "UPDATE rollup SET jobs = ?2, walls = ?3, core_s = ?4, eff_core_s = ?5, cpu = ?6, eff_cpu = ?7 WHERE id = ?1",
    )?
    .execute(params![grp, jobs, walls, core_s, eff_core_s, cpu.to_blob(), eff_cpu.to_blob()])?;
    Ok(false)
}

fn move_walls(conn: &Connection, grp: i64, c: &Contribution, sign: i64) -> rusqlite::Result<()> {
    match c.elapsed {
        Some(e) if sign > 0 => add_wall(conn, grp, e),
        Some(e) => remove_wall(conn, grp, e),
        None => Ok(()),
    }
}

fn move_modules(conn: &Connection, grp: i64, c: &Contribution, sign: i64) -> rusqlite::Result<()> {
    let Some(set) = c.module_set else { return Ok(()) };
    let modules: Vec<i64> = conn
        .prepare_cached("SELECT modules FROM module_sets WHERE id = ?1")?
        .query_row([set], |r| Ok(store::parse_module_set(r.get_ref(0)?.as_str()?)))?;
    let mut names: Vec<String> = Vec::with_capacity(modules.len());
    for m in &modules {
        bump(conn, "rollup_modules", "module", grp, &Value::Integer(*m), sign)?;
        let name: String =
            conn.prepare_cached("SELECT name FROM modules WHERE id = ?1")?.query_row([m], |r| r.get(0))?;
        names.push(name);
    }
    // A job that loaded two versions of one module counts once for its name.
    names.sort_unstable();
    names.dedup();
    for n in names {
        bump(conn, "rollup_module_names", "name", grp, &Value::Text(n), sign)?;
    }
    Ok(())
}

fn move_ends(conn: &Connection, c: &Contribution, sign: i64) -> rusqlite::Result<()> {
    let Some((slot, failed)) = c.ended() else { return Ok(()) };
    conn.prepare_cached(
        "INSERT INTO rollup_ends (slot, jobs, failed) VALUES (?1, ?2, ?3)
         ON CONFLICT (slot) DO UPDATE SET jobs = jobs + excluded.jobs, failed = failed + excluded.failed",
    )?
    .execute([slot, sign, sign * i64::from(failed)])?;
    if sign < 0 {
        conn.prepare_cached("DELETE FROM rollup_ends WHERE slot = ?1 AND jobs = 0")?.execute([slot])?;
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

fn add_wall(conn: &Connection, grp: i64, wall: i64) -> rusqlite::Result<()> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT chunk, walls FROM rollup_walls WHERE grp = ?1 ORDER BY chunk DESC LIMIT 1")?
        .query_row([grp], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match last {
        // A varint's last byte is the one below 0x80: their number is the number of values.
        Some((chunk, mut walls)) if walls.iter().filter(|&&b| b < 0x80).count() < WALLS_PER_CHUNK => {
            walls.extend(store::encode_walls(&[wall]));
            conn.prepare_cached("UPDATE rollup_walls SET walls = ?3 WHERE grp = ?1 AND chunk = ?2")?
                .execute(params![grp, chunk, walls])?;
        }
        last => {
            let chunk = last.map_or(0, |(c, _)| c + 1);
            conn.prepare_cached("INSERT INTO rollup_walls (grp, chunk, walls) VALUES (?1, ?2, ?3)")?
                .execute(params![grp, chunk, store::encode_walls(&[wall])])?;
        }
    }
    Ok(())
}

/// Removes one elapsed time equal to `wall` from the group: from the newest chunk holding one
/// (a job changes soon after it was added, so that is usually the last).
fn remove_wall(conn: &Connection, grp: i64, wall: i64) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached("SELECT chunk, walls FROM rollup_walls WHERE grp = ?1 ORDER BY chunk DESC")?;
    let mut rows = st.query([grp])?;
    let mut found = None;
    while let Some(r) = rows.next()? {
        let mut walls = Vec::new();
        store::decode_walls(r.get_ref(1)?.as_blob()?, &mut walls);
        if let Some(i) = walls.iter().position(|&w| w == wall) {
            walls.swap_remove(i);
            found = Some((r.get::<_, i64>(0)?, walls));
            break;
        }
    }
    drop(rows);
    match found {
        Some((chunk, walls)) if walls.is_empty() => {
            conn.prepare_cached("DELETE FROM rollup_walls WHERE grp = ?1 AND chunk = ?2")?.execute([grp, chunk])?;
        }
        Some((chunk, walls)) => {
            conn.prepare_cached("UPDATE rollup_walls SET walls = ?3 WHERE grp = ?1 AND chunk = ?2")?
                .execute(params![grp, chunk, store::encode_walls(&walls)])?;
        }
        None => log::warn!("rollup group {grp} holds no elapsed time of {wall} s to remove"),
    }
    Ok(())
}

/// Takes jobs out of the rollups, as if they had never been merged (`collector prune
/// --drop-rollups`): each job's group and contribution as [`read_job`] gives them. The elapsed
/// times are removed group by group, in one pass over each group's chunks.
pub fn remove(conn: &Connection, jobs: &[(i64, Contribution)]) -> rusqlite::Result<()> {
    let mut walls: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut emptied = std::collections::HashSet::new();
    for (grp, c) in jobs {
        if sums(conn, *grp, &[(c, -1)])? {
            // The group went, its elapsed times with it.
            emptied.insert(*grp);
        } else if let Some(e) = c.elapsed {
            walls.entry(*grp).or_default().push(e);
        }
        move_modules(conn, *grp, c, -1)?;
        move_ends(conn, c, -1)?;
    }
    for (grp, gone) in walls {
        if !emptied.contains(&grp) {
            remove_walls(conn, grp, gone)?;
        }
    }
    Ok(())
}

/// Removes one elapsed time per value of `gone` from group `grp`.
fn remove_walls(conn: &Connection, grp: i64, gone: Vec<i64>) -> rusqlite::Result<()> {
    let mut want: HashMap<i64, usize> = HashMap::new();
    for w in gone {
        *want.entry(w).or_default() += 1;
    }
    let mut left = want.values().sum::<usize>();
    let chunks: Vec<(i64, Vec<u8>)> = {
        let mut st = conn.prepare_cached("SELECT chunk, walls FROM rollup_walls WHERE grp = ?1 ORDER BY chunk")?;
        let rows = st.query_map([grp], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (chunk, blob) in chunks {
        if left == 0 {
            break;
        }
        let mut walls = Vec::new();
        store::decode_walls(&blob, &mut walls);
        let before = walls.len();
        walls.retain(|w| match want.get_mut(w) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        });
        if walls.len() == before {
            continue;
        }
        left -= before - walls.len();
        if walls.is_empty() {
            conn.prepare_cached("DELETE FROM rollup_walls WHERE grp = ?1 AND chunk = ?2")?.execute([grp, chunk])?;
        } else {
            conn.prepare_cached("UPDATE rollup_walls SET walls = ?3 WHERE grp = ?1 AND chunk = ?2")?
                .execute(params![grp, chunk, store::encode_walls(&walls)])?;
        }
    }
    if left > 0 {
        log::warn!("rollup group {grp} lacked {left} elapsed times to remove");
    }
    Ok(())
}

/// Recomputes every rollup from the jobs (the migration to schema version 3, and tests).
pub fn rebuild(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM rollup; DELETE FROM rollup_walls; DELETE FROM rollup_modules; DELETE FROM rollup_module_names;
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
        modules: BTreeMap<i64, i64>,
    }
    let sets = store::module_sets(conn)?;
    let mut groups: BTreeMap<Key, Acc> = BTreeMap::new();
    let mut ends: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    {
        let mut st = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))?;
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
    let mut ins = conn.prepare(
        "INSERT INTO rollup (cluster, account, partition, user, state, jobs, walls, core_s, eff_core_s, cpu, eff_cpu)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut ins_walls = conn.prepare("INSERT INTO rollup_walls (grp, chunk, walls) VALUES (?1, ?2, ?3)")?;
    let mut ins_mod = conn.prepare("INSERT INTO rollup_modules (grp, module, jobs) VALUES (?1, ?2, ?3)")?;
    let mut ins_name = conn.prepare("INSERT INTO rollup_module_names (grp, name, jobs) VALUES (?1, ?2, ?3)")?;
    for (k, a) in &groups {
        ins.execute(params![
            k.cluster,
            k.account,
            k.partition,
            k.user,
            k.state,
            a.jobs,
            a.walls.len() as i64,
            a.core_s,
            a.eff_core_s,
            a.cpu.to_blob(),
            a.eff_cpu.to_blob()
        ])?;
        let grp = conn.last_insert_rowid();
        for (i, chunk) in a.walls.chunks(WALLS_PER_CHUNK).enumerate() {
            ins_walls.execute(params![grp, i as i64, store::encode_walls(chunk)])?;
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
    Ok(())
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
        "SELECT id, cluster, account, partition, user, state, jobs, core_s, eff_core_s, cpu, eff_cpu FROM rollup
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
        })
    })?;
    rows.collect()
}

/// The elapsed times of every group (group id -> walls), read chunk by chunk.
pub fn walls(conn: &Connection) -> rusqlite::Result<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut st = conn.prepare("SELECT grp, walls FROM rollup_walls")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        store::decode_walls(r.get_ref(1)?.as_blob()?, out.entry(r.get(0)?).or_default());
    }
    Ok(out)
}

/// Jobs per group and module (`names`: per module name, each job once), as (group, module id or
/// name, jobs).
pub fn module_jobs(conn: &Connection, names: bool) -> rusqlite::Result<Vec<(i64, Value, i64)>> {
    let sql = if names {
        "SELECT grp, name, jobs FROM rollup_module_names"
    } else {
        "SELECT grp, module, jobs FROM rollup_modules"
    };
    let mut st = conn.prepare(sql)?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
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
}
