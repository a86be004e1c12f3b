//! `collector flush` as an admin (or the systemd timer) runs it: the real binary against a temp
//! spool and the epilog's fake collector ([`runledger_epilog::testing`]).
//!
//! Tests that need munged to sign requests skip with a note without it; their `*_strict` twins
//! (`#[ignore = "needs munged"]`) fail instead.

use runledger_epilog::munge_test;
use runledger_epilog::testing::{closed_port, munge_up, Behaviour, FakeCollector};
use runledger_record::spool::Spool;
use runledger_record::{Batch, Item, StepStart};
use std::path::PathBuf;
use std::process::{Command, Output};

/// A compute node: its spool and its runledger.toml.
struct Node {
    _dir: tempfile::TempDir,
    spool: PathBuf,
    conf: PathBuf,
}

impl Node {
    /// `epilog` is added to the `[epilog]` section.
    fn new(address: &str, epilog: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let conf = dir.path().join("runledger.toml");
        std::fs::write(
            &conf,
            format!(
                "[collector]\naddress = \"{address}\"\n[epilog]\nspool = \"{}\"\nconnect_timeout_ms = 500\n{epilog}",
                spool.display()
            ),
        )
        .unwrap();
        Node { _dir: dir, spool, conf }
    }

    fn spool(&self) -> Spool {
        Spool::new(&self.spool)
    }

    /// A batch an epilog could not deliver, for `job`, created `age` seconds ago.
    fn queue(&self, job: u32, age: i64) {
        let created = runledger_record::now() - age;
        let start =
            StepStart { cluster: "tc".into(), job_id: job, node: "n1".into(), start: created, ..Default::default() };
        let mut b = Batch::new("n1", vec![Item::StepStart(start)]);
        b.created = created;
        self.spool().outbox_put(&b).unwrap();
    }

    fn flush(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_collector"))
            .arg("flush")
            .args(args)
            .env("RUNLEDGER_CONF", &self.conf)
            .output()
            .expect("run collector flush")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drains() {
    let c = FakeCollector::start(Behaviour::Ack);
    // The configuration names a dead collector and another spool: the flags win.
    let node = Node::new(&closed_port(), "");
    node.queue(3, 300);
    node.queue(1, 200);
    node.queue(2, 100);
    let elsewhere = Node::new(&closed_port(), "");
    let out = elsewhere.flush(&["--config", node.conf.to_str().unwrap(), "--address", &c.addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.starts_with(&format!("outbox {}/outbox: 3 sent, 0 kept, 0 rejected, 0 dropped", node.spool.display())));
    assert_eq!(c.jobs(), vec![3, 1, 2], "oldest first");
    assert!(node.spool().outbox().is_empty());

    // --spool: another node's spool, same configuration otherwise.
    elsewhere.queue(9, 10);
    let out = node.flush(&["--spool", elsewhere.spool.to_str().unwrap(), "--address", &c.addr, "--budget", "20000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.jobs(), vec![3, 1, 2, 9]);
    assert!(elsewhere.spool().outbox().is_empty());
}
munge_test!(flush_drains_the_outbox_oldest_first, flush_drains_strict, drains);

#[test]
fn flush_with_the_collector_down_keeps_everything_and_exits_1() {
    let node = Node::new(&closed_port(), "retries = 1\nretry_base_ms = 1\n");
    node.queue(1, 20);
    node.queue(2, 10);
    let out = node.flush(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(so.contains("0 sent, 2 kept, 0 rejected, 0 dropped"), "{so}");
    assert!(so.contains("1 retry)"), "{so}");
    assert!(so.contains("2 batches left in the outbox: cannot connect to collector"), "{so}");
    assert!(se.contains("collector: error: outbox not drained: 2 batches still queued"), "{se}");
    assert_eq!(node.spool().outbox().len(), 2);
}

fn over_bounds() {
    let c = FakeCollector::start(Behaviour::Ack);
    let node = Node::new(&c.addr, "spool_max_age_days = 30\n");
    node.queue(7, 40 * 86_400);
    node.queue(8, 60);
    let out = node.flush(&[]);
    // Dropping is loud, but what is gone is not left behind: the outbox is drained.
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(so.contains("1 sent, 0 kept, 0 rejected, 1 dropped"), "{so}");
    assert!(so.contains("dropped 1 batch (1 item,") && so.contains("of job(s) 7\n"), "{so}");
    assert!(so.contains("this node has dropped 1 batch (1 item,"), "{so}");
    assert!(se.contains("DROPPING 1 batch(es)") && se.contains("of job(s) 7."), "{se}");
    assert_eq!(c.jobs(), vec![8]);
    let total = node.spool().drop_count().unwrap();
    assert_eq!(total.batches, 1);
    assert_eq!(c.got.lock().unwrap()[0].batch.dropped, Some(total), "the collector hears of the drop");
}
munge_test!(flush_drops_what_is_over_bounds_and_tells_the_collector, over_bounds_strict, over_bounds);

#[test]
fn flush_of_an_unreadable_outbox_fails_clearly() {
    let node = Node::new(&closed_port(), "");
    std::fs::create_dir_all(&node.spool).unwrap();
    std::fs::write(node.spool.join("outbox"), b"not a directory").unwrap();
    let out = node.flush(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("not flushed: cannot read the outbox"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("collector: error: outbox not drained: cannot read the outbox"));
}

#[test]
fn flush_of_a_missing_or_empty_spool_is_success() {
    let node = Node::new(&closed_port(), "");
    let out = node.flush(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(": 0 sent, 0 kept, 0 rejected, 0 dropped"), "{}", text(&out.stdout));
}

#[test]
fn flush_help_and_usage_errors() {
    let node = Node::new(&closed_port(), "");
    let out = node.flush(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for want in ["Exit status: 0 when the outbox was drained", "Examples:", "--spool <DIR>", "--budget <MS>", "as root"]
    {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
    let out = node.flush(&["--budget", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
