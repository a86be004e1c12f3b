//! How schema version 3 stores what repeats: every distinct host name, string, attribute set,
//! environment, module list and module set once, referenced by an integer id; a step's tasks as
//! one compact blob; sums of CPU seconds exactly.
//!
//! The merge ([`crate::merge`]) and the migration from version 2 ([`crate::db`]) store through
//! these functions, so both write the same encodings; the queries read through the decoders.
//! These functions look ids up in SQLite each time; the merge asks them only on a miss of its
//! in-memory cache ([`crate::merge::Cache`], which says how it stays right across rollbacks and
//! prunes).

use crate::rows::TaskRow;
use crate::varint::{get_varint, get_zigzag, put_varint, put_zigzag};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The id of a node name in `hosts`, added if new.
pub fn host_id(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    intern(conn, None, "SELECT id FROM hosts WHERE name = ?1", "INSERT INTO hosts (name) VALUES (?1)", name)
}

/// The id of a text in `strings` (argv as JSON, executable and working directory), added if new.
pub fn string_id(conn: &Connection, value: &str) -> rusqlite::Result<i64> {
    intern(
        conn,
        Some("strings"),
        "SELECT id FROM strings WHERE value = ?1",
        "INSERT INTO strings (value) VALUES (?1)",
        value,
    )
}

/// The id of `value` (found by `select`, else added by `insert`). A found id of a table the
/// prune may sweep (`kind`) is taken off its list of ids about to go ([`reuse`]).
fn intern(conn: &Connection, kind: Option<&str>, select: &str, insert: &str, value: &str) -> rusqlite::Result<i64> {
    if let Some(id) = conn.prepare_cached(select)?.query_row([value], |r| r.get(0)).optional()? {
        if let Some(kind) = kind {
            reuse(conn, kind, id)?;
        }
        return Ok(id);
    }
    conn.prepare_cached(insert)?.execute([value])?;
    Ok(conn.last_insert_rowid())
}

/// An existing row of `kind` (a table the prune sweeps: `strings`, `attrs`, `environments`,
/// `module_lists`, `module_sets`) is referenced again: it leaves the prune's list of rows about
/// to be deleted (`retiring`, see [`crate::retention`]), so the sweep never deletes a row a
/// commit after its scan started to use. One probe of a table that is empty except during a
/// sweep. Before the schema version that adds `retiring` (the migration from version 2 stores
/// through these functions) there is nothing to take off.
pub(crate) fn reuse(conn: &Connection, kind: &str, id: i64) -> rusqlite::Result<()> {
    match conn.prepare_cached("DELETE FROM retiring WHERE kind = ?1 AND id = ?2") {
        Ok(mut st) => st.execute(params![kind, id]).map(drop),
        Err(e) if e.to_string().contains("no such table: retiring") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The job attributes a step or a node's end record carries; the same set is stored once in
/// `attrs` for all the steps and nodes (and jobs) that share it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs<'a> {
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub user: Option<&'a str>,
    pub account: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub qos: Option<&'a str>,
    pub job_name: Option<&'a str>,
    pub work_dir: Option<&'a str>,
    pub slurm_version: Option<&'a str>,
}

/// The id of an attribute set in `attrs`, added if new (compared with IS: NULLs match).
pub fn attrs_id(conn: &Connection, a: &Attrs) -> rusqlite::Result<i64> {
    let p = params![a.uid, a.gid, a.user, a.account, a.partition, a.qos, a.job_name, a.work_dir, a.slurm_version];
    let found = conn
        .prepare_cached(
            "SELECT id FROM attrs WHERE user IS ?3 AND account IS ?4 AND partition IS ?5 AND job_name IS ?7
               AND uid IS ?1 AND gid IS ?2 AND qos IS ?6 AND work_dir IS ?8 AND slurm_version IS ?9",
        )?
        .query_row(p, |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        reuse(conn, "attrs", id)?;
        return Ok(id);
    }
    conn.prepare_cached(
        "INSERT INTO attrs (uid, gid, user, account, partition, qos, job_name, work_dir, slurm_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(p)?;
    Ok(conn.last_insert_rowid())
}

/// The id of an environment in `environments`, added if new; None for an empty one.
pub fn env_id(conn: &Connection, env: &BTreeMap<String, String>) -> rusqlite::Result<Option<i64>> {
    if env.is_empty() {
        return Ok(None);
    }
    let (hash, content) = env_hash(env);
    if let Some(id) = conn
        .prepare_cached("SELECT id FROM environments WHERE hash = ?1")?
        .query_row([&hash], |r| r.get::<_, i64>(0))
        .optional()?
    {
        reuse(conn, "environments", id)?;
        return Ok(Some(id));
    }
    conn.prepare_cached("INSERT INTO environments (hash, content) VALUES (?1, ?2)")?.execute([hash, content])?;
    Ok(Some(conn.last_insert_rowid()))
}

/// A step's modules in load order: (module id, modulefile).
pub type ModuleList = Vec<(i64, Option<String>)>;

/// The id of a step's module list in `module_lists`, added if new; None for no modules. The list
/// is stored as `module:file,…` with the modulefile's `strings` id (empty without a file): a
/// modulefile path is long, and the same for every job that loads the module.
pub fn module_list_id(conn: &Connection, list: &ModuleList) -> rusqlite::Result<Option<i64>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut with_ids = Vec::with_capacity(list.len());
    for (module, file) in list {
        with_ids.push((*module, file.as_deref().map(|f| string_id(conn, f)).transpose()?));
    }
    module_list_id_of(conn, &with_ids).map(Some)
}

/// The id of a non-empty module list whose modulefiles already have their `strings` ids.
pub fn module_list_id_of(conn: &Connection, list: &[(i64, Option<i64>)]) -> rusqlite::Result<i64> {
    let mut items = String::new();
    for (i, (module, file)) in list.iter().enumerate() {
        if i > 0 {
            items.push(',');
        }
        items.push_str(&module.to_string());
        items.push(':');
        if let Some(f) = file {
            items.push_str(&f.to_string());
        }
    }
    intern(
        conn,
        Some("module_lists"),
        "SELECT id FROM module_lists WHERE items = ?1",
        "INSERT INTO module_lists (items) VALUES (?1)",
        &items,
    )
}

/// The id of a module (name, version) in `modules`, added if new.
pub fn module_id(conn: &Connection, name: &str, version: &str) -> rusqlite::Result<i64> {
    let found = conn
        .prepare_cached("SELECT id FROM modules WHERE name = ?1 AND version = ?2")?
        .query_row(params![name, version], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO modules (name, version) VALUES (?1, ?2)")?.execute(params![name, version])?;
    Ok(conn.last_insert_rowid())
}

/// A stored module list: (module id, modulefile's `strings` id).
pub fn parse_module_list(items: &str) -> Vec<(i64, Option<i64>)> {
    items
        .split(',')
        .filter_map(|item| {
            let (m, f) = item.split_once(':')?;
            Some((m.parse().ok()?, f.parse().ok()))
        })
        .collect()
}

/// A job's nodes as `jobs.nodes` keeps them: runs of three or more names of one prefix and
/// consecutive numbers of one width (`n0313,n0314,…,n0344`) as `n[0313-0344]` (Slurm's
/// hostlist form), so a 64-node job's list takes a dozen bytes. A list with a bracket in a name
/// is kept as it is. [`expand_nodes`] gives the list back.
pub fn compress_nodes(list: &str) -> String {
    if list.contains(['[', ']']) {
        return list.to_string();
    }
    let split = |name: &str| -> Option<(usize, u64)> {
        let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
        let at = name.len() - digits;
        (digits > 0 && digits <= 18).then(|| (at, name[at..].parse().ok())).and_then(|(at, n)| Some((at, n?)))
    };
    let names: Vec<&str> = list.split(',').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        if let Some((at, n)) = split(names[i]) {
            while let Some(next) = names.get(j) {
                let k = (j - i) as u64;
                match split(next) {
                    Some((at2, n2)) if next[..at2] == names[i][..at] && next.len() == names[i].len() && n2 == n + k => {
                        j += 1
                    }
                    _ => break,
                }
            }
            if j - i >= 3 {
                let (first, last) = (names[i], names[j - 1]);
                out.push(format!("{}[{}-{}]", &first[..at], &first[at..], &last[at..]));
                i = j;
                continue;
            }
        }
        out.push(names[i].to_string());
        i += 1;
    }
    out.join(",")
}

/// The comma-separated node list [`compress_nodes`] stored.
pub fn expand_nodes(stored: &str) -> String {
    if !stored.contains('[') {
        return stored.to_string();
    }
    let mut out: Vec<String> = Vec::new();
    for item in stored.split(',') {
        let run = item.strip_suffix(']').and_then(|s| s.split_once('[')).and_then(|(prefix, range)| {
            let (lo, hi) = range.split_once('-')?;
            Some((prefix, lo.len(), lo.parse::<u64>().ok()?, hi.parse::<u64>().ok()?))
        });
        match run {
            Some((prefix, width, lo, hi)) if lo <= hi => {
                out.extend((lo..=hi).map(|n| format!("{prefix}{n:0width$}")));
            }
            _ => out.push(item.to_string()),
        }
    }
    out.join(",")
}

/// The id of a job's module set in `module_sets` (its distinct module ids, ascending, joined by
/// commas), added with its `module_set_members` if new; None for no modules.
pub fn module_set_id(conn: &Connection, modules: &[i64]) -> rusqlite::Result<Option<i64>> {
    if modules.is_empty() {
        return Ok(None);
    }
    let text = modules.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    if let Some(id) = conn
        .prepare_cached("SELECT id FROM module_sets WHERE modules = ?1")?
        .query_row([&text], |r| r.get::<_, i64>(0))
        .optional()?
    {
        reuse(conn, "module_sets", id)?;
        return Ok(Some(id));
    }
    conn.prepare_cached("INSERT INTO module_sets (modules) VALUES (?1)")?.execute([&text])?;
    let id = conn.last_insert_rowid();
    let mut st =
        conn.prepare_cached("INSERT OR IGNORE INTO module_set_members (module, module_set) VALUES (?1, ?2)")?;
    for m in modules {
        st.execute([*m, id])?;
    }
    Ok(Some(id))
}

pub fn parse_module_set(text: &str) -> Vec<i64> {
    text.split(',').filter_map(|s| s.parse().ok()).collect()
}

/// Every module set: id -> its module ids (ascending).
pub fn module_sets(conn: &Connection) -> rusqlite::Result<std::collections::HashMap<i64, Vec<i64>>> {
    let mut out = std::collections::HashMap::new();
    let mut st = conn.prepare_cached("SELECT id, modules FROM module_sets")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        out.insert(r.get(0)?, parse_module_set(r.get_ref(1)?.as_str()?));
    }
    Ok(out)
}

// The tasks blob: runs of tasks, each run the tasks of consecutive task ids and ranks that ended
// alike at the same time (a whole step's tasks, typically). A run is:
//   varint  (count - 1) << 1 | explicit    explicit: the decoded status is not raw's decoding
//   varint  first task id
//   varint  first global rank
//   zigzag  raw status
//   zigzag  time - the previous run's time (the first run's: - the step's end, which tasks
//           mostly share, so it costs a byte)
//   [zigzag code, zigzag signal, byte core_dumped]   when explicit

fn decoded_matches(t: &TaskRow) -> bool {
    let d = runledger_record::ExitStatus::from_wait_status(t.raw_status as i32);
    i64::from(d.code) == t.exit_code && i64::from(d.signal) == t.signal && d.core_dumped == t.core_dumped
}

/// Encodes tasks (sorted by global rank, ranks distinct) of a step that ended at `end`.
pub fn encode_tasks(tasks: &[TaskRow], end: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev_time = end;
    let mut i = 0;
    while i < tasks.len() {
        let t = &tasks[i];
        let mut n = 1;
        while let Some(u) = tasks.get(i + n) {
            let k = n as i64;
            let alike = u.task_id == t.task_id + k
                && u.global_rank == t.global_rank + k
                && (u.raw_status, u.exit_code, u.signal, u.core_dumped, u.time)
                    == (t.raw_status, t.exit_code, t.signal, t.core_dumped, t.time);
            if !alike {
                break;
            }
            n += 1;
        }
        let explicit = !decoded_matches(t);
        put_varint(&mut out, ((n as u64 - 1) << 1) | u64::from(explicit));
        put_varint(&mut out, t.task_id as u64);
        put_varint(&mut out, t.global_rank as u64);
        put_zigzag(&mut out, t.raw_status);
        put_zigzag(&mut out, t.time.wrapping_sub(prev_time));
        if explicit {
            put_zigzag(&mut out, t.exit_code);
            put_zigzag(&mut out, t.signal);
            out.push(u8::from(t.core_dumped));
        }
        prev_time = t.time;
        i += n;
    }
    out
}

/// Decodes [`encode_tasks`]' blob of a step that ended at `end` (a damaged blob yields the
/// tasks before the damage).
pub fn decode_tasks(b: &[u8], end: i64) -> Vec<TaskRow> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut prev_time = end;
    while at < b.len() {
        let Some(run) = (|| {
            let head = get_varint(b, &mut at)?;
            let task_id = get_varint(b, &mut at)? as i64;
            let rank = get_varint(b, &mut at)? as i64;
            let raw = get_zigzag(b, &mut at)?;
            let time = prev_time.wrapping_add(get_zigzag(b, &mut at)?);
            let (code, signal, core) = if head & 1 == 1 {
                let c = get_zigzag(b, &mut at)?;
                let s = get_zigzag(b, &mut at)?;
                let core = *b.get(at)? != 0;
                at += 1;
                (c, s, core)
            } else {
                let d = runledger_record::ExitStatus::from_wait_status(raw as i32);
                (i64::from(d.code), i64::from(d.signal), d.core_dumped)
            };
            Some(((head >> 1) + 1, task_id, rank, raw, time, code, signal, core))
        })() else {
            break;
        };
        let (n, task_id, rank, raw, time, code, signal, core) = run;
        for k in 0..n.min(1 << 24) as i64 {
            out.push(TaskRow {
                global_rank: rank + k,
                task_id: task_id + k,
                exit_code: code,
                signal,
                core_dumped: core,
                raw_status: raw,
                time,
            });
        }
        prev_time = time;
    }
    out
}

/// A sum of seconds that does not depend on the order of its terms, so the rollups the merge
/// keeps up to date (adding and removing terms in any order) and a scan of the jobs give the same
/// total to the last bit: each term is converted exactly (to 2^-64 s) to a fixed-point integer
/// and summed as an integer; only the total is rounded to an f64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExactSum(pub i128);

/// 2^64: the fixed point's scale.
const SCALE: f64 = 18_446_744_073_709_551_616.0;

impl ExactSum {
    pub fn add(&mut self, x: f64) {
        self.0 = self.0.wrapping_add((x * SCALE) as i128);
    }

    pub fn sub(&mut self, x: f64) {
        self.0 = self.0.wrapping_sub((x * SCALE) as i128);
    }

    pub fn value(self) -> f64 {
        self.0 as f64 / SCALE
    }

    pub fn to_blob(self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }

    pub fn from_blob(b: Option<&[u8]>) -> ExactSum {
        match b.and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(a) => ExactSum(i128::from_le_bytes(a)),
            None => ExactSum(0),
        }
    }
}

/// How `job_nodes.time_limit_source` stores a [`runledger_record::LimitSource`]: 0 the step
/// environment, 1 `scontrol` (SQLite keeps 0 and 1 in the record header, no body bytes).
pub fn limit_source(s: runledger_record::LimitSource) -> i64 {
    match s {
        runledger_record::LimitSource::Environment => 0,
        runledger_record::LimitSource::Scontrol => 1,
    }
}

/// The SQL that reads `job_nodes.time_limit_source` back as its name (`environment`, `scontrol`).
pub const LIMIT_SOURCE_SQL: &str = "CASE n.time_limit_source WHEN 0 THEN 'environment' WHEN 1 THEN 'scontrol' END";

/// The evidence of a job's state as `job_nodes.state_evidence` and `jobs.state_evidence` store
/// it, beside the row's own `exit_code` and `signal`.
///
/// On most nodes of most jobs the epilog reads the state from the exit status alone and words
/// its evidence as a function of it: `exit code 0 (exit 0:0)`, 22 bytes a node record (about 90
/// a job). A text that is exactly what [`runledger_record::ExitStatus::evidence`] gives for the
/// row's exit code and signal is stored as an empty blob (no bytes but its header's) and given
/// back from them by [`evidence_at`]; anything else (a slurmstepd line, another release's
/// wording, any text at all) is stored as it came. An evidence is always text, so the empty
/// blob is never one.
pub fn pack_evidence(text: Option<String>, code: Option<i64>, signal: Option<i64>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match (text, code, signal) {
        (Some(t), Some(c), Some(s)) if exit_evidence(c, s).is_some_and(|e| e == t) => Value::Blob(Vec::new()),
        (Some(t), _, _) => Value::Text(t),
        (None, _, _) => Value::Null,
    }
}

/// The evidence [`pack_evidence`] stored in column `i` of a row, with the row's exit code and
/// signal.
pub fn evidence_at(
    r: &rusqlite::Row<'_>,
    i: usize,
    code: Option<i64>,
    signal: Option<i64>,
) -> rusqlite::Result<Option<String>> {
    if let (rusqlite::types::ValueRef::Blob([]), Some(c), Some(s)) = (r.get_ref(i)?, code, signal) {
        if let Some(words) = exit_evidence(c, s) {
            return Ok(Some(words));
        }
    }
    r.get(i)
}

/// A step's CPU seconds as `steps.cpu_user_us` and `steps.cpu_sys_us` store them: whole
/// microseconds, the unit `getrusage` gives (the plugin's seconds are its microseconds over
/// 10^6, so rounding gives them back exactly). A float, since the columns have REAL affinity:
/// SQLite stores an integral one as an integer, 3 to 6 bytes where a fractional second takes 8.
/// Readers divide by 10^6 in SQL.
pub fn micros(seconds: f64) -> f64 {
    (seconds * 1e6).round()
}

/// A step's or a node's standard error path as `steps.stderr` and `job_nodes.stderr` store it,
/// beside its standard output path. Slurm writes both into one file unless the job asks for two
/// (`slurm-%j.out`), so the path is stored once: a standard error path equal to the standard
/// output path is stored as an empty blob (its header's byte only), which [`stderr_at`] reads
/// back as that path. About 35 bytes for a batch step and again for its node's record.
pub fn pack_stderr(stderr: Option<&str>, stdout: Option<&str>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match stderr {
        Some(e) if Some(e) == stdout => Value::Blob(Vec::new()),
        Some(e) => Value::Text(e.to_string()),
        None => Value::Null,
    }
}

/// The standard error path [`pack_stderr`] stored in column `i` of a row, with the standard
/// output path beside it.
pub fn stderr_at(r: &rusqlite::Row<'_>, i: usize, stdout: Option<&str>) -> rusqlite::Result<Option<String>> {
    match (r.get_ref(i)?, stdout) {
        (rusqlite::types::ValueRef::Blob([]), Some(out)) => Ok(Some(out.to_string())),
        _ => r.get(i),
    }
}

/// A node record's standard output path as `job_nodes.stdout` stores it: an empty blob when it
/// is the path the node's batch step recorded (`steps.stdout`; the plugin reads it from the
/// batch task, the epilog names the same file), the path otherwise. So the batch script's
/// output path, about 34 bytes, is stored once a job. Which of the two records came first does
/// not matter: [`batch_output_changed`] keeps the rule when the step's comes later or changes.
pub fn pack_node_stdout(
    conn: &Connection,
    job: i64,
    node: i64,
    stdout: Option<&str>,
) -> rusqlite::Result<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let Some(out) = stdout else { return Ok(Value::Null) };
    let batch: Option<Option<String>> = conn
        .prepare_cached("SELECT stdout FROM steps WHERE job = ?1 AND node = ?2 AND step_id = ?3")?
        .query_row(params![job, node, runledger_record::STEP_BATCH], |r| r.get(0))
        .optional()?;
    Ok(match batch.flatten() {
        Some(b) if b == out => Value::Blob(Vec::new()),
        _ => Value::Text(out.to_string()),
    })
}

/// After a node's batch step stored `new` as its standard output path in place of `old`: the
/// node record that named `old` as the step's (an empty blob) gets it back as text, and one
/// that holds `new` as text becomes the empty blob ([`pack_node_stdout`]'s rule, whatever the
/// order the records came in).
pub fn batch_output_changed(
    conn: &Connection,
    job: i64,
    node: i64,
    old: Option<&str>,
    new: Option<&str>,
) -> rusqlite::Result<()> {
    if old == new {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE job_nodes SET stdout = CASE WHEN stdout = x'' THEN ?3 ELSE x'' END
         WHERE job = ?1 AND node = ?2 AND (stdout = x'' OR stdout = ?4)",
    )?
    .execute(params![job, node, old, new])?;
    Ok(())
}

/// The SQL that reads `job_nodes.stdout` (of `job_nodes n`) back as the path
/// [`pack_node_stdout`] stored.
pub const NODE_STDOUT_SQL: &str = "CASE WHEN n.stdout = x'' THEN (SELECT b.stdout FROM steps b WHERE b.job = n.job \
    AND b.node = n.node AND b.step_id = 4294967291) ELSE n.stdout END";

/// The evidence [`runledger_record::ExitStatus::evidence`] words for an exit code and signal
/// as a row stores them; `None` for values no status has.
fn exit_evidence(code: i64, signal: i64) -> Option<String> {
    let (code, signal) = (i32::try_from(code).ok()?, i32::try_from(signal).ok()?);
    Some(runledger_record::ExitStatus { code, signal, core_dumped: false }.evidence())
}

/// The hash an environment is stored under: sha256 of its canonical JSON (keys sorted).
pub fn env_hash(env: &BTreeMap<String, String>) -> (String, String) {
    let content = serde_json::to_string(env).expect("a string map always serializes");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(content.as_bytes());
    let mut hash = String::with_capacity(64);
    for b in d {
        hash.push(HEX[usize::from(b >> 4)] as char);
        hash.push(HEX[usize::from(b & 15)] as char);
    }
    (hash, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's SQL names the batch step by its number (a literal in a constant).
    #[test]
    fn node_stdout_sql_names_the_batch_step() {
        assert!(NODE_STDOUT_SQL.contains(&format!("step_id = {}", runledger_record::STEP_BATCH)));
    }

    /// A standard error path equal to the standard output path takes no bytes and reads back.
    #[test]
    fn stderr_into_the_stdout_file_is_stored_as_nothing() {
        let conn = Connection::open_in_memory().unwrap();
        let out = Some("/home/a/slurm-7.out");
        for (stderr, stdout, kind) in [
            (out, out, "blob"),
            (Some("/home/a/slurm-7.err"), out, "text"),
            (out, None, "text"),
            (Some(""), Some(""), "blob"),
            (None, out, "null"),
        ] {
            let packed = pack_stderr(stderr, stdout);
            let (stored, back) = conn
                .query_row("SELECT typeof(?1), ?1", [&packed], |r| {
                    Ok((r.get::<_, String>(0)?, stderr_at(r, 1, stdout)?))
                })
                .unwrap();
            assert_eq!((stored.as_str(), back.as_deref()), (kind, stderr), "{stderr:?} beside {stdout:?}");
        }
    }

    /// An evidence worded from the exit status it is stored beside takes no bytes, and reads
    /// back whole; any other text, or one beside another status, is kept as it came.
    #[test]
    fn evidence_from_the_exit_status_alone_is_stored_as_nothing_and_read_back_whole() {
        let conn = Connection::open_in_memory().unwrap();
        let slurmstepd = "slurmstepd: error: *** JOB 1 ON n1 CANCELLED AT 2026-01-01T00:00:00 ***";
        // (text, exit code, signal, what SQLite stores)
        type Case<'a> = (Option<&'a str>, Option<i64>, Option<i64>, &'a str);
        let cases: [Case; 10] = [
            (Some("exit code 0 (exit 0:0)"), Some(0), Some(0), "blob"),
            (Some("exit code 2 (exit 2:0)"), Some(2), Some(0), "blob"),
            (Some("killed by signal 11 (exit 0:11)"), Some(0), Some(11), "blob"),
            (Some("killed by signal 9 and no slurmstepd message (exit 0:9)"), Some(0), Some(9), "blob"),
            (Some("killed by signal 15 and no slurmstepd message (exit 0:15)"), Some(0), Some(15), "blob"),
            (Some("exit code 0 (exit 0:0)"), Some(1), Some(0), "text"),
            (Some("exit code 0 (exit 0:0)"), None, None, "text"),
            (Some(slurmstepd), Some(0), Some(15), "text"),
            (Some(""), Some(0), Some(0), "text"),
            (None, Some(0), Some(0), "null"),
        ];
        for (text, code, signal, kind) in cases {
            let packed = pack_evidence(text.map(String::from), code, signal);
            let (stored, back) = conn
                .query_row("SELECT typeof(?1), ?1", [&packed], |r| {
                    Ok((r.get::<_, String>(0)?, evidence_at(r, 1, code, signal)?))
                })
                .unwrap();
            assert_eq!((stored.as_str(), back.as_deref()), (kind, text), "{text:?} beside {code:?}:{signal:?}");
        }
    }

    fn task(rank: i64, id: i64, raw: i64, time: i64) -> TaskRow {
        let d = runledger_record::ExitStatus::from_wait_status(raw as i32);
        TaskRow {
            global_rank: rank,
            task_id: id,
            exit_code: d.code.into(),
            signal: d.signal.into(),
            core_dumped: d.core_dumped,
            raw_status: raw,
            time,
        }
    }

    #[test]
    fn tasks_round_trip_in_runs() {
        let t = 1_767_225_600;
        // 64 alike tasks: one run of a few bytes.
        let all: Vec<TaskRow> = (0..64).map(|i| task(128 + i, i, 0, t)).collect();
        let b = encode_tasks(&all, t);
        assert!(b.len() <= 6, "{}", b.len());
        assert_eq!(decode_tasks(&b, t), all);
        // Gaps, another status, another time, a status its raw form disagrees with, a core dump.
        let mut odd = vec![task(0, 0, 0, t), task(1, 1, 256, t), task(2, 2, 0, t - 5), task(7, 3, 139, t + 2)];
        odd.push(TaskRow { exit_code: 5, ..task(8, 4, 0, t) });
        odd.push(task(9, 9, -1, 0));
        assert_eq!(decode_tasks(&encode_tasks(&odd, t), t), odd);
        assert_eq!(decode_tasks(&encode_tasks(&odd, 0), 0), odd);
        assert!(decode_tasks(&[], t).is_empty());
        // A damaged blob gives what precedes the damage.
        let b = encode_tasks(&odd, t);
        assert_eq!(decode_tasks(&b[..b.len() - 1], t).len(), odd.len() - 1);
    }

    #[test]
    fn exact_sums_do_not_depend_on_order() {
        let xs = [0.1, 1e9, 0.6, 3.0e-3, 123456.789, 1e-12, 0.1];
        let mut a = ExactSum::default();
        for x in xs {
            a.add(x);
        }
        let mut b = ExactSum::default();
        for x in xs.iter().rev() {
            b.add(*x);
        }
        b.add(42.5);
        b.sub(42.5);
        assert_eq!(a, b);
        assert_eq!(ExactSum::from_blob(Some(&a.to_blob())), a);
        assert!((a.value() - xs.iter().sum::<f64>()).abs() < 1e-6);
        assert_eq!(ExactSum::from_blob(None).value(), 0.0);
    }

    #[test]
    fn node_lists_compress_and_expand_back() {
        let list = |v: &[&str]| v.join(",");
        let many: Vec<String> = (313..=344).map(|n| format!("n{n:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(compress_nodes(&list(&many)), "n[0313-0344]");
        for l in [
            list(&many),
            list(&["n0001"]),
            list(&["n0001", "n0002"]),
            list(&["a1", "a2", "a3", "a5", "b6", "b7", "b8", "x", "n09", "n10", "n11"]),
            list(&["n98", "n99", "n100", "n101"]),
            list(&["cn01-ib", "cn02-ib", "cn03-ib"]),
            list(&["rack1n1", "rack1n2", "rack1n3", "rack2n4"]),
            list(&["odd[1]", "odd[2]", "odd[3]"]),
            list(&["n1", "n2", "n3", "n99999999999999999999"]),
            String::new(),
        ] {
            let c = compress_nodes(&l);
            assert_eq!(expand_nodes(&c), l, "{c}");
            assert!(c.len() <= l.len() + 2, "{c} from {l}");
        }
        assert_eq!(compress_nodes("a1,a2,a3,a5,b6,b7,b8,x"), "a[1-3],a5,b[6-8],x");
    }
}
