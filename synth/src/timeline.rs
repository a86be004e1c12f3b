//! Made-up usage series ([`runledger_record::series::Series`]) shaped like the plugin's: one
//! sample every `interval_s` seconds from the step's start to its end, at the resolution the
//! plugin's [`runledger_record::series::SeriesBuilder`] ends at.

use crate::Rng;
use runledger_record::series::{Gauges, Point, Series, MAX_POINTS};
use runledger_record::Timestamp;

/// How a made-up step used its node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Seconds between samples (the plugin's `sample_interval=`; its default is 30).
    pub interval_s: u32,
    /// Cores in use while busy.
    pub busy_cores: f64,
    /// From this time on the step sits idle (a stall, or a script sleeping after its work).
    pub idle_from: Option<Timestamp>,
    /// Resident memory at the start, KiB, and how much it grows per sample.
    pub rss_kib: u64,
    pub rss_growth_kib: u64,
    pub processes: u32,
}

/// The series of a step that ran from `start` to `end` with `shape`; `seed` varies the noise
/// (deterministic). `None` for a step shorter than one interval, which the plugin never sampled.
///
/// The noise is the sampler's: a busy step's CPU stays within ±0.3 % of `busy_cores` (any value
/// at the sampler's 0.001 core in that range), resident memory is whole 4 KiB pages and changes
/// (besides `rss_growth_kib`) in about one sample in eight by a few pages, and a merged point's
/// extremes lie close to its mean (CPU up to ±0.5 %, memory where the point started and ended).
///
/// Made at the resolution the plugin's builder would end at (a power of two samples
/// per point, fewer than [`MAX_POINTS`] points, min and max kept when a point merges several), in
/// at most [`MAX_POINTS`] steps whatever the job's length, so a 10-million-job ledger is quick to
/// fill.
pub fn series(seed: u64, start: Timestamp, end: Timestamp, shape: &Shape) -> Option<Series> {
    let mut rng = Rng(seed | 1);
    let interval = i64::from(shape.interval_s.max(1));
    let samples = (end - start) / interval;
    if samples < 1 {
        return None;
    }
    let mut per_point: i64 = 1;
    while samples / per_point >= MAX_POINTS as i64 {
        per_point *= 2;
    }
    let span = interval * per_point;
    let mut points = Vec::with_capacity((samples / per_point + 1) as usize);
    // Resident memory is counted in 4 KiB pages.
    let mut rss = shape.rss_kib / 4 * 4;
    let mut rss_peak = 0;
    let mut t = start;
    while t + interval <= end {
        let secs = span.min((end - t) / interval * interval);
        t += secs;
        let idle = shape.idle_from.is_some_and(|i| t > i);
        // A busy step's CPU is near-constant from one sample to the next (±0.3 %), but not
        // one of a few levels: the sampler divides clock ticks by a measured span, so any
        // value in the range turns up (which a general compressor would otherwise find repeats in).
        let jitter = (rng.below(601) as f64 - 300.0) / 100_000.0;
        let cores = if idle { 0.002 * rng.below(5) as f64 } else { shape.busy_cores * (1.0 + jitter) };
        let low = rss;
        if !idle {
            rss += shape.rss_growth_kib / 4 * 4 * (secs / interval) as u64;
        }
        // Otherwise resident memory changes rarely: in about one sample in eight, by a few pages.
        let samples_here = (secs / interval) as u32;
        if (0..samples_here).any(|_| rng.below(8) == 0) {
            rss = (rss + 4 * rng.below(64) as u64).saturating_sub(4 * 32);
        }
        let merged = secs > interval;
        // A merged point's extremes: CPU up to 0.5 % either side of its mean while busy (its
        // lowest and highest sample, so they differ from point to point), memory between where
        // the point started and where it ended.
        let (below, above) = if merged {
            (1.0 - rng.below(500) as f64 / 100_000.0, 1.0 + rng.below(500) as f64 / 100_000.0)
        } else {
            (1.0, 1.0)
        };
        let gauges = |f: f64, rss_kib: u64| Gauges {
            cpu_cores: (cores * f * 1000.0).round() / 1000.0,
            rss_kib,
            processes: shape.processes,
            threads: shape.processes * 2,
        };
        let (lo, hi) = (low.min(rss), low.max(rss));
        rss_peak = rss_peak.max(if merged { hi } else { rss });
        points.push(Point {
            t,
            secs: secs as f64,
            // The plugin's precision: cores to 0.001.
            cpu_cores: (cores * 1000.0).round() / 1000.0,
            rss_kib: rss,
            read_bytes: if idle || rng.below(4) != 0 { 0 } else { 4096 * rng.below(2048) as u64 },
            write_bytes: if idle || rng.below(8) != 0 { 0 } else { 65_536 * rng.below(1024) as u64 },
            processes: shape.processes,
            threads: shape.processes * 2,
            min: merged.then(|| gauges(below, lo)),
            max: merged.then(|| gauges(above, hi)),
        });
    }
    Some(Series {
        interval_s: shape.interval_s.max(1),
        per_point: per_point as u32,
        points,
        rss_peak_kib: rss_peak,
        missed: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_series_look_like_the_plugins() {
        let shape = Shape {
            interval_s: 30,
            busy_cores: 8.0,
            idle_from: Some(1000 + 3600),
            rss_kib: 1 << 20,
            rss_growth_kib: 100,
            processes: 9,
        };
        assert!(series(1, 1000, 1029, &shape).is_none(), "shorter than an interval");
        let short = series(1, 1000, 1000 + 600, &shape).unwrap();
        assert_eq!((short.points.len(), short.per_point), (20, 1));
        let long = series(1, 1000, 1000 + 48 * 3600, &shape).unwrap();
        assert!(long.points.len() <= MAX_POINTS && long.points.len() > MAX_POINTS / 2, "{}", long.points.len());
        let secs: f64 = long.points.iter().map(|p| p.secs).sum();
        assert_eq!(secs, 48.0 * 3600.0, "every second covered once");
        assert!(long.points.windows(2).all(|w| w[0].t < w[1].t));
        // Busy for the first hour (8 cores), then idle.
        let idle = runledger_record::series::idle_spans(&[&long], 8.0, 0.1, 3600.0);
        assert_eq!(idle.len(), 1);
        assert!((idle[0].end - idle[0].start - 47.0 * 3600.0).abs() <= 1024.0 * 30.0, "{idle:?}");
        assert_eq!(series(1, 1000, 1000 + 600, &shape), Some(short.clone()), "deterministic");
    }

    #[test]
    fn made_up_noise_is_the_samplers() {
        let flat = Shape {
            interval_s: 30,
            busy_cores: 48.0,
            idle_from: None,
            rss_kib: 4 << 20,
            rss_growth_kib: 0,
            processes: 49,
        };
        // A busy step's CPU is near-constant, its memory in pages and mostly unchanged.
        let short = series(7, 0, 3000, &flat).unwrap();
        assert_eq!(short.per_point, 1);
        assert!(short.points.iter().all(|p| (p.cpu_cores / 48.0 - 1.0).abs() <= 0.0031), "{short:?}");
        assert!(short.points.iter().all(|p| p.rss_kib % 4 == 0));
        let changed = short.points.windows(2).filter(|w| w[0].rss_kib != w[1].rss_kib).count();
        assert!(changed > 0 && changed <= short.points.len() / 4, "{changed} of {}", short.points.len());
        // A merged point's extremes bracket its values.
        let s = series(7, 0, 4 * 3600, &flat).unwrap();
        assert!(s.per_point > 1);
        for p in s.points.iter().filter(|p| p.min.is_some()) {
            let (lo, hi) = (p.min.unwrap(), p.max.unwrap());
            assert!(lo.cpu_cores <= p.cpu_cores && p.cpu_cores <= hi.cpu_cores);
            assert!(lo.rss_kib <= p.rss_kib && p.rss_kib <= hi.rss_kib);
            assert!(hi.rss_kib <= s.rss_peak_kib);
        }
    }
}
