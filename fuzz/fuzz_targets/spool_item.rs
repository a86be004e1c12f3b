//! The epilog reading spool files and outbox batches: garbage, truncated or hostile JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use runledger_record::{Batch, Item};

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = serde_json::from_slice::<Item>(data) {
        let _ = (item.cluster(), item.job_id(), item.node(), item.span(), item.kind());
        // What is read must serialize back and read the same.
        let again: Item = serde_json::from_slice(&serde_json::to_vec(&item).unwrap()).unwrap();
        assert_eq!(again, item);
    }
    let _ = Batch::from_json(data);
});
