//! How long the solver-log rules take to load: `cargo run --release -p runledger-epilog --example rules_cost`.
//! (Each epilog run is a fresh process, so it pays this once per job that has a log to parse.)

use std::time::Instant;

fn only(keep: &[&str]) -> std::collections::BTreeSet<String> {
    keep.iter().map(|s| s.to_string()).collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    // What the epilog pays for a plain job (nothing a rule knows) and for a LAMMPS log: the
    // pre-check, and then only the rules needed (epilog/src/rules.rs).
    let site = std::path::Path::new("/nonexistent/parsers.toml");
    for _ in 0..2 {
        let t = Instant::now();
        let l = runledger_epilog::rules::rules_for(site, &[b"hello from job 1\nstep done\n"]);
        let plain = ms(t);
        let t = Instant::now();
        let m = runledger_epilog::rules::rules_for(site, &[b"LAMMPS (29 Sep 2021)\nTotal wall time: 0:00:01\n"]);
        let lmp = ms(t);
        println!(
            "epilog rules_for: plain job {plain:.2} ms (compiled: {:?}); LAMMPS log {lmp:.1} ms (compiled: {:?})",
            l.compiled, m.compiled
        );
    }
    let big = thermo();
    let wins: Vec<&[u8]> = (0..8).map(|_| big.as_slice()).collect();
    let t = Instant::now();
    let l = runledger_epilog::rules::rules_for(site, &wins);
    println!("epilog rules_for: 8 x 1 MiB thermo windows {:.1} ms (compiled: {:?})", ms(t), l.compiled);
    let t = Instant::now();
    let r = logparse::Rules::builtin();
    let all = ms(t);
    let (text, origin) = (logparse::BUILTIN_TOML, "builtin.toml");
    let t = Instant::now();
    let _ = logparse::Rules::from_toml_part(text, origin, true, Some(&only(&[]))).unwrap();
    let generic = ms(t);
    let t = Instant::now();
    let _ = logparse::Rules::from_toml_part(text, origin, true, Some(&only(&["LAMMPS"]))).unwrap();
    let lammps = ms(t);
    println!(
        "Rules::builtin(): {all:.1} ms ({} programs); generic only: {generic:.1} ms; generic+LAMMPS: {lammps:.1} ms",
        r.program_names().len()
    );
}

/// The pre-check's cost over a thermo-heavy 1 MiB window (what a LAMMPS log's tail looks like).
fn thermo() -> Vec<u8> {
    let mut v = b"LAMMPS (29 Sep 2021)\n".to_vec();
    let mut i = 0u64;
    while v.len() < 1 << 20 {
        v.extend_from_slice(
            format!("{:10}   {:12.8}   {:12.8}   0   {:12.8}   {:12.8}\n", i * 50, 1.6, -4.79, -2.27, 5.67).as_bytes(),
        );
        i += 1;
    }
    v.extend_from_slice(b"Loop time of 1.0 on 8 procs for 1000 steps with 4000 atoms\nTotal wall time: 0:20:35\n");
    v
}
