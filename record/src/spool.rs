//! The node-local spool: where records wait until the collector has committed them.
//!
//! ```text
//! <root>/                 root-owned, 0700 (the job's user can neither read nor forge records)
//!   jobs/<job_id>/        the plugin's items for one job: <step>.start.json, <step>.end.json
//!   outbox/               the epilog's batches, one file per job, deleted only after the
//!                         collector acknowledged a committed transaction
//!                         (<created>-<cluster>-<job>.json, so oldest first by name; a job
//!                         too large for one request is in parts, <…>-<job>.p0001.json, …)
//!   rejected/             batches the collector called malformed, for an admin to inspect
//!   dropped.json          running total of batches dropped unsent (outbox over its bounds)
//! ```
//!
//! Every file is written to a temporary name and renamed into place, so a reader sees a whole
//! record or none. Readers tolerate garbage: a bad file is reported, never fatal.

use crate::{step_name, Batch, DropCount, Item, Timestamp};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Default spool location (plugin argument `spool=`, config `epilog.spool`).
pub const DEFAULT_ROOT: &str = "/var/spool/runledger";

/// Stands for the node's name in a configured spool path (plugstack.conf's `spool=`,
/// `[epilog] spool`), as in slurm.conf's `SlurmdSpoolDir`: several slurmd nodes on one host
/// (a test cluster, a container host) then each keep a spool of their own.
pub const NODE_PLACEHOLDER: &str = "%n";

/// The spool path with every `%n` replaced by `node`. A name that cannot be one path component
/// (empty, `.`, `..`, a `/` or a NUL in it) becomes `unknown-node`, so a strange name never
/// points a node's records somewhere else.
pub fn expand_node(path: &Path, node: &str) -> PathBuf {
    let text = path.to_string_lossy();
    if !text.contains(NODE_PLACEHOLDER) {
        return path.to_path_buf();
    }
    let safe = !node.is_empty() && node != "." && node != ".." && !node.contains(['/', '\0']);
    PathBuf::from(text.replace(NODE_PLACEHOLDER, if safe { node } else { "unknown-node" }))
}

/// The names of the spool's parts (the layout in the module docs), spelled only here: the
/// plugin, the epilog and any tool that reads a spool name them through these.
pub mod layout {
    /// `jobs/<job_id>/`: the plugin's items.
    pub const JOBS: &str = "jobs";
    /// `outbox/`: the epilog's batches until the collector committed them.
    pub const OUTBOX: &str = "outbox";
    /// `rejected/`: batches the collector called malformed.
    pub const REJECTED: &str = "rejected";
    /// The running total of batches dropped unsent.
    pub const DROPS: &str = "dropped.json";
    /// A step's start item in its job's directory: `<step>.start.json`.
    pub const START: &str = ".start.json";
    /// A step's end item: `<step>.end.json`.
    pub const END: &str = ".end.json";
    /// A job's end item: `<step>.jobend.json`.
    pub const JOBEND: &str = ".jobend.json";
    /// What every spool record file ends with (outbox batches and parts included).
    pub const RECORD: &str = ".json";
    /// Before [`RECORD`] in an outbox part's name: `<created>-<cluster>-<job>.p0001.json`.
    pub const PART: &str = ".p";
}

/// A spool file larger than this is not a record of ours; it is reported, not read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A spool file that could not be used, and why.
#[derive(Debug)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Spool { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn job_dir(&self, job_id: u32) -> PathBuf {
        self.root.join(layout::JOBS).join(job_id.to_string())
    }

    /// The file of a step's start item in its job's directory.
    pub fn step_start_path(&self, job_id: u32, step_id: u32) -> PathBuf {
        self.job_dir(job_id).join(format!("{}{}", step_name(step_id), layout::START))
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join(layout::OUTBOX)
    }

    /// Where batches the collector can never accept are moved, for an admin to inspect.
    pub fn rejected_dir(&self) -> PathBuf {
        self.root.join(layout::REJECTED)
    }

    /// Creates the spool directories (0700) where missing.
    pub fn ensure(&self) -> io::Result<()> {
        let mut b = DirBuilder::new();
        b.recursive(true).mode(0o700);
        b.create(self.root.join(layout::JOBS))?;
        b.create(self.outbox_dir())
    }

    /// Writes one plugin item (step start or end) for its job. Overwrites an older copy of the
    /// same item, so a retried write is harmless.
    pub fn put_item(&self, item: &Item) -> io::Result<PathBuf> {
        let (step, suffix) = match item {
            Item::StepStart(s) => (s.step_id, layout::START),
            Item::StepEnd(s) => (s.step_id, layout::END),
            Item::JobEnd(_) => (0, layout::JOBEND),
        };
        let dir = self.job_dir(item.job_id());
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let path = dir.join(format!("{}{suffix}", step_name(step)));
        let bytes = serde_json::to_vec(item).map_err(io::Error::other)?;
        write_atomic(&path, &bytes, false)?;
        Ok(path)
    }

    /// Every item the plugin spooled for a job, plus the files that could not be read.
    pub fn job_items(&self, job_id: u32) -> (Vec<Item>, Vec<BadFile>) {
        let mut items = Vec::new();
        let (paths, mut bad) = self.job_item_paths(job_id);
        for path in paths {
            match self.job_item(job_id, &path) {
                Ok(item) => items.push(item),
                Err(b) => bad.push(b),
            }
        }
        (items, bad)
    }

    /// The files of a job's spooled items, in the order they are sent, plus the directory's
    /// error if it cannot be listed. Read each with [`Spool::job_item`]: a job of any size is
    /// then read one item at a time.
    pub fn job_item_paths(&self, job_id: u32) -> (Vec<PathBuf>, Vec<BadFile>) {
        let mut bad = Vec::new();
        let paths = sorted_files(&self.job_dir(job_id), &mut bad)
            .into_iter()
            // Not a temporary file of a write in progress or interrupted.
            .filter(|p| p.to_string_lossy().ends_with(layout::RECORD))
            .collect();
        (paths, bad)
    }

    /// One spooled item of `job_id`, or why the file is not one.
    pub fn job_item(&self, job_id: u32, path: &Path) -> Result<Item, BadFile> {
        match read_bounded(path).and_then(|b| serde_json::from_slice::<Item>(&b).map_err(io::Error::other)) {
            Ok(item) if item.job_id() == job_id => Ok(item),
            Ok(item) => Err(BadFile { path: path.into(), reason: format!("holds job {} not {job_id}", item.job_id()) }),
            Err(e) => Err(BadFile { path: path.into(), reason: e.to_string() }),
        }
    }

    /// The bytes a job's spooled items take on disk (what its batch will about take in the outbox).
    pub fn job_bytes(&self, job_id: u32) -> u64 {
        let (paths, _) = self.job_item_paths(job_id);
        paths.iter().filter_map(|p| fs::symlink_metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// Removes a job's plugin files (after they are safely in the outbox).
    pub fn remove_job(&self, job_id: u32) -> io::Result<()> {
        match fs::remove_dir_all(self.job_dir(job_id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Job ids with plugin files still in the spool (e.g. a job whose epilog never ran).
    pub fn spooled_jobs(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = fs::read_dir(self.root.join(layout::JOBS))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Puts a batch in the outbox durably (fsync'd) and returns its path.
    pub fn outbox_put(&self, batch: &Batch) -> io::Result<PathBuf> {
        let dir = self.outbox_dir();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let path = dir.join(format!("{}{}", outbox_stem(batch), layout::RECORD));
        write_atomic(&path, &batch.to_json(), true)?;
        Ok(path)
    }

    /// Puts the parts of one job's batch in the outbox durably, in order, and returns their
    /// paths: one part is named as [`Spool::outbox_put`] names it, several `<…>-<job>.pNNNN.json`
    /// (so they sort in order). All are written before this returns, or none is left behind.
    pub fn outbox_put_parts(&self, parts: &[Batch]) -> io::Result<Vec<PathBuf>> {
        if parts.len() == 1 {
            return Ok(vec![self.outbox_put(&parts[0])?]);
        }
        let stem = parts.first().map(outbox_stem).unwrap_or_default();
        self.put_parts(&stem, parts)
    }

    /// Stores `parts` in place of the outbox file `path` (one too large to send whole), named
    /// after it (`<its name>.pNNNN.json`, so they sort where it did and never take the name of
    /// another part), then removes `path`. Returns the parts' paths.
    pub fn outbox_replace_with_parts(&self, path: &Path, parts: &[Batch]) -> io::Result<Vec<PathBuf>> {
        let stem = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| io::Error::other("not an outbox name"))?;
        let paths = self.put_parts(stem, parts)?;
        self.outbox_remove(path)?;
        Ok(paths)
    }

    /// Puts part `number` (from 1) of a batch cut in parts durably in the outbox, named
    /// `<stem>.pNNNN.json` (stem: [`outbox_stem`] of the first part), and returns its path. A
    /// caller writing parts one by one removes those written if a later one fails.
    pub fn outbox_put_part(&self, stem: &str, number: usize, part: &Batch) -> io::Result<PathBuf> {
        let dir = self.outbox_dir();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let path = dir.join(format!("{stem}{}{number:04}{}", layout::PART, layout::RECORD));
        write_atomic(&path, &part.to_json(), true)?;
        Ok(path)
    }

    /// Reads an outbox file's bytes as stored (to send it without parsing it).
    pub fn outbox_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        read_bounded(path)
    }

    fn put_parts(&self, stem: &str, parts: &[Batch]) -> io::Result<Vec<PathBuf>> {
        let mut done = Vec::with_capacity(parts.len());
        for (i, batch) in parts.iter().enumerate() {
            let path = match self.outbox_put_part(stem, i + 1, batch) {
                Ok(p) => p,
                Err(e) => {
                    for p in &done {
                        let _ = fs::remove_file(p);
                    }
                    return Err(e);
                }
            };
            done.push(path);
        }
        Ok(done)
    }

    /// Outbox files, oldest first (names start with the creation time).
    pub fn outbox(&self) -> Vec<PathBuf> {
        let mut bad = Vec::new();
        sorted_files(&self.outbox_dir(), &mut bad)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(layout::RECORD))
            .collect()
    }

    pub fn outbox_read(&self, path: &Path) -> Result<Batch, String> {
        let bytes = read_bounded(path).map_err(|e| e.to_string())?;
        Batch::from_json(&bytes)
    }

    pub fn outbox_remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Where the running total of dropped batches is kept.
    pub fn drops_path(&self) -> PathBuf {
        self.root.join(layout::DROPS)
    }

    /// The running total of batches dropped unsent; zero when none ever was.
    pub fn drop_count(&self) -> Result<DropCount, String> {
        let path = self.drops_path();
        match read_bounded(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DropCount::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Adds `drops` to the running total, durably, and returns the new total. A counter file that
    /// cannot be read restarts from zero (each drop was logged when it happened). The caller
    /// serializes concurrent updates (the epilog holds its outbox lock).
    pub fn add_drops(&self, drops: &DropCount) -> io::Result<DropCount> {
        let mut total = self.drop_count().unwrap_or_default();
        total.add(drops);
        let bytes = serde_json::to_vec(&total).map_err(io::Error::other)?;
        write_atomic(&self.drops_path(), &bytes, true)?;
        Ok(total)
    }
}

/// The creation time and job id an outbox file's name carries (`<created>-<cluster>-<job>.json`).
pub fn outbox_name_parts(path: &Path) -> Option<(Timestamp, u32)> {
    let stem = path.file_stem()?.to_str()?;
    // Parts' suffixes, `.pNNNN` (a part cut again gets another), follow the job id.
    let mut stem = stem;
    while let Some((s, n)) = stem.rsplit_once(layout::PART) {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        stem = s;
    }
    let (created, rest) = stem.split_once('-')?;
    let (_, job) = rest.rsplit_once('-')?;
    Some((created.parse().ok()?, job.parse().ok()?))
}

/// `<created>-<cluster>-<job>`: an outbox file's name without `.json`.
pub fn outbox_stem(batch: &Batch) -> String {
    let job = batch.items.first().map(|i| (i.cluster().to_string(), i.job_id())).unwrap_or_default();
    format!("{:012}-{}-{}", batch.created, sanitize(&job.0), job.1)
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

fn sorted_files(dir: &Path, bad: &mut Vec<BadFile>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                // Only plain files: a link or fifo planted here is not ours.
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => bad.push(BadFile { path: dir.to_path_buf(), reason: e.to_string() }),
    }
    out.sort();
    out
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Err(io::Error::other(format!("{len} bytes is larger than any record ({MAX_FILE_BYTES})")));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(MAX_FILE_BYTES).read_to_end(&mut buf)?;
    Ok(buf)
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary file and a rename, mode 0600. With `durable`,
/// the data and the directory entry are synced first, so a crash leaves the old file or the new.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record");
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), TMP_SEQ.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StepEnd, StepStart, STEP_BATCH};
    use std::os::unix::fs::PermissionsExt;

    fn start(job: u32, step: u32) -> Item {
        Item::StepStart(StepStart { cluster: "c".into(), job_id: job, step_id: step, start: 10, ..Default::default() })
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path());
        s.ensure().unwrap();
        assert!(d.path().join("jobs").is_dir() && d.path().join("outbox").is_dir());
        let started = s.put_item(&start(7, 0)).unwrap();
        assert_eq!(started, d.path().join("jobs/7/0.start.json"));
        assert_eq!(s.step_start_path(7, 0), started);
        let end = Item::StepEnd(StepEnd { cluster: "c".into(), job_id: 7, step_id: 0, ..Default::default() });
        assert_eq!(s.put_item(&end).unwrap(), d.path().join("jobs/7/0.end.json"));
        assert_eq!(s.rejected_dir(), d.path().join("rejected"));
        assert_eq!(s.drops_path(), d.path().join("dropped.json"));
        let b = Batch {
            format: crate::FORMAT_VERSION,
            sender: "n".into(),
            created: 5,
            items: vec![start(7, 0)],
            dropped: None,
        };
        assert_eq!(s.outbox_put(&b).unwrap(), d.path().join("outbox/000000000005-c-7.json"));
        assert_eq!(
            s.outbox_put_part("000000000005-c-7", 1, &b).unwrap(),
            d.path().join("outbox/000000000005-c-7.p0001.json")
        );
    }

    #[test]
    fn items_round_trip_and_garbage_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path().join("spool"));
        s.ensure().unwrap();
        assert_eq!(fs::metadata(s.root()).unwrap().permissions().mode() & 0o777, 0o700);
        s.put_item(&start(7, STEP_BATCH)).unwrap();
        s.put_item(&start(7, 0)).unwrap();
        s.put_item(&Item::StepEnd(StepEnd { cluster: "c".into(), job_id: 7, step_id: 0, ..Default::default() }))
            .unwrap();
        let p = s.put_item(&start(7, 0)).unwrap(); // rewritten: still one file
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(s.job_dir(7).join("junk.json"), b"\x00garbage").unwrap();
        fs::write(s.job_dir(7).join(".half.tmp"), b"{").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", s.job_dir(7).join("link.json")).unwrap();
        let (items, bad) = s.job_items(7);
        assert_eq!(items.len(), 3);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(s.spooled_jobs(), vec![7]);
        s.remove_job(7).unwrap();
        s.remove_job(7).unwrap();
        assert!(s.spooled_jobs().is_empty());
        assert!(s.job_items(8).0.is_empty());
    }

    #[test]
    fn outbox_is_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path());
        let mut b1 = Batch::new("n", vec![start(2, 0)]);
        b1.created = 200;
        let mut b2 = Batch::new("n", vec![start(1, 0)]);
        b2.created = 100;
        s.outbox_put(&b1).unwrap();
        s.outbox_put(&b2).unwrap();
        let files = s.outbox();
        assert_eq!(files.len(), 2);
        assert_eq!(s.outbox_read(&files[0]).unwrap(), b2);
        s.outbox_remove(&files[0]).unwrap();
        assert_eq!(s.outbox().len(), 1);
        fs::write(s.outbox_dir().join("0-x-1.json"), b"nope").unwrap();
        assert!(s.outbox_read(&s.outbox()[0]).unwrap_err().contains("malformed"));
    }

    #[test]
    fn outbox_names_carry_creation_time_and_job() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path());
        let mut b = Batch::new("n", vec![start(42, 0)]);
        b.created = 1_700_000_123;
        let p = s.outbox_put(&b).unwrap();
        assert_eq!(outbox_name_parts(&p), Some((1_700_000_123, 42)));
        assert_eq!(outbox_name_parts(Path::new("/o/000000000005-my-cluster-7.json")), Some((5, 7)));
        assert_eq!(outbox_name_parts(Path::new("/o/junk.json")), None);
        assert_eq!(outbox_name_parts(Path::new("/o/000000000005-c-7.p0012.json")), Some((5, 7)));
    }

    #[test]
    fn parts_of_one_job_are_stored_in_order() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path());
        let mut parts: Vec<Batch> = (0..12).map(|step| Batch::new("n", vec![start(42, step)])).collect();
        for p in &mut parts {
            p.created = 7;
        }
        let paths = s.outbox_put_parts(&parts).unwrap();
        assert_eq!(s.outbox(), paths, "listed in the order they were cut");
        for (p, b) in paths.iter().zip(&parts) {
            assert_eq!(&s.outbox_read(p).unwrap(), b);
            assert_eq!(outbox_name_parts(p), Some((7, 42)));
        }
        assert!(paths[0].to_str().unwrap().ends_with("-42.p0001.json"));
        // A part cut again takes its own place in the order, and no other part's name.
        let again = s.outbox_replace_with_parts(&paths[1], &parts[..2]).unwrap();
        assert!(again[0].to_str().unwrap().ends_with("-42.p0002.p0001.json"), "{again:?}");
        let mut want = vec![paths[0].clone()];
        want.extend(again);
        want.extend_from_slice(&paths[2..]);
        assert_eq!(s.outbox(), want);
        assert_eq!(outbox_name_parts(&want[1]), Some((7, 42)));
    }

    #[test]
    fn drop_counter_accumulates_and_survives_garbage() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path().join("spool"));
        s.ensure().unwrap();
        assert_eq!(s.drop_count().unwrap(), DropCount::default());
        s.add_drops(&DropCount { batches: 2, items: 7, bytes: 100, last: 50 }).unwrap();
        let t = s.add_drops(&DropCount { batches: 1, items: 1, bytes: 10, last: 60 }).unwrap();
        assert_eq!(t, DropCount { batches: 3, items: 8, bytes: 110, last: 60 });
        assert_eq!(s.drop_count().unwrap(), t);
        assert_eq!(fs::metadata(s.drops_path()).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(s.drops_path(), b"{oops").unwrap();
        assert!(s.drop_count().unwrap_err().contains("dropped.json"));
        let t = s.add_drops(&DropCount { batches: 1, items: 2, bytes: 3, last: 70 }).unwrap();
        assert_eq!(t, DropCount { batches: 1, items: 2, bytes: 3, last: 70 });
    }

    #[test]
    fn node_placeholder_expands_to_a_safe_name() {
        let p = Path::new("/var/spool/runledger/%n");
        assert_eq!(expand_node(p, "n3"), PathBuf::from("/var/spool/runledger/n3"));
        assert_eq!(expand_node(Path::new("/s/%n/x-%n"), "a"), PathBuf::from("/s/a/x-a"));
        assert_eq!(expand_node(Path::new("/var/spool/runledger"), "n3"), PathBuf::from("/var/spool/runledger"));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert_eq!(expand_node(p, bad), PathBuf::from("/var/spool/runledger/unknown-node"), "{bad:?}");
        }
    }
}
