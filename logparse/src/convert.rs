//! Value templates and conversions used by the rules (`set`, `units`, `convert`, `label`).

use std::collections::HashMap;

/// Longest fact value or evidence line kept, in bytes.
pub const MAX_VALUE: usize = 1024;

/// A string with `{group}` references to a rule's capture groups.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    /// Parses `text`; `{name}` is a reference, `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) if ch.is_ascii_alphanumeric() || ch == '_' => name.push(ch),
                            Some(ch) => return Err(format!("template {text:?}: unexpected {ch:?} in a {{reference}}")),
                            None => return Err(format!("template {text:?}: unclosed {{")),
                        }
                    }
                    if name.is_empty() {
                        return Err(format!("template {text:?}: empty {{}}"));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => return Err(format!("template {text:?}: unmatched }} (write }}}} for a literal one)")),
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// The text with references filled in; `None` if a referenced group did not take part in
    /// the match.
    pub fn render(&self, groups: &HashMap<&str, String>) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(groups.get(v.as_str())?),
            }
        }
        Some(out)
    }
}

/// What `convert` does to a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Convert {
    /// Trimmed text (the default).
    Text,
    /// An integer; dropped if it is not one.
    Int,
    /// A number as printed (Fortran `1.0D+03` accepted); dropped if it is not one.
    Number,
    /// A duration ("7m18.39s", "1h 2m", "0:01:02", "1-02:03:04", "12.5") in seconds.
    Duration,
    /// The product of the integers separated by `*` or `x` ("2*2*1" → 4).
    Product,
    /// Lower-cased text.
    Lower,
}

impl Convert {
    pub const NAMES: &'static str = "text, int, number, duration, product, lower";

    pub fn parse(s: &str) -> Option<Convert> {
        Some(match s {
            "text" => Convert::Text,
            "int" => Convert::Int,
            "number" => Convert::Number,
            "duration" => Convert::Duration,
            "product" => Convert::Product,
            "lower" => Convert::Lower,
            _ => return None,
        })
    }

    pub fn apply(self, raw: &str) -> Option<String> {
        let s = raw.trim();
        match self {
            Convert::Text => Some(s.to_string()),
            Convert::Lower => Some(s.to_lowercase()),
            Convert::Int => s.parse::<i64>().ok().map(|v| v.to_string()),
            Convert::Number => parse_number(s).map(|_| s.to_string()),
            Convert::Duration => parse_duration(s).map(format_number),
            Convert::Product => {
                let mut p: i64 = 1;
                for part in s.split(['*', 'x', 'X']) {
                    p = p.checked_mul(part.trim().parse::<i64>().ok()?)?;
                }
                Some(p.to_string())
            }
        }
    }
}

/// Parses a number as logs print them (`1.5`, `-3e-05`, Fortran `1.0D+03`, `nan`).
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let lower = s.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "nan" => return Some(f64::NAN),
        "inf" | "infinity" => return Some(if lower.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        _ => {}
    }
    if lower.contains('d') {
        return lower.replace('d', "e").parse::<f64>().ok();
    }
    None
}

/// Formats a computed number: integers without a fraction, others with at most 6 decimals.
pub(crate) fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Seconds in "7m18.39s", "7m 6.26s", "1h 2m 3s", "2d 3h", "6s95ms", "0:00:00", "1:02", "1-02:03:04",
/// "12.5".
pub(crate) fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    if s.contains(':') {
        let (days, rest) = match s.split_once('-') {
            Some((d, r)) => (d.trim().parse::<f64>().ok()?, r),
            None => (0.0, s),
        };
        let mut total = 0.0;
        for part in rest.split(':') {
            total = total * 60.0 + part.trim().parse::<f64>().ok()?;
        }
        return Some(days * 86400.0 + total);
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut any = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'd' | 'h' | 'm' | 's' => {
                let v: f64 = num.parse().ok()?;
                num.clear();
                // "ms" is milliseconds (ORCA's "6 seconds 95 msec" written as "6s95ms").
                let millis = c == 'm' && chars.peek() == Some(&'s');
                if millis {
                    chars.next();
                }
                total += v * match c {
                    _ if millis => 0.001,
                    'd' => 86400.0,
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                any = true;
            }
            ' ' | '\t' if num.is_empty() => {}
            _ => return None,
        }
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total)
}

/// Text of a log line fit for a fact or evidence: lossy UTF-8, control characters as spaces,
/// trimmed, at most [`MAX_VALUE`] bytes.
pub(crate) fn clean(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let t = out.trim();
    if t.len() != out.len() {
        out = t.to_string();
    }
    truncate(&mut out, MAX_VALUE);
    out
}

pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Removes the rank tags MPI launchers and parallel codes put before a line: `[3] `,
/// `[host:1234] `, `[1,0]<stderr>:`. Repeated tags are all removed.
pub(crate) fn strip_rank_prefix(line: &str) -> &str {
    let mut s = line.trim_start();
    loop {
        let Some(rest) = s.strip_prefix('[') else { return s };
        let Some(close) = rest.find(']') else { return s };
        let tag = &rest[..close];
        let numeric = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit() || b == b',');
        let host_pid = tag
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(numeric || host_pid) || tag.contains(' ') {
            return s;
        }
        let mut after = &rest[close + 1..];
        for tagname in ["<stdout>:", "<stderr>:"] {
            if let Some(a) = after.strip_prefix(tagname) {
                after = a;
            }
        }
        s = after.trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7m18.39s").map(format_number).as_deref(), Some("438.39"));
        assert_eq!(parse_duration("7m 6.26s").map(format_number).as_deref(), Some("426.26"));
        assert_eq!(parse_duration("0d0h0m6s95ms").map(format_number).as_deref(), Some("6.095"));
        assert_eq!(parse_duration("0:00:00"), Some(0.0));
        assert_eq!(parse_duration("1:02:03"), Some(3723.0));
        assert_eq!(parse_duration("1-00:00:10"), Some(86410.0));
        assert_eq!(parse_duration("1h 2m"), Some(3720.0));
        assert_eq!(parse_duration("2d 3h"), Some(2.0 * 86400.0 + 3.0 * 3600.0));
        assert_eq!(parse_duration("12.5"), Some(12.5));
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(parse_duration("5"), Some(5.0));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(180.413), "180.413");
        assert_eq!(format_number(4.0), "4");
        assert_eq!(parse_number("1.0D+03"), Some(1000.0));
        assert!(parse_number("-nan").unwrap().is_nan());
        assert_eq!(Convert::Product.apply("2*2*1").as_deref(), Some("4"));
        assert_eq!(Convert::Product.apply("2x4").as_deref(), Some("8"));
        assert_eq!(Convert::Int.apply("x"), None);
    }

    #[test]
    fn templates() {
        let t = Template::parse("{_a}x{_b} {{lit}}").unwrap();
        let mut g = HashMap::new();
        g.insert("_a", "74".to_string());
        g.insert("_b", "61".to_string());
        assert_eq!(t.render(&g).as_deref(), Some("74x61 {lit}"));
        assert!(Template::parse("{a").is_err());
        assert!(Template::parse("a}").is_err());
        assert!(Template::parse("{a b}").is_err());
    }

    #[test]
    fn rank_prefixes() {
        assert_eq!(strip_rank_prefix("[2] Unknown solver"), "Unknown solver");
        assert_eq!(strip_rank_prefix("[ksh:01381] 3 more processes"), "3 more processes");
        assert_eq!(strip_rank_prefix("[1,0]<stderr>: ERROR: x"), "ERROR: x");
        assert_eq!(strip_rank_prefix("[ERROR] disk"), "[ERROR] disk");
        assert_eq!(strip_rank_prefix("[0] [1] x"), "x");
    }
}
