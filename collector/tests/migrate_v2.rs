//! Every query prints what it printed before, whatever the schema underneath: a version 2 ledger
//! and the output of 87 commands on it were recorded with the schema version 2 collector of the
//! commit that adds this file (`synth::fixture_batches` merged at `synth::FIXTURE_END`, TZ=UTC):
//!
//! - `ledger/tests/data/v2-ledger.sql`: that ledger, dumped (Python's `sqlite3` `iterdump`);
//! - `data/v2-outputs.txt`: `$ ARGS` lines, each followed by what `collector ARGS --database
//!   LEDGER` printed.
//!
//! The test loads the dump, lets the collector open it for writing (which migrates it to the
//! current schema) and runs every command again; then does the same on a ledger merged afresh
//! from the same batches by the current merge.

use clap::Parser;
use runledger_collector::cli::{self, Cli};
use runledger_ledger::{db, merge};
use runledger_synth::synth;
use std::path::Path;

fn recorded() -> Vec<(String, String)> {
    let text = include_str!("data/v2-outputs.txt");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.trim_end().to_string(), String::new()));
        } else {
            out.last_mut().expect("the file starts with a command").1.push_str(line);
        }
    }
    out
}

fn run(db: &Path, cmd: &str) -> String {
    let mut args: Vec<String> = vec!["collector".into()];
    args.extend(cmd.split_whitespace().map(str::to_string));
    args.push("--database".into());
    args.push(db.display().to_string());
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let mut out = Vec::new();
    cli::run(cli, &mut out).unwrap_or_else(|e| panic!("{cmd}: {}", e.msg));
    String::from_utf8(out).unwrap()
}

/// Whether two output lines are the same but for numbers in the last of their 17 significant
/// digits: sums of CPU seconds are exact now (the same from the rollups as from a scan, whatever
/// the order), where version 2 added floats in row order; JSON prints every digit.
fn same_but_last_digit(want: &str, got: &str) -> bool {
    let split = |s: &str| -> Vec<String> {
        let mut out = vec![String::new()];
        for c in s.chars() {
            let numeric = c.is_ascii_digit() || c == '.' || c == 'e' || c == '-';
            let last_numeric =
                out.last().and_then(|t| t.chars().last()).is_some_and(|l| l.is_ascii_digit() || l == '.');
            if numeric != last_numeric {
                out.push(String::new());
            }
            out.last_mut().expect("non-empty").push(c);
        }
        out
    };
    let (w, g) = (split(want), split(got));
    w.len() == g.len()
        && w.iter().zip(&g).all(|(a, b)| {
            a == b
                || match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => a.len() >= 16 && (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                    _ => false,
                }
        })
}

/// What was added to the outputs after the recording, taken out again for the comparison:
/// the Python packages (issue #14) — `"packages": []` of every job and `"python":
/// []` of `query job` in JSON, the export's last column `packages` (none in this ledger).
fn without_additions(cmd: &str, got: &str) -> String {
    let csv_export = cmd.starts_with("export --format csv");
    let mut out = String::new();
    for line in got.split_inclusive('\n') {
        let t = line.trim();
        if t == "\"packages\": []," || t == "\"python\": []," {
            continue;
        }
        let body = line.strip_suffix('\n').unwrap_or(line);
        let body = if csv_export {
            body.strip_suffix(",packages").or_else(|| body.strip_suffix(',')).unwrap_or(body).to_string()
        } else {
            body.replace("\"packages\":[],", "")
        };
        out.push_str(&body);
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// What the usage series (#16) added to the outputs, taken out after checking it
/// says "nothing" for these jobs, which were recorded without series: `query job --json`'s
/// `timeline` and `idle` (empty lists) and `summary`'s last column, `idle_core_hours` (0.0).
fn without_timelines(cmd: &str, got: &str) -> String {
    if cmd.starts_with("query job ") {
        let kept: Vec<&str> = got
            .split_inclusive('\n')
            .filter(|l| !matches!(l.trim(), r#""idle": [],"# | r#""timeline": [],"#))
            .collect();
        let n = got.matches(r#""timeline": [],"#).count();
        assert!(
            n == got.matches(r#""idle": [],"#).count() && n == got.matches(r#""timeline""#).count(),
            "{cmd}: {got}"
        );
        return kept.concat();
    }
    if !cmd.starts_with("query summary") {
        return got.to_string();
    }
    let mut out = String::new();
    for line in got.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let kept = if cmd.contains("--json") {
            if body.trim() == r#""idle_core_hours": 0.0,"# {
                continue;
            }
            assert!(!body.contains("idle_core_hours"), "{cmd}: {body}");
            body
        } else {
            let sep = if cmd.contains("--csv") { "," } else { " " };
            let (head, last) = body.rsplit_once(sep).unwrap_or_else(|| panic!("{cmd}: {body}"));
            assert!(
                last == "idle_core_hours"
                    || last.parse::<f64>() == Ok(0.0)
                    || (sep == " " && last.bytes().all(|b| b == b'-')),
                "{cmd}: {body}"
            );
            head.trim_end()
        };
        out.push_str(kept);
        out.push('\n');
    }
    out
}

/// Runs every recorded command on `db`; the message names each that printed something else and
/// its first differing line.
fn compare(db: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for (cmd, want) in recorded() {
        let got = without_timelines(&cmd, &without_additions(&cmd, &run(db, &cmd)));
        let first_difference = want
            .lines()
            .chain(std::iter::repeat("<end>"))
            .zip(got.lines().chain(std::iter::repeat("<end>")))
            .take(want.lines().count().max(got.lines().count()))
            .enumerate()
            .find(|(_, (w, g))| w != g && !same_but_last_digit(w, g));
        if let Some((n, (w, g))) = first_difference {
            bad.push(format!("$ {cmd}\n  line {}:\n  want {w}\n  got  {g}", n + 1));
        }
    }
    bad
}

#[test]
fn a_version_2_ledger_answers_every_query_as_before_once_migrated() {
    // Times print in local time: the outputs were recorded in UTC.
    std::env::set_var("TZ", "UTC");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../../ledger/tests/data/v2-ledger.sql")).unwrap();
        c.execute_batch("PRAGMA user_version = 2").unwrap();
    }
    let conn = db::open_rw(&path).unwrap();
    assert_eq!(db::schema_version(&conn).unwrap(), db::SCHEMA_VERSION);
    drop(conn);
    let bad = compare(&path);
    assert!(bad.is_empty(), "{} of {} commands differ:\n{}", bad.len(), recorded().len(), bad.join("\n"));
}

#[test]
fn a_ledger_merged_afresh_answers_every_query_as_the_version_2_one_did() {
    std::env::set_var("TZ", "UTC");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let conn = db::open_rw(&path).unwrap();
    let batches = synth::fixture_batches();
    let refs: Vec<_> = batches.iter().collect();
    for r in merge::apply_group(&conn, &refs, synth::FIXTURE_END).unwrap() {
        r.unwrap();
    }
    drop(conn);
    let bad = compare(&path);
    assert!(bad.is_empty(), "{} of {} commands differ:\n{}", bad.len(), recorded().len(), bad.join("\n"));
}
