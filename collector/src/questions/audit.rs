//! `collector audit`: where the ledger may have lost jobs.
//!
//! Delivery is at-least-once and the merge idempotent, so a job is missing only when something
//! upstream failed: a node without the plugin, an epilog that never ran or never reached us, a
//! spool that overflowed, a node that went quiet. None of these announce themselves, so the audit
//! looks for their traces, the way NERSC checked its pipeline with canary jobs:
//!
//! | finding        | what it means                                                            |
//! |----------------|--------------------------------------------------------------------------|
//! | `no_epilog`    | a node recorded steps of a job (plugin) but never its end (epilog)       |
//! | `no_plugin`    | a node's epilog recorded a job but no step of it (plugin not loaded, spool lost) |
//! | `node_missing` | a node the job was given (its `SLURM_JOB_NODELIST`) sent nothing about it: no step, no end (the node died, or cannot reach us) |
//! | `silent_node`  | a node that reported in the window, but not for `--silent-after`         |
//! | `id_gap`       | job ids missing between recorded ones, per cluster (also jobs cancelled before they started) |
//! | `canary`       | a canary job submitted by `packaging/canary` that never arrived          |
//! | `dropped`      | a node's epilog deleted unsent records because its outbox was over its bounds |
//! | `rejected`     | requests `collector serve` refused (forged, replayed, expired, too large…); lifetime counts of the reasons seen in the window |
//! | `inbox`        | a batch `collector serve` stored during a burst and then could not merge (kept with the merge's error) |
//!
//! Activity newer than `--grace` is not judged: those jobs may still be running or on their way.

use crate::failure::Failure;
use crate::questions::timefmt;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ABOUT: &str = "Look for lost records: steps without an epilog, epilogs without steps, silent nodes, \
job-id gaps, missing canaries.";

pub const LONG_ABOUT: &str = "\
Look for records the ledger may have lost. Every finding is a trace of an upstream failure that \
does not announce itself:

  no_epilog    a node recorded steps of a job (the SPANK plugin) but never its end (the epilog):
               the epilog did not run, or its record never arrived
  no_plugin    a node's epilog recorded a job but no step of it: the plugin is not in that node's
               plugstack.conf, or its spool was lost
  node_missing a node the job was given (SLURM_JOB_NODELIST in a step's recorded environment)
               sent nothing about it, neither a step nor an end: the node or its slurmd died
               mid-job, or it cannot reach the collector. Its records may still come (the
               node's flush sends what the plugin spooled once it is back)
  silent_node  a node that reported within the window but not for --silent-after (down, drained,
               or its epilog cannot reach the collector)
  id_gap       job ids missing between recorded ones, per cluster. A job cancelled before it
               started leaves a gap too: compare with `sacct -j` when accounting is on
  canary       a canary job (packaging/canary, logged to --canaries) that never arrived
  dropped      a node's epilog deleted unsent records because its outbox was over
               [epilog] spool_max_bytes or spool_max_age_days (the node's running totals)
  rejected     requests the collector refused (unsigned, signed by a user, replayed, expired,
               too large, too slow): the ledger's lifetime count of each reason seen in the window
  inbox        a batch the collector stored during a burst and then could not merge, kept in
               the ledger's inbox with the merge's error (batches still waiting to be merged
               are counted in the heading, not judged)

Activity newer than --grace is not judged: those jobs may still be running or on their way. \
Exit status: 0 when nothing was found, 1 when something was (for cron and monitoring), 2 on a \
usage error. Reads the ledger file directly: run it as root or the collector's user.";

pub const AFTER_HELP: &str = "\
Examples:
  collector audit
  collector audit --since now-30days --silent-after 6h
  collector audit --canaries /var/log/runledger/canaries.tsv --json";

/// Where `packaging/canary` logs what it submitted.
pub const DEFAULT_CANARIES: &str = "/var/log/runledger/canaries.tsv";

/// Longest list printed per finding in the table output (`--json` has everything).
const SHOW: usize = 20;

#[derive(Debug)]
pub struct AuditArgs {
    /// Look at jobs and nodes active from this time.
    pub since: i64,

    /// Do not judge activity newer than this (jobs still running or on their way).
    pub grace: i64,

    /// A node that reported in the window but not for this long is reported silent.
    pub silent_after: i64,

    /// The canary log written by packaging/canary (time, cluster, job id per line)
    /// [default: /var/log/runledger/canaries.tsv when it exists].
    pub canaries: Option<PathBuf>,

    /// Only these clusters.
    pub cluster: Vec<String>,

    /// Print the findings as one JSON object.
    pub json: bool,

    /// Database file, instead of collector.database.
    pub database: Option<PathBuf>,
}

/// A node that dropped unsent records from its outbox (running totals as it last reported them).
#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
pub struct NodeDrop {
    pub cluster: String,
    pub node: String,
    pub batches: i64,
    pub items: i64,
    pub bytes: i64,
    pub last_drop: i64,
}

/// A job on one node that is half recorded.
#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
pub struct NodeJob {
    pub cluster: String,
    pub job_id: i64,
    pub node: String,
    pub user: Option<String>,
    /// The last time the node said anything about the job.
    pub last: i64,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
pub struct SilentNode {
    pub cluster: String,
    pub node: String,
    pub last: i64,
    /// Jobs it reported in the window.
    pub jobs: i64,
}

/// Job ids `first..=last` are not in the ledger.
#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
pub struct Gap {
    pub cluster: String,
    pub first: i64,
    pub last: i64,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
pub struct Canary {
    pub submitted: i64,
    pub cluster: String,
    pub job_id: i64,
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct Findings {
    pub since: i64,
    pub until: i64,
    pub jobs_checked: i64,
    pub no_epilog: Vec<NodeJob>,
    pub no_plugin: Vec<NodeJob>,
    pub node_missing: Vec<NodeJob>,
    pub silent_nodes: Vec<SilentNode>,
    pub id_gaps: Vec<Gap>,
    pub missing_ids: i64,
    pub canaries_checked: usize,
    pub canaries_missing: Vec<Canary>,
    /// Lines of the canary log that could not be read.
    pub canary_log_errors: Vec<String>,
    /// Nodes whose last drop falls in the window.
    pub dropped: Vec<NodeDrop>,
    /// Refusal reasons whose last refusal falls in the window (counts are lifetime totals).
    pub rejected: Vec<runledger_ledger::rejections::Rejection>,
    /// Batches stored during a burst, not merged yet (not a finding: they are on their way).
    pub inbox_waiting: u64,
    /// Stored batches the merge refused: (inbox id, received at, peer, error).
    pub inbox_refused: Vec<(i64, i64, String, String)>,
}

impl Findings {
    pub fn count(&self) -> usize {
        self.no_epilog.len()
            + self.no_plugin.len()
            + self.node_missing.len()
            + self.silent_nodes.len()
            + self.id_gaps.len()
            + self.canaries_missing.len()
            + self.canary_log_errors.len()
            + self.dropped.len()
            + self.rejected.len()
            + self.inbox_refused.len()
    }
}

/// What to check.
pub struct Params<'a> {
    pub since: i64,
    pub now: i64,
    pub grace: i64,
    pub silent_after: i64,
    pub clusters: &'a [String],
    /// The canary log's text, when there is one.
    pub canaries: Option<&'a str>,
}

fn cluster_cond(clusters: &[String]) -> String {
    if clusters.is_empty() {
        "1".into()
    } else {
        let quoted: Vec<String> = clusters.iter().map(|c| format!("'{}'", c.replace('\'', "''"))).collect();
        format!("j.cluster IN ({})", quoted.join(","))
    }
}

pub fn audit(conn: &Connection, p: &Params) -> rusqlite::Result<Findings> {
    let judged_until = p.now - p.grace;
    let cc = cluster_cond(p.clusters);
    let mut f = Findings { since: p.since, until: p.now, ..Default::default() };
    // Jobs active in the window: started (or, without a start, ended) at or after --since.
    let in_window = "COALESCE(j.end, j.start, 0) >= ?1";
    f.jobs_checked =
        conn.query_row(&format!("SELECT COUNT(*) FROM jobs j WHERE {in_window} AND {cc}"), params![p.since], |r| {
            r.get(0)
        })?;

    let node_jobs = |sql: &str| -> rusqlite::Result<Vec<NodeJob>> {
        let mut st = conn.prepare(sql)?;
        let rows = st.query_map(params![p.since, judged_until], |r| {
            Ok(NodeJob { cluster: r.get(0)?, job_id: r.get(1)?, node: r.get(2)?, user: r.get(3)?, last: r.get(4)? })
        })?;
        rows.collect()
    };
    f.no_epilog = node_jobs(&format!(
        "SELECT j.cluster, j.job_id, h.name, j.user, MAX(COALESCE(s.end, s.start, 0)) AS last
         FROM jobs j JOIN steps s ON s.job = j.id JOIN hosts h ON h.id = s.node
         WHERE {in_window} AND {cc}
           AND NOT EXISTS (SELECT 1 FROM job_nodes n WHERE n.job = j.id AND n.node = s.node)
         GROUP BY j.id, s.node HAVING last <= ?2
         ORDER BY j.cluster, j.job_id, h.name"
    ))?;
    f.no_plugin = node_jobs(&format!(
        "SELECT j.cluster, j.job_id, h.name, j.user, n.end AS last
         FROM jobs j JOIN job_nodes n ON n.job = j.id JOIN hosts h ON h.id = n.node
         WHERE {in_window} AND {cc} AND n.end <= ?2
           AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.job = j.id AND s.node = n.node)
         ORDER BY j.cluster, j.job_id, h.name"
    ))?;

    f.node_missing = node_missing(conn, p, in_window, &cc, judged_until)?;

    // Nodes: the last time each said anything, among those that said something in the window.
    let mut st = conn.prepare(&format!(
        "SELECT j.cluster, h.name, MAX(a.t) AS last, COUNT(DISTINCT j.id)
         FROM (SELECT job, node, end AS t FROM job_nodes
               UNION ALL SELECT job, node, COALESCE(end, start) FROM steps) a
         JOIN jobs j ON j.id = a.job JOIN hosts h ON h.id = a.node
         WHERE a.t >= ?1 AND {cc}
         GROUP BY j.cluster, a.node HAVING last < ?2
         ORDER BY last"
    ))?;
    f.silent_nodes = st
        .query_map(params![p.since, p.now - p.silent_after], |r| {
            Ok(SilentNode { cluster: r.get(0)?, node: r.get(1)?, last: r.get(2)?, jobs: r.get(3)? })
        })?
        .collect::<Result<_, _>>()?;

    // Job ids per cluster, in the window; a gap is a run of ids between two recorded ones.
    let mut st = conn.prepare(&format!(
        "SELECT DISTINCT j.cluster, j.job_id FROM jobs j WHERE {in_window} AND {cc} ORDER BY 1, 2"
    ))?;
    let ids = st.query_map(params![p.since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut prev: Option<(String, i64)> = None;
    for row in ids {
        let (cluster, id) = row?;
        if let Some((pc, pid)) = &prev {
            if *pc == cluster && id > pid + 1 {
                f.missing_ids += id - pid - 1;
                f.id_gaps.push(Gap { cluster: cluster.clone(), first: pid + 1, last: id - 1 });
            }
        }
        prev = Some((cluster, id));
    }

    let mut st = conn.prepare(&format!(
        "SELECT j.cluster, j.node, j.batches, j.items, j.bytes, j.last_drop FROM node_drops j
         WHERE j.last_drop >= ?1 AND {cc} ORDER BY j.cluster, j.node"
    ))?;
    f.dropped = st
        .query_map(params![p.since], |r| {
            Ok(NodeDrop {
                cluster: r.get(0)?,
                node: r.get(1)?,
                batches: r.get(2)?,
                items: r.get(3)?,
                bytes: r.get(4)?,
                last_drop: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    f.rejected = runledger_ledger::rejections::read(conn)?.into_iter().filter(|r| r.last_time >= p.since).collect();
    f.inbox_waiting = runledger_ledger::inbox::waiting(conn)?;
    f.inbox_refused = runledger_ledger::inbox::refused(conn)?;

    if let Some(text) = p.canaries {
        let mut recorded = conn.prepare("SELECT 1 FROM jobs WHERE cluster = ?1 AND job_id = ?2 LIMIT 1")?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let c = match parse_canary(line) {
                Ok(c) => c,
                Err(e) => {
                    f.canary_log_errors.push(format!("line {}: {e}: {line:?}", i + 1));
                    continue;
                }
            };
            let wanted = p.clusters.is_empty() || p.clusters.contains(&c.cluster);
            if c.submitted < p.since || c.submitted > judged_until || !wanted {
                continue;
            }
            f.canaries_checked += 1;
            if !recorded.exists(params![c.cluster, c.job_id])? {
                f.canaries_missing.push(c);
            }
        }
    }
    Ok(f)
}

/// Nodes a job was given that sent nothing about it. Only jobs with fewer reporting nodes than
/// their node count are looked at; their node list is the `SLURM_JOB_NODELIST` a step recorded
/// (sites that filter it out of the environment only see the count go unexplained).
fn node_missing(
    conn: &Connection,
    p: &Params,
    in_window: &str,
    cc: &str,
    judged_until: i64,
) -> rusqlite::Result<Vec<NodeJob>> {
    let mut st = conn.prepare(&format!(
        "SELECT j.id, j.cluster, j.job_id, j.user, COALESCE(j.end, j.start, 0) AS last,
                (SELECT json_extract(e.content, '$.SLURM_JOB_NODELIST')
                 FROM steps s JOIN environments e ON e.id = s.env
                 WHERE s.job = j.id AND json_extract(e.content, '$.SLURM_JOB_NODELIST') IS NOT NULL
                 LIMIT 1)
         FROM jobs j
         WHERE {in_window} AND {cc} AND COALESCE(j.end, j.start, 0) <= ?2
           AND j.nnodes > (SELECT COUNT(*) FROM (SELECT node FROM steps WHERE job = j.id
                                                 UNION SELECT node FROM job_nodes WHERE job = j.id))
         ORDER BY j.cluster, j.job_id"
    ))?;
    let rows = st
        .query_map(params![p.since, judged_until], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                NodeJob {
                    cluster: r.get(1)?,
                    job_id: r.get(2)?,
                    node: String::new(),
                    user: r.get(3)?,
                    last: r.get(4)?,
                },
                r.get::<_, Option<String>>(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut reporting = conn.prepare(
        "SELECT h.name FROM hosts h WHERE h.id IN (SELECT node FROM steps WHERE job = ?1
                                                 UNION SELECT node FROM job_nodes WHERE job = ?1)",
    )?;
    let mut out = Vec::new();
    for (id, job, list) in rows {
        let Some(list) = list else { continue };
        let seen: Vec<String> = reporting.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        for node in runledger_record::hostlist::expand(&list) {
            if !seen.contains(&node) {
                out.push(NodeJob { node, ..job.clone() });
            }
        }
    }
    Ok(out)
}

/// `<unix time> <cluster> <job id>`, separated by tabs or spaces.
fn parse_canary(line: &str) -> Result<Canary, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [t, cluster, id] = fields[..] else {
        return Err(format!("expected 3 fields (time, cluster, job id), found {}", fields.len()));
    };
    let submitted = t.parse().map_err(|_| format!("'{t}' is not a Unix time"))?;
    let job_id = id.parse().map_err(|_| format!("'{id}' is not a job id"))?;
    Ok(Canary { submitted, cluster: cluster.to_string(), job_id })
}

/// The findings as text: a verdict line, then one section per kind that found something.
pub fn render(f: &Findings) -> String {
    let mut out = format!(
        "audit of {} jobs active since {} (until {})\n",
        f.jobs_checked,
        timefmt::display(Some(f.since)),
        timefmt::display(Some(f.until))
    );
    if f.inbox_waiting > 0 {
        out.push_str(&format!("{} batches stored during a burst wait in the inbox to be merged\n", f.inbox_waiting));
    }
    let t = |s: i64| timefmt::display(Some(s));
    let mut section = |title: String, lines: Vec<String>| {
        out.push_str(&format!("\n{title}\n"));
        for l in lines.iter().take(SHOW) {
            out.push_str(&format!("  {l}\n"));
        }
        if lines.len() > SHOW {
            out.push_str(&format!("  … and {} more (--json lists all)\n", lines.len() - SHOW));
        }
    };
    let nj = |v: &[NodeJob]| -> Vec<String> {
        v.iter()
            .map(|j| {
                format!(
                    "{} job {} on {} (user {}, last seen {})",
                    j.cluster,
                    j.job_id,
                    j.node,
                    j.user.as_deref().unwrap_or("?"),
                    t(j.last)
                )
            })
            .collect()
    };
    if !f.no_epilog.is_empty() {
        section(format!("no_epilog: {} node(s) recorded steps but no job end", f.no_epilog.len()), nj(&f.no_epilog));
    }
    if !f.no_plugin.is_empty() {
        section(
            format!("no_plugin: {} job end(s) without any step from that node", f.no_plugin.len()),
            nj(&f.no_plugin),
        );
    }
    if !f.node_missing.is_empty() {
        section(
            format!("node_missing: {} node(s) of a job's node list sent nothing about it", f.node_missing.len()),
            nj(&f.node_missing),
        );
    }
    if !f.silent_nodes.is_empty() {
        let lines = f
            .silent_nodes
            .iter()
            .map(|n| format!("{} {}: last record {} ({} jobs in the window)", n.cluster, n.node, t(n.last), n.jobs))
            .collect();
        section(format!("silent_node: {} node(s) stopped reporting", f.silent_nodes.len()), lines);
    }
    if !f.id_gaps.is_empty() {
        let lines = f
            .id_gaps
            .iter()
            .map(|g| match g.first == g.last {
                true => format!("{} {}", g.cluster, g.first),
                false => format!("{} {}-{} ({} ids)", g.cluster, g.first, g.last, g.last - g.first + 1),
            })
            .collect();
        section(format!("id_gap: {} job id(s) missing in {} gap(s)", f.missing_ids, f.id_gaps.len()), lines);
    }
    if f.canaries_checked > 0 || !f.canary_log_errors.is_empty() {
        let mut lines: Vec<String> = f
            .canaries_missing
            .iter()
            .map(|c| format!("{} job {} submitted {} never arrived", c.cluster, c.job_id, t(c.submitted)))
            .collect();
        lines.extend(f.canary_log_errors.iter().map(|e| format!("canary log {e}")));
        section(format!("canary: {} of {} canaries missing", f.canaries_missing.len(), f.canaries_checked), lines);
    }
    if !f.dropped.is_empty() {
        let lines = f
            .dropped
            .iter()
            .map(|d| {
                format!(
                    "{} {}: {} batches ({} records, {} bytes) dropped unsent, the last at {}",
                    d.cluster,
                    d.node,
                    d.batches,
                    d.items,
                    d.bytes,
                    t(d.last_drop)
                )
            })
            .collect();
        section(format!("dropped: {} node(s) deleted unsent records from a full outbox", f.dropped.len()), lines);
    }
    if !f.rejected.is_empty() {
        let total: u64 = f.rejected.iter().map(|r| r.count).sum();
        let lines = f
            .rejected
            .iter()
            .map(|r| format!("{}: {} (last {} from {})", r.reason, r.count, t(r.last_time), r.last_peer))
            .collect();
        section(format!("rejected: {total} request(s) refused by the collector (lifetime counts)"), lines);
    }
    if !f.inbox_refused.is_empty() {
        let lines = f
            .inbox_refused
            .iter()
            .map(|(id, at, peer, e)| format!("inbox batch {id} from {peer}, received {}: {e}", t(*at)))
            .collect();
        section(format!("inbox: {} stored batch(es) the merge refused", f.inbox_refused.len()), lines);
    }
    if f.count() == 0 {
        out.push_str("\nnothing missing\n");
    }
    out
}

/// Reads the canary log named on the command line, or the default one if it exists.
fn canary_log(path: &Option<PathBuf>) -> Result<Option<String>, Failure> {
    let (path, required) = match path {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CANARIES), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::new(format!("cannot read the canary log {}: {e}", path.display()))),
    }
}

/// Runs `collector audit`; `Ok(true)` when something was found.
pub fn run(db: &Path, a: &AuditArgs, out: &mut dyn std::io::Write) -> Result<bool, Failure> {
    let canaries = canary_log(&a.canaries)?;
    let conn = runledger_ledger::db::open_ro(db)?;
    let now = chrono::Utc::now().timestamp();
    if a.since > now {
        return Err(Failure::usage(format!("--since ({}) is in the future", timefmt::display(Some(a.since)))));
    }
    let p = Params {
        since: a.since,
        now,
        grace: a.grace,
        silent_after: a.silent_after,
        clusters: &a.cluster,
        canaries: canaries.as_deref(),
    };
    let f = audit(&conn, &p).map_err(|e| Failure::new(format!("reading the database: {e}")))?;
    let text = if a.json {
        let mut v = serde_json::to_value(&f).map_err(|e| Failure::new(e.to_string()))?;
        v["findings"] = f.count().into();
        let by: BTreeMap<&str, usize> = [
            ("no_epilog", f.no_epilog.len()),
            ("no_plugin", f.no_plugin.len()),
            ("node_missing", f.node_missing.len()),
            ("silent_node", f.silent_nodes.len()),
            ("id_gap", f.id_gaps.len()),
            ("canary", f.canaries_missing.len()),
            ("dropped", f.dropped.len()),
            ("rejected", f.rejected.len()),
            ("inbox", f.inbox_refused.len()),
        ]
        .into();
        v["by_kind"] = serde_json::to_value(by).unwrap_or_default();
        format!("{v:#}\n")
    } else {
        render(&f)
    };
    crate::failure::write_out(out, text)?;
    Ok(f.count() > 0)
}

#[cfg(test)]
mod tests;
