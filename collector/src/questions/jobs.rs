//! `collector query jobs` (the sacct-like listing) and `collector query job ID` (everything
//! recorded about one job), as `scope` may see them.

use crate::failure::{output_written, write_out, Failure};
use crate::questions::analytics::OutArgs;
use crate::questions::query;
use crate::questions::query::detail;
use crate::questions::query::filter::{Filter, JobSel};
use crate::questions::query::jobfilter::JobFilterArgs;
use crate::questions::query::output::{self, Extras, Field, Needs};
use crate::questions::scope::{hide_argv, private_hidden, sees_private, Scope};
use std::io::Write;
use std::path::Path;

/// The options of `query jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobsArgs {
    pub filter: JobFilterArgs,
    /// Fields to show (empty: the default fields).
    pub format: Vec<&'static Field>,
    /// List the fields -o accepts instead.
    pub helpformat: bool,
    pub out: OutArgs,
    /// Only the newest N matching jobs (still listed oldest first).
    pub limit: Option<usize>,
}

/// The options of `query job`.
#[derive(Debug, Clone)]
pub struct JobArgs {
    /// The job id (or ARRAYID_TASK).
    pub id: JobSel,
    /// The cluster, when several share the ledger.
    pub cluster: Option<String>,
    /// Print JSON.
    pub json: bool,
    /// Print the job's use over time instead (`--timeline`).
    pub timeline: bool,
    /// Draw the timeline to this file (`--plot`).
    pub plot: Option<crate::questions::plot::PlotTarget>,
    /// seff's report instead ([`query::jobeff`]).
    pub efficiency: bool,
}

fn db_err(e: rusqlite::Error) -> Failure {
    Failure::new(format!("reading the database: {e}"))
}

pub fn filter_of(args: &JobsArgs) -> Filter {
    args.filter.to_filter()
}

pub fn query_jobs(db: &Path, args: &JobsArgs, scope: &Scope, out: &mut dyn Write) -> Result<(), Failure> {
    let conn = runledger_ledger::db::open_ro(db)?;
    let fields: Vec<&Field> = if args.format.is_empty() { output::default_fields() } else { args.format.clone() };
    let filter = filter_of(args);
    let need = |n: Needs| args.out.json || fields.iter().any(|f| f.needs == n);
    let extras_of = |ids: &[i64]| -> Result<Extras, Failure> {
        let mut extras = Extras::default();
        if !ids.is_empty() && need(Needs::Modules) {
            extras.modules = query::modules_of(&conn, ids).map_err(db_err)?;
        }
        if !ids.is_empty() && need(Needs::Packages) {
            extras.packages = query::packages::packages_of(&conn, ids).map_err(db_err)?;
        }
        if !ids.is_empty() && need(Needs::Tags) {
            extras.tags = query::tags_of(&conn, ids).map_err(db_err)?;
        }
        Ok(extras)
    };
    if args.out.json {
        let rows = query::find_jobs_with(&conn, &filter, args.limit, false).map_err(db_err)?;
        // What a row does not hold is read for a chunk of jobs at a time, so that memory stays
        // bounded however many jobs the listing has.
        let mut failed = None;
        let chunks = rows.chunks(JSON_CHUNK).map_while(|chunk| {
            let extras = json_extras(&conn, chunk, scope, &extras_of);
            extras.map_err(|e| failed = Some(e)).ok().map(|extras| (chunk, extras))
        });
        let values = chunks.flat_map(|(chunk, extras)| {
            chunk.iter().map(move |j| serde_json::Value::Object(detail::job_json(j, &extras)))
        });
        let written = detail::write_json_array(out, values);
        if let Some(e) = failed {
            return Err(e);
        }
        return output_written(written);
    }
    // CSV needs no column widths: written a chunk of jobs at a time. (A --limit reads the
    // newest first and lists them oldest first: at most that many, rendered whole below.)
    if args.out.csv && args.limit.is_none() {
        return csv_in_chunks(&conn, &filter, &fields, args.out.noheader, &extras_of, out);
    }
    // The table is rendered as the rows are read (a listing can be a million jobs long).
    let lean = fields.iter().all(|f| f.lean());
    let mut listing = output::Listing::new(&fields, args.limit.is_some());
    query::each_job(&conn, &filter, args.limit, lean, |j| listing.push(&j)).map_err(db_err)?;
    listing.complete(&extras_of(listing.ids())?);
    let text = if args.out.csv { listing.csv(!args.out.noheader) } else { listing.table(!args.out.noheader) };
    write_out(out, &text)
}

/// Jobs whose steps, facts, modules, packages and tags a JSON listing reads at once.
const JSON_CHUNK: usize = 500;
/// Jobs a CSV listing renders (and reads the modules, packages and tags of) at once.
const CSV_CHUNK: usize = 1000;

/// `query jobs --csv`, written [`CSV_CHUNK`] jobs at a time, so that exporting every job of a
/// large ledger holds one chunk, not the whole listing twice (cells, then the text: 306 MB for
/// a million jobs). The same bytes as one [`output::Listing`] of them all.
fn csv_in_chunks<'f>(
    conn: &rusqlite::Connection,
    filter: &Filter,
    fields: &'f [&'f Field],
    noheader: bool,
    extras_of: &dyn Fn(&[i64]) -> Result<Extras, Failure>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let lean = fields.iter().all(|f| f.lean());
    let mut listing = output::Listing::new(fields, false);
    let mut header = !noheader;
    let mut write_chunk = |listing: &mut output::Listing<'f>, header: &mut bool| -> Result<(), Failure> {
        listing.complete(&extras_of(listing.ids())?);
        write_out(out, listing.csv(*header))?;
        *header = false;
        listing.clear();
        Ok(())
    };
    let mut failed = None;
    query::each_job(conn, filter, None, lean, |j| {
        if failed.is_some() {
            return;
        }
        listing.push(&j);
        if listing.ids().len() == CSV_CHUNK {
            failed = write_chunk(&mut listing, &mut header).err();
        }
    })
    .map_err(db_err)?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !listing.ids().is_empty() || header {
        write_chunk(&mut listing, &mut header)?;
    }
    Ok(())
}

/// What the JSON of `rows` needs beyond the rows themselves; argv hidden where `scope` may not
/// see it.
fn json_extras(
    conn: &rusqlite::Connection,
    rows: &[query::JobRow],
    scope: &Scope,
    extras_of: &dyn Fn(&[i64]) -> Result<Extras, Failure>,
) -> Result<Extras, Failure> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut extras = extras_of(&ids)?;
    if !ids.is_empty() {
        extras.steps = query::steps_of(conn, &ids).map_err(db_err)?;
        for r in rows.iter().filter(|r| !sees_private(scope, r.uid)) {
            for s in extras.steps.get_mut(&r.id).into_iter().flatten() {
                hide_argv(&mut s.argv);
            }
        }
        extras.facts = query::job_facts_of(conn, rows).map_err(db_err)?;
    }
    Ok(extras)
}

pub fn query_job(db: &Path, args: &JobArgs, scope: &Scope, out: &mut dyn Write) -> Result<(), Failure> {
    let conn = runledger_ledger::db::open_ro(db)?;
    let clusters: Vec<String> = args.cluster.iter().cloned().collect();
    let mut rows = query::find_job(&conn, &args.id, &clusters).map_err(db_err)?;
    if let Scope::Own(me) = scope {
        // Another user's job reads exactly like one never recorded: its existence is private too.
        rows.retain(|r| me.sees(r.uid, r.account.as_deref(), &r.cluster));
    }
    let label = match args.id.task {
        Some(t) => format!("{}_{t}", args.id.id),
        None => args.id.id.to_string(),
    };
    if rows.is_empty() {
        let on = args.cluster.as_deref().map(|c| format!(" on cluster {c}")).unwrap_or_default();
        return Err(Failure::new(format!("no job {label}{on} is recorded")));
    }
    let mut details =
        rows.into_iter().map(|r| query::job_detail(&conn, r)).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    for d in &mut details {
        private_hidden(d, scope);
    }
    if args.efficiency {
        let reports: Vec<_> = details.iter().map(query::jobeff::of).collect();
        if args.json {
            let all: Vec<_> = reports.iter().map(query::jobeff::json).collect();
            let text = serde_json::to_string_pretty(&all).map_err(|e| Failure::new(e.to_string()))?;
            return write_out(out, text + "\n");
        }
        let text: Vec<String> = reports.iter().map(query::jobeff::text).collect();
        return write_out(out, text.join("\n"));
    }
    if let Some(t) = &args.plot {
        t.check().map_err(Failure::usage)?;
        // The newest job recorded under the id.
        query::timeline::plot(t, &details[0].job, &details[0].timeline).map_err(Failure::new)?;
    }
    if args.timeline {
        let mut text = String::new();
        for d in &details {
            text.push_str(&query::timeline::timeline_text(&d.job, &d.timeline, d.unreadable_series));
        }
        if let Some(t) = &args.plot {
            text.push_str(&format!("\nChart written to {}\n", t.path.display()));
        }
        return write_out(out, &text);
    }
    if args.json {
        return write_out(out, detail::detail_json(&details));
    }
    let mut text = String::new();
    if details.len() > 1 {
        text.push_str(&format!(
            "{} jobs are recorded under id {label} (Slurm reused the id, or several clusters share it); \
             newest first.\n\n",
            details.len()
        ));
    }
    for (i, d) in details.iter().enumerate() {
        if i > 0 {
            text.push_str("\n────────────────────────────────────────\n\n");
        }
        text.push_str(&detail::detail_text(d));
    }
    write_out(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_ledger::{db, merge};
    use runledger_synth::synth::{Synth, FIXTURE_END};

    /// A ledger of `n` made-up jobs in `dir`.
    fn ledger(dir: &Path, n: u32) -> (std::path::PathBuf, rusqlite::Connection) {
        let path = dir.join("ledger.db");
        let conn = db::open_rw(&path).unwrap();
        let mut synth = Synth::new(n, 9, FIXTURE_END);
        let mut batches = Vec::new();
        while let Some(b) = synth.next_job_batch() {
            batches.push(b);
        }
        for chunk in batches.chunks(200) {
            let refs: Vec<_> = chunk.iter().collect();
            for r in merge::apply_group(&conn, &refs, FIXTURE_END).unwrap() {
                r.unwrap();
            }
        }
        (path, conn)
    }

    /// A JSON listing longer than a chunk reads as one read whole: every job once, in order,
    /// each with its own steps, facts, modules and packages, also across chunk boundaries.
    #[test]
    fn json_listing_in_chunks_is_the_listing_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = ledger(dir.path(), JSON_CHUNK as u32 * 2 + 37);
        let args = JobsArgs { out: OutArgs { json: true, ..Default::default() }, ..Default::default() };
        let mut out = Vec::new();
        query_jobs(&path, &args, &Scope::All, &mut out).unwrap();

        let rows = query::find_jobs(&conn, &Filter::default(), None).unwrap();
        assert!(rows.len() > 2 * JSON_CHUNK, "{} jobs", rows.len());
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let extras = Extras {
            modules: query::modules_of(&conn, &ids).unwrap(),
            packages: query::packages::packages_of(&conn, &ids).unwrap(),
            tags: query::tags_of(&conn, &ids).unwrap(),
            steps: query::steps_of(&conn, &ids).unwrap(),
            facts: query::job_facts_of(&conn, &rows).unwrap(),
        };
        let whole = detail::jobs_json(&rows, &extras);
        assert!(whole == String::from_utf8(out).unwrap(), "the chunked listing differs from the whole one");
        let v: serde_json::Value = serde_json::from_str(&whole).unwrap();
        assert!(v[JSON_CHUNK]["steps"].as_array().is_some_and(|s| !s.is_empty()), "{}", v[JSON_CHUNK]);
    }

    /// So does a CSV listing longer than its chunk, with and without its header, with a field
    /// read from beyond the rows (modules).
    #[test]
    fn csv_listing_in_chunks_is_the_listing_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = ledger(dir.path(), CSV_CHUNK as u32 + 123);
        let mut fields = output::default_fields();
        fields.push(output::parse_field("Modules").unwrap());
        let rows = query::find_jobs(&conn, &Filter::default(), None).unwrap();
        assert!(rows.len() > CSV_CHUNK, "{} jobs", rows.len());
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let extras = Extras { modules: query::modules_of(&conn, &ids).unwrap(), ..Default::default() };
        assert!(extras.modules.len() > CSV_CHUNK / 2, "most made-up jobs load modules");
        for noheader in [false, true] {
            let args = JobsArgs {
                format: fields.clone(),
                out: OutArgs { csv: true, noheader, ..Default::default() },
                ..Default::default()
            };
            let mut out = Vec::new();
            query_jobs(&path, &args, &Scope::All, &mut out).unwrap();
            let whole = output::csv(&rows, &fields, &extras, !noheader);
            assert!(whole == String::from_utf8(out).unwrap(), "the chunked CSV differs (noheader {noheader})");
        }
    }
}
