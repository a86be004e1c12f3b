//! Retention: `collector prune --before DATE` takes old jobs out of the ledger while `collector
//! serve` keeps writing.
//!
//! A job goes when it ended before the date and has a final state (a job without a node's end
//! record, `UNKNOWN`, may still be running or still be sent: it stays, and is counted in the
//! report). With it go its node records, steps (and their tasks), tags and facts, then every
//! environment, string (argv, executable, working directory), attribute set, module list and
//! module set that no job references any more. Host names and modules stay: they are few, and
//! the rollups name modules.
//!
//! The rollups ([`crate::rollup`]) keep the pruned jobs (their `grp` counts stay) unless
//! `drop_rollups`: `query summary` over the rollup keys (user, account, partition, cluster,
//! state) with filters on those only, `query modules` without filters, and `query throughput`
//! without filters still count the pruned jobs; every question that reads the jobs themselves
//! (`query jobs`, `job`, `events`, `errors`, `efficiency`, `who-used`, `co-usage`, `utilization`,
//! any -S/-E, `summary` by month, module, fact…, the exports) sees only the jobs that are left.
//! Each run is kept in `prunes`.
//!
//! # Bounded transactions
//!
//! Jobs go in transactions of at most [`Options::batch`] jobs, and the prune waits as long as
//! each took before the next, so the daemon's writer (which waits up to
//! [`crate::db::BUSY_TIMEOUT`] for the lock) gets it between two of them. The sweep of
//! unreferenced rows cannot decide in one short transaction (nothing indexes the references),
//! so it runs in three steps: the candidates (the rows the pruned jobs referenced) are put in
//! `retiring` (short transactions); a read snapshot taken after that scans every reference and
//! strikes the candidates still used; short transactions delete the candidates still in
//! `retiring`. The merge takes a row off `retiring` whenever it reuses it ([`crate::store`]), so a
//! row a commit after the snapshot started to use again is never deleted, and a reference the
//! snapshot did not see was made through that lookup.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// What a prune does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Unix seconds: jobs that ended before it go.
    pub before: i64,
    /// Also take the pruned jobs out of the rollups.
    pub drop_rollups: bool,
    /// Jobs per transaction.
    pub batch: usize,
    /// Count only: nothing is deleted.
    pub dry_run: bool,
}

impl Options {
    pub fn new(before: i64) -> Self {
        Options { before, drop_rollups: false, batch: 500, dry_run: false }
    }
}

/// What a prune removed.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub before: i64,
    pub drop_rollups: bool,
    pub dry_run: bool,
    pub jobs: u64,
    pub node_records: u64,
    pub steps: u64,
    pub tags: u64,
    pub facts: u64,
    pub environments: u64,
    pub strings: u64,
    pub attrs: u64,
    pub module_lists: u64,
    pub module_sets: u64,
    /// Jobs that ended before the date without a final state (no node's end record): kept.
    pub kept_unfinished: u64,
    pub transactions: u64,
    /// The longest write transaction (from taking the lock to the commit), in milliseconds.
    pub longest_transaction_ms: u64,
    pub seconds: f64,
}

impl Report {
    /// The report in words, one line per kind of row.
    pub fn text(&self) -> String {
        let verb = if self.dry_run { "would remove" } else { "removed" };
        let mut s = format!(
            "{verb} {} jobs that ended before {} ({} node records, {} steps, {} tags, {} facts)\n",
            self.jobs,
            fmt_time(self.before),
            self.node_records,
            self.steps,
            self.tags,
            self.facts
        );
        if !self.dry_run {
            s.push_str(&format!(
                "removed rows no job references any more: {} environments, {} strings, {} attribute sets, \
                 {} module lists, {} module sets\n",
                self.environments, self.strings, self.attrs, self.module_lists, self.module_sets
            ));
        }
        s.push_str(if self.drop_rollups {
            "rollups: the pruned jobs were taken out of them too\n"
        } else {
            "rollups: kept (summary by user/account/partition/cluster/state, modules and throughput without \
             filters still count the pruned jobs)\n"
        });
        if self.kept_unfinished > 0 {
            s.push_str(&format!(
                "kept {} jobs before that date without a final state (no node's end record yet)\n",
                self.kept_unfinished
            ));
        }
        s.push_str(&format!(
            "{} write transactions, the longest {} ms; {:.1} s in all\n",
            self.transactions, self.longest_transaction_ms, self.seconds
        ));
        s
    }
}

fn fmt_time(t: i64) -> String {
    // UTC, unambiguous in logs; the command line printed the date it was given.
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The tables the sweep deletes unreferenced rows from, as `retiring.kind`.
const KINDS: [&str; 5] = ["environments", "strings", "attrs", "module_lists", "module_sets"];

/// Candidates of the sweep, per kind (index in [`KINDS`]).
type Ids = [HashSet<i64>; 5];

/// Removes the jobs that ended before `opts.before` and what only they referenced; `progress`
/// hears after each transaction. `conn` must be a read-write connection of its own (the
/// daemon's writer has another).
pub fn prune(conn: &Connection, opts: &Options, mut progress: impl FnMut(&Report)) -> rusqlite::Result<Report> {
    let started = Instant::now();
    let mut report =
        Report { before: opts.before, drop_rollups: opts.drop_rollups, dry_run: opts.dry_run, ..Default::default() };
    report.kept_unfinished =
        conn.query_row("SELECT count(*) FROM jobs WHERE end < ?1 AND state = 'UNKNOWN'", [opts.before], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    if opts.dry_run {
        let count = |sql: &str| conn.query_row(sql, [opts.before], |r| r.get::<_, i64>(0)).map(|n| n as u64);
        let jobs = "SELECT id FROM jobs WHERE end < ?1 AND state <> 'UNKNOWN'";
        report.jobs = count(&format!("SELECT count(*) FROM ({jobs})"))?;
        report.node_records = count(&format!("SELECT count(*) FROM job_nodes WHERE job IN ({jobs})"))?;
        report.steps = count(&format!("SELECT count(*) FROM steps WHERE job IN ({jobs})"))?;
        report.tags = count(&format!("SELECT count(*) FROM tags WHERE job IN ({jobs})"))?;
        report.facts = count(&format!("SELECT count(*) FROM facts WHERE job IN ({jobs})"))?;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    // A sweep cut short (a crash, a kill) left its candidates: they are only candidates.
    conn.execute_batch("DELETE FROM retiring")?;
    let mut candidates: Ids = Default::default();
    let batch = opts.batch.max(1);
    loop {
        let (done, counts) = write(conn, &mut report, |conn| prune_batch(conn, opts, batch, &mut candidates))?;
        report.jobs += counts.jobs;
        report.node_records += counts.node_records;
        report.steps += counts.steps;
        report.tags += counts.tags;
        report.facts += counts.facts;
        progress(&report);
        if done {
            break;
        }
    }
    sweep(conn, &mut report, candidates)?;
    report.seconds = started.elapsed().as_secs_f64();
    let json = serde_json::to_string(&report).unwrap_or_default();
    conn.execute(
        "INSERT INTO prunes (time, before, drop_rollups, jobs, report) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now(), opts.before, opts.drop_rollups, report.jobs as i64, json],
    )?;
    progress(&report);
    Ok(report)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// One batch's counts.
#[derive(Default)]
struct Counts {
    jobs: u64,
    node_records: u64,
    steps: u64,
    tags: u64,
    facts: u64,
}

/// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), counts it, then waits as long as it
/// took (at least a millisecond), so that a writer waiting for the lock gets it.
fn write<T>(
    conn: &Connection,
    report: &mut Report,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Held from here: the wait for the lock (the daemon's writer committing) is not ours.
    let t0 = Instant::now();
    let out = match f(conn) {
        Ok(v) => v,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    };
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    let took = t0.elapsed();
    report.transactions += 1;
    report.longest_transaction_ms = report.longest_transaction_ms.max(took.as_millis() as u64);
    std::thread::sleep(took.max(Duration::from_millis(1)));
    Ok(out)
}

/// One transaction's worth of jobs: (no jobs are left, what went).
fn prune_batch(
    conn: &Connection,
    opts: &Options,
    batch: usize,
    candidates: &mut Ids,
) -> rusqlite::Result<(bool, Counts)> {
    let mut counts = Counts::default();
    let ids: Vec<i64> = {
        let mut st =
            conn.prepare_cached("SELECT id FROM jobs WHERE end < ?1 AND state <> 'UNKNOWN' ORDER BY end LIMIT ?2")?;
        let rows = st.query_map(params![opts.before, batch as i64], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        return Ok((true, counts));
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    // What the jobs reference: the sweep's candidates.
    let mut note = |kind: usize, v: Option<i64>| {
        if let Some(id) = v {
            candidates[kind].insert(id);
        }
    };
    {
        let mut st =
            conn.prepare(&format!("SELECT env, argv, exe, cwd, attrs, modules FROM steps WHERE job IN ({list})"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            note(0, r.get(0)?);
            note(1, r.get(1)?);
            note(1, r.get(2)?);
            note(1, r.get(3)?);
            note(2, r.get(4)?);
            note(3, r.get(5)?);
        }
        let mut st = conn.prepare(&format!("SELECT attrs FROM job_nodes WHERE job IN ({list})"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            note(2, r.get(0)?);
        }
        let mut st = conn.prepare(&format!("SELECT env, module_set FROM jobs WHERE id IN ({list})"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            note(0, r.get(0)?);
            note(4, r.get(1)?);
        }
        let mut st = conn
            .prepare(&format!("SELECT interpreter, prefix, base_prefix, main FROM py_procs WHERE job IN ({list})"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            for i in 0..4 {
                note(1, r.get(i)?);
            }
        }
    }
    if opts.drop_rollups {
        let mut gone = Vec::with_capacity(ids.len());
        for &id in &ids {
            if let (Some(grp), c) = crate::rollup::read_job(conn, id)? {
                gone.push((grp, c));
            }
        }
        crate::rollup::remove(conn, &gone)?;
    }
    // The children first, explicitly: the counts, and no reliance on the connection's
    // foreign_keys setting for the cascade.
    counts.node_records += conn.execute(&format!("DELETE FROM job_nodes WHERE job IN ({list})"), [])? as u64;
    counts.steps += conn.execute(&format!("DELETE FROM steps WHERE job IN ({list})"), [])? as u64;
    counts.tags += conn.execute(&format!("DELETE FROM tags WHERE job IN ({list})"), [])? as u64;
    counts.facts += conn.execute(&format!("DELETE FROM facts WHERE job IN ({list})"), [])? as u64;
    conn.execute(&format!("DELETE FROM py_procs WHERE job IN ({list})"), [])?;
    conn.execute(&format!("DELETE FROM py_nodes WHERE job IN ({list})"), [])?;
    conn.execute(&format!("DELETE FROM step_series WHERE job IN ({list})"), [])?;
    counts.jobs += conn.execute(&format!("DELETE FROM jobs WHERE id IN ({list})"), [])? as u64;
    Ok((ids.len() < batch, counts))
}

/// Rows per transaction of the sweep.
const SWEEP_BATCH: usize = 2000;

/// Deletes the candidates no job references (see the module documentation).
fn sweep(conn: &Connection, report: &mut Report, mut candidates: Ids) -> rusqlite::Result<()> {
    if candidates.iter().all(HashSet::is_empty) {
        return Ok(());
    }
    // A module list names its modulefiles (strings): those go with it unless another list names
    // them. (A merge that reuses the list looks its files up first, taking them off too.)
    {
        let mut st = conn.prepare_cached("SELECT items FROM module_lists WHERE id = ?1")?;
        let mut files = Vec::new();
        for list in &candidates[3] {
            let items: Option<String> = st.query_row([list], |r| r.get(0)).optional()?;
            for (_, f) in items.as_deref().map(crate::store::parse_module_list).unwrap_or_default() {
                files.extend(f);
            }
        }
        candidates[1].extend(files);
    }
    // 1. The candidates, announced: from the next commit on, a merge that reuses one takes it off.
    for (k, ids) in candidates.iter().enumerate() {
        let ids: Vec<i64> = ids.iter().copied().collect();
        for chunk in ids.chunks(SWEEP_BATCH) {
            write(conn, report, |conn| {
                let mut st = conn.prepare_cached("INSERT OR IGNORE INTO retiring (kind, id) VALUES (?1, ?2)")?;
                for id in chunk {
                    st.execute(params![KINDS[k], id])?;
                }
                Ok(())
            })?;
        }
    }
    // 2. One read snapshot, taken after that: every reference the jobs left make.
    let mut used: Ids = Default::default();
    conn.execute_batch("BEGIN")?;
    let scanned = scan_references(conn, &candidates, &mut used);
    conn.execute_batch("COMMIT")?;
    scanned?;
    // 3. Whatever is neither used nor taken off goes. Parents of rows that no longer exist:
    // deleted with foreign-key checks off, which would scan the steps for each row.
    let gone: Vec<(usize, Vec<i64>)> = candidates
        .iter()
        .enumerate()
        .map(|(k, ids)| (k, ids.iter().filter(|id| !used[k].contains(id)).copied().collect()))
        .collect();
    let fk: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = (|| -> rusqlite::Result<()> {
        for (k, ids) in &gone {
            for chunk in ids.chunks(SWEEP_BATCH) {
                let n = write(conn, report, |conn| delete_retiring(conn, *k, chunk))?;
                match k {
                    0 => report.environments += n,
                    1 => report.strings += n,
                    2 => report.attrs += n,
                    3 => report.module_lists += n,
                    _ => report.module_sets += n,
                }
            }
        }
        write(conn, report, |conn| conn.execute_batch("DELETE FROM retiring"))
    })();
    if fk {
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
    }
    result
}

/// Marks in `used` the candidates some row still references.
fn scan_references(conn: &Connection, candidates: &Ids, used: &mut Ids) -> rusqlite::Result<()> {
    let mark = |used: &mut Ids, kind: usize, v: Option<i64>| {
        if let Some(id) = v {
            if candidates[kind].contains(&id) {
                used[kind].insert(id);
            }
        }
    };
    let mut mark = |kind: usize, v: Option<i64>| mark(used, kind, v);
    let mut st = conn.prepare("SELECT env, argv, exe, cwd, attrs, modules FROM steps")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        mark(0, r.get(0)?);
        mark(1, r.get(1)?);
        mark(1, r.get(2)?);
        mark(1, r.get(3)?);
        mark(2, r.get(4)?);
        mark(3, r.get(5)?);
    }
    let mut st = conn.prepare("SELECT attrs FROM job_nodes")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        mark(2, r.get(0)?);
    }
    let mut st = conn.prepare("SELECT env, module_set FROM jobs")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        mark(0, r.get(0)?);
        mark(4, r.get(1)?);
    }
    // Python processes name their interpreter, prefixes and main script as strings, which a
    // pruned step's argv, exe or cwd may share.
    let mut st = conn.prepare("SELECT interpreter, prefix, base_prefix, main FROM py_procs")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        for i in 0..4 {
            mark(1, r.get(i)?);
        }
    }
    // Modulefiles are strings that module lists name: those of the lists that stay (the steps
    // above decided which candidates stay).
    let going: HashSet<i64> = candidates[3].difference(&used[3]).copied().collect();
    let mut st = conn.prepare("SELECT id, items FROM module_lists")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        if going.contains(&r.get(0)?) {
            continue;
        }
        for (_, file) in crate::store::parse_module_list(r.get_ref(1)?.as_str()?) {
            if let Some(f) = file.filter(|f| candidates[1].contains(f)) {
                used[1].insert(f);
            }
        }
    }
    Ok(())
}

/// Deletes the rows of kind `k` among `ids` that are still in `retiring`; their number.
fn delete_retiring(conn: &Connection, k: usize, ids: &[i64]) -> rusqlite::Result<u64> {
    let kind = KINDS[k];
    let still: Vec<i64> = {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let mut st = conn.prepare(&format!("SELECT id FROM retiring WHERE kind = ?1 AND id IN ({list})"))?;
        let rows = st.query_map([kind], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if still.is_empty() {
        return Ok(0);
    }
    let list = still.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    if kind == "module_sets" {
        // Members by their key (module, set): the set's own list names the modules.
        let sets: Vec<(i64, String)> = {
            let mut st = conn.prepare(&format!("SELECT id, modules FROM module_sets WHERE id IN ({list})"))?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut del = conn.prepare_cached("DELETE FROM module_set_members WHERE module = ?1 AND module_set = ?2")?;
        for (set, modules) in &sets {
            for m in crate::store::parse_module_set(modules) {
                del.execute([m, *set])?;
            }
        }
    }
    let n = conn.execute(&format!("DELETE FROM {kind} WHERE id IN ({list})"), [])? as u64;
    conn.execute(&format!("DELETE FROM retiring WHERE kind = ?1 AND id IN ({list})"), params_from_iter([kind]))?;
    Ok(n)
}

/// The prunes run on this ledger, oldest first: (time, before, report).
pub fn history(conn: &Connection) -> rusqlite::Result<Vec<(i64, i64, Report)>> {
    let mut st = conn.prepare("SELECT time, before, report FROM prunes ORDER BY id")?;
    let rows = st.query_map([], |r| {
        let text: String = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&text).unwrap_or_default()))
    })?;
    rows.collect()
}

/// When the last prune ran (Unix seconds), if ever.
pub fn last_run(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT max(time) FROM prunes", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExactSum;
    use runledger_synth::synth;

    /// The fixture's made-up and odd jobs, and a made-up year of 300 more.
    fn ledger() -> Connection {
        let conn = crate::db::open_memory();
        let mut batches = synth::fixture_batches();
        let mut s = synth::Synth::new(300, 11, synth::FIXTURE_END);
        while let Some(b) = s.next_job() {
            batches.extend(b);
        }
        for b in &batches {
            crate::merge::apply_group(&conn, &[b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
        }
        conn
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Rows no job's rows reference, per kind of row the sweep deletes.
    fn unreferenced(conn: &Connection) -> Vec<(&'static str, i64)> {
        let mut files = HashSet::new();
        let mut st = conn.prepare("SELECT items FROM module_lists").unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for (_, f) in crate::store::parse_module_list(r.get_ref(0).unwrap().as_str().unwrap()) {
                files.extend(f);
            }
        }
        let strings: Vec<i64> = conn
            .prepare(
                "SELECT id FROM strings WHERE id NOT IN (SELECT argv FROM steps WHERE argv IS NOT NULL
                   UNION SELECT exe FROM steps WHERE exe IS NOT NULL UNION SELECT cwd FROM steps WHERE cwd IS NOT NULL
                   UNION SELECT interpreter FROM py_procs UNION SELECT prefix FROM py_procs WHERE prefix IS NOT NULL
                   UNION SELECT base_prefix FROM py_procs WHERE base_prefix IS NOT NULL
                   UNION SELECT main FROM py_procs WHERE main IS NOT NULL)",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .filter(|id| !files.contains(id))
            .collect();
        vec![
            (
                "environments",
                count(
                    conn,
                    "SELECT count(*) FROM environments WHERE id NOT IN (SELECT env FROM steps WHERE env IS NOT NULL
                       UNION SELECT env FROM jobs WHERE env IS NOT NULL)",
                ),
            ),
            ("strings", strings.len() as i64),
            (
                "attrs",
                count(
                    conn,
                    "SELECT count(*) FROM attrs WHERE id NOT IN (SELECT attrs FROM steps WHERE attrs IS NOT NULL
                       UNION SELECT attrs FROM job_nodes WHERE attrs IS NOT NULL)",
                ),
            ),
            (
                "module_lists",
                count(
                    conn,
                    "SELECT count(*) FROM module_lists WHERE id NOT IN (SELECT modules FROM steps WHERE modules IS NOT NULL)",
                ),
            ),
            (
                "module_sets",
                count(
                    conn,
                    "SELECT count(*) FROM module_sets WHERE id NOT IN (SELECT module_set FROM jobs
                       WHERE module_set IS NOT NULL)",
                ),
            ),
            (
                "module_set_members",
                count(conn, "SELECT count(*) FROM module_set_members WHERE module_set NOT IN (SELECT id FROM module_sets)"),
            ),
        ]
    }

    /// Child rows whose job is gone.
    fn orphans(conn: &Connection) -> i64 {
        ["job_nodes", "steps", "tags", "facts"]
            .iter()
            .map(|t| count(conn, &format!("SELECT count(*) FROM {t} WHERE job NOT IN (SELECT id FROM jobs)")))
            .sum()
    }

    /// The rollups by their keys, not their row ids: what a rebuild must reproduce.
    fn rollups(conn: &Connection) -> String {
        let mut out = Vec::new();
        let mut st = conn
            .prepare(
                "SELECT id, cluster || '/' || ifnull(account, '-') || '/' || ifnull(partition, '-') || '/' ||
                        ifnull(user, '-') || '/' || state, jobs, walls, core_s, eff_core_s, cpu, eff_cpu FROM rollup",
            )
            .unwrap();
        let mut keys = std::collections::HashMap::new();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let key: String = r.get(1).unwrap();
            keys.insert(r.get::<_, i64>(0).unwrap(), key.clone());
            let sum = |i: usize| ExactSum::from_blob(r.get_ref(i).unwrap().as_blob_or_null().unwrap()).value();
            out.push(format!(
                "group {key} jobs {} walls {} core {} eff {} cpu {} effcpu {}",
                r.get::<_, i64>(2).unwrap(),
                r.get::<_, i64>(3).unwrap(),
                r.get::<_, i64>(4).unwrap(),
                r.get::<_, i64>(5).unwrap(),
                sum(6),
                sum(7)
            ));
        }
        for (grp, w) in crate::rollup::walls(conn).unwrap() {
            let w = crate::walls::Hist::decode(&w);
            out.push(format!("walls {} {w:?}", keys[&grp]));
        }
        for names in [false, true] {
            crate::rollup::each_module_jobs(conn, names, |grp, m, n| {
                out.push(format!("module {} {:?} {n}", keys[&grp], rusqlite::types::Value::from(m)));
            })
            .unwrap();
        }
        for (slot, jobs, failed) in crate::rollup::ends(conn).unwrap() {
            out.push(format!("end {slot} {jobs} {failed}"));
        }
        for dim in crate::rollup::DIMS {
            for c in crate::rollup::cells(conn, dim, true).unwrap() {
                out.push(format!(
                    "cell {dim:?} {} {} jobs {} core {} eff {} cpu {} effcpu {} walls {:?}",
                    keys[&c.grp],
                    c.val,
                    c.jobs,
                    c.core_s,
                    c.eff_core_s,
                    c.cpu.value(),
                    c.eff_cpu.value(),
                    crate::walls::Hist::decode(&c.walls)
                ));
            }
        }
        out.sort();
        out.join("\n")
    }

    fn median_end(conn: &Connection) -> i64 {
        count(
            conn,
            "SELECT end FROM jobs WHERE end IS NOT NULL ORDER BY end LIMIT 1 OFFSET (SELECT count(end) / 2 FROM jobs)",
        )
    }

    #[test]
    fn a_prune_takes_old_jobs_and_what_only_they_used_and_keeps_the_rollups() {
        let conn = ledger();
        assert!(unreferenced(&conn).iter().all(|(_, n)| *n == 0), "{:?}", unreferenced(&conn));
        let before = median_end(&conn);
        let kept_rollups = rollups(&conn);
        let jobs = count(&conn, "SELECT count(*) FROM jobs");
        let old = count(&conn, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state <> 'UNKNOWN'"));
        let unfinished = count(&conn, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state = 'UNKNOWN'"));
        assert!(old > 100, "{old}");
        let steps_of_old =
            count(&conn, &format!("SELECT count(*) FROM steps WHERE job IN (SELECT id FROM jobs WHERE end < {before} AND state <> 'UNKNOWN')"));

        let dry = prune(&conn, &Options { dry_run: true, ..Options::new(before) }, |_| {}).unwrap();
        assert_eq!((dry.jobs, dry.steps), (old as u64, steps_of_old as u64));
        assert_eq!(count(&conn, "SELECT count(*) FROM jobs"), jobs, "a dry run deletes nothing");

        let mut heard = 0;
        let r = prune(&conn, &Options { batch: 17, ..Options::new(before) }, |_| heard += 1).unwrap();
        assert_eq!(r.jobs, old as u64);
        assert_eq!(r.steps, steps_of_old as u64);
        assert_eq!(r.kept_unfinished, unfinished as u64);
        assert!(r.node_records >= r.jobs && r.facts > 0, "{r:?}");
        assert!(r.environments + r.strings + r.attrs > 0, "{r:?}");
        assert!(r.transactions as i64 > old / 17, "{r:?}");
        assert!(heard as i64 > old / 17);
        assert_eq!(count(&conn, "SELECT count(*) FROM jobs"), jobs - old);
        assert_eq!(count(&conn, &format!("SELECT count(*) FROM jobs WHERE end < {before} AND state <> 'UNKNOWN'")), 0);
        assert_eq!(orphans(&conn), 0);
        assert!(unreferenced(&conn).iter().all(|(_, n)| *n == 0), "{:?}", unreferenced(&conn));
        assert_eq!(count(&conn, "SELECT count(*) FROM retiring"), 0);
        // The rollups still hold every job, pruned or not.
        assert_eq!(rollups(&conn), kept_rollups);
        assert_eq!(count(&conn, "SELECT sum(jobs) FROM rollup"), jobs);
        // The run is on record, and a second one finds nothing.
        let h = history(&conn).unwrap();
        assert_eq!((h.len(), h[0].1, h[0].2.jobs), (1, before, old as u64));
        let again = prune(&conn, &Options::new(before), |_| {}).unwrap();
        assert_eq!((again.jobs, again.environments, again.strings), (0, 0, 0));
        assert!(r.text().contains(&format!("removed {old} jobs")), "{}", r.text());
        // The merge still works on what is left (ids reused, new ones added).
        let mut s = synth::Synth::new(20, 99, synth::FIXTURE_END);
        while let Some(b) = s.next_job_batch() {
            crate::merge::apply_group(&conn, &[&b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
        }
        assert!(unreferenced(&conn).iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn drop_rollups_leaves_the_rollups_a_rebuild_computes() {
        let conn = ledger();
        let before = median_end(&conn);
        let r = prune(&conn, &Options { drop_rollups: true, batch: 50, ..Options::new(before) }, |_| {}).unwrap();
        assert!(r.jobs > 100);
        let kept = rollups(&conn);
        assert_eq!(count(&conn, "SELECT sum(jobs) FROM rollup"), count(&conn, "SELECT count(*) FROM jobs"));
        crate::rollup::rebuild(&conn).unwrap();
        assert_eq!(kept, rollups(&conn));
    }

    #[test]
    fn a_row_the_merge_reuses_leaves_the_sweep_list() {
        let conn = ledger();
        let (id, value): (i64, String) =
            conn.query_row("SELECT id, value FROM strings LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        let env: i64 = conn.query_row("SELECT id FROM environments LIMIT 1", [], |r| r.get(0)).unwrap();
        conn.execute("INSERT INTO retiring (kind, id) VALUES ('strings', ?1), ('strings', ?1 + 100000)", [id]).unwrap();
        conn.execute("INSERT INTO retiring (kind, id) VALUES ('environments', ?1)", [env]).unwrap();
        assert_eq!(crate::store::string_id(&conn, &value).unwrap(), id);
        let left: Vec<(String, i64)> = conn
            .prepare("SELECT kind, id FROM retiring ORDER BY kind, id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, vec![("environments".to_string(), env), ("strings".to_string(), id + 100000)]);
        // And the sweep's delete spares what left the list.
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        assert_eq!(delete_retiring(&conn, 1, &[id]).unwrap(), 0);
        assert_eq!(count(&conn, &format!("SELECT count(*) FROM strings WHERE id = {id}")), 1);
    }

    #[test]
    fn utc_dates_in_the_report() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(synth::FIXTURE_END), "2026-01-01T00:00:00Z");
        assert_eq!(fmt_time(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
