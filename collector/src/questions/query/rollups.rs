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
    use crate::questions::query::usage;
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
