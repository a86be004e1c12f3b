//! Prometheus metrics of `collector serve`, on `[collector] metrics` (`host:port`, off when
//! empty): `GET /metrics` answers the text exposition format (version 0.0.4).
//!
//! Since this collector started (counters reset on restart, as Prometheus expects):
//! - `runledger_batches_accepted_total`, `runledger_records_accepted_total`: batches and their
//!   items committed to the ledger; `runledger_merge_failures_total`: batches not merged;
//! - `runledger_requests_refused_total{reason}`: requests refused, by reason (the reasons of
//!   `collector audit`; the ledger's `rejections` table keeps the totals across restarts);
//! - `runledger_inbox_batches_total`: batches stored in the inbox during a burst and answered
//!   before their merge; `runledger_inbox_waiting`: those not merged yet (a gauge);
//! - `runledger_merge_seconds`: a histogram of the group transactions' duration (merge and
//!   commit of the batches that arrived together);
//! - `runledger_socket_queries_total{kind}`: users' questions through the local socket, by kind
//!   (`query jobs`, `query job`, `export`, `report`, …).
//!
//! From the ledger, read when scraped (at most once a `LEDGER_EVERY`):
//! - `runledger_ledger_bytes`: the database file and its write-ahead log;
//! - `runledger_jobs{state}`: jobs recorded, by Slurm state (from the rollups: a few thousand
//!   rows whatever the ledger's size);
//! - `runledger_failed_jobs{category}`: jobs that failed, by failure category (as `query errors`
//!   counts them);
//! - `runledger_node_dropped_batches_total{cluster,node}` and `..._records_total`: what nodes
//!   reported dropping from over-full outboxes (totals they keep, so counters).
//!
//! The endpoint serves one scrape at a time on a thread of its own; a slow or silent client is
//! cut off after `IO_TIMEOUT`. It tells nothing about jobs beyond counts (no users, no accounts):
//! bind it where your Prometheus reaches it and nobody else needs to.

use super::stats::Stats;
use crate::questions::query::errors::{failure_category, FAILED_SQL};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A client has this long to send its request and take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The ledger's figures are read again after this long (a scrape every 15 s costs nothing).
const LEDGER_EVERY: Duration = Duration::from_secs(30);

/// Users' questions through the local socket, by kind, since start.
static QUERIES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Counts one question asked through the socket: its kind from the command line (`query jobs`,
/// `export`…); anything else is `other`, so a client cannot make up label values.
pub fn count_query(args: &[String]) {
    let word = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let plain = |w: &str| !w.is_empty() && w.len() <= 20 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    let kind = match word(0) {
        "query" => {
            // The subcommand: the first word that is not an option (nor --database's value).
            let sub = args.iter().skip(1).find(|a| !a.starts_with('-')).map(String::as_str).unwrap_or("");
            if plain(sub) {
                format!("query {sub}")
            } else {
                "query".into()
            }
        }
        w @ ("export" | "report") => w.to_string(),
        _ => "other".into(),
    };
    *QUERIES.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
}

/// What the ledger says, as of `at`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerFigures {
    pub bytes: u64,
    pub jobs_by_state: BTreeMap<String, i64>,
    pub failed_by_category: BTreeMap<String, i64>,
    /// (cluster, node) → (batches, items) dropped.
    pub drops: BTreeMap<(String, String), (i64, i64)>,
}

/// Reads the ledger's figures (read-only; the writer goes on).
pub fn ledger_figures(db: &Path) -> Result<LedgerFigures, String> {
    let mut f = LedgerFigures::default();
    for suffix in ["", "-wal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        f.bytes += std::fs::metadata(PathBuf::from(p)).map(|m| m.len()).unwrap_or(0);
    }
    let conn = runledger_ledger::db::open_ro(db)?;
    let e = |e: rusqlite::Error| e.to_string();
    let mut st = conn.prepare("SELECT state, SUM(jobs) FROM rollup GROUP BY state").map_err(e)?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(e)?;
    for r in rows {
        let (s, n) = r.map_err(e)?;
        if n > 0 {
            f.jobs_by_state.insert(s, n);
        }
    }
    let mut st = conn
        .prepare(&format!(
            "SELECT state, outcome, category, COUNT(*) FROM jobs WHERE {FAILED_SQL} GROUP BY state, outcome, category"
        ))
        .map_err(e)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(e)?;
    for r in rows {
        let (state, outcome, category, n) = r.map_err(e)?;
        let (c, _) = failure_category(&state, outcome.as_deref(), category.as_deref());
        *f.failed_by_category.entry(c).or_default() += n;
    }
    let mut st = conn.prepare("SELECT cluster, node, batches, items FROM node_drops").map_err(e)?;
    let rows = st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?)))).map_err(e)?;
    for r in rows {
        let (k, v) = r.map_err(e)?;
        f.drops.insert(k, v);
    }
    Ok(f)
}

/// A label value as the exposition format writes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text.
pub fn render(stats: &Stats, ledger: &Result<LedgerFigures, String>) -> String {
    let mut o = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    };
    counter(
        "runledger_batches_accepted_total",
        "Batches of node records committed to the ledger since the collector started.",
        stats.batches.load(Ordering::Relaxed),
    );
    counter(
        "runledger_records_accepted_total",
        "Node records (step starts, step ends, job ends) committed since the collector started.",
        stats.items.load(Ordering::Relaxed),
    );
    counter(
        "runledger_merge_failures_total",
        "Batches the collector could not merge (answered retry) since it started.",
        stats.merge_failures.load(Ordering::Relaxed),
    );
    counter(
        "runledger_inbox_batches_total",
        "Batches committed to the inbox during a burst and merged later, since the collector started.",
        stats.inboxed.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        o,
        "# HELP runledger_inbox_waiting Batches in the inbox not merged yet.\n\
         # TYPE runledger_inbox_waiting gauge\nrunledger_inbox_waiting {}",
        stats.inbox_waiting.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "# HELP runledger_requests_refused_total Requests refused since the collector started, by reason.\n\
         # TYPE runledger_requests_refused_total counter"
    );
    for (reason, n) in stats.rejections() {
        let _ = writeln!(o, "runledger_requests_refused_total{{reason=\"{}\"}} {n}", label(reason));
    }
    stats.merge_seconds.render(
        &mut o,
        "runledger_merge_seconds",
        "Duration of the group transactions that merge and commit the batches waiting together.",
    );
    let _ = writeln!(
        o,
        "# HELP runledger_socket_queries_total Users' questions through the local socket, by kind.\n\
         # TYPE runledger_socket_queries_total counter"
    );
    for (kind, n) in QUERIES.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(o, "runledger_socket_queries_total{{kind=\"{}\"}} {n}", label(kind));
    }
    let _ = writeln!(
        o,
        "# HELP runledger_ledger_read_ok Whether the ledger's figures below could be read (1) or not (0).\n\
         # TYPE runledger_ledger_read_ok gauge\nrunledger_ledger_read_ok {}",
        u8::from(ledger.is_ok())
    );
    if let Ok(f) = ledger {
        let _ = writeln!(
            o,
            "# HELP runledger_ledger_bytes Size of the ledger: the database file and its write-ahead log.\n\
             # TYPE runledger_ledger_bytes gauge\nrunledger_ledger_bytes {}",
            f.bytes
        );
        let _ = writeln!(
            o,
            "# HELP runledger_jobs Jobs recorded in the ledger, by Slurm state (UNKNOWN: no end record yet).\n\
             # TYPE runledger_jobs gauge"
        );
        for (s, n) in &f.jobs_by_state {
            let _ = writeln!(o, "runledger_jobs{{state=\"{}\"}} {n}", label(s));
        }
        let _ = writeln!(
            o,
            "# HELP runledger_failed_jobs Failed jobs in the ledger, by failure category (as collector query errors counts them).\n\
             # TYPE runledger_failed_jobs gauge"
        );
        for (c, n) in &f.failed_by_category {
            let _ = writeln!(o, "runledger_failed_jobs{{category=\"{}\"}} {n}", label(c));
        }
        let _ = writeln!(
            o,
            "# HELP runledger_node_dropped_batches_total Batches nodes reported dropping from over-full outboxes.\n\
             # TYPE runledger_node_dropped_batches_total counter"
        );
        for ((c, n), (b, _)) in &f.drops {
            let _ = writeln!(
                o,
                "runledger_node_dropped_batches_total{{cluster=\"{}\",node=\"{}\"}} {b}",
                label(c),
                label(n)
            );
        }
        let _ = writeln!(
            o,
            "# HELP runledger_node_dropped_records_total Records nodes reported dropping from over-full outboxes.\n\
             # TYPE runledger_node_dropped_records_total counter"
        );
        for ((c, n), (_, i)) in &f.drops {
            let _ = writeln!(
                o,
                "runledger_node_dropped_records_total{{cluster=\"{}\",node=\"{}\"}} {i}",
                label(c),
                label(n)
            );
        }
    }
    o
}

/// Binds `addr` and serves `GET /metrics` on a thread of its own, the text from `render` given
/// the ledger's figures; the address bound.
pub fn spawn(
    addr: &str,
    db: PathBuf,
    render: impl Fn(&Result<LedgerFigures, String>) -> String + Send + 'static,
) -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut cache: Option<(Instant, Result<LedgerFigures, String>)> = None;
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let fresh = cache.as_ref().is_some_and(|(t, _)| t.elapsed() < LEDGER_EVERY);
                if !fresh {
                    let f = ledger_figures(&db);
                    if let Err(e) = &f {
                        log::warn!("metrics: cannot read the ledger's figures: {e}");
                    }
                    cache = Some((Instant::now(), f));
                }
                let figures = &cache.as_ref().expect("just filled").1;
                if let Err(e) = serve_one(conn, || render(figures)) {
                    log::debug!("metrics: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(local)
}

/// Answers one HTTP/1.x request: the metrics for `GET /metrics`, 404 for other paths, 405 for
/// other methods; then closes the connection.
fn serve_one(mut conn: TcpStream, body: impl FnOnce() -> String) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, text) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "runledger collector: metrics are at /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics\n".into()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    if method != "HEAD" {
        out.push_str(&text);
    }
    conn.write_all(out.as_bytes())?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_kinds_come_from_known_words_only() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        QUERIES.lock().unwrap().clear();
        count_query(&args("query jobs -u alice"));
        count_query(&args("query job 12 --efficiency"));
        count_query(&args("query job 13"));
        count_query(&args("export --format csv"));
        count_query(&args("query {evil=\"x\"}"));
        count_query(&args("serve"));
        let q = QUERIES.lock().unwrap().clone();
        let want: BTreeMap<String, u64> =
            [("query jobs", 1), ("query job", 2), ("export", 1), ("query", 1), ("other", 1)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        assert_eq!(q, want);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
