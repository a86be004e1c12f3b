//! Required literals of a pattern: a small set of byte strings one of which occurs in every
//! match. The scanner looks for these with Aho-Corasick (many GB/s with SIMD prefilters) and
//! runs a pattern only on lines that contain one of its literals.

use regex_syntax::hir::{Class, Hir, HirKind};
use regex_syntax::ParserBuilder;

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
    let hir = ParserBuilder::new().multi_line(true).unicode(false).utf8(false).build().parse(src).ok()?;
    let set = req(&hir)?;
    // A line-bound match never contains a newline, so literals with one never show.
    let set: Set = set.into_iter().filter(|l| !l.contains(&b'\n')).collect();
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
}
