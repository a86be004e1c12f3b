//! Charts for the analysis commands, with `plotters`: PNG (1200×800) or SVG, by the file name.
//!
//! PNG text is drawn with a TrueType font read at run time (plotters' `ab_glyph`, no
//! fontconfig): `$RUNLEDGER_FONT`, else DejaVu Sans from Debian's `fonts-dejavu-core`, else
//! Liberation Sans. SVG text is left to the viewer, but the layout still measures it with the
//! same font.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 800;

/// The font family every chart uses (registered once, see [`ensure_font`]).
const FAMILY: &str = "sans-serif";

const FONT_CANDIDATES: &[(&str, &str)] = &[
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    (
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    ),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
];

/// Where a chart goes, and in which format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotTarget {
    pub path: PathBuf,
    pub svg: bool,
}

/// A `--plot` value: a file name ending in `.png` or `.svg` (any case).
pub fn parse_plot_target(s: &str) -> Result<PlotTarget, String> {
    let path = PathBuf::from(s);
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(PlotTarget { path, svg: false }),
        Some("svg") => Ok(PlotTarget { path, svg: true }),
        _ => Err(format!("'{s}': the chart's file name must end in .png or .svg")),
    }
}

impl PlotTarget {
    /// Whether the file can be written where it is asked for (checked before any work is done).
    pub fn check(&self) -> Result<(), String> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(format!("cannot write the chart {}: no directory {}", self.path.display(), dir.display()));
            }
        }
        if self.path.is_dir() {
            return Err(format!("cannot write the chart {}: it is a directory", self.path.display()));
        }
        Ok(())
    }
}

fn leak_file(path: &Path) -> Option<&'static [u8]> {
    std::fs::read(path).ok().map(|b| &*Box::leak(b.into_boxed_slice()))
}

/// Registers the chart font once; an error says which files were tried and what to install.
pub fn ensure_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut tried = Vec::new();
        let mut pairs: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        if let Some(p) = std::env::var_os("RUNLEDGER_FONT") {
            pairs.push((PathBuf::from(p), None));
        }
        pairs.extend(FONT_CANDIDATES.iter().map(|(r, b)| (PathBuf::from(r), Some(PathBuf::from(b)))));
        for (regular, bold) in pairs {
            tried.push(regular.display().to_string());
            let Some(bytes) = leak_file(&regular) else { continue };
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_err() {
                continue;
            }
            let bold_bytes = bold.as_deref().and_then(leak_file).unwrap_or(bytes);
            if plotters::style::register_font(FAMILY, FontStyle::Bold, bold_bytes).is_err() {
                let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, bytes);
            }
            return Ok(());
        }
        Err(format!(
            "no TrueType font for the chart's text (tried {}): install fonts-dejavu-core, or set RUNLEDGER_FONT \
             to a .ttf file",
            tried.join(", ")
        ))
    })
    .clone()
}

/// One colour per failure category (the same in every chart), then a cycle for other series.
pub const PALETTE: [RGBColor; 16] = [
    RGBColor(31, 119, 180),  // blue
    RGBColor(255, 127, 14),  // orange
    RGBColor(44, 160, 44),   // green
    RGBColor(214, 39, 40),   // red
    RGBColor(148, 103, 189), // purple
    RGBColor(140, 86, 75),   // brown
    RGBColor(227, 119, 194), // pink
    RGBColor(127, 127, 127), // grey
    RGBColor(188, 189, 34),  // olive
    RGBColor(23, 190, 207),  // cyan
    RGBColor(174, 199, 232), // light blue
    RGBColor(255, 187, 120), // light orange
    RGBColor(152, 223, 138), // light green
    RGBColor(255, 152, 150), // light red
    RGBColor(197, 176, 213), // light purple
    RGBColor(196, 156, 148), // light brown
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the chart: {e:?}")
}

pub(crate) type Drawn = Result<(), String>;

/// Draws a PNG (with `png`) or an SVG (with `svg`) of [`WIDTH`]×[`HEIGHT`], and writes the file.
pub(crate) fn render(
    target: &PlotTarget,
    png: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Drawn,
    svg: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Drawn {
    ensure_font()?;
    target.check()?;
    let write_err = |e: String| format!("cannot write {}: {e}", target.path.display());
    if target.svg {
        let root = SVGBackend::new(&target.path, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        svg(&root)?;
        root.present().map_err(|e| write_err(format!("{e:?}")))?;
    } else {
        let root = BitMapBackend::new(&target.path, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        png(&root)?;
        root.present().map_err(|e| write_err(format!("{e:?}")))?;
    }
    // plotters reports some write errors only on drop: make sure the file is there.
    match std::fs::metadata(&target.path) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(format!("cannot write {}", target.path.display())),
    }
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

fn bold(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().style(FontStyle::Bold).color(&BLACK)
}

/// One slice of a pie: its label, count and colour.
#[derive(Clone, Debug)]
pub struct Slice {
    pub label: String,
    pub count: u64,
    pub colour: RGBColor,
}

/// A pie chart with a title, a subtitle, and a legend of label, count and share.
pub fn pie(target: &PlotTarget, title: &str, subtitle: &str, slices: &[Slice]) -> Result<(), String> {
    render(target, |r| draw_pie(r, title, subtitle, slices), |r| draw_pie(r, title, subtitle, slices))
}

fn draw_pie<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    slices: &[Slice],
) -> Result<(), String> {
    let (w, h) = root.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let centre = |s: TextStyle<'static>| s.pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(title.to_string(), (w / 2, 18), centre(bold(34.0)))).map_err(draw_err)?;
    root.draw(&Text::new(subtitle.to_string(), (w / 2, 62), centre(font(22.0)))).map_err(draw_err)?;
    let total: u64 = slices.iter().map(|s| s.count).sum();
    let (cx, cy, r) = (w * 3 / 10 + 20, h / 2 + 50, (h - 180) / 2);
    if total == 0 {
        root.draw(&Text::new("no failed jobs", (cx, cy), font(26.0).pos(Pos::new(HPos::Center, VPos::Center))))
            .map_err(draw_err)?;
    } else {
        let mut angle = -std::f64::consts::FRAC_PI_2; // start at 12 o'clock, clockwise
        for s in slices.iter().filter(|s| s.count > 0) {
            let sweep = std::f64::consts::TAU * s.count as f64 / total as f64;
            let steps = ((sweep / 0.02).ceil() as usize).max(2);
            let mut pts = vec![(cx, cy)];
            for i in 0..=steps {
                let a = angle + sweep * i as f64 / steps as f64;
                pts.push((cx + (r as f64 * a.cos()).round() as i32, cy + (r as f64 * a.sin()).round() as i32));
            }
            root.draw(&Polygon::new(pts.clone(), s.colour.filled())).map_err(draw_err)?;
            if slices.iter().filter(|s| s.count > 0).count() > 1 {
                root.draw(&PathElement::new(pts, WHITE.stroke_width(2))).map_err(draw_err)?;
            }
            let share = s.count as f64 / total as f64;
            if share >= 0.04 {
                let mid = angle + sweep / 2.0;
                let (lx, ly) = (cx + (0.68 * r as f64 * mid.cos()) as i32, cy + (0.68 * r as f64 * mid.sin()) as i32);
                let text_colour = if luminance(s.colour) > 0.6 { BLACK } else { WHITE };
                root.draw(&Text::new(
                    format!("{:.0}%", share * 100.0),
                    (lx, ly),
                    bold(22.0).color(&text_colour).pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(draw_err)?;
            }
            angle += sweep;
        }
    }
    // Legend: swatch, label, count and share, one line per slice, largest first as given.
    let lx = w * 3 / 5;
    let line_h = 34.min((h - 200) / (slices.len().max(1) as i32));
    let mut y = (h / 2 + 50) - line_h * slices.len() as i32 / 2;
    root.draw(&Text::new("category", (lx + 36, y - 40), bold(20.0))).map_err(draw_err)?;
    root.draw(&Text::new("jobs", (w - 150, y - 40), bold(20.0).pos(Pos::new(HPos::Right, VPos::Top))))
        .map_err(draw_err)?;
    root.draw(&Text::new("share", (w - 40, y - 40), bold(20.0).pos(Pos::new(HPos::Right, VPos::Top))))
        .map_err(draw_err)?;
    for s in slices {
        root.draw(&Rectangle::new([(lx, y), (lx + 24, y + 24)], s.colour.filled())).map_err(draw_err)?;
        root.draw(&Text::new(s.label.clone(), (lx + 36, y + 1), font(21.0))).map_err(draw_err)?;
        let share = if total > 0 { 100.0 * s.count as f64 / total as f64 } else { 0.0 };
        root.draw(&Text::new(s.count.to_string(), (w - 150, y + 1), font(21.0).pos(Pos::new(HPos::Right, VPos::Top))))
            .map_err(draw_err)?;
        root.draw(&Text::new(
            format!("{share:.1}%"),
            (w - 40, y + 1),
            font(21.0).pos(Pos::new(HPos::Right, VPos::Top)),
        ))
        .map_err(draw_err)?;
        y += line_h;
    }
    Ok(())
}

fn luminance(c: RGBColor) -> f64 {
    (0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2)) / 255.0
}

/// Horizontal stacked bars: one bar per group (top to bottom as given), one segment per
/// category, a legend of the categories.
pub fn stacked_bars(
    target: &PlotTarget,
    title: &str,
    subtitle: &str,
    x_label: &str,
    groups: &[(String, Vec<u64>)],
    categories: &[(String, RGBColor)],
) -> Result<(), String> {
    render(
        target,
        |r| draw_bars(r, title, subtitle, x_label, groups, categories),
        |r| draw_bars(r, title, subtitle, x_label, groups, categories),
    )
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    x_label: &str,
    groups: &[(String, Vec<u64>)],
    categories: &[(String, RGBColor)],
) -> Result<(), String> {
    let max = groups.iter().map(|(_, v)| v.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let n = groups.len().max(1);
    let label_w = groups.iter().map(|(g, _)| g.chars().count()).max().unwrap_or(4).clamp(4, 24) as u32 * 11 + 20;
    let (w, _) = root.dim_in_pixel();
    let (head, body) = root.split_vertically(110);
    let centre = |s: TextStyle<'static>| s.pos(Pos::new(HPos::Center, VPos::Top));
    head.draw(&Text::new(title.to_string(), (w as i32 / 2, 18), centre(bold(32.0)))).map_err(draw_err)?;
    head.draw(&Text::new(subtitle.to_string(), (w as i32 / 2, 62), centre(font(22.0)))).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .margin_right(300)
        .x_label_area_size(60)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..(max as f64 * 1.14), 0f64..n as f64)
        .map_err(draw_err)?;
    let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = (n as f64 - y - 0.5).round();
        if (y.fract() - 0.5).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    let x_fmt = |x: &f64| if x.fract().abs() < 1e-9 { format!("{x:.0}") } else { String::new() };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(2 * n + 1)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .x_desc(x_label)
        .label_style(font(18.0))
        .axis_desc_style(font(20.0))
        .draw()
        .map_err(draw_err)?;
    for (gi, (_, counts)) in groups.iter().enumerate() {
        let top = n as f64 - gi as f64 - 0.15;
        let bottom = n as f64 - gi as f64 - 0.85;
        let mut x0 = 0f64;
        for (ci, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let colour = categories.get(ci).map(|c| c.1).unwrap_or(BLACK);
            let x1 = x0 + c as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, bottom), (x1, top)], colour.filled())))
                .map_err(draw_err)?;
            x0 = x1;
        }
        let total: u64 = counts.iter().sum();
        chart
            .draw_series(std::iter::once(Text::new(
                total.to_string(),
                (x0 + max as f64 * 0.01, (top + bottom) / 2.0),
                font(18.0).pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .map_err(draw_err)?;
    }
    let lx = w as i32 - 280;
    let mut y = 160;
    root.draw(&Text::new("category", (lx, y - 30), bold(20.0))).map_err(draw_err)?;
    for (name, colour) in categories {
        root.draw(&Rectangle::new([(lx, y), (lx + 22, y + 22)], colour.filled())).map_err(draw_err)?;
        root.draw(&Text::new(name.clone(), (lx + 32, y + 1), font(19.0))).map_err(draw_err)?;
        y += 30;
    }
    Ok(())
}

/// A named set of points.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub colour: RGBColor,
}

/// A scatter plot on a logarithmic x axis, with a line through `median` and a legend.
pub fn scatter(
    target: &PlotTarget,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    median: &[(f64, f64)],
) -> Result<(), String> {
    render(
        target,
        |r| draw_scatter(r, title, x_label, y_label, series, median),
        |r| draw_scatter(r, title, x_label, y_label, series, median),
    )
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    median: &[(f64, f64)],
) -> Result<(), String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut xmin, mut xmax, mut ymax) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in all {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        (xmin, xmax, ymax) = (1.0, 2.0, 1.0);
    }
    // The x axis is log2(x), labelled with powers of two: 1, 2, 4, 8, … ranks.
    let (lo, hi) = (xmin.max(1.0).log2().floor(), xmax.max(1.0).log2().ceil());
    let (lo, hi) = (lo - 0.5, hi + 0.5);
    let ymax = if ymax > 0.0 { ymax * 1.12 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(title, bold(32.0))
        .margin(24)
        .x_label_area_size(70)
        .y_label_area_size(120)
        .build_cartesian_2d(lo..hi, 0f64..ymax)
        .map_err(draw_err)?;
    let y_fmt = |y: &f64| fmt_num(*y);
    let x_fmt = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 {
            fmt_num(2f64.powi(x.round() as i32))
        } else {
            String::new()
        }
    };
    let to_log = |p: (f64, f64)| (p.0.max(1.0).log2(), p.1);
    let median: Vec<(f64, f64)> = median.iter().map(|&p| to_log(p)).collect();
    chart
        .configure_mesh()
        .x_labels(((hi - lo) * 2.0).round() as usize + 1)
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(font(18.0))
        .axis_desc_style(font(21.0))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    if series.iter().all(|s| s.points.is_empty()) {
        let area = chart.plotting_area();
        let (xr, yr) = area.get_pixel_range();
        let (x0, x1, y0, y1) = (xr.start, xr.end, yr.start, yr.end);
        let note = "no job here has both a size and a step count in its logs";
        root.draw(&Text::new(
            note,
            ((x0 + x1) / 2, (y0 + y1) / 2),
            font(24.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(draw_err)?;
    }
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let c = s.colour;
        chart
            .draw_series(s.points.iter().map(move |&p| Circle::new(to_log(p), 6, c.mix(0.75).filled())))
            .map_err(draw_err)?
            .label(format!("{} ({})", s.label, s.points.len()))
            .legend(move |(x, y)| Circle::new((x + 10, y), 6, c.filled()));
    }
    if !median.is_empty() {
        let line = RGBColor(20, 20, 20);
        chart
            .draw_series(LineSeries::new(median.iter().copied(), line.stroke_width(3)))
            .map_err(draw_err)?
            .label("median")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line.stroke_width(3)));
        chart.draw_series(median.iter().map(|&p| TriangleMarker::new(p, 7, line.filled()))).map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(font(19.0))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// A number for an axis or a table: up to 4 significant digits, scientific when very small or large.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        // 6.00e-5 → 6e-5, 1.50e7 → 1.5e7
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') { m.trim_end_matches('0').trim_end_matches('.') } else { m };
        return format!("{m}e{e}");
    }
    let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn signature_ok(path: &Path, svg: bool) -> bool {
        let b = std::fs::read(path).unwrap();
        if svg {
            b.starts_with(b"<svg") || b.starts_with(b"<?xml")
        } else {
            b.starts_with(b"\x89PNG\r\n\x1a\n")
        }
    }

    #[test]
    fn targets_need_png_or_svg() {
        assert_eq!(parse_plot_target("a/b.PNG").unwrap(), PlotTarget { path: "a/b.PNG".into(), svg: false });
        assert!(parse_plot_target("x.svg").unwrap().svg);
        let e = parse_plot_target("chart.pdf").unwrap_err();
        assert!(e.contains("'chart.pdf'") && e.contains(".png or .svg"), "{e}");
        assert!(parse_plot_target("chart").is_err());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(12.345), "12.35");
        assert_eq!(fmt_num(256.0), "256");
        assert_eq!(fmt_num(0.000123), "1.23e-4");
        assert_eq!(fmt_num(0.00006), "6e-5");
    }

    #[test]
    fn charts_are_written_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let slices = vec![
            Slice { label: "input_error".into(), count: 5, colour: colour(1) },
            Slice { label: "time_limit".into(), count: 3, colour: colour(4) },
        ];
        let series =
            vec![Series { label: "jobs".into(), points: vec![(1.0, 2.0), (4.0, 3.0), (16.0, 5.0)], colour: colour(0) }];
        for ext in ["png", "svg"] {
            let t = parse_plot_target(dir.path().join(format!("pie.{ext}")).to_str().unwrap()).unwrap();
            pie(&t, "Failures", "8 failed jobs", &slices).unwrap();
            assert!(signature_ok(&t.path, t.svg), "{ext}");
            let t = parse_plot_target(dir.path().join(format!("bars.{ext}")).to_str().unwrap()).unwrap();
            let cats = vec![("input_error".to_string(), colour(1)), ("time_limit".to_string(), colour(4))];
            stacked_bars(
                &t,
                "By user",
                "8 failed",
                "failed jobs",
                &[("alice".into(), vec![3, 1]), ("bob".into(), vec![2, 2])],
                &cats,
            )
            .unwrap();
            assert!(signature_ok(&t.path, t.svg), "{ext}");
            let t = parse_plot_target(dir.path().join(format!("sc.{ext}")).to_str().unwrap()).unwrap();
            scatter(&t, "Efficiency", "MPI ranks", "core-s per atom per step", &series, &[(1.0, 2.0), (16.0, 5.0)])
                .unwrap();
            assert!(signature_ok(&t.path, t.svg), "{ext}");
        }
        // Many jobs, and none: what an admin sees ($RUNLEDGER_KEEP_PLOTS=DIR keeps them to look at).
        let keep = std::env::var_os("RUNLEDGER_KEEP_PLOTS").map(PathBuf::from);
        let out = keep.unwrap_or_else(|| dir.path().to_path_buf());
        let mut pts = Vec::new();
        for (i, ranks) in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0].iter().enumerate() {
            for k in 0..(12 - i) {
                let noise = 1.0 + 0.3 * ((k * 7919 + i * 104_729) % 100) as f64 / 100.0;
                pts.push((*ranks, 2.0e-6 * (1.0 + 0.08 * i as f64 * i as f64) * noise));
            }
        }
        let med: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, 2.3e-6 * (1.0 + 0.08 * (i * i) as f64)))
            .collect();
        let many = vec![Series { label: "jobs".into(), points: pts, colour: colour(0) }];
        let t = PlotTarget { path: out.join("scatter-many.png"), svg: false };
        scatter(
            &t,
            "Efficiency against MPI ranks — LAMMPS",
            "MPI ranks (logarithmic)",
            "core-seconds per atom per step",
            &many,
            &med,
        )
        .unwrap();
        assert!(signature_ok(&t.path, false));
        let none = vec![Series { label: "jobs".into(), points: vec![], colour: colour(0) }];
        let t = PlotTarget { path: out.join("scatter-empty.svg"), svg: true };
        scatter(&t, "Efficiency", "MPI ranks", "core-seconds per atom per step", &none, &[]).unwrap();
        assert!(std::fs::read_to_string(&t.path).unwrap().contains("no job here has both"));
        let t = PlotTarget { path: dir.path().join("no/such/dir/x.png"), svg: false };
        assert!(pie(&t, "t", "s", &slices).unwrap_err().contains("no directory"));
    }
}
