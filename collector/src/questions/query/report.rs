//! A small typed result table for the analytics queries (summary, modules, events, …), rendered
//! as an aligned table, CSV or JSON.
//!
//! Cells keep their type: the table shows durations as `[D-]HH:MM:SS` and ratios as percentages,
//! CSV and JSON carry the raw numbers (seconds, fractions 0–1) under column names that say the
//! unit (`wall_p50_s`, `failure_rate`).

pub use super::text::{csv_cell, csv_text_cell, spreadsheet_safe};
use crate::questions::timefmt;
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    /// A number shown with this many decimals in the table.
    Float(f64, usize),
    /// Seconds, shown as `[D-]HH:MM:SS`.
    Secs(f64),
    /// A fraction 0–1, shown as a percentage with one decimal.
    Ratio(f64),
    /// Unix seconds, shown in local time.
    Time(i64),
}

impl Cell {
    pub fn opt_ratio(num: f64, den: f64) -> Cell {
        if den > 0.0 {
            Cell::Ratio(num / den)
        } else {
            Cell::Null
        }
    }

    fn table_text(&self) -> String {
        match self {
            Cell::Null => "-".into(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f, p) => format!("{f:.p$}"),
            Cell::Secs(s) => timefmt::elapsed(s.round() as i64),
            Cell::Ratio(r) => format!("{:.1}%", r * 100.0),
            Cell::Time(t) => timefmt::display(Some(*t)),
        }
    }

    fn raw_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f, _) | Cell::Secs(f) => trim_float(*f),
            Cell::Ratio(r) => format!("{r:.6}").trim_end_matches('0').trim_end_matches('.').to_string(),
            Cell::Time(t) => timefmt::rfc3339(*t),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f, _) | Cell::Secs(f) | Cell::Ratio(f) => {
                serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null)
            }
            Cell::Time(t) => Value::String(timefmt::rfc3339(*t)),
        }
    }

    fn right_aligned(&self) -> bool {
        !matches!(self, Cell::Text(_) | Cell::Time(_))
    }

    /// A number to sort by (text sorts as text, see [`Report::sort_by`]).
    pub fn num(&self) -> Option<f64> {
        match self {
            Cell::Int(i) | Cell::Time(i) => Some(*i as f64),
            Cell::Float(f, _) | Cell::Secs(f) | Cell::Ratio(f) => Some(*f),
            _ => None,
        }
    }
}

fn trim_float(f: f64) -> String {
    if f == f.trunc() && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        let s = format!("{f:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Rows of typed cells under named columns.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// How a report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Report {
    pub fn new(columns: &[&str]) -> Report {
        Report { columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() }
    }

    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Sorts by one column: numbers descending when `desc`, text ascending (nulls last).
    pub fn sort_by(&mut self, col: usize, desc: bool) {
        self.rows.sort_by(|a, b| {
            let (x, y) = (&a[col], &b[col]);
            let ord = match (x.num(), y.num()) {
                (Some(p), Some(q)) => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
                (Some(_), None) => return std::cmp::Ordering::Less,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                (None, None) => match (x, y) {
                    (Cell::Text(p), Cell::Text(q)) => p.cmp(q),
                    (Cell::Null, Cell::Null) => std::cmp::Ordering::Equal,
                    (Cell::Null, _) => return std::cmp::Ordering::Greater,
                    (_, Cell::Null) => return std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Equal,
                },
            };
            if desc {
                ord.reverse()
            } else {
                ord
            }
        });
    }

    pub fn render(&self, format: Format, header: bool) -> String {
        match format {
            Format::Table => self.table(header),
            Format::Csv => self.csv(header),
            Format::Json => self.json(),
        }
    }

    pub fn table(&self, header: bool) -> String {
        let cells: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(Cell::table_text).collect()).collect();
        // A column is right-aligned when its first non-null cell is a number.
        let right: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                self.rows.iter().map(|r| &r[i]).find(|c| **c != Cell::Null).map(Cell::right_aligned).unwrap_or(true)
            })
            .collect();
        super::text::aligned(&self.columns, &cells, &right, "  ", header)
    }

    pub fn csv(&self, header: bool) -> String {
        let mut out = String::new();
        if header {
            out.push_str(&self.columns.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        for r in &self.rows {
            let cells = r.iter().map(|c| match c {
                Cell::Text(s) => csv_text_cell(s),
                other => csv_cell(&other.raw_text()).into_owned(),
            });
            out.push_str(&cells.collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    pub fn json_rows(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (c, v) in self.columns.iter().zip(r) {
                    m.insert(c.clone(), v.json());
                }
                Value::Object(m)
            })
            .collect()
    }

    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&Value::Array(self.json_rows())).expect("JSON values serialize");
        s.push('\n');
        s
    }
}

/// Linear-interpolated quantile (numpy's default) of sorted values; `None` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_are_kept_from_spreadsheet_formulas_and_numbers_stay_numbers() {
        for (cell, csv) in [
            ("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""),
            ("+1+2", "'+1+2"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("a,=b", "\"a,=b\""),
            ("plain", "plain"),
            ("", ""),
        ] {
            assert_eq!(csv_text_cell(cell), csv, "{cell:?}");
        }
        let mut t = Report::new(&["name", "n", "rate"]);
        t.rows.push(vec![Cell::Text("-x".into()), Cell::Int(-1), Cell::Float(-0.5, 1)]);
        assert_eq!(t.csv(false), "'-x,-1,-0.5\n", "numbers are not text: -1 stays -1");
    }

    #[test]
    fn tables_escape_terminal_control_characters() {
        let mut t = Report::new(&["module", "jobs"]);
        t.rows.push(vec![Cell::Text("evil\x1b]0;owned\x07\u{202e}cba".into()), Cell::Int(1)]);
        t.rows.push(vec![Cell::Text("two\nlines".into()), Cell::Int(2)]);
        let text = t.table(true);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("evil\\x1b]0;owned\\x07\\u{202e}cba"), "{text}");
        assert!(text.contains("two\\nlines"), "{text}");
        assert_eq!(text.lines().count(), 4, "a newline in a value does not make a row: {text}");
        // Columns stay aligned on the escaped width (the last one is right-aligned).
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), 95) == 95.05
        assert!((quantile(&v, 0.95).unwrap() - 95.05).abs() < 1e-9);
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
    }

    #[test]
    fn renders_typed_cells() {
        let mut r = Report::new(&["name", "jobs", "wall_p50_s", "failure_rate"]);
        r.rows.push(vec![Cell::Text("a,b".into()), Cell::Int(3), Cell::Secs(3725.0), Cell::Ratio(0.25)]);
        r.rows.push(vec![Cell::Text("c".into()), Cell::Int(10), Cell::Null, Cell::Ratio(0.0)]);
        let t = r.table(true);
        assert!(t.contains("01:02:05") && t.contains("25.0%"), "{t}");
        assert_eq!(r.csv(true), "name,jobs,wall_p50_s,failure_rate\n\"a,b\",3,3725,0.25\nc,10,,0\n");
        let j: Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j[0]["wall_p50_s"], 3725.0);
        assert_eq!(j[1]["wall_p50_s"], Value::Null);
        r.sort_by(1, true);
        assert_eq!(r.rows[0][1], Cell::Int(10));
        r.sort_by(0, false);
        assert_eq!(r.rows[0][0], Cell::Text("a,b".into()));
    }
}
