//! What the rules' patterns are turned into before compiling, and what the scanner keys them on.
//!
//! * Character classes never match a line end (`\s`, `[^x]`, `\D` lose `\n`): a pattern crosses
//!   a line end only where it says `\n`, and at most [`MAX_LINE_ENDS`] of them. So a search
//!   started on a line looks at most that many lines ahead, and searching from each line in
//!   turn stays linear in the text, whatever a site writes.
//! * Required literals: a small set of byte strings one of which occurs in every match. The
//!   scanner looks for these with Aho-Corasick and runs a pattern only on lines that contain
//!   one of its literals.

use regex_syntax::hir::{
    Capture, Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Repetition,
};
use regex_syntax::ParserBuilder;

/// Most line ends one pattern may cross.
pub const MAX_LINE_ENDS: usize = 16;

/// A pattern ready to compile.
pub struct Prepared {
    /// The pattern to compile (classes without `\n`), as regex syntax.
    pub regex: String,
    /// It crosses line ends.
    pub multiline: bool,
}

fn parse(src: &str) -> Result<Hir, String> {
    ParserBuilder::new().multi_line(true).unicode(false).utf8(false).build().parse(src).map_err(|e| e.to_string())
}

/// Checks `src` and makes its classes stop at line ends (see the module docs).
pub fn prepare(src: &str) -> Result<Prepared, String> {
    let hir = strip_newlines(&parse(src)?);
    let ends = line_ends(&hir).ok_or_else(|| {
        format!("a repetition of something that contains \\n is unbounded: bound it (e.g. {{0,{MAX_LINE_ENDS}}})")
    })?;
    if ends > MAX_LINE_ENDS {
        return Err(format!("crosses up to {ends} line ends; at most {MAX_LINE_ENDS}"));
    }
    Ok(Prepared { regex: hir.to_string(), multiline: ends > 0 })
}

fn strip_newlines(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Class(Class::Bytes(c)) => {
            let mut c = c.clone();
            c.difference(&ClassBytes::new([ClassBytesRange::new(b'\n', b'\n')]));
            Hir::class(Class::Bytes(c))
        }
        HirKind::Class(Class::Unicode(c)) => {
            let mut c = c.clone();
            c.difference(&ClassUnicode::new([ClassUnicodeRange::new('\n', '\n')]));
            Hir::class(Class::Unicode(c))
        }
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(strip_newlines(&r.sub)),
        }),
        HirKind::Capture(c) => {
            Hir::capture(Capture { index: c.index, name: c.name.clone(), sub: Box::new(strip_newlines(&c.sub)) })
        }
        HirKind::Concat(xs) => Hir::concat(xs.iter().map(strip_newlines).collect()),
        HirKind::Alternation(xs) => Hir::alternation(xs.iter().map(strip_newlines).collect()),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Look(_) => h.clone(),
    }
}

/// Most line ends a match can contain; `None` if unbounded.
fn line_ends(h: &Hir) -> Option<usize> {
    match h.kind() {
        HirKind::Literal(l) => Some(l.0.iter().filter(|&&b| b == b'\n').count()),
        HirKind::Empty | HirKind::Look(_) | HirKind::Class(_) => Some(0),
        HirKind::Capture(c) => line_ends(&c.sub),
        HirKind::Repetition(r) => match (line_ends(&r.sub)?, r.max) {
            (0, _) => Some(0),
            (k, Some(m)) => k.checked_mul(m as usize),
            (_, None) => None,
        },
        HirKind::Concat(xs) => xs.iter().try_fold(0usize, |acc, x| acc.checked_add(line_ends(x)?)),
        HirKind::Alternation(xs) => xs.iter().try_fold(0usize, |acc, x| Some(acc.max(line_ends(x)?))),
    }
}

/// Most strings in a cross product of small classes (they grow fast).
const MAX_SET: usize = 64;
/// Most strings in a literal set (unions of alternatives).
const MAX_UNION: usize = 512;
/// Longest literal kept.
const MAX_LEN: usize = 128;
/// Largest character class expanded into its bytes (`[Nn]`, `[-+]`).
const MAX_CLASS: usize = 4;
/// Shortest literal worth prefiltering on; patterns with shorter ones use the automaton pass.
pub const MIN_USEFUL: usize = 2;

type Set = Vec<Vec<u8>>;

/// The required literals of `src` (parsed with the same flags as the rules' regexes), or
/// `None` if there is no useful set.
pub fn required(src: &str) -> Option<Set> {
    let hir = parse(src).ok()?;
    let set = req(&hir)?;
    // The scanner looks for literals within lines: a literal crossing a line end is replaced
    // by its longest piece between line ends (every match contains that piece too).
    let set: Set = set
        .into_iter()
        .map(|l| l.split(|&b| b == b'\n').max_by_key(|p| p.len()).unwrap_or_default().to_vec())
        .collect();
    let set = dedup(set)?;
    let min = set.iter().map(Vec::len).min()?;
    (min >= MIN_USEFUL).then_some(set)
}

/// Every string `h` can match, if that is a small finite set.
fn exact(h: &Hir) -> Option<Set> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(vec![Vec::new()]),
        HirKind::Literal(l) => Some(vec![l.0.to_vec()]),
        HirKind::Class(Class::Bytes(c)) => {
            let n: usize = c.ranges().iter().map(|r| (r.end() - r.start()) as usize + 1).sum();
            (n <= MAX_CLASS).then(|| c.ranges().iter().flat_map(|r| r.start()..=r.end()).map(|b| vec![b]).collect())
        }
        HirKind::Class(Class::Unicode(c)) => {
            let n: usize = c.ranges().iter().map(|r| (r.end() as usize) - (r.start() as usize) + 1).sum();
            if n > MAX_CLASS || c.ranges().iter().any(|r| !r.end().is_ascii()) {
                return None;
            }
            Some(c.ranges().iter().flat_map(|r| r.start()..=r.end()).map(|ch| vec![ch as u8]).collect())
        }
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Repetition(r) if r.min == 0 && r.max == Some(1) => {
            let mut s = exact(&r.sub)?;
            s.push(Vec::new());
            dedup(s)
        }
        HirKind::Repetition(_) => None,
        HirKind::Concat(xs) => {
            let mut acc: Set = vec![Vec::new()];
            for x in xs {
                acc = cross(&acc, &exact(x)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(xs) => {
            let mut acc = Vec::new();
            for x in xs {
                acc.extend(exact(x)?);
            }
            dedup(acc)
        }
    }
}

fn cross(a: &Set, b: &Set) -> Option<Set> {
    if a.len() * b.len() > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            if s.len() > MAX_LEN {
                return None;
            }
            out.push(s);
        }
    }
    dedup(out)
}

fn dedup(mut s: Set) -> Option<Set> {
    s.sort();
    s.dedup();
    (s.len() <= MAX_UNION).then_some(s)
}

/// Higher is better: the shortest literal's length (what the prefilter keys on), then fewer
/// literals.
fn score(s: &Set) -> (usize, usize) {
    let min = s.iter().map(Vec::len).min().unwrap_or(0);
    (min.min(16), MAX_UNION + 1 - s.len().min(MAX_UNION))
}

/// A set one of which occurs in every match of `h`.
fn req(h: &Hir) -> Option<Set> {
    if let Some(e) = exact(h) {
        if e.iter().all(|l| !l.is_empty()) {
            return Some(e);
        }
    }
    match h.kind() {
        HirKind::Capture(c) => req(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => req(&r.sub),
        HirKind::Alternation(xs) => {
            let mut acc = Vec::new();
            for x in xs {
                acc.extend(req(x)?);
            }
            dedup(acc)
        }
        HirKind::Concat(xs) => {
            let mut best: Option<Set> = None;
            let mut consider = |s: Set| {
                if s.iter().any(Vec::is_empty) {
                    return;
                }
                if best.as_ref().is_none_or(|b| score(&s) > score(b)) {
                    best = Some(s);
                }
            };
            // Each child alone, and each run of consecutive children with exact sets.
            for x in xs {
                if let Some(s) = req(x) {
                    consider(s);
                }
            }
            let exacts: Vec<Option<Set>> = xs.iter().map(exact).collect();
            for i in 0..xs.len() {
                let mut acc: Set = vec![Vec::new()];
                for e in &exacts[i..] {
                    let Some(e) = e else { break };
                    match cross(&acc, e) {
                        Some(next) => acc = next,
                        None => break,
                    }
                    consider(acc.clone());
                }
            }
            best
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(src: &str) -> Option<Vec<String>> {
        required(src).map(|s| s.into_iter().map(|l| String::from_utf8(l).unwrap()).collect())
    }

    #[test]
    fn literals() {
        assert_eq!(lits(r"^Loop time of (?P<x>\S+) on").unwrap(), vec!["Loop time of "]);
        assert_eq!(lits(r"^\s+(?P<atoms>\d+) atoms\s*$").unwrap(), vec![" atoms"]);
        assert_eq!(lits(r"(?i:nan)").unwrap().len(), 8);
        assert_eq!(lits(r"DUE TO TIME LIMIT|walltime").unwrap(), vec!["DUE TO TIME LIMIT", "walltime"]);
        assert_eq!(lits(r"\d+/\d+"), None);
        assert_eq!(lits(r".*"), None);
        assert_eq!(lits(r"(?:ab)?cd").unwrap(), vec!["abcd", "cd"]);
        assert_eq!(lits(r"x(?:ab|cd)y").unwrap(), vec!["xaby", "xcdy"]);
    }

    #[test]
    fn classes_stop_at_line_ends() {
        let p = prepare(r"a\s+b[^x]*c").unwrap();
        assert!(!p.multiline);
        let re = regex::bytes::RegexBuilder::new(&p.regex).multi_line(true).unicode(false).build().unwrap();
        assert!(re.is_match(b"a \t b yy c"));
        assert!(!re.is_match(b"a\nb c"));
        assert!(!re.is_match(b"a b\nc"));
        let p = prepare(r"(?P<x>Fatal error:)\s*\n(?P<evidence>.+)").unwrap();
        assert!(p.multiline);
        let re = regex::bytes::RegexBuilder::new(&p.regex).multi_line(true).unicode(false).build().unwrap();
        let c = re.captures(b"Fatal error:\nboom\n").unwrap();
        assert_eq!(&c["evidence"], b"boom");
        assert!(prepare(r"(?:.*\n)*x").is_err());
        assert!(prepare(r"(?:.*\n){1,17}x").is_err());
        assert!(prepare(r"(?:.*\n){1,12}?x").unwrap().multiline);
        assert!(prepare(r"[\n]x").is_ok());
        assert!(prepare(r"(?-u:\xff)caf\xe9").is_ok());
    }
}
