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
    let mut rss = shape.rss_kib;
    let mut rss_peak = 0;
    let mut t = start;
    while t + interval <= end {
        let secs = span.min((end - t) / interval * interval);
        t += secs;
        let idle = shape.idle_from.is_some_and(|i| t > i);
        let jitter = (rng.below(21) as f64 - 10.0) / 1000.0; // ±1 %
        let cores = if idle { 0.002 * rng.below(5) as f64 } else { shape.busy_cores * (1.0 + jitter) };
        if !idle {
            rss += shape.rss_growth_kib * (secs / interval) as u64;
        }
        let rss_now = rss + rng.below(1024) as u64;
        let merged = secs > interval;
        let gauges = |f: f64, extra: u64| Gauges {
            cpu_cores: (cores * f * 1000.0).round() / 1000.0,
            rss_kib: rss_now + extra,
            processes: shape.processes,
            threads: shape.processes * 2,
        };
        rss_peak = rss_peak.max(rss_now + if merged { 2048 } else { 0 });
        points.push(Point {
            t,
            secs: secs as f64,
            // The plugin's precision: cores to 0.001.
            cpu_cores: (cores * 1000.0).round() / 1000.0,
            rss_kib: rss_now,
            read_bytes: if idle || rng.below(4) != 0 { 0 } else { 4096 * rng.below(2048) as u64 },
            write_bytes: if idle || rng.below(8) != 0 { 0 } else { 65_536 * rng.below(1024) as u64 },
            processes: shape.processes,
            threads: shape.processes * 2,
            min: merged.then(|| gauges(0.97, 0)),
            max: merged.then(|| gauges(1.03, 2048)),
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
        assert_eq!(series(1, 1000, 1000 + 600, &shape), Some(short), "deterministic");
    }
}
