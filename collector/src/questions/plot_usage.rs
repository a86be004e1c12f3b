//! Charts of the manager-facing queries: ranked bars (`query modules --plot`, one-key
//! `query summary --plot`), step lines over time (`query throughput` / `utilization --plot`) and
//! heatmaps (two-key `query summary --plot`, e.g. `--by weekday,hour` or `--by user,hour`).
//!
//! Same canvas, font and palette as [`crate::questions::plot`] (1200×800 PNG or SVG by the file name).

use crate::questions::plot::{colour, draw_err, fmt_num, render, Drawn, PlotTarget, WIDTH};
use chrono::{Local, TimeZone};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FAMILY: &str = "sans-serif";

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

fn bold(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().style(FontStyle::Bold).color(&BLACK)
}

fn header<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, subtitle: &str) -> Drawn {
    let (w, _) = root.dim_in_pixel();
    let centre = |s: TextStyle<'static>| s.pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(title.to_string(), (w as i32 / 2, 16), centre(bold(30.0)))).map_err(draw_err)?;
    root.draw(&Text::new(subtitle.to_string(), (w as i32 / 2, 58), centre(font(20.0)))).map_err(draw_err)?;
    Ok(())
}

/// One ranked bar: its label, length, and the note printed after it.
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub note: String,
}

/// Horizontal bars, largest first from the top, each with a note at its end.
pub fn bars(target: &PlotTarget, title: &str, subtitle: &str, x_label: &str, bars: &[Bar]) -> Drawn {
    render(target, |r| draw_bars(r, title, subtitle, x_label, bars), |r| draw_bars(r, title, subtitle, x_label, bars))
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    x_label: &str,
    bars: &[Bar],
) -> Drawn {
    header(root, title, subtitle)?;
    let (_, body) = root.split_vertically(100);
    let n = bars.len().max(1);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1.0);
    let label_w = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(4).clamp(4, 28) as u32 * 11 + 24;
    let label_size = if n > 25 { 14.0 } else { 18.0 };
    // Room after the longest bar for its note: the plot is about WIDTH - label_w - 80 px wide,
    // a character of the note about 9.5 px.
    let note_px = bars.iter().map(|b| b.note.chars().count()).max().unwrap_or(0) as f64 * 9.5 + 16.0;
    let plot_px = f64::from(WIDTH.saturating_sub(label_w + 80).max(200));
    let room = 1.0 / (1.0 - (note_px / plot_px).min(0.6));
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .margin_right(40)
        .x_label_area_size(60)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..max * room, 0f64..n as f64)
        .map_err(draw_err)?;
    let names: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = (n as f64 - y - 0.5).round();
        if (y.fract() - 0.5).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    let x_fmt = |x: &f64| fmt_num(*x);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_labels(8)
        .y_labels(2 * n + 1)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .x_desc(x_label)
        .label_style(font(label_size))
        .axis_desc_style(font(20.0))
        .draw()
        .map_err(draw_err)?;
    let c = colour(0);
    for (i, b) in bars.iter().enumerate() {
        let top = n as f64 - i as f64 - 0.15;
        let bottom = n as f64 - i as f64 - 0.85;
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, bottom), (b.value, top)], c.filled())))
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                b.note.clone(),
                (b.value + max * 0.01, (top + bottom) / 2.0),
                font(label_size - 1.0).pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// A named series of (unix time, value) points drawn as a step function.
#[derive(Clone, Debug)]
pub struct TimeSeries {
    pub label: String,
    pub points: Vec<(i64, f64)>,
}

fn time_label(t: i64, span: i64) -> String {
    let Some(d) = Local.timestamp_opt(t, 0).single() else { return t.to_string() };
    if span > 3 * 86_400 {
        d.format("%Y-%m-%d").to_string()
    } else {
        d.format("%m-%d %H:%M").to_string()
    }
}

/// Tick times between t0 and t1 at a round local step giving about 4–10 ticks.
fn time_ticks(t0: i64, t1: i64) -> Vec<i64> {
    use chrono::{Datelike, NaiveDate};
    const H: i64 = 3600;
    const D: i64 = 86_400;
    let span = (t1 - t0).max(1);
    let off = Local.timestamp_opt(t0, 0).single().map(|d| i64::from(d.offset().local_minus_utc())).unwrap_or(0);
    let steps = [600, 1800, H, 2 * H, 3 * H, 6 * H, 12 * H, D, 2 * D, 7 * D, 14 * D];
    if let Some(&step) = steps.iter().find(|&&s| span / s <= 9) {
        // Weeks start on Monday (the epoch was a Thursday).
        let phase = if step % (7 * D) == 0 { 4 * D } else { 0 };
        let first = (t0 + off - phase).div_euclid(step) * step + step + phase - off;
        return (0..).map(|i| first + i * step).take_while(|&t| t < t1).filter(|&t| t > t0).collect();
    }
    // Months: the first of every k-th month.
    let months = (span / (30 * D) + 1) as u32;
    let k = [1, 2, 3, 6, 12].into_iter().find(|&k| months / k <= 9).unwrap_or(24);
    let Some(start) = Local.timestamp_opt(t0, 0).single() else { return Vec::new() };
    let (mut y, mut m) = (start.year(), start.month());
    let mut out = Vec::new();
    loop {
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
        if (m - 1) % k != 0 {
            continue;
        }
        let Some(t) = NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|d| Local.from_local_datetime(&d).earliest())
            .map(|d| d.timestamp())
        else {
            break;
        };
        if t >= t1 {
            break;
        }
        out.push(t);
    }
    out
}

/// Step lines over time: `left` on the left axis, `right` (if any) on a right axis, each value
/// held until the next point (the last one for `interval` seconds).
pub fn steps(
    target: &PlotTarget,
    title: &str,
    subtitle: &str,
    left: (&str, &[TimeSeries]),
    right: Option<(&str, &TimeSeries)>,
    interval: i64,
) -> Drawn {
    render(
        target,
        |r| draw_steps(r, title, subtitle, left, right, interval),
        |r| draw_steps(r, title, subtitle, left, right, interval),
    )
}

fn step_points(points: &[(i64, f64)], interval: i64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(t, v)) in points.iter().enumerate() {
        let next = points.get(i + 1).map(|p| p.0).unwrap_or(t + interval);
        out.push((t as f64, v));
        out.push((next as f64, v));
    }
    out
}

fn draw_steps<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    left: (&str, &[TimeSeries]),
    right: Option<(&str, &TimeSeries)>,
    interval: i64,
) -> Drawn {
    header(root, title, subtitle)?;
    let (_, body) = root.split_vertically(90);
    let all = left.1.iter().flat_map(|s| s.points.iter()).chain(right.iter().flat_map(|r| r.1.points.iter()));
    let (mut t0, mut t1) = (i64::MAX, i64::MIN);
    for &(t, _) in all {
        t0 = t0.min(t);
        t1 = t1.max(t + interval);
    }
    if t0 > t1 {
        (t0, t1) = (0, 1);
    }
    let span = t1 - t0;
    let ymax = left.1.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    // Headroom for the legend in the upper left.
    let ymax = if ymax > 0.0 { ymax * 1.35 } else { 1.0 };
    let rmax = right.map(|r| r.1.points.iter().map(|p| p.1).fold(0.0, f64::max)).unwrap_or(1.0);
    let rmax = if rmax > 0.0 { rmax * 1.35 } else { 1.0 };
    let mut chart = ChartBuilder::on(&body)
        .margin(24)
        .x_label_area_size(70)
        .y_label_area_size(110)
        .right_y_label_area_size(if right.is_some() { 110 } else { 0 })
        .build_cartesian_2d(t0 as f64..t1 as f64, 0f64..ymax)
        .map_err(draw_err)?
        .set_secondary_coord(t0 as f64..t1 as f64, 0f64..rmax);
    let y_fmt = |y: &f64| fmt_num(*y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&y_fmt)
        .x_desc("time (local)")
        .y_desc(left.0)
        .label_style(font(17.0))
        .axis_desc_style(font(20.0))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(draw_err)?;
    // Time ticks at round local times (hours, midnights, Mondays, first days of months), with
    // their grid lines, drawn by hand: plotters' ticks are round numbers of seconds.
    let grid = RGBColor(225, 225, 225);
    // (Not in the last 3% of the axis, where a centred label would be cut.)
    for t in time_ticks(t0, t1 - span / 33) {
        let x = t as f64;
        chart.draw_series(LineSeries::new([(x, 0.0), (x, ymax)], grid.stroke_width(1))).map_err(draw_err)?;
        let (px, py) = chart.backend_coord(&(x, 0.0));
        root.draw(&PathElement::new(vec![(px, py), (px, py + 6)], BLACK.stroke_width(1))).map_err(draw_err)?;
        root.draw(&Text::new(time_label(t, span), (px, py + 10), font(17.0).pos(Pos::new(HPos::Center, VPos::Top))))
            .map_err(draw_err)?;
    }
    for (i, s) in left.1.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(step_points(&s.points, interval), c.stroke_width(2)))
            .map_err(draw_err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    if let Some((desc, s)) = right {
        chart
            .configure_secondary_axes()
            .y_desc(desc)
            .y_label_formatter(&y_fmt)
            .label_style(font(17.0))
            .axis_desc_style(font(20.0))
            .draw()
            .map_err(draw_err)?;
        let c = RGBColor(20, 20, 20);
        chart
            .draw_secondary_series(LineSeries::new(step_points(&s.points, interval), c.stroke_width(2)))
            .map_err(draw_err)?
            .label(format!("{} (right axis)", s.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(font(18.0))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// A colour for t in 0–1 on a perceptually ordered scale (viridis-like anchors).
fn scale(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * (A.len() - 1) as f64;
    let i = (t.floor() as usize).min(A.len() - 2);
    let f = t - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(A[i].0, A[i + 1].0), mix(A[i].1, A[i + 1].1), mix(A[i].2, A[i + 1].2))
}

/// A heatmap: `values[row][col]`, rows top to bottom, with a colour bar.
#[allow(clippy::too_many_arguments)]
pub fn heatmap(
    target: &PlotTarget,
    title: &str,
    subtitle: &str,
    row_desc: &str,
    col_desc: &str,
    value_desc: &str,
    rows: &[String],
    cols: &[String],
    values: &[Vec<f64>],
) -> Drawn {
    render(
        target,
        |r| draw_heatmap(r, title, subtitle, (row_desc, rows), (col_desc, cols), value_desc, values),
        |r| draw_heatmap(r, title, subtitle, (row_desc, rows), (col_desc, cols), value_desc, values),
    )
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    rows: (&str, &[String]),
    cols: (&str, &[String]),
    value_desc: &str,
    values: &[Vec<f64>],
) -> Drawn {
    header(root, title, subtitle)?;
    let (_, body) = root.split_vertically(90);
    let (main, bar) = body.split_horizontally(1040);
    let (nr, nc) = (rows.1.len().max(1), cols.1.len().max(1));
    let max = values.iter().flatten().copied().fold(0.0, f64::max);
    let label_w = rows.1.iter().map(|s| s.chars().count()).max().unwrap_or(3).clamp(3, 20) as u32 * 11 + 30;
    let mut chart = ChartBuilder::on(&main)
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(label_w + 30)
        .build_cartesian_2d(0f64..nc as f64, 0f64..nr as f64)
        .map_err(draw_err)?;
    let rl: Vec<String> = rows.1.to_vec();
    let cl: Vec<String> = cols.1.to_vec();
    let y_fmt = move |y: &f64| {
        let i = (nr as f64 - y - 0.5).round();
        if (y.fract() - 0.5).abs() < 1e-6 && i >= 0.0 && (i as usize) < rl.len() {
            rl[i as usize].clone()
        } else {
            String::new()
        }
    };
    let x_fmt = move |x: &f64| {
        let i = (x - 0.5).round();
        if (x.fract() - 0.5).abs() < 1e-6 && i >= 0.0 && (i as usize) < cl.len() {
            cl[i as usize].clone()
        } else {
            String::new()
        }
    };
    let lsize = if nr > 30 { 12.0 } else { 17.0 };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(2 * nc + 1)
        .y_labels(2 * nr + 1)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(cols.0)
        .y_desc(rows.0)
        .label_style(font(lsize))
        .axis_desc_style(font(20.0))
        .draw()
        .map_err(draw_err)?;
    for (r, row) in values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let y = (nr - 1 - r) as f64;
            let fill = if max > 0.0 { scale(v / max) } else { scale(0.0) };
            chart
                .draw_series(std::iter::once(Rectangle::new([(c as f64, y), (c as f64 + 1.0, y + 1.0)], fill.filled())))
                .map_err(draw_err)?;
        }
    }
    // Colour bar: 0 at the bottom, max at the top.
    let (_, bh) = bar.dim_in_pixel();
    let (top, bottom) = (40i32, bh as i32 - 110);
    let steps = 100;
    for i in 0..steps {
        let y0 = bottom - (bottom - top) * (i + 1) / steps;
        let y1 = bottom - (bottom - top) * i / steps;
        bar.draw(&Rectangle::new([(20, y0), (50, y1)], scale(f64::from(i) / f64::from(steps)).filled()))
            .map_err(draw_err)?;
    }
    bar.draw(&Rectangle::new([(20, top), (50, bottom)], BLACK.stroke_width(1))).map_err(draw_err)?;
    for (frac, v) in [(0.0, 0.0), (0.5, max / 2.0), (1.0, max)] {
        let y = bottom - ((bottom - top) as f64 * frac) as i32;
        bar.draw(&Text::new(fmt_num(v), (56, y), font(16.0).pos(Pos::new(HPos::Left, VPos::Center))))
            .map_err(draw_err)?;
    }
    bar.draw(&Text::new(value_desc.to_string(), (10, bottom + 20), font(17.0))).map_err(draw_err)?;
    Ok(())
}
