//! `collector query errors`: which errors users hit, how often — the failure pie chart.
//!
//! A job counts as failed when its logs say so (`outcome = failed`) or when Slurm's state is
//! not COMPLETED (jobs without an epilog record yet, state UNKNOWN, do not count). Its category
//! is [`failure_category`]: the log's diagnosis when it is specific, else the Slurm state's
//! meaning, else whatever the log said (`unknown`, `truncated`), else `unknown`.

use super::filter::Filter;
use super::jobfilter::JobFilterArgs;
use crate::questions::parse::CmdError;
use crate::questions::plot::{self, PlotTarget};
use rusqlite::{params_from_iter, Connection};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

pub const ABOUT: &str =
    "Count failed jobs by failure category (the error pie chart), overall or per user, program or account";

pub const LONG_ABOUT: &str = "\
Count failed jobs by failure category: which errors users hit, and how often.

A job counts as failed when its logs say it failed (outcome failed) or when its Slurm state is \
not COMPLETED. Jobs without an epilog record yet (state UNKNOWN) count only if their logs say \
failed. Each failed job gets one category:

  1. the category its logs show, when that is specific (anything but unknown and truncated);
  2. else its Slurm state's meaning: TIMEOUT → time_limit, OUT_OF_MEMORY → out_of_memory,
     CANCELLED → cancelled, NODE_FAIL → node_failure;
  3. else the log's own unspecific category (truncated: the log just stops; unknown);
  4. else unknown (e.g. FAILED with no log, or a log the parser does not know).

The FromLog column says how many of a category's jobs got it from their logs (rule 1 or 3); the \
rest come from the Slurm state. Shares are of the failed jobs shown.

--by category (the default) lists categories with counts and shares; --by user, program or \
account lists, per group, its jobs, its failed jobs and the failed jobs per category (only the \
categories that occur are shown). Groups are sorted by failed jobs, most first.

--plot FILE.png or FILE.svg draws a chart (1200×800): a pie of the categories with a legend of \
count and share, or, with --by, a horizontal stacked bar per group (the 25 groups with the most \
failures). Categories keep the same colour in every chart.";

pub const AFTER_HELP: &str = "\
Examples:
  collector query errors
  collector query errors -S now-30days --plot failures.png
  collector query errors --by user -A physics
  collector query errors --by program --plot by-program.svg
  collector query errors --program lammps --json
  collector query errors -S 2026-10-01 -E 2026-10-31 --by account --csv";

/// What `--by` groups on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ErrorsBy {
    #[default]
    Category,
    User,
    Program,
    Account,
}

impl ErrorsBy {
    fn column(self) -> &'static str {
        match self {
            ErrorsBy::Category => "category",
            ErrorsBy::User => "COALESCE(user, CAST(uid AS TEXT))",
            ErrorsBy::Program => "program",
            ErrorsBy::Account => "account",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ErrorsBy::Category => "category",
            ErrorsBy::User => "user",
            ErrorsBy::Program => "program",
            ErrorsBy::Account => "account",
        }
    }

    fn none_label(self) -> &'static str {
        match self {
            ErrorsBy::Program => "(no log)",
            _ => "(unknown)",
        }
    }
}

#[derive(Debug)]
pub struct ErrorsArgs {
    /// Group by: category (default), user, program or account.
    pub by: ErrorsBy,

    pub filter: JobFilterArgs,

    /// Also draw a chart to this file (.png or .svg, 1200×800).
    pub plot: Option<PlotTarget>,

    /// Print JSON.
    pub json: bool,

    /// Print CSV.
    pub csv: bool,

    /// No header line (table and CSV).
    pub noheader: bool,
}

/// The category a failed job counts under (see the module documentation).
/// Returns the category and whether it came from the job's logs.
pub fn failure_category(state: &str, outcome: Option<&str>, category: Option<&str>) -> (String, bool) {
    let log = category.map(str::to_ascii_lowercase);
    let specific = |c: &str| c != "unknown" && c != "truncated";
    // A success has no category; should one be stored anyway, the Slurm state decides.
    let success = outcome.is_some_and(|o| o.eq_ignore_ascii_case("success"));
    if let Some(c) = log.as_deref().filter(|c| specific(c) && !success) {
        return (c.to_string(), true);
    }
    let from_state = match state {
        "TIMEOUT" => Some("time_limit"),
        "OUT_OF_MEMORY" => Some("out_of_memory"),
        "CANCELLED" => Some("cancelled"),
        "NODE_FAIL" => Some("node_failure"),
        _ => None,
    };
    if let Some(c) = from_state {
        return (c.to_string(), false);
    }
    match log.filter(|_| !success) {
        Some(c) => (c, true),
        None => ("unknown".to_string(), false),
    }
}

/// The SQL condition of a failed job.
pub const FAILED_SQL: &str = "(outcome = 'failed' OR state NOT IN ('COMPLETED', 'UNKNOWN'))";

/// The counts behind the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorStats {
    /// Jobs the filters matched.
    pub matched: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Category → (jobs, of which from the logs), most jobs first.
    pub categories: Vec<(String, u64, u64)>,
    /// With `--by` other than category: group → (jobs, failed, per-category counts), most failed first.
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub jobs: u64,
    pub failed: u64,
    pub categories: BTreeMap<String, u64>,
}

/// Counts the failed jobs among those `filter` matches.
pub fn error_stats(conn: &Connection, filter: &Filter, by: ErrorsBy) -> rusqlite::Result<ErrorStats> {
    let (cond, params) = filter.to_sql();
    let group_col = if by == ErrorsBy::Category { "NULL" } else { by.column() };
    let mut totals: HashMap<Option<String>, u64> = HashMap::new();
    {
        let sql = format!("SELECT {group_col}, count(*) FROM jobs WHERE {cond} GROUP BY 1");
        let mut st = conn.prepare(&sql)?;
        let mut rows = st.query(params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            totals.insert(r.get(0)?, r.get::<_, i64>(1)? as u64);
        }
    }
    let mut stats = ErrorStats { matched: totals.values().sum(), ..Default::default() };
    let mut cats: HashMap<String, (u64, u64)> = HashMap::new();
    let mut groups: HashMap<Option<String>, Group> = HashMap::new();
    {
        let sql = format!("SELECT state, outcome, category, {group_col} FROM jobs WHERE {cond} AND {FAILED_SQL}");
        let mut st = conn.prepare(&sql)?;
        let mut rows = st.query(params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            let state: String = r.get(0)?;
            let outcome: Option<String> = r.get(1)?;
            let category: Option<String> = r.get(2)?;
            let (cat, from_log) = failure_category(&state, outcome.as_deref(), category.as_deref());
            stats.failed += 1;
            let e = cats.entry(cat.clone()).or_default();
            e.0 += 1;
            e.1 += u64::from(from_log);
            if by != ErrorsBy::Category {
                let key: Option<String> = r.get(3)?;
                let g = groups.entry(key).or_default();
                g.failed += 1;
                *g.categories.entry(cat).or_default() += 1;
            }
        }
    }
    stats.categories = cats.into_iter().map(|(c, (n, l))| (c, n, l)).collect();
    stats.categories.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if by != ErrorsBy::Category {
        for (key, jobs) in totals {
            let g = groups.entry(key.clone()).or_default();
            g.jobs = jobs;
            g.name = key.unwrap_or_else(|| by.none_label().to_string());
        }
        stats.groups = groups.into_values().collect();
        stats
            .groups
            .sort_by(|a, b| b.failed.cmp(&a.failed).then_with(|| b.jobs.cmp(&a.jobs)).then(a.name.cmp(&b.name)));
    }
    Ok(stats)
}

/// A category's colour: its place in the parser's vocabulary, so it is the same in every chart.
pub fn category_colour(name: &str) -> plotters::style::RGBColor {
    let i = logparse::Category::ALL.iter().position(|c| c.as_str() == name).unwrap_or(logparse::Category::ALL.len());
    plot::colour(i)
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// Rows of cells for the table and CSV.
fn rows(stats: &ErrorStats, by: ErrorsBy) -> (Vec<String>, Vec<bool>, Vec<Vec<String>>) {
    if by == ErrorsBy::Category {
        let header = vec!["Category".into(), "Jobs".into(), "Share".into(), "FromLog".into()];
        let right = vec![false, true, true, true];
        let rows = stats
            .categories
            .iter()
            .map(|(c, n, l)| vec![c.clone(), n.to_string(), format!("{:.1}%", pct(*n, stats.failed)), l.to_string()])
            .collect();
        return (header, right, rows);
    }
    let cats: Vec<&String> = stats.categories.iter().map(|c| &c.0).collect();
    let mut header = vec![capitalise(by.name()), "Jobs".into(), "Failed".into(), "Failed%".into()];
    header.extend(cats.iter().map(|c| c.to_string()));
    let mut right = vec![false, true, true, true];
    right.extend(cats.iter().map(|_| true));
    let rows = stats
        .groups
        .iter()
        .map(|g| {
            let mut r = vec![
                g.name.clone(),
                g.jobs.to_string(),
                g.failed.to_string(),
                format!("{:.1}%", pct(g.failed, g.jobs)),
            ];
            r.extend(cats.iter().map(|c| g.categories.get(*c).copied().unwrap_or(0).to_string()));
            r
        })
        .collect();
    (header, right, rows)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// An aligned table (the look of `query jobs`).
pub fn table(header: &[String], right: &[bool], rows: &[Vec<String>], with_header: bool) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| if with_header { h.chars().count() } else { 0 }).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |vals: &[String]| {
        let mut l = String::new();
        for (i, (v, w)) in vals.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(v.chars().count()));
            if right.get(i).copied().unwrap_or(false) {
                l.push_str(&pad);
                l.push_str(v);
            } else {
                l.push_str(v);
                l.push_str(&pad);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = String::new();
    if with_header {
        out.push_str(&line(header));
        out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        out.push('\n');
    }
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

pub fn csv(header: &[String], rows: &[Vec<String>], with_header: bool) -> String {
    let cell = |s: &String| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.clone()
        }
    };
    let mut out = String::new();
    if with_header {
        out.push_str(&header.iter().map(cell).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    for r in rows {
        out.push_str(&r.iter().map(cell).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

pub fn to_json(stats: &ErrorStats, by: ErrorsBy) -> Value {
    let mut v = json!({
        "matched_jobs": stats.matched,
        "failed_jobs": stats.failed,
        "by": by.name(),
        "categories": stats.categories.iter().map(|(c, n, l)| json!({
            "category": c, "jobs": n, "share": pct(*n, stats.failed) / 100.0, "from_log": l, "from_state": n - l,
        })).collect::<Vec<_>>(),
    });
    if by != ErrorsBy::Category {
        v["groups"] = json!(stats
            .groups
            .iter()
            .map(|g| json!({
                by.name(): g.name, "jobs": g.jobs, "failed": g.failed, "categories": g.categories,
            }))
            .collect::<Vec<_>>());
    }
    v
}

/// Draws the chart of `stats` to `target`.
pub fn draw(stats: &ErrorStats, by: ErrorsBy, target: &PlotTarget, scope: &str) -> Result<(), String> {
    let subtitle =
        format!("{} failed of {} jobs ({:.1}%){scope}", stats.failed, stats.matched, pct(stats.failed, stats.matched));
    if by == ErrorsBy::Category {
        let slices: Vec<plot::Slice> = stats
            .categories
            .iter()
            .map(|(c, n, _)| plot::Slice { label: c.replace('_', " "), count: *n, colour: category_colour(c) })
            .collect();
        return plot::pie(target, "Failed jobs by failure category", &subtitle, &slices);
    }
    let cats: Vec<(String, plotters::style::RGBColor)> =
        stats.categories.iter().map(|(c, _, _)| (c.replace('_', " "), category_colour(c))).collect();
    let groups: Vec<(String, Vec<u64>)> = stats
        .groups
        .iter()
        .filter(|g| g.failed > 0)
        .take(25)
        .map(|g| {
            let name: String = if g.name.chars().count() > 24 {
                g.name.chars().take(23).collect::<String>() + "…"
            } else {
                g.name.clone()
            };
            (name, stats.categories.iter().map(|(c, _, _)| g.categories.get(c).copied().unwrap_or(0)).collect())
        })
        .collect();
    let title = format!("Failed jobs by {} and failure category", by.name());
    let subtitle = if stats.groups.iter().filter(|g| g.failed > 0).count() > groups.len() {
        format!("{subtitle}; the {} {}s with the most failures", groups.len(), by.name())
    } else {
        subtitle
    };
    plot::stacked_bars(target, &title, &subtitle, "failed jobs", &groups, &cats)
}

/// `collector query errors`.
pub fn run(conn: &Connection, args: &ErrorsArgs) -> Result<String, CmdError> {
    args.filter.check().map_err(CmdError::Usage)?;
    if let Some(t) = &args.plot {
        t.check().map_err(CmdError::Usage)?;
    }
    let stats = error_stats(conn, &args.filter.to_filter(), args.by)?;
    if let Some(t) = &args.plot {
        draw(&stats, args.by, t, "").map_err(CmdError::Failure)?;
    }
    let (header, right, rows) = rows(&stats, args.by);
    Ok(if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(&stats, args.by)).expect("JSON values serialize");
        s.push('\n');
        s
    } else if args.csv {
        csv(&header, &rows, !args.noheader)
    } else {
        let mut s = String::new();
        if !args.noheader {
            let _ = writeln!(
                s,
                "{} of {} matching jobs failed ({:.1}%).\n",
                stats.failed,
                stats.matched,
                pct(stats.failed, stats.matched)
            );
        }
        s.push_str(&table(&header, &right, &rows, !args.noheader));
        if let Some(t) = &args.plot {
            if !args.noheader {
                let _ = writeln!(s, "\nChart written to {}", t.path.display());
            }
        }
        s
    })
}
