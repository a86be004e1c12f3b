//! `collector query` arguments: dates (-S/-E), job ids, tags, modules, states, names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use runledger_collector::questions::query::filter;
use runledger_collector::questions::timefmt;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = timefmt::parse_time_arg(s);
    let _ = filter::parse_job_sel(s);
    let _ = filter::parse_tag(s);
    let _ = filter::parse_module(s);
    let _ = filter::parse_state(s);
    let _ = filter::parse_outcome(s);
    let _ = filter::parse_category(s);
    let _ = filter::parse_name(s);
});
