//! The rules file: its TOML form, its checks, and the compiled [`Rules`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_automata::meta;
use regex_automata::util::syntax;
use serde::Deserialize;
use toml::Spanned;

use crate::convert::{Convert, Template};
use crate::model::Category;
use crate::pattern;
use crate::rule_error::RuleError;

/// The built-in rules, compiled into the binary.
pub const BUILTIN_TOML: &str = include_str!("../rules/builtin.toml");

/// Where the site's rules live by default.
pub const SITE_RULES_PATH: &str = "/etc/runledger/parsers.toml";

/// Largest rules file read, in bytes.
const MAX_RULES_FILE: u64 = 4 << 20;
/// Compiled size limit of one pattern (bounds memory and compile time of a site's patterns).
const PATTERN_SIZE_LIMIT: usize = 2 << 20;

/// Fact keys the analysis itself produces; rules cannot produce them.
const RESERVED_KEYS: [&str; 6] = ["program", "programs", "outcome", "failure_category", "error", "evidence"];

// ---------------------------------------------------------------------------------------------
// The TOML form.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    generic: Option<GenericDoc>,
    #[serde(default)]
    program: Vec<ProgramDoc>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GenericDoc {
    #[serde(default)]
    failure: Vec<FailureDoc>,
    #[serde(default)]
    field: Vec<FieldDoc>,
    #[serde(default)]
    table: Vec<TableDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramDoc {
    name: Spanned<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    label: Option<Spanned<String>>,
    #[serde(default)]
    detect: Option<Spanned<toml::Value>>,
    #[serde(default)]
    success: Option<Spanned<toml::Value>>,
    #[serde(default)]
    main: Option<Spanned<String>>,
    #[serde(default)]
    failure: Vec<FailureDoc>,
    #[serde(default)]
    field: Vec<FieldDoc>,
    #[serde(default)]
    table: Vec<TableDoc>,
    /// `[[program.input]]`: read by [`crate::InputRules`], checked there.
    #[serde(default)]
    #[allow(dead_code)]
    input: Vec<crate::inputs::SiteInputDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureDoc {
    pattern: Spanned<String>,
    category: Spanned<String>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    when: Vec<WhenDoc>,
    #[serde(default)]
    tail_lines: Option<Spanned<i64>>,
    #[serde(default)]
    despite_success: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenDoc {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    category: Spanned<String>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldDoc {
    pattern: Spanned<String>,
    #[serde(default)]
    pick: Option<Spanned<String>>,
    #[serde(default)]
    count: Option<Spanned<String>>,
    #[serde(default)]
    units: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    set: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    convert: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableDoc {
    header: Spanned<String>,
    #[serde(default)]
    row: Option<Spanned<String>>,
    columns: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    units: Option<Spanned<BTreeMap<String, String>>>,
}

// ---------------------------------------------------------------------------------------------
// The compiled form.

#[derive(Clone, Debug)]
pub(crate) struct Pat {
    pub re: Regex,
    /// As compiled (see `pattern::prepare`).
    pub regex: String,
    /// The pattern crosses line ends (it says `\n`): it is searched on its own.
    pub multiline: bool,
    /// Index into the scan's per-pattern results (set by `Rules::finish`).
    pub slot: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct When {
    pub re: Regex,
    pub category: Category,
    /// Explicit priority when this refinement applies (a line that is a consequence, not a
    /// cause); otherwise the failure's.
    pub priority: Option<u8>,
}

#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub pat: Pat,
    pub category: Category,
    /// Explicit priority; otherwise the final category's default.
    pub priority: Option<u8>,
    pub when: Vec<When>,
    /// The marker counts only when at most this many non-blank lines follow its last
    /// occurrence: for errors a script survives (a shell goes on after a missing command), which
    /// are the job's failure only when nothing ran after them.
    pub tail_lines: Option<usize>,
    /// The marker counts even when the code's success marker follows it: for a code that
    /// stops early on request (a signal) and then ends the normal way.
    pub despite_success: bool,
    pub outputs: Vec<Output>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    First,
    Last,
    Sum,
}

#[derive(Clone, Debug)]
pub(crate) enum Source {
    Group(String),
    Template(Template),
}

#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub key: String,
    pub source: Source,
    pub unit: Option<Template>,
    pub convert: Convert,
}

#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub pat: Pat,
    pub pick: Pick,
    pub count: Option<String>,
    pub outputs: Vec<Output>,
}

#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub header: Pat,
    pub last: bool,
    /// (column name in the header, fact key, unit)
    pub columns: Vec<(String, String, Option<String>)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub name: String,
    pub label: Option<Template>,
    pub detect: Vec<Pat>,
    pub detect_outputs: Vec<Output>,
    pub success: Vec<Pat>,
    /// Which of the package's tools (by their label) are the main run: a stream holding several
    /// tools is judged by its last main run, and the other tools' lines (preprocessing,
    /// post-processing) neither name the program nor make the run incomplete.
    pub main: Option<Regex>,
    pub failures: Vec<Failure>,
    pub fields: Vec<Field>,
    pub tables: Vec<Table>,
}

impl Program {
    fn empty(name: &str) -> Program {
        Program {
            name: name.to_string(),
            label: None,
            detect: Vec::new(),
            detect_outputs: Vec::new(),
            success: Vec::new(),
            main: None,
            failures: Vec::new(),
            fields: Vec::new(),
            tables: Vec::new(),
        }
    }
}

/// What the one pass over the text needs. Every single-line pattern with required literals
/// (see `literal.rs`) is keyed on them: one Aho-Corasick search finds the next line holding any
/// literal, and only the patterns owning the literals on that line are run on it. Patterns
/// without useful literals go into one multi-pattern automaton (`finder`) that finds the next
/// line where any of them matches, and a set that says which.
#[derive(Clone, Debug)]
pub(crate) struct Scanner {
    pub ac: Option<AhoCorasick>,
    /// For each literal of `ac`: indices into `lit_pats`.
    pub lit_owners: Vec<Vec<u32>>,
    /// For each literal of `ac`: slots of multi-line patterns that need it to be present.
    pub lit_presence: Vec<Vec<usize>>,
    /// Per slot: a multi-line pattern whose literals the scan watches for.
    pub present_keyed: Vec<bool>,

    /// (slot, regex) of the literal-keyed patterns.
    pub lit_pats: Vec<(usize, Regex)>,
    pub finder: Option<meta::Regex>,
    pub set: Option<RegexSet>,
    /// For each pattern of `set`, its slot.
    pub set_slots: Vec<usize>,
    /// Per slot: the scan reports this pattern's lines (else it is searched on its own).
    pub covered: Vec<bool>,
    pub n_slots: usize,
}

fn parse_doc(text: &str, origin: &str) -> Result<FileDoc, RuleError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        err_at(text, origin, offset, e.message().trim().to_string())
    })
}

/// The part of a rules file a trigger pattern belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The `[generic]` rules.
    Generic,
    /// The `[[program]]` of this name.
    Program(String),
}

/// The patterns of a rules file without which a part of it can say nothing about a log: every
/// `[generic]` failure and field pattern and table header, and every program's `detect` (its
/// other rules count only after its banner). Lets a caller find cheaply, before compiling
/// anything, which parts a log needs ([`Rules::from_toml_part`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Triggers {
    /// Each pattern's source text (logparse's syntax: multi-line, ASCII classes, bytes) and
    /// the part it triggers.
    pub patterns: Vec<(String, Part)>,
    /// Programs without a `detect` pattern: always needed.
    pub always: BTreeSet<String>,
}

impl Triggers {
    /// The triggers of the text of a rules file. Only the file's form is checked (a pattern
    /// that does not compile is still listed); `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Triggers, RuleError> {
        let doc = parse_doc(text, origin)?;
        let mut t = Triggers::default();
        if let Some(g) = doc.generic {
            let failures = g.failure.into_iter().map(|f| f.pattern.into_inner());
            let fields = g.field.into_iter().map(|f| f.pattern.into_inner());
            let tables = g.table.into_iter().map(|f| f.header.into_inner());
            t.patterns.extend(failures.chain(fields).chain(tables).map(|p| (p, Part::Generic)));
        }
        for p in doc.program {
            let name = p.name.into_inner();
            let detect: Option<Vec<String>> = match p.detect.map(Spanned::into_inner) {
                Some(toml::Value::String(s)) => Some(vec![s]),
                Some(toml::Value::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
                _ => None,
            };
            match detect {
                Some(ds) if !ds.is_empty() => {
                    t.patterns.extend(ds.into_iter().map(|d| (d, Part::Program(name.clone()))));
                }
                _ => {
                    t.always.insert(name);
                }
            }
        }
        Ok(t)
    }
}

/// Compiled rules: the built-ins, possibly with a site's additions. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Rules {
    pub(crate) generic: Program,
    pub(crate) programs: Vec<Program>,
    /// Programs a site file turns off with `enabled = false`.
    pub(crate) disabled: Vec<String>,
    pub(crate) scanner: Scanner,
}

fn syntax_config() -> syntax::Config {
    syntax::Config::new().multi_line(true).unicode(false).utf8(false)
}

pub(crate) fn compile_regex(src: &str) -> Result<Regex, String> {
    RegexBuilder::new(src)
        .multi_line(true)
        .unicode(false)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

impl Rules {
    /// The built-in rules (compiled once per process, then cloned).
    pub fn builtin() -> Rules {
        static BUILTIN: OnceLock<Rules> = OnceLock::new();
        BUILTIN
            .get_or_init(|| match Rules::from_toml(BUILTIN_TOML, "builtin.toml") {
                Ok(r) => r,
                Err(e) => panic!("the built-in rules are broken (a test catches this): {e}"),
            })
            .clone()
    }

    /// Rules from the text of a rules file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Rules, RuleError> {
        Rules::from_toml_part(text, origin, true, None)
    }

    /// Only part of a rules file: its `[generic]` rules if `generic`, and the programs named in
    /// `programs` (all of them when `None`). Errors and line numbers are those of the whole
    /// text. For a caller that knows which parts can match (see [`Triggers`]) and wants to pay
    /// for compiling only those.
    pub fn from_toml_part(
        text: &str,
        origin: &str,
        generic: bool,
        programs: Option<&BTreeSet<String>>,
    ) -> Result<Rules, RuleError> {
        let mut doc = parse_doc(text, origin)?;
        if !generic {
            doc.generic = None;
        }
        if let Some(keep) = programs {
            doc.program.retain(|p| keep.contains(p.name.get_ref()));
        }
        let mut c = Compiler { text, origin, disabled: Vec::new() };
        let generic = match doc.generic {
            Some(g) => c.generic(g)?,
            None => Program::empty("generic"),
        };
        let mut programs: Vec<Program> = Vec::new();
        let mut names = HashSet::new();
        for p in doc.program {
            if !names.insert(p.name.get_ref().clone()) {
                return Err(c.err(p.name.span().start, format!("a second program named {:?}", p.name.get_ref())));
            }
            if let Some(prog) = c.program(p)? {
                programs.push(prog);
            }
        }
        let mut rules = Rules { generic, programs, disabled: c.disabled, scanner: Scanner::empty() };
        rules.finish();
        Ok(rules)
    }

    /// These rules with a site's: a site program replaces the built-in one of the same name
    /// (or, with `enabled = false`, removes it); other site programs are added; the site's
    /// `[generic]` rules come before the built-in generic ones.
    pub fn with_site(self, site: Rules) -> Rules {
        let mut programs = self.programs;
        programs.retain(|p| !site.disabled.contains(&p.name));
        for sp in site.programs {
            match programs.iter().position(|p| p.name == sp.name) {
                Some(i) => programs[i] = sp,
                None => programs.push(sp),
            }
        }
        let mut generic = site.generic;
        generic.failures.extend(self.generic.failures);
        generic.fields.extend(self.generic.fields);
        generic.tables.extend(self.generic.tables);
        let mut disabled = self.disabled;
        disabled.extend(site.disabled);
        let mut rules = Rules { generic, programs, disabled, scanner: Scanner::empty() };
        rules.finish();
        rules
    }

    /// The built-in rules plus the site file at `path` (see [`SITE_RULES_PATH`]). A missing
    /// file is not an error: the built-ins alone are returned. On error the caller should keep
    /// [`Rules::builtin`] and report the error.
    pub fn load_site(path: &Path) -> Result<Rules, RuleError> {
        let origin = path.display().to_string();
        let io =
            |e: std::io::Error| RuleError { origin: origin.clone(), line: None, rule: None, message: e.to_string() };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Rules::builtin()),
            Err(e) => return Err(io(e)),
        };
        if meta.len() > MAX_RULES_FILE {
            return Err(RuleError {
                origin,
                line: None,
                rule: None,
                message: format!("{} bytes: larger than the {} byte limit", meta.len(), MAX_RULES_FILE),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let site = Rules::from_toml(&text, &origin)?;
        Ok(Rules::builtin().with_site(site))
    }

    /// Names of the programs these rules recognise.
    pub fn program_names(&self) -> Vec<&str> {
        self.programs.iter().map(|p| p.name.as_str()).collect()
    }

    /// Assigns slots and builds the one-pass scanner.
    fn finish(&mut self) {
        let mut n = 0;
        let mut singles: Vec<(usize, String)> = Vec::new();
        let mut multis: Vec<(usize, String)> = Vec::new();
        let mut assign = |p: &mut Program| {
            let mut add = |pat: &mut Pat| {
                pat.slot = n;
                if pat.multiline {
                    multis.push((n, pat.regex.clone()));
                } else {
                    singles.push((n, pat.regex.clone()));
                }
                n += 1;
            };
            p.detect.iter_mut().for_each(&mut add);
            p.success.iter_mut().for_each(&mut add);
            p.failures.iter_mut().for_each(|f| add(&mut f.pat));
            p.fields.iter_mut().for_each(|f| add(&mut f.pat));
            p.tables.iter_mut().for_each(|t| add(&mut t.header));
        };
        assign(&mut self.generic);
        for p in &mut self.programs {
            assign(p);
        }
        let mut covered = vec![false; n];
        // Literal-keyed patterns.
        let mut lits: Vec<Vec<u8>> = Vec::new();
        let mut lit_index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut lit_owners: Vec<Vec<u32>> = Vec::new();
        let mut lit_presence: Vec<Vec<usize>> = Vec::new();
        let mut lit_pats: Vec<(usize, Regex)> = Vec::new();
        let mut rest: Vec<(usize, &str)> = Vec::new();
        let mut present_keyed = vec![false; n];
        let mut add_lits = |set: Vec<Vec<u8>>, owner: Result<u32, usize>| {
            for l in set {
                let li = *lit_index.entry(l.clone()).or_insert_with(|| {
                    lits.push(l);
                    lit_owners.push(Vec::new());
                    lit_presence.push(Vec::new());
                    lits.len() - 1
                });
                match owner {
                    Ok(pi) => lit_owners[li].push(pi),
                    Err(slot) => lit_presence[li].push(slot),
                }
            }
        };
        // Lines of numbers are skipped by the literal pass, so a literal made of number bytes
        // only cannot key a pattern.
        let keyable = |src: &str| {
            pattern::required(src)
                .filter(|set| set.iter().all(|l| l.iter().any(|&b| !crate::text::NUMERIC[b as usize])))
        };
        for (slot, src) in &singles {
            match (keyable(src), compile_regex(src)) {
                (Some(set), Ok(re)) => {
                    add_lits(set, Ok(lit_pats.len() as u32));
                    lit_pats.push((*slot, re));
                }
                _ => rest.push((*slot, src.as_str())),
            }
        }
        // A multi-line pattern is searched on its own, but only if one of its literals shows.
        for (slot, src) in &multis {
            if let Some(set) = keyable(src) {
                add_lits(set, Err(*slot));
                present_keyed[*slot] = true;
            }
        }
        let ac = if lits.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::Standard)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&lits)
                .ok()
        };
        if ac.is_some() {
            lit_pats.iter().for_each(|(slot, _)| covered[*slot] = true);
        } else {
            lit_pats.clear();
            lit_owners.clear();
            lit_presence.clear();
            present_keyed = vec![false; n];
            rest = singles.iter().map(|(s, src)| (*s, src.as_str())).collect();
        }
        // The rest: one automaton and a set.
        let srcs: Vec<&str> = rest.iter().map(|(_, s)| *s).collect();
        let (finder, set) = if srcs.is_empty() {
            (None, None)
        } else {
            let finder = meta::Regex::builder()
                .syntax(syntax_config())
                .configure(
                    meta::Regex::config()
                        .utf8_empty(false)
                        .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit)
                        .hybrid_cache_capacity(8 << 20)
                        .nfa_size_limit(Some(64 << 20)),
                )
                .build_many(&srcs)
                .ok();
            let set = RegexSetBuilder::new(&srcs)
                .multi_line(true)
                .unicode(false)
                .size_limit(64 << 20)
                .dfa_size_limit(8 << 20)
                .build()
                .ok();
            // Without them (a site's patterns too large together) each of these patterns is
            // searched on its own: slower, same results.
            match (finder, set) {
                (Some(f), Some(s)) => {
                    rest.iter().for_each(|(slot, _)| covered[*slot] = true);
                    (Some(f), Some(s))
                }
                _ => (None, None),
            }
        };
        self.scanner = Scanner {
            ac,
            lit_owners,
            lit_presence,
            present_keyed,
            lit_pats,
            finder,
            set,
            set_slots: rest.iter().map(|(s, _)| *s).collect(),
            covered,
            n_slots: n,
        };
    }
}

impl Scanner {
    fn empty() -> Scanner {
        Scanner {
            ac: None,
            lit_owners: Vec::new(),
            lit_presence: Vec::new(),
            present_keyed: Vec::new(),
            lit_pats: Vec::new(),
            finder: None,
            set: None,
            set_slots: Vec::new(),
            covered: Vec::new(),
            n_slots: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checking and compiling one file.

struct Compiler<'a> {
    text: &'a str,
    origin: &'a str,
    disabled: Vec<String>,
}

fn err_at(text: &str, origin: &str, offset: Option<usize>, message: String) -> RuleError {
    let (line, rule) = match offset {
        Some(o) => (Some(line_of(text, o)), describe_position(text, o)),
        None => (None, None),
    };
    RuleError { origin: origin.to_string(), line, rule, message }
}

fn line_of(text: &str, offset: usize) -> usize {
    let o = offset.min(text.len());
    text.as_bytes()[..o].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Which rule the byte `offset` of a rules file is in, e.g. `program "LAMMPS" failure #2`,
/// read from the table headers and `name =` lines before it (works for syntax errors too).
fn describe_position(text: &str, offset: usize) -> Option<String> {
    let upto = &text[..text.floor_char_boundary_compat(offset)];
    let mut section: Option<String> = None; // "program #n" / "program \"X\"" / "generic"
    let mut sub: Option<(String, usize)> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut programs = 0;
    let mut in_program_head = false;
    for line in upto.lines() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let h = h.trim();
            if h == "program" {
                programs += 1;
                section = Some(format!("program #{programs}"));
                sub = None;
                counts.clear();
                in_program_head = true;
            } else if let Some(kind) = h.strip_prefix("program.").or_else(|| h.strip_prefix("generic.")) {
                if h.starts_with("generic.") && section.as_deref() != Some("generic") {
                    section = Some("generic".to_string());
                    counts.clear();
                }
                let c = counts.entry(kind.to_string()).or_insert(0);
                *c += 1;
                sub = Some((kind.to_string(), *c));
                in_program_head = false;
            }
        } else if let Some(h) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            if h.trim() == "generic" {
                section = Some("generic".to_string());
                sub = None;
                counts.clear();
                in_program_head = false;
            }
        } else if in_program_head {
            if let Some(v) = l.strip_prefix("name").map(str::trim_start).and_then(|r| r.strip_prefix('=')) {
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
                section = Some(format!("program {v:?}"));
            }
        }
    }
    let mut s = section?;
    if let Some((kind, i)) = sub {
        s.push_str(&format!(" {kind} #{i}"));
    }
    Some(s)
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, i: usize) -> usize {
        let mut i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

fn valid_key(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(b'a'..=b'z'))
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && k.len() <= 64
}

impl<'a> Compiler<'a> {
    fn err(&self, offset: usize, message: String) -> RuleError {
        err_at(self.text, self.origin, Some(offset), message)
    }

    fn pat(&self, s: &Spanned<String>, what: &str) -> Result<Pat, RuleError> {
        let src = s.get_ref();
        let bad = |e: String| self.err(s.span().start, format!("{what}: {e}"));
        let p = pattern::prepare(src).map_err(bad)?;
        let re = compile_regex(&p.regex).map_err(bad)?;
        Ok(Pat { re, regex: p.regex, multiline: p.multiline, slot: usize::MAX })
    }

    fn category(&self, s: &Spanned<String>) -> Result<Category, RuleError> {
        s.get_ref().parse::<Category>().map_err(|e| self.err(s.span().start, e))
    }

    /// One string or an array of strings.
    fn strings(&self, v: &Spanned<toml::Value>, what: &str) -> Result<Vec<Spanned<String>>, RuleError> {
        let span = v.span();
        let wrap = |s: &str| Spanned::new(span.clone(), s.to_string());
        match v.get_ref() {
            toml::Value::String(s) => Ok(vec![wrap(s)]),
            toml::Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    toml::Value::String(s) => Ok(wrap(s)),
                    _ => Err(self.err(span.start, format!("{what}: expected strings"))),
                })
                .collect(),
            _ => Err(self.err(span.start, format!("{what}: expected a string or an array of strings"))),
        }
    }

    /// Outputs of a pattern: its named groups not starting with `_`, then `set` templates.
    fn outputs(
        &self,
        pat: &Pat,
        at: usize,
        set: Option<&Spanned<BTreeMap<String, String>>>,
        units: Option<&Spanned<BTreeMap<String, String>>>,
        convert: Option<&Spanned<BTreeMap<String, String>>>,
        special: &[&str],
    ) -> Result<Vec<Output>, RuleError> {
        let groups: Vec<String> = pat.re.capture_names().flatten().map(str::to_string).collect();
        let mut outputs: Vec<Output> = Vec::new();
        for g in &groups {
            if g.starts_with('_') || special.contains(&g.as_str()) {
                continue;
            }
            if !valid_key(g) || RESERVED_KEYS.contains(&g.as_str()) {
                return Err(self.err(
                    at,
                    format!("group name {g:?} is not a usable fact key (lower-case a-z, 0-9, _; not one of {RESERVED_KEYS:?}; start with _ to hide it)"),
                ));
            }
            outputs.push(Output {
                key: g.clone(),
                source: Source::Group(g.clone()),
                unit: None,
                convert: Convert::Text,
            });
        }
        let check_vars = |t: &Template, at: usize| -> Result<(), RuleError> {
            for v in t.vars() {
                if !groups.iter().any(|g| g == v) {
                    return Err(self.err(at, format!("{{{v}}} is not a named group of the pattern")));
                }
            }
            Ok(())
        };
        if let Some(set) = set {
            for (k, v) in set.get_ref() {
                if !valid_key(k) || RESERVED_KEYS.contains(&k.as_str()) {
                    return Err(self.err(set.span().start, format!("set: {k:?} is not a usable fact key")));
                }
                let t = Template::parse(v).map_err(|e| self.err(set.span().start, format!("set.{k}: {e}")))?;
                check_vars(&t, set.span().start)?;
                let o = Output { key: k.clone(), source: Source::Template(t), unit: None, convert: Convert::Text };
                match outputs.iter_mut().find(|x| x.key == *k) {
                    Some(x) => *x = o,
                    None => outputs.push(o),
                }
            }
        }
        if let Some(units) = units {
            for (k, v) in units.get_ref() {
                let t = Template::parse(v).map_err(|e| self.err(units.span().start, format!("units.{k}: {e}")))?;
                check_vars(&t, units.span().start)?;
                let o = outputs
                    .iter_mut()
                    .find(|x| x.key == *k)
                    .ok_or_else(|| self.err(units.span().start, format!("units: {k:?} is not a fact of this rule")))?;
                o.unit = Some(t);
            }
        }
        if let Some(conv) = convert {
            for (k, v) in conv.get_ref() {
                let c = Convert::parse(v).ok_or_else(|| {
                    self.err(conv.span().start, format!("convert.{k}: {v:?} is not one of {}", Convert::NAMES))
                })?;
                let o = outputs
                    .iter_mut()
                    .find(|x| x.key == *k)
                    .ok_or_else(|| self.err(conv.span().start, format!("convert: {k:?} is not a fact of this rule")))?;
                o.convert = c;
            }
        }
        Ok(outputs)
    }

    fn priority(&self, p: Option<&Spanned<i64>>) -> Result<Option<u8>, RuleError> {
        match p {
            Some(p) if (0..=3).contains(p.get_ref()) => Ok(Some(*p.get_ref() as u8)),
            Some(p) => Err(self.err(p.span().start, "priority: 0 (first) to 3 (last)".to_string())),
            None => Ok(None),
        }
    }

    fn failures(&self, docs: Vec<FailureDoc>) -> Result<Vec<Failure>, RuleError> {
        let mut out = Vec::new();
        for f in docs {
            let pat = self.pat(&f.pattern, "pattern")?;
            let category = self.category(&f.category)?;
            let priority = self.priority(f.priority.as_ref())?;
            let mut when = Vec::new();
            for w in &f.when {
                let re = compile_regex(w.pattern.get_ref())
                    .map_err(|e| self.err(w.pattern.span().start, format!("when.match: {e}")))?;
                when.push(When {
                    re,
                    category: self.category(&w.category)?,
                    priority: self.priority(w.priority.as_ref())?,
                });
            }
            let tail_lines = match &f.tail_lines {
                Some(n) if (0..=1000).contains(n.get_ref()) => Some(*n.get_ref() as usize),
                Some(n) => return Err(self.err(n.span().start, "tail_lines: 0 to 1000".to_string())),
                None => None,
            };
            let outputs = self.outputs(&pat, f.pattern.span().start, None, None, None, &["evidence"])?;
            let despite_success = f.despite_success;
            out.push(Failure { pat, category, priority, when, tail_lines, despite_success, outputs });
        }
        Ok(out)
    }

    fn fields(&self, docs: Vec<FieldDoc>) -> Result<Vec<Field>, RuleError> {
        let mut out = Vec::new();
        for f in docs {
            let pat = self.pat(&f.pattern, "pattern")?;
            let pick = match f.pick.as_ref().map(|p| p.get_ref().as_str()) {
                None | Some("first") => Pick::First,
                Some("last") => Pick::Last,
                Some("sum") => Pick::Sum,
                Some(other) => {
                    let at = f.pick.as_ref().map_or(0, |p| p.span().start);
                    return Err(self.err(at, format!("pick: {other:?} is not first, last or sum")));
                }
            };
            let count = match &f.count {
                Some(c) if valid_key(c.get_ref()) && !RESERVED_KEYS.contains(&c.get_ref().as_str()) => {
                    Some(c.get_ref().clone())
                }
                Some(c) => {
                    return Err(self.err(c.span().start, format!("count: {:?} is not a usable fact key", c.get_ref())))
                }
                None => None,
            };
            let outputs =
                self.outputs(&pat, f.pattern.span().start, f.set.as_ref(), f.units.as_ref(), f.convert.as_ref(), &[])?;
            if outputs.is_empty() && count.is_none() {
                return Err(self.err(
                    f.pattern.span().start,
                    "this field produces nothing: name a group (?P<key>…), or give `set` or `count`".to_string(),
                ));
            }
            out.push(Field { pat, pick, count, outputs });
        }
        Ok(out)
    }

    fn tables(&self, docs: Vec<TableDoc>) -> Result<Vec<Table>, RuleError> {
        let mut out = Vec::new();
        for t in docs {
            let header = self.pat(&t.header, "header")?;
            if header.multiline {
                return Err(self.err(t.header.span().start, "header: must match within one line".to_string()));
            }
            let last = match t.row.as_ref().map(|r| r.get_ref().as_str()) {
                None | Some("first") => false,
                Some("last") => true,
                Some(o) => {
                    let at = t.row.as_ref().map_or(0, |r| r.span().start);
                    return Err(self.err(at, format!("row: {o:?} is not first or last")));
                }
            };
            let units = t.units.as_ref().map(|u| u.get_ref().clone()).unwrap_or_default();
            let mut columns = Vec::new();
            for (col, key) in t.columns.get_ref() {
                if !valid_key(key) || RESERVED_KEYS.contains(&key.as_str()) {
                    return Err(
                        self.err(t.columns.span().start, format!("columns.{col}: {key:?} is not a usable fact key"))
                    );
                }
                columns.push((col.clone(), key.clone(), units.get(key).cloned()));
            }
            out.push(Table { header, last, columns });
        }
        Ok(out)
    }

    fn generic(&mut self, g: GenericDoc) -> Result<Program, RuleError> {
        let mut p = Program::empty("generic");
        p.failures = self.failures(g.failure)?;
        p.fields = self.fields(g.field)?;
        p.tables = self.tables(g.table)?;
        Ok(p)
    }

    fn program(&mut self, d: ProgramDoc) -> Result<Option<Program>, RuleError> {
        let name = d.name.get_ref().trim().to_string();
        if name.is_empty() || name.len() > 64 {
            return Err(self.err(d.name.span().start, "name: 1 to 64 characters".to_string()));
        }
        if name == "generic" {
            return Err(self.err(d.name.span().start, "name: \"generic\" is the [generic] section".to_string()));
        }
        if d.enabled == Some(false) {
            self.disabled.push(name);
            return Ok(None);
        }
        let detect_v = d.detect.as_ref().ok_or_else(|| {
            self.err(d.name.span().start, "detect: missing (the pattern that recognises this code)".to_string())
        })?;
        let mut p = Program::empty(&name);
        let mut detect_groups: Vec<String> = Vec::new();
        for s in self.strings(detect_v, "detect")? {
            let pat = self.pat(&s, "detect")?;
            for o in self.outputs(&pat, s.span().start, None, None, None, &[])? {
                if !p.detect_outputs.iter().any(|x| x.key == o.key) {
                    p.detect_outputs.push(o);
                }
            }
            detect_groups.extend(pat.re.capture_names().flatten().map(str::to_string));
            p.detect.push(pat);
        }
        if let Some(l) = &d.label {
            let t = Template::parse(l.get_ref()).map_err(|e| self.err(l.span().start, format!("label: {e}")))?;
            for v in t.vars() {
                if !detect_groups.iter().any(|g| g == v) {
                    return Err(self.err(l.span().start, format!("label: {{{v}}} is not a named group of detect")));
                }
            }
            p.label = Some(t);
        }
        if let Some(s) = &d.success {
            for s in self.strings(s, "success")? {
                p.success.push(self.pat(&s, "success")?);
            }
        }
        if let Some(m) = &d.main {
            if p.label.as_ref().is_none_or(|t| t.vars().next().is_none()) {
                return Err(self.err(m.span().start, "main: needs a label with {groups} naming the tool".to_string()));
            }
            p.main = Some(compile_regex(m.get_ref()).map_err(|e| self.err(m.span().start, format!("main: {e}")))?);
        }
        p.failures = self.failures(d.failure)?;
        p.fields = self.fields(d.field)?;
        p.tables = self.tables(d.table)?;
        Ok(Some(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_compile_and_are_literal_keyed() {
        let r = Rules::from_toml(BUILTIN_TOML, "builtin.toml").expect("built-in rules");
        // The fast path: no built-in single-line pattern needs the automaton pass, and every
        // multi-line one is searched only when its literal shows.
        assert!(r.scanner.finder.is_none(), "a built-in pattern has no literal: {:?}", r.scanner.set_slots);
        let all: Vec<&Pat> = std::iter::once(&r.generic)
            .chain(r.programs.iter())
            .flat_map(|p| {
                p.detect
                    .iter()
                    .chain(p.success.iter())
                    .chain(p.failures.iter().map(|f| &f.pat))
                    .chain(p.fields.iter().map(|f| &f.pat))
                    .chain(p.tables.iter().map(|t| &t.header))
            })
            .collect();
        for p in all {
            if p.multiline {
                assert!(r.scanner.present_keyed[p.slot], "multi-line pattern without literal: {}", p.regex);
            } else {
                assert!(r.scanner.covered[p.slot], "{}", p.regex);
            }
        }
        let names = r.program_names();
        for n in [
            "LAMMPS",
            "GROMACS",
            "OpenFOAM",
            "Quantum ESPRESSO",
            "WRF",
            "CP2K",
            "VASP",
            "OpenMC",
            "Python",
            "Gaussian",
            "ORCA",
            "NWChem",
            "Psi4",
            "NAMD",
            "ABINIT",
            "DFTB+",
            "Amber",
            "xtb",
            "GAMESS",
            "Q-Chem",
            "Molpro",
            "GPAW",
            "MOPAC",
            "DIRAC",
            "FHI-aims",
            "CRYSTAL",
            "FDS",
            "CAMx",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }
}
