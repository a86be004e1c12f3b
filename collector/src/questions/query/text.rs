//! The text of every answer: recorded values escaped for a terminal ([`shown`]), aligned tables
//! ([`aligned`]) and CSV cells ([`csv_cell`], [`csv_text_cell`]). Used by the job listings
//! ([`super::output`]) and the analyses' reports ([`super::report`]) alike.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A recorded value as a terminal may show it: control characters (C0 including newline and tab,
/// DEL, C1) and the bidirectional overrides that reorder what is shown are written as escapes
/// (`\x1b`, `\n`, `\u{202e}`); everything else, backslashes included, is shown as it is. Job names,
/// argv, environments and log lines are the users' own text: raw, they could move the cursor,
/// retitle or clear the admin's terminal, or fake lines of the output.
pub fn shown(s: &str) -> Cow<'_, str> {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let bad = |c: char| c.is_control() || bidi(c);
    // Most cells are printable ASCII: decided by one pass over the bytes.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) || !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if bad(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// An aligned text table, as every `query` prints by default: columns as wide as their widest
/// cell (and name, with `header`), right-aligned where `right` says, separated by `sep`, under a
/// header line and a rule of dashes.
pub fn aligned(names: &[String], cells: &[Vec<String>], right: &[bool], sep: &str, header: bool) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    aligned_with(&names, cells.len(), |r, c| cells[r].get(c).map_or("", String::as_str), right, sep, header)
}

/// [`aligned`] over `rows` rows of cells given by `cell(row, column)`.
pub(crate) fn aligned_with<'a>(
    names: &[&'a str],
    rows: usize,
    cell: impl Fn(usize, usize) -> &'a str,
    right: &[bool],
    sep: &str,
    header: bool,
) -> String {
    // Recorded text reaches a terminal: control characters escaped (see [`shown`]).
    let cell = |r: usize, c: usize| shown(cell(r, c));
    // Thousands of rows: the width of a cell counted cheaply, each line written in place.
    let width = |s: &str| if s.is_ascii() { s.len() } else { s.chars().count() };
    let cols = names.len();
    let mut widths: Vec<usize> = names.iter().map(|n| if header { width(n) } else { 0 }).collect();
    for r in 0..rows {
        for (c, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(width(&cell(r, c)));
        }
    }
    let line_len = widths.iter().sum::<usize>() + sep.len() * cols + 1;
    let spaces = |out: &mut String, n: usize| {
        const SPACES: &str = "                                                                ";
        let mut n = n;
        while n > 0 {
            let k = n.min(SPACES.len());
            out.push_str(&SPACES[..k]);
            n -= k;
        }
    };
    let mut out = String::with_capacity(line_len * (rows + 2));
    let line = |out: &mut String, value: &dyn Fn(usize) -> Cow<'a, str>| {
        let start = out.len();
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            let v = value(i);
            let pad = w.saturating_sub(width(&v));
            if right.get(i).copied().unwrap_or(false) {
                spaces(out, pad);
                out.push_str(&v);
            } else {
                out.push_str(&v);
                // The last column's padding would be trimmed off again.
                if i + 1 < cols {
                    spaces(out, pad);
                }
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    if header {
        line(&mut out, &|c| Cow::Borrowed(names[c]));
        let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rules.join(sep));
        out.push('\n');
    }
    for r in 0..rows {
        line(&mut out, &|c| cell(r, c));
    }
    out
}

/// A text cell made safe for a spreadsheet (OWASP's CSV-injection advice): one that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return would be read as a formula, so it gets a leading
/// single quote. Only for text (names, argv, log lines): numbers such as `-1` stay numbers.
pub fn spreadsheet_safe(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A text cell of a CSV file: [`spreadsheet_safe`], then quoted as CSV needs.
pub fn csv_text_cell(s: &str) -> String {
    csv_cell(&spreadsheet_safe(s)).into_owned()
}

/// A cell of a CSV file, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}
