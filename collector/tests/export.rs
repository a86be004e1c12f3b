//! `collector export`: the rows it builds (every test run) and the files as pyarrow, pandas and
//! DuckDB read them (`--ignored`: needs python3 and PyPI; installs pyarrow, pandas and duckdb in
//! a venv under $RUNLEDGER_PYENV or /var/tmp/runledger-pyenv).
//!
//! ```text
//! cargo test -p runledger-collector --test export -- --include-ignored
//! ```

use parquet::file::reader::{FileReader, SerializedFileReader};
use runledger_collector::questions::export::{self, ExportFormat};
use runledger_collector::questions::query::filter::Filter;
use runledger_ledger::{db, merge};
use runledger_record::{Fact, JobState, Module};
use runledger_synth::Sample;
use std::path::Path;
use std::process::Command;

const T0: i64 = 1_699_920_000;

/// `n` sample jobs in a file database; every third has no modules, every fifth a fact, every
/// second imported Python packages (numpy, and pandas without a version every fourth).
fn ledger(path: &Path, n: u32) {
    let conn = db::open_rw(path).unwrap();
    let mut batches = Vec::new();
    for i in 0..n {
        let mut s = Sample::new("tc", 100 + i, T0 + i64::from(i) * 600);
        s.user = format!("u{}", i % 7);
        s.account = format!("a{}", i % 3);
        s.duration = 60 + i64::from(i);
        if i % 3 == 0 {
            s.modules.clear();
        }
        if i % 4 == 1 {
            s.state = JobState::Failed;
        }
        if i % 5 == 0 {
            s.facts = vec![Fact { source: String::new(), key: "program".into(), value: "LAMMPS".into(), unit: None }];
            s.modules.push(Module { name: "lammps".into(), version: None, file: None });
        }
        if i % 2 == 0 {
            let pkg = |name: &str, version: Option<&str>| runledger_record::python::PythonPackage {
                name: name.into(),
                version: version.map(str::to_string),
            };
            let mut packages = vec![pkg("numpy", Some("1.26.4"))];
            if i % 4 == 0 {
                packages.push(pkg("pandas", None));
            }
            s.python = Some(runledger_record::python::PythonReport {
                processes: vec![runledger_record::python::PythonProcess {
                    pid: 9,
                    interpreter: "/usr/bin/python3".into(),
                    version: "3.11.2".into(),
                    start: s.start,
                    packages,
                    ended: "normal".into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        batches.push(s.batch(0));
    }
    let refs: Vec<_> = batches.iter().collect();
    for r in merge::apply_group(&conn, &refs, T0).unwrap() {
        r.unwrap();
    }
}

#[test]
fn rows_carry_modules_and_facts_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    ledger(&path, 11);
    let conn = db::open_ro(&path).unwrap();
    let mut rows = Vec::new();
    let n = export::for_each_row(&conn, &Filter::default(), |r| {
        rows.push(r);
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 11);
    assert_eq!(rows[0].job_id, 100);
    assert_eq!(rows[0].modules, vec!["lammps"]);
    assert_eq!(rows[0].facts, vec!["program=LAMMPS"]);
    assert_eq!(rows[1].modules, vec!["gcc/12.2.0", "openmpi/4.1.4"]);
    assert!(rows[1].facts.is_empty());
    assert_eq!(rows[1].state, "FAILED");
    assert_eq!(rows[3].modules, Vec::<String>::new());
    assert_eq!(rows[4].elapsed(), Some(64));
    assert_eq!(rows[0].packages, vec!["numpy/1.26.4", "pandas"]);
    assert_eq!(rows[2].packages, vec!["numpy/1.26.4"]);
    assert!(rows[1].packages.is_empty());

    let mut csv = Vec::new();
    export::text(&conn, &Filter::default(), ExportFormat::Csv, &mut csv, &|_| ()).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), 12);
    assert!(csv.lines().nth(2).unwrap().contains(",gcc/12.2.0;openmpi/4.1.4,"), "{csv}");
    let mut jl = Vec::new();
    let f = Filter { users: vec!["u1".into()], ..Default::default() };
    export::text(&conn, &f, ExportFormat::Jsonl, &mut jl, &|_| ()).unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(jl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["job_id"], 101);
    assert_eq!(lines[0]["modules"], serde_json::json!(["gcc/12.2.0", "openmpi/4.1.4"]));
    assert_eq!(lines[0]["start"], T0 + 600);

    // Parquet, read back with the parquet crate's own reader.
    let pq_path = dir.path().join("j.parquet");
    let file = std::fs::File::create(&pq_path).unwrap();
    assert_eq!(export::parquet(&conn, &Filter::default(), file, &|_| ()).unwrap(), 11);
    let reader = SerializedFileReader::new(std::fs::File::open(&pq_path).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 11);
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
    assert!(names.contains(&"modules.list.element".to_string()), "{names:?}");
    assert!(names.contains(&"packages.list.element".to_string()), "{names:?}");
    let first = reader.get_row_iter(None).unwrap().next().unwrap().unwrap();
    let text = first.to_string();
    assert!(text.contains("job_id: 100") && text.contains("\"lammps\"") && text.contains("program=LAMMPS"), "{text}");
    assert!(text.contains("\"numpy/1.26.4\"") && text.contains("\"pandas\""), "{text}");
}

fn pyenv() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("RUNLEDGER_PYENV").map(Into::into).unwrap_or_else(|| "/var/tmp/runledger-pyenv".into());
    let dir: std::path::PathBuf = dir;
    let py = dir.join("bin/python3");
    let ok = |py: &Path| {
        Command::new(py).args(["-c", "import pyarrow, pandas, duckdb"]).status().map(|s| s.success()).unwrap_or(false)
    };
    if py.exists() && ok(&py) {
        return Some(py);
    }
    let made = Command::new("python3").arg("-m").arg("venv").arg(&dir).status().ok()?.success();
    let pip = made
        && Command::new(dir.join("bin/pip"))
            .args(["install", "-q", "pyarrow", "pandas", "duckdb"])
            .status()
            .ok()?
            .success();
    (pip && ok(&py)).then_some(py)
}

#[test]
#[ignore = "needs python3 and PyPI (pyarrow, pandas, duckdb)"]
fn pyarrow_pandas_and_duckdb_read_the_export() {
    let py = pyenv().expect("a Python venv with pyarrow, pandas and duckdb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    ledger(&path, 2_000);
    let bin = env!("CARGO_BIN_EXE_collector");
    let d = path.to_str().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for (fmt, file) in [("parquet", "j.parquet"), ("csv", "j.csv"), ("jsonl", "j.jsonl")] {
        let st =
            Command::new(bin).args(["export", "--database", d, "--format", fmt, "-o", &out(file)]).status().unwrap();
        assert!(st.success(), "export {fmt}");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export_check.py");
    let o = Command::new(py).arg(script).args([d, &out("j.parquet"), &out("j.csv"), &out("j.jsonl")]).output().unwrap();
    let msg = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{msg}");
    assert!(msg.contains("export_check: ok"), "{msg}");
}
