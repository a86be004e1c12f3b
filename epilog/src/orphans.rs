//! Step records of jobs whose epilog never ran on this node.
//!
//! The plugin spools each step's start and end under `jobs/<id>/`; the job's own epilog sends
//! them and removes the directory. When slurmd, slurmstepd or the node dies mid-job, no epilog
//! runs for that job here, and its records would stay for good: the very jobs an admin most wants
//! to see. So every epilog and flush run sends such a job's records, as a batch of their own
//! through the outbox. The batch has no `JobEnd`: nobody saw the job end on this node, so the
//! ledger keeps its state unknown and `collector audit` lists it under `no_epilog`.
//!
//! A job directory counts as orphaned when nothing in it changed for `[epilog] orphan_grace_s`
//! (default [`GRACE`], an hour; a job's epilog runs seconds after its last step ends) and no
//! slurmstepd of that job runs on this node (a week-long job's batch step was spooled a week ago). Even so the job may still hold this node
//! between two steps of a multi-node job, and its epilog may yet come; so the records are sent,
//! not moved: the directory stays, marked sent ([`SENT`]), for that epilog to read as usual
//! (sending them twice is harmless: the collector merges idempotently). Records spooled after
//! the mark are sent again the same way; a marked directory older than `spool_max_age_days` is
//! removed, like the outbox's old batches.

use runledger_record::spool::Spool;
use runledger_record::{Batch, Item};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long a job's directory must be left alone before it counts as orphaned, by default
/// (`[epilog] orphan_grace_s`).
pub const GRACE: Duration = Duration::from_secs(3600);

/// At most this many orphaned jobs are sent per run: each is an fsync'd outbox file, and an
/// epilog has a budget; a node with many catches up over its next runs.
pub const MAX_PER_RUN: usize = 20;

/// Marks a job directory whose records were sent by a sweep; not `.json`, so never read as a
/// record.
pub const SENT: &str = "orphan-sent";

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Jobs whose records went to the outbox.
    pub sent: Vec<u32>,
    pub items: usize,
    /// Sent long ago and still here: removed.
    pub removed: Vec<u32>,
}

/// Sends the records of orphaned jobs (other than `current`, whose epilog this is) through the
/// outbox, one batch per job, sent by `node` unless the records name theirs; removes those sent
/// more than `max_age` ago (`None`: kept). A directory is old enough once untouched for `grace`. `running` lists the jobs with a slurmstepd on this
/// node; it is asked only when some directory is old enough.
pub fn sweep(
    spool: &Spool,
    current: Option<u32>,
    node: &str,
    now: SystemTime,
    grace: Duration,
    max_age: Option<Duration>,
    running: impl FnOnce() -> HashSet<u32>,
) -> Swept {
    let mut swept = Swept::default();
    let old: Vec<(u32, Quiet)> = spool
        .spooled_jobs()
        .into_iter()
        .filter(|&id| Some(id) != current)
        .map(|id| (id, quiet(&spool.job_dir(id), now)))
        .filter(|(_, q)| q.untouched >= grace)
        .collect();
    if old.is_empty() {
        return swept;
    }
    let running = running();
    for (id, q) in old.into_iter().filter(|(id, _)| !running.contains(id)) {
        if swept.sent.len() >= MAX_PER_RUN {
            log::info!("{MAX_PER_RUN} orphaned jobs sent; the others wait for the next run");
            break;
        }
        let dir = spool.job_dir(id);
        match q.sent {
            Some(age) if !q.newer_than_sent => {
                if max_age.is_some_and(|m| age >= m) {
                    match spool.remove_job(id) {
                        Ok(()) => swept.removed.push(id),
                        Err(e) => log::warn!("job {id} (orphaned): cannot remove {}: {e}", dir.display()),
                    }
                }
                continue;
            }
            _ => {}
        }
        let (items, bad) = spool.job_items(id);
        for b in &bad {
            log::warn!("job {id} (orphaned): unreadable spool file {}: {}", b.path.display(), b.reason);
        }
        let n = items.len();
        if n > 0 {
            let sender = items.iter().map(Item::node).find(|n| !n.is_empty()).unwrap_or(node).to_string();
            if let Err(e) = spool.outbox_put(&Batch::new(sender, items)) {
                log::error!("job {id} (orphaned): cannot put its {n} step records in the outbox: {e}");
                continue;
            }
            log::warn!(
                "job {id}: no epilog ran for it on this node; sending the {n} step records the plugin spooled, \
                 without a job end"
            );
        }
        if let Err(e) = runledger_record::spool::write_atomic(&dir.join(SENT), b"", false) {
            log::warn!("job {id} (orphaned): records queued, but {} could not be marked sent: {e}", dir.display());
        }
        swept.sent.push(id);
        swept.items += n;
    }
    swept
}

/// How long a job directory has been left alone, and whether (and how long ago) a sweep sent it.
struct Quiet {
    untouched: Duration,
    sent: Option<Duration>,
    /// A record file changed after the sent mark.
    newer_than_sent: bool,
}

/// [`Quiet`] for `dir`; when anything cannot be read, untouched for zero, so a directory in
/// doubt is left alone.
fn quiet(dir: &Path, now: SystemTime) -> Quiet {
    let doubt = Quiet { untouched: Duration::ZERO, sent: None, newer_than_sent: false };
    let age = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
    let Ok(mut newest) = std::fs::symlink_metadata(dir).and_then(|m| m.modified()) else { return doubt };
    let mut sent = None;
    let mut newest_record = None;
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let Ok((name, t)) = entry.and_then(|e| Ok((e.file_name(), e.metadata()?.modified()?))) else { return doubt };
        newest = newest.max(t);
        if name == SENT {
            sent = Some(t);
        } else {
            newest_record = newest_record.max(Some(t));
        }
    }
    Quiet {
        untouched: age(newest),
        sent: sent.map(age),
        newer_than_sent: sent.is_some_and(|s| newest_record.is_some_and(|r| r > s)),
    }
}

/// The jobs with a slurmstepd on this node, from the process titles slurmstepd sets
/// (`slurmstepd: [1234.batch]`, `slurmstepd: [1234.0]`).
pub fn slurmstepd_jobs() -> HashSet<u32> {
    let mut jobs = HashSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if let Some(id) = stepd_job(&cmdline) {
                jobs.insert(id);
            }
        }
    }
    jobs
}

fn stepd_job(cmdline: &[u8]) -> Option<u32> {
    let rest = cmdline.strip_prefix(b"slurmstepd: [")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::{StepEnd, StepStart};

    fn spool_step(spool: &Spool, job: u32, node: &str) {
        let start = StepStart { job_id: job, step_id: 0, node: node.into(), cluster: "c".into(), ..Default::default() };
        let end = StepEnd { job_id: job, step_id: 0, node: node.into(), cluster: "c".into(), ..Default::default() };
        spool.put_item(&Item::StepStart(start)).unwrap();
        spool.put_item(&Item::StepEnd(end)).unwrap();
    }

    fn batches(spool: &Spool) -> Vec<Batch> {
        let mut b: Vec<Batch> = spool.outbox().iter().map(|p| spool.outbox_read(p).unwrap()).collect();
        b.sort_by_key(|b| b.items[0].job_id());
        b
    }

    #[test]
    fn orphaned_jobs_are_sent_once_and_others_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        spool.ensure().unwrap();
        for job in [10, 11, 12, 13] {
            spool_step(&spool, job, "n7");
        }
        let hour_on = SystemTime::now() + GRACE + Duration::from_secs(60);
        const MONTH: Duration = Duration::from_secs(30 * 86_400);
        let month = Some(MONTH);
        // Nothing is old yet: /proc is not even read.
        let s = sweep(&spool, None, "here", SystemTime::now(), GRACE, month, || panic!("asked for running jobs"));
        assert_eq!(s, Swept::default());
        // An hour on: 11 is this epilog's job, 12 still has a slurmstepd here.
        let s = sweep(&spool, Some(11), "here", hour_on, GRACE, month, || HashSet::from([12]));
        assert_eq!(s, Swept { sent: vec![10, 13], items: 4, removed: vec![] });
        let b = batches(&spool);
        assert_eq!(b.len(), 2);
        for (b, job) in b.iter().zip([10, 13]) {
            assert_eq!(b.sender, "n7", "the node the records name");
            assert_eq!(b.items.len(), 2);
            assert!(b.items.iter().all(|i| i.job_id() == job && !matches!(i, Item::JobEnd(_))));
        }
        // Sent, not moved: a late epilog of 10 still reads its records (the mark is no record).
        assert_eq!(spool.spooled_jobs(), vec![10, 11, 12, 13]);
        let (items, bad) = spool.job_items(10);
        assert_eq!((items.len(), bad.len()), (2, 0));
        // Once only.
        let s = sweep(&spool, Some(11), "here", hour_on, GRACE, month, || HashSet::from([12]));
        assert_eq!(s, Swept::default());
        assert_eq!(spool.outbox().len(), 2);
        // A record spooled after the mark (the job was still alive) is sent again, with the rest.
        let mark = spool.job_dir(13).join(SENT);
        let two_hours_ago = SystemTime::now() - 2 * GRACE;
        std::fs::File::options().write(true).open(&mark).unwrap().set_modified(two_hours_ago).unwrap();
        let late = StepEnd { job_id: 13, step_id: 1, node: "n7".into(), ..Default::default() };
        spool.put_item(&Item::StepEnd(late)).unwrap();
        let s = sweep(&spool, Some(11), "here", hour_on, GRACE, month, || HashSet::from([12]));
        assert_eq!(s, Swept { sent: vec![13], items: 3, removed: vec![] });
        // A month after the mark the directories go; those not sent stay.
        let s = sweep(&spool, Some(11), "here", hour_on + MONTH, GRACE, month, || HashSet::from([12]));
        assert_eq!(s, Swept { sent: vec![], items: 0, removed: vec![10, 13] });
        assert_eq!(spool.spooled_jobs(), vec![11, 12]);
        // Without an age bound they stay.
        spool_step(&spool, 14, "n7");
        sweep(&spool, None, "here", hour_on, GRACE, None, HashSet::new);
        let s = sweep(&spool, None, "here", hour_on + Duration::from_secs(365 * 86_400), GRACE, None, HashSet::new);
        assert!(s.removed.is_empty() && spool.spooled_jobs().contains(&14));
    }

    #[test]
    fn a_run_sends_at_most_its_share() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        spool.ensure().unwrap();
        for job in 0..MAX_PER_RUN as u32 + 5 {
            spool_step(&spool, 100 + job, "n7");
        }
        let later = SystemTime::now() + GRACE + Duration::from_secs(60);
        assert_eq!(sweep(&spool, None, "here", later, GRACE, None, HashSet::new).sent.len(), MAX_PER_RUN);
        assert_eq!(sweep(&spool, None, "here", later, GRACE, None, HashSet::new).sent.len(), 5);
        assert_eq!(spool.outbox().len(), MAX_PER_RUN + 5);
    }

    #[test]
    fn unreadable_files_are_reported_and_nothing_sent() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        spool.ensure().unwrap();
        std::fs::create_dir_all(spool.job_dir(20)).unwrap();
        std::fs::write(spool.job_dir(20).join("0.start.json"), b"not json").unwrap();
        let later = SystemTime::now() + GRACE + Duration::from_secs(60);
        let s = sweep(&spool, None, "here", later, GRACE, None, HashSet::new);
        assert_eq!(s, Swept { sent: vec![20], items: 0, removed: vec![] });
        assert!(spool.outbox().is_empty());
    }

    #[test]
    fn process_titles_name_the_job() {
        assert_eq!(stepd_job(b"slurmstepd: [1234.batch]\0"), Some(1234));
        assert_eq!(stepd_job(b"slurmstepd: [77.0]\0"), Some(77));
        assert_eq!(stepd_job(b"slurmstepd: [77]"), Some(77));
        assert_eq!(stepd_job(b"/usr/sbin/slurmstepd\0"), None);
        assert_eq!(stepd_job(b"sleep\x0020"), None);
        assert_eq!(stepd_job(b"slurmstepd: [.0]"), None);
    }
}
