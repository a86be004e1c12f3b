//! `cargo run --release -p runledger-logparse --example scan -- FILE...`: analyses each file
//! whole (one window) with the built-in rules (plus `LOGPARSE_RULES=site.toml` if set) and
//! prints one JSON object per file with the analysis and the time it took.

use std::path::Path;
use std::time::Instant;

use logparse::{analyze, Rules, Window};

fn main() {
    let t0 = Instant::now();
    let rules = match std::env::var_os("LOGPARSE_RULES") {
        Some(p) => match Rules::load_site(Path::new(&p)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        None => Rules::builtin(),
    };
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut status = 0;
    for arg in std::env::args_os().skip(1) {
        let bytes = match std::fs::read(&arg) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", Path::new(&arg).display());
                status = 1;
                continue;
            }
        };
        let t = Instant::now();
        let a = analyze(&rules, &Window::whole(&bytes));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let out = serde_json::json!({
            "file": Path::new(&arg).display().to_string(),
            "bytes": bytes.len(),
            "analyze_ms": (ms * 1000.0).round() / 1000.0,
            "rules_compile_ms": (compile_ms * 1000.0).round() / 1000.0,
            "analysis": a,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    std::process::exit(status);
}
