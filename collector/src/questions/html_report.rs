//! `collector report --html DIR`: the period's answers on one page, to look at rather than ask for.
//!
//! Managers asked for a big picture they can open without a terminal (as Open XDMoD and LLview
//! give). The page is `DIR/index.html`, one self-contained file: the charts are the very ones
//! `query … --plot x.svg` draws (plotters), inlined as SVG, with the numbers behind them in
//! plain tables; no script, no stylesheet or font from elsewhere, so it can be mailed, archived or
//! opened from a file share. Every section is one existing query run with the report's filters,
//! so the page says nothing the command line would not, and a caller sees on it exactly what they
//! may see through the socket: admins the whole cluster, managers their accounts, users their own
//! jobs (the filters come already narrowed, see `crate::daemon::local`).
//!
//! Each table carries `data-rows` (its body's row count) and each chart a `data-chart` name, so a
//! test (or a reader's script) can check the page without parsing prose.

use crate::failure::Failure;
use crate::questions::analytics::{self, FilterArgs, OutArgs, SeriesArgs, SummaryArgs};
pub use crate::questions::html_page::esc;
use crate::questions::html_page::{
    float, int, json_rows, module_label, package_label, pct, ratio, secs, Cells, Page, CSS,
};
use crate::questions::plot::PlotTarget;
use crate::questions::query::errors::{self, ErrorsBy};
use crate::questions::query::summary::Key;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many rows the "top" tables show.
const TOP: usize = 15;
/// How many module names are checked for versions whose failure rate rose.
const REGRESSION_MODULES: usize = 20;
/// Jobs a module must have had before a version appeared for a rise to be shown.
const MIN_JOBS_BEFORE: i64 = 10;
/// How many accounts get a table of their own (the busiest).
const MAX_ACCOUNTS: usize = 50;

/// The states `query summary` counts as failures (its `failure_rate`).
const FAILURE_STATES: [&str; 4] = ["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"];

#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// Write the report to DIR/index.html (DIR is created if missing).
    pub html: PathBuf,

    /// The page itself, DIR/index.html (set from --html; the socket renders it elsewhere).
    pub page: PathBuf,

    /// Database file, instead of collector.database.
    pub database: Option<PathBuf>,

    pub filter: FilterArgs,
}

impl ReportArgs {
    /// Sets [`ReportArgs::page`] from `--html` (where it is empty) and returns it.
    pub fn page(&mut self) -> &mut PathBuf {
        if self.page.as_os_str().is_empty() {
            self.page = self.html.join("index.html");
        }
        &mut self.page
    }
}

/// Writes the report for `who` (a phrase: "the whole ledger", "accounts chem", "rltest's jobs").
pub fn run(db: &Path, args: &mut ReportArgs, who: &str, out: &mut dyn Write) -> Result<(), Failure> {
    analytics::check_range(&args.filter)?;
    let page = args.page().clone();
    if let Some(dir) = page.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    let html = render(db, &args.filter, who)?;
    std::fs::write(&page, html).map_err(|e| Failure::new(format!("cannot write {}: {e}", page.display())))?;
    crate::failure::write_out(out, format!("Report written to {}\n", args.html.join("index.html").display()))
}

/// The whole page.
pub fn render(db: &Path, filter: &FilterArgs, who: &str) -> Result<String, Failure> {
    let scratch = tempfile::Builder::new()
        .prefix("runledger-report-")
        .tempdir()
        .map_err(|e| Failure::new(format!("cannot create a scratch directory: {e}")))?;
    let mut p = Page { db, filter, scratch: scratch.path(), body: String::new(), charts: 0 };
    let conn = runledger_ledger::db::open_ro(db)?;

    let (lo, hi) = data_range(&conn, filter)?;
    let from = filter.starttime.or(lo);
    let to = filter.endtime.or(hi);
    let period = format!(
        "{} to {}",
        from.map(|t| crate::questions::timefmt::display(Some(t))).unwrap_or_else(|| "the first job".into()),
        to.map(|t| crate::questions::timefmt::display(Some(t))).unwrap_or_else(|| "now".into())
    );

    p.headline()?;
    p.failures()?;
    p.modules(&conn)?;
    p.series(from, to)?;
    p.efficiency()?;
    p.idle(&conn)?;
    p.accounts()?;

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>runledger report: {title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <header><h1>runledger report</h1><p class=\"scope\">{who}, {period}{filters}</p>\
         <p class=\"generated\">generated {now} by <code>collector report</code></p></header>\n{body}\
         </body>\n</html>\n",
        title = esc(who),
        who = esc(who),
        period = esc(&period),
        filters = esc(&filter_text(filter)),
        now = esc(&crate::questions::timefmt::display(Some(chrono::Utc::now().timestamp()))),
        body = p.body,
    );
    Ok(html)
}

impl Page<'_> {
    /// `query summary --by KEYS --json` (with a chart to `plot` when given).
    fn summary(&self, by: &[Key], filter: &FilterArgs, plot: Option<PlotTarget>) -> Result<Vec<Value>, Failure> {
        let a = SummaryArgs {
            plot,
            by: by.to_vec(),
            sort: None,
            limit: None,
            filter: filter.clone(),
            out: OutArgs { json: true, ..Default::default() },
        };
        let mut buf = Vec::new();
        analytics::run_summary(self.db, &a, &mut buf)?;
        json_rows(&buf)
    }

    fn headline(&mut self) -> Result<(), Failure> {
        let rows = self.summary(&[], self.filter, None)?;
        let r = rows.first().cloned().unwrap_or(Value::Null);
        self.h2("headline", "Headline numbers");
        self.body.push_str("<div class=\"headline\" id=\"headline-numbers\">\n");
        for (label, text) in [
            ("jobs", int(&r["jobs"])),
            ("users", int(&r["users"])),
            ("core-hours allocated", float(&r["core_hours"], 1)),
            ("CPU-hours used", float(&r["cpu_hours"], 1)),
            ("CPU efficiency", pct(&r["cpu_efficiency"])),
            ("failure rate", pct(&r["failure_rate"])),
            ("median wall time", secs(&r["wall_p50_s"])),
        ] {
            let _ = writeln!(self.body, "<div><span class=\"num\">{}</span>{}</div>", esc(&text), esc(label));
        }
        self.body.push_str("</div>\n");
        Ok(())
    }

    fn failures(&mut self) -> Result<(), Failure> {
        self.h2("failures", "Failures");
        let conn = runledger_ledger::db::open_ro(self.db)?;
        let f = self.filter.to_filter();
        let stats = errors::error_stats(&conn, &f, ErrorsBy::Category).map_err(db_err)?;
        let _ = writeln!(
            self.body,
            "<p>{} of {} jobs failed (their logs say so, or Slurm's state is not COMPLETED; cancelled jobs \
             included here, while the headline failure rate, as <code>query summary</code>'s, leaves them out).</p>",
            stats.failed, stats.matched
        );
        if stats.failed > 0 {
            self.chart("failures-by-category", |t| {
                errors::draw(&stats, ErrorsBy::Category, &t, "").map_err(Failure::new)
            })?;
        }
        let rows: Vec<Cells> = stats
            .categories
            .iter()
            .map(|(c, n, from_log)| vec![(c.clone(), false), (n.to_string(), true), (from_log.to_string(), true)])
            .collect();
        self.table("failures-by-category", "Failed jobs by category", &["category", "failed jobs", "from logs"], &rows);
        for (by, id, what) in [
            (ErrorsBy::Program, "failing-programs", "Top failing programs"),
            (ErrorsBy::User, "failing-users", "Top failing users"),
        ] {
            let s = errors::error_stats(&conn, &f, by).map_err(db_err)?;
            let rows: Vec<Cells> = s
                .groups
                .iter()
                .filter(|g| g.failed > 0)
                .take(TOP)
                .map(|g| {
                    let top = g.categories.iter().max_by_key(|(_, n)| **n).map(|(c, _)| c.clone()).unwrap_or_default();
                    vec![
                        (g.name.clone(), false),
                        (g.failed.to_string(), true),
                        (g.jobs.to_string(), true),
                        (ratio(g.failed as f64, g.jobs as f64), true),
                        (top, false),
                    ]
                })
                .collect();
            let key = if by == ErrorsBy::User { "user" } else { "program" };
            self.table(id, what, &[key, "failed", "jobs", "share failed", "most frequent category"], &rows);
        }
        // Modules: one summary row per module and state, so a failure counts in each module the
        // job loaded, exactly as `query summary --by module,state` counts it.
        let rows = self.summary(&[Key::Module, Key::State], self.filter, None)?;
        let mut per: Vec<(String, i64, i64)> = Vec::new();
        for r in &rows {
            let name = r["module"].as_str().unwrap_or("(none)").to_string();
            let jobs = r["jobs"].as_i64().unwrap_or(0);
            let failed = if FAILURE_STATES.contains(&r["state"].as_str().unwrap_or("")) { jobs } else { 0 };
            match per.iter_mut().find(|x| x.0 == name) {
                Some(x) => {
                    x.1 += failed;
                    x.2 += jobs
                }
                None => per.push((name, failed, jobs)),
            }
        }
        per.retain(|x| x.1 > 0);
        per.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        per.truncate(TOP);
        let rows: Vec<Cells> = per
            .iter()
            .map(|(m, failed, jobs)| {
                vec![
                    (m.clone(), false),
                    (failed.to_string(), true),
                    (jobs.to_string(), true),
                    (ratio(*failed as f64, *jobs as f64), true),
                ]
            })
            .collect();
        self.table(
            "failing-modules",
            "Top failing modules (FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL)",
            &["module", "failed", "jobs", "share failed"],
            &rows,
        );
        Ok(())
    }

    fn modules(&mut self, conn: &rusqlite::Connection) -> Result<(), Failure> {
        self.h2("modules", "Modules");
        for (by_users, id, what) in [(false, "modules-by-jobs", "jobs"), (true, "modules-by-users", "users")] {
            let a = analytics::ModulesArgs {
                plot: None,
                top: Some(TOP),
                by_users,
                names: false,
                filter: self.filter.clone(),
                out: OutArgs { json: true, ..Default::default() },
            };
            let mut buf = Vec::new();
            let mut rows = Vec::new();
            self.chart(id, |t| {
                let a = analytics::ModulesArgs { plot: Some(t), ..a };
                analytics::run_modules(self.db, &a, &mut buf)?;
                rows = json_rows(&buf)?;
                Ok(())
            })?;
            let cells: Vec<Cells> = rows
                .iter()
                .map(|r| {
                    vec![
                        (module_label(r), false),
                        (int(&r["jobs"]), true),
                        (int(&r["users"]), true),
                        (pct(&r["job_share"]), true),
                    ]
                })
                .collect();
            self.table(
                id,
                &format!("Module versions by {what}"),
                &["module", "jobs", "users", "share of jobs"],
                &cells,
            );
        }
        self.packages(conn)?;
        self.regressions(conn)
    }

    /// Python packages by jobs and users (issue #14), as `query packages` gives them; a sentence
    /// when the matching jobs recorded none.
    fn packages(&mut self, _conn: &rusqlite::Connection) -> Result<(), Failure> {
        let mut first = true;
        for (by_users, id, what) in [(false, "packages-by-jobs", "jobs"), (true, "packages-by-users", "users")] {
            let a = analytics::PackagesArgs {
                plot: None,
                top: Some(TOP),
                by_users,
                names: false,
                interpreter: None,
                filter: self.filter.clone(),
                out: OutArgs { json: true, ..Default::default() },
            };
            let mut buf = Vec::new();
            analytics::run_packages(self.db, &a, &mut buf)?;
            if first && json_rows(&buf)?.is_empty() {
                let _ = writeln!(
                    self.body,
                    "<p class=\"none\" id=\"packages\">Python packages: none recorded for these jobs.</p>"
                );
                return Ok(());
            }
            first = false;
            let mut rows = Vec::new();
            self.chart(id, |t| {
                let a = analytics::PackagesArgs { plot: Some(t), ..a };
                let mut buf = Vec::new();
                analytics::run_packages(self.db, &a, &mut buf)?;
                rows = json_rows(&buf)?;
                Ok(())
            })?;
            let cells: Vec<Cells> = rows
                .iter()
                .map(|r| {
                    vec![
                        (package_label(r), false),
                        (int(&r["jobs"]), true),
                        (int(&r["users"]), true),
                        (pct(&r["python_share"]), true),
                    ]
                })
                .collect();
            self.table(
                id,
                &format!("Python package versions by {what}"),
                &["package", "jobs", "users", "share of Python jobs"],
                &cells,
            );
        }
        Ok(())
    }

    /// Module versions whose failure rate rose after they appeared: for each of the most used
    /// module names with several versions, every version first seen after the name's first job
    /// splits that name's jobs (`query who-used NAME --split FIRST-SEEN`); the version is listed
    /// when the failure rate of the name's jobs from then on is above the rate before.
    fn regressions(&mut self, conn: &rusqlite::Connection) -> Result<(), Failure> {
        let a = analytics::ModulesArgs {
            plot: None,
            top: None,
            by_users: false,
            names: true,
            filter: self.filter.clone(),
            out: OutArgs { json: true, ..Default::default() },
        };
        let mut buf = Vec::new();
        analytics::run_modules(self.db, &a, &mut buf)?;
        let names: Vec<String> = json_rows(&buf)?
            .iter()
            .filter(|r| r["versions"].as_i64().unwrap_or(0) > 1)
            .filter_map(|r| r["module"].as_str().map(str::to_string))
            .take(REGRESSION_MODULES)
            .collect();
        let (cond, params) = self.filter.to_filter().to_sql();
        let mut rows: Vec<Cells> = Vec::new();
        for name in names {
            // Each version's first job start among the jobs the report covers.
            let sql = format!(
                "SELECT m.version, MIN(jobs.start) FROM modules m JOIN module_set_members ms ON ms.module = m.id \
                 JOIN jobs ON jobs.module_set = ms.module_set WHERE m.name = ? AND jobs.start IS NOT NULL AND ({cond}) \
                 GROUP BY m.version ORDER BY 2"
            );
            let mut all: Vec<rusqlite::types::Value> = vec![rusqlite::types::Value::Text(name.clone())];
            all.extend(params.iter().cloned());
            let firsts: Vec<(String, i64)> = conn
                .prepare(&sql)
                .and_then(|mut st| {
                    st.query_map(rusqlite::params_from_iter(all.iter()), |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db_err)?;
            for (version, first) in firsts.iter().skip(1) {
                let w = analytics::WhoUsedArgs {
                    target: Some(runledger_record::Module { name: name.clone(), version: None, file: None }),
                    python: None,
                    split: Some(*first),
                    after: None,
                    before: None,
                    filter: self.filter.clone(),
                    out: OutArgs { json: true, ..Default::default() },
                };
                let mut buf = Vec::new();
                analytics::run_who_used(self.db, &w, &mut buf)?;
                let r = json_rows(&buf)?;
                // Each period's line for all versions together: `who-used` writes it when the
                // period has several versions, else its one version's line is the module's.
                let all_of = |before: bool| {
                    let period: Vec<&Value> = r
                        .iter()
                        .filter(|x| x["period"].as_str().is_some_and(|p| p.starts_with("before") == before))
                        .collect();
                    match period.iter().find(|x| x["module"].as_str().is_some_and(|m| m.ends_with("(all versions)"))) {
                        Some(all) => Some(*all),
                        None if period.len() == 1 => Some(period[0]),
                        None => None,
                    }
                };
                let this = r.iter().find(|x| {
                    x["period"].as_str().is_some_and(|p| p.starts_with("from"))
                        && x["module"].as_str().is_some_and(|m| m.ends_with(&format!("/{version}")) || m == version)
                });
                let (Some(b), Some(f)) = (all_of(true), all_of(false)) else { continue };
                let (rb, rf) = (b["failure_rate"].as_f64().unwrap_or(0.0), f["failure_rate"].as_f64().unwrap_or(0.0));
                // Too few jobs before the version came say nothing about a rise.
                if rf > rb && b["jobs"].as_i64().unwrap_or(0) >= MIN_JOBS_BEFORE {
                    rows.push(vec![
                        (format!("{name}/{version}"), false),
                        (crate::questions::timefmt::display(Some(*first)), false),
                        (pct(&b["failure_rate"]), true),
                        (pct(&f["failure_rate"]), true),
                        (this.map(|t| pct(&t["failure_rate"])).unwrap_or_else(|| "-".into()), true),
                        (int(&f["jobs"]), true),
                    ]);
                }
            }
        }
        self.table(
            "module-regressions",
            "Module versions after which the module's failure rate rose",
            &[
                "version",
                "first seen",
                "failure rate before (all versions)",
                "from then (all versions)",
                "this version",
                "jobs from then",
            ],
            &rows,
        );
        Ok(())
    }

    fn series(&mut self, from: Option<i64>, to: Option<i64>) -> Result<(), Failure> {
        self.h2("usage", "Throughput and utilization");
        let span = match (from, to) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        let interval = if span <= 2 * 86_400 {
            3600
        } else if span <= 92 * 86_400 {
            86_400
        } else {
            7 * 86_400
        };
        let series = |plot| SeriesArgs {
            plot: Some(plot),
            interval,
            node_weighted: false,
            filter: self.filter.clone(),
            out: OutArgs { json: true, ..Default::default() },
        };
        let (db, mut ended, mut busy) = (self.db, Vec::new(), Vec::new());
        self.chart("throughput", |t| analytics::run_throughput(db, &series(t), &mut ended))?;
        self.chart("utilization", |t| analytics::run_utilization(db, &series(t), &mut busy))?;
        let ended = json_rows(&ended)?;
        let busy = json_rows(&busy)?;
        let total: i64 = ended.iter().map(|r| r["jobs"].as_i64().unwrap_or(0)).sum();
        let failed: i64 = ended.iter().map(|r| r["failed"].as_i64().unwrap_or(0)).sum();
        let mean = |k: &str| busy.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).sum::<f64>() / busy.len().max(1) as f64;
        let rows = vec![
            vec![("jobs ended".to_string(), false), (total.to_string(), true)],
            vec![("of which failed".to_string(), false), (failed.to_string(), true)],
            vec![("intervals".to_string(), false), (ended.len().max(busy.len()).to_string(), true)],
            vec![("mean running jobs".to_string(), false), (format!("{:.2}", mean("jobs")), true)],
            vec![("mean busy nodes".to_string(), false), (format!("{:.2}", mean("nodes")), true)],
            vec![("mean busy cores".to_string(), false), (format!("{:.2}", mean("cores")), true)],
        ];
        self.table("usage-totals", "Throughput and utilization over the period", &["measure", "value"], &rows);
        let (db, filter) = (self.db, self.filter);
        self.chart("starts-weekday-hour", |t| {
            let a = SummaryArgs {
                plot: Some(t),
                by: vec![Key::Weekday, Key::Hour],
                sort: None,
                limit: None,
                filter: filter.clone(),
                out: OutArgs { json: true, ..Default::default() },
            };
            analytics::run_summary(db, &a, &mut Vec::new())
        })
    }

    fn efficiency(&mut self) -> Result<(), Failure> {
        self.h2("efficiency", "CPU efficiency");
        self.note("CPU time / (elapsed × allocated CPUs), over COMPLETED jobs unless the report's -s says otherwise.");
        let conn = runledger_ledger::db::open_ro(self.db)?;
        let mut f = self.filter.to_filter();
        if f.states.is_empty() {
            f.states = vec![runledger_record::JobState::Completed];
        }
        use crate::questions::query::efficiency::{self as eff, EfficiencyBy};
        for (by, id, key) in [
            (EfficiencyBy::Program, "efficiency-by-program", "program"),
            (EfficiencyBy::Ranks, "efficiency-by-ranks", "ranks"),
        ] {
            let jobs = eff::efficiency_jobs(&conn, &f, by).map_err(db_err)?;
            let groups = eff::summarise(&jobs);
            let bars: Vec<crate::questions::plot_usage::Bar> = groups
                .iter()
                .filter_map(|g| {
                    g.cpu_median.map(|m| crate::questions::plot_usage::Bar {
                        label: g.group.clone(),
                        value: (m * 1000.0).round() / 10.0,
                        note: format!(
                            "{} jobs, mean {}",
                            g.cpu_jobs,
                            g.cpu_mean.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_default()
                        ),
                    })
                })
                .take(30)
                .collect();
            if !bars.is_empty() {
                let title = format!("CPU efficiency by {key} (median)");
                let note = filter_text(self.filter);
                self.chart(id, |t| {
                    Ok(crate::questions::plot_usage::bars(&t, &title, &note, "median CPU efficiency (%)", &bars)?)
                })?;
            }
            let rows: Vec<Cells> = groups
                .iter()
                .map(|g| {
                    let p = |v: Option<f64>| v.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into());
                    vec![
                        (g.group.clone(), false),
                        (g.jobs.to_string(), true),
                        (p(g.cpu_mean), true),
                        (p(g.cpu_median), true),
                    ]
                })
                .collect();
            self.table(id, &format!("CPU efficiency by {key}"), &[key, "jobs", "mean", "median"], &rows);
        }
        Ok(())
    }

    /// The idlest jobs of the period (`query idle` at its defaults, #16).
    fn idle(&mut self, conn: &rusqlite::Connection) -> Result<(), Failure> {
        use crate::questions::query::timeline as tl;
        self.h2("idle", "Idlest jobs");
        self.note(&format!(
            "Jobs whose nodes used under {:.0}% of their allocated CPUs for {} or more, from the plugin's usage \
             series; idle core-hours are the allocated cores not used over those spans.",
            runledger_ledger::timeline::IDLE_BELOW * 100.0,
            crate::questions::timefmt::elapsed(runledger_ledger::timeline::IDLE_FOR_S as i64)
        ));
        let below = runledger_ledger::timeline::IDLE_BELOW;
        let jobs = tl::idle_jobs(conn, &self.filter.to_filter(), below, runledger_ledger::timeline::IDLE_FOR_S as i64)
            .map_err(db_err)?;
        let total: f64 = jobs.iter().map(tl::IdleJob::idle_core_seconds).sum::<f64>() / 3600.0;
        if jobs.is_empty() {
            self.note("None in this period (or no usage series recorded).");
            return Ok(());
        }
        let rows: Vec<Cells> = jobs
            .iter()
            .take(MAX_IDLE_JOBS)
            .map(|j| {
                let idle = j.idle_core_seconds();
                let core_s = j.job.elapsed().zip(j.job.ncpus).map(|(e, n)| (e * n) as f64).unwrap_or(0.0);
                vec![
                    (j.job.display_id(), false),
                    (j.job.user.clone().unwrap_or_default(), false),
                    (j.job.account.clone().unwrap_or_default(), false),
                    (crate::questions::timefmt::display(j.job.start), false),
                    (j.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(","), false),
                    (format!("{:.1}", idle / 3600.0), true),
                    (ratio(idle, core_s), true),
                ]
            })
            .collect();
        let caption =
            format!("The {} idlest of {} idle jobs ({total:.1} idle core-hours in all)", rows.len(), jobs.len());
        self.table(
            "idle",
            &caption,
            &["job", "user", "account", "start", "idle nodes", "idle core-hours", "of allocation"],
            &rows,
        );
        Ok(())
    }

    fn accounts(&mut self) -> Result<(), Failure> {
        self.h2("accounts", "Accounts");
        let mut accounts = self.summary(&[Key::Account], self.filter, None)?;
        accounts.sort_by(|a, b| b["jobs"].as_i64().cmp(&a["jobs"].as_i64()));
        let total = accounts.len();
        accounts.truncate(MAX_ACCOUNTS);
        if total > accounts.len() {
            self.note(&format!("The {MAX_ACCOUNTS} accounts with the most jobs, of {total}."));
        }
        let rows: Vec<Cells> = accounts.iter().map(|r| metric_cells(r, "account")).collect();
        self.table("accounts", "Jobs per account", &METRIC_HEADER_ACCOUNT, &rows);
        for (i, a) in accounts.iter().enumerate() {
            let Some(name) = a["account"].as_str() else { continue };
            let mut f = self.filter.clone();
            f.account = vec![name.to_string()];
            let users = self.summary(&[Key::User], &f, None)?;
            let rows: Vec<Cells> = users.iter().map(|r| metric_cells(r, "user")).collect();
            self.table(&format!("account-{i}"), &format!("Account {name}: jobs per user"), &METRIC_HEADER_USER, &rows);
        }
        Ok(())
    }
}

/// Rows of the report's idlest-jobs table.
const MAX_IDLE_JOBS: usize = 20;

const METRIC_HEADER_ACCOUNT: [&str; 7] =
    ["account", "jobs", "users", "core-hours", "CPU efficiency", "failure rate", "median wall"];
const METRIC_HEADER_USER: [&str; 7] =
    ["user", "jobs", "users", "core-hours", "CPU efficiency", "failure rate", "median wall"];

fn metric_cells(r: &Value, key: &str) -> Cells {
    vec![
        (r[key].as_str().unwrap_or("(none)").to_string(), false),
        (int(&r["jobs"]), true),
        (int(&r["users"]), true),
        (float(&r["core_hours"], 1), true),
        (pct(&r["cpu_efficiency"]), true),
        (pct(&r["failure_rate"]), true),
        (secs(&r["wall_p50_s"]), true),
    ]
}

/// The first and last times of the jobs `filter` selects (start, end), for the period's label.
fn data_range(conn: &rusqlite::Connection, filter: &FilterArgs) -> Result<(Option<i64>, Option<i64>), Failure> {
    let (cond, params) = filter.to_filter().to_sql();
    conn.query_row(
        &format!("SELECT MIN(start), MAX(COALESCE(end, start)) FROM jobs WHERE {cond}"),
        rusqlite::params_from_iter(params.iter()),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(db_err)
}

fn db_err(e: rusqlite::Error) -> Failure {
    Failure::new(format!("reading the database: {e}"))
}

/// The filters the report was asked with, as a phrase (empty when none).
fn filter_text(f: &FilterArgs) -> String {
    let mut parts = Vec::new();
    let mut list = |name: &str, v: Vec<String>| {
        if !v.is_empty() {
            parts.push(format!("{name} {}", v.join(",")));
        }
    };
    list("user", f.user.clone());
    list("account", f.account.clone());
    list("partition", f.partition.clone());
    list("cluster", f.cluster.clone());
    list("state", f.state.iter().map(|s| s.as_str().to_string()).collect());
    list("module", f.module.iter().map(|m| m.full_name()).collect());
    list("program", f.program.clone());
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_text_cannot_become_markup() {
        assert_eq!(esc("<script>a&b</script>\"'"), "&lt;script&gt;a&amp;b&lt;/script&gt;&quot;&#39;");
    }

    #[test]
    fn page_is_next_to_the_directory() {
        let mut a = ReportArgs {
            html: PathBuf::from("/x/r"),
            page: PathBuf::new(),
            database: None,
            filter: FilterArgs::default(),
        };
        assert_eq!(a.page(), &PathBuf::from("/x/r/index.html"));
    }
}
