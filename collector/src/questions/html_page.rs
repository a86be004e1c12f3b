//! The building blocks of `collector report`'s page ([`crate::questions::html_report`]): the
//! stylesheet, the [`Page`] being written (headings, notes, inline SVG charts, tables) and the
//! text of its cells, escaped ([`esc`]) so that nothing users recorded can become markup.

use crate::failure::Failure;
use crate::questions::analytics::FilterArgs;
use crate::questions::plot::PlotTarget;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

pub(crate) const CSS: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em;color:#222;max-width:1300px}\
h1{margin-bottom:0}h2{border-bottom:2px solid #4a7ab5;padding-bottom:.2em;margin-top:2em}\
.scope{font-size:1.2em}.generated{color:#777}\
.headline{display:flex;flex-wrap:wrap;gap:1em}.headline div{background:#eef3fa;padding:.8em 1.2em;border-radius:6px}\
.headline .num{font-size:1.8em;font-weight:bold;display:block}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em}\
th{background:#eef3fa}td.n{text-align:right}caption{text-align:left;font-weight:bold;padding:.3em 0}\
figure{margin:1em 0}svg{max-width:100%;height:auto}.none{color:#777;font-style:italic}";

pub(crate) struct Page<'a> {
    pub(crate) db: &'a Path,
    pub(crate) filter: &'a FilterArgs,
    pub(crate) scratch: &'a Path,
    pub(crate) body: String,
    pub(crate) charts: usize,
}

/// A table cell's text and whether it is a number (right-aligned).
pub(crate) type Cells = Vec<(String, bool)>;

impl Page<'_> {
    pub(crate) fn h2(&mut self, id: &str, title: &str) {
        let _ = writeln!(self.body, "<h2 id=\"{id}\">{}</h2>", esc(title));
    }

    pub(crate) fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"none\">{}</p>", esc(text));
    }

    /// Draws a chart with `draw` (into a scratch SVG) and inlines it.
    pub(crate) fn chart(
        &mut self,
        name: &str,
        draw: impl FnOnce(PlotTarget) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        self.charts += 1;
        let path = self.scratch.join(format!("chart{}.svg", self.charts));
        draw(PlotTarget { path: path.clone(), svg: true })?;
        let svg = std::fs::read_to_string(&path)
            .map_err(|e| Failure::new(format!("reading the chart {}: {e}", path.display())))?;
        let svg = svg.find("<svg").map(|i| &svg[i..]).unwrap_or(&svg);
        let _ = writeln!(self.body, "<figure data-chart=\"{name}\">{svg}</figure>");
        Ok(())
    }

    pub(crate) fn table(&mut self, id: &str, caption: &str, header: &[&str], rows: &[Cells]) {
        let _ = write!(
            self.body,
            "<table id=\"{id}\" data-rows=\"{}\"><caption>{}</caption>\n<thead><tr>",
            rows.len(),
            esc(caption)
        );
        for h in header {
            let _ = write!(self.body, "<th>{}</th>", esc(h));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for (text, num) in row {
                let class = if *num { " class=\"n\"" } else { "" };
                let _ = write!(self.body, "<td{class}>{}</td>", esc(text));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table>\n");
    }
}

pub(crate) fn json_rows(buf: &[u8]) -> Result<Vec<Value>, Failure> {
    match serde_json::from_slice::<Value>(buf) {
        Ok(Value::Array(v)) => Ok(v),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(Failure::new(format!("report: a query's answer is not JSON: {e}"))),
    }
}

pub(crate) fn module_label(r: &Value) -> String {
    let name = r["module"].as_str().unwrap_or("");
    match r["version"].as_str() {
        Some(v) if !v.is_empty() => format!("{name}/{v}"),
        _ => name.to_string(),
    }
}

pub(crate) fn int(v: &Value) -> String {
    v.as_i64().map(|i| i.to_string()).unwrap_or_else(|| "-".into())
}

pub(crate) fn float(v: &Value, p: usize) -> String {
    v.as_f64().map(|f| format!("{f:.p$}")).unwrap_or_else(|| "-".into())
}

pub(crate) fn pct(v: &Value) -> String {
    v.as_f64().map(|f| format!("{:.1}%", f * 100.0)).unwrap_or_else(|| "-".into())
}

pub(crate) fn ratio(n: f64, d: f64) -> String {
    if d > 0.0 {
        format!("{:.1}%", n / d * 100.0)
    } else {
        "-".into()
    }
}

pub(crate) fn secs(v: &Value) -> String {
    v.as_f64().map(|s| crate::questions::timefmt::elapsed(s.round() as i64)).unwrap_or_else(|| "-".into())
}

/// Text for HTML: what users recorded (names, modules, programs) can never become markup.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}
