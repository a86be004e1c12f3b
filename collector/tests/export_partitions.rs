//! `collector export --partition-by cluster,month -o DIR`: Hive-style partitions, written again
//! only when their jobs changed, pruned months kept as exported, read back by DuckDB
//! (`--ignored`: needs python3 and PyPI, as tests/export.rs).
//!
//! cargo test -p runledger-collector --test export_partitions -- --include-ignored

mod common;

use common::BIN;
use parquet::file::reader::{FileReader, SerializedFileReader};
use runledger_ledger::{db, merge};
use runledger_synth::synth::{Synth, FIXTURE_END};
use runledger_synth::Sample;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Made-up jobs of 2025 on cluster `bench`, and `extra` jobs of cluster `other`, one a day
/// from 2025-03-01.
fn ledger(path: &Path, n: u32, extra: u32) {
    let conn = db::open_rw(path).unwrap();
    let mut s = Synth::new(n, 3, FIXTURE_END);
    let mut batches = Vec::new();
    while let Some(b) = s.next_job_batch() {
        batches.push(b);
    }
    for i in 0..extra {
        batches.push(Sample::new("other", 7000 + i, 1_740_787_200 + i64::from(i) * 86_400).batch(0));
    }
    for chunk in batches.chunks(500) {
        let refs: Vec<_> = chunk.iter().collect();
        for r in merge::apply_group(&conn, &refs, FIXTURE_END).unwrap() {
            r.unwrap();
        }
    }
}

fn export(db: &Path, dir: &Path, more: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["export", "--partition-by", "cluster,month", "-o"])
        .arg(dir)
        .arg("--database")
        .arg(db)
        .args(more)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Jobs per partition path, as the ledger holds them (UTC month of the start).
fn expected(db: &Path) -> BTreeMap<String, i64> {
    let c = db::open_ro(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT 'cluster=' || cluster || '/month=' || COALESCE(strftime('%Y-%m', start, 'unixepoch'), 'unknown'),
                    count(*) FROM jobs GROUP BY 1",
        )
        .unwrap();
    let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    v
}

/// Rows per partition path, as the files under `dir` hold them.
fn files(dir: &Path) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for c in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        if !c.file_type().unwrap().is_dir() {
            continue;
        }
        for m in std::fs::read_dir(c.path()).unwrap().map(Result::unwrap) {
            let names: Vec<String> =
                std::fs::read_dir(m.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            assert_eq!(names, vec!["part-0.parquet".to_string()], "{}", m.path().display());
            let r = SerializedFileReader::new(std::fs::File::open(m.path().join("part-0.parquet")).unwrap()).unwrap();
            let cols: Vec<String> = r
                .metadata()
                .file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            assert!(!cols.contains(&"cluster".to_string()), "the key is in the path only: {cols:?}");
            assert!(cols.contains(&"job_id".to_string()) && cols.contains(&"facts".to_string()));
            let key = format!("{}/{}", c.file_name().into_string().unwrap(), m.file_name().into_string().unwrap());
            out.insert(key, r.metadata().file_metadata().num_rows());
        }
    }
    out
}

fn mtimes(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    files(dir)
        .into_keys()
        .map(|k| {
            let t = std::fs::metadata(dir.join(&k).join("part-0.parquet")).unwrap().modified().unwrap();
            (k, t)
        })
        .collect()
}

#[test]
fn partitions_are_hive_style_and_written_again_only_when_they_change() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("l.db");
    let dir = tmp.path().join("export");
    ledger(&db, 3000, 60);
    let first = export(&db, &dir, &[]);
    assert!(first.contains("exported 3060 jobs"), "{first}");
    assert_eq!(files(&dir), expected(&db));
    assert!(files(&dir).contains_key("cluster=other/month=2025-03"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_runledger_export.json")).unwrap()).unwrap();
    assert_eq!(manifest["partition_by"], serde_json::json!(["cluster", "month"]));
    assert_eq!(manifest["partitions"].as_object().unwrap().len(), expected(&db).len());

    // Nothing changed: nothing written.
    let before = mtimes(&dir);
    let again = export(&db, &dir, &[]);
    assert!(
        again.contains("exported 0 jobs in 0 partitions") && again.contains(&format!("({} unchanged)", before.len())),
        "{again}"
    );
    assert_eq!(mtimes(&dir), before);

    // A new job in April 2025 on `other`, and a late node record of an existing March job: those
    // two partitions only.
    {
        let conn = db::open_rw(&db).unwrap();
        let mut late = Sample::new("other", 7003, 1_740_787_200 + 3 * 86_400);
        late.nnodes = 2;
        let fresh = Sample::new("other", 9999, 1_743_465_600 + 86_400);
        for r in merge::apply_group(&conn, &[&late.batch(1), &fresh.batch(0)], FIXTURE_END).unwrap() {
            r.unwrap();
        }
    }
    let third = export(&db, &dir, &[]);
    assert!(third.contains("in 2 partitions"), "{third}");
    assert!(
        third.contains("cluster=other/month=2025-03: 31 jobs")
            && third.contains("cluster=other/month=2025-04: 30 jobs"),
        "{third}"
    );
    let after = mtimes(&dir);
    for (k, t) in &before {
        if k.starts_with("cluster=other/month=2025-0") && (k.ends_with("03") || k.ends_with("04")) {
            assert_ne!(&after[k], t, "{k} was written again");
        } else {
            assert_eq!(&after[k], t, "{k} is unchanged");
        }
    }
    assert_eq!(files(&dir), expected(&db));

    // Other filters in the same directory are refused; a non-empty directory without a manifest too.
    let out = Command::new(BIN)
        .args(["export", "--partition-by", "cluster,month", "-A", "acct01", "-o"])
        .arg(&dir)
        .arg("--database")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("other filters"));
    let out = Command::new(BIN)
        .args(["export", "--partition-by", "month", "-o"])
        .arg(dir.join("cluster=other"))
        .arg("--database")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).args(["export", "--partition-by", "cluster", "--database"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["export", "--partition-by", "year", "-o", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'year'"));
}

#[test]
fn pruned_months_stay_as_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("l.db");
    let dir = tmp.path().join("export");
    ledger(&db, 1500, 0);
    export(&db, &dir, &[]);
    let exported = files(&dir);
    // 2025-07-01: the first half of the year leaves the ledger.
    let out = Command::new(BIN).args(["prune", "--before", "@1751328000", "--database"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(expected(&db).len() < exported.len());
    let again = export(&db, &dir, &[]);
    assert!(again.contains("exported 0 jobs"), "{again}");
    assert_eq!(files(&dir), exported, "the export still holds the pruned months");
    // A late record for June (before the cut): the partition changed, but stays as exported.
    {
        let conn = db::open_rw(&db).unwrap();
        let b = Sample::new("bench", 424_242, 1_750_000_000).batch(0);
        merge::apply_group(&conn, &[&b], FIXTURE_END).unwrap()[0].as_ref().unwrap();
    }
    let third = export(&db, &dir, &[]);
    assert!(third.contains("kept as exported") && third.contains("cluster=bench/month=2025-06"), "{third}");
    assert_eq!(files(&dir), exported);
}

/// The interpreter of tests/export.rs's venv (pyarrow, pandas, duckdb), made if missing.
fn pyenv() -> Option<std::path::PathBuf> {
    let dir: std::path::PathBuf =
        std::env::var_os("RUNLEDGER_PYENV").map(Into::into).unwrap_or_else(|| "/var/tmp/runledger-pyenv".into());
    let py = dir.join("bin/python3");
    let ok = |py: &Path| Command::new(py).args(["-c", "import duckdb"]).status().map(|s| s.success()).unwrap_or(false);
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
#[ignore = "needs python3 and PyPI (duckdb)"]
fn duckdb_reads_every_partition_at_once() {
    let py = pyenv().expect("a Python venv with duckdb");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("l.db");
    let dir = tmp.path().join("export");
    ledger(&db, 2000, 45);
    export(&db, &dir, &[]);
    let want: BTreeMap<String, i64> = expected(&db);
    let summary = Command::new(BIN)
        .args(["query", "summary", "--by", "cluster", "--csv", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    let summary = String::from_utf8(summary.stdout).unwrap();
    let script = format!(
        "import duckdb, json\n\
         rel = duckdb.sql(\"SELECT cluster, month, count(*) AS n, sum(cpu_seconds) AS cpu, \
            count(DISTINCT user) AS users, sum(len(modules)) AS mods \
            FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY ALL\")\n\
         print(json.dumps([list(r) for r in rel.fetchall()]))\n",
        dir.display()
    );
    let out = Command::new(&py).arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let got: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (format!("cluster={}/month={}", r[0].as_str().unwrap(), r[1].as_str().unwrap()), r[2].as_i64().unwrap())
        })
        .collect();
    assert_eq!(got, want);
    // Per cluster, DuckDB's job count is ours.
    for cluster in ["bench", "other"] {
        let n: i64 = rows.iter().filter(|r| r[0] == cluster).map(|r| r[2].as_i64().unwrap()).sum();
        let line = summary.lines().find(|l| l.starts_with(cluster)).unwrap();
        assert_eq!(line.split(',').nth(1).unwrap().parse::<i64>().unwrap(), n, "{line}");
    }
}
