//! Each kind of loss is injected into an otherwise complete ledger; the audit must find every
//! one, and nothing in the complete ledger.

use super::*;
use runledger_ledger::merge::apply_group;
use runledger_record::{Batch, Item};
use runledger_synth::Sample;

const DAY: i64 = 86_400;
const T0: i64 = 1_700_000_000;
const NOW: i64 = T0 + 5 * DAY + 7200;

fn job(id: u32) -> Sample {
    let mut s = Sample::new("tc", id, T0 + 5 * DAY + i64::from(id) * 60);
    s.user = format!("u{id}");
    s
}

fn keep(mut b: Batch, f: impl Fn(&Item) -> bool) -> Batch {
    b.items.retain(|i| f(i));
    b
}

fn ledger(batches: &[Batch]) -> Connection {
    let conn = runledger_ledger::db::open_memory();
    let refs: Vec<&Batch> = batches.iter().collect();
    for r in apply_group(&conn, &refs, NOW).unwrap() {
        r.unwrap();
    }
    conn
}

fn params(canaries: Option<&str>) -> Params<'_> {
    Params { since: T0, now: NOW, grace: 900, silent_after: DAY, clusters: &[], canaries }
}

/// Jobs 1..=12 complete on node n0001, except the ones a test changes.
fn complete(skip: &[u32]) -> Vec<Batch> {
    (1..=12).filter(|id| !skip.contains(id)).map(|id| job(id).batch(0)).collect()
}

#[test]
fn a_complete_ledger_has_no_findings() {
    let conn = ledger(&complete(&[]));
    let f = audit(&conn, &params(Some("# canaries\n"))).unwrap();
    assert_eq!(f.jobs_checked, 12);
    assert_eq!(f.count(), 0, "{f:#?}");
    assert!(render(&f).contains("nothing missing"));
}

#[test]
fn every_kind_of_loss_is_found() {
    let mut batches = complete(&[5, 6, 8, 9, 11]);
    // 8: the plugin's steps arrived, the epilog's JobEnd never did.
    batches.push(keep(job(8).batch(0), |i| !matches!(i, Item::JobEnd(_))));
    // 9: only the epilog's JobEnd (no plugin on that node).
    batches.push(keep(job(9).batch(0), |i| matches!(i, Item::JobEnd(_))));
    // 11: ran on n0099 nine days ago; n0099 said nothing since.
    let mut old = job(11);
    old.start = T0 + DAY;
    old.first_node = 99;
    batches.push(old.batch(0));
    // 5 and 6: never recorded at all.
    let conn = ledger(&batches);
    let canaries = format!(
        "# time cluster job\n{} tc 7\n{} tc 42\n{} tc 43\nnot a line\n",
        T0 + 5 * DAY,
        T0 + 5 * DAY,
        NOW - 60 // too recent to judge
    );
    let f = audit(&conn, &params(Some(&canaries))).unwrap();
    let ids = |v: &[NodeJob]| v.iter().map(|j| (j.job_id, j.node.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&f.no_epilog), vec![(8, "n0001".to_string())]);
    assert_eq!(ids(&f.no_plugin), vec![(9, "n0001".to_string())]);
    assert_eq!(f.silent_nodes.len(), 1, "{:?}", f.silent_nodes);
    assert_eq!((f.silent_nodes[0].node.as_str(), f.silent_nodes[0].jobs), ("n0099", 1));
    assert_eq!(f.id_gaps, vec![Gap { cluster: "tc".into(), first: 5, last: 6 }]);
    assert_eq!(f.missing_ids, 2);
    assert_eq!(f.canaries_checked, 2);
    assert_eq!(f.canaries_missing.iter().map(|c| c.job_id).collect::<Vec<_>>(), vec![42]);
    assert_eq!(f.canary_log_errors.len(), 1);
    assert!(f.canary_log_errors[0].starts_with("line 5:"), "{:?}", f.canary_log_errors);
    let text = render(&f);
    assert!(f.rejected.is_empty());
    for needle in [
        "no_epilog: 1",
        "no_plugin: 1",
        "silent_node: 1",
        "id_gap: 2 job id(s) missing in 1 gap",
        "tc 5-6",
        "canary: 1 of 2 canaries missing",
        "tc job 42",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn recent_activity_is_not_judged_and_clusters_filter() {
    // Job 12 has steps only, but it ended a minute ago: it may still be on its way.
    let mut recent = job(12);
    recent.start = NOW - 120;
    recent.duration = 60;
    let mut batches = complete(&[12]);
    batches.push(keep(recent.batch(0), |i| !matches!(i, Item::JobEnd(_))));
    let mut other = Sample::new("other", 500, T0 + 5 * DAY);
    other.user = "x".into();
    batches.push(keep(other.batch(0), |i| matches!(i, Item::JobEnd(_))));
    let conn = ledger(&batches);
    let f = audit(&conn, &params(None)).unwrap();
    assert!(f.no_epilog.is_empty(), "{:?}", f.no_epilog);
    assert_eq!(f.no_plugin.len(), 1);
    let only_tc = ["tc".to_string()];
    let f = audit(&conn, &Params { clusters: &only_tc, ..params(None) }).unwrap();
    assert_eq!(f.count(), 0, "{f:#?}");
}

#[test]
fn canary_lines_parse_strictly() {
    assert_eq!(
        parse_canary("1700000000\tc1\t77").unwrap(),
        Canary { submitted: 1_700_000_000, cluster: "c1".into(), job_id: 77 }
    );
    assert!(parse_canary("1700000000 c1").unwrap_err().contains("3 fields"));
    assert!(parse_canary("yesterday c1 5").unwrap_err().contains("Unix time"));
    assert!(parse_canary("1700000000 c1 5x").unwrap_err().contains("job id"));
}

#[test]
fn refused_requests_in_the_window_are_reported() {
    let conn = ledger(&complete(&[]));
    let old = runledger_ledger::rejections::Rejection {
        reason: "unauthorized uid".into(),
        count: 3,
        first_time: T0 - 9 * DAY,
        last_time: T0 - 8 * DAY,
        last_peer: "10.0.0.9".into(),
    };
    let recent = runledger_ledger::rejections::Rejection {
        reason: "credential replayed".into(),
        count: 2,
        first_time: T0 + DAY,
        last_time: T0 + 2 * DAY,
        last_peer: "10.0.0.7".into(),
    };
    runledger_ledger::rejections::add(&conn, &[old, recent.clone()]).unwrap();
    let f = audit(&conn, &params(None)).unwrap();
    assert_eq!(f.rejected, vec![recent], "only reasons seen since --since");
    assert_eq!(f.count(), 1);
    assert!(render(&f).contains("credential replayed: 2 (last"), "{}", render(&f));
}

#[test]
fn nodes_that_dropped_records_are_reported_with_their_largest_total() {
    let mut batches = complete(&[]);
    let mut b = job(20).batch(0);
    b.dropped = Some(runledger_record::DropCount { batches: 3, items: 12, bytes: 9000, last: T0 + DAY });
    // The same node later re-sends an older batch carrying a smaller (older) total.
    let mut older = job(21).batch(0);
    older.dropped = Some(runledger_record::DropCount { batches: 1, items: 4, bytes: 3000, last: T0 + 1000 });
    batches.extend([b, older]);
    let conn = ledger(&batches);
    let f = audit(&conn, &params(None)).unwrap();
    assert_eq!(f.dropped.len(), 1, "{:?}", f.dropped);
    let d = &f.dropped[0];
    assert_eq!((d.node.as_str(), d.batches, d.items, d.bytes, d.last_drop), ("n0001", 3, 12, 9000, T0 + DAY));
    assert!(render(&f).contains("n0001: 3 batches (12 records, 9000 bytes) dropped unsent"), "{}", render(&f));
    let later = audit(&conn, &Params { since: T0 + 2 * DAY, ..params(None) }).unwrap();
    assert!(later.dropped.is_empty(), "a drop before --since is not reported");
}

#[test]
fn a_node_of_the_job_that_sent_nothing_is_named_until_its_records_come() {
    // Job 4 ran on n0001..n0003; n0003 died mid-job and sent nothing.
    let mut j = job(4);
    j.nnodes = 3;
    let with_nodelist = |mut b: Batch| {
        for i in &mut b.items {
            if let Item::StepStart(s) = i {
                s.env.insert("SLURM_JOB_NODELIST".into(), "n[0001-0003]".into());
            }
        }
        b
    };
    let mut batches = complete(&[4]);
    batches.push(with_nodelist(j.batch(0)));
    batches.push(with_nodelist(j.batch(1)));
    let f = audit(&ledger(&batches), &params(None)).unwrap();
    let ids = |v: &[NodeJob]| v.iter().map(|j| (j.job_id, j.node.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&f.node_missing), vec![(4, "n0003".to_string())], "{f:#?}");
    assert_eq!(f.count(), 1, "{f:#?}");
    assert!(render(&f).contains("node_missing: 1"), "{}", render(&f));

    // Its flush sends the step records it spooled, without a job end.
    batches.push(keep(with_nodelist(j.batch(2)), |i| !matches!(i, Item::JobEnd(_))));
    let f = audit(&ledger(&batches), &params(None)).unwrap();
    assert!(f.node_missing.is_empty(), "{f:#?}");
    assert_eq!(ids(&f.no_epilog), vec![(4, "n0003".to_string())], "its epilog never ran");
}
