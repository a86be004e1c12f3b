//! The epilog's memory is bounded whatever the job spooled (issue #10): the real binary stores a
//! job of many steps with large environments in parts, read one item at a time, and its peak
//! resident memory (VmHWM, which it logs at exit as `peak_rss_kb=`) does not grow with the job.
//!
//! One test in this file on purpose: the two runs are compared with each other, and nothing else
//! in this process should compete with them for the machine.

mod common;

use common::closed_port;
use runledger_record::spool::Spool;
use runledger_record::{Batch, Item, StepEnd, StepStart, TaskExit, STEP_BATCH};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_runledger-epilog");
const BATCH_MAX: usize = 1 << 20;
const ENV_BYTES: usize = 200 * 1024;

/// A job of `steps` steps (the batch step and steps 0..), each with a ~200 KiB environment.
fn spool_job(spool: &Spool, job: u32, steps: u32) {
    for i in 0..steps {
        let step = if i == 0 { STEP_BATCH } else { i - 1 };
        let mut start = StepStart {
            cluster: "testc".into(),
            job_id: job,
            step_id: step,
            node: "n1".into(),
            user: "root".into(),
            argv: vec!["/bin/true".into()],
            start: 1_700_000_000 + i64::from(i),
            ..Default::default()
        };
        // Distinct per step, as real environments are (nothing to deduplicate).
        start.env.insert("PAYLOAD".into(), format!("{i:08}").repeat(ENV_BYTES / 8));
        spool.put_item(&Item::StepStart(start)).unwrap();
        let end = StepEnd {
            cluster: "testc".into(),
            job_id: job,
            step_id: step,
            node: "n1".into(),
            start: 1_700_000_000,
            end: 1_700_000_010,
            tasks: vec![TaskExit::default()],
            ..Default::default()
        };
        spool.put_item(&Item::StepEnd(end)).unwrap();
    }
}

/// Runs the epilog for a job of `steps` steps against a closed port (its parts stay queued in the
/// outbox), checks what it stored, and returns its peak RSS in KiB.
fn peak_for(steps: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let conf = dir.path().join("runledger.toml");
    std::fs::write(
        &conf,
        format!(
            "[collector]\naddress = \"{}\"\n[epilog]\nspool = \"{}\"\nbudget_ms = 120000\nconnect_timeout_ms = 500\n\
             retries = 0\nbatch_max_bytes = {BATCH_MAX}\nlog = \"stderr\"\n",
            closed_port(),
            spool_dir.display()
        ),
    )
    .unwrap();
    let spool = Spool::new(&spool_dir);
    spool.ensure().unwrap();
    let job = 700 + steps;
    spool_job(&spool, job, steps);
    // The order the items are sent in (the spool's), the JobEnd last.
    let expected: Vec<(String, u32)> = spool.job_items(job).0.iter().map(key).collect();
    assert_eq!(expected.len(), 2 * steps as usize);

    let o = Command::new(BIN)
        .env_clear()
        .env("RUNLEDGER_CONF", &conf)
        .envs([
            ("SLURM_JOB_ID", job.to_string().as_str()),
            ("SLURM_JOB_UID", "0"),
            ("SLURM_JOB_USER", "root"),
            ("SLURM_JOB_EXIT_CODE", "0"),
            ("SLURM_CLUSTER_NAME", "testc"),
            ("SLURMD_NODENAME", "n1"),
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let line = log.lines().find(|l| l.contains(&format!("job {job}: state="))).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("queued=1"), "{line}");
    assert!(!spool.job_dir(job).exists(), "the spooled items are removed once stored");

    // Every item arrives, in parts under the limit, in order, the JobEnd last.
    let paths = spool.outbox();
    assert!(paths.len() as u64 >= (2 * ENV_BYTES as u64 * u64::from(steps)) / (BATCH_MAX as u64) / 2, "{paths:?}");
    assert!(line.contains(&format!("parts={}", paths.len())), "{line}");
    let mut got = Vec::new();
    for p in &paths {
        assert!(std::fs::metadata(p).unwrap().len() <= BATCH_MAX as u64, "{}", p.display());
        let b: Batch = spool.outbox_read(p).unwrap();
        assert_eq!(b.sender, "n1");
        got.extend(b.items.iter().map(key));
    }
    assert_eq!(got.last(), Some(&("job_end".to_string(), 0)));
    got.pop();
    assert_eq!(got, expected);

    let peak: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peak_rss_kb="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_kb in {line}"));
    assert!(peak > 0, "{line}");
    eprintln!("{steps} steps x {} KiB env: {} parts, epilog peak RSS {peak} KiB", ENV_BYTES / 1024, paths.len());
    peak
}

fn key(i: &Item) -> (String, u32) {
    match i {
        Item::StepStart(s) => ("start".into(), s.step_id),
        Item::StepEnd(e) => ("end".into(), e.step_id),
        Item::JobEnd(_) => ("job_end".into(), 0),
    }
}

#[test]
fn memory_stays_bounded_however_large_the_job() {
    // ~5 MB and ~50 MB of spooled environment.
    let small = peak_for(25);
    let large = peak_for(250);
    // Holding the job whole took about 3x its size (150 MB here); streaming holds about one part
    // and one item. The bound: the large job's peak within 8 MiB of the small one's, though it
    // spooled 45 MB more.
    assert!(large <= small + 8 * 1024, "peak RSS grew with the job: {small} KiB -> {large} KiB");
}
