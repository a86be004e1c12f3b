//! What each job did over time: the plugin's per step and node usage series
//! ([`runledger_record::series::Series`]) as the ledger keeps them, and the idle core-seconds
//! derived from them.
//!
//! # Storage (`step_series`, schema: [`crate::migrations`])
//!
//! One row per (job, node, step) that carried a series, the series one blob ([`encode`]):
//!
//! ```text
//! byte    version (1)
//! varint  interval_s, per_point, rss_peak_kib, missed, number of points
//! per point:
//!   varint  flags: bit 0 = min/max follow
//!   zigzag  t - previous t (the first: t itself)
//!   zigzag  span in centiseconds - interval_s × per_point × 100 (the sampler's span is to 0.01 s)
//!   varint  CPU in millicores (the sampler's precision: cores to 0.001)
//!   zigzag  rss_kib - previous point's rss_kib
//!   varint  read_bytes, write_bytes
//!   zigzag  processes - previous, threads - previous
//!   [min, then max, each: varint millicores, zigzag rss_kib - the point's, zigzag processes -
//!    the point's, zigzag threads - the point's]    when bit 0
//! ```
//!
//! A sampled point decodes to exactly what the plugin sent (it measures spans to 0.01 s and CPU
//! to 0.001 core); a merged point's mean CPU is kept to 0.0005 core. At the default interval a
//! single sample costs 9–14 bytes (12.4 on average over the made-up mix, whose noise is the
//! sampler's: `runledger_synth::timeline`): a step of 10 minutes (20 points) about 250 bytes. A
//! merged point carries its min and max too, about 25 bytes: a step that ran past an hour (120
//! points at most, whatever its length) about 2 KB per node, 3.3 KB at most in the made-up mix.
//! The table is a rowid table so that such rows stay on its leaf pages (see the migration).
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

use crate::store::{get_varint, get_zigzag, put_varint, put_zigzag};
use runledger_record::series::{idle_spans, Gauges, IdleSpan, Point, Series};
use rusqlite::{params, Connection};
use std::collections::BTreeMap;

/// Blob format version written by [`encode`].
pub const VERSION: u8 = 1;

/// The default "idle": use below this fraction of the allocation …
pub const IDLE_BELOW: f64 = 0.1;
/// … for at least this long.
pub const IDLE_FOR_S: f64 = 3600.0;

fn millicores(c: f64) -> u64 {
    (c.max(0.0) * 1000.0).round() as u64
}

fn put_gauges(out: &mut Vec<u8>, g: &Gauges, p: &Point) {
    put_varint(out, millicores(g.cpu_cores));
    put_zigzag(out, g.rss_kib as i64 - p.rss_kib as i64);
    put_zigzag(out, i64::from(g.processes) - i64::from(p.processes));
    put_zigzag(out, i64::from(g.threads) - i64::from(p.threads));
}

fn get_gauges(b: &[u8], at: &mut usize, p: &Point) -> Option<Gauges> {
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

/// The blob of one series (see the module documentation).
pub fn encode(s: &Series) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 12 * s.points.len());
    out.push(VERSION);
    put_varint(&mut out, s.interval_s.into());
    put_varint(&mut out, s.per_point.into());
    put_varint(&mut out, s.rss_peak_kib);
    put_varint(&mut out, s.missed.into());
    put_varint(&mut out, s.points.len() as u64);
    let nominal_cs = i64::from(s.interval_s) * i64::from(s.per_point.max(1)) * 100;
    let mut prev = Point::default();
    for p in &s.points {
        let extremes = p.min.is_some() || p.max.is_some();
        put_varint(&mut out, u64::from(extremes));
        put_zigzag(&mut out, p.t.wrapping_sub(prev.t));
        put_zigzag(&mut out, (p.secs.max(0.0) * 100.0).round() as i64 - nominal_cs);
        put_varint(&mut out, millicores(p.cpu_cores));
        put_zigzag(&mut out, (p.rss_kib as i64).wrapping_sub(prev.rss_kib as i64));
        put_varint(&mut out, p.read_bytes);
        put_varint(&mut out, p.write_bytes);
        put_zigzag(&mut out, i64::from(p.processes) - i64::from(prev.processes));
        put_zigzag(&mut out, i64::from(p.threads) - i64::from(prev.threads));
        if extremes {
            put_gauges(&mut out, &p.min.unwrap_or(p.gauges()), p);
            put_gauges(&mut out, &p.max.unwrap_or(p.gauges()), p);
        }
        prev = p.clone();
    }
    out
}

/// Decodes [`encode`]'s blob; `None` for another version or a damaged blob (a damaged blob is
/// never shown in part: a timeline with holes would look like idle time).
pub fn decode(b: &[u8]) -> Option<Series> {
    if *b.first()? != VERSION {
        return None;
    }
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
    let nominal_cs = i64::from(interval_s) * i64::from(per_point.max(1)) * 100;
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
            p.min = Some(get_gauges(b, &mut at, &p)?);
            p.max = Some(get_gauges(b, &mut at, &p)?);
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
    out.sort_by(|a, b| crate::merge::natural_cmp(&a.node, &b.node).then(a.step_id.cmp(&b.step_id)));
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
    out.sort_by(|a, b| crate::merge::natural_cmp(&a.node, &b.node));
    out
}

/// Sets `jobs.idle_core_s` (default thresholds) from the job's series: part of
/// [`crate::merge::recompute`].
pub fn recompute_idle(conn: &Connection, job: i64) -> rusqlite::Result<()> {
    let has: bool = conn.prepare_cached("SELECT 1 FROM step_series WHERE job = ?1")?.exists([job])?;
    let idle = if has {
        let (series, _) = read(conn, job)?;
        let total: f64 = idle(&series, IDLE_BELOW, IDLE_FOR_S).iter().map(NodeIdle::idle_core_seconds).sum();
        // Kept to the millisecond: the same figure whatever the order nodes arrived in.
        (total > 0.0).then(|| (total * 1000.0).round() / 1000.0)
    } else {
        None
    };
    conn.prepare_cached("UPDATE jobs SET idle_core_s = ?2 WHERE id = ?1 AND idle_core_s IS NOT ?2")?
        .execute(params![job, idle])?;
    Ok(())
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

    #[test]
    fn damage_and_other_versions_are_refused() {
        let blob = encode(&sampled(10, 5));
        assert!(decode(&[]).is_none());
        assert!(decode(&[2, 0, 0, 0, 0, 0]).is_none(), "unknown version");
        for cut in 1..blob.len() {
            assert!(decode(&blob[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode(&longer).is_none(), "trailing bytes");
        // A huge point count does not allocate.
        assert!(decode(&[1, 5, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_none());
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
