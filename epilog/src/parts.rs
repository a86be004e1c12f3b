//! Writing one job's batch as it is read: items go into a part until the next one would make it
//! larger than `[epilog] batch_max_bytes`, and the full part is then stored (fsync'd) in the
//! outbox, or printed for `--dry-run`. The epilog so holds about one part and one item, whatever
//! the job spooled. Parts are cut as [`Batch::split`] cuts them, and named as
//! [`Spool::outbox_put_parts`] names them (a job in one part keeps its plain name).

use runledger_record::spool::{outbox_stem, Spool};
use runledger_record::{Batch, Cutter, Item, JobEnd};
use std::io::{self, Write};
use std::path::PathBuf;

/// Where full parts go.
#[derive(Clone, Copy, Debug)]
pub enum Out<'a> {
    /// Stored durably in this spool's outbox.
    Outbox(&'a Spool),
    /// Printed on stdout, one batch per line (`--dry-run`).
    Print,
}

/// One job's batch, cut into parts as its items come.
pub struct Parts<'a> {
    out: Out<'a>,
    cut: Cutter,
    envelope: Batch,
    cur: Batch,
    stem: Option<String>,
    written: Vec<PathBuf>,
    parts: usize,
    items: usize,
    error: Option<io::Error>,
}

impl<'a> Parts<'a> {
    /// `envelope`: the batch every part copies (sender, creation time, drop total), without items.
    pub fn new(out: Out<'a>, envelope: Batch, max_bytes: usize) -> Self {
        let envelope = Batch { items: Vec::new(), ..envelope };
        Parts {
            out,
            cut: Cutter::new(&envelope, max_bytes),
            cur: envelope.clone(),
            envelope,
            stem: None,
            written: Vec::new(),
            parts: 0,
            items: 0,
            error: None,
        }
    }

    /// Adds an item; stores the current part first if the item would make it too large (an item
    /// larger than the limit by itself travels alone, as [`Batch::split`] lets it). After a
    /// failed write the items are only counted.
    pub fn push(&mut self, item: Item) {
        self.items += 1;
        if self.error.is_some() {
            return;
        }
        if self.cut.starts_part(Cutter::item_len(&item)) {
            self.store(false);
        }
        self.cur.items.push(item);
    }

    /// Adds the JobEnd, last, stores the last part and returns the parts' outbox paths (none when
    /// printed). On a failed write, every part written is removed again and the error returned.
    pub fn finish(mut self, job_end: JobEnd) -> io::Result<Vec<PathBuf>> {
        self.push(Item::JobEnd(job_end));
        if self.error.is_none() {
            self.store(true);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.written),
        }
    }

    /// Items pushed (the JobEnd included once finished).
    pub fn items(&self) -> usize {
        self.items
    }

    /// Parts stored or printed so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    fn store(&mut self, last: bool) {
        let part = std::mem::replace(&mut self.cur, self.envelope.clone());
        self.parts += 1;
        let r = match self.out {
            Out::Print => {
                let mut out = io::stdout().lock();
                out.write_all(&part.to_json())
                    .and_then(|_| out.write_all(b"\n"))
                    .and_then(|_| out.flush())
                    .map(|_| None)
            }
            // Only one part: the name a whole batch has.
            Out::Outbox(spool) if last && self.parts == 1 => spool.outbox_put(&part).map(Some),
            Out::Outbox(spool) => {
                let stem = self.stem.get_or_insert_with(|| outbox_stem(&part));
                spool.outbox_put_part(stem, self.parts, &part).map(Some)
            }
        };
        match r {
            Ok(p) => self.written.extend(p),
            Err(e) => {
                // All or none, as Spool::outbox_put_parts: the caller falls back to sending directly.
                for p in self.written.drain(..) {
                    let _ = std::fs::remove_file(p);
                }
                self.error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::{StepStart, STEP_BATCH};

    fn start(step: u32, env_bytes: usize) -> Item {
        let mut s = StepStart { cluster: "c".into(), job_id: 9, step_id: step, node: "n".into(), ..Default::default() };
        s.env.insert("BIG".into(), "x".repeat(env_bytes));
        Item::StepStart(s)
    }

    #[test]
    fn parts_are_cut_as_split_cuts_them_and_stored_in_order() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        let items: Vec<Item> =
            (0..40).map(|i| start(i, 1000 + 37 * i as usize)).chain([start(STEP_BATCH, 9000)]).collect();
        let envelope = Batch::new("n", Vec::new());
        let end = JobEnd { cluster: "c".into(), job_id: 9, node: "n".into(), ..Default::default() };
        let mut all = items.clone();
        all.push(Item::JobEnd(end.clone()));
        let expected = Batch { items: all, ..envelope.clone() }.split(8000);
        assert!(expected.len() > 3);

        let mut p = Parts::new(Out::Outbox(&spool), envelope, 8000);
        items.into_iter().for_each(|i| p.push(i));
        let paths = p.finish(end).unwrap();
        assert_eq!(paths, spool.outbox());
        let stored: Vec<Batch> = paths.iter().map(|p| spool.outbox_read(p).unwrap()).collect();
        assert_eq!(stored, expected);
        assert!(matches!(stored.last().unwrap().items.last(), Some(Item::JobEnd(_))));
    }

    #[test]
    fn a_job_in_one_part_keeps_the_plain_name() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        let mut p = Parts::new(Out::Outbox(&spool), Batch::new("n", Vec::new()), 1 << 20);
        p.push(start(0, 10));
        let end = JobEnd { cluster: "c".into(), job_id: 9, node: "n".into(), ..Default::default() };
        let paths = p.finish(end).unwrap();
        assert_eq!(paths.len(), 1);
        assert!(!paths[0].to_string_lossy().contains(".p0"), "{paths:?}");
        assert_eq!(spool.outbox_read(&paths[0]).unwrap().items.len(), 2);
    }

    #[test]
    fn an_item_larger_than_a_part_travels_alone() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        let mut p = Parts::new(Out::Outbox(&spool), Batch::new("n", Vec::new()), 4000);
        p.push(start(0, 10));
        p.push(start(1, 10_000));
        p.push(start(2, 10));
        let end = JobEnd { cluster: "c".into(), job_id: 9, node: "n".into(), ..Default::default() };
        let stored: Vec<Batch> = p.finish(end).unwrap().iter().map(|p| spool.outbox_read(p).unwrap()).collect();
        let sizes: Vec<usize> = stored.iter().map(|b| b.items.len()).collect();
        assert_eq!(sizes, [1, 1, 2], "the large item alone, between the others");
        assert!(stored[1].to_json().len() > 10_000);
    }
}
