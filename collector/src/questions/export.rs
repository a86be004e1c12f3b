//! `collector export`: one flat row per job, for pandas, pyarrow, DuckDB or a spreadsheet.
//!
//! Formats: Parquet (typed columns, Snappy, row groups of 65,536 jobs; times as
//! `TIMESTAMP(MILLIS, UTC)`; `modules` and `facts` as `list<string>`), CSV (lists joined with
//! `;`, times as RFC 3339 local) and JSON Lines (lists as arrays, times as Unix seconds).
//!
//! The jobs are read in row-id order, their modules from their module set (each set's list made
//! once) and their facts merged in from a scan of `facts` in the same order (no per-job query),
//! so the memory used is one row group whatever the number of jobs.

use crate::questions::query::filter::Filter;
use crate::questions::query::report::{csv_cell, spreadsheet_safe};
use crate::questions::query::summary::has_column;
use crate::questions::timefmt;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rusqlite::{params_from_iter, Connection};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Parquet,
    Csv,
    Jsonl,
}

/// One exported job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub id: i64,
    pub cluster: String,
    pub job_id: i64,
    pub array_job_id: Option<i64>,
    pub array_task_id: Option<i64>,
    pub user: Option<String>,
    pub uid: Option<i64>,
    pub account: Option<String>,
    pub partition: Option<String>,
    pub qos: Option<String>,
    pub job_name: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub nnodes: Option<i64>,
    pub ncpus: Option<i64>,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub cpu_seconds: f64,
    pub max_rss_kib: Option<i64>,
    pub nodes: Option<String>,
    pub program: Option<String>,
    pub outcome: Option<String>,
    pub category: Option<String>,
    /// `name/version` (or `name`), in name order.
    pub modules: Vec<String>,
    /// `key=value` (`source:key=value` for facts read from a named log file).
    pub facts: Vec<String>,
}

impl Row {
    pub fn elapsed(&self) -> Option<i64> {
        self.start.zip(self.end).map(|(s, e)| (e - s).max(0))
    }
}

/// Column names, in the order of every format.
pub const COLUMNS: &[&str] = &[
    "cluster",
    "job_id",
    "array_job_id",
    "array_task_id",
    "user",
    "uid",
    "account",
    "partition",
    "qos",
    "job_name",
    "start",
    "end",
    "elapsed_s",
    "state",
    "exit_code",
    "signal",
    "nnodes",
    "ncpus",
    "cpu_user_s",
    "cpu_sys_s",
    "cpu_seconds",
    "max_rss_kib",
    "nodes",
    "program",
    "outcome",
    "category",
    "modules",
    "facts",
];

const SCHEMA: &str = "
message job {
    REQUIRED BYTE_ARRAY cluster (UTF8);
    REQUIRED INT64 job_id;
    OPTIONAL INT64 array_job_id;
    OPTIONAL INT64 array_task_id;
    OPTIONAL BYTE_ARRAY user (UTF8);
    OPTIONAL INT64 uid;
    OPTIONAL BYTE_ARRAY account (UTF8);
    OPTIONAL BYTE_ARRAY partition (UTF8);
    OPTIONAL BYTE_ARRAY qos (UTF8);
    OPTIONAL BYTE_ARRAY job_name (UTF8);
    OPTIONAL INT64 start (TIMESTAMP(MILLIS,true));
    OPTIONAL INT64 end (TIMESTAMP(MILLIS,true));
    OPTIONAL INT64 elapsed_s;
    REQUIRED BYTE_ARRAY state (UTF8);
    OPTIONAL INT64 exit_code;
    OPTIONAL INT64 signal;
    OPTIONAL INT64 nnodes;
    OPTIONAL INT64 ncpus;
    REQUIRED DOUBLE cpu_user_s;
    REQUIRED DOUBLE cpu_sys_s;
    REQUIRED DOUBLE cpu_seconds;
    OPTIONAL INT64 max_rss_kib;
    OPTIONAL BYTE_ARRAY nodes (UTF8);
    OPTIONAL BYTE_ARRAY program (UTF8);
    OPTIONAL BYTE_ARRAY outcome (UTF8);
    OPTIONAL BYTE_ARRAY category (UTF8);
    REQUIRED GROUP modules (LIST) {
        REPEATED GROUP list {
            REQUIRED BYTE_ARRAY element (UTF8);
        }
    }
    REQUIRED GROUP facts (LIST) {
        REPEATED GROUP list {
            REQUIRED BYTE_ARRAY element (UTF8);
        }
    }
}
";

fn db(e: rusqlite::Error) -> String {
    format!("reading the database: {e}")
}

/// Reads the matching jobs in row-id order and hands each, with its modules and facts, to `f`.
pub fn for_each_row(
    conn: &Connection,
    filter: &Filter,
    mut f: impl FnMut(Row) -> Result<(), String>,
) -> Result<u64, String> {
    let verdict = has_column(conn, "jobs", "program").map_err(db)?;
    let extra = if verdict { "program, outcome, category" } else { "NULL, NULL, NULL" };
    let (where_sql, params) = filter.to_sql();
    let sql = format!(
        "SELECT id, cluster, job_id, array_job_id, array_task_id, user, uid, account, partition, qos, job_name,
                start, end, state, exit_code, signal, nnodes, ncpus, cpu_user_s, cpu_sys_s, cpu_seconds,
                max_rss_kib, nodes, {extra}, module_set
         FROM jobs WHERE {where_sql} ORDER BY id"
    );
    let mut jobs = conn.prepare(&sql).map_err(db)?;
    // Each module set's `name/version` list, made once.
    let names = crate::questions::query::module_names(conn).map_err(db)?;
    let set_names: std::collections::HashMap<i64, Vec<String>> = runledger_ledger::store::module_sets(conn)
        .map_err(db)?
        .into_iter()
        .map(|(id, ms)| {
            let mut v: Vec<String> =
                ms.iter().filter_map(|m| names.get(m)).map(|(n, v)| crate::questions::query::full_name(n, v)).collect();
            v.sort();
            (id, v)
        })
        .collect();
    let mut facts = conn
        .prepare(
            "SELECT job, CASE WHEN source = '' THEN '' ELSE source || ':' END || key || '=' || value
             FROM facts ORDER BY job, node, source, key",
        )
        .map_err(db)?;
    let mut jrows = jobs.query(params_from_iter(params.iter())).map_err(db)?;
    let mut frows = facts.query([]).map_err(db)?;
    let mut fnext: Option<(i64, String)> = None;
    let mut fdone = false;
    let mut n = 0u64;
    while let Some(r) = jrows.next().map_err(db)? {
        let mut row = Row {
            id: r.get(0).map_err(db)?,
            cluster: r.get(1).map_err(db)?,
            job_id: r.get(2).map_err(db)?,
            array_job_id: r.get(3).map_err(db)?,
            array_task_id: r.get(4).map_err(db)?,
            user: r.get(5).map_err(db)?,
            uid: r.get(6).map_err(db)?,
            account: r.get(7).map_err(db)?,
            partition: r.get(8).map_err(db)?,
            qos: r.get(9).map_err(db)?,
            job_name: r.get(10).map_err(db)?,
            start: r.get(11).map_err(db)?,
            end: r.get(12).map_err(db)?,
            state: r.get(13).map_err(db)?,
            exit_code: r.get(14).map_err(db)?,
            signal: r.get(15).map_err(db)?,
            nnodes: r.get(16).map_err(db)?,
            ncpus: r.get(17).map_err(db)?,
            cpu_user_s: r.get(18).map_err(db)?,
            cpu_sys_s: r.get(19).map_err(db)?,
            cpu_seconds: r.get(20).map_err(db)?,
            max_rss_kib: r.get(21).map_err(db)?,
            nodes: r.get::<_, Option<String>>(22).map_err(db)?.map(|n| {
                if n.contains('[') {
                    runledger_ledger::store::expand_nodes(&n)
                } else {
                    n
                }
            }),
            program: r.get(23).map_err(db)?,
            outcome: r.get(24).map_err(db)?,
            category: r.get(25).map_err(db)?,
            modules: Vec::new(),
            facts: Vec::new(),
        };
        if let Some(set) = r.get::<_, Option<i64>>(26).map_err(db)? {
            row.modules = set_names.get(&set).cloned().unwrap_or_default();
        }
        // Advance the fact cursor to this job.
        loop {
            if fnext.is_none() && !fdone {
                match frows.next().map_err(db)? {
                    Some(m) => fnext = Some((m.get(0).map_err(db)?, m.get(1).map_err(db)?)),
                    None => fdone = true,
                }
            }
            match fnext.take() {
                Some((j, _)) if j < row.id => continue,
                Some((j, fact)) if j == row.id => row.facts.push(fact),
                other => {
                    fnext = other;
                    break;
                }
            }
        }
        row.modules.sort();
        row.facts.sort();
        row.facts.dedup();
        f(row)?;
        n += 1;
    }
    Ok(n)
}

fn opt_s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn opt_i(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

pub fn csv_header() -> String {
    let mut s = COLUMNS.join(",");
    s.push('\n');
    s
}

pub fn csv_line(r: &Row) -> String {
    let t = |v: Option<i64>| v.map(timefmt::rfc3339).unwrap_or_default();
    // Text a user or a log chose is kept from being read as a spreadsheet formula.
    let safe = |s: String| spreadsheet_safe(&s).into_owned();
    let cells = [
        safe(r.cluster.clone()),
        r.job_id.to_string(),
        opt_i(r.array_job_id),
        opt_i(r.array_task_id),
        safe(opt_s(&r.user)),
        opt_i(r.uid),
        safe(opt_s(&r.account)),
        safe(opt_s(&r.partition)),
        safe(opt_s(&r.qos)),
        safe(opt_s(&r.job_name)),
        t(r.start),
        t(r.end),
        opt_i(r.elapsed()),
        r.state.clone(),
        opt_i(r.exit_code),
        opt_i(r.signal),
        opt_i(r.nnodes),
        opt_i(r.ncpus),
        r.cpu_user_s.to_string(),
        r.cpu_sys_s.to_string(),
        r.cpu_seconds.to_string(),
        opt_i(r.max_rss_kib),
        safe(opt_s(&r.nodes)),
        safe(opt_s(&r.program)),
        safe(opt_s(&r.outcome)),
        safe(opt_s(&r.category)),
        safe(r.modules.join(";")),
        safe(r.facts.join(";")),
    ];
    let mut s = cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
    s.push('\n');
    s
}

pub fn json_line(r: &Row) -> String {
    let v = json!({
        "cluster": r.cluster, "job_id": r.job_id, "array_job_id": r.array_job_id,
        "array_task_id": r.array_task_id, "user": r.user, "uid": r.uid, "account": r.account,
        "partition": r.partition, "qos": r.qos, "job_name": r.job_name, "start": r.start, "end": r.end,
        "elapsed_s": r.elapsed(), "state": r.state, "exit_code": r.exit_code, "signal": r.signal,
        "nnodes": r.nnodes, "ncpus": r.ncpus, "cpu_user_s": r.cpu_user_s, "cpu_sys_s": r.cpu_sys_s,
        "cpu_seconds": r.cpu_seconds, "max_rss_kib": r.max_rss_kib, "nodes": r.nodes,
        "program": r.program, "outcome": r.outcome, "category": r.category,
        "modules": r.modules, "facts": r.facts,
    });
    let mut s = serde_json::to_string::<Value>(&v).expect("JSON values serialize");
    s.push('\n');
    s
}

/// Jobs per Parquet row group.
pub const ROW_GROUP: usize = 65_536;

/// Buffers one row group, column by column.
#[derive(Default)]
struct Group {
    rows: Vec<Row>,
}

fn pq_err(e: parquet::errors::ParquetError) -> String {
    format!("writing Parquet: {e}")
}

impl Group {
    fn write<W: Write + Send>(&mut self, w: &mut SerializedFileWriter<W>) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let mut rg = w.next_row_group().map_err(pq_err)?;
        let mut i = 0;
        while let Some(mut col) = rg.next_column().map_err(pq_err)? {
            let name = COLUMNS[i];
            i += 1;
            let ms = |x: Option<i64>| x.map(|v| v * 1000);
            match name {
                "job_id" | "array_job_id" | "array_task_id" | "uid" | "start" | "end" | "elapsed_s" | "exit_code"
                | "signal" | "nnodes" | "ncpus" | "max_rss_kib" => {
                    let get = |r: &Row| -> Option<i64> {
                        match name {
                            "job_id" => Some(r.job_id),
                            "array_job_id" => r.array_job_id,
                            "array_task_id" => r.array_task_id,
                            "uid" => r.uid,
                            "start" => ms(r.start),
                            "end" => ms(r.end),
                            "elapsed_s" => r.elapsed(),
                            "exit_code" => r.exit_code,
                            "signal" => r.signal,
                            "nnodes" => r.nnodes,
                            "ncpus" => r.ncpus,
                            _ => r.max_rss_kib,
                        }
                    };
                    let vals: Vec<Option<i64>> = rows.iter().map(get).collect();
                    let present: Vec<i64> = vals.iter().flatten().copied().collect();
                    let defs: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                    let defs = if name == "job_id" { None } else { Some(&defs[..]) };
                    col.typed::<Int64Type>().write_batch(&present, defs, None).map_err(pq_err)?;
                }
                "cpu_user_s" | "cpu_sys_s" | "cpu_seconds" => {
                    let vals: Vec<f64> = rows
                        .iter()
                        .map(|r| match name {
                            "cpu_user_s" => r.cpu_user_s,
                            "cpu_sys_s" => r.cpu_sys_s,
                            _ => r.cpu_seconds,
                        })
                        .collect();
                    col.typed::<DoubleType>().write_batch(&vals, None, None).map_err(pq_err)?;
                }
                "modules" | "facts" => {
                    let mut vals = Vec::new();
                    let mut defs = Vec::new();
                    let mut reps = Vec::new();
                    for r in &rows {
                        let list = if name == "modules" { &r.modules } else { &r.facts };
                        if list.is_empty() {
                            defs.push(0);
                            reps.push(0);
                        }
                        for (k, s) in list.iter().enumerate() {
                            vals.push(ByteArray::from(s.as_str()));
                            defs.push(1);
                            reps.push(i16::from(k > 0));
                        }
                    }
                    col.typed::<ByteArrayType>().write_batch(&vals, Some(&defs), Some(&reps)).map_err(pq_err)?;
                }
                _ => {
                    let get = |r: &Row| -> Option<String> {
                        match name {
                            "cluster" => Some(r.cluster.clone()),
                            "state" => Some(r.state.clone()),
                            "user" => r.user.clone(),
                            "account" => r.account.clone(),
                            "partition" => r.partition.clone(),
                            "qos" => r.qos.clone(),
                            "job_name" => r.job_name.clone(),
                            "nodes" => r.nodes.clone(),
                            "program" => r.program.clone(),
                            "outcome" => r.outcome.clone(),
                            _ => r.category.clone(),
                        }
                    };
                    let vals: Vec<Option<String>> = rows.iter().map(get).collect();
                    let present: Vec<ByteArray> = vals.iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
                    let defs: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                    let required = name == "cluster" || name == "state";
                    let defs = if required { None } else { Some(&defs[..]) };
                    col.typed::<ByteArrayType>().write_batch(&present, defs, None).map_err(pq_err)?;
                }
            }
            col.close().map_err(pq_err)?;
        }
        rg.close().map_err(pq_err)?;
        Ok(())
    }
}

/// Writes the matching jobs as Parquet to `out`; returns the number of jobs. `progress` is told
/// of every row written.
pub fn parquet<W: Write + Send>(
    conn: &Connection,
    filter: &Filter,
    out: W,
    progress: &dyn Fn(u64),
) -> Result<u64, String> {
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq_err)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("runledger collector export".into())
            .build(),
    );
    let mut w = SerializedFileWriter::new(out, schema, props).map_err(pq_err)?;
    let mut g = Group::default();
    let n = for_each_row(conn, filter, |r| {
        g.rows.push(r);
        progress(1);
        if g.rows.len() >= ROW_GROUP {
            g.write(&mut w)?;
        }
        Ok(())
    })?;
    g.write(&mut w)?;
    w.close().map_err(pq_err)?;
    Ok(n)
}

/// Writes the matching jobs as CSV or JSON Lines to `out`; returns the number of jobs. `progress`
/// is told of every row written.
pub fn text(
    conn: &Connection,
    filter: &Filter,
    format: ExportFormat,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<u64, String> {
    let io = |e: std::io::Error| format!("writing the export: {e}");
    if format == ExportFormat::Csv {
        out.write_all(csv_header().as_bytes()).map_err(io)?;
    }
    for_each_row(conn, filter, |r| {
        let line = if format == ExportFormat::Csv { csv_line(&r) } else { json_line(&r) };
        progress(1);
        out.write_all(line.as_bytes()).map_err(io)
    })
}
