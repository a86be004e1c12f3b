//! Every file listed in `tests/corpus/MANIFEST.tsv` (real public logs, see its README.md) must
//! give exactly the facts the manifest lists for it.
//!
//! # How manifest keys map to what the parser reports
//!
//! The manifest was written by a person reading each log; some values carry a note in
//! parentheses or combine several facts. The mapping below is exact and strict: every manifest
//! key is either checked (all of the parser keys it maps to must be present with the value) or
//! listed in [`OUT_OF_SCOPE`] with the reason. Numbers are compared as numbers, equal when
//! rounded to the decimals the manifest prints (so `180.41` accepts the summed `180.4133`).
//! "program", "outcome", "failure_category" and "error" are the analysis' own `program`,
//! `outcome`, `category` and `evidence` (as `to_facts` reports them).
//!
//! | manifest key | parser facts | comparison |
//! | --- | --- | --- |
//! | program, version, revision, script, error_routine, killed_signal_name, outcome, failure_category, processor_grid, started, missing_file, run_mode, scheduler, node, cancelled_at, job_step | same key | text (a trailing "(note)" is dropped) |
//! | error | error | text (a trailing "(printed ...)" note is dropped); the OpenFOAM file's value joins three log lines as "FOAM FATAL IO ERROR: MESSAGE (FILE ENTRY at line N)": error = MESSAGE (the line that shows it), error_file ends with "FILE.ENTRY", error_line = N |
//! | killed_signal, mpi_ranks, threads, nodes, atoms, bonds, cells, points, faces, k_points, pp_ranks, pme_ranks, steps, steps_requested, failed_at_step, iterations, rsl_task, io_tasks, batches_reached, pimple_iterations, oom_kill_events, job_id | same key | number (first word; a "(note)" is dropped) |
//! | mpi_ranks "8 (2 x 4 tasks)" (WRF) | mpi_ranks, task_grid | 8, "2x4" |
//! | last_step | steps | number (`steps` is the last step reached) |
//! | loop_seconds, wall_seconds, cpu_seconds, core_seconds, main_step_seconds_sum, script_wall_seconds | same key | number, unit "s" |
//! | cpu_use "96.7%" | cpu_use | 96.7, unit "%" |
//! | performance "V U, W timesteps/s" | performance, steps_per_second | V unit U; W unit "timesteps/s" |
//! | performance "V U (W U2)" | performance, performance_inverse | V unit U; W unit U2 |
//! | total_energy "V U" | total_energy | V unit U |
//! | step0_potential_energy | initial_potential_energy, initial_step | V; 0 (first row of the thermo table) |
//! | last_command | last_command | text; a value with "..." is an abbreviation: the text before it, spaces collapsed, must start the parser's value |
//! | launcher_exit "L: process P exit code C" | launcher, launcher_failed_process, launcher_exit_code | L, P, C |
//! | tcp_connection_warnings "N (local host H)" | tcp_connection_warnings, tcp_warning_local_host | N, H |
//! | mpi_abort "MPI_ABORT invoked on rank R with errorcode C" | mpi_abort_rank, mpi_abort_errorcode | R, C |
//! | time_steps "N (at time T)" | time_steps, last_time | N, T |
//! | simulated_period "A to B" | simulated_start, simulated_end | A, B |
//! | domain "74x61 (...)" | domain | "74x61" |
//! | warnings 'N lines "TEXT"' | warnings, warning_first | N; the first warning line with each number written N equals TEXT |
//! | killed_rank "R on node H, signal S (NAME)" | killed_rank, killed_node, killed_signal, killed_signal_name | R, H, S, NAME |
//! | companion | (job level) | `combine` of the file and its companion gives the failure the stderr file shows |
//!
//! Strict the other way too: a parser fact whose key is one of the keys above but that the
//! manifest does not list for that file is a failure, unless [`EXTRA_OK`] lists it with the
//! reason (the manifest leaves out some facts the log does show).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use logparse::{analyze, combine, Analysis, Category, Outcome, Rules, Window};

/// Manifest keys that are not facts of the log, with why.
const OUT_OF_SCOPE: &[(&str, &str)] = &[
    (
        "platform",
        "\"Windows build (MSMPI)\" is a reader's inference from a plugin path (C:\\Users\\...\\LAMMPS 64-bit 29Aug2024-MSMPI); the log states no platform",
    ),
    ("excerpt", "describes how the corpus file was cut from its source, not the log's content"),
];

/// Facts the parser reports that the manifest leaves out, per file, with why they are right.
const EXTRA_OK: &[(&str, &str, &str)] = &[
    ("lammps/melt-success-4procs.log", "steps_requested", "the input echo `run 250` shows it"),
    ("lammps/melt-success-4procs.log", "initial_step", "the thermo table's first row is step 0"),
    ("lammps/bond-atoms-missing.log", "last_command", "the log ends with `Last command: run 2000000`"),
    ("lammps/potential-file-missing.log", "processor_grid", "the log shows `1 by 1 by 1 MPI processor grid`"),
    ("gromacs/md-success-512ranks.log", "steps_requested", "the parameter dump shows `nsteps = 500000`"),
    (
        "openfoam/pimpleFoam-fatal-io-error.log",
        "warnings",
        "Open MPI's `WARNING: Linux kernel CMA support was requested` line is a warning line",
    ),
    (
        "openfoam/pimpleFoam-fatal-io-error.log",
        "warning_first",
        "Open MPI's `WARNING: Linux kernel CMA support was requested` line is a warning line",
    ),
    (
        "slurm/openmc-oom.job.err.tail",
        "launcher",
        "`mpiexec noticed that process rank 7 ... exited on signal 9` names Open MPI's mpiexec",
    ),
    (
        "slurm/wien2k-oom-kill.std_out_err",
        "launcher",
        "`mpirun noticed that process rank 7 ... exited on signal 9` names Open MPI's mpirun",
    ),
];

/// Every parser key the mapping above can check (for the strictness the other way).
const MAPPED_KEYS: &[&str] = &[
    "program",
    "version",
    "revision",
    "script",
    "error_routine",
    "outcome",
    "failure_category",
    "error",
    "error_file",
    "error_line",
    "processor_grid",
    "started",
    "missing_file",
    "run_mode",
    "scheduler",
    "node",
    "cancelled_at",
    "job_step",
    "mpi_ranks",
    "task_grid",
    "threads",
    "nodes",
    "atoms",
    "bonds",
    "cells",
    "points",
    "faces",
    "k_points",
    "pp_ranks",
    "pme_ranks",
    "steps",
    "steps_requested",
    "failed_at_step",
    "iterations",
    "rsl_task",
    "io_tasks",
    "batches_reached",
    "pimple_iterations",
    "oom_kill_events",
    "job_id",
    "loop_seconds",
    "wall_seconds",
    "cpu_seconds",
    "core_seconds",
    "main_step_seconds_sum",
    "script_wall_seconds",
    "cpu_use",
    "performance",
    "steps_per_second",
    "performance_inverse",
    "total_energy",
    "initial_potential_energy",
    "initial_step",
    "last_command",
    "launcher",
    "launcher_failed_process",
    "launcher_exit_code",
    "tcp_connection_warnings",
    "tcp_warning_local_host",
    "mpi_abort_rank",
    "mpi_abort_errorcode",
    "time_steps",
    "last_time",
    "simulated_start",
    "simulated_end",
    "domain",
    "warnings",
    "warning_first",
    "killed_rank",
    "killed_node",
    "killed_signal",
    "killed_signal_name",
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

struct Row {
    path: String,
    bytes: usize,
    facts: Vec<(String, String)>,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (c_path, c_bytes, c_facts) = (col("local_path"), col("bytes"), col("facts"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            let facts = cells[c_facts]
                .split("; ")
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad fact {kv:?}"));
                    (k.trim().to_string(), v.trim().to_string())
                })
                .collect();
            Row { path: cells[c_path].to_string(), bytes: cells[c_bytes].parse().expect("bytes"), facts }
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Want {
    Text(String),
    /// The parser's value must start with this (whitespace collapsed on both sides).
    Prefix(String),
    EndsWith(String),
    /// A number, and the decimals the manifest printed.
    Number(f64, usize),
}

#[derive(Debug, Clone)]
struct Expect {
    key: String,
    want: Want,
    unit: Option<Option<String>>,
}

fn text(key: &str, v: &str) -> Expect {
    Expect { key: key.into(), want: Want::Text(v.into()), unit: None }
}

fn num(key: &str, v: &str) -> Expect {
    let v = v.trim();
    let value: f64 = v.parse().unwrap_or_else(|_| panic!("{key}: {v:?} is not a number"));
    let decimals = v.split_once('.').map_or(0, |(_, f)| f.chars().take_while(char::is_ascii_digit).count());
    Expect { key: key.into(), want: Want::Number(value, decimals), unit: None }
}

fn with_unit(mut e: Expect, unit: &str) -> Expect {
    e.unit = Some(Some(unit.into()));
    e
}

/// The value without a trailing "(note)".
fn strip_note(v: &str) -> &str {
    match v.find(" (") {
        Some(i) if v.ends_with(')') => v[..i].trim(),
        _ => v.trim(),
    }
}

fn first_word(v: &str) -> &str {
    v.split_whitespace().next().unwrap_or("")
}

fn split2<'a>(v: &'a str, sep: &str, what: &str) -> (&'a str, &'a str) {
    v.split_once(sep).unwrap_or_else(|| panic!("{what}: {v:?} has no {sep:?}"))
}

/// What the manifest's `key=value` means in parser facts (see the table in the module docs).
fn expectations(file: &str, key: &str, v: &str) -> Vec<Expect> {
    match key {
        "program" | "version" | "revision" | "script" | "outcome" | "failure_category" | "processor_grid"
        | "started" | "missing_file" | "run_mode" | "scheduler" | "node" | "cancelled_at" | "job_step"
        | "error_routine" | "killed_signal_name" => {
            vec![text(key, strip_note(v))]
        }
        "error" if file.starts_with("openfoam/") => {
            // "FOAM FATAL IO ERROR: MESSAGE (FILE ENTRY at line N)"
            let (head, loc) = split2(v, " (", key);
            let message = head.strip_prefix("FOAM FATAL IO ERROR: ").expect("OpenFOAM error header");
            let loc = loc.strip_suffix(')').expect("closing parenthesis");
            let (place, line) = split2(loc, " at line ", key);
            let (file_name, entry) = split2(place, " ", key);
            vec![
                text("error", message),
                Expect { key: "error_file".into(), want: Want::EndsWith(format!("{file_name}.{entry}")), unit: None },
                text("error_line", line),
            ]
        }
        "error" if v.ends_with(')') && v.contains(" (printed ") => vec![text(key, strip_note(v))],
        "error" => vec![text(key, v)],
        "mpi_ranks" if v.contains(" x ") => {
            // "8 (2 x 4 tasks)"
            let note = v.split_once('(').expect("note").1.trim_end_matches(')').replace(" tasks", "");
            let (x, y) = split2(&note, " x ", key);
            vec![num(key, first_word(v)), text("task_grid", &format!("{}x{}", x.trim(), y.trim()))]
        }
        "mpi_ranks" | "threads" | "nodes" | "atoms" | "bonds" | "cells" | "points" | "faces" | "k_points"
        | "pp_ranks" | "pme_ranks" | "steps" | "steps_requested" | "failed_at_step" | "iterations" | "rsl_task"
        | "io_tasks" | "batches_reached" | "pimple_iterations" | "oom_kill_events" | "job_id" | "killed_signal" => {
            vec![num(key, first_word(v))]
        }
        "last_step" => vec![num("steps", first_word(v))],
        "loop_seconds"
        | "wall_seconds"
        | "cpu_seconds"
        | "core_seconds"
        | "main_step_seconds_sum"
        | "script_wall_seconds" => {
            vec![with_unit(num(key, first_word(v)), "s")]
        }
        "cpu_use" => vec![with_unit(num(key, v.trim_end_matches('%')), "%")],
        "performance" => {
            let main = strip_note(v);
            let mut out = Vec::new();
            let mut parts = main.split(", ");
            let (val, unit) = split2(parts.next().expect("value"), " ", key);
            out.push(with_unit(num("performance", val), unit));
            for p in parts {
                let (val, unit) = split2(p, " ", key);
                assert_eq!(unit, "timesteps/s", "unexpected second performance figure {p:?}");
                out.push(with_unit(num("steps_per_second", val), unit));
            }
            if main.len() < v.len() {
                let note = v[main.len()..].trim().trim_start_matches('(').trim_end_matches(')');
                let (val, unit) = split2(note, " ", key);
                out.push(with_unit(num("performance_inverse", val), unit));
            }
            out
        }
        "total_energy" => {
            let (val, unit) = split2(v, " ", key);
            vec![with_unit(num(key, val), unit)]
        }
        "step0_potential_energy" => vec![num("initial_potential_energy", v), num("initial_step", "0")],
        "last_command" => match v.find("...") {
            Some(i) => vec![Expect {
                key: key.into(),
                want: Want::Prefix(v[..i].split_whitespace().collect::<Vec<_>>().join(" ")),
                unit: None,
            }],
            None => vec![text(key, v)],
        },
        "launcher_exit" => {
            let (launcher, rest) = split2(v, ": process ", key);
            let (process, code) = split2(rest, " exit code ", key);
            vec![text("launcher", launcher), text("launcher_failed_process", process), num("launcher_exit_code", code)]
        }
        "tcp_connection_warnings" => {
            let host = split2(v, "(local host ", key).1.trim_end_matches(')');
            vec![num(key, first_word(v)), text("tcp_warning_local_host", host)]
        }
        "mpi_abort" => {
            let rest = v.strip_prefix("MPI_ABORT invoked on rank ").expect("mpi_abort form");
            let (rank, code) = split2(rest, " with errorcode ", key);
            vec![num("mpi_abort_rank", rank), num("mpi_abort_errorcode", code)]
        }
        "time_steps" => {
            let t = split2(v, "(at time ", key).1.trim_end_matches(')');
            vec![num(key, first_word(v)), num("last_time", t)]
        }
        "simulated_period" => {
            let (a, b) = split2(v, " to ", key);
            vec![text("simulated_start", a), text("simulated_end", b)]
        }
        "domain" => vec![text(key, strip_note(v))],
        "warnings" => {
            let quoted = split2(v, "\"", key).1.trim_end_matches('"');
            vec![num(key, first_word(v)), text("warning_first", quoted)]
        }
        "killed_rank" => {
            // "7 on node hpc385, signal 9 (Killed)"
            let (rank, rest) = split2(v, " on node ", key);
            let (node, rest) = split2(rest, ", signal ", key);
            let (signal, name) = split2(rest, " (", key);
            vec![
                num("killed_rank", rank),
                text("killed_node", node),
                num("killed_signal", signal),
                text("killed_signal_name", name.trim_end_matches(')')),
            ]
        }
        other => panic!("{file}: manifest key {other:?} has no mapping and is not listed as out of scope"),
    }
}

fn numbers_as_n(s: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

fn check(file: &str, got: &BTreeMap<String, (String, Option<String>)>, e: &Expect) -> Result<(), String> {
    let Some((value, unit)) = got.get(&e.key) else {
        return Err(format!("{file}: {} missing (want {:?})", e.key, e.want));
    };
    let value = if e.key == "warning_first" { numbers_as_n(value) } else { value.clone() };
    let ok = match &e.want {
        Want::Text(t) => value == *t,
        Want::EndsWith(t) => value.ends_with(t.as_str()),
        Want::Prefix(t) => value.split_whitespace().collect::<Vec<_>>().join(" ").starts_with(t.as_str()),
        Want::Number(want, decimals) => match value.parse::<f64>() {
            Ok(g) => {
                (g - want).abs() <= 0.5 * 10f64.powi(-(*decimals as i32)) * (1.0 + 1e-9) + f64::EPSILON * want.abs()
            }
            Err(_) => false,
        },
    };
    if !ok {
        return Err(format!("{file}: {} = {value:?}, want {:?}", e.key, e.want));
    }
    if let Some(u) = &e.unit {
        if unit != u {
            return Err(format!("{file}: {} unit {unit:?}, want {u:?}", e.key));
        }
    }
    Ok(())
}

fn analyse(rules: &Rules, path: &str) -> Analysis {
    let bytes = std::fs::read(corpus().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    analyze(rules, &Window::whole(&bytes))
}

fn facts_of(a: &Analysis) -> BTreeMap<String, (String, Option<String>)> {
    a.to_facts("corpus").into_iter().map(|f| (f.key, (f.value, f.unit))).collect()
}

/// The field of the accuracy table a parser key counts toward.
fn field_of(key: &str) -> &'static str {
    match key {
        "program" => "program",
        "version" | "revision" => "version",
        "outcome" => "outcome",
        "failure_category" => "category",
        "error" | "error_file" | "error_line" => "evidence",
        "mpi_ranks" | "task_grid" | "threads" | "nodes" | "pp_ranks" | "pme_ranks" | "processor_grid" => "ranks",
        "steps" | "steps_requested" | "failed_at_step" | "iterations" | "batches_reached" | "pimple_iterations"
        | "time_steps" | "last_time" => "steps",
        "atoms" | "bonds" | "cells" | "points" | "faces" | "k_points" | "domain" => "size",
        "wall_seconds"
        | "cpu_seconds"
        | "core_seconds"
        | "loop_seconds"
        | "main_step_seconds_sum"
        | "script_wall_seconds" => "wall",
        _ => "other",
    }
}

/// The keys of a file's verdict.
const VERDICT_KEYS: [&str; 3] = ["program", "outcome", "failure_category"];

const FIELDS: [&str; 10] =
    ["program", "version", "outcome", "category", "evidence", "ranks", "steps", "size", "wall", "other"];

/// Right/checked per program (the manifest's program, else the file's folder) and field.
#[derive(Default)]
struct Accuracy {
    cells: BTreeMap<String, BTreeMap<&'static str, (usize, usize)>>,
}

impl Accuracy {
    fn add(&mut self, program: &str, key: &str, ok: bool) {
        let c = self.cells.entry(program.to_string()).or_default().entry(field_of(key)).or_default();
        c.0 += usize::from(ok);
        c.1 += 1;
    }

    /// The table `cargo test -p runledger-logparse --test corpus -- --nocapture` prints.
    fn table(&self, files: &BTreeMap<String, usize>) -> String {
        let mut out = format!("{:<22} {:>5}", "program", "files");
        for f in FIELDS {
            out.push_str(&format!(" {f:>9}"));
        }
        out.push('\n');
        let mut total: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (p, row) in &self.cells {
            out.push_str(&format!("{p:<22} {:>5}", files.get(p).copied().unwrap_or(0)));
            for f in FIELDS {
                match row.get(f) {
                    Some((ok, n)) => {
                        out.push_str(&format!(" {:>9}", format!("{ok}/{n}")));
                        let t = total.entry(f).or_default();
                        t.0 += ok;
                        t.1 += n;
                    }
                    None => out.push_str(&format!(" {:>9}", "-")),
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("{:<22} {:>5}", "all", files.values().sum::<usize>()));
        for f in FIELDS {
            let (ok, n) = total.get(f).copied().unwrap_or((0, 0));
            out.push_str(&format!(" {:>9}", format!("{ok}/{n}")));
        }
        out.push('\n');
        out
    }
}

#[test]
fn every_manifest_file_gives_its_facts() {
    let rules = Rules::builtin();
    let rows = manifest();
    assert!(rows.len() >= 28, "the manifest lists {} files, fewer than the 28 it had", rows.len());
    let mut failures = Vec::new();
    let mut accuracy = Accuracy::default();
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    // Files whose verdict is right whole: program, outcome and category (the measure).
    let mut verdicts_right = 0;
    let names = rules.program_names();
    for row in &rows {
        // The rules' program the manifest's label belongs to ("OpenFOAM pimpleFoam" -> OpenFOAM),
        // else the file's folder.
        let program = row
            .facts
            .iter()
            .find(|(k, _)| k == "program")
            .and_then(|(_, v)| names.iter().find(|n| v.starts_with(**n)).map(|n| n.to_string()))
            .unwrap_or_else(|| format!("({})", row.path.split('/').next().unwrap_or("")));
        *files.entry(program.clone()).or_default() += 1;
        let bytes = std::fs::read(corpus().join(&row.path)).expect("corpus file");
        assert_eq!(bytes.len(), row.bytes, "{}: size differs from the manifest", row.path);
        let a = analyse(&rules, &row.path);
        let got = facts_of(&a);
        let mut expected_keys = BTreeSet::new();
        let mut verdict_right = true;
        for (k, v) in &row.facts {
            if k == "companion" || OUT_OF_SCOPE.iter().any(|(o, _)| o == k) {
                continue;
            }
            for e in expectations(&row.path, k, v) {
                expected_keys.insert(e.key.clone());
                let r = check(&row.path, &got, &e);
                accuracy.add(&program, &e.key, r.is_ok());
                if r.is_err() && VERDICT_KEYS.contains(&e.key.as_str()) {
                    verdict_right = false;
                }
                if let Err(msg) = r {
                    failures.push(msg);
                }
            }
        }
        // Mapped facts the manifest does not list must be explained.
        for key in got.keys() {
            let mapped = MAPPED_KEYS.contains(&key.as_str());
            let allowed = EXTRA_OK.iter().any(|(f, k, _)| *f == row.path && k == key);
            if mapped && !expected_keys.contains(key) && !allowed {
                accuracy.add(&program, key, false);
                if VERDICT_KEYS.contains(&key.as_str()) {
                    verdict_right = false;
                }
                failures
                    .push(format!("{}: reports {key} = {:?}, which the manifest does not list", row.path, got[key]));
            }
        }
        verdicts_right += usize::from(verdict_right);
        for (f, k, _) in EXTRA_OK.iter().filter(|(f, _, _)| *f == row.path) {
            if !got.contains_key(*k) {
                failures.push(format!("{f}: EXTRA_OK lists {k}, which the parser no longer reports"));
            }
        }
    }
    println!(
        "corpus accuracy (right/checked; a fact reported but not in the manifest counts as wrong):\n{}\
         files with program, outcome and category all right: {verdicts_right}/{}",
        accuracy.table(&files),
        rows.len()
    );
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_manifest_key_is_mapped_or_out_of_scope() {
    for row in manifest() {
        for (k, v) in &row.facts {
            if k == "companion" || OUT_OF_SCOPE.iter().any(|(o, _)| o == k) {
                continue;
            }
            assert!(!expectations(&row.path, k, v).is_empty(), "{}: {k}", row.path);
        }
    }
}

#[test]
fn companions_give_the_job_verdict() {
    // The OpenMC stdout just stops (incomplete/truncated); its stderr tail shows why.
    let rules = Rules::builtin();
    let rows = manifest();
    let mut checked = 0;
    for row in &rows {
        let Some((_, companion)) = row.facts.iter().find(|(k, _)| k == "companion") else { continue };
        let companion = companion.split_whitespace().next().expect("companion path");
        let (out, err) = if row.path.ends_with(".err.tail") {
            (companion, row.path.as_str())
        } else {
            (row.path.as_str(), companion)
        };
        let a_out = analyse(&rules, out);
        let a_err = analyse(&rules, err);
        assert_eq!(a_out.outcome, Outcome::Incomplete, "{out}");
        assert_eq!(a_out.category, Some(Category::Truncated), "{out}");
        let err_row = rows.iter().find(|r| r.path == err).expect("companion in manifest");
        let want_cat = &err_row.facts.iter().find(|(k, _)| k == "failure_category").expect("category").1;
        let want_err = &err_row.facts.iter().find(|(k, _)| k == "error").expect("error").1;
        let v = combine(&[&a_out, &a_err]);
        assert_eq!(v.outcome, Outcome::Failed, "{out} + {err}");
        assert_eq!(v.category.map(|c| c.to_string()).as_deref(), Some(want_cat.as_str()), "{out} + {err}");
        assert_eq!(v.evidence.as_deref(), Some(want_err.as_str()));
        assert_eq!(v.program.as_deref(), Some("OpenMC"));
        checked += 1;
    }
    assert_eq!(checked, 4, "two job.out / err.tail pairs, each listed from both sides");
}

#[test]
fn corpus_files_survive_windowing() {
    // The epilog reads bounded windows: cut each file into a head and a tail with a gap and
    // check that the verdict (which lives in the head's banner and the tail's last lines)
    // holds. Counts are left out when there is a gap.
    let rules = Rules::builtin();
    let mut gap_files = Vec::new();
    for row in manifest() {
        let bytes = std::fs::read(corpus().join(&row.path)).expect("corpus file");
        let whole = analyze(&rules, &Window::whole(&bytes));
        let n = bytes.len();
        if n < 4096 {
            // The epilog's windows are far larger: a small file is always read whole.
            continue;
        }
        let w = Window { head: &bytes[..n * 2 / 5], tail: &bytes[n * 3 / 5..], truncated_between: true };
        let cut = analyze(&rules, &w);
        // A failure whose only line falls in the cut-out middle cannot be seen by any window of
        // this shape (a job script that goes on printing long after its error): the verdict is
        // then not comparable, the counts still are.
        let shows = |part: &[u8], ev: &str| part.windows(ev.len()).any(|x| x == ev.as_bytes());
        let in_gap = whole.evidence.as_deref().is_some_and(|ev| !shows(w.head, ev) && !shows(w.tail, ev));
        if in_gap {
            gap_files.push(row.path.clone());
        } else {
            assert_eq!(cut.outcome, whole.outcome, "{}", row.path);
            assert_eq!(cut.category, whole.category, "{}", row.path);
            assert_eq!(cut.program, whole.program, "{}", row.path);
        }
        for k in ["warnings", "time_steps", "tcp_connection_warnings", "main_step_seconds_sum"] {
            assert!(cut.value(k).is_none(), "{}: {k} counted across a gap", row.path);
        }
        // The same bytes given as contiguous head + tail give the same analysis as whole.
        let joined =
            analyze(&rules, &Window { head: &bytes[..n / 2], tail: &bytes[n / 2..], truncated_between: false });
        assert_eq!(joined.facts, whole.facts, "{}", row.path);
        assert_eq!(joined.evidence, whole.evidence, "{}", row.path);
    }
    // Only a few files may be exempt, or the test would say nothing.
    assert!(gap_files.len() <= 3, "verdicts only in the cut-out middle: {gap_files:?}");
}
