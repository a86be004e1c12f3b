//! Load generator for `collector serve`: sends N realistic node records, each signed with a
//! fresh MUNGE credential, over K concurrent connections, and reports records per second.
//!
//! ```text
//! cargo run --release -p runledger-collector --example loadgen -- --address 127.0.0.1:6820 -n 5000 -k 16
//! ```
//!
//! Each record is one node's batch as an epilog sends it: a batch step and a step 0 with two
//! tasks (StepStart + StepEnd each), about fifty environment variables, two modules, a JobEnd.
//! Every third job runs on two nodes, so its second record merges into an existing job.
//! Bodies are built before the clock starts; signing (munge_encode) is timed, as the
//! epilog pays it too.
//!
//! With `--database` (the collector's ledger) it also waits until the collector has merged what
//! it stored in its inbox during the burst, and reports that rate too: an acknowledgement means
//! committed, not yet merged, when the collector answers a burst from its inbox.

use clap::Parser;
use runledger_record::wire::{self, Reply};
use runledger_record::Batch;
use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Collector address.
    #[arg(long, default_value = "127.0.0.1:6820")]
    address: String,
    /// Records (node batches) to send.
    #[arg(short, default_value_t = 5000)]
    n: usize,
    /// Concurrent connections.
    #[arg(short, default_value_t = 16)]
    k: usize,
    /// First job id (use a new range per run against the same database).
    #[arg(long, default_value_t = 1_000_000)]
    first_job: u32,
    /// Cluster name in the records.
    #[arg(long, default_value = "bench")]
    cluster: String,
    /// Sign every record before the clock starts (on a cluster each node signs its own, so the
    /// collector's rate is measured without the signing on its 2 cores).
    #[arg(long)]
    presign: bool,
    /// The records/s the rate is compared with.
    #[arg(long, default_value_t = 2000.0)]
    target: f64,
    /// The collector's ledger: wait until its inbox is empty, and report when.
    #[arg(long)]
    database: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let t0 = runledger_record::now() - 3600;
    let records = runledger_synth::sample::load_records(&args.cluster, args.first_job, args.n, t0);
    let jobs = records.last().map_or(0, |b| b.items[0].job_id() - args.first_job + 1);
    let bodies: Vec<Vec<u8>> = records.iter().map(Batch::to_json).collect();
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len().max(1);
    eprintln!(
        "loadgen: {} records ({jobs} jobs, {avg} bytes each) to {} over {} connections",
        args.n, args.address, args.k
    );

    let creds: Vec<String> = if args.presign {
        let t = Instant::now();
        let c =
            bodies.iter().map(|b| munge::encode(wire::digest(b).as_bytes()).expect("munge encode")).collect::<Vec<_>>();
        eprintln!("loadgen: {} credentials signed before the clock in {:.2} s", c.len(), t.elapsed().as_secs_f64());
        c
    } else {
        Vec::new()
    };
    let creds = Arc::new(creds);
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::with_capacity(args.n)));
    let sign_time = Arc::new(Mutex::new(Duration::ZERO));
    let start = Instant::now();
    let threads: Vec<_> = (0..args.k)
        .map(|_| {
            let (bodies, next, failures, latencies, sign_time) =
                (bodies.clone(), next.clone(), failures.clone(), latencies.clone(), sign_time.clone());
            let creds = creds.clone();
            let address = args.address.clone();
            std::thread::spawn(move || {
                let mut signing = Duration::ZERO;
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    let r = send(&address, body, creds.get(i).map(String::as_str), &mut signing);
                    lat.push(t.elapsed());
                    match r {
                        Ok(reply) if reply.ok => {}
                        Ok(reply) => failures.lock().unwrap().push(format!("record {i}: {:?}", reply.error)),
                        Err(e) => failures.lock().unwrap().push(format!("record {i}: {e}")),
                    }
                }
                latencies.lock().unwrap().extend(lat);
                *sign_time.lock().unwrap() += signing;
            })
        })
        .collect();
    for t in threads {
        t.join().expect("sender thread");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let merged = args.database.as_deref().map(|db| {
        // A collector without an inbox (an older one) merged each batch before answering.
        let Ok(conn) = runledger_ledger::db::open_ro(db) else { return elapsed };
        let give_up = Instant::now() + Duration::from_secs(600);
        while runledger_ledger::inbox::waiting(&conn).is_ok_and(|n| n > 0) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed().as_secs_f64()
    });
    let failures = failures.lock().unwrap();
    let ok = args.n - failures.len();
    let rate = ok as f64 / elapsed;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    let signing = sign_time.lock().unwrap().as_secs_f64() / args.n as f64 * 1000.0;
    println!(
        "{ok} of {} records acknowledged in {elapsed:.2} s: {rate:.0} records/s ({:.2}x the {}/s target); \
         latency p50 {:.1} ms, p99 {:.1} ms; signing {signing:.2} ms/record{}{}",
        args.n,
        rate / args.target,
        args.target,
        pct(0.5),
        pct(0.99),
        if args.presign { " (before the clock)" } else { "" },
        merged.map(|m| format!("; all merged in {m:.2} s: {:.0} records/s merged", ok as f64 / m)).unwrap_or_default()
    );
    for f in failures.iter().take(5) {
        eprintln!("loadgen: failed: {f}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

fn send(address: &str, body: &[u8], presigned: Option<&str>, signing: &mut Duration) -> Result<Reply, String> {
    let cred = match presigned {
        Some(c) => c.to_string(),
        None => {
            let t = Instant::now();
            let c = munge::encode(wire::digest(body).as_bytes()).map_err(|e| e.to_string())?;
            *signing += t.elapsed();
            c
        }
    };
    let mut s = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut buf = Vec::with_capacity(body.len() + 512);
    wire::write_request(&mut buf, &cred, body).map_err(|e| e.to_string())?;
    s.write_all(&buf).map_err(|e| format!("send: {e}"))?;
    let reply = wire::read_frame(&mut s, 1 << 20).map_err(|e| format!("reply: {e}"))?;
    serde_json::from_slice(&reply).map_err(|e| format!("reply: {e}"))
}
