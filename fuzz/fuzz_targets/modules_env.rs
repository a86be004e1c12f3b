//! The plugin's environment handling: module strings and the env filter over arbitrary bytes.
//! Input: NUL-separated fields; the first three are LOADEDMODULES, _LMFILES_ and MODULEPATH, all
//! of them are also environment entries.
#![no_main]
use libfuzzer_sys::fuzz_target;
use runledger_record::env::{EnvFilter, MAX_TOTAL_BYTES, MAX_VARS};
use runledger_record::modules;

fuzz_target!(|data: &[u8]| {
    let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let s = |i: usize| fields.get(i).map(|f| String::from_utf8_lossy(f).into_owned());
    let (a, b, c) = (s(0), s(1), s(2));
    for m in modules::parse_loaded(a.as_deref(), b.as_deref(), c.as_deref()) {
        assert!(!m.name.is_empty());
        let _ = modules::parse_spec(&m.full_name());
    }
    let env = EnvFilter::default().apply(fields.iter().copied());
    assert!(env.len() <= MAX_VARS + 1);
    let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(bytes <= MAX_TOTAL_BYTES + 64);
    if let Some(spec) = s(3) {
        let f = EnvFilter::from_lists(Some(&spec), s(4).as_deref());
        let _ = f.apply(fields.iter().copied());
    }
});
