//! What `collector serve` does with the bytes of a connection before MUNGE: two frames, then
//! the batch JSON and its validation. Any bytes: an error, never a panic or an allocation over
//! the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use runledger_record::{wire, Batch};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if let Ok((_cred, body)) = wire::read_request(&mut r, 1 << 20) {
        let _ = wire::digest(&body);
        if let Ok(batch) = Batch::from_json(&body) {
            let _ = runledger_ledger::merge::validate(&batch);
        }
    }
    let _ = serde_json::from_slice::<wire::Reply>(data);
});
