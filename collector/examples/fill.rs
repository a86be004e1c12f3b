//! Fills a ledger database with N made-up jobs through the real merge code, for the query bench.
//!
//! ```text
//! cargo run --release -p runledger-collector --example fill -- /tmp/ledger.db 100000
//! ```
//!
//! Jobs belong to 200 users (`user000`…`user199`, so one user has N/200 jobs), 20 accounts and
//! 4 partitions, start over the past year, run on 1–2 of 512 nodes, and end in a mix of states.

use runledger_ledger::{db, merge};
use runledger_record::{ExitStatus, JobState};
use runledger_synth::Sample;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: fill DATABASE N");
        std::process::exit(2);
    };
    let n: u32 = n.parse().expect("N must be a number");
    let conn = db::open_rw(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let now = runledger_record::now();
    let t0 = now - 365 * 86_400;
    let partitions = ["compute", "gpu", "bigmem", "debug"];
    let started = std::time::Instant::now();
    let mut batches = Vec::new();
    for i in 0..n {
        let mut s = Sample::new("bench", 1 + i, t0 + i64::from(i) * (365 * 86_400 / i64::from(n.max(1))));
        s.user = format!("user{:03}", i % 200);
        s.uid = 10_000 + i % 200;
        s.account = format!("acct{:02}", (i / 7) % 20);
        s.partition = partitions[(i % 4) as usize].into();
        s.duration = 60 + i64::from(i % 7200);
        s.first_node = (i * 13) % 512;
        s.nnodes = 1 + i % 2;
        s.env_vars = 50;
        (s.state, s.exit) = match i % 20 {
            0 => (JobState::Failed, ExitStatus { code: 1, signal: 0, core_dumped: false }),
            1 => (JobState::Timeout, ExitStatus { code: 0, signal: 15, core_dumped: false }),
            2 => (JobState::OutOfMemory, ExitStatus { code: 0, signal: 9, core_dumped: false }),
            3 => (JobState::Cancelled, ExitStatus { code: 0, signal: 15, core_dumped: false }),
            _ => (JobState::Completed, ExitStatus::default()),
        };
        for node in 0..s.nnodes {
            batches.push(s.batch(node));
        }
        if batches.len() >= 1000 || i + 1 == n {
            let refs: Vec<_> = batches.iter().collect();
            for r in merge::apply_group(&conn, &refs, now).expect("commit") {
                r.expect("merge");
            }
            batches.clear();
        }
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").expect("checkpoint");
    eprintln!("fill: {n} jobs into {path} in {:.1} s", started.elapsed().as_secs_f64());
}
