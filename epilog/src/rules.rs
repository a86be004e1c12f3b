//! Loading the solver-log rules cheaply, once per run and only as much of them as the job needs.
//!
//! Compiling all of logparse's rules (built-in plus the site's) takes 40–60 ms, and every epilog
//! run is a new process: paid for every job, it would be most of the epilog's time (its median is
//! about 5 ms). Yet a program's rules can only say something about a file in which the program's
//! `detect` pattern matches (its failures and fields count only after its banner), and the
//! `[generic]` rules only about a file in which one of their own patterns matches. So
//! [`rules_for`] first runs one cheap multi-pattern check, a `RegexSet` of every `detect` and
//! every generic pattern, over the windows actually read, and then compiles only the generic
//! rules (if any of them matched) and the programs detected. The check is a superset of what
//! logparse matches: the same syntax and flags (multi-line, ASCII classes, bytes), but classes
//! may cross line ends and a lone `\r` also ends a line, so it can only find more. Rows of
//! numbers (thermo output: most of a big log) are left out of the check for the patterns that
//! provably never match on one (held to one line, needing a byte such rows lack), so the check
//! costs about 2 ms per MiB of log; the few multi-line patterns are searched one by one, at
//! literal-search speed. When nothing
//! matches, nothing is compiled and each file's analysis is the empty one (outcome `unknown`,
//! no facts), exactly what the full rules would say.
//!
//! The site file ([`logparse::SITE_RULES_PATH`], `[logs] rules`) is compiled whole whenever
//! rules are needed, so its errors name the file's own lines; a bad site file is reported and
//! the built-in rules are used. A pattern the check cannot compile makes the check give up:
//! then the full rules are compiled. Which patterns trigger which part of a rules file, and
//! compiling only some parts, are logparse's to say ([`Triggers`], [`Rules::from_toml_part`]):
//! this module never reads the rules' TOML itself.

use logparse::{Part, Rules, Triggers, BUILTIN_TOML};
use regex::bytes::{RegexBuilder, RegexSetBuilder};
use std::path::Path;

/// Largest site rules file read (logparse's own limit is 4 MiB).
const MAX_SITE_FILE: u64 = 4 << 20;

/// What [`rules_for`] decided.
pub struct Loaded {
    /// `None`: no pattern of any rule can match the windows, so nothing was compiled.
    pub rules: Option<Rules>,
    /// Problems with the site file (the built-ins are used instead), for the log.
    pub errors: Vec<String>,
    /// Programs compiled (`*` = all of them), for the log.
    pub compiled: String,
}

/// The site file's text: `Ok(None)` when it does not exist.
fn read_site(path: &Path) -> Result<Option<String>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.len() > MAX_SITE_FILE {
        return Err(format!("{}: {} bytes: larger than the {MAX_SITE_FILE} byte limit", path.display(), meta.len()));
    }
    std::fs::read_to_string(path).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// All rules, the way logparse loads them: built-ins plus the site file; a bad site file is an
/// error and the built-ins are used.
fn full(site: &Path) -> Loaded {
    match Rules::load_site(site) {
        Ok(r) => Loaded { rules: Some(r), errors: Vec::new(), compiled: "*".into() },
        Err(e) => Loaded { rules: Some(Rules::builtin()), errors: vec![e.to_string()], compiled: "*".into() },
    }
}

/// The bytes of a row of numbers (thermo output, energies), as logparse counts them.
const NUMERIC: &[u8] = b"0123456789 \t.+-eE";

const NUMERIC_TABLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < NUMERIC.len() {
        t[NUMERIC[i] as usize] = true;
        i += 1;
    }
    t
};

fn numeric(b: u8) -> bool {
    NUMERIC_TABLE[b as usize]
}

/// Whether every match of `src` (in logparse's reading: one line unless it says `\n`) lies on
/// one line and holds a byte that is not [`NUMERIC`]: such a pattern never matches on a row of
/// numbers, so those rows need not be searched for it.
fn skips_number_rows(src: &str) -> bool {
    use regex_syntax::hir::{Class, Hir, HirKind};
    // Can `h` match a string of NUMERIC bytes only (the empty string included)?
    fn all_numeric(h: &Hir) -> bool {
        match h.kind() {
            HirKind::Empty | HirKind::Look(_) => true,
            HirKind::Literal(l) => l.0.iter().all(|&b| numeric(b)),
            HirKind::Class(Class::Bytes(c)) => c.ranges().iter().any(|r| (r.start()..=r.end()).any(numeric)),
            HirKind::Class(Class::Unicode(c)) => {
                c.ranges().iter().any(|r| NUMERIC.iter().any(|&b| (r.start()..=r.end()).contains(&(b as char))))
            }
            HirKind::Repetition(r) => r.min == 0 || all_numeric(&r.sub),
            HirKind::Capture(c) => all_numeric(&c.sub),
            HirKind::Concat(v) => v.iter().all(all_numeric),
            HirKind::Alternation(v) => v.iter().any(all_numeric),
        }
    }
    // Does `h` say `\n` (a literal line end: the pattern crosses lines)?
    fn says_newline(h: &Hir) -> bool {
        match h.kind() {
            HirKind::Literal(l) => l.0.contains(&b'\n'),
            HirKind::Repetition(r) => says_newline(&r.sub),
            HirKind::Capture(c) => says_newline(&c.sub),
            HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(says_newline),
            _ => false,
        }
    }
    let parsed = regex_syntax::ParserBuilder::new().multi_line(true).unicode(false).utf8(false).build().parse(src);
    match parsed {
        Ok(h) => !says_newline(&h) && !all_numeric(&h),
        Err(_) => false,
    }
}

/// `w` with every line made only of [`NUMERIC`] bytes emptied (its line end kept).
fn without_number_rows(w: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(w.len() / 4);
    let mut start = 0;
    while start < w.len() {
        // Skip the numeric bytes of the line at memory speed; a line that ends (or the text
        // ends) before any other byte is a row of numbers.
        let mut i = start;
        while i < w.len() && NUMERIC_TABLE[w[i] as usize] {
            i += 1;
        }
        let end = memchr_newline(&w[i..]).map_or(w.len(), |k| i + k + 1);
        if i == w.len() || w[i] == b'\n' {
            // A row of numbers (or an empty line): its line end only.
            if i < w.len() {
                out.push(b'\n');
            }
        } else {
            out.extend_from_slice(&w[start..end]);
        }
        start = end;
    }
    out
}

fn memchr_newline(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// Worker threads for the pre-check and the parsing, at most.
pub const MAX_THREADS: usize = 4;

/// `f` over `items`, on up to [`MAX_THREADS`] threads (the node is idle after its job; a log
/// file is the unit of work), results in order. A panic in `f` is the caller's panic.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS).min(items.len());
    if n <= 1 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|k| {
                s.spawn(move || items.iter().enumerate().skip(k).step_by(n).map(|(i, x)| (i, f(x))).collect::<Vec<_>>())
            })
            .collect();
        for w in workers {
            match w.join() {
                Ok(rs) => rs.into_iter().for_each(|(i, r)| out[i] = Some(r)),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
    });
    out.into_iter().map(|r| r.expect("every item is mapped")).collect()
}

/// The rules needed to analyse `windows` (the bytes read from a job's files; see the module
/// docs), with the site file at `site` added.
pub fn rules_for(site: &Path, windows: &[&[u8]]) -> Loaded {
    let Ok(builtin) = Triggers::from_toml(BUILTIN_TOML, "builtin.toml") else { return full(site) };
    let mut errors = Vec::new();
    let site_text = match read_site(site) {
        Ok(t) => t,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let site_triggers = match site_text.as_deref().map(|t| Triggers::from_toml(t, &site.display().to_string())) {
        None => None,
        Some(Ok(t)) => Some(t),
        // Let logparse say what is wrong, with its line.
        Some(Err(_)) => return full(site),
    };
    let mut pats = builtin.patterns;
    let mut always = builtin.always;
    if let Some(t) = &site_triggers {
        pats.extend(t.patterns.iter().cloned());
        always.extend(t.always.iter().cloned());
    }
    // Patterns held to one line that need a byte no row of numbers has are checked against the
    // windows without those rows (thermo output is most of a log); the others against all of it.
    let (rowless, whole): (Vec<usize>, Vec<usize>) = (0..pats.len()).partition(|&i| skips_number_rows(&pats[i].0));
    // The first kind as one set over the rowless text; the others (a few multi-line patterns)
    // one by one, since a single regex searches for its literals at memory speed.
    let set_rowless = RegexSetBuilder::new(rowless.iter().map(|&i| pats[i].0.as_str()))
        .multi_line(true)
        .crlf(true)
        .unicode(false)
        .size_limit(64 << 20)
        .build();
    let singles: Result<Vec<regex::bytes::Regex>, _> = whole
        .iter()
        .map(|&i| RegexBuilder::new(&pats[i].0).multi_line(true).crlf(true).unicode(false).size_limit(16 << 20).build())
        .collect();
    let (Ok(set_rowless), Ok(singles)) = (set_rowless, singles) else { return full(site) };
    let mut generic = false;
    let mut programs = always;
    let found = par_map(windows, |w| {
        let mut hit: Vec<usize> = Vec::new();
        if !rowless.is_empty() {
            hit.extend(set_rowless.matches(&without_number_rows(w)).iter().map(|k| rowless[k]));
        }
        hit.extend(singles.iter().zip(&whole).filter(|(re, _)| re.is_match(w)).map(|(_, &i)| i));
        hit
    });
    for i in found.into_iter().flatten() {
        match &pats[i].1 {
            Part::Generic => generic = true,
            Part::Program(n) => {
                programs.insert(n.clone());
            }
        }
    }
    if !generic && programs.is_empty() {
        return Loaded { rules: None, errors, compiled: String::new() };
    }
    let compiled = {
        let mut v: Vec<&str> = Vec::new();
        if generic {
            v.push("generic");
        }
        v.extend(programs.iter().map(String::as_str));
        v.join(",")
    };
    let base = match Rules::from_toml_part(BUILTIN_TOML, "builtin.toml", generic, Some(&programs)) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("built-in rules subset: {e}; compiling them all");
            Rules::builtin()
        }
    };
    let rules = match (site_text, site_triggers) {
        (Some(text), Some(_)) => match Rules::from_toml(&text, &site.display().to_string()) {
            Ok(s) => base.with_site(s),
            Err(e) => {
                errors.push(e.to_string());
                base
            }
        },
        _ => base,
    };
    Loaded { rules: Some(rules), errors, compiled }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logparse::{analyze, Window};

    const LAMMPS: &[u8] = b"LAMMPS (23 Jun 2022 - Update 1)\nCreated 4000 atoms\n\
        Loop time of 0.5 on 2 procs for 100 steps with 4000 atoms\n\
        Performance: 86400.000 tau/day, 200.000 timesteps/s\nTotal wall time: 0:00:01\n";

    fn same(rules: &Loaded, text: &[u8]) {
        let full = Rules::builtin();
        let w = Window::whole(text);
        let want = analyze(&full, &w);
        let got = rules.rules.as_ref().map(|r| analyze(r, &w)).unwrap_or_default();
        assert_eq!(
            (got.program, got.outcome, got.category, got.evidence, got.facts),
            (want.program, want.outcome, want.category, want.evidence, want.facts)
        );
    }

    /// Every file of logparse's corpus, whole and windowed, gives the same analysis with the
    /// rules the pre-check picks as with all the rules.
    #[test]
    fn same_as_all_rules_on_logparse_corpus() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../logparse/tests/corpus");
        let full = Rules::builtin();
        let mut n = 0;
        for d in std::fs::read_dir(&corpus).unwrap().flatten().filter(|d| d.path().is_dir()) {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                let text = std::fs::read(f.path()).unwrap();
                let cut = text.len() / 3;
                let windows = [
                    Window::whole(&text),
                    Window { head: &text[..cut / 2], tail: &text[cut..], truncated_between: true },
                ];
                for w in windows {
                    let mut joined = w.head.to_vec();
                    if w.truncated_between {
                        joined.push(b'\n');
                    }
                    joined.extend_from_slice(w.tail);
                    let l = rules_for(Path::new("/nonexistent/parsers.toml"), &[&joined]);
                    let got = l.rules.as_ref().map(|r| analyze(r, &w)).unwrap_or_default();
                    let want = analyze(&full, &w);
                    assert_eq!(
                        (got.program, got.programs_seen, got.outcome, got.category, got.evidence, got.facts),
                        (want.program, want.programs_seen, want.outcome, want.category, want.evidence, want.facts),
                        "{} (compiled {})",
                        f.path().display(),
                        l.compiled
                    );
                    n += 1;
                }
            }
        }
        assert!(n >= 20, "corpus not found at {}", corpus.display());
    }

    #[test]
    fn which_patterns_skip_number_rows() {
        for p in [r"^Loop time of (?P<s>[-+.\deE]+)", r"^\s*Step\s+[A-Za-z]", r"DUE TO TIME LIMIT", r"^ERROR: "] {
            assert!(skips_number_rows(p), "{p}");
        }
        for p in [r"^\s*\d+$", r"^\s+(?P<atoms>\d+)\s*(?:atoms)?$", r"a\nb", r"[a-z]?\d+", r"(unclosed"] {
            assert!(!skips_number_rows(p), "{p}");
        }
        assert_eq!(without_number_rows(b"Step Temp\n  0 1.5e3\n\nLoop\n 12"), b"Step Temp\n\n\nLoop\n");
    }

    #[test]
    fn par_map_keeps_order() {
        let v: Vec<u32> = (0..37).collect();
        assert_eq!(par_map(&v, |x| x * 2), v.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(par_map(&[] as &[u32], |x| *x).is_empty());
    }

    #[test]
    fn nothing_to_match_compiles_nothing() {
        let l = rules_for(Path::new("/nonexistent/parsers.toml"), &[b"hello\nworld\n", b""]);
        assert!(l.rules.is_none());
        assert!(l.errors.is_empty());
        same(&l, b"hello\nworld\n");
    }

    #[test]
    fn only_what_matched_is_compiled_and_says_the_same() {
        let l = rules_for(Path::new("/nonexistent/parsers.toml"), &[LAMMPS]);
        assert_eq!(l.compiled, "LAMMPS");
        same(&l, LAMMPS);
        let tl = b"slurmstepd: error: *** JOB 5 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n";
        let l = rules_for(Path::new("/nonexistent/parsers.toml"), &[LAMMPS, tl]);
        assert_eq!(l.compiled, "generic,LAMMPS");
        same(&l, tl);
        same(&l, LAMMPS);
        // A banner after a lone CR (a progress bar) still counts.
        let cr = b"progress 10%\rLAMMPS (23 Jun 2022)\nERROR: Lost atoms: original 4000 current 3998\n";
        let l = rules_for(Path::new("/nonexistent/parsers.toml"), &[cr]);
        assert!(l.compiled.contains("LAMMPS"), "{}", l.compiled);
        same(&l, cr);
    }

    #[test]
    fn site_file_is_added_and_its_errors_reported() {
        let d = tempfile::tempdir().unwrap();
        let site = d.path().join("parsers.toml");
        std::fs::write(
            &site,
            "[[program]]\nname = \"MyCode\"\ndetect = '^MyCode v(?P<version>\\S+)'\nsuccess = '^MyCode done'\n",
        )
        .unwrap();
        let l = rules_for(&site, &[b"MyCode v1.2\nMyCode done\n"]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let a = analyze(l.rules.as_ref().unwrap(), &Window::whole(b"MyCode v1.2\nMyCode done\n"));
        assert_eq!((a.program.as_deref(), a.outcome.as_str()), (Some("MyCode"), "success"));
        // Broken: a bad regex on line 3, and a TOML syntax error; the built-ins still work.
        std::fs::write(&site, "[[program]]\nname = \"Bad\"\ndetect = '(unclosed'\n").unwrap();
        let l = rules_for(&site, &[LAMMPS]);
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].contains("parsers.toml:3"), "{:?}", l.errors);
        same(&l, LAMMPS);
        std::fs::write(&site, "[[program]\nname = \n").unwrap();
        let l = rules_for(&site, &[LAMMPS]);
        assert!(l.errors[0].contains("parsers.toml:"), "{:?}", l.errors);
        same(&l, LAMMPS);
    }
}
