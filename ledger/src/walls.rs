//! Elapsed times as bounded histograms: what the rollups keep of every job's wall time, so that
//! `query summary`'s median and 95th percentile read a few hundred numbers per group, not one per
//! job.
//!
//! Why not every elapsed time: at ten million jobs the groups' and cells' lists were 350 MB, read
//! and selected at every summary (`summary --by account` 245 ms, `--by module_version` 1.7 s).
//! A histogram's size is bounded by its buckets, whatever the number of jobs.
//!
//! The buckets keep 7 significant bits: one per second below 128 s, then 64 per doubling (a
//! bucket is at most 1/64 of its lower bound wide: 16 s wide at an hour, 22 min at a month).
//! Each bucket holds its count and the exact sum of its times, and a quantile reads a bucket as
//! the mean of its times. So a quantile is within 1.6 % of the exact one (typically far less),
//! and exact when the times in its bucket are equal: any time below 128 s, or many jobs that
//! ran to the same time limit. Counts and sums are integers: adding and removing jobs in any
//! order gives the same histogram, and the job-by-job scan computes the same one, so the
//! rollups and the scan answer to the last digit ([`Hist::quantile`]).
//!
//! The rollups store a histogram in chunks of [`CHUNK_BUCKETS`] buckets (a row each), because the
//! merge rewrites a histogram for every job it counts: a whole histogram of a busy group is
//! several KiB, past what a B-tree page keeps in place, so each rewrite freed and allocated
//! overflow pages (a quarter of the merge's time at a few million jobs); a chunk is at most about
//! a KiB (1,118 bytes at 600,000 made-up jobs, where whole histograms reached 2,907). Each
//! encoding starts with its first bucket's number, so chunks read back in order and simply put
//! one after another are one encoded histogram ([`Acc::add_encoded`]).

use crate::varint::{get_varint, put_varint};

/// Seconds below this have a bucket each.
const EXACT: u64 = 128;
/// Buckets per doubling above [`EXACT`] (7 significant bits).
const PER_DOUBLING: u64 = 64;

/// Buckets per stored chunk: four doublings (the first chunk holds 0 s to 8.5 min). Chunks of
/// one doubling were each a fraction of a page but tripled the rows a summary reads: at 600,000
/// made-up jobs `summary --by module_version` took 217 ms against 144 ms whole, and 172 ms so.
pub const CHUNK_BUCKETS: u32 = 256;

/// The chunk that holds `wall` seconds' bucket.
pub fn chunk(wall: i64) -> i64 {
    chunk_of(bucket(wall))
}

/// The chunk that holds bucket `b`.
fn chunk_of(b: u32) -> i64 {
    i64::from(b / CHUNK_BUCKETS)
}

/// The bucket of `wall` seconds (negative counts as 0).
pub fn bucket(wall: i64) -> u32 {
    let w = wall.max(0) as u64;
    if w < EXACT {
        return w as u32;
    }
    let e = 63 - u64::from(w.leading_zeros()); // ≥ 7
    let m = w >> (e - 6); // 64..=127: the top 7 bits
    (EXACT + (e - 7) * PER_DOUBLING + (m - PER_DOUBLING)) as u32
}

/// The smallest time in bucket `b`.
pub fn lower(b: u32) -> u64 {
    let b = u64::from(b);
    if b < EXACT {
        return b;
    }
    let e = (b - EXACT) / PER_DOUBLING + 7;
    let m = (b - EXACT) % PER_DOUBLING + PER_DOUBLING;
    m << (e - 6)
}

/// One bucket: its number, how many times fell in it and their sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bin {
    bucket: u32,
    count: u64,
    sum: u64,
}

/// The largest bucket number: that of the largest time.
const MAX_BUCKET: u32 = (EXACT + (62 - 7) * PER_DOUBLING + (PER_DOUBLING - 1)) as u32;

/// Many histograms summed: bins appended as they come, then (past [`ACC_BINS`]) added into one
/// array of every bucket, so a summary that adds thousands of groups' histograms into one row
/// pays a few nanoseconds per bin and holds at most ~100 KB per row.
#[derive(Clone, Debug, Default)]
pub struct Acc {
    bins: Vec<Bin>,
    /// (count, sum) per bucket number, once the bins outgrew [`ACC_BINS`].
    dense: Vec<(u64, u64)>,
}

/// An [`Acc`] holding more bins than this adds them into its dense array.
const ACC_BINS: usize = 1 << 12;

impl Acc {
    pub fn add(&mut self, h: &Hist) {
        for b in &h.0 {
            self.bin(*b);
        }
    }

    /// Adds a histogram as [`Hist::encode`] stored it, without building it.
    pub fn add_encoded(&mut self, blob: &[u8]) {
        for b in bins(blob) {
            self.bin(b);
        }
    }

    /// Adds one time.
    pub fn push(&mut self, wall: i64) {
        self.bin(Bin { bucket: bucket(wall), count: 1, sum: wall.max(0) as u64 });
    }

    fn bin(&mut self, b: Bin) {
        if self.dense.is_empty() {
            self.bins.push(b);
            if self.bins.len() > ACC_BINS {
                self.dense = vec![(0, 0); MAX_BUCKET as usize + 1];
                for b in std::mem::take(&mut self.bins) {
                    self.bin(b);
                }
            }
        } else {
            let d = &mut self.dense[b.bucket as usize];
            d.0 += b.count;
            d.1 += b.sum;
        }
    }

    /// The sum.
    pub fn finish(mut self) -> Hist {
        if self.dense.is_empty() {
            self.bins.sort_unstable_by_key(|b| b.bucket);
            let mut out: Vec<Bin> = Vec::with_capacity(self.bins.len());
            for b in self.bins {
                match out.last_mut() {
                    Some(last) if last.bucket == b.bucket => {
                        last.count += b.count;
                        last.sum += b.sum;
                    }
                    _ => out.push(b),
                }
            }
            return Hist(out);
        }
        for b in std::mem::take(&mut self.bins) {
            self.bin(b);
        }
        Hist(
            self.dense
                .into_iter()
                .enumerate()
                .filter(|(_, (count, _))| *count > 0)
                .map(|(i, (count, sum))| Bin { bucket: i as u32, count, sum })
                .collect(),
        )
    }
}

/// The bins of an encoded histogram; a damaged blob gives those before the damage.
fn bins(blob: &[u8]) -> impl Iterator<Item = Bin> + '_ {
    let mut at = 0;
    let mut prev: Option<u32> = None;
    std::iter::from_fn(move || {
        if at >= blob.len() {
            return None;
        }
        let (step, count, extra) = (get_varint(blob, &mut at)?, get_varint(blob, &mut at)?, get_varint(blob, &mut at)?);
        // Odd: a bucket's number (an encoding's first); even: the gap from the previous bucket.
        let bucket = match (step & 1, prev) {
            (1, _) => step >> 1,
            (_, Some(p)) => u64::from(p).checked_add(1)?.checked_add(step >> 1)?,
            (_, None) => return None,
        };
        if prev.is_some_and(|p| u64::from(p) >= bucket) {
            return None; // chunks out of order
        }
        let bucket = u32::try_from(bucket).ok().filter(|b| *b <= MAX_BUCKET)?;
        let sum = count.checked_mul(lower(bucket))?.checked_add(extra)?;
        prev = Some(bucket);
        Some(Bin { bucket, count, sum })
    })
}

/// A histogram of elapsed times, buckets ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hist(Vec<Bin>);

impl Hist {
    /// The histogram of `walls`.
    pub fn of(walls: &[i64]) -> Hist {
        let mut acc = Acc::default();
        for &w in walls {
            acc.push(w);
        }
        acc.finish()
    }

    /// Adds one time (`sign` 1) or takes one away (-1); false when there was none of its bucket
    /// to take.
    pub fn add(&mut self, wall: i64, sign: i64) -> bool {
        let w = wall.max(0) as u64;
        let b = bucket(wall);
        match self.0.binary_search_by_key(&b, |x| x.bucket) {
            Ok(i) if sign > 0 => {
                self.0[i].count += 1;
                self.0[i].sum += w;
            }
            Ok(i) => {
                let x = &mut self.0[i];
                if x.sum < w {
                    return false;
                }
                x.count -= 1;
                x.sum -= w;
                if x.count == 0 {
                    self.0.remove(i);
                }
            }
            Err(i) if sign > 0 => self.0.insert(i, Bin { bucket: b, count: 1, sum: w }),
            Err(_) => return false,
        }
        true
    }

    /// Adds every time of `other`.
    pub fn merge(&mut self, other: &Hist) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0.extend_from_slice(&other.0);
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + other.0.len());
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.bucket == y.bucket => {
                    out.push(Bin { bucket: x.bucket, count: x.count + y.count, sum: x.sum + y.sum });
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.bucket < y.bucket => out.push(*a.next().expect("peeked")),
                (Some(_), Some(_)) => out.push(*b.next().expect("peeked")),
                (Some(_), None) => out.push(*a.next().expect("peeked")),
                (None, Some(_)) => out.push(*b.next().expect("peeked")),
                (None, None) => break,
            }
        }
        self.0 = out;
    }

    /// How many times it holds.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|b| b.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q` quantile, linearly interpolated between ranks as numpy's default does, each time
    /// read as the mean of its bucket's times; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as u64, pos.ceil() as u64);
        let a = self.at_rank(lo);
        let b = if hi == lo { a } else { self.at_rank(hi) };
        Some(a + (b - a) * (pos - lo as f64))
    }

    /// The time at rank `k` (0-based): its bucket's mean.
    fn at_rank(&self, k: u64) -> f64 {
        let mut seen = 0;
        for b in &self.0 {
            seen += b.count;
            if k < seen {
                return b.sum as f64 / b.count as f64;
            }
        }
        self.0.last().map_or(0.0, |b| b.sum as f64 / b.count as f64)
    }

    /// As a blob: per bucket, its number (the first, shifted left and tagged 1) or the gap from
    /// the previous bucket (shifted left), the count, and the sum less the count times the
    /// bucket's lower bound (small: less than count × width), all varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 4);
        Self::encode_bins(&self.0, &mut out);
        out
    }

    fn encode_bins(bins: &[Bin], out: &mut Vec<u8>) {
        let mut prev = 0u32;
        for (i, b) in bins.iter().enumerate() {
            put_varint(out, if i == 0 { u64::from(b.bucket) << 1 | 1 } else { u64::from(b.bucket - prev - 1) << 1 });
            put_varint(out, b.count);
            put_varint(out, b.sum - b.count * lower(b.bucket));
            prev = b.bucket;
        }
    }

    /// As stored: (chunk, blob) of each chunk that holds a bucket, in order ([`CHUNK_BUCKETS`]).
    pub fn encode_chunks(&self) -> Vec<(i64, Vec<u8>)> {
        self.0
            .chunk_by(|a, b| chunk_of(a.bucket) == chunk_of(b.bucket))
            .map(|bins| {
                let mut out = Vec::with_capacity(bins.len() * 4);
                Self::encode_bins(bins, &mut out);
                (chunk_of(bins[0].bucket), out)
            })
            .collect()
    }

    /// Reads [`Hist::encode`]'s blob; a damaged blob gives what could be read before the damage.
    pub fn decode(blob: &[u8]) -> Hist {
        Hist(bins(blob).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_at_most_a_64th_wide() {
        let mut prev = 0;
        for w in 0..2_000_000i64 {
            let b = bucket(w);
            assert!(b == prev || b == prev + 1, "{w}: {prev} -> {b}");
            assert!(lower(b) <= w as u64 && (w as u64) < lower(b + 1), "{w}");
            if w >= 128 {
                assert!((lower(b + 1) - lower(b)) * 64 <= lower(b), "{w}");
            } else {
                assert_eq!(lower(b), w as u64);
            }
            prev = b;
        }
        // Ten years fit in 1,600 buckets.
        assert!(bucket(10 * 365 * 86_400) < 1_600);
        assert_eq!(lower(bucket(i64::MAX)), 127 << 56, "the largest time has a bucket");
    }

    #[test]
    fn quantiles_are_exact_for_equal_times_and_close_otherwise() {
        let exact = |v: &mut Vec<i64>, q: f64| {
            v.sort_unstable();
            let pos = q * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] as f64 + (v[hi] - v[lo]) as f64 * (pos - lo as f64)
        };
        let mut small: Vec<i64> = (0..100).map(|i| (i * 37) % 127).collect();
        for q in [0.0, 0.5, 0.95, 1.0] {
            assert_eq!(Hist::of(&small).quantile(q), Some(exact(&mut small, q)), "{q}");
        }
        let mut limits = vec![86_400; 50];
        limits.extend([3_600; 10]);
        assert_eq!(Hist::of(&limits).quantile(0.5), Some(86_400.0));
        assert_eq!(Hist::of(&limits).quantile(0.05), Some(3_600.0));
        let mut rng = 12345u64;
        let mut v: Vec<i64> = (0..20_000)
            .map(|_| {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((rng >> 33) % 500_000) as i64
            })
            .collect();
        let h = Hist::of(&v);
        for q in [0.1, 0.5, 0.95] {
            let (a, e) = (h.quantile(q).unwrap(), exact(&mut v, q));
            assert!((a - e).abs() <= e / 64.0, "{q}: {a} against {e}");
        }
        assert_eq!(Hist::default().quantile(0.5), None);
    }

    #[test]
    fn adding_removing_merging_and_the_blob_agree() {
        let walls: Vec<i64> = (0..3_000).map(|i| (i * i * 7919) % 1_000_000).collect();
        let whole = Hist::of(&walls);
        let mut one_by_one = Hist::default();
        for w in walls.iter().rev() {
            assert!(one_by_one.add(*w, 1));
        }
        assert_eq!(one_by_one, whole);
        let (a, b) = walls.split_at(1_234);
        let mut merged = Hist::of(a);
        merged.merge(&Hist::of(b));
        assert_eq!(merged, whole);
        for w in b {
            assert!(merged.add(*w, -1));
        }
        assert_eq!(merged, Hist::of(a));
        assert!(!merged.add(999_999_999, -1), "no such time to remove");
        assert_eq!(Hist::decode(&whole.encode()), whole);
        assert_eq!(whole.count(), 3_000);
        // A few bytes a bucket (a sum's remainder below 2^14 s takes two).
        assert!(whole.encode().len() <= whole.0.len() * 5, "{} bytes, {} buckets", whole.encode().len(), whole.0.len());
        assert_eq!(Hist::decode(&[]), Hist::default());
        assert_eq!(Hist::decode(&[0x80]), Hist::default(), "a cut varint ends the read");
        assert_eq!(Hist::decode(&[0xff, 0xff, 0xff, 0x0f, 1, 0]), Hist::default(), "no bucket past the largest");
        assert_eq!(Hist::decode(&[2, 1, 0]), Hist::default(), "a gap needs a bucket before it");
        // Chunks, put one after another in order, are the whole; out of order, the read stops.
        let chunks = whole.encode_chunks();
        assert!(chunks.len() >= 3 && chunks.windows(2).all(|w| w[0].0 < w[1].0), "{} chunks", chunks.len());
        let joined: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert_eq!(Hist::decode(&joined), whole);
        let swapped: Vec<u8> = chunks[1].1.iter().chain(&chunks[0].1).copied().collect();
        assert_eq!(Hist::decode(&swapped), Hist::decode(&chunks[1].1));
        for (c, b) in &chunks {
            assert!(Hist::decode(b).0.iter().all(|x| i64::from(x.bucket / CHUNK_BUCKETS) == *c));
            assert!(b.len() <= 1_000, "a chunk stays in its page: {} bytes", b.len());
        }
        assert_eq!(chunk(3_600), i64::from(bucket(3_600) / CHUNK_BUCKETS));
        assert_eq!(bucket(i64::MAX), MAX_BUCKET);
        // Summed in an Acc, small (sorted bins) or large (the dense array), encoded or not.
        for n in [10, 100_000] {
            let many: Vec<i64> = (0..n).map(|i| (i * i * 31) % 3_000_000).collect();
            let mut acc = Acc::default();
            for part in many.chunks(777) {
                let h = Hist::of(part);
                acc.add_encoded(&h.encode());
            }
            assert_eq!(acc.finish(), Hist::of(&many), "{n}");
        }
    }
}
