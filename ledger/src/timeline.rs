//! What each job did over time: the plugin's per step and node usage series
//! ([`runledger_record::series::Series`]) as the ledger keeps them, and the idle core-seconds
//! derived from them.
//!
//! # Storage (`step_series`, schema: [`crate::migrations`])
//!
//! One row per (job, node, step) that carried a series, the series one blob ([`encode`],
//! version 2, whose layout is documented there; [`decode`] also reads version 1, which ledgers
//! written before it hold, [`encode_v1`]). Each field is stored as a change from what is
//! expected (the nominal span, the previous point's figure, memory in pages and I/O in 4 KiB
//! units when the series allows it), and a field that did not change costs one bit of the point's
//! mask byte: a steady busy step costs 2–5 bytes a sample, where version 1 spent 9–14.
//!
//! A sampled point decodes to exactly what the plugin sent (it measures spans to 0.01 s and CPU
//! to 0.001 core); a merged point's mean CPU is kept to 0.0005 core, its min and max exactly.
//! Figures (`bench/series-size`, 20,000 made-up jobs): see the README's timeline cost paragraph.
//! The table is a rowid table so that a long step's row stays on its leaf pages (see the migration).
//!
//! Merge: a step's series arrives with its `StepEnd`, one per step and node; a `StepEnd` sent
//! again writes the same blob, and one without a series (sampling off, or the plugin's retry of a
//! full spool) leaves a stored series alone. So the merge is idempotent in any order.
//!
//! # Idle
//!
//! `jobs.idle_core_s` holds, at the default thresholds ([`IDLE_BELOW`], [`IDLE_FOR_S`]), the
//! allocated core-seconds the job left idle: per node, [`idle_spans`] over the node's steps
//! (allocation: the largest step `ncpus` on that node), summed over the nodes; NULL when there
//! was no idle span (or no series), so the partial index `jobs_idle` holds only idle jobs and
//! `query idle` at the defaults and `summary`'s idle column read only those.

use crate::names::natural_cmp;
use crate::varint::{get_varint, get_zigzag, put_varint, put_zigzag};
use runledger_record::series::{idle_spans, Gauges, IdleSpan, Point, Series};
use rusqlite::{params, Connection};
use std::collections::BTreeMap;

/// Blob format version written by [`encode`]; [`decode`] reads it and version 1
/// ([`encode_v1`]), which ledgers written before it hold.
pub const VERSION: u8 = 2;

/// The default "idle": use below this fraction of the allocation …
pub const IDLE_BELOW: f64 = 0.1;
/// … for at least this long.
pub const IDLE_FOR_S: f64 = 3600.0;

fn millicores(c: f64) -> u64 {
    (c.max(0.0) * 1000.0).round() as u64
}

fn centiseconds(secs: f64) -> i64 {
    (secs.max(0.0) * 100.0).round() as i64
}

/// The largest shift, at most `cap`, by which every value is a whole multiple of `1 << shift`
/// (memory in 4 KiB pages, I/O in pages): the deltas then take fewer bytes, and decode exactly.
fn common_shift(values: impl Iterator<Item = u64>, cap: u32) -> u32 {
    let all = values.fold(0, |a, v| a | v);
    if all == 0 {
        0
    } else {
        all.trailing_zeros().min(cap)
    }
}

/// `v << shift`, or `None` when bits would be lost (damage).
fn unshift(v: u64, shift: u32) -> Option<u64> {
    let r = v.checked_shl(shift)?;
    (r >> shift == v).then_some(r)
}

/// The highest memory figure of the points (the sampler's peak, unless samples went unmerged).
fn points_peak(points: &[Point]) -> u64 {
    points.iter().map(|p| p.rss_kib.max(p.max.map_or(0, |m| m.rss_kib))).max().unwrap_or(0)
}

// Per-point change mask (version 2): a field whose bit is clear is what it is expected to be.
const M_T: u8 = 1; // t is the previous t + the nominal span
const M_SPAN: u8 = 2; // the span is the nominal one
const M_CPU: u8 = 4; // CPU as the previous point's
const M_RSS: u8 = 8; // memory as the previous point's
const M_READ: u8 = 16; // nothing read
const M_WRITE: u8 = 32; // nothing written
const M_TASKS: u8 = 64; // processes and threads as the previous point's
const M_EXTREMES: u8 = 128; // no min/max (a single sample)

fn to_u32(v: i64) -> Option<u32> {
    u32::try_from(v).ok()
}

/// The blob of one series, version 2. The fields are kept in their native units at the
/// sampler's precision, each as a change from what is expected, and a field that did not change
/// costs one bit of the point's mask:
///
/// ```text
/// byte    version (2)
/// varint  interval_s, per_point, missed, number of points
/// byte    memory shift (low nibble), I/O shift (high nibble): memory is stored in units of
///         1 << shift KiB and I/O in units of 1 << shift bytes, the largest (≤ 15) that divides
///         every figure of the series (4 KiB pages: 2 and 12)
/// zigzag  rss_peak_kib - the highest memory of the points (min/max included), in memory units
/// zigzag  t of the first point                                          when there are points
/// per point:
///   byte    mask (bit set = the field follows)
///   bit 0   zigzag  t - previous t - nominal span (interval_s × per_point); never for the first
///   bit 1   zigzag  span in centiseconds - the nominal span's
///   bit 2   zigzag  millicores - the previous point's (the first: - 0)
///   bit 3   zigzag  memory - the previous point's, in memory units
///   bit 4   varint  bytes read, in I/O units (clear: 0)
///   bit 5   varint  bytes written, in I/O units (clear: 0)
///   bit 6   zigzag  processes - previous, zigzag threads - previous
///   bit 7   byte    extremes mask, then for each set bit k of [min CPU, min memory, min
///                   processes, min threads, max CPU, max memory, max processes, max threads]:
///                   zigzag the extreme - the point's own figure (CPU in millicores, memory in
///                   memory units); clear bits are equal to the point's own
/// ```
pub fn encode(s: &Series) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * s.points.len());
    out.push(VERSION);
    put_varint(&mut out, s.interval_s.into());
    put_varint(&mut out, s.per_point.into());
    put_varint(&mut out, s.missed.into());
    put_varint(&mut out, s.points.len() as u64);
    let rss_shift = common_shift(
        s.points
            .iter()
            .flat_map(|p| [Some(p.rss_kib), p.min.map(|g| g.rss_kib), p.max.map(|g| g.rss_kib)].into_iter().flatten())
            .chain(std::iter::once(s.rss_peak_kib)),
        15,
    );
    let io_shift = common_shift(s.points.iter().flat_map(|p| [p.read_bytes, p.write_bytes]), 15);
    out.push((rss_shift | (io_shift << 4)) as u8);
    let mem = |kib: u64| kib >> rss_shift;
    put_zigzag(&mut out, mem(s.rss_peak_kib).wrapping_sub(mem(points_peak(&s.points))) as i64);
    let nominal_s = i64::from(s.interval_s).wrapping_mul(i64::from(s.per_point.max(1)));
    let mut prev: Option<&Point> = None;
    let mut field = Vec::with_capacity(32);
    for p in &s.points {
        field.clear();
        let mut mask = 0u8;
        match prev {
            None => put_zigzag(&mut out, p.t),
            Some(q) => {
                let dt = p.t.wrapping_sub(q.t).wrapping_sub(nominal_s);
                if dt != 0 {
                    mask |= M_T;
                    put_zigzag(&mut field, dt);
                }
            }
        }
        let span = centiseconds(p.secs).wrapping_sub(nominal_s.wrapping_mul(100));
        if span != 0 {
            mask |= M_SPAN;
            put_zigzag(&mut field, span);
        }
        let cpu = millicores(p.cpu_cores).wrapping_sub(prev.map_or(0, |q| millicores(q.cpu_cores))) as i64;
        if cpu != 0 {
            mask |= M_CPU;
            put_zigzag(&mut field, cpu);
        }
        let rss = mem(p.rss_kib).wrapping_sub(prev.map_or(0, |q| mem(q.rss_kib))) as i64;
        if rss != 0 {
            mask |= M_RSS;
            put_zigzag(&mut field, rss);
        }
        if p.read_bytes != 0 {
            mask |= M_READ;
            put_varint(&mut field, p.read_bytes >> io_shift);
        }
        if p.write_bytes != 0 {
            mask |= M_WRITE;
            put_varint(&mut field, p.write_bytes >> io_shift);
        }
        let (procs, threads) = prev.map_or((0, 0), |q| (q.processes, q.threads));
        if (p.processes, p.threads) != (procs, threads) {
            mask |= M_TASKS;
            put_zigzag(&mut field, i64::from(p.processes) - i64::from(procs));
            put_zigzag(&mut field, i64::from(p.threads) - i64::from(threads));
        }
        if p.min.is_some() || p.max.is_some() {
            mask |= M_EXTREMES;
            let own = p.gauges();
            let diffs = [p.min.unwrap_or(own), p.max.unwrap_or(own)].map(|g| {
                [
                    millicores(g.cpu_cores).wrapping_sub(millicores(own.cpu_cores)) as i64,
                    mem(g.rss_kib).wrapping_sub(mem(own.rss_kib)) as i64,
                    i64::from(g.processes) - i64::from(own.processes),
                    i64::from(g.threads) - i64::from(own.threads),
                ]
            });
            let diffs = diffs.concat();
            let sub = diffs.iter().enumerate().fold(0u8, |m, (k, &d)| if d != 0 { m | 1 << k } else { m });
            field.push(sub);
            for &d in diffs.iter().filter(|&&d| d != 0) {
                put_zigzag(&mut field, d);
            }
        }
        out.push(mask);
        out.extend_from_slice(&field);
        prev = Some(p);
    }
    out
}

/// Decodes a blob of [`encode`] (version 2) or [`encode_v1`]; `None` for another version or a
/// damaged blob (a damaged blob is never shown in part: a timeline with holes would look like
/// idle time).
pub fn decode(b: &[u8]) -> Option<Series> {
    match *b.first()? {
        1 => decode_v1(b),
        2 => decode_v2(b),
        _ => None,
    }
}

fn decode_v2(b: &[u8]) -> Option<Series> {
    let mut at = 1;
    let small = |v: u64| u32::try_from(v).ok();
    let interval_s = small(get_varint(b, &mut at)?)?;
    let per_point = small(get_varint(b, &mut at)?)?;
    let missed = small(get_varint(b, &mut at)?)?;
    let n = get_varint(b, &mut at)?;
    let shifts = *b.get(at)?;
    at += 1;
    let (rss_shift, io_shift) = (u32::from(shifts & 15), u32::from(shifts >> 4));
    let peak_diff = get_zigzag(b, &mut at)?;
    // Each point takes at least a byte: a count beyond what the blob can hold is damage.
    if n > b.len().saturating_sub(at) as u64 {
        return None;
    }
    let kib = |units: u64| unshift(units, rss_shift);
    let nominal_s = i64::from(interval_s).wrapping_mul(i64::from(per_point.max(1)));
    let mut points: Vec<Point> = Vec::with_capacity(n as usize);
    // The previous point's figures in stored units: (t, millicores, memory units, procs, threads).
    let (mut t, mut mc, mut mu, mut procs, mut threads) = (0i64, 0u64, 0u64, 0u32, 0u32);
    for i in 0..n {
        t = if i == 0 { get_zigzag(b, &mut at)? } else { t.wrapping_add(nominal_s) };
        let mask = *b.get(at)?;
        at += 1;
        if mask & M_T != 0 {
            t = t.wrapping_add(get_zigzag(b, &mut at)?);
        }
        let mut span = nominal_s.wrapping_mul(100);
        if mask & M_SPAN != 0 {
            span = span.wrapping_add(get_zigzag(b, &mut at)?);
        }
        if mask & M_CPU != 0 {
            mc = mc.wrapping_add(get_zigzag(b, &mut at)? as u64);
        }
        if mask & M_RSS != 0 {
            mu = mu.wrapping_add(get_zigzag(b, &mut at)? as u64);
        }
        let read_bytes = if mask & M_READ != 0 { unshift(get_varint(b, &mut at)?, io_shift)? } else { 0 };
        let write_bytes = if mask & M_WRITE != 0 { unshift(get_varint(b, &mut at)?, io_shift)? } else { 0 };
        if mask & M_TASKS != 0 {
            procs = to_u32(i64::from(procs).checked_add(get_zigzag(b, &mut at)?)?)?;
            threads = to_u32(i64::from(threads).checked_add(get_zigzag(b, &mut at)?)?)?;
        }
        let mut p = Point {
            t,
            secs: span.max(0) as f64 / 100.0,
            cpu_cores: mc as f64 / 1000.0,
            rss_kib: kib(mu)?,
            read_bytes,
            write_bytes,
            processes: procs,
            threads,
            min: None,
            max: None,
        };
        if mask & M_EXTREMES != 0 {
            let sub = *b.get(at)?;
            at += 1;
            let mut d = [0i64; 8];
            for (k, slot) in d.iter_mut().enumerate() {
                if sub & (1 << k) != 0 {
                    *slot = get_zigzag(b, &mut at)?;
                }
            }
            let gauges = |d: &[i64]| -> Option<Gauges> {
                Some(Gauges {
                    cpu_cores: mc.wrapping_add(d[0] as u64) as f64 / 1000.0,
                    rss_kib: kib(mu.wrapping_add(d[1] as u64))?,
                    processes: to_u32(i64::from(procs).checked_add(d[2])?)?,
                    threads: to_u32(i64::from(threads).checked_add(d[3])?)?,
                })
            };
            p.min = Some(gauges(&d[..4])?);
            p.max = Some(gauges(&d[4..])?);
        }
        points.push(p);
    }
    let rss_peak_kib = kib((points_peak(&points) >> rss_shift).wrapping_add(peak_diff as u64))?;
    (at == b.len()).then_some(Series { interval_s, per_point, points, rss_peak_kib, missed })
}

fn put_gauges_v1(out: &mut Vec<u8>, g: &Gauges, p: &Point) {
    put_varint(out, millicores(g.cpu_cores));
    put_zigzag(out, g.rss_kib as i64 - p.rss_kib as i64);
    put_zigzag(out, i64::from(g.processes) - i64::from(p.processes));
    put_zigzag(out, i64::from(g.threads) - i64::from(p.threads));
}

fn get_gauges_v1(b: &[u8], at: &mut usize, p: &Point) -> Option<Gauges> {
    let cpu = get_varint(b, at)?;
    let rss = get_zigzag(b, at)?;
    let procs = get_zigzag(b, at)?;
    let threads = get_zigzag(b, at)?;
    Some(Gauges {
        cpu_cores: cpu as f64 / 1000.0,
        rss_kib: (p.rss_kib as i64).wrapping_add(rss) as u64,
        processes: (i64::from(p.processes) + procs).clamp(0, u32::MAX.into()) as u32,
        threads: (i64::from(p.threads) + threads).clamp(0, u32::MAX.into()) as u32,
    })
}

/// The blob of version 1, which ledgers written before version 2 hold. No longer written by the
/// merge: kept so that the tests prove such blobs still decode, and to measure what version 2
/// saves.
///
/// ```text
/// byte    version (1)
/// varint  interval_s, per_point, rss_peak_kib, missed, number of points
/// per point:
///   varint  flags: bit 0 = min/max follow
///   zigzag  t - previous t (the first: t itself)
///   zigzag  span in centiseconds - interval_s × per_point × 100
///   varint  CPU in millicores
///   zigzag  rss_kib - previous point's rss_kib
///   varint  read_bytes, write_bytes
///   zigzag  processes - previous, threads - previous
///   [min, then max, each: varint millicores, zigzag rss_kib - the point's, zigzag processes -
///    the point's, zigzag threads - the point's]    when bit 0
/// ```
pub fn encode_v1(s: &Series) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 12 * s.points.len());
    out.push(1);
    put_varint(&mut out, s.interval_s.into());
    put_varint(&mut out, s.per_point.into());
    put_varint(&mut out, s.rss_peak_kib);
    put_varint(&mut out, s.missed.into());
    put_varint(&mut out, s.points.len() as u64);
    let nominal_cs = i64::from(s.interval_s).wrapping_mul(i64::from(s.per_point.max(1))).wrapping_mul(100);
    let mut prev = Point::default();
    for p in &s.points {
        let extremes = p.min.is_some() || p.max.is_some();
        put_varint(&mut out, u64::from(extremes));
        put_zigzag(&mut out, p.t.wrapping_sub(prev.t));
        put_zigzag(&mut out, centiseconds(p.secs).wrapping_sub(nominal_cs));
        put_varint(&mut out, millicores(p.cpu_cores));
        put_zigzag(&mut out, (p.rss_kib as i64).wrapping_sub(prev.rss_kib as i64));
        put_varint(&mut out, p.read_bytes);
        put_varint(&mut out, p.write_bytes);
        put_zigzag(&mut out, i64::from(p.processes) - i64::from(prev.processes));
        put_zigzag(&mut out, i64::from(p.threads) - i64::from(prev.threads));
        if extremes {
            put_gauges_v1(&mut out, &p.min.unwrap_or(p.gauges()), p);
            put_gauges_v1(&mut out, &p.max.unwrap_or(p.gauges()), p);
        }
        prev = p.clone();
    }
    out
}

fn decode_v1(b: &[u8]) -> Option<Series> {
    let mut at = 1;
    let small = |v: u64| u32::try_from(v).ok();
    let interval_s = small(get_varint(b, &mut at)?)?;
    let per_point = small(get_varint(b, &mut at)?)?;
    let rss_peak_kib = get_varint(b, &mut at)?;
    let missed = small(get_varint(b, &mut at)?)?;
    let n = get_varint(b, &mut at)?;
    // Each point takes at least 9 bytes: a count beyond what the blob can hold is damage.
    if n > (b.len() as u64) / 9 + 1 {
        return None;
    }
    let nominal_cs = i64::from(interval_s).wrapping_mul(i64::from(per_point.max(1))).wrapping_mul(100);
    let mut points = Vec::with_capacity(n as usize);
    let mut prev = Point::default();
    for _ in 0..n {
        let flags = get_varint(b, &mut at)?;
        let t = prev.t.wrapping_add(get_zigzag(b, &mut at)?);
        let secs = (get_zigzag(b, &mut at)?.wrapping_add(nominal_cs)).max(0) as f64 / 100.0;
        let cpu_cores = get_varint(b, &mut at)? as f64 / 1000.0;
        let rss_kib = (prev.rss_kib as i64).wrapping_add(get_zigzag(b, &mut at)?) as u64;
        let read_bytes = get_varint(b, &mut at)?;
        let write_bytes = get_varint(b, &mut at)?;
        let processes = (i64::from(prev.processes) + get_zigzag(b, &mut at)?).clamp(0, u32::MAX.into()) as u32;
        let threads = (i64::from(prev.threads) + get_zigzag(b, &mut at)?).clamp(0, u32::MAX.into()) as u32;
        let mut p =
            Point { t, secs, cpu_cores, rss_kib, read_bytes, write_bytes, processes, threads, min: None, max: None };
        if flags & 1 == 1 {
            p.min = Some(get_gauges_v1(b, &mut at, &p)?);
            p.max = Some(get_gauges_v1(b, &mut at, &p)?);
        }
        prev = p.clone();
        points.push(p);
    }
    (at == b.len()).then_some(Series { interval_s, per_point, points, rss_peak_kib, missed })
}

/// Stores a step's series on one node (the merge, with the step's `StepEnd`).
pub fn store(conn: &Connection, job: i64, node: i64, step_id: u32, s: &Series) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO step_series (job, node, step_id, series) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (job, node, step_id) DO UPDATE SET series = excluded.series",
    )?
    .execute(params![job, node, step_id, encode(s)])?;
    Ok(())
}

/// One step's series on one node, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSeries {
    pub node: String,
    pub step_id: u32,
    /// The largest CPU count of the job's steps on this node (its allocation there), if known.
    pub alloc_cpus: Option<i64>,
    pub series: Series,
}

/// A job's series, by node (natural order) then step id. Blobs that do not decode are left out
/// and counted in the second value.
pub fn read(conn: &Connection, job: i64) -> rusqlite::Result<(Vec<StepSeries>, usize)> {
    let mut st = conn.prepare_cached(
        "SELECT h.name, ss.step_id, ss.series,
                (SELECT MAX(s.ncpus) FROM steps s WHERE s.job = ss.job AND s.node = ss.node)
         FROM step_series ss JOIN hosts h ON h.id = ss.node WHERE ss.job = ?1",
    )?;
    let mut rows = st.query([job])?;
    let mut out = Vec::new();
    let mut bad = 0;
    while let Some(r) = rows.next()? {
        let blob = r.get_ref(2)?.as_blob().ok();
        match blob.and_then(decode) {
            Some(series) => out.push(StepSeries { node: r.get(0)?, step_id: r.get(1)?, alloc_cpus: r.get(3)?, series }),
            None => bad += 1,
        }
    }
    out.sort_by(|a, b| natural_cmp(&a.node, &b.node).then(a.step_id.cmp(&b.step_id)));
    Ok((out, bad))
}

/// A node's idle spans in a job.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeIdle {
    pub node: String,
    pub alloc_cpus: i64,
    pub spans: Vec<IdleSpan>,
}

impl NodeIdle {
    pub fn idle_core_seconds(&self) -> f64 {
        self.spans.iter().map(|s| s.idle_core_seconds).sum()
    }
}

/// The idle spans of each node of a job's series: use below `below` × the node's allocation for
/// at least `min_secs` ([`idle_spans`]). Nodes whose allocation is unknown are left out.
pub fn idle(series: &[StepSeries], below: f64, min_secs: f64) -> Vec<NodeIdle> {
    let mut by_node: BTreeMap<&str, (i64, Vec<&Series>)> = BTreeMap::new();
    for s in series {
        let Some(alloc) = s.alloc_cpus.filter(|&c| c > 0) else { continue };
        let e = by_node.entry(&s.node).or_insert((alloc, Vec::new()));
        e.0 = e.0.max(alloc);
        e.1.push(&s.series);
    }
    let mut out: Vec<NodeIdle> = by_node
        .into_iter()
        .map(|(node, (alloc, list))| NodeIdle {
            node: node.to_string(),
            alloc_cpus: alloc,
            spans: idle_spans(&list, alloc as f64, below, min_secs),
        })
        .filter(|n| !n.spans.is_empty())
        .collect();
    out.sort_by(|a, b| natural_cmp(&a.node, &b.node));
    out
}

/// What `jobs.idle_core_s` should say (default thresholds) by the job's series; the merge's
/// recompute writes it ([`crate::rollup::set_idle`]).
pub fn idle_of(conn: &Connection, job: i64) -> rusqlite::Result<Option<f64>> {
    let has: bool = conn.prepare_cached("SELECT 1 FROM step_series WHERE job = ?1")?.exists([job])?;
    let idle = if has {
        let (series, _) = read(conn, job)?;
        let total: f64 = idle(&series, IDLE_BELOW, IDLE_FOR_S).iter().map(NodeIdle::idle_core_seconds).sum();
        // Kept to the millisecond: the same figure whatever the order nodes arrived in.
        (total > 0.0).then(|| (total * 1000.0).round() / 1000.0)
    } else {
        None
    };
    Ok(idle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::series::SeriesBuilder;

    fn sampled(n: i64, interval: u32) -> Series {
        let mut b = SeriesBuilder::new(interval);
        for i in 1..=n {
            let cpu = if i % 7 == 0 { 0.013 } else { 63.871 };
            b.push(Point {
                t: 1_780_000_000 + i * i64::from(interval),
                secs: f64::from(interval) + [0.0, 0.01, -0.02, 0.37][(i % 4) as usize],
                cpu_cores: cpu,
                rss_kib: (1 << 20) + (i as u64 * 37_123) % 500_000,
                read_bytes: if i % 3 == 0 { 4096 * i as u64 } else { 0 },
                write_bytes: if i % 5 == 0 { 1 << 30 } else { 0 },
                processes: 65 + (i % 2) as u32,
                threads: 130 + (i % 3) as u32,
                ..Point::default()
            });
        }
        b.finish()
    }

    #[test]
    fn sampled_points_decode_exactly() {
        let s = sampled(20, 30);
        assert_eq!(s.per_point, 1);
        let blob = encode(&s);
        assert_eq!(decode(&blob).as_ref(), Some(&s));
        println!("{} bytes for 20 sampled points", blob.len());
        assert!(blob.len() < 20 * 16, "{} bytes for 20 points", blob.len());
    }

    #[test]
    fn merged_points_keep_extremes_and_totals() {
        let s = sampled(1000, 30);
        assert!(s.per_point > 1 && s.points.len() <= runledger_record::series::MAX_POINTS);
        let blob = encode(&s);
        let d = decode(&blob).expect("decodes");
        assert_eq!(d.points.len(), s.points.len());
        assert_eq!((d.interval_s, d.per_point, d.rss_peak_kib), (s.interval_s, s.per_point, s.rss_peak_kib));
        for (a, b) in s.points.iter().zip(&d.points) {
            // Merged spans are sums of centiseconds: the same to the float's last bits.
            assert!((a.secs - b.secs).abs() < 1e-9, "{} {}", a.secs, b.secs);
            assert_eq!((a.t, a.rss_kib, a.read_bytes, a.write_bytes), (b.t, b.rss_kib, b.read_bytes, b.write_bytes));
            assert_eq!((a.processes, a.threads), (b.processes, b.threads));
            assert!((a.cpu_cores - b.cpu_cores).abs() <= 0.0005, "{} {}", a.cpu_cores, b.cpu_cores);
            let (am, bm) = (a.max.unwrap(), b.max.unwrap());
            assert_eq!(
                (am.cpu_cores, am.rss_kib, am.processes, am.threads),
                (bm.cpu_cores, bm.rss_kib, bm.processes, bm.threads)
            );
            assert_eq!(a.min.unwrap(), b.min.unwrap());
        }
        // Noisy on purpose (RSS jumping by up to 500 MB, a GiB written every fifth sample, CPU
        // swinging between 0 and 64 cores): the worst case of a point, min and max included.
        println!("{} bytes for {} merged points", blob.len(), s.points.len());
        assert!(blob.len() < 40 * s.points.len(), "{} bytes for {} merged points", blob.len(), s.points.len());
    }

    #[test]
    fn a_made_up_short_step_costs_what_the_sampler_would() {
        use runledger_synth::timeline::{series, Shape};
        let shape = Shape {
            interval_s: 30,
            busy_cores: 15.7,
            idle_from: None,
            rss_kib: 3_200_000,
            rss_growth_kib: 0,
            processes: 17,
        };
        // Ten minutes: 20 single samples at 9–14 bytes each, about 250 bytes.
        let s = series(42, 1_780_000_000, 1_780_000_600, &shape).unwrap();
        let blob = encode(&s);
        assert_eq!(s.points.len(), 20);
        assert!(blob.len() <= 14 * 20 + 16, "{} bytes", blob.len());
        assert_eq!(decode(&blob), Some(s));
    }

    #[test]
    fn long_blobs_stay_on_the_tables_leaf_pages() {
        // 120 merged points of a 48-hour step: the blob is kept on the leaf page, not spilled
        // to overflow pages of its own (a WITHOUT ROWID table spills anything over ~1 KB).
        let conn = crate::db::open_memory();
        let s = sampled(120 * 16, 30);
        let blob = encode(&s);
        assert!(blob.len() > 1100 && blob.len() < 4000, "{}", blob.len());
        conn.execute("INSERT INTO hosts (name) VALUES ('n1')", []).unwrap();
        conn.execute("INSERT INTO jobs (cluster, job_id) VALUES ('c', 1)", []).unwrap();
        store(&conn, 1, 1, 0, &s).unwrap();
        store(&conn, 1, 1, 0, &s).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM step_series", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "stored again, not twice");
        let overflow: i64 = conn
            .query_row("SELECT count(*) FROM dbstat WHERE name = 'step_series' AND pagetype = 'overflow'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(overflow, 0);
    }

    /// Every blob of a ledger written with version 1 (`RUNLEDGER_V1_DB=PATH`, e.g. made by the
    /// gen of `bench/series-size`'s old revision): the version 1 encoder here gives back the
    /// stored bytes, and version 2 holds the same series exactly. Run by hand:
    /// `RUNLEDGER_V1_DB=/var/tmp/v1.db cargo test -p runledger-ledger --lib stored_version_1 -- --ignored --nocapture`
    #[test]
    #[ignore = "needs a ledger written by a version 1 build (RUNLEDGER_V1_DB)"]
    fn stored_version_1_blobs_convert_exactly() {
        let path = std::env::var("RUNLEDGER_V1_DB").expect("RUNLEDGER_V1_DB");
        let conn = Connection::open(path).unwrap();
        let mut st = conn.prepare("SELECT series FROM step_series").unwrap();
        let (mut n, mut v1, mut v2) = (0, 0, 0);
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let b: Vec<u8> = r.get(0).unwrap();
            assert_eq!(b[0], 1);
            let s = decode(&b).expect("decodes");
            assert_eq!(encode_v1(&s), b);
            let new = encode(&s);
            assert_eq!(decode(&new).as_ref(), Some(&s));
            (n, v1, v2) = (n + 1, v1 + b.len(), v2 + new.len());
        }
        assert!(n > 0);
        println!("{n} blobs: {v1} bytes in version 1, {v2} in version 2");
    }

    #[test]
    fn damage_and_other_versions_are_refused() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[3, 0, 0, 0, 0, 0, 0]).is_none(), "newer version");
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0]).is_none(), "no such version");
        for blob in [encode(&sampled(10, 5)), encode(&sampled(1000, 30)), encode_v1(&sampled(10, 5))] {
            for cut in 1..blob.len() {
                assert!(decode(&blob[..cut]).is_none(), "cut at {cut} of version {}", blob[0]);
            }
            let mut longer = blob.clone();
            longer.push(0);
            assert!(decode(&longer).is_none(), "trailing bytes, version {}", blob[0]);
        }
        // A huge point count does not allocate.
        assert!(decode(&[1, 5, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_none());
        assert!(decode(&[2, 5, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]).is_none());
        // A shift that would lose bits (memory in units of 2^15 KiB, a unit count of 2^60).
        let mut bad = vec![2, 30, 1, 0, 1, 15, 0, 0, 8];
        put_zigzag(&mut bad, 1 << 60);
        assert!(decode(&bad).is_none());
        // Processes below zero.
        assert!(decode(&[2, 30, 1, 0, 1, 0, 0, 0, 64, 1, 0]).is_none());
    }

    #[test]
    fn version_1_blobs_still_decode() {
        // Written by the merge before version 2 (encode_v1 is that encoder, unchanged): two
        // sampled points and one merged point.
        let pt = |t: i64, cpu: f64, rss: u64| Point {
            t,
            secs: 30.0,
            cpu_cores: cpu,
            rss_kib: rss,
            read_bytes: 8192,
            write_bytes: 0,
            processes: 3,
            threads: 6,
            min: None,
            max: None,
        };
        let merged = Point {
            secs: 60.0,
            min: Some(Gauges { cpu_cores: 1.5, rss_kib: 1 << 20, processes: 3, threads: 6 }),
            max: Some(Gauges { cpu_cores: 2.5, rss_kib: 1 << 21, processes: 4, threads: 7 }),
            ..pt(1_780_000_120, 2.0, 1 << 21)
        };
        let s = Series {
            interval_s: 30,
            per_point: 1,
            points: vec![pt(1_780_000_030, 2.0, 1 << 20), pt(1_780_000_060, 0.013, 1 << 20), merged],
            rss_peak_kib: 1 << 21,
            missed: 1,
        };
        let stored: &[u8] = &[
            1, 30, 1, 128, 128, 128, 1, 1, 3, 0, 188, 148, 197, 161, 13, 0, 208, 15, 128, 128, 128, 1, 128, 64, 0, 6,
            12, 0, 60, 0, 13, 0, 128, 64, 0, 0, 0, 1, 120, 240, 46, 208, 15, 128, 128, 128, 1, 128, 64, 0, 0, 0, 220,
            11, 255, 255, 127, 0, 0, 196, 19, 0, 2, 2,
        ];
        assert_eq!(decode(stored).as_ref(), Some(&s), "a version 1 blob decodes");
        assert_eq!(encode_v1(&s), stored, "the version 1 encoder is unchanged");
        assert_eq!(decode(&encode(&s)), Some(s.clone()), "and version 2 holds the same exactly");
        for s in [sampled(20, 30), sampled(1000, 30), sampled(1, 5)] {
            assert_eq!(decode(&encode_v1(&s)), decode(&encode(&s)));
        }
    }

    /// Series with figures at the edges of their types, to check that version 2 decodes exactly
    /// whatever the sampler sends (odd bytes, memory not in pages, counts going down).
    #[test]
    fn version_2_is_exact_at_the_edges() {
        let p = |t: i64, secs: f64, cpu: f64, rss: u64, io: (u64, u64), tasks: (u32, u32)| Point {
            t,
            secs,
            cpu_cores: cpu,
            rss_kib: rss,
            read_bytes: io.0,
            write_bytes: io.1,
            processes: tasks.0,
            threads: tasks.1,
            min: None,
            max: None,
        };
        let g = |cpu: f64, rss: u64, procs: u32, threads: u32| Gauges {
            cpu_cores: cpu,
            rss_kib: rss,
            processes: procs,
            threads,
        };
        let cases = vec![
            Series::default(),
            Series { interval_s: 30, per_point: 1, points: vec![], rss_peak_kib: 4096, missed: 3 },
            Series {
                interval_s: 30,
                per_point: 1,
                points: vec![
                    p(-5, 0.0, 0.0, 0, (0, 0), (0, 0)),
                    p(i64::MAX, 1e6, 1024.5, u64::MAX, (u64::MAX, 1), (u32::MAX, 0)),
                    p(i64::MIN, 30.01, 0.001, 3, (4096, 1 << 40), (0, u32::MAX)),
                    p(17, 29.99, 63.999, 1 << 50, (511, 0), (7, 7)),
                ],
                rss_peak_kib: 12,
                missed: u32::MAX,
            },
            Series {
                interval_s: 1,
                per_point: 1 << 20,
                points: vec![Point {
                    min: Some(g(0.0, 0, 0, 0)),
                    max: Some(g(4096.0, u64::MAX, u32::MAX, u32::MAX)),
                    ..p(1_780_000_000, 1048576.0, 2.5, 1 << 20, (1 << 62, 1 << 12), (5, 9))
                }],
                rss_peak_kib: u64::MAX,
                missed: 0,
            },
            Series {
                interval_s: 30,
                per_point: 2,
                points: vec![
                    Point { min: None, max: Some(g(9.0, 8192, 3, 4)), ..p(60, 60.0, 8.5, 4096, (0, 0), (2, 3)) },
                    Point { min: Some(g(1.0, 4096, 1, 1)), max: None, ..p(120, 60.0, 4.25, 4100, (0, 0), (2, 3)) },
                ],
                rss_peak_kib: 8192,
                missed: 0,
            },
        ];
        for s in cases {
            let blob = encode(&s);
            assert_eq!(blob[0], 2);
            let mut d = decode(&blob).unwrap_or_else(|| panic!("{s:?} does not decode"));
            // A point with only one of min/max decodes with both, the missing one being the point's own.
            for (a, b) in s.points.iter().zip(d.points.iter_mut()) {
                if a.min.is_none() && a.max.is_some() {
                    assert_eq!(b.min, Some(a.gauges()));
                    b.min = None;
                }
                if a.max.is_none() && a.min.is_some() {
                    assert_eq!(b.max, Some(a.gauges()));
                    b.max = None;
                }
            }
            assert_eq!(d, s);
        }
    }

    #[test]
    fn version_2_spends_a_bit_on_what_did_not_change() {
        use runledger_synth::timeline::{series, Shape};
        let shape =
            Shape { interval_s: 30, busy_cores: 0.0, idle_from: None, rss_kib: 8_000, rss_growth_kib: 0, processes: 2 };
        let s = series(3, 1_780_000_000, 1_780_000_600, &shape).unwrap();
        let quiet = Series {
            points: s
                .points
                .iter()
                .map(|p| Point { read_bytes: 0, write_bytes: 0, rss_kib: 8_000, ..p.clone() })
                .collect(),
            rss_peak_kib: 8_000,
            ..s
        };
        // An idle batch step: the header and the first point (version, 4 counts, shifts, peak,
        // t, mask, memory 2 bytes, processes and threads), then one mask byte per point.
        let blob = encode(&quiet);
        assert_eq!(decode(&blob).as_ref(), Some(&quiet));
        let first = 1 + 4 + 1 + 1 + 5 + 1 + 2 + 2;
        assert_eq!(blob.len(), first + quiet.points.len() - 1, "{} points", quiet.points.len());
    }

    #[test]
    fn idle_per_node_with_its_allocation() {
        let mut b = SeriesBuilder::new(5);
        for i in 1..=20 {
            b.push(Point { t: 1000 + 5 * i, secs: 5.0, cpu_cores: if i <= 8 { 2.0 } else { 0.0 }, ..Point::default() });
        }
        let s = b.finish();
        let steps = vec![
            StepSeries { node: "n2".into(), step_id: 0, alloc_cpus: Some(2), series: s.clone() },
            StepSeries { node: "n1".into(), step_id: 0, alloc_cpus: Some(4), series: s.clone() },
            StepSeries { node: "n3".into(), step_id: 0, alloc_cpus: None, series: s },
        ];
        let idle = idle(&steps, 0.1, 30.0);
        assert_eq!(idle.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        assert_eq!(idle[0].idle_core_seconds(), 4.0 * 60.0);
        assert_eq!(idle[1].idle_core_seconds(), 2.0 * 60.0);
    }
}
