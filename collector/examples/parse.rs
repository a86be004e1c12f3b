//! How long `collector serve` takes to read a node batch: the record model's reader against
//! serde's derived reader for the same internally tagged items (what `Item` used before
//! `runledger_record`'s `item_de`), on the same bodies, rounds interleaved.
//!
//! ```text
//! cargo run --release -p runledger-collector --example parse -- [N [ROUNDS]]
//! ```
//!
//! The bodies are the load generator's (`examples/loadgen.rs`): a batch step and a step 0 with
//! two tasks, about fifty environment variables, two modules and a JobEnd per node record.
//! Prints each side's median time per batch over ROUNDS rounds of N batches and the ratio.

use runledger_record::{Batch, DropCount, JobEnd, StepEnd, StepStart, Timestamp};
use runledger_synth::sample::load_records;
use serde::Deserialize;
use std::hint::black_box;
use std::time::Instant;

/// A batch read by serde's derive for `#[serde(tag = "kind")]`: the items buffered, then read.
#[derive(Deserialize)]
#[allow(dead_code)] // read, never looked at: only the reading is timed
struct DerivedBatch {
    format: u32,
    sender: String,
    created: Timestamp,
    items: Vec<DerivedItem>,
    #[serde(default)]
    dropped: Option<DropCount>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)]
enum DerivedItem {
    StepStart(StepStart),
    StepEnd(StepEnd),
    JobEnd(JobEnd),
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().map_or(5_000, |a| a.parse().expect("N: a number"));
    let rounds: usize = args.next().map_or(15, |a| a.parse().expect("ROUNDS: a number"));
    let bodies: Vec<Vec<u8>> =
        load_records("bench", 1_000_000, n as usize, 1_767_225_600).iter().map(Batch::to_json).collect();
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
    // Both readers must agree on what they read.
    for b in &bodies {
        let ours: Batch = serde_json::from_slice(b).unwrap();
        let derived: DerivedBatch = serde_json::from_slice(b).unwrap();
        assert_eq!(ours.items.len(), derived.items.len());
    }
    let time = |f: &dyn Fn(&[u8])| {
        let t = Instant::now();
        for b in &bodies {
            f(b);
        }
        t.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0
    };
    let (mut ours, mut derived) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(time(&|b| drop(black_box(serde_json::from_slice::<Batch>(b).unwrap()))));
        derived.push(time(&|b| drop(black_box(serde_json::from_slice::<DerivedBatch>(b).unwrap()))));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, d) = (median(&mut ours), median(&mut derived));
    println!(
        "parse: {n} batches of {avg} bytes, {rounds} rounds: record model {o:.1} us/batch, serde's derived \
         tagged enum {d:.1} us/batch: {:.2}x the time",
        o / d
    );
}
