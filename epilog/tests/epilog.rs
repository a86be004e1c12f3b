//! The real `runledger-epilog` binary against a temp spool, a temp config (RUNLEDGER_CONF) and an
//! in-process fake collector (`common::FakeCollector`). Runs with an empty environment (no
//! PATH), as slurmd runs it.
//!
//! Tests whose assertions need munged skip with a note when it is not running; each has an
//! `#[ignore = "needs munged"]` twin (`*_strict`) that fails instead.

#[macro_use]
mod common;

use common::{closed_port, munge_up, Behaviour, FakeCollector};
use runledger_record::spool::Spool;
use runledger_record::{Batch, ExitStatus, Item, JobState, StepEnd, StepStart, TaskExit, STEP_BATCH};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_runledger-epilog");

struct Site {
    dir: tempfile::TempDir,
    spool: PathBuf,
    conf: PathBuf,
}

impl Site {
    fn new(address: &str, budget_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        Site::with_spool(dir, spool, address, budget_ms)
    }

    fn with_spool(dir: tempfile::TempDir, spool: PathBuf, address: &str, budget_ms: u64) -> Self {
        let conf = dir.path().join("runledger.toml");
        std::fs::write(
            &conf,
            format!(
                "[collector]\naddress = \"{address}\"\n[epilog]\nspool = \"{}\"\nbudget_ms = {budget_ms}\n\
                 connect_timeout_ms = 500\nlog = \"stderr\"\n",
                spool.display()
            ),
        )
        .unwrap();
        Site { dir, spool, conf }
    }

    fn spool(&self) -> Spool {
        Spool::new(&self.spool)
    }

    /// A job as the plugin spools it: a batch step and step 0, both ended.
    fn spool_job(&self, job: u32) {
        let s = self.spool();
        s.ensure().unwrap();
        let cwd = self.dir.path().to_string_lossy().into_owned();
        for step in [STEP_BATCH, 0] {
            let start = StepStart {
                cluster: "testc".into(),
                job_id: job,
                step_id: step,
                node: "n1".into(),
                uid: 0,
                gid: 0,
                user: "root".into(),
                argv: vec!["/bin/true".into()],
                cwd: Some(cwd.clone()),
                start: 1_700_000_000,
                ..Default::default()
            };
            s.put_item(&Item::StepStart(start)).unwrap();
            let end = StepEnd {
                cluster: "testc".into(),
                job_id: job,
                step_id: step,
                node: "n1".into(),
                start: 1_700_000_000,
                end: 1_700_000_010,
                tasks: vec![TaskExit { status: ExitStatus::default(), ..Default::default() }],
                ..Default::default()
            };
            s.put_item(&Item::StepEnd(end)).unwrap();
        }
    }

    fn outbox_len(&self) -> usize {
        self.spool().outbox().len()
    }

    /// More `[epilog]` keys (the config's last section).
    fn configure(&self, lines: &str) {
        let mut text = std::fs::read_to_string(&self.conf).unwrap();
        text.push_str(lines);
        std::fs::write(&self.conf, text).unwrap();
    }

    /// A batch an earlier run could not deliver, created at `created`, of about `bytes` bytes.
    fn queue_old(&self, job: u32, created: i64, bytes: usize) -> u64 {
        let start = StepStart {
            cluster: "testc".into(),
            job_id: job,
            step_id: STEP_BATCH,
            node: "n1".into(),
            argv: vec!["x".repeat(bytes)],
            start: created,
            ..Default::default()
        };
        let mut b = Batch::new("n1", vec![Item::StepStart(start)]);
        b.created = created;
        let path = self.spool().outbox_put(&b).unwrap();
        std::fs::metadata(path).unwrap().len()
    }

    fn outbox_jobs(&self) -> Vec<u32> {
        self.spool().outbox().iter().map(|p| runledger_record::spool::outbox_name_parts(p).unwrap().1).collect()
    }

    fn run(&self, job: Option<&str>, args: &[&str]) -> Output {
        run_with(&[("RUNLEDGER_CONF", self.conf.to_str().unwrap())], job, args)
    }
}

fn run_with(vars: &[(&str, &str)], job: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args).envs(vars.iter().copied());
    if let Some(j) = job {
        cmd.envs([
            ("SLURM_JOB_ID", j),
            ("SLURM_JOB_UID", "0"),
            ("SLURM_JOB_USER", "root"),
            ("SLURM_JOB_EXIT_CODE", "0"),
            ("SLURM_JOB_EXIT_CODE2", "0:0"),
            ("SLURM_CLUSTER_NAME", "testc"),
            ("SLURMD_NODENAME", "n1"),
        ]);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 0, whatever happened: a non-zero Epilog drains the node. (How long each fault
/// costs against the budget is measured by bench/epilog-faults, not asserted here.)
fn assert_ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "exit status; stderr:\n{}", stderr(o));
}

fn happy_path() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&c.addr, 5000);
    site.spool_job(101);
    let o = site.run(Some("101"), &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("job 101: state=COMPLETED items=5 sent=1 queued=0"), "{}", stderr(&o));
    assert_eq!(site.outbox_len(), 0, "outbox not emptied");
    assert!(!site.spool().job_dir(101).exists(), "job dir not removed");
    let got = c.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    // The fake collector checked that the credential decodes to the body's digest.
    assert_eq!(got[0].cred_uid, 0);
    let items = &got[0].batch.items;
    assert_eq!(items.iter().filter(|i| matches!(i, Item::StepStart(_))).count(), 2);
    assert_eq!(items.iter().filter(|i| matches!(i, Item::StepEnd(_))).count(), 2);
    let Some(Item::JobEnd(j)) = items.last() else { panic!("no JobEnd: {items:?}") };
    assert_eq!((j.job_id, j.state, j.cluster.as_str(), j.node.as_str()), (101, JobState::Completed, "testc", "n1"));
    assert_eq!(j.start, Some(1_700_000_000));
    assert_eq!(got[0].batch.sender, "n1");
}
munge_test!(happy_path_delivers_and_cleans_up, happy_path_delivers_and_cleans_up_strict, happy_path);

fn collector_down_then_back() {
    let down = closed_port();
    let site = Site::new(&down, 5000);
    site.spool_job(201);
    let o = site.run(Some("201"), &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("sent=0 queued=1"), "{}", stderr(&o));
    assert_eq!(site.outbox_len(), 1, "batch not kept");
    assert!(!site.spool().job_dir(201).exists(), "job files not removed after the batch was kept");

    // The collector is back: the next run sends the old batch first, then its own.
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::with_spool(site.dir, site.spool, &c.addr, 5000);
    site.spool_job(202);
    let o = site.run(Some("202"), &[]);
    assert_ok(&o);
    assert_eq!(c.jobs(), vec![201, 202], "order seen by the collector");
    assert!(stderr(&o).contains("sent=1 queued=0 older_sent=1 older_queued=0"), "{}", stderr(&o));
    assert_eq!(site.outbox_len(), 0);
}
munge_test!(
    collector_down_keeps_batch_and_next_run_sends_oldest_first,
    collector_down_strict,
    collector_down_then_back
);

#[test]
fn collector_down_exits_zero_fast() {
    let site = Site::new(&closed_port(), 5000);
    site.spool_job(211);
    let o = site.run(Some("211"), &[]);
    assert_ok(&o);
    assert_eq!(site.outbox_len(), 1);
}

#[test]
fn collector_that_never_replies_is_cut_off_by_the_budget() {
    let c = FakeCollector::start(Behaviour::Silent);
    let site = Site::new(&c.addr, 1500);
    site.spool_job(301);
    let o = site.run(Some("301"), &[]);
    assert_ok(&o);
    assert_eq!(site.outbox_len(), 1, "unacknowledged batch must stay in the outbox");
}

#[test]
fn unresolvable_collector_host() {
    let site = Site::new("no-such-host.invalid:6820", 3000);
    site.spool_job(401);
    let o = site.run(Some("401"), &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("resol"), "{}", stderr(&o));
    assert_eq!(site.outbox_len(), 1);
}

#[test]
fn missing_spool_dir_is_created_and_the_batch_kept() {
    let site = Site::new(&closed_port(), 10_000);
    assert!(!site.spool.exists());
    let o = site.run(Some("501"), &[]);
    assert_ok(&o);
    assert_eq!(site.outbox_len(), 1, "{}", stderr(&o));
}

fn unwritable_spool() {
    // The spool cannot exist (its parent is a file): the batch is sent from memory, loudly.
    let c = FakeCollector::start(Behaviour::Ack);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let spool = dir.path().join("file").join("spool");
    let site = Site::with_spool(dir, spool, &c.addr, 3000);
    let o = site.run(Some("502"), &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("CANNOT KEEP"), "{}", stderr(&o));
    assert_eq!(c.jobs(), vec![502]);
}
munge_test!(unwritable_spool_sends_from_memory, unwritable_spool_strict, unwritable_spool);

#[test]
fn unwritable_spool_and_collector_down_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let spool = dir.path().join("file").join("spool");
    let site = Site::with_spool(dir, spool, &closed_port(), 10_000);
    let o = site.run(Some("503"), &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("LOST"), "{}", stderr(&o));
}

/// Garbage in the job dir and in the outbox: skipped or moved aside, never fatal.
fn plant_garbage(site: &Site, job: u32) {
    site.spool_job(job);
    let jd = site.spool().job_dir(job);
    std::fs::write(jd.join("junk.start.json"), b"\x00\xffnot json").unwrap();
    std::fs::write(jd.join("half.end.json"), br#"{"kind":"step_end","cluster":"c","job_"#).unwrap();
    std::fs::write(jd.join("7.start.json"), b"").unwrap();
    std::fs::write(site.spool().outbox_dir().join("000000000001-x-1.json"), b"{truncated").unwrap();
}

#[test]
fn garbage_files_do_not_stop_the_run() {
    let site = Site::new(&closed_port(), 10_000);
    plant_garbage(&site, 601);
    let o = site.run(Some("601"), &[]);
    assert_ok(&o);
    assert!(site.spool.join("rejected").join("000000000001-x-1.json").exists(), "{}", stderr(&o));
    assert!(stderr(&o).contains("job 601: state=COMPLETED items=5"), "{}", stderr(&o));
}

fn garbage_then_delivery() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&c.addr, 3000);
    plant_garbage(&site, 602);
    let o = site.run(Some("602"), &[]);
    assert_ok(&o);
    assert_eq!(c.jobs(), vec![602]);
    assert_eq!(c.got.lock().unwrap()[0].batch.items.len(), 5);
    assert_eq!(site.outbox_len(), 0);
}
munge_test!(garbage_files_skipped_and_good_items_delivered, garbage_strict, garbage_then_delivery);

fn malformed_reply() {
    let c = FakeCollector::start(Behaviour::Malformed);
    let site = Site::new(&c.addr, 3000);
    site.spool_job(701);
    let o = site.run(Some("701"), &[]);
    assert_ok(&o);
    assert_eq!(site.outbox_len(), 0);
    assert_eq!(std::fs::read_dir(site.spool.join("rejected")).unwrap().count(), 1, "{}", stderr(&o));
}
munge_test!(batch_the_collector_calls_malformed_is_moved_aside, malformed_strict, malformed_reply);

fn flush_only() {
    let site = Site::new(&closed_port(), 10_000);
    site.spool_job(801);
    site.run(Some("801"), &[]);
    assert_eq!(site.outbox_len(), 1);
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::with_spool(site.dir, site.spool, &c.addr, 3000);
    site.spool_job(802); // not this run's business
    let o = site.run(None, &["--flush"]);
    assert_ok(&o);
    assert_eq!(c.jobs(), vec![801]);
    assert!(site.spool().job_dir(802).exists());
    assert!(stderr(&o).contains("outbox flush: sent=1 queued=0"), "{}", stderr(&o));
}
munge_test!(flush_retries_only_the_outbox, flush_strict, flush_only);

#[test]
fn dry_run_prints_the_batch_and_changes_nothing() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&c.addr, 3000);
    site.spool_job(901);
    let o = site.run(Some("901"), &["--dry-run"]);
    assert_ok(&o);
    let b = Batch::from_json(o.stdout.trim_ascii()).unwrap();
    assert_eq!(b.items.len(), 5);
    assert!(site.spool().job_dir(901).exists());
    assert_eq!(site.outbox_len(), 0);
    assert!(c.jobs().is_empty());
}

#[test]
fn job_id_missing_or_garbage_exits_zero_and_only_flushes() {
    let site = Site::new(&closed_port(), 10_000);
    for job in [None, Some("garbage"), Some("")] {
        let o = site.run(job, &[]);
        assert_ok(&o);
        assert!(stderr(&o).contains("SLURM_JOB_ID"), "{}", stderr(&o));
        assert!(stderr(&o).contains("outbox flush"), "{}", stderr(&o));
    }
}

#[test]
fn config_missing_or_invalid_uses_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[epilog]\nbudget = 5\n").unwrap();
    // --dry-run: the defaults point at the real spool and collector, which must not be touched.
    let job = "4000000001";
    for conf in [Path::new("/nonexistent/runledger.toml"), bad.as_path()] {
        let o = run_with(&[("RUNLEDGER_CONF", conf.to_str().unwrap())], Some(job), &["--dry-run"]);
        assert_ok(&o);
        assert!(stderr(&o).contains("using the defaults"), "{}", stderr(&o));
        assert!(Batch::from_json(o.stdout.trim_ascii()).is_ok());
        let o = run_with(&[], Some(job), &["--dry-run", "--config", conf.to_str().unwrap()]);
        assert_ok(&o);
        assert!(stderr(&o).contains(conf.to_str().unwrap()), "{}", stderr(&o));
    }
}

#[test]
fn help_and_usage_errors_exit_zero() {
    let o = run_with(&[], None, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for section in ["ENVIRONMENT:", "FILES:", "EXIT STATUS:", "--dry-run", "--flush", "--config <FILE>"] {
        assert!(help.contains(section), "{section} missing from --help:\n{help}");
    }
    let o = run_with(&[], None, &["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(0));
}

fn over_size() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&closed_port(), 5000);
    let now = runledger_record::now();
    let one = site.queue_old(11, now - 300, 10_000);
    site.queue_old(12, now - 200, 10_000);
    site.queue_old(13, now - 100, 10_000);
    // Room for one old batch and the new one (a few KiB): the two oldest must go.
    let site = Site::with_spool(site.dir, site.spool, &c.addr, 5000);
    site.configure(&format!("spool_max_bytes = {}\n", one + one / 2));
    site.spool_job(14);
    let o = site.run(Some("14"), &[]);
    assert_ok(&o);
    let log = stderr(&o);
    assert!(log.contains("DROPPING 2 batch(es)") && log.contains("of job(s) 11, 12."), "{log}");
    assert!(log.contains("dropped=2"), "{log}");
    assert_eq!(c.jobs(), vec![13, 14], "the newest old batch and the new one are sent, oldest first");
    let total = site.spool().drop_count().unwrap();
    assert_eq!((total.batches, total.items), (2, 2));
    assert!(total.bytes >= 2 * one - 2, "{total:?}");
    // Both batches sent after the drop tell the collector about it.
    for r in c.got.lock().unwrap().iter() {
        assert_eq!(r.batch.dropped, Some(total), "job {}", r.batch.items[0].job_id());
    }
    assert_eq!(site.outbox_len(), 0);
}
munge_test!(spool_over_size_drops_oldest_and_batches_carry_the_count, over_size_strict, over_size);

#[test]
fn spool_over_age_drops_old_batches_loudly_and_counts_them() {
    let site = Site::new(&closed_port(), 10_000);
    site.configure("spool_max_age_days = 30\n");
    let now = runledger_record::now();
    site.queue_old(21, now - 40 * 86_400, 100);
    site.queue_old(22, now - 86_400, 100);
    site.spool_job(23);
    let o = site.run(Some("23"), &[]);
    assert_ok(&o);
    let log = stderr(&o);
    assert!(log.contains("error: ") && log.contains("DROPPING 1 batch(es)"), "{log}");
    assert!(log.contains("(1 older than the age bound, 0 for space)") && log.contains("of job(s) 21."), "{log}");
    assert_eq!(site.outbox_jobs(), vec![22, 23]);
    let total = site.spool().drop_count().unwrap();
    assert_eq!((total.batches, total.items), (1, 1));
    // The new batch, kept for later, already carries the count.
    let kept = site.spool().outbox_read(&site.spool().outbox()[1]).unwrap();
    assert_eq!(kept.dropped, Some(total));
    // Within bounds now: the next run drops nothing more.
    let o = site.run(None, &["--flush"]);
    assert!(!stderr(&o).contains("DROPPING"), "{}", stderr(&o));
    assert_eq!(site.spool().drop_count().unwrap(), total);
}

fn backoff_until_the_collector_appears() {
    use std::io::{BufRead, BufReader};
    let addr = closed_port();
    let site = Site::new(&addr, 20_000);
    // Enough retries that the collector, started once the first retry is logged, is reached.
    site.configure("retries = 10\nretry_base_ms = 20\nretry_max_ms = 500\n");
    site.spool_job(31);
    let mut child = Command::new(BIN)
        .env_clear()
        .env("RUNLEDGER_CONF", &site.conf)
        .envs([("SLURM_JOB_ID", "31"), ("SLURM_JOB_UID", "0"), ("SLURM_CLUSTER_NAME", "testc")])
        .env("SLURMD_NODENAME", "n1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in reader.lines().map_while(Result::ok) {
            if line.contains("retry 1/10") {
                let _ = tx.send(());
            }
            all.push(line);
        }
        all.join("\n")
    });
    let retried = rx.recv_timeout(Duration::from_secs(30));
    let c = FakeCollector::start_at(&addr, Behaviour::Ack);
    let status = child.wait().unwrap();
    let log = lines.join().unwrap();
    assert!(retried.is_ok(), "no retry logged:\n{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(c.jobs(), vec![31], "{log}");
    assert!(log.contains("job 31: state=COMPLETED items=5 sent=1 queued=0"), "{log}");
    assert_eq!(site.outbox_len(), 0);
}
munge_test!(backoff_retries_until_the_collector_listens, backoff_strict, backoff_until_the_collector_appears);

/// Runs the epilog for `job` with the site's spool moved into a tmpfs of its own (a private mount
/// namespace: nothing outside sees it), after `setup` (shell, `$S` is the spool). `None` where
/// that is not allowed (not root, no unshare): the caller skips.
fn run_in_tmpfs(site: &Site, job: &str, setup: &str) -> Option<Output> {
    let seed = site.dir.path().join("seed");
    let script = format!(
        "set -e; S={s}; cp -a \"$S\" {seed}; mount -t tmpfs -o size=256k,mode=0700 tmpfs \"$S\"; \
         cp -a {seed}/. \"$S\"/; {setup}; exec {BIN}",
        s = site.spool.display(),
        seed = seed.display()
    );
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", &format!("mount -t tmpfs tmpfs {}", site.dir.path().display())])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: cannot mount a tmpfs in a private mount namespace here (needs root and unshare)");
        return None;
    }
    let vars = [("RUNLEDGER_CONF", site.conf.to_str().unwrap()), ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")];
    let mut cmd = Command::new("unshare");
    cmd.env_clear().envs(vars).args(["-m", "sh", "-c", &script]);
    cmd.envs([
        ("SLURM_JOB_ID", job),
        ("SLURM_JOB_UID", "0"),
        ("SLURM_JOB_EXIT_CODE", "0"),
        ("SLURM_CLUSTER_NAME", "testc"),
        ("SLURMD_NODENAME", "n1"),
    ]);
    Some(cmd.output().unwrap())
}

fn read_only_spool() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&c.addr, 5000);
    site.queue_old(41, runledger_record::now() - 60, 100);
    site.spool_job(42);
    let Some(o) = run_in_tmpfs(&site, "42", "mount -o remount,ro \"$S\"") else { return };
    assert_ok(&o);
    let log = stderr(&o);
    assert!(log.contains("job 42: CANNOT KEEP the batch (5 items)") && log.contains("Read-only file system"), "{log}");
    // Sent from memory first (the only copy), then the old one, which could not be removed.
    assert_eq!(c.jobs(), vec![42, 41], "{log}");
    assert_eq!(c.got.lock().unwrap()[0].batch.items.len(), 5);
    assert!(log.contains("committed but not removed"), "{log}");
    assert!(log.contains("job 42: state=COMPLETED items=5 sent=1 queued=0 older_sent=1"), "{log}");
}
munge_test!(read_only_spool_sends_directly_and_says_what_it_kept_not, read_only_strict, read_only_spool);

fn full_disk() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&c.addr, 5000);
    site.spool_job(52);
    let fill = "dd if=/dev/zero of=\"$S/fill\" bs=4096 2>/dev/null || true";
    let Some(o) = run_in_tmpfs(&site, "52", fill) else { return };
    assert_ok(&o);
    let log = stderr(&o);
    assert!(log.contains("job 52: CANNOT KEEP the batch (5 items)") && log.contains("No space left"), "{log}");
    assert_eq!(c.jobs(), vec![52], "{log}");
    assert_eq!(c.got.lock().unwrap()[0].batch.items.len(), 5);
    assert!(log.contains("sent=1 queued=0"), "{log}");
}
munge_test!(full_disk_sends_directly_and_says_what_it_could_not_keep, full_disk_strict, full_disk);

#[test]
fn full_disk_and_collector_down_exits_zero_and_says_what_is_lost() {
    let site = Site::new(&closed_port(), 10_000);
    site.spool_job(53);
    let fill = "dd if=/dev/zero of=\"$S/fill\" bs=4096 2>/dev/null || true";
    let Some(o) = run_in_tmpfs(&site, "53", fill) else { return };
    assert_ok(&o);
    let log = stderr(&o);
    assert!(log.contains("CANNOT KEEP") && log.contains("NOT delivered and NOT kept"), "{log}");
    assert!(log.contains("LOST") && log.contains("jobs/53"), "{log}");
}

/// A job as the plugin spools it with `steps` numbered steps, each with `env_bytes` of environment.
fn spool_big_job(site: &Site, job: u32, steps: u32, env_bytes: usize) {
    let s = site.spool();
    s.ensure().unwrap();
    let env: std::collections::BTreeMap<String, String> =
        (0..env_bytes / 4000).map(|i| (format!("RL_BIG_{i}"), "x".repeat(4000))).collect();
    for step in (0..steps).chain([STEP_BATCH]) {
        let start = StepStart {
            cluster: "testc".into(),
            job_id: job,
            step_id: step,
            node: "n1".into(),
            user: "root".into(),
            env: env.clone(),
            start: 1_700_000_000,
            ..Default::default()
        };
        s.put_item(&Item::StepStart(start)).unwrap();
        let end = StepEnd {
            cluster: "testc".into(),
            job_id: job,
            step_id: step,
            node: "n1".into(),
            start: 1_700_000_000,
            end: 1_700_000_010,
            ..Default::default()
        };
        s.put_item(&Item::StepEnd(end)).unwrap();
    }
}

fn large_jobs_in_parts() {
    let c = FakeCollector::start(Behaviour::Ack);
    let site = Site::new(&c.addr, 20_000);
    let max = 1 << 20;
    site.configure(&format!("batch_max_bytes = {max}\n"));
    // An older release stored a whole 3 MB job in one outbox file: cut before it is sent.
    let old = Batch {
        // A minute old: well within the age bound.
        created: runledger_record::now() - 60,
        ..Batch::new("n1", {
            let tmp = Site::new(&c.addr, 1000);
            spool_big_job(&tmp, 900, 14, 200_000);
            tmp.spool().job_items(900).0
        })
    };
    site.spool().outbox_put(&old).unwrap();
    assert!(old.to_json().len() > 2 * max);
    // This run's job: 20 steps of 200 KB, about 4 MB.
    spool_big_job(&site, 901, 20, 200_000);
    let o = site.run(Some("901"), &[]);
    assert_ok(&o);
    let log = stderr(&o);
    assert!(log.contains("sent=1 queued=0"), "{log}");
    assert_eq!(site.outbox_len(), 0, "{log}");
    let got = c.got.lock().unwrap();
    for r in got.iter() {
        assert!(r.batch.to_json().len() <= max, "a batch of {} bytes was sent", r.batch.to_json().len());
    }
    let jobs: Vec<u32> = got.iter().map(|r| r.batch.items[0].job_id()).collect();
    let first_new = jobs.iter().position(|&j| j == 901).expect("the new job sent");
    assert!(jobs[..first_new].iter().all(|&j| j == 900) && jobs[first_new..].iter().all(|&j| j == 901), "{jobs:?}");
    let items = |job: u32| -> Vec<Item> {
        got.iter().filter(|r| r.batch.items[0].job_id() == job).flat_map(|r| r.batch.items.clone()).collect()
    };
    assert_eq!(items(900), old.items, "the old job whole, in order");
    let new = items(901);
    assert_eq!(new.len(), 21 * 2 + 1, "every step start and end, and the job end");
    assert!(matches!(new.last(), Some(Item::JobEnd(_))), "the job end comes last");
    assert!(new.iter().all(|i| !matches!(i, Item::StepStart(s) if s.env.len() != 50)), "environments whole");
}
munge_test!(a_large_job_travels_in_parts_and_an_old_oversized_batch_is_cut, large_parts_strict, large_jobs_in_parts);

/// New epilog, old collector: the replies of the last release (tests/data/4a702ef) carry no
/// kind, and are read as that collector meant them. Above all, its words for a corrupt ledger
/// ("database disk image is malformed") keep the batch, where they used to set it aside.
fn replies_of_the_last_release() {
    const OK: &[u8] = include_bytes!("data/4a702ef/reply-ok.json");
    const CORRUPT: &[u8] = include_bytes!("data/4a702ef/reply-corrupt-ledger.json");
    const MALFORMED: &[u8] = include_bytes!("data/4a702ef/reply-malformed-batch.json");
    for (reply, kept, rejected) in [(OK, 0, 0), (CORRUPT, 1, 0), (MALFORMED, 0, 1)] {
        let c = FakeCollector::start(Behaviour::Replay(reply));
        let site = Site::new(&c.addr, 3000);
        site.spool_job(801);
        let o = site.run(Some("801"), &[]);
        assert_ok(&o);
        let what = String::from_utf8_lossy(reply);
        assert_eq!(site.outbox_len(), kept, "{what}: {}", stderr(&o));
        let aside = std::fs::read_dir(site.spool.join("rejected")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(aside, rejected, "{what}: {}", stderr(&o));
        assert_eq!(c.got.lock().unwrap().len(), 1, "{what}: sent once");
    }
}
munge_test!(replies_of_the_last_release_are_understood, last_release_replies_strict, replies_of_the_last_release);
