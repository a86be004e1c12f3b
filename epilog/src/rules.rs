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
//! may cross line ends and a lone `\r` also ends a line, so it can only find more. When nothing
//! matches, nothing is compiled and each file's analysis is the empty one (outcome `unknown`,
//! no facts), exactly what the full rules would say.
//!
//! The site file ([`logparse::SITE_RULES_PATH`], `[logs] rules`) is compiled whole whenever
//! rules are needed, so its errors name the file's own lines; a bad site file is reported and
//! the built-in rules are used. A pattern the check cannot compile makes the check give up:
//! then the full rules are compiled.

use logparse::{Rules, BUILTIN_TOML};
use regex::bytes::RegexSetBuilder;
use std::collections::BTreeSet;
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

#[derive(Clone, Debug, PartialEq)]
enum Owner {
    Generic,
    Program(String),
}

fn strings(v: Option<&toml::Value>) -> Option<Vec<String>> {
    match v? {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// Every pattern of a rules document that can make logparse say something, with its owner.
/// Programs whose detect patterns cannot be listed are returned in `always`.
fn patterns(doc: &toml::Table, pats: &mut Vec<(String, Owner)>, always: &mut BTreeSet<String>) {
    if let Some(g) = doc.get("generic").and_then(|g| g.as_table()) {
        for (section, key) in [("failure", "pattern"), ("field", "pattern"), ("table", "header")] {
            for r in g.get(section).and_then(|v| v.as_array()).into_iter().flatten() {
                if let Some(p) = r.get(key).and_then(|p| p.as_str()) {
                    pats.push((p.to_string(), Owner::Generic));
                }
            }
        }
    }
    for p in doc.get("program").and_then(|v| v.as_array()).into_iter().flatten() {
        let Some(name) = p.get("name").and_then(|n| n.as_str()) else { continue };
        match strings(p.get("detect")) {
            Some(ds) if !ds.is_empty() => {
                pats.extend(ds.into_iter().map(|d| (d, Owner::Program(name.to_string()))));
            }
            _ => {
                always.insert(name.to_string());
            }
        }
    }
}

fn builtin_subset(doc: &toml::Table, generic: bool, programs: &BTreeSet<String>) -> Result<Rules, String> {
    let mut doc = doc.clone();
    if !generic {
        doc.remove("generic");
    }
    if let Some(toml::Value::Array(ps)) = doc.get_mut("program") {
        ps.retain(|p| p.get("name").and_then(|n| n.as_str()).is_some_and(|n| programs.contains(n)));
    }
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Rules::from_toml(&text, "builtin.toml").map_err(|e| e.to_string())
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

/// The rules needed to analyse `windows` (the bytes read from a job's files; see the module
/// docs), with the site file at `site` added.
pub fn rules_for(site: &Path, windows: &[&[u8]]) -> Loaded {
    let Ok(builtin) = toml::from_str::<toml::Table>(BUILTIN_TOML) else { return full(site) };
    let mut errors = Vec::new();
    let site_text = match read_site(site) {
        Ok(t) => t,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let site_doc = match site_text.as_deref().map(toml::from_str::<toml::Table>) {
        None => None,
        Some(Ok(d)) => Some(d),
        // Let logparse say what is wrong, with its line.
        Some(Err(_)) => return full(site),
    };
    let mut pats = Vec::new();
    let mut always = BTreeSet::new();
    patterns(&builtin, &mut pats, &mut always);
    if let Some(d) = &site_doc {
        patterns(d, &mut pats, &mut always);
    }
    let set = RegexSetBuilder::new(pats.iter().map(|(p, _)| p.as_str()))
        .multi_line(true)
        .crlf(true)
        .unicode(false)
        .size_limit(64 << 20)
        .build();
    let Ok(set) = set else { return full(site) };
    let mut generic = false;
    let mut programs = always;
    for w in windows {
        for i in set.matches(w).iter() {
            match &pats[i].1 {
                Owner::Generic => generic = true,
                Owner::Program(n) => {
                    programs.insert(n.clone());
                }
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
    let base = match builtin_subset(&builtin, generic, &programs) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("built-in rules subset: {e}; compiling them all");
            Rules::builtin()
        }
    };
    let rules = match (site_text, site_doc) {
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
