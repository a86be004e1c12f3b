//! `collector export --partition-by cluster,month -o DIR` (`-p`/`--partition` is the Slurm
//! partition filter of every ledger command, so the issue's `--partition` is spelled as Spark's
//! `partitionBy`): the jobs as Hive-style Parquet partitions
//! (`DIR/cluster=c1/month=2026-11/part-0.parquet`), so that the exports of several clusters and
//! many years meet in one directory and DuckDB, Spark or Trino read them all at once
//! (`read_parquet('DIR/**/*.parquet', hive_partitioning = true)`).
//!
//! - A job's month is the UTC month of its start (`unknown` without one): it does not move when
//!   the job's end arrives, and it is the same for every cluster whatever their time zones.
//! - The partition keys are in the path only (as Hive and Spark write them), not in the files.
//! - Incremental: the ledger counts the changes to each (cluster, month) (`export_marks`, kept
//!   by triggers, see the ledger's migrations); `DIR/_runledger_export.json` keeps the counts of
//!   the last export, and only the partitions whose count moved are written again, in one pass
//!   over the jobs of those partitions. Marks and rows are read in one read transaction, so what
//!   is written is the ledger at one moment, and the counts recorded are that moment's.
//! - Each file is written under a temporary name and renamed; the manifest last, also renamed.
//!   A crash leaves the manifest of the export before, and the next export writes again what
//!   moved since that one.
//! - Pruned months are kept as exported: a partition whose month began before the last prune's
//!   cut (`prunes`) is not written again (the ledger no longer holds all its jobs), and the
//!   export says so when such a partition changed.
//! - A directory remembers the filters it was exported with: other filters are refused (use
//!   another directory).

use crate::failure::{write_out, Failure};
use crate::questions::export::{self, Group, Row};
use crate::questions::query::filter::Filter;
use rusqlite::types::Value;
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's file name in the export directory.
pub const MANIFEST: &str = "_runledger_export.json";

/// Jobs per row group in a partition's file: smaller than a single file's, since every changed
/// partition buffers one group at a time.
const PART_ROW_GROUP: usize = 16_384;

/// A partition key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKey {
    Cluster,
    Month,
}

impl PartKey {
    fn name(self) -> &'static str {
        match self {
            PartKey::Cluster => "cluster",
            PartKey::Month => "month",
        }
    }
}

/// `--partition-by`'s value, in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartKeys(pub Vec<PartKey>);

/// `--partition-by`'s value: `cluster`, `month`, or both in either order.
pub fn parse_partition(s: &str) -> Result<PartKeys, String> {
    let mut keys = Vec::new();
    for k in s.split(',') {
        let key = match k.trim() {
            "cluster" => PartKey::Cluster,
            "month" => PartKey::Month,
            other => return Err(format!("'{other}' is not a partition key (cluster, month)")),
        };
        if keys.contains(&key) {
            return Err(format!("'{}' is named twice", key.name()));
        }
        keys.push(key);
    }
    Ok(PartKeys(keys))
}

/// What `DIR/_runledger_export.json` holds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub partition_by: Vec<PartKey>,
    /// The filters, as `collector export` understood them.
    pub filter: String,
    /// When it was last written (Unix seconds).
    pub updated: i64,
    /// Partition path (`cluster=c1/month=2026-11`) → what was written there.
    pub partitions: BTreeMap<String, Part>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// The ledger's change count of the partition when it was written.
    pub changes: i64,
    pub jobs: u64,
    pub exported: i64,
}

const FORMAT: &str = "runledger-export/1";

/// Hive's escaping of a partition value: anything but letters, digits and `._-` as `%XX`.
fn escape(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The UTC month of a start time, as `export_marks` names it.
fn month_of(start: Option<i64>) -> String {
    match start {
        None => "unknown".into(),
        Some(t) => {
            let dt = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
            dt.format("%Y-%m").to_string()
        }
    }
}

/// [start, end) of a `YYYY-MM` month in Unix seconds, UTC.
fn month_range(month: &str) -> Option<(i64, i64)> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1)?;
    let next = if m == 12 {
        chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)?
    } else {
        chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)?
    };
    let s = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    Some((s(first)?, s(next)?))
}

/// The path of the partition a (cluster, month) falls in.
fn part_path(keys: &[PartKey], cluster: &str, month: &str) -> String {
    keys.iter()
        .map(|k| match k {
            PartKey::Cluster => format!("cluster={}", escape(cluster)),
            PartKey::Month => format!("month={}", escape(month)),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A partition's change count (the sum over its (cluster, month)s), those (cluster, month)s, and
/// whether one of its months began before the last prune's cut.
type Marks = (i64, Vec<(String, String)>, bool);

/// What one export did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub written: Vec<(String, u64)>,
    pub unchanged: usize,
    /// Partitions that changed but lie before the last prune: kept as exported.
    pub sealed: Vec<String>,
    pub jobs: u64,
}

/// Writes the changed partitions of the jobs `filter` selects under `dir`.
pub fn export(conn: &Connection, filter: &Filter, keys: &[PartKey], dir: &Path) -> Result<Outcome, String> {
    let db = |e: rusqlite::Error| format!("reading the database: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest_path = dir.join(MANIFEST);
    let filter_text = format!("{filter:?}");
    let mut manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => {
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not an export manifest: {e}", manifest_path.display()))?;
            if m.partition_by != keys {
                return Err(format!(
                    "{} was partitioned by {}: export to another directory to partition otherwise",
                    dir.display(),
                    m.partition_by.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
                ));
            }
            if m.filter != filter_text {
                return Err(format!(
                    "{} was exported with other filters ({}): export to another directory",
                    dir.display(),
                    m.filter
                ));
            }
            m
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
                return Err(format!("{} is not empty and holds no {MANIFEST}: name a new directory", dir.display()));
            }
            Manifest {
                format: FORMAT.into(),
                partition_by: keys.to_vec(),
                filter: filter_text.clone(),
                ..Default::default()
            }
        }
        Err(e) => return Err(format!("cannot read {}: {e}", manifest_path.display())),
    };

    // One snapshot for the marks and the rows.
    conn.execute_batch("BEGIN").map_err(db)?;
    let result = (|| -> Result<(Outcome, Vec<(PathBuf, PathBuf)>), String> {
        let cut: Option<i64> = conn.query_row("SELECT max(before) FROM prunes", [], |r| r.get(0)).map_err(db)?;
        // Partition path → (its change count: the sum over its (cluster, month)s, the (cluster,
        // month)s, whether a month of it lies before the last prune's cut).
        let mut parts: BTreeMap<String, Marks> = BTreeMap::new();
        {
            let mut st = conn.prepare("SELECT cluster, month, changes FROM export_marks").map_err(db)?;
            let mut rows = st.query([]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let (cluster, month, changes): (String, String, i64) =
                    (r.get(0).map_err(db)?, r.get(1).map_err(db)?, r.get(2).map_err(db)?);
                let sealed = cut.is_some_and(|c| month_range(&month).is_some_and(|(start, _)| start < c));
                let e = parts.entry(part_path(keys, &cluster, &month)).or_default();
                e.0 += changes;
                e.2 |= sealed;
                e.1.push((cluster, month));
            }
        }
        let mut outcome = Outcome::default();
        let mut todo: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (path, (changes, members, sealed)) in &parts {
            match manifest.partitions.get(path) {
                Some(p) if p.changes == *changes => outcome.unchanged += 1,
                Some(_) if *sealed => outcome.sealed.push(path.clone()),
                _ => {
                    todo.insert(path.clone(), members.clone());
                }
            }
        }
        if todo.is_empty() {
            return Ok((outcome, Vec::new()));
        }
        // The jobs of the partitions to write: their (cluster, month)s as start ranges.
        let mut conds = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        for members in todo.values() {
            for (cluster, month) in members {
                match month_range(month) {
                    Some((lo, hi)) => {
                        conds.push("(cluster = ? AND start >= ? AND start < ?)".to_string());
                        params.extend([Value::Text(cluster.clone()), Value::Integer(lo), Value::Integer(hi)]);
                    }
                    None => {
                        conds.push("(cluster = ? AND start IS NULL)".to_string());
                        params.push(Value::Text(cluster.clone()));
                    }
                }
            }
        }
        let tmp_suffix = format!(".partial-{}", std::process::id());
        let without_cluster = keys.contains(&PartKey::Cluster);
        struct Open {
            writer: parquet::file::writer::SerializedFileWriter<std::io::BufWriter<std::fs::File>>,
            group: Group,
            jobs: u64,
            tmp: PathBuf,
            path: PathBuf,
        }
        let mut open: HashMap<String, Open> = HashMap::new();
        let open_part = |part: &str| -> Result<Open, String> {
            let d = dir.join(part);
            std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            let path = d.join("part-0.parquet");
            let tmp = d.join(format!("part-0.parquet{tmp_suffix}"));
            let f = std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
            let writer = export::parquet_writer(std::io::BufWriter::with_capacity(1 << 20, f), without_cluster)?;
            Ok(Open { writer, group: Group { rows: Vec::new(), without_cluster }, jobs: 0, tmp, path })
        };
        let written = export::for_each_row_where(conn, filter, Some((conds.join(" OR "), params)), |r: Row| {
            let part = part_path(keys, &r.cluster, &month_of(r.start));
            if !todo.contains_key(&part) {
                return Ok(());
            }
            if !open.contains_key(&part) {
                let o = open_part(&part)?;
                open.insert(part.clone(), o);
            }
            let o = open.get_mut(&part).expect("just opened");
            o.group.rows.push(r);
            o.jobs += 1;
            if o.group.rows.len() >= PART_ROW_GROUP {
                o.group.write(&mut o.writer)?;
            }
            Ok(())
        });
        let cleanup = |open: &HashMap<String, Open>| {
            for o in open.values() {
                let _ = std::fs::remove_file(&o.tmp);
            }
        };
        if let Err(e) = written {
            cleanup(&open);
            return Err(e);
        }
        let mut renames = Vec::new();
        let now = runledger_record::now();
        let mut failed = None;
        for (part, mut o) in open {
            let done = o.group.write(&mut o.writer).and_then(|_| {
                let inner = o.writer.into_inner().map_err(export::pq_err)?;
                let f = inner.into_inner().map_err(|e| format!("writing {}: {}", o.tmp.display(), e.error()))?;
                f.sync_all().map_err(|e| format!("syncing {}: {e}", o.tmp.display()))
            });
            if let Err(e) = done {
                let _ = std::fs::remove_file(&o.tmp);
                failed.get_or_insert(e);
                continue;
            }
            outcome.jobs += o.jobs;
            outcome.written.push((part.clone(), o.jobs));
            manifest.partitions.insert(part.clone(), Part { changes: parts[&part].0, jobs: o.jobs, exported: now });
            renames.push((o.tmp, o.path));
            todo.remove(&part);
        }
        if let Some(e) = failed {
            for (tmp, _) in &renames {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        // Changed partitions the filters leave no job in: nothing to write; an earlier file of
        // theirs is out of date and goes.
        for part in todo.keys() {
            let old = dir.join(part).join("part-0.parquet");
            if old.exists() {
                renames.push((PathBuf::new(), old));
            }
            manifest.partitions.insert(part.clone(), Part { changes: parts[part].0, jobs: 0, exported: now });
            outcome.written.push((part.clone(), 0));
        }
        outcome.written.sort();
        Ok((outcome, renames))
    })();
    let _ = conn.execute_batch("COMMIT");
    let (outcome, renames) = result?;
    for (tmp, path) in &renames {
        if tmp.as_os_str().is_empty() {
            std::fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        } else {
            std::fs::rename(tmp, path)
                .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))?;
        }
    }
    manifest.updated = runledger_record::now();
    let tmp = dir.join(format!("{MANIFEST}.partial-{}", std::process::id()));
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|_| f.sync_all()))
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &manifest_path)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), manifest_path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(outcome)
}

/// `collector export --partition-by … -o DIR`, with its report on standard output.
pub fn run(
    conn: &Connection,
    filter: &Filter,
    keys: &[PartKey],
    dir: &Path,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let o = export(conn, filter, keys, dir).map_err(Failure::new)?;
    let mut text = format!(
        "exported {} jobs in {} partitions to {} ({} unchanged) in {:.1} s\n",
        o.jobs,
        o.written.len(),
        dir.display(),
        o.unchanged,
        started.elapsed().as_secs_f64()
    );
    for (part, jobs) in &o.written {
        text.push_str(&format!("  {part}: {jobs} jobs\n"));
    }
    if !o.sealed.is_empty() {
        text.push_str(&format!(
            "kept as exported, though they changed: {} partitions of months before the last prune (the ledger \
             no longer holds all their jobs): {}\n",
            o.sealed.len(),
            o.sealed.join(", ")
        ));
    }
    write_out(out, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_paths_and_months() {
        assert_eq!(parse_partition("cluster,month").unwrap().0, vec![PartKey::Cluster, PartKey::Month]);
        assert_eq!(parse_partition("month").unwrap().0, vec![PartKey::Month]);
        assert!(parse_partition("year").unwrap_err().contains("'year'"));
        assert!(parse_partition("month,month").unwrap_err().contains("twice"));
        let keys = [PartKey::Cluster, PartKey::Month];
        assert_eq!(part_path(&keys, "c1", "2026-11"), "cluster=c1/month=2026-11");
        assert_eq!(part_path(&keys, "a b/c", "unknown"), "cluster=a%20b%2Fc/month=unknown");
        assert_eq!(month_of(Some(1_767_225_599)), "2025-12");
        assert_eq!(month_of(None), "unknown");
        assert_eq!(month_range("2025-12"), Some((1_764_547_200, 1_767_225_600)));
        assert_eq!(month_range("unknown"), None);
    }
}
