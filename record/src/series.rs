//! What a step did over time on one node: a bounded series of usage samples.
//!
//! The plugin samples a step's processes every `sample_interval` seconds (CPU time, resident
//! memory, bytes read and written, processes and threads) and sends the series with the step's
//! end ([`crate::StepEnd::series`]). A step of any length keeps at most [`MAX_POINTS`] points:
//! when it would have more, neighbouring points are merged pairwise and later samples are
//! grouped by twice as many ([`SeriesBuilder`]), so the resolution halves while every point
//! still covers its time exactly, with the mean over its span and the min/max of the samples it
//! merges. Totals (CPU seconds, bytes) are kept exactly through every merge.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// Most points a series keeps per step and node.
pub const MAX_POINTS: usize = 120;

/// One step's usage on one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Series {
    /// Seconds between samples, as configured (`sample_interval=`).
    pub interval_s: u32,
    /// Samples merged into each point (1, then 2, 4, … as the step outgrows [`MAX_POINTS`]).
    pub per_point: u32,
    /// Oldest first; each covers the `secs` seconds up to its `t`.
    pub points: Vec<Point>,
    /// The highest resident memory (sum over the step's processes) any sample saw.
    pub rss_peak_kib: u64,
    /// Samples that could not be taken (unreadable /proc); the time they would have covered is
    /// still in the next point's span.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One point: the step's use over `secs` seconds ending at `t`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Point {
    /// End of the span (seconds since the epoch).
    pub t: Timestamp,
    /// Length of the span, seconds.
    pub secs: f64,
    /// Mean CPU use over the span, in cores (user + system CPU seconds / `secs`).
    pub cpu_cores: f64,
    /// Resident memory summed over the step's processes (mean of the samples merged).
    pub rss_kib: u64,
    /// Bytes read from and written to storage during the span (/proc/PID/io).
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Processes and threads of the step (mean of the samples merged, rounded).
    pub processes: u32,
    pub threads: u32,
    /// Lowest and highest sample, when the point merges several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Gauges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Gauges>,
}

/// The values a merged point keeps the extremes of.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct Gauges {
    pub cpu_cores: f64,
    pub rss_kib: u64,
    pub processes: u32,
    pub threads: u32,
}

impl Gauges {
    fn pick(a: Gauges, b: Gauges, f: fn(f64, f64) -> f64, g: fn(u64, u64) -> u64) -> Gauges {
        Gauges {
            cpu_cores: f(a.cpu_cores, b.cpu_cores),
            rss_kib: g(a.rss_kib, b.rss_kib),
            processes: g(a.processes.into(), b.processes.into()) as u32,
            threads: g(a.threads.into(), b.threads.into()) as u32,
        }
    }
}

impl Point {
    /// This point's own values, as gauges.
    pub fn gauges(&self) -> Gauges {
        Gauges { cpu_cores: self.cpu_cores, rss_kib: self.rss_kib, processes: self.processes, threads: self.threads }
    }

    /// CPU seconds used in the span.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_cores * self.secs
    }

    /// `self` (earlier) and `next` as one point: means weighted by span, sums summed, the
    /// extremes of both.
    pub fn merge(&self, next: &Point) -> Point {
        let secs = self.secs + next.secs;
        let mean = |a: f64, b: f64| if secs > 0.0 { (a * self.secs + b * next.secs) / secs } else { a.max(b) };
        let lo = Gauges::pick(self.min.unwrap_or(self.gauges()), next.min.unwrap_or(next.gauges()), f64::min, u64::min);
        let hi = Gauges::pick(self.max.unwrap_or(self.gauges()), next.max.unwrap_or(next.gauges()), f64::max, u64::max);
        Point {
            t: next.t.max(self.t),
            secs,
            cpu_cores: (self.cpu_seconds() + next.cpu_seconds()) / if secs > 0.0 { secs } else { 1.0 },
            rss_kib: mean(self.rss_kib as f64, next.rss_kib as f64).round() as u64,
            read_bytes: self.read_bytes.saturating_add(next.read_bytes),
            write_bytes: self.write_bytes.saturating_add(next.write_bytes),
            processes: mean(self.processes.into(), next.processes.into()).round() as u32,
            threads: mean(self.threads.into(), next.threads.into()).round() as u32,
            min: Some(lo),
            max: Some(hi),
        }
    }
}

impl Series {
    /// CPU seconds over the whole series.
    pub fn cpu_seconds(&self) -> f64 {
        self.points.iter().map(Point::cpu_seconds).sum()
    }
}

/// Builds a [`Series`] sample by sample, never holding more than [`MAX_POINTS`] points plus one
/// being filled.
#[derive(Clone, Debug)]
pub struct SeriesBuilder {
    series: Series,
    max_points: usize,
    /// The point being filled, and how many samples it holds.
    pending: Option<(Point, u32)>,
}

impl SeriesBuilder {
    pub fn new(interval_s: u32) -> SeriesBuilder {
        SeriesBuilder::with_max(interval_s, MAX_POINTS)
    }

    /// A builder keeping at most `max_points` (at least 2).
    pub fn with_max(interval_s: u32, max_points: usize) -> SeriesBuilder {
        SeriesBuilder {
            series: Series { interval_s, per_point: 1, ..Series::default() },
            max_points: max_points.max(2),
            pending: None,
        }
    }

    /// Adds one sample (a point covering the time since the previous one).
    pub fn push(&mut self, sample: Point) {
        self.series.rss_peak_kib = self.series.rss_peak_kib.max(sample.rss_kib);
        let (p, n) = match self.pending.take() {
            Some((p, n)) => (p.merge(&sample), n + 1),
            None => (sample, 1),
        };
        if n < self.series.per_point {
            self.pending = Some((p, n));
            return;
        }
        self.series.points.push(p);
        if self.series.points.len() >= self.max_points {
            self.halve();
        }
    }

    /// Counts a sample that could not be taken.
    pub fn missed(&mut self) {
        self.series.missed = self.series.missed.saturating_add(1);
    }

    pub fn len(&self) -> usize {
        self.series.points.len() + usize::from(self.pending.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges neighbouring points pairwise; later points take twice as many samples.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.series.points);
        let mut it = old.chunks(2);
        self.series.points = it.by_ref().map(|c| if let [a, b] = c { a.merge(b) } else { c[0].clone() }).collect();
        self.series.per_point = self.series.per_point.saturating_mul(2);
    }

    /// The series, with the point being filled as its last (possibly shorter) point.
    pub fn finish(mut self) -> Series {
        if let Some((p, _)) = self.pending.take() {
            self.series.points.push(p);
            if self.series.points.len() > self.max_points {
                self.halve();
            }
        }
        self.series
    }
}

/// A stretch of time a node's allocation sat mostly idle.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleSpan {
    pub start: f64,
    pub end: f64,
    /// Allocated cores not used over the span: Σ (allocation − use) × seconds.
    pub idle_core_seconds: f64,
}

/// The stretches during which the steps of one node (their series, which may overlap in time)
/// used less than `below` × `alloc_cores` for at least `min_secs` seconds in a row. Time not
/// covered by any point (before the first sample, between steps) counts as no use; a point's use
/// is its mean over its span.
pub fn idle_spans(node: &[&Series], alloc_cores: f64, below: f64, min_secs: f64) -> Vec<IdleSpan> {
    // Every point as [start, end) with its use; the node's use in each elementary segment between
    // two boundaries is the sum over the points covering it.
    let pts: Vec<(f64, f64, f64)> = node
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.secs > 0.0)
        .map(|p| (p.t as f64 - p.secs, p.t as f64, p.cpu_cores))
        .collect();
    let mut edges: Vec<f64> = pts.iter().flat_map(|&(a, b, _)| [a, b]).collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let mut out: Vec<IdleSpan> = Vec::new();
    let mut run: Option<IdleSpan> = None;
    let limit = below * alloc_cores;
    let close = |run: &mut Option<IdleSpan>, out: &mut Vec<IdleSpan>| {
        if let Some(r) = run.take() {
            if r.end - r.start >= min_secs {
                out.push(r);
            }
        }
    };
    for w in edges.windows(2) {
        let (a, b) = (w[0], w[1]);
        let used: f64 = pts.iter().filter(|&&(s, e, _)| s < b && e > a).map(|&(_, _, c)| c).sum();
        if used < limit {
            let idle = (alloc_cores - used).max(0.0) * (b - a);
            match &mut run {
                Some(r) if r.end == a => {
                    r.end = b;
                    r.idle_core_seconds += idle;
                }
                _ => {
                    close(&mut run, &mut out);
                    run = Some(IdleSpan { start: a, end: b, idle_core_seconds: idle });
                }
            }
        } else {
            close(&mut run, &mut out);
        }
    }
    close(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: i64, cpu: f64, rss: u64) -> Point {
        Point {
            t,
            secs: 5.0,
            cpu_cores: cpu,
            rss_kib: rss,
            read_bytes: 10,
            write_bytes: 1,
            processes: 2,
            threads: 3,
            ..Point::default()
        }
    }

    #[test]
    fn short_series_keeps_every_sample() {
        let mut b = SeriesBuilder::new(5);
        for i in 0..10 {
            b.push(sample(100 + 5 * i, 1.0, 100 * i as u64));
        }
        let s = b.finish();
        assert_eq!((s.points.len(), s.per_point, s.rss_peak_kib), (10, 1, 900));
        assert!(s.points.iter().all(|p| p.min.is_none() && p.max.is_none()), "single samples carry no extremes");
        assert_eq!(s.points[3], sample(115, 1.0, 300));
    }

    /// A very long step stays within MAX_POINTS, covers all its time, keeps exact totals and
    /// the extremes of what it merged.
    #[test]
    fn long_series_is_bounded_and_keeps_totals_and_extremes() {
        let mut b = SeriesBuilder::new(5);
        let n = 10_000;
        for i in 0..n {
            // A spike of 64 cores and 9 GiB in the middle of an otherwise 2-core, 1 GiB step.
            let (cpu, rss) = if i == 5000 { (64.0, 9 << 20) } else { (2.0, 1 << 20) };
            b.push(sample(5 * (i + 1), cpu, rss));
            assert!(b.len() <= MAX_POINTS, "{} points after {i} samples", b.len());
        }
        let s = b.finish();
        assert!(s.points.len() <= MAX_POINTS && s.points.len() > MAX_POINTS / 2, "{}", s.points.len());
        let secs: f64 = s.points.iter().map(|p| p.secs).sum();
        assert_eq!(secs, 5.0 * n as f64, "every second covered once");
        assert!((s.cpu_seconds() - (2.0 * 5.0 * (n - 1) as f64 + 64.0 * 5.0)).abs() < 1e-6, "{}", s.cpu_seconds());
        assert_eq!(s.points.iter().map(|p| p.read_bytes).sum::<u64>(), 10 * n as u64);
        assert_eq!(s.points.last().unwrap().t, 5 * n);
        assert!(s.points.windows(2).all(|w| w[0].t < w[1].t), "in time order");
        let spike = s.points.iter().find(|p| p.max.is_some_and(|m| m.cpu_cores == 64.0)).expect("the spike's max kept");
        assert_eq!(spike.max.unwrap().rss_kib, 9 << 20);
        assert_eq!(spike.min.unwrap().cpu_cores, 2.0);
        assert_eq!(s.rss_peak_kib, 9 << 20);
        assert!(s.per_point >= (n as u32) / MAX_POINTS as u32);
    }

    fn busy_then_idle() -> Series {
        // 2 cores for 40 s, then sleeping for 60 s, sampled every 5 s from t=1000.
        let mut b = SeriesBuilder::new(5);
        for i in 1..=20 {
            b.push(Point {
                t: 1000 + 5 * i,
                secs: 5.0,
                cpu_cores: if i <= 8 { 2.0 } else { 0.01 },
                ..Point::default()
            });
        }
        b.finish()
    }

    #[test]
    fn idle_spans_find_the_sleep_after_the_work() {
        let s = busy_then_idle();
        let spans = idle_spans(&[&s], 2.0, 0.1, 30.0);
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!((spans[0].start, spans[0].end), (1040.0, 1100.0));
        assert!((spans[0].idle_core_seconds - 60.0 * 1.99).abs() < 1e-9, "{spans:?}");
        // Shorter than --for: nothing; a higher threshold counts the busy phase too.
        assert!(idle_spans(&[&s], 2.0, 0.1, 61.0).is_empty());
        assert_eq!(idle_spans(&[&s], 2.0, 1.5, 30.0).len(), 1);
        assert_eq!(idle_spans(&[&s], 2.0, 1.5, 30.0)[0].start, 1000.0);
    }

    #[test]
    fn idle_spans_add_the_steps_of_a_node() {
        // The batch step idles in `wait` while step 0 works on the same node: not idle.
        let batch = busy_then_idle();
        let mut b = SeriesBuilder::new(5);
        for i in 9..=20 {
            b.push(Point { t: 1000 + 5 * i, secs: 5.0, cpu_cores: 1.0, ..Point::default() });
        }
        let step0 = b.finish();
        assert!(idle_spans(&[&batch, &step0], 2.0, 0.1, 30.0).is_empty());
        assert_eq!(idle_spans(&[&batch], 2.0, 0.1, 30.0).len(), 1);
    }

    #[test]
    fn merge_weights_by_span() {
        let a = Point { secs: 30.0, ..sample(30, 2.0, 1000) };
        let b = Point { secs: 10.0, ..sample(40, 0.0, 3000) };
        let m = a.merge(&b);
        assert_eq!((m.t, m.secs, m.cpu_cores, m.rss_kib), (40, 40.0, 1.5, 1500));
        assert_eq!((m.min.unwrap().rss_kib, m.max.unwrap().rss_kib), (1000, 3000));
        assert_eq!((m.read_bytes, m.processes), (20, 2));
    }

    #[test]
    fn optional_parts_are_left_out_and_old_text_parses() {
        let s = Series { interval_s: 30, per_point: 1, points: vec![sample(1, 0.5, 7)], ..Series::default() };
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("missed") && !text.contains("min"), "{text}");
        assert_eq!(serde_json::from_str::<Series>(&text).unwrap(), s);
    }
}
