//! The solver-log commands as an admin runs them: the real `collector` binary, its output and
//! exit codes (`collector parse`, `query errors`, `query efficiency`, `query jobs --category`).

use runledger_ledger::merge::apply_group;
use runledger_record::JobState;
use runledger_synth::Sample;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary with an empty configuration (built-in defaults), whatever this host has in
/// /etc/runledger.
fn collector(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("runledger.toml");
    std::fs::write(&conf, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(args)
        .env("RUNLEDGER_CONF", &conf)
        .output()
        .expect("run collector")
}

fn corpus(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../logparse/tests/corpus").join(rel).display().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn parse_reads_corpus_logs_and_reports_bad_input_with_exit_2() {
    let ok = corpus("lammps/melt-success-4procs.log");
    let missing = corpus("lammps/potential-file-missing.log");
    let out = collector(&["parse", "--builtin", "--json", &ok, &missing]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["program"], "LAMMPS");
    assert_eq!(v[0]["outcome"], "success");
    assert_eq!(v[1]["outcome"], "failed");
    assert_eq!(v[1]["category"], "file_not_found");

    let out = collector(&["parse", "--builtin", "/nonexistent/log.lammps", &ok]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("program   LAMMPS"), "the readable file is still shown");
    assert!(text(&out.stderr).contains("cannot read /nonexistent/log.lammps"), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("parsers.toml");
    std::fs::write(&rules, "[[program]]\nname = \"X\"\ndetect = '(oops'\n").unwrap();
    let out = collector(&["parse", "--rules", rules.to_str().unwrap(), &ok]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("parsers.toml:3") && err.contains("\"X\""), "{err}");
}

fn ledger(dir: &Path) -> PathBuf {
    let path = dir.join("ledger.db");
    let conn = runledger_ledger::db::open_rw(&path).unwrap();
    let mut jobs = Vec::new();
    let mut a = Sample::new("tc", 1, 1_700_000_000);
    a.set_log("LAMMPS", "success", None, None, &[("mpi_ranks", "4"), ("steps", "1000"), ("atoms", "4000")]);
    jobs.push(a);
    let mut b = Sample::new("tc", 2, 1_700_000_100);
    b.state = JobState::Failed;
    b.set_log("LAMMPS", "failed", Some("input_error"), Some("ERROR: Unknown command: pair_styel"), &[]);
    jobs.push(b);
    let mut c = Sample::new("tc", 3, 1_700_000_200);
    c.state = JobState::Timeout;
    jobs.push(c);
    let batches: Vec<_> = jobs.iter().map(|s| s.batch(0)).collect();
    let refs: Vec<_> = batches.iter().collect();
    for r in apply_group(&conn, &refs, 1_700_001_000).unwrap() {
        r.unwrap();
    }
    path
}

#[test]
fn queries_on_the_log_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let db = db.to_str().unwrap();

    let out = collector(&["query", "--database", db, "jobs", "--category", "input_error", "-o", "jobid,program,error"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("2     LAMMPS  ERROR: Unknown command: pair_styel"), "{t}");

    let out = collector(&["query", "--database", db, "jobs", "--category", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("numerical_instability"), "lists the accepted values");

    let png = dir.path().join("errors.png");
    let out = collector(&["query", "--database", db, "errors", "--plot", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.starts_with("2 of 3 matching jobs failed"), "{t}");
    assert!(t.contains("input_error") && t.contains("time_limit"), "{t}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));

    let out = collector(&["query", "--database", db, "errors", "--plot", "/nonexistent/dir/x.svg"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let svg = dir.path().join("eff.svg");
    let out = collector(&["query", "--database", db, "efficiency", "--json", "--plot", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groups"][0]["ranks"], "4");
    assert!((v["jobs"][0]["efficiency"].as_f64().unwrap() - 30.0 * 4.0 / 4e6).abs() < 1e-12);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}
