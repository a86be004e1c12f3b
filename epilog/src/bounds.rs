//! Keeping the outbox within `[epilog] spool_max_bytes` and `spool_max_age_days`.
//!
//! A collector that stays unreachable must not fill the node's disk. Every run (epilog and
//! flush) first drops the batches older than the age bound, then as many more as it takes to bring
//! the outbox (plus the batch about to join it) under the size bound: first any batch larger than
//! the whole bound by itself, then the oldest. A batch about to join that is larger than the bound
//! is not counted, since no drop of other jobs' batches would make it fit; and it is never dropped
//! by its own run: it gets at least that run's attempt. Each drop is logged as an error naming the
//! batches, items, bytes and job ids *before* the files go, and added to the spool's running total
//! (`<spool>/dropped.json`), which every batch sent afterwards carries to the collector. `jobs/` is
//! emptied by each job's own epilog (and [`crate::orphans`] deals with the jobs whose epilog never
//! came); `rejected/` waits `spool_max_age_days` for an admin.

use nix::fcntl::{Flock, FlockArg};
use runledger_record::config::EpilogConfig;
use runledger_record::spool::{outbox_name_parts, Spool};
use runledger_record::{DropCount, Timestamp};
use std::path::PathBuf;

/// Job ids named in one log line; the rest are counted.
const MAX_IDS_LOGGED: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// 0: no size bound.
    pub max_bytes: u64,
    /// 0: no age bound.
    pub max_age_days: u64,
}

impl Bounds {
    pub fn of(cfg: &EpilogConfig) -> Self {
        Bounds { max_bytes: cfg.spool_max_bytes, max_age_days: cfg.spool_max_age_days }
    }

    /// `spool_max_age_days` as a duration; `None`: no age bound.
    pub fn max_age(&self) -> Option<std::time::Duration> {
        (self.max_age_days > 0).then(|| std::time::Duration::from_secs(self.max_age_days.saturating_mul(86_400)))
    }

    fn max_age_secs(&self) -> Option<i64> {
        self.max_age().map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// What one run dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub count: DropCount,
    /// Job ids of the dropped batches, oldest first.
    pub jobs: Vec<u32>,
}

struct Entry {
    path: PathBuf,
    bytes: u64,
    created: Timestamp,
}

/// Drops what is over `bounds` from the outbox, counting `reserve` bytes for a batch about to be
/// added. Never fails: what cannot be done is logged. Skipped while another run is at it.
pub fn enforce(spool: &Spool, bounds: &Bounds, reserve: u64, now: Timestamp) -> Dropped {
    let mut dropped = Dropped::default();
    if bounds.max_bytes == 0 && bounds.max_age_days == 0 {
        return dropped;
    }
    let dir = spool.outbox_dir();
    let lock = match std::fs::File::open(&dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return dropped,
        Err(e) => {
            log::warn!("outbox {}: cannot check its bounds: {e}", dir.display());
            return dropped;
        }
    };
    // One pruner at a time, so that two epilogs ending together neither count one drop twice
    // nor lose an update of the counter. The other one simply skips: this run does the job.
    // Held until this function returns (the lock is released when `_held` drops).
    let _held = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(held) => held,
        Err(_) => {
            log::debug!("outbox {}: another run is checking its bounds", dir.display());
            return dropped;
        }
    };

    prune_rejected(spool, bounds, now);

    // Read before deleting, for the log line and the counter: items and job ids.
    let mut victims = Vec::new();
    let mut planned = DropCount { last: now, ..Default::default() };
    let mut jobs = Vec::new();
    let mut items = Vec::new();
    for (e, old) in over_bounds(list(spool), bounds, reserve, now) {
        match spool.outbox_read(&e.path) {
            Ok(b) => {
                items.push(b.items.len() as u64);
                for i in &b.items {
                    if !jobs.contains(&i.job_id()) {
                        jobs.push(i.job_id());
                    }
                }
            }
            // Not a batch at all: moved aside as delivery would, kept for an admin, not counted.
            Err(why) if why.starts_with("malformed") => {
                crate::deliver::reject(spool, &e.path, &why);
                continue;
            }
            Err(_) => {
                items.push(0); // unreadable: counted by its name and bytes
                jobs.extend(outbox_name_parts(&e.path).map(|(_, job)| job));
            }
        }
        planned.batches += 1;
        planned.bytes += e.bytes;
        victims.push((e, old));
    }
    if victims.is_empty() {
        return dropped;
    }
    planned.items = items.iter().sum();
    let too_old = victims.iter().filter(|(_, old)| *old).count();
    log::error!(
        "outbox {} is over its bounds (spool_max_bytes = {}, spool_max_age_days = {}): DROPPING {} batch(es) \
         unsent, oldest first ({} older than the age bound, {} for space): {} item(s), {} bytes, of job(s) {}. \
         These records from this node will never reach the ledger; counted in {}",
        dir.display(),
        bounds.max_bytes,
        bounds.max_age_days,
        planned.batches,
        too_old,
        victims.len() - too_old,
        planned.items,
        planned.bytes,
        id_list(&jobs),
        spool.drops_path().display()
    );

    let mut done = DropCount { last: now, ..Default::default() };
    let mut failed = Vec::new();
    for ((e, _), n) in victims.iter().zip(&items) {
        match std::fs::remove_file(&e.path) {
            Ok(()) => {
                done.batches += 1;
                done.bytes += e.bytes;
                done.items += n;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                log::warn!("outbox {}: delivered by another run meanwhile, not dropped", e.path.display())
            }
            Err(err) => failed.push(format!("{}: {err}", e.path.display())),
        }
    }
    if !failed.is_empty() {
        log::error!(
            "outbox {}: {} batch(es) could not be dropped and the outbox stays over its bounds: {}",
            dir.display(),
            failed.len(),
            failed.join("; ")
        );
    }
    if done.batches > 0 {
        if let Err(e) = spool.add_drops(&done) {
            log::error!(
                "could not add {} dropped batch(es) ({} items, {} bytes) to the counter {}: {e}",
                done.batches,
                done.items,
                done.bytes,
                spool.drops_path().display()
            );
        }
    }
    dropped.count = done;
    dropped.jobs = jobs;
    dropped
}

/// Removes the batches in `<spool>/rejected/` written more than `spool_max_age_days` ago: an
/// admin had that long to look at them, and they can never be delivered. Each is logged.
fn prune_rejected(spool: &Spool, bounds: &Bounds, now: Timestamp) {
    let Some(max_age) = bounds.max_age_secs() else { return };
    let dir = spool.rejected_dir();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let written = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| Timestamp::try_from(d.as_secs()).ok())
        });
        if written.is_some_and(|w| now.saturating_sub(w) > max_age) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => log::warn!(
                    "{}: rejected by the collector more than spool_max_age_days = {} ago; removed",
                    e.path().display(),
                    bounds.max_age_days
                ),
                Err(err) => log::warn!("{}: cannot remove: {err}", e.path().display()),
            }
        }
    }
}

/// Outbox files with their size and creation time, oldest first.
fn list(spool: &Spool) -> Vec<Entry> {
    let mut entries: Vec<Entry> = spool
        .outbox()
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            // A name that is not ours: its modification time stands in for the creation time.
            let created = outbox_name_parts(&path).map(|(c, _)| c).unwrap_or_else(|| {
                meta.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64)
            });
            Some(Entry { path, bytes: meta.len(), created })
        })
        .collect();
    entries.sort_by(|a, b| (a.created, &a.path).cmp(&(b.created, &b.path)));
    entries
}

/// The entries to drop, each with whether it is over the age bound (else: space): the ones over
/// the age bound; then, for space, first any batch larger than the whole bound by itself (dropping
/// others could never make room for it), then the oldest. A `reserve` larger than the bound is not
/// counted either: no drop of other jobs' batches would make it fit.
fn over_bounds(entries: Vec<Entry>, bounds: &Bounds, reserve: u64, now: Timestamp) -> Vec<(Entry, bool)> {
    let max = bounds.max_bytes;
    let reserve = if max > 0 && reserve > max { 0 } else { reserve };
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum::<u64>().saturating_add(reserve);
    let too_old = |e: &Entry| bounds.max_age_secs().is_some_and(|age| now.saturating_sub(e.created) > age);
    let (mut out, rest): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| too_old(e));
    total -= out.iter().map(|e| e.bytes).sum::<u64>();
    let mut out: Vec<(Entry, bool)> = out.drain(..).map(|e| (e, true)).collect();
    let (huge, rest): (Vec<Entry>, Vec<Entry>) = rest.into_iter().partition(|e| max > 0 && e.bytes > max);
    for e in huge {
        total -= e.bytes;
        out.push((e, false));
    }
    for e in rest {
        if max == 0 || total <= max {
            break; // oldest first: everything after is newer, and the size fits
        }
        total -= e.bytes;
        out.push((e, false));
    }
    out
}

fn id_list(ids: &[u32]) -> String {
    let mut s = ids.iter().take(MAX_IDS_LOGGED).map(u32::to_string).collect::<Vec<_>>().join(", ");
    if ids.len() > MAX_IDS_LOGGED {
        s.push_str(&format!(" and {} more", ids.len() - MAX_IDS_LOGGED));
    }
    if s.is_empty() {
        s.push_str("(unknown)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::{Batch, Item, JobEnd};

    const DAY: i64 = 86_400;
    const NOW: Timestamp = 1_800_000_000;

    fn batch(job: u32, created: Timestamp, pad: usize) -> Batch {
        let end = JobEnd {
            cluster: "c".into(),
            job_id: job,
            node: "n1".into(),
            user: "x".repeat(pad),
            end: created,
            ..Default::default()
        };
        let mut b = Batch::new("n1", vec![Item::JobEnd(end)]);
        b.created = created;
        b
    }

    fn spool_with(batches: &[Batch]) -> (tempfile::TempDir, Spool, Vec<u64>) {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path().join("spool"));
        s.ensure().unwrap();
        let sizes = batches.iter().map(|b| std::fs::metadata(s.outbox_put(b).unwrap()).unwrap().len()).collect();
        (d, s, sizes)
    }

    fn jobs_left(s: &Spool) -> Vec<u32> {
        s.outbox().iter().map(|p| outbox_name_parts(p).unwrap().1).collect()
    }

    #[test]
    fn over_size_drops_oldest_first_counts_and_keeps_the_newest() {
        let bs: Vec<Batch> = (1..=5).map(|j| batch(j, NOW - 100 + j as i64, 1000)).collect();
        let (_d, s, sizes) = spool_with(&bs);
        let one = sizes[0];
        // Room for three batches including the one about to be added: two stay, three go.
        let bounds = Bounds { max_bytes: 3 * one + one / 2, max_age_days: 0 };
        let got = enforce(&s, &bounds, one, NOW);
        assert_eq!(got.jobs, vec![1, 2, 3]);
        assert_eq!(got.count, DropCount { batches: 3, items: 3, bytes: 3 * one, last: NOW });
        assert_eq!(jobs_left(&s), vec![4, 5]);
        assert_eq!(s.drop_count().unwrap(), got.count);
        // Within bounds now: nothing more goes, the counter stays.
        assert_eq!(enforce(&s, &bounds, 0, NOW + 1), Dropped::default());
        assert_eq!(s.drop_count().unwrap().batches, 3);
        // The counter accumulates across runs.
        let bounds = Bounds { max_bytes: one, max_age_days: 0 };
        let got = enforce(&s, &bounds, 0, NOW + 2);
        assert_eq!((got.jobs, got.count.batches), (vec![4], 1));
        assert_eq!(s.drop_count().unwrap(), DropCount { batches: 4, items: 4, bytes: 4 * one, last: NOW + 2 });
        assert_eq!(jobs_left(&s), vec![5]);
    }

    #[test]
    fn the_batch_being_added_is_never_dropped_even_alone_over_the_bound() {
        let (_d, s, _) = spool_with(&[]);
        assert_eq!(enforce(&s, &Bounds { max_bytes: 100, max_age_days: 0 }, 5000, NOW), Dropped::default());
        // Once stored and still unsent, the next run holds it to the bound like any other.
        let (_d, s, _) = spool_with(&[batch(9, NOW, 5000)]);
        assert_eq!(enforce(&s, &Bounds { max_bytes: 100, max_age_days: 0 }, 0, NOW).jobs, vec![9]);
    }

    #[test]
    fn one_batch_over_the_whole_bound_never_costs_other_jobs_theirs() {
        let bs = [batch(1, NOW - 3, 100), batch(2, NOW - 2, 20_000), batch(3, NOW - 1, 100)];
        let (_d, s, sizes) = spool_with(&bs);
        let bounds = Bounds { max_bytes: 10_000, max_age_days: 0 };
        // About to add a batch larger than the bound: nothing else goes for it.
        assert_eq!(enforce(&s, &bounds, 50_000, NOW), Dropped { count: drop_of(&[sizes[1]]), jobs: vec![2] });
        assert_eq!(jobs_left(&s), vec![1, 3], "only the batch that can never fit went, not the older one");
        assert_eq!(enforce(&s, &bounds, 50_000, NOW), Dropped::default());
        assert_eq!(jobs_left(&s), vec![1, 3]);
    }

    fn drop_of(sizes: &[u64]) -> DropCount {
        DropCount { batches: sizes.len() as u64, items: sizes.len() as u64, bytes: sizes.iter().sum(), last: NOW }
    }

    #[test]
    fn over_age_drops_only_the_old_ones() {
        let bs = [batch(1, NOW - 40 * DAY, 10), batch(2, NOW - 31 * DAY, 10), batch(3, NOW - 29 * DAY, 10)];
        let (_d, s, sizes) = spool_with(&bs);
        let got = enforce(&s, &Bounds { max_bytes: 0, max_age_days: 30 }, 0, NOW);
        assert_eq!(got.jobs, vec![1, 2]);
        assert_eq!(got.count, DropCount { batches: 2, items: 2, bytes: sizes[0] + sizes[1], last: NOW });
        assert_eq!(jobs_left(&s), vec![3]);
        assert_eq!(s.drop_count().unwrap().batches, 2);
    }

    #[test]
    fn no_bounds_or_no_outbox_drops_nothing() {
        let (_d, s, _) = spool_with(&[batch(1, 0, 10)]);
        assert_eq!(enforce(&s, &Bounds { max_bytes: 0, max_age_days: 0 }, 1 << 40, NOW), Dropped::default());
        assert_eq!(jobs_left(&s), vec![1]);
        let s = Spool::new("/nonexistent/spool");
        assert_eq!(enforce(&s, &Bounds { max_bytes: 1, max_age_days: 1 }, 0, NOW), Dropped::default());
    }

    #[test]
    fn garbage_over_the_bounds_is_moved_aside_not_counted() {
        let (_d, s, _) = spool_with(&[batch(2, NOW, 10)]);
        std::fs::write(s.outbox_dir().join("000000000001-c-77.json"), b"{not a batch").unwrap();
        assert_eq!(enforce(&s, &Bounds { max_bytes: 0, max_age_days: 1 }, 0, NOW), Dropped::default());
        assert!(s.root().join("rejected/000000000001-c-77.json").exists());
        assert_eq!(jobs_left(&s), vec![2]);
        assert_eq!(s.drop_count().unwrap(), DropCount::default());
    }

    #[test]
    fn rejected_batches_go_after_the_age_bound() {
        let (_d, s, _) = spool_with(&[batch(2, NOW, 10)]);
        std::fs::create_dir_all(s.root().join("rejected")).unwrap();
        let old = s.root().join("rejected/000000000001-c-70.json");
        let new = s.root().join("rejected/000000000002-c-71.json");
        for p in [&old, &new] {
            std::fs::write(p, b"{not a batch").unwrap();
        }
        let written = |days: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64 - days * 86_400);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(written(31)).unwrap();
        std::fs::File::options().write(true).open(&new).unwrap().set_modified(written(29)).unwrap();
        enforce(&s, &Bounds { max_bytes: 0, max_age_days: 30 }, 0, NOW);
        assert!(!old.exists() && new.exists());
        assert_eq!(jobs_left(&s), vec![2], "the outbox is not touched");
    }

    #[test]
    fn a_concurrent_pruner_is_left_alone() {
        let (_d, s, _) = spool_with(&[batch(1, 0, 10)]);
        let held = Flock::lock(std::fs::File::open(s.outbox_dir()).unwrap(), FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(enforce(&s, &Bounds { max_bytes: 1, max_age_days: 1 }, 0, NOW), Dropped::default());
        drop(held);
        assert_eq!(enforce(&s, &Bounds { max_bytes: 1, max_age_days: 1 }, 0, NOW).count.batches, 1);
    }

    #[test]
    fn long_id_lists_are_cut() {
        assert_eq!(id_list(&[3, 1]), "3, 1");
        assert_eq!(id_list(&[]), "(unknown)");
        let many: Vec<u32> = (1..=25).collect();
        assert!(id_list(&many).ends_with("19, 20 and 5 more"), "{}", id_list(&many));
    }
}
