//! The epilog storm of issue #17: one job's N node records, each in its own node's outbox, sent
//! at once by N threads through the epilog's own delivery path ([`runledger_epilog::deliver`]
//! with [`runledger_epilog::sender`]: a fresh MUNGE credential per attempt, the `[epilog]`
//! timeouts, retries and budget), as N epilogs do when a job of N nodes ends.
//!
//! ```text
//! cargo run --release -p runledger-integration --example epilog_storm -- \
//!     --address 127.0.0.1:6820 --database /var/tmp/x/ledger.db --spool-root /var/tmp/x/nodes -n 2000
//! ```
//!
//! The outboxes are written (fsync'd, as the epilog stores them) before the clock starts; the
//! threads then wait at a barrier and are released together. Measured: from the moment the last
//! sender started sending to the moment the last one had its batch acknowledged (the collector
//! replies only after commit) and its outbox file removed. Checked: every sender's batch
//! committed, no outbox file left, nothing moved to `rejected/`, and the ledger holds N distinct
//! node rows of the job, once each. The last line is machine-readable for `bench/epilog-storm`.

use clap::Parser;
use runledger_epilog::deliver::{self, Current};
use runledger_record::config::Config;
use runledger_record::spool::Spool;
use runledger_synth::Sample;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Collector address.
    #[arg(long)]
    address: String,
    /// The collector's database, read afterwards to count what was committed.
    #[arg(long)]
    database: PathBuf,
    /// Where the N node spools are made (one directory per node).
    #[arg(long)]
    spool_root: PathBuf,
    /// Nodes of the job (one sender each).
    #[arg(short, default_value_t = 2000)]
    n: u32,
    /// The job's id.
    #[arg(long, default_value_t = 7_000_000)]
    job: u32,
    #[arg(long, default_value = "storm")]
    cluster: String,
    /// Target: every record committed within this many seconds of the last send.
    #[arg(long, default_value_t = 2.0)]
    target: f64,
}

/// What one sender saw.
struct Run {
    started: Instant,
    ended: Instant,
    report: deliver::Report,
}

fn main() {
    let args = Args::parse();
    let mut cfg = Config::default();
    cfg.collector.address = args.address.clone();
    let budget = Duration::from_millis(cfg.epilog.budget_ms);

    let mut s = Sample::new(&args.cluster, args.job, runledger_record::now() - 600);
    s.nnodes = args.n;
    s.first_node = 1; // n0001 … nN
    let mut prepared = Vec::with_capacity(args.n as usize);
    let mut bytes = 0;
    for i in 0..args.n {
        let batch = s.batch(i);
        let spool = Spool::new(args.spool_root.join(s.node_name(i)));
        let path = spool.outbox_put(&batch).expect("writing the node's outbox");
        bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        prepared.push((spool, path, s.node_name(i)));
    }
    eprintln!(
        "epilog_storm: job {} of {} nodes, {} bytes a record on average, one outbox each under {}; {} ms budget, {} \
         retries ({}..{} ms backoff) per sender",
        args.job,
        args.n,
        bytes / u64::from(args.n.max(1)),
        args.spool_root.display(),
        cfg.epilog.budget_ms,
        cfg.epilog.retries,
        cfg.epilog.retry_base_ms,
        cfg.epilog.retry_max_ms
    );

    let barrier = Arc::new(Barrier::new(prepared.len() + 1));
    let threads: Vec<_> = prepared
        .into_iter()
        .map(|(spool, path, node)| {
            let barrier = barrier.clone();
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let cur = [Current { body: None, path: Some(path), label: node }];
                    let mut sender = runledger_epilog::sender(&cfg);
                    barrier.wait();
                    let started = Instant::now();
                    let report = deliver::deliver(&spool, &mut sender, &cur, started + budget);
                    Run { started, ended: Instant::now(), report }
                })
                .expect("starting a sender thread (raise ulimit -u?)")
        })
        .collect();
    barrier.wait();
    let released = Instant::now();
    let runs: Vec<Run> = threads.into_iter().map(|t| t.join().expect("a sender panicked")).collect();

    let sent = runs.iter().filter(|r| r.report.current_sent).count();
    let retries: usize = runs.iter().map(|r| r.report.retries).sum();
    let retried = runs.iter().filter(|r| r.report.retries > 0).count();
    let mut stopped: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        if let Some(why) = &r.report.stopped {
            // The reason without the address and numbers that make each one unique.
            let key: String = why.chars().filter(|c| !c.is_ascii_digit()).take(120).collect();
            *stopped.entry(key).or_default() += 1;
        }
    }
    let last_start = runs.iter().map(|r| r.started).max().expect("at least one sender");
    let last_end = runs.iter().map(|r| r.ended).max().expect("at least one sender");
    let mut lat: Vec<f64> = runs.iter().map(|r| (r.ended - r.started).as_secs_f64()).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let outbox_left: usize = (0..args.n).map(|i| Spool::new(args.spool_root.join(s.node_name(i))).outbox().len()).sum();
    let rejected: usize = (0..args.n)
        .map(|i| {
            std::fs::read_dir(Spool::new(args.spool_root.join(s.node_name(i))).rejected_dir())
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum();

    let db = rusqlite::Connection::open_with_flags(&args.database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("opening the ledger");
    // A collector answers a burst from its inbox (committed, merged when the burst is over): the
    // rows are counted once it is empty. An older collector has no inbox: merged when answered.
    let waiting = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT count(*) FROM inbox WHERE error IS NULL", [], |r| r.get(0)).unwrap_or(0)
    };
    let give_up = Instant::now() + Duration::from_secs(600);
    while waiting(&db) > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    let merged_after = Instant::now().saturating_duration_since(last_end).as_secs_f64();
    let (jobs, rows, nodes): (i64, i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM jobs WHERE cluster = ?1 AND job_id = ?2), count(*), count(DISTINCT jn.node)
             FROM job_nodes jn JOIN jobs j ON j.id = jn.job WHERE j.cluster = ?1 AND j.job_id = ?2",
            rusqlite::params![args.cluster, args.job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("counting the job's node rows");

    let window = last_end.saturating_duration_since(last_start).as_secs_f64();
    let spread = last_start.saturating_duration_since(released).as_secs_f64();
    eprintln!(
        "epilog_storm: released at once; the last sender started {spread:.3} s after the release; per sender: median \
         {:.3} s, p99 {:.3} s, max {:.3} s; {retries} retries by {retried} senders",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    for (why, n) in &stopped {
        eprintln!("epilog_storm: {n} senders stopped: {why}");
    }
    let all_ok = sent == args.n as usize
        && outbox_left == 0
        && rejected == 0
        && jobs == 1
        && rows == i64::from(args.n)
        && nodes == i64::from(args.n);
    // One line for bench/epilog-storm.
    println!(
        "n={} committed={sent} given_up={} outbox_left={outbox_left} rejected={rejected} job_rows={jobs} \
         node_rows={rows} distinct_nodes={nodes} last_send_to_last_ack_s={window:.3} release_to_last_ack_s={:.3} \
         merged_after_last_ack_s={merged_after:.3} \
         target_s={} ratio={:.2} verdict={}",
        args.n,
        args.n as usize - sent,
        (last_end - released).as_secs_f64(),
        args.target,
        window / args.target,
        match (all_ok, window <= args.target) {
            (true, true) => "met",
            (true, false) => "all-committed-but-slow",
            (false, _) => "NOT-all-committed",
        }
    );
}
