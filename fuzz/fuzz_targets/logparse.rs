//! The solver-log parsers over any bytes, as head and tail windows of one file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use logparse::{analyze, Rules, Window};
use std::sync::OnceLock;

static RULES: OnceLock<Rules> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rules = RULES.get_or_init(Rules::builtin);
    let cut = data.first().map(|&b| b as usize * data.len() / 256).unwrap_or(0).min(data.len());
    let (head, tail) = data.split_at(cut);
    let a = analyze(rules, &Window { head, tail, truncated_between: cut % 2 == 1 });
    let _ = a.to_facts("/fuzz/log");
    let _ = analyze(rules, &Window::whole(data));
});
