//! Node binding: which batches a credential from a given address may carry.

use super::*;
use runledger_synth::Sample;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A resolver that knows n0001 as 10.0.0.1 and n0002 as 10.0.0.2, counting its calls.
fn dns(calls: Arc<AtomicUsize>) -> Resolver {
    Box::new(move |node: &str| {
        calls.fetch_add(1, Ordering::SeqCst);
        match node {
            "n0001" => Ok(vec![IpAddr::V4(A)]),
            "n0002" => Ok(vec!["fe80::1".parse().unwrap(), IpAddr::V4(B)]),
            "n0003" => Ok(vec!["::ffff:10.0.0.3".parse().unwrap()]),
            _ => Err("Name or service not known".into()),
        }
    })
}

fn binding(fixed: &[(&str, &str)]) -> (Binding, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let fixed: BTreeMap<String, String> = fixed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    (Binding::from_config("address", &fixed, dns(calls.clone())).unwrap(), calls)
}

/// Job `id`'s batch from node `n000<node+1>` of cluster `cluster`.
fn batch(cluster: &str, id: u32, node: u32) -> Batch {
    Sample::new(cluster, id, 1_700_000_000).batch(node)
}

fn reason(r: Result<(), Reject>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => e.reason(),
    }
}

#[test]
fn off_accepts_every_signed_batch() {
    let off = Binding::off();
    assert_eq!(off.mode(), Mode::Off);
    for origin in [Some(A), Some(B), None] {
        assert_eq!(reason(off.check(&batch("c", 1, 0), origin)), "ok");
    }
    let cfg = BTreeMap::new();
    assert_eq!(Binding::from_config("off", &cfg, Box::new(getaddrinfo)).unwrap().mode(), Mode::Off);
    assert_eq!(runledger_record::config::CollectorConfig::default().node_binding, "off", "off is the default");
}

#[test]
fn a_node_may_send_its_own_records_only() {
    let (b, _) = binding(&[]);
    assert_eq!(reason(b.check(&batch("c", 1, 0), Some(A))), "ok");
    assert_eq!(reason(b.check(&batch("c", 1, 1), Some(B))), "ok", "any of a node's addresses");
    // n0002's credential carrying n0001's records: refused, saying who, from where, and why.
    let e = b.check(&batch("c", 1, 0), Some(B)).unwrap_err();
    assert_eq!(e.reason(), "node address mismatch");
    let text = e.to_string();
    assert!(text.contains("n0001") && text.contains("10.0.0.2") && text.contains("10.0.0.1"), "{text}");
    assert!(text.contains("node_binding"), "{text}");
    // An IPv4-mapped IPv6 address is the IPv4 address.
    assert_eq!(reason(b.check(&batch("c", 1, 2), Some(Ipv4Addr::new(10, 0, 0, 3)))), "ok");
}

#[test]
fn every_node_a_batch_names_is_checked_not_only_its_sender() {
    let (b, _) = binding(&[]);
    // Sent by n0001, but one item claims to be n0002's.
    let mut forged = batch("c", 1, 0);
    forged.items.extend(batch("c", 2, 1).items);
    assert_eq!(forged.sender, "n0001");
    assert_eq!(reason(b.check(&forged, Some(A))), "node address mismatch");
    assert_eq!(reason(b.check(&forged, Some(B))), "node address mismatch");
    // n0001's records under a sender name that is not n0001's.
    let mut lying = batch("c", 1, 0);
    lying.sender = "n0002".into();
    assert_eq!(reason(b.check(&lying, Some(A))), "node address mismatch");
    // A batch with no items still names its sender.
    let mut empty = batch("c", 1, 1);
    empty.items.clear();
    assert_eq!(reason(b.check(&empty, Some(A))), "node address mismatch");
    assert_eq!(reason(b.check(&empty, Some(B))), "ok");
}

#[test]
fn unknown_nodes_and_unknown_origins_are_refused() {
    let (b, _) = binding(&[]);
    let mut b9 = batch("c", 1, 0);
    b9.sender = "ghost".into();
    for i in &mut b9.items {
        match i {
            runledger_record::Item::StepStart(s) => s.node = "ghost".into(),
            runledger_record::Item::StepEnd(s) => s.node = "ghost".into(),
            runledger_record::Item::JobEnd(j) => j.node = "ghost".into(),
        }
    }
    let e = b.check(&b9, Some(A)).unwrap_err();
    assert_eq!(e.reason(), "node unresolvable");
    assert!(e.to_string().contains("ghost") && e.to_string().contains("node_addresses"), "{e}");
    let e = b.check(&batch("c", 1, 0), None).unwrap_err();
    assert_eq!(e.reason(), "no origin address");
    assert!(e.to_string().contains("--origin"), "{e}");
}

#[test]
fn node_addresses_override_the_name_per_cluster() {
    let (b, calls) = binding(&[("n0001", "10.9.0.1"), ("far/n0001", "10.8.0.1, 10.8.0.2")]);
    assert_eq!(reason(b.check(&batch("c", 1, 0), Some(Ipv4Addr::new(10, 9, 0, 1)))), "ok");
    assert_eq!(reason(b.check(&batch("c", 1, 0), Some(A))), "node address mismatch", "NodeAddr, not the name");
    assert_eq!(reason(b.check(&batch("far", 1, 0), Some(Ipv4Addr::new(10, 8, 0, 2)))), "ok");
    assert_eq!(reason(b.check(&batch("far", 1, 0), Some(Ipv4Addr::new(10, 9, 0, 1)))), "node address mismatch");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "mapped nodes are never resolved");
}

#[test]
fn names_are_resolved_once_per_cache_period() {
    let (b, calls) = binding(&[]);
    for _ in 0..5 {
        assert_eq!(reason(b.check(&batch("c", 1, 0), Some(A))), "ok");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let none = BTreeMap::new();
    let e = Binding::from_config("addr", &none, Box::new(getaddrinfo)).unwrap_err();
    assert!(e.contains("\"addr\"") && e.contains("\"address\""), "{e}");
    for value in ["10.0.0.300", "", "cn1"] {
        let m: BTreeMap<String, String> = [("n1".to_string(), value.to_string())].into();
        let e = Binding::from_config("address", &m, Box::new(getaddrinfo)).unwrap_err();
        assert!(e.contains("node_addresses") && e.contains("n1"), "{value}: {e}");
    }
}

#[test]
fn getaddrinfo_resolves_like_slurm() {
    assert!(getaddrinfo("localhost").unwrap().iter().any(|a| a.is_loopback()));
    assert!(getaddrinfo("no-such-node.invalid").is_err());
}

#[test]
fn a_refusal_is_counted_in_the_ledger_under_its_reason() {
    let (b, _) = binding(&[]);
    let e = b.check(&batch("c", 1, 0), Some(B)).unwrap_err();
    let dir = tempfile::tempdir().unwrap();
    let conn = runledger_ledger::db::open_rw(&dir.path().join("l.db")).unwrap();
    let tally = runledger_ledger::rejections::Tally::default();
    tally.add(e.reason(), "10.0.0.2:40000".parse().unwrap(), 1_700_000_000);
    tally.flush(&conn).unwrap();
    let rows = runledger_ledger::rejections::read(&conn).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].reason.as_str(), rows[0].count, rows[0].last_peer.as_str()),
        ("node address mismatch", 1, "10.0.0.2")
    );
}
