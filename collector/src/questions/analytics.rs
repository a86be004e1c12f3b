//! The manager-facing queries (`query summary`, `modules`, `who-used`, `co-usage`, `events`,
//! `throughput`, `utilization`) and `export`: their plain options and how each runs. The
//! queries themselves live in [`crate::questions::query::summary`], [`crate::questions::query::usage`] and
//! [`crate::questions::query::events`]; their flags are [`crate::cli::questions`]'s.

use crate::failure::Failure;
use crate::questions::plot::PlotTarget;
use crate::questions::plot_usage::{self, Bar, TimeSeries};
use crate::questions::query::events::{self, EventQuery};
use crate::questions::query::filter;
use crate::questions::query::report::Cell;
use crate::questions::query::report::{Format, Report};
use crate::questions::query::summary::{self, Key};
use crate::questions::query::usage;
use crate::questions::timefmt;
use runledger_record::Module;
use std::io::Write;
use std::path::Path;

/// The sacct-like job filters, the same for every query (defined once in `query::jobfilter`).
pub use crate::questions::query::jobfilter::JobFilterArgs as FilterArgs;

/// Output options shared by every analytics query.
#[derive(Debug, Clone, Default)]
pub struct OutArgs {
    /// Print a JSON array of row objects (raw numbers: seconds, fractions 0–1).
    pub json: bool,

    /// Print CSV (raw numbers: seconds, fractions 0–1).
    pub csv: bool,

    /// No header line (table and CSV).
    pub noheader: bool,
}

impl OutArgs {
    fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.csv {
            Format::Csv
        } else {
            Format::Table
        }
    }
}

#[derive(Debug)]
pub struct SummaryArgs {
    /// Also draw a chart: FILE.png (1200x800) or FILE.svg.
    pub plot: Option<PlotTarget>,

    /// Group by these keys: user, account, partition, cluster, program, module, module_version,
    /// state, category, nodes, ranks, year, month, week, day, hour, weekday, or fact:NAME (a
    /// job-level fact, input parameters included: fact:param.pair_style).
    pub by: Vec<Key>,

    /// Sort by this column (metrics descending, keys ascending) [default: keys for time and
    /// size keys, else jobs].
    pub sort: Option<String>,

    /// Only the first N rows.
    pub limit: Option<usize>,

    pub filter: FilterArgs,

    pub out: OutArgs,
}

#[derive(Debug)]
pub struct ModulesArgs {
    /// Also draw a chart: FILE.png (1200x800) or FILE.svg.
    pub plot: Option<PlotTarget>,

    /// Only the top N rows.
    pub top: Option<usize>,

    /// Rank by distinct users instead of jobs.
    pub by_users: bool,

    /// One row per module name (all versions together) instead of per version.
    pub names: bool,

    pub filter: FilterArgs,

    pub out: OutArgs,
}

#[derive(Debug)]
pub struct WhoUsedArgs {
    /// The module: NAME (every version, one row each) or NAME/VERSION.
    pub target: Module,

    /// Compare jobs started before this time with jobs started from it (an update's impact).
    pub split: Option<i64>,

    /// Only jobs started at or after this time.
    pub after: Option<i64>,

    /// Only jobs started before this time.
    pub before: Option<i64>,

    pub filter: FilterArgs,

    pub out: OutArgs,
}

#[derive(Debug)]
pub struct CoUsageArgs {
    /// Only the top N pairs.
    pub top: usize,

    /// Pairs of module versions instead of module names.
    pub versions: bool,

    /// Only pairs loaded together by at least N jobs.
    pub min_jobs: i64,

    pub filter: FilterArgs,

    pub out: OutArgs,
}

#[derive(Debug)]
pub struct EventsArgs {
    /// Only these kinds: step_started, task_exited, step_ended, job_ended.
    pub kind: Vec<String>,

    /// Only transitions from this state (PENDING, RUNNING).
    pub from_state: Vec<String>,

    /// Only transitions to this state (RUNNING, EXITED, ENDED, or a job state: COMPLETED, FAILED, …).
    pub to_state: Vec<String>,

    /// Only events at or after this time.
    pub after: Option<i64>,

    /// Only events at or before this time.
    pub before: Option<i64>,

    /// At most N events.
    pub limit: Option<usize>,

    pub filter: FilterArgs,

    pub out: OutArgs,
}

#[derive(Debug)]
pub struct SeriesArgs {
    /// Also draw a chart: FILE.png (1200x800) or FILE.svg.
    pub plot: Option<PlotTarget>,

    /// Interval length: a number and s, m, h, d or w (30s, 10m, 1h, 1d, 1w).
    pub interval: i64,

    /// Weight by nodes: the plot shows busy nodes instead of running jobs (utilization).
    pub node_weighted: bool,

    pub filter: FilterArgs,

    pub out: OutArgs,
}

fn interval_text(secs: i64) -> String {
    for (unit, n) in [("week", 604_800), ("day", 86_400), ("hour", 3600), ("minute", 60)] {
        if secs % n == 0 {
            let k = secs / n;
            return if k == 1 { unit.to_string() } else { format!("{k} {unit}s") };
        }
    }
    format!("{secs} s")
}

fn open(db: &Path) -> Result<rusqlite::Connection, Failure> {
    Ok(runledger_ledger::db::open_ro(db)?)
}

fn write(out: &mut dyn Write, report: &Report, o: &OutArgs) -> Result<(), Failure> {
    crate::failure::write_out(out, report.render(o.format(), !o.noheader))
}

/// -S after -E: a usage error (exit code 2, like clap's).
pub fn check_range(f: &FilterArgs) -> Result<(), Failure> {
    match (f.starttime, f.endtime) {
        (Some(s), Some(e)) if s > e => Err(Failure::usage(format!(
            "--starttime ({}) is after --endtime ({})",
            timefmt::display(Some(s)),
            timefmt::display(Some(e))
        ))),
        _ => Ok(()),
    }
}

pub fn run_summary(db: &Path, a: &SummaryArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let conn = open(db)?;
    let mut r = summary::summary(&conn, &a.filter.to_filter(), &a.by)?;
    if let Err(e) = summary::sort_and_limit(&mut r, &a.by, a.sort.as_deref(), a.limit) {
        return Err(Failure::usage(e));
    }
    if let Some(t) = &a.plot {
        if a.by.len() > 2 {
            return Err(Failure::usage("--plot draws one --by key (bars) or two (a heatmap)"));
        }
        plot_summary(t, &r, &a.by, &a.filter)?;
    }
    write(out, &r, &a.out)
}

fn filter_note(f: &FilterArgs) -> String {
    let mut parts = Vec::new();
    let list = |name: &str, v: &[String]| if v.is_empty() { None } else { Some(format!("{name} {}", v.join(","))) };
    parts.extend(list("user", &f.user));
    parts.extend(list("account", &f.account));
    parts.extend(list("partition", &f.partition));
    parts.extend(list("cluster", &f.cluster));
    let states: Vec<String> = f.state.iter().map(|s| s.as_str().to_string()).collect();
    parts.extend(list("state", &states));
    let mods: Vec<String> = f.module.iter().map(|m| m.full_name()).collect();
    parts.extend(list("module", &mods));
    if f.starttime.is_some() || f.endtime.is_some() {
        parts.push(format!(
            "{} to {}",
            f.starttime.map(|t| timefmt::display(Some(t))).unwrap_or_else(|| "first".into()),
            f.endtime.map(|t| timefmt::display(Some(t))).unwrap_or_else(|| "last".into())
        ));
    }
    if parts.is_empty() {
        "all recorded jobs".into()
    } else {
        parts.join("; ")
    }
}

fn cell_label(c: &Cell) -> String {
    match c {
        Cell::Text(t) => t.clone(),
        Cell::Int(i) => i.to_string(),
        Cell::Null => "(none)".into(),
        other => format!("{other:?}"),
    }
}

/// At most this many bars or heatmap rows (the largest), so the labels stay legible.
const MAX_ROWS: usize = 30;

fn plot_summary(t: &PlotTarget, r: &Report, keys: &[Key], f: &FilterArgs) -> Result<(), Failure> {
    let jobs = r.col("jobs").expect("summary has jobs");
    let users = r.col("users").expect("summary has users");
    let num = |c: &Cell| c.num().unwrap_or(0.0);
    if keys.len() == 1 {
        let mut rows: Vec<&Vec<Cell>> = r.rows.iter().collect();
        if rows.len() > MAX_ROWS && !keys[0].ordered() {
            rows.sort_by(|a, b| num(&b[jobs]).total_cmp(&num(&a[jobs])));
        }
        rows.truncate(MAX_ROWS);
        let mut bars: Vec<Bar> = rows
            .iter()
            .map(|row| Bar {
                label: cell_label(&row[0]),
                value: num(&row[jobs]),
                note: count_note(num(&row[jobs]), num(&row[users])),
            })
            .collect();
        if let Some(all) = summary::frame(keys[0]) {
            // Every hour or weekday, the empty ones too, in the key's order.
            bars = all
                .iter()
                .map(|c| {
                    let label = cell_label(c);
                    bars.iter().find(|b| b.label == label).cloned().unwrap_or(Bar {
                        label,
                        value: 0.0,
                        note: count_note(0.0, 0.0),
                    })
                })
                .collect();
        }
        let title = format!("Jobs by {}", keys[0].name());
        plot_usage::bars(t, &title, &filter_note(f), "jobs (count)", &bars)?;
        return Ok(());
    }
    let (row_labels, col_vals, values) = heatmap_cells(r, keys);
    let col_labels: Vec<String> = col_vals.iter().map(|c| c.1.clone()).collect();
    let desc = |k: Key| match k {
        Key::Hour => "hour of day (start, local time)".to_string(),
        Key::Weekday => "weekday (start, local time)".to_string(),
        Key::Day | Key::Week | Key::Month | Key::Year => format!("{} (start, local time)", k.name()),
        Key::Nodes => "nodes (count)".to_string(),
        Key::Ranks => "ranks (count)".to_string(),
        other => other.name().replace('_', " "),
    };
    let title = format!("Jobs by {} and {}", keys[0].name(), keys[1].name());
    let mut sub = filter_note(f);
    if r.rows.iter().map(|row| cell_label(&row[0])).collect::<std::collections::HashSet<_>>().len() > MAX_ROWS {
        sub.push_str(&format!("; the {MAX_ROWS} {}s with most jobs", keys[0].name()));
    }
    plot_usage::heatmap(
        t,
        &title,
        &sub,
        &desc(keys[0]),
        &desc(keys[1]),
        "jobs started",
        &row_labels,
        &col_labels,
        &values,
    )?;
    Ok(())
}

/// Row labels, columns (cell and label), jobs per cell.
type HeatmapCells = (Vec<String>, Vec<(Cell, String)>, Vec<Vec<f64>>);

/// A two-key summary as heatmap cells: row labels, columns (cell and label) and jobs per cell.
/// Rows are the first key's values (the most jobs first unless the key is ordered), columns the
/// second's; a key with a fixed set of values ([`summary::frame`]: hours, weekdays) shows all
/// of them, empty ones included.
fn heatmap_cells(r: &Report, keys: &[Key]) -> HeatmapCells {
    let jobs = r.col("jobs").expect("summary has jobs");
    let num = |c: &Cell| c.num().unwrap_or(0.0);
    let mut row_tot: Vec<(String, f64, usize)> = Vec::new();
    let mut col_vals: Vec<(Cell, String)> = Vec::new();
    for (i, row) in r.rows.iter().enumerate() {
        let rl = cell_label(&row[0]);
        match row_tot.iter_mut().find(|x| x.0 == rl) {
            Some(x) => x.1 += num(&row[jobs]),
            None => row_tot.push((rl, num(&row[jobs]), i)),
        }
        if !col_vals.iter().any(|c| c.0 == row[1]) {
            col_vals.push((row[1].clone(), cell_label(&row[1])));
        }
    }
    for c in summary::frame(keys[1]).unwrap_or_default() {
        if !col_vals.iter().any(|x| x.0 == c) {
            col_vals.push((c.clone(), cell_label(&c)));
        }
    }
    if let Some(all) = summary::frame(keys[0]) {
        // The frame's order is the key's (hours 0–23, Monday to Sunday).
        let mut framed: Vec<(String, f64, usize)> =
            all.iter().enumerate().map(|(i, c)| (cell_label(c), 0.0, i)).collect();
        for (label, n, _) in row_tot.drain(..) {
            if let Some(x) = framed.iter_mut().find(|x| x.0 == label) {
                x.1 += n;
            }
        }
        row_tot = framed;
    }
    col_vals.sort_by(|a, b| match (a.0.num(), b.0.num()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.1.cmp(&b.1),
    });
    if keys[0].ordered() {
        row_tot.sort_by_key(|a| a.2);
    } else {
        row_tot.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    row_tot.truncate(MAX_ROWS);
    let row_labels: Vec<String> = row_tot.iter().map(|x| x.0.clone()).collect();
    let mut values = vec![vec![0.0; col_vals.len()]; row_labels.len()];
    for row in &r.rows {
        let rl = cell_label(&row[0]);
        let Some(ri) = row_labels.iter().position(|x| *x == rl) else { continue };
        let Some(ci) = col_vals.iter().position(|c| c.0 == row[1]) else { continue };
        values[ri][ci] += num(&row[jobs]);
    }
    (row_labels, col_vals, values)
}

pub fn run_modules(db: &Path, a: &ModulesArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let conn = open(db)?;
    let r = usage::modules(&conn, &a.filter.to_filter(), a.names, a.by_users, a.top)?;
    if let Some(t) = &a.plot {
        let (jobs, users) = (r.col("jobs").expect("jobs"), r.col("users").expect("users"));
        let num = |c: &Cell| c.num().unwrap_or(0.0);
        let bars: Vec<Bar> = r
            .rows
            .iter()
            .take(MAX_ROWS)
            .map(|row| {
                let label = match (&row[1], a.names) {
                    (Cell::Text(v), false) if !v.is_empty() => format!("{}/{v}", cell_label(&row[0])),
                    _ => cell_label(&row[0]),
                };
                let (j, u) = (num(&row[jobs]), num(&row[users]));
                Bar {
                    label,
                    value: if a.by_users { u } else { j },
                    note: format!("{} ({:.1}% of jobs)", count_note(j, u), num(&row[4]) * 100.0),
                }
            })
            .collect();
        let what = if a.by_users { "distinct users" } else { "jobs" };
        let title = format!("Top {} by {what}", if a.names { "modules" } else { "module versions" });
        plot_usage::bars(t, &title, &filter_note(&a.filter), &format!("{what} (count)"), &bars)?;
    }
    write(out, &r, &a.out)
}

pub fn run_who_used(db: &Path, a: &WhoUsedArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let periods = match (a.split, a.after, a.before) {
        (Some(s), _, _) => vec![
            usage::Period { label: format!("before {}", timefmt::display(Some(s))), from: None, to: Some(s) },
            usage::Period { label: format!("from {}", timefmt::display(Some(s))), from: Some(s), to: None },
        ],
        (None, after, before) => {
            if let (Some(x), Some(y)) = (after, before) {
                if x >= y {
                    return Err(Failure::usage("--after must be earlier than --before"));
                }
            }
            let label = match (after, before) {
                (None, None) => "all".to_string(),
                (Some(x), None) => format!("from {}", timefmt::display(Some(x))),
                (None, Some(y)) => format!("before {}", timefmt::display(Some(y))),
                (Some(x), Some(y)) => format!("{} to {}", timefmt::display(Some(x)), timefmt::display(Some(y))),
            };
            vec![usage::Period { label, from: after, to: before }]
        }
    };
    let conn = open(db)?;
    let r = usage::who_used(&conn, &a.filter.to_filter(), &a.target, &periods)?;
    write(out, &r, &a.out)
}

pub fn run_co_usage(db: &Path, a: &CoUsageArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let conn = open(db)?;
    let r = usage::co_usage(&conn, &a.filter.to_filter(), a.versions, a.min_jobs, Some(a.top))?;
    write(out, &r, &a.out)
}

pub fn run_events(db: &Path, a: &EventsArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let conn = open(db)?;
    let q = EventQuery {
        kinds: a.kind.clone(),
        from_state: a.from_state.clone(),
        to_state: a.to_state.clone(),
        after: a.after,
        before: a.before,
        limit: a.limit,
    };
    let r = events::events(&conn, &a.filter.to_filter(), &q)?;
    write(out, &r, &a.out)
}

pub fn run_throughput(db: &Path, a: &SeriesArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let conn = open(db)?;
    let r = events::throughput(&conn, &a.filter.to_filter(), a.interval, None)?;
    if let Some(t) = &a.plot {
        let series = |name: &str| TimeSeries {
            label: name.to_string(),
            points: r
                .rows
                .iter()
                .map(|row| (row[0].num().unwrap_or(0.0) as i64, row[r.col(name).expect("column")].num().unwrap_or(0.0)))
                .collect(),
        };
        let per = format!("jobs ended per {}", interval_text(a.interval));
        let mut left = [series("jobs"), series("failed")];
        left[0].label = "jobs ended".into();
        left[1].label = "failed (FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL)".into();
        let cum = series("cumulative");
        plot_usage::steps(
            t,
            "Throughput: jobs ended",
            &filter_note(&a.filter),
            (&per, &left),
            Some(("jobs ended, cumulative", &cum)),
            a.interval,
        )?;
    }
    write(out, &r, &a.out)
}

pub fn run_utilization(db: &Path, a: &SeriesArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_range(&a.filter)?;
    let conn = open(db)?;
    let r = events::utilization(&conn, &a.filter.to_filter(), a.interval, None)?;
    if let Some(t) = &a.plot {
        let col = if a.node_weighted { "nodes" } else { "jobs" };
        let i = r.col(col).expect("column");
        let s = TimeSeries {
            label: if a.node_weighted { "busy nodes".into() } else { "running jobs".into() },
            points: r
                .rows
                .iter()
                .map(|row| (row[0].num().unwrap_or(0.0) as i64, row[i].num().unwrap_or(0.0)))
                .collect(),
        };
        let y = format!("{} (mean over each {})", s.label, interval_text(a.interval));
        let title = if a.node_weighted { "Utilization: nodes busy" } else { "Utilization: jobs running" };
        plot_usage::steps(t, title, &filter_note(&a.filter), (&y, std::slice::from_ref(&s)), None, a.interval)?;
    }
    write(out, &r, &a.out)
}

#[derive(Debug)]
pub struct ExportArgs {
    /// Output format.
    pub format: crate::questions::export::ExportFormat,

    /// Output file ('-' for standard output; required for Parquet).
    pub output: Option<std::path::PathBuf>,

    /// Database file, instead of collector.database.
    pub database: Option<std::path::PathBuf>,

    /// No progress bar (one is drawn on standard error when writing to a file from a terminal).
    pub no_progress: bool,

    pub filter: FilterArgs,
}

/// The progress bar of an export to a file run from a terminal; hidden otherwise.
fn export_progress(conn: &rusqlite::Connection, filter: &filter::Filter, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (cond, params) = filter.to_sql();
    let total: i64 = conn
        .query_row(&format!("SELECT COUNT(*) FROM jobs WHERE {cond}"), rusqlite::params_from_iter(params), |r| r.get(0))
        .unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    let style = indicatif::ProgressStyle::with_template(
        "exporting {bar:30} {percent:>3}% {human_pos}/{human_len} jobs, {eta} left",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

pub fn run_export(db: &Path, a: &ExportArgs, out: &mut dyn Write) -> Result<(), Failure> {
    use crate::questions::export::{self, ExportFormat};
    check_range(&a.filter)?;
    let to_stdout = a.output.as_deref().is_none_or(|p| p == Path::new("-"));
    if a.format == ExportFormat::Parquet && to_stdout {
        return Err(Failure::usage("--format parquet needs -o FILE"));
    }
    let conn = open(db)?;
    let filter = a.filter.to_filter();
    let started = std::time::Instant::now();
    let n = match (&a.output, to_stdout) {
        (Some(path), false) => {
            // Written next to the target and renamed, so a reader never sees half a file.
            let tmp = path.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .map_err(|e| Failure::new(format!("cannot create {}: {e}", tmp.display())))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let bar = export_progress(&conn, &filter, !a.no_progress);
            let tick = |n| bar.inc(n);
            let n = if a.format == ExportFormat::Parquet {
                export::parquet(&conn, &filter, &mut w, &tick)
            } else {
                export::text(&conn, &filter, a.format, &mut w, &tick)
            };
            bar.finish_and_clear();
            let n = n.and_then(|n| w.flush().map(|_| n).map_err(|e| format!("writing {}: {e}", tmp.display())));
            match n {
                Ok(n) => {
                    std::fs::rename(&tmp, path).map_err(|e| {
                        Failure::new(format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))
                    })?;
                    n
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Failure::new(e));
                }
            }
        }
        _ => match export::text(&conn, &filter, a.format, out, &|_| ()) {
            Ok(n) => n,
            Err(e) if e.contains("Broken pipe") => return Ok(()),
            Err(e) => return Err(Failure::new(e)),
        },
    };
    if !to_stdout {
        log::info!(
            "exported {n} jobs to {} in {:.2} s",
            a.output.as_deref().unwrap_or(Path::new("-")).display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// "12 jobs, 1 user": a bar's note in the usage charts.
fn count_note(jobs: f64, users: f64) -> String {
    let plural = |n: f64, what: &str| format!("{n} {what}{}", if n == 1.0 { "" } else { "s" });
    format!("{}, {}", plural(jobs, "job"), plural(users, "user"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger of one Friday's jobs still draws every weekday and every hour (issue #15).
    #[test]
    fn the_weekday_hour_heatmap_keeps_its_frame() {
        let mut r = Report::new(&["weekday", "hour", "jobs", "users"]);
        r.rows.push(vec![Cell::Text("5 Fri".into()), Cell::Int(9), Cell::Int(3), Cell::Int(1)]);
        r.rows.push(vec![Cell::Text("5 Fri".into()), Cell::Int(14), Cell::Int(2), Cell::Int(1)]);
        let (rows, cols, values) = heatmap_cells(&r, &[Key::Weekday, Key::Hour]);
        assert_eq!(rows, ["1 Mon", "2 Tue", "3 Wed", "4 Thu", "5 Fri", "6 Sat", "7 Sun"]);
        assert_eq!(
            cols.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
            (0..24).map(|h| h.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(values.len(), 7);
        assert!(values.iter().all(|row| row.len() == 24));
        assert_eq!((values[4][9], values[4][14]), (3.0, 2.0));
        assert_eq!(values.iter().flatten().sum::<f64>(), 5.0, "nothing else is filled");
        // Transposed, the same frame.
        let mut t = Report::new(&["hour", "weekday", "jobs", "users"]);
        t.rows.push(vec![Cell::Int(9), Cell::Text("5 Fri".into()), Cell::Int(3), Cell::Int(1)]);
        let (rows, cols, values) = heatmap_cells(&t, &[Key::Hour, Key::Weekday]);
        assert_eq!(rows.len(), 24);
        assert_eq!(rows[0], "0");
        assert_eq!(
            cols.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
            ["1 Mon", "2 Tue", "3 Wed", "4 Thu", "5 Fri", "6 Sat", "7 Sun"]
        );
        assert_eq!(values[9][4], 3.0);
        // A key without a fixed set keeps only what the data has.
        let mut u = Report::new(&["user", "hour", "jobs", "users"]);
        u.rows.push(vec![Cell::Text("alice".into()), Cell::Int(9), Cell::Int(3), Cell::Int(1)]);
        let (rows, cols, _) = heatmap_cells(&u, &[Key::User, Key::Hour]);
        assert_eq!((rows, cols.len()), (vec!["alice".to_string()], 24));
    }
}
