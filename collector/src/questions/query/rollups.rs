//! When the ledger's rollups ([`runledger_ledger::rollup`]) can answer a question: a filter
//! they can express selects their groups; any other filter makes the question scan the jobs.

use super::filter::Filter;
use runledger_ledger::rollup::{self, Group, GroupSel};
use rusqlite::Connection;

/// Whether the groups can answer for the jobs `filter` selects: only user names (not uids),
/// accounts, partitions, clusters and states filter.
pub fn covers(filter: &Filter) -> bool {
    let Filter {
        jobs,
        users,
        uid,
        managed,
        accounts: _,
        partitions: _,
        clusters: _,
        states: _,
        modules,
        tags,
        facts,
        programs,
        outcomes,
        categories,
        start,
        end,
    } = filter;
    jobs.is_empty()
        && modules.is_empty()
        && tags.is_empty()
        && facts.is_empty()
        && programs.is_empty()
        && outcomes.is_empty()
        && categories.is_empty()
        && start.is_none()
        && end.is_none()
        // The rollups are keyed by user name: a uid is answered by the scan.
        && uid.is_none()
        // A manager's accounts are globs, and their own jobs go by uid: the scan answers.
        && managed.is_none()
        && users.iter().all(|u| u.is_empty() || !u.bytes().all(|b| b.is_ascii_digit()))
}

/// The groups with jobs that `filter` selects (see [`covers`]), in id order.
pub fn groups(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<Group>> {
    let sel = GroupSel {
        users: &filter.users,
        accounts: &filter.accounts,
        partitions: &filter.partitions,
        clusters: &filter.clusters,
        states: filter.states.iter().map(|s| s.as_str().to_string()).collect(),
    };
    rollup::groups(conn, &sel)
}

#[cfg(test)]
mod tests {
    use super::covers;
    use crate::questions::query::filter::Filter;
    use crate::questions::query::summary::{self, Key};
    use crate::questions::query::{packages, usage};
    use runledger_ledger::{db, merge};
    use runledger_record::JobState;
    use runledger_synth::synth;

    /// The migration test's ledger (made-up jobs and odd ones), merged node by node.
    fn ledger() -> rusqlite::Connection {
        let conn = db::open_memory();
        let batches = synth::fixture_batches();
        for b in &batches {
            merge::apply_group(&conn, &[b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
        }
        conn
    }

    /// Made-up jobs with Python (every job's nodes merged in turn), a year's months.
    fn python_ledger() -> rusqlite::Connection {
        let conn = db::open_memory();
        let mut synth = runledger_synth::Synth::new(1500, 9, synth::FIXTURE_END);
        while let Some(job) = synth.next_job() {
            for b in &job {
                merge::apply_group(&conn, &[b], synth::FIXTURE_END).unwrap()[0].as_ref().unwrap();
            }
        }
        conn
    }

    /// Summaries by month, year, module and package keys (with group keys) from the cells, and
    /// `query packages`, are those of a scan.
    fn cells_agree_with_the_scan(conn: &rusqlite::Connection, python: bool) {
        let filters = [
            Filter::default(),
            Filter { users: vec!["user000".into(), "user003".into()], ..Default::default() },
            Filter {
                accounts: vec!["acct00".into(), "acct01".into()],
                states: vec![JobState::Completed],
                ..Default::default()
            },
        ];
        let keys: [&[Key]; 10] = [
            &[Key::Month],
            &[Key::User, Key::Month],
            &[Key::Year, Key::Account],
            &[Key::State, Key::Month, Key::Year],
            &[Key::ModuleVersion],
            &[Key::Module, Key::User],
            &[Key::Module, Key::ModuleVersion, Key::State],
            &[Key::Package],
            &[Key::PackageVersion, Key::Account],
            &[Key::Partition, Key::Package, Key::PackageVersion],
        ];
        for f in &filters {
            for k in keys {
                let a = summary::summary(conn, f, k).unwrap();
                let b = summary::summary(conn, &scan(f), k).unwrap();
                if python || !k.iter().any(|k| matches!(k, Key::Package | Key::PackageVersion)) {
                    assert!(!a.rows.is_empty(), "{f:?} {k:?}");
                }
                assert_eq!(a.rows, b.rows, "{f:?} {k:?}");
            }
            for (names, by_users) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = packages::packages(conn, f, names, by_users, None, None).unwrap();
                let b = packages::packages(conn, &scan(f), names, by_users, None, None).unwrap();
                assert_eq!(python, !a.rows.is_empty());
                assert_eq!(a.rows, b.rows, "{f:?} names {names}");
            }
        }
    }

    #[test]
    fn summaries_by_month_module_and_package_from_the_cells_are_those_of_a_scan() {
        cells_agree_with_the_scan(&ledger(), false);
        cells_agree_with_the_scan(&python_ledger(), true);
    }

    /// `who-used` over all time under a filter the groups hold reads the module's cells: the
    /// same report as the scan, for every module, with and without its version.
    #[test]
    fn who_used_from_the_cells_is_that_of_a_scan() {
        let conn = python_ledger();
        let all = [usage::Period { label: "all".into(), from: None, to: None }];
        let names: Vec<(String, String)> =
            crate::questions::query::module_names(&conn).unwrap().into_values().collect();
        let filters = [
            Filter::default(),
            Filter { users: vec!["user000".into(), "user003".into()], ..Default::default() },
            Filter { accounts: vec!["acct01".into()], states: vec![JobState::Failed], ..Default::default() },
        ];
        let mut rows = 0;
        let mut several = 0;
        for (name, version) in &names {
            for version in [None, Some(version.clone())] {
                let m = runledger_record::Module { name: name.clone(), version, file: None };
                for f in &filters {
                    let a = usage::who_used(&conn, f, &m, &all).unwrap();
                    let b = usage::who_used(&conn, &scan(f), &m, &all).unwrap();
                    assert_eq!(a.csv(true), b.csv(true), "{m:?} {f:?}");
                    rows += a.rows.len();
                    several += a.rows.iter().filter(|r| format!("{:?}", r[1]).contains("(all versions)")).count();
                }
            }
        }
        assert!(names.len() > 5 && rows > 2 * names.len(), "{} modules, {rows} rows", names.len());
        assert!(several > 0, "some module has several versions");
    }

    /// The same in time zones where local months start away from UTC's, with and without
    /// daylight saving time (POSIX TZ strings: no tzdata needed): this test binary run again
    /// with TZ set, for the test below only (the zone is the process's).
    #[test]
    fn month_cells_answer_as_the_scan_in_other_time_zones() {
        for tz in ["NPT-5:45", "HST10", "EST5EDT,M3.2.0,M11.1.0", "LHST-10:30LHDT-11,M10.1.0,M4.1.0", "LINT-14"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "questions::query::rollups::tests::in_this_time_zone", "--ignored", "--nocapture"])
                .env("TZ", tz)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "TZ={tz}: {text}{}", String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("1 passed"), "TZ={tz}: the test did not run: {text}");
        }
    }

    /// Run by the test above with TZ set.
    #[test]
    #[ignore = "run by month_cells_answer_as_the_scan_in_other_time_zones with TZ set"]
    fn in_this_time_zone() {
        let conn = python_ledger();
        // The zone is in effect: some month's jobs differ from UTC's months (not in UTC itself).
        let local: i64 = conn
            .query_row(
                "SELECT count(*) FROM jobs WHERE strftime('%m', start, 'unixepoch', 'localtime') <> strftime('%m', start, 'unixepoch')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let utc = std::env::var("TZ").map_or(true, |t| t.is_empty() || t == "UTC");
        assert!(utc || local > 0, "no job changes month in this zone");
        cells_agree_with_the_scan(&conn, true);
    }

    /// A filter that selects every job but that the rollups cannot answer: the scan.
    fn scan(f: &Filter) -> Filter {
        Filter { start: Some(i64::MIN), ..f.clone() }
    }

    #[test]
    fn summaries_and_module_counts_from_the_rollups_are_those_of_a_scan() {
        let conn = ledger();
        let filters = [
            Filter::default(),
            Filter { users: vec!["alice".into(), "user000".into()], ..Default::default() },
            Filter {
                accounts: vec!["acct00".into(), "physics".into()],
                states: vec![JobState::Completed],
                ..Default::default()
            },
            Filter { partitions: vec!["compute".into()], clusters: vec!["bench".into()], ..Default::default() },
        ];
        let keys: [&[Key]; 5] =
            [&[Key::Account], &[Key::User], &[Key::Partition, Key::State], &[Key::Cluster, Key::User], &[Key::State]];
        for f in &filters {
            assert!(covers(f));
            assert!(!covers(&scan(f)));
            for k in keys {
                let a = summary::summary(&conn, f, k).unwrap();
                let b = summary::summary(&conn, &scan(f), k).unwrap();
                assert!(!a.rows.is_empty());
                assert_eq!(a.rows, b.rows, "{f:?} {k:?}");
            }
            for (names, by_users) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = usage::modules(&conn, f, names, by_users, None).unwrap();
                let b = usage::modules(&conn, &scan(f), names, by_users, None).unwrap();
                assert_eq!(a.rows, b.rows, "{f:?} names {names}");
            }
        }
    }
}
