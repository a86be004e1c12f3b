//! Parameters from a job's INPUT files: which integrator, cutoff, pair style, smearing or solver
//! a run asked for, so a manager can ask whether efficiency or failures go with a setting.
//!
//! # Why it is built this way
//!
//! * **Formats, not regexes, for the common codes.** Input files are small, structured and
//!   written by hand: a GROMACS `.mdp` (`key = value ; comment`), a LAMMPS input (one command a
//!   line, `&` continuations, `#` comments), a VASP `INCAR` (`KEY = value`, `;` between
//!   assignments, `#`/`!` comments), Fortran namelists (Quantum ESPRESSO's `&control … /`, WRF's
//!   `namelist.input`, one value per domain), OpenFOAM dictionaries (`key value;`, nested
//!   `{ }`, C comments). A small reader per syntax gets them right where a line regex would
//!   not (several assignments a line, continuations, nested blocks), and each keeps a fixed,
//!   documented list of keys ([`BUILTIN_FORMATS`]): facts travel in every batch, so a job
//!   carries the dozen settings managers compare, not the whole file.
//! * **Facts are `param.NAME`**, NAME spelled as the code documents it (`param.ENCUT`,
//!   `param.ecutwfc`, `param.deltaT`, `param.cutoff-scheme`), values as written (quotes and
//!   comments removed; WRF's and GROMACS's per-domain or per-group lists give their first
//!   value). A setting a file gives twice keeps its last (the code reads it that way).
//! * **Sites add their own** with `[[program.input]]` in the rules file ([`InputRules`]): file
//!   name globs and a pattern whose named groups become facts (`(?P<key>…)` with
//!   `(?P<value>…)` names the parameter from the text).
//! * **Which files.** By name in the work directory ([`InputRules::format_of`]), and those the
//!   step's command line names after `-in`, `-i`, `-inp`, `-input`, `-f` or `-s`
//!   ([`files_in_argv`]). A shell redirection (`lmp < in.melt`) is not part of argv and so is
//!   never seen; such a file is found only by its name. A name that says nothing (`run.txt`)
//!   is read as the format its program implies (`lmp -in run.txt` is LAMMPS) or its content
//!   shows; one nothing recognises (a binary `.tpr`) gives no facts.
//! * **Bounded and total.** The caller gives a bounded window; every reader is one linear pass,
//!   never panics on any bytes, keeps at most [`MAX_PARAMS`] facts a file and values of at
//!   most [`MAX_PARAM_VALUE`] bytes.

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};
use runledger_record::env::Pattern;
use serde::Deserialize;

use crate::model::FactValue;
use crate::rule_error::RuleError;

/// Facts kept from one input file, at most.
pub const MAX_PARAMS: usize = 48;
/// Longest value kept (longer ones are cut at a character boundary).
pub const MAX_PARAM_VALUE: usize = 256;
/// Prefix of every parameter fact's key.
pub const PARAM_PREFIX: &str = "param.";

/// The built-in input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputFormat {
    GromacsMdp,
    LammpsIn,
    VaspIncar,
    QeNamelist,
    OpenFoamControlDict,
    OpenFoamFvSolution,
    WrfNamelist,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::GromacsMdp => "gromacs_mdp",
            InputFormat::LammpsIn => "lammps_in",
            InputFormat::VaspIncar => "vasp_incar",
            InputFormat::QeNamelist => "qe_namelist",
            InputFormat::OpenFoamControlDict => "openfoam_controldict",
            InputFormat::OpenFoamFvSolution => "openfoam_fvsolution",
            InputFormat::WrfNamelist => "wrf_namelist",
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One built-in format: the file names it is looked for under in the work directory and the
/// keys it keeps (documentation and the epilog's listing both read this table).
pub struct FormatSpec {
    pub format: InputFormat,
    /// Globs of file names in the work directory (`system/` for OpenFOAM's dictionaries).
    pub globs: &'static [&'static str],
    pub keys: &'static [&'static str],
}

/// The built-in formats, their file names and the keys they keep.
pub const BUILTIN_FORMATS: &[FormatSpec] = &[
    FormatSpec {
        format: InputFormat::GromacsMdp,
        globs: &["*.mdp"],
        keys: &[
            "integrator",
            "dt",
            "nsteps",
            "cutoff-scheme",
            "coulombtype",
            "rcoulomb",
            "vdwtype",
            "vdw-modifier",
            "rvdw",
            "tcoupl",
            "ref-t",
            "pcoupl",
            "constraints",
            "nstlist",
            "free-energy",
        ],
    },
    FormatSpec {
        format: InputFormat::LammpsIn,
        globs: &["in.*", "*.in", "*.lmp"], // not *.lammps: log.lammps is the log
        // `fix` is the styles of every fix, in order, comma-separated; `run` the sum of the runs.
        keys: &[
            "units",
            "atom_style",
            "boundary",
            "pair_style",
            "bond_style",
            "kspace_style",
            "timestep",
            "run",
            "minimize",
            "fix",
            "neighbor",
        ],
    },
    FormatSpec {
        format: InputFormat::VaspIncar,
        globs: &["INCAR"],
        keys: &[
            "ENCUT", "PREC", "ISMEAR", "SIGMA", "IBRION", "ISIF", "NSW", "ALGO", "EDIFF", "ISPIN", "GGA", "METAGGA",
            "LHFCALC", "IVDW", "LREAL", "NCORE", "NPAR", "KPAR", "NELM",
        ],
    },
    FormatSpec {
        format: InputFormat::QeNamelist,
        globs: &["*.in", "*.pwi", "*.inp"],
        keys: &[
            "calculation",
            "ecutwfc",
            "ecutrho",
            "conv_thr",
            "mixing_beta",
            "mixing_mode",
            "occupations",
            "smearing",
            "degauss",
            "input_dft",
            "nspin",
            "ibrav",
            "nat",
            "ntyp",
            "diagonalization",
            "ion_dynamics",
            "cell_dynamics",
            "nstep",
        ],
    },
    FormatSpec {
        format: InputFormat::OpenFoamControlDict,
        globs: &["controlDict"],
        keys: &[
            "application",
            "startTime",
            "endTime",
            "deltaT",
            "writeControl",
            "writeInterval",
            "adjustTimeStep",
            "maxCo",
        ],
    },
    FormatSpec {
        // `solver.FIELD` per entry of `solvers { }`, and `algorithm` (SIMPLE, PISO, PIMPLE).
        format: InputFormat::OpenFoamFvSolution,
        globs: &["fvSolution"],
        keys: &["solver.*", "algorithm"],
    },
    FormatSpec {
        format: InputFormat::WrfNamelist,
        globs: &["namelist.input"],
        keys: &[
            "time_step",
            "max_dom",
            "e_we",
            "e_sn",
            "e_vert",
            "dx",
            "dy",
            "mp_physics",
            "ra_lw_physics",
            "ra_sw_physics",
            "sf_sfclay_physics",
            "sf_surface_physics",
            "bl_pbl_physics",
            "cu_physics",
            "run_days",
            "run_hours",
        ],
    },
];

fn spec(f: InputFormat) -> &'static FormatSpec {
    BUILTIN_FORMATS.iter().find(|s| s.format == f).expect("every format has a spec")
}

/// The input files a step's command line names: the word after `-in`, `-i`, `-inp`, `-input`,
/// `-f` or `-s` (and their `--` and `=` forms), with the format the program implies when the
/// program is one whose input flag is known (`lmp -in FILE` is LAMMPS, `pw.x -i FILE` QE,
/// `gmx grompp -f FILE` GROMACS). `< FILE` is the shell's and never reaches argv.
pub fn files_in_argv(argv: &[String]) -> Vec<(String, Option<InputFormat>)> {
    const FLAGS: [&str; 6] = ["in", "i", "inp", "input", "f", "s"];
    let mut out: Vec<(String, Option<InputFormat>)> = Vec::new();
    // The program: the first word that is not a launcher or one of its options.
    let prog = argv
        .iter()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .find(|a| !a.starts_with('-') && !matches!(*a, "srun" | "mpirun" | "mpiexec" | "env" | "time" | "numactl"))
        .unwrap_or("");
    let implied = |flag: &str| -> Option<InputFormat> {
        let p = prog.to_ascii_lowercase();
        if (p.starts_with("lmp") || p.starts_with("lammps")) && matches!(flag, "in" | "i") {
            Some(InputFormat::LammpsIn)
        } else if p.ends_with(".x") && matches!(flag, "in" | "i" | "inp" | "input") {
            Some(InputFormat::QeNamelist) // pw.x, cp.x, ph.x: Quantum ESPRESSO's binaries
        } else if (p.starts_with("gmx") || p == "grompp") && flag == "f" {
            Some(InputFormat::GromacsMdp)
        } else {
            None
        }
    };
    let mut i = 0;
    while i < argv.len() && out.len() < 16 {
        let a = argv[i].as_str();
        let bare = a.trim_start_matches('-');
        let dashes = a.len() - bare.len();
        if (1..=2).contains(&dashes) {
            let (flag, inline) = match bare.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (bare, None),
            };
            if FLAGS.contains(&flag) {
                let value = inline.map(str::to_string).or_else(|| argv.get(i + 1).cloned());
                if let Some(v) = value.filter(|v| !v.is_empty() && !v.starts_with('-')) {
                    let hint = implied(flag);
                    if !out.iter().any(|(p, _)| *p == v) {
                        out.push((v, hint));
                    }
                    if inline.is_none() {
                        i += 1;
                    }
                }
            }
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Site rules: `[[program.input]]`.

#[derive(Deserialize)]
struct SiteDoc {
    #[serde(default)]
    program: Vec<SiteProgram>,
}

#[derive(Deserialize)]
struct SiteProgram {
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Vec<SiteInputDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteInputDoc {
    globs: Vec<String>,
    pattern: String,
    /// With `key`/`value` groups: only these keys (any, when empty).
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Debug)]
struct SiteInput {
    program: String,
    globs: Vec<Pattern>,
    glob_text: Vec<String>,
    re: Regex,
    keys: Vec<String>,
}

/// The input readers: the built-in formats plus a site's `[[program.input]]` rules.
///
/// ```toml
/// [[program]]
/// name = "AVBP"
/// detect = '^\s*Running avbp version (?P<version>\S+)'
/// [[program.input]]
/// globs = ["run.params", "*.avbp"]          # file names in the work directory
/// pattern = '^\s*(?P<key>[a-z_]+)\s*=\s*(?P<value>\S+)'   # param.<key> = value, every match
/// keys = ["scheme", "cfl", "nsteps"]         # optional: only these keys
/// # or fixed names: pattern = '^CFL\s+(?P<cfl>\S+)'       # param.cfl
/// ```
#[derive(Debug)]
pub struct InputRules {
    site: Vec<SiteInput>,
}

impl Default for InputRules {
    fn default() -> Self {
        InputRules::builtin()
    }
}

impl InputRules {
    /// The built-in formats only.
    pub fn builtin() -> InputRules {
        InputRules { site: Vec::new() }
    }

    /// The built-ins plus the `[[program.input]]` rules of a rules file's text (other parts of
    /// the file are [`crate::Rules`]'s business and not checked here).
    pub fn from_toml(text: &str, origin: &str) -> Result<InputRules, RuleError> {
        let err = |line: Option<usize>, rule: Option<String>, message: String| RuleError {
            origin: origin.to_string(),
            line,
            rule,
            message,
        };
        let doc: SiteDoc = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1);
            err(line, None, e.message().trim().to_string())
        })?;
        let mut site = Vec::new();
        for p in doc.program {
            for (n, i) in p.input.into_iter().enumerate() {
                let rule = Some(format!("program {:?} input #{}", p.name, n + 1));
                if i.globs.is_empty() {
                    return Err(err(None, rule, "globs: at least one file name is needed".into()));
                }
                let re = RegexBuilder::new(&i.pattern)
                    .multi_line(true)
                    .unicode(false)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| err(None, rule.clone(), format!("pattern: {e}")))?;
                let names: Vec<&str> = re.capture_names().flatten().collect();
                let kv = names.contains(&"key") && names.contains(&"value");
                if names.is_empty() || (names.contains(&"key") != names.contains(&"value")) {
                    return Err(err(
                        None,
                        rule,
                        "pattern: needs named groups: (?P<key>…) with (?P<value>…), or (?P<NAME>…) per parameter"
                            .into(),
                    ));
                }
                if !kv && !i.keys.is_empty() {
                    return Err(err(None, rule, "keys: only with (?P<key>…) and (?P<value>…) groups".into()));
                }
                site.push(SiteInput {
                    program: p.name.clone(),
                    globs: i.globs.iter().map(|g| Pattern::new(g)).collect(),
                    glob_text: i.globs.clone(),
                    re,
                    keys: i.keys,
                });
            }
        }
        Ok(InputRules { site })
    }

    /// Every file name glob the work directory is listed for (built-in and site).
    pub fn globs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in BUILTIN_FORMATS.iter().flat_map(|s| s.globs.iter()) {
            if !out.iter().any(|o| o == g) {
                out.push(g.to_string());
            }
        }
        for g in self.site.iter().flat_map(|s| s.glob_text.iter()) {
            if !out.contains(g) {
                out.push(g.clone());
            }
        }
        out
    }

    /// Whether a file of this name is read as an input (by the built-ins or the site's rules).
    pub fn wants(&self, name: &str) -> bool {
        !self.builtin_candidates(name).is_empty() || self.site.iter().any(|s| s.globs.iter().any(|g| g.matches(name)))
    }

    fn builtin_candidates(&self, name: &str) -> Vec<InputFormat> {
        BUILTIN_FORMATS
            .iter()
            .filter(|s| s.globs.iter().any(|g| Pattern::new(g).matches(name)))
            .map(|s| s.format)
            .collect()
    }

    /// The built-in format of a file from its name, its content and the program's hint. `None`
    /// when no built-in format applies. A name no format claims (a file named on the command
    /// line) is judged by its content, then the hint.
    pub fn format_of(&self, name: &str, text: &[u8], hint: Option<InputFormat>) -> Option<InputFormat> {
        let candidates = self.builtin_candidates(name);
        // `*.in` is LAMMPS or QE or something else: the content decides, then the program.
        let sniffed = sniff(text);
        match (candidates.as_slice(), hint, sniffed) {
            ([only], _, _) if !matches!(only, InputFormat::LammpsIn | InputFormat::QeNamelist) => Some(*only),
            (_, _, Some(s)) if candidates.is_empty() || candidates.contains(&s) || hint == Some(s) => Some(s),
            (_, Some(h), _) => Some(h),
            _ => None,
        }
    }

    /// The `param.*` facts of one input file (`name` is its file name, `hint` the format its
    /// program implies). Empty when nothing is recognised.
    pub fn extract(&self, name: &str, text: &[u8], hint: Option<InputFormat>) -> Vec<FactValue> {
        let mut out = Params::default();
        if let Some(f) = self.format_of(name, text, hint) {
            let text = String::from_utf8_lossy(text);
            match f {
                InputFormat::GromacsMdp => mdp(&text, &mut out),
                InputFormat::LammpsIn => lammps(&text, &mut out),
                InputFormat::VaspIncar => incar(&text, &mut out),
                InputFormat::QeNamelist | InputFormat::WrfNamelist => namelist(&text, spec(f).keys, &mut out),
                InputFormat::OpenFoamControlDict => control_dict(&text, &mut out),
                InputFormat::OpenFoamFvSolution => fv_solution(&text, &mut out),
            }
        }
        for s in self.site.iter().filter(|s| s.globs.iter().any(|g| g.matches(name))) {
            site_extract(s, text, &mut out);
        }
        out.0
    }

    /// Names of the programs whose site rules read inputs (for the log).
    pub fn site_programs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.site.iter().map(|s| s.program.as_str()).collect();
        v.dedup();
        v
    }
}

/// The format the content shows, for names that do not decide: a namelist group `&control`,
/// `&system` or `&electrons` is QE; a line starting with a LAMMPS command is LAMMPS.
fn sniff(text: &[u8]) -> Option<InputFormat> {
    let text = String::from_utf8_lossy(&text[..text.len().min(64 << 10)]);
    let mut lammps = 0;
    for line in text.lines() {
        let l = line.trim_start();
        let lower = l.to_ascii_lowercase();
        if ["&control", "&system", "&electrons"].iter().any(|g| lower.starts_with(g)) {
            return Some(InputFormat::QeNamelist);
        }
        let word = l.split_whitespace().next().unwrap_or("");
        if matches!(
            word,
            "units"
                | "atom_style"
                | "pair_style"
                | "pair_coeff"
                | "read_data"
                | "create_box"
                | "run"
                | "timestep"
                | "fix"
        ) {
            lammps += 1;
        }
    }
    (lammps >= 2).then_some(InputFormat::LammpsIn)
}

/// Facts in the making: a key set twice keeps its last value, in the place it first had.
#[derive(Default)]
struct Params(Vec<FactValue>);

impl Params {
    fn set(&mut self, name: &str, value: &str) {
        let value = clean(value);
        if value.is_empty() || name.is_empty() {
            return;
        }
        let key = format!("{PARAM_PREFIX}{name}");
        if let Some(f) = self.0.iter_mut().find(|f| f.key == key) {
            f.value = value;
        } else if self.0.len() < MAX_PARAMS {
            self.0.push(FactValue { key, value, unit: None });
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        let key = format!("{PARAM_PREFIX}{name}");
        self.0.iter().find(|f| f.key == key).map(|f| f.value.as_str())
    }
}

/// Quotes removed, control characters dropped, at most [`MAX_PARAM_VALUE`] bytes.
fn clean(v: &str) -> String {
    let v = v.trim();
    let v = v
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| v.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .unwrap_or(v)
        .trim();
    let mut out = String::new();
    for c in v.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_PARAM_VALUE {
            break;
        }
        out.push(c);
    }
    out
}

/// GROMACS `.mdp`: `key = value ; comment`; `_` and `-` are the same in keys. A per-group list
/// (`ref-t = 300 300`) gives its first value.
fn mdp(text: &str, out: &mut Params) {
    let keys = spec(InputFormat::GromacsMdp).keys;
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("");
        let Some((k, v)) = line.split_once('=') else { continue };
        let k = k.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(name) = keys.iter().find(|n| **n == k) {
            out.set(name, v.split_whitespace().next().unwrap_or(""));
        }
    }
}

/// VASP `INCAR`: `KEY = value`, several per line after `;`, comments after `#` or `!`.
fn incar(text: &str, out: &mut Params) {
    let keys = spec(InputFormat::VaspIncar).keys;
    for line in text.lines() {
        let line = line.split(['#', '!']).next().unwrap_or("");
        for part in line.split(';') {
            let Some((k, v)) = part.split_once('=') else { continue };
            let k = k.trim().to_ascii_uppercase();
            if let Some(name) = keys.iter().find(|n| **n == k) {
                out.set(name, v);
            }
        }
    }
}

/// Fortran namelists (QE, WRF): `&group … /` with `key = value` separated by commas or line
/// ends, `!` comments; a list (`e_we = 74, 112, 94`: one value per domain) gives its first.
fn namelist(text: &str, keys: &[&str], out: &mut Params) {
    let mut in_group = false;
    for line in text.lines() {
        let line = strip_fortran_comment(line);
        let t = line.trim();
        if t.starts_with('&') {
            in_group = true;
            continue;
        }
        if t == "/" || t.starts_with("/ ") {
            in_group = false;
            continue;
        }
        if !in_group {
            continue; // QE's cards (ATOMIC_POSITIONS …) are not parameters
        }
        // `a = 1, b = 'x, y', c = 3`: split at each `name =`.
        let mut rest = t;
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
            let after = &rest[eq + 1..];
            // The value runs to the next `, name =` (outside quotes) or the line's end.
            let end = next_assignment(after).unwrap_or(after.len());
            let value = after[..end].trim().trim_end_matches(',');
            let first = first_list_value(value);
            if keys.contains(&key.as_str()) {
                out.set(&key, first);
            }
            rest = &after[end..];
        }
    }
}

fn strip_fortran_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '!') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Where the next `, name =` assignment starts in a namelist value (outside quotes).
fn next_assignment(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quote = None;
    for (i, &c) in b.iter().enumerate() {
        match (quote, c) {
            (None, b'\'' | b'"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, b',' | b' ' | b'\t') => {
                // A name (letters, digits, _, (), %) then `=` — not `==`.
                let tail = s[i + 1..].trim_start();
                let name_len = tail
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'(' | b')' | b'%' | b','))
                    .count();
                let after = tail[name_len..].trim_start();
                if name_len > 0
                    && tail.as_bytes()[0].is_ascii_alphabetic()
                    && after.starts_with('=')
                    && !after.starts_with("==")
                {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn first_list_value(v: &str) -> &str {
    let v = v.trim();
    if v.starts_with('\'') || v.starts_with('"') {
        let q = &v[..1];
        return match v[1..].find(q) {
            Some(e) => &v[..e + 2],
            None => v,
        };
    }
    v.split([',', ' ', '\t']).find(|s| !s.is_empty()).unwrap_or("")
}

/// LAMMPS input: one command a line, `#` comments (outside quotes), `&` continues a line.
fn lammps(text: &str, out: &mut Params) {
    let mut logical = String::new();
    let mut fixes: Vec<String> = Vec::new();
    let mut runs: Option<Result<u64, String>> = None;
    let mut handle = |line: &str, out: &mut Params| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, args)) = words.split_first() else { return };
        match cmd {
            "units" | "atom_style" | "kspace_style" | "bond_style" | "timestep" => {
                out.set(cmd, args.first().copied().unwrap_or(""))
            }
            "boundary" => out.set(cmd, &args.join(" ")),
            "neighbor" => out.set(cmd, &args.join(" ")),
            // The style, and for hybrid styles the styles they combine (numbers are their cutoffs).
            "pair_style" => {
                let styles: Vec<&str> = match args.first() {
                    Some(h) if h.starts_with("hybrid") => args
                        .iter()
                        .copied()
                        .filter(|a| a.parse::<f64>().is_err() && !a.starts_with('$') && !a.starts_with('v'))
                        .collect(),
                    Some(s) => vec![*s],
                    None => vec![],
                };
                out.set(cmd, &styles.join(" "));
            }
            "fix" => {
                if let Some(style) = args.get(2) {
                    if !fixes.iter().any(|f| f == style) && fixes.len() < 16 {
                        fixes.push(style.to_string());
                    }
                }
            }
            "run" => {
                let n = args.first().copied().unwrap_or("");
                // The total of numeric runs; a run of `${n}` steps is kept as written (the first).
                runs = Some(match (runs.take(), n.parse::<u64>()) {
                    (None, Ok(k)) => Ok(k),
                    (Some(Ok(s)), Ok(k)) => Ok(s.saturating_add(k)),
                    (Some(Err(t)), _) => Err(t),
                    (_, Err(_)) => Err(n.to_string()),
                });
            }
            "minimize" => out.set(cmd, &args.join(" ")),
            _ => {}
        }
    };
    for raw in text.lines() {
        let line = strip_hash_comment(raw);
        let t = line.trim_end();
        if let Some(cont) = t.strip_suffix('&') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(t);
        handle(&logical, out);
        logical.clear();
    }
    if !logical.is_empty() {
        handle(&logical, out);
    }
    if !fixes.is_empty() {
        out.set("fix", &fixes.join(","));
    }
    match runs {
        Some(Ok(n)) => out.set("run", &n.to_string()),
        Some(Err(text)) => out.set("run", &text),
        None => {}
    }
}

fn strip_hash_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// An OpenFOAM dictionary's tokens: words and quoted strings, `{`, `}`, `;`; comments gone.
fn foam_tokens(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < 100_000 {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            i += b[i..].iter().position(|&c| c == b'\n').unwrap_or(b.len() - i);
        } else if b[i..].starts_with(b"/*") {
            i += 2 + b[i + 2..].windows(2).position(|w| w == b"*/").map_or(b.len() - i - 2, |p| p + 2);
        } else if matches!(c, b'{' | b'}' | b';') {
            out.push((c as char).to_string());
            i += 1;
        } else if c == b'"' {
            let e = b[i + 1..].iter().position(|&c| c == b'"').map_or(b.len(), |p| i + 1 + p);
            out.push(String::from_utf8_lossy(&b[i + 1..e]).into_owned());
            i = e + 1;
        } else {
            let s = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'{' | b'}' | b';' | b'"') {
                i += 1;
            }
            out.push(String::from_utf8_lossy(&b[s..i]).into_owned());
        }
    }
    out
}

/// Entries of an OpenFOAM dictionary as (path of dictionary names, key, value words).
fn foam_entries(text: &str) -> Vec<(Vec<String>, String, String)> {
    let toks = foam_tokens(text);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for t in toks {
        match t.as_str() {
            "{" => {
                path.push(cur.first().cloned().unwrap_or_default());
                cur.clear();
            }
            "}" => {
                path.pop();
                cur.clear();
            }
            ";" => {
                if let Some((k, v)) = cur.split_first() {
                    out.push((path.clone(), k.clone(), v.join(" ")));
                }
                cur.clear();
            }
            _ if cur.len() < 64 => cur.push(t),
            _ => {}
        }
    }
    out
}

/// `system/controlDict`: top-level entries.
fn control_dict(text: &str, out: &mut Params) {
    let keys = spec(InputFormat::OpenFoamControlDict).keys;
    for (path, k, v) in foam_entries(text) {
        if path.is_empty() && keys.contains(&k.as_str()) {
            out.set(&k, &v);
        }
    }
}

/// `system/fvSolution`: `solver.FIELD` for each `solvers { FIELD { solver NAME; } }` and the
/// pressure-velocity algorithm (the top-level SIMPLE, PISO or PIMPLE dictionary).
fn fv_solution(text: &str, out: &mut Params) {
    for (path, k, v) in foam_entries(text) {
        if path.len() == 2 && path[0] == "solvers" && k == "solver" {
            out.set(&format!("solver.{}", path[1]), &v);
        }
        if let Some(top) = path.first() {
            if matches!(top.as_str(), "SIMPLE" | "PISO" | "PIMPLE") && out.get("algorithm").is_none() {
                out.set("algorithm", top);
            }
        }
    }
}

fn site_extract(s: &SiteInput, text: &[u8], out: &mut Params) {
    let names: Vec<&str> = s.re.capture_names().flatten().collect();
    let kv = names.contains(&"key") && names.contains(&"value");
    for caps in s.re.captures_iter(text).take(10_000) {
        if kv {
            let (Some(k), Some(v)) = (caps.name("key"), caps.name("value")) else { continue };
            let k = String::from_utf8_lossy(k.as_bytes());
            if s.keys.is_empty() || s.keys.iter().any(|x| *x == k) {
                out.set(&k, &String::from_utf8_lossy(v.as_bytes()));
            }
        } else {
            for n in &names {
                if let Some(m) = caps.name(n) {
                    out.set(n, &String::from_utf8_lossy(m.as_bytes()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(f: &[FactValue], k: &str) -> Option<String> {
        f.iter().find(|x| x.key == format!("param.{k}")).map(|x| x.value.clone())
    }

    #[test]
    fn argv_flags() {
        let a: Vec<String> =
            ["lmp", "-sf", "omp", "-in", "in.melt", "-var", "x", "1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(files_in_argv(&a), vec![("in.melt".to_string(), Some(InputFormat::LammpsIn))]);
        let a: Vec<String> = ["/opt/qe/bin/pw.x", "-nk", "2", "-i", "scf.in"].iter().map(|s| s.to_string()).collect();
        assert_eq!(files_in_argv(&a), vec![("scf.in".to_string(), Some(InputFormat::QeNamelist))]);
        let a: Vec<String> =
            ["gmx", "mdrun", "-s", "topol.tpr", "--input=x.inp"].iter().map(|s| s.to_string()).collect();
        assert_eq!(files_in_argv(&a), vec![("topol.tpr".to_string(), None), ("x.inp".to_string(), None)]);
        assert!(files_in_argv(&["lmp".to_string(), "-in".to_string()]).is_empty(), "a flag without a value");
    }

    #[test]
    fn lammps_details() {
        let r = InputRules::builtin();
        let t =
            b"units metal\npair_style hybrid/overlay eam/alloy lj/cut 10.0 # comment\nfix 1 all nvt temp 300 300 0.1\n\
                  fix 2 all langevin &\n  300 300 0.1 48279\nfix 3 all nvt temp 1 1 1\nrun 100\nrun 50\n";
        let f = r.extract("in.alloy", t, None);
        assert_eq!(get(&f, "pair_style").as_deref(), Some("hybrid/overlay eam/alloy lj/cut"));
        assert_eq!(get(&f, "fix").as_deref(), Some("nvt,langevin"));
        assert_eq!(get(&f, "run").as_deref(), Some("150"));
        let f = r.extract("in.x", b"units lj\nrun ${n}\n", Some(InputFormat::LammpsIn));
        assert_eq!(get(&f, "run").as_deref(), Some("${n}"));
    }

    #[test]
    fn ambiguous_names_and_nonsense() {
        let r = InputRules::builtin();
        assert!(r.extract("notes.in", b"hello world\n", None).is_empty(), "neither QE nor LAMMPS");
        assert!(!r.wants("README"), "not an input name");
        // A file named on the command line under a name that says nothing: its content decides.
        assert_eq!(r.format_of("README", b"units lj\nrun 5\n", None), Some(InputFormat::LammpsIn));
        assert_eq!(
            r.format_of("run.txt", b"units lj\nrun 5\n", Some(InputFormat::LammpsIn)),
            Some(InputFormat::LammpsIn)
        );
        for junk in [&b"\xff\xfe&\x00=\n/{}}}{;;"[..], b"&control\n a = 'unterminated\n", b"fix\nfix 1\nrun\n"] {
            for name in ["x.in", "INCAR", "a.mdp", "controlDict", "fvSolution", "namelist.input"] {
                let _ = r.extract(name, junk, None); // never panics
            }
        }
    }

    #[test]
    fn incar_several_per_line() {
        let f = InputRules::builtin().extract("INCAR", b"ENCUT = 520; ISMEAR = 0 ! gauss\nalgo=Fast # x\n", None);
        assert_eq!(get(&f, "ENCUT").as_deref(), Some("520"));
        assert_eq!(get(&f, "ISMEAR").as_deref(), Some("0"));
        assert_eq!(get(&f, "ALGO").as_deref(), Some("Fast"));
    }

    #[test]
    fn site_rules() {
        let toml = r#"
[[program]]
name = "AVBP"
detect = 'avbp'
[[program.input]]
globs = ["run.params"]
pattern = '^\s*(?P<key>[a-z_]+)\s*=\s*(?P<value>\S+)'
keys = ["scheme", "cfl"]
[[program.input]]
globs = ["*.avbp"]
pattern = '^CFL\s+(?P<cfl>\S+)'
"#;
        let r = InputRules::from_toml(toml, "site.toml").unwrap();
        let f = r.extract("run.params", b"scheme = TTGC\ncfl = 0.7\nother = 1\n", None);
        assert_eq!(get(&f, "scheme").as_deref(), Some("TTGC"));
        assert_eq!(get(&f, "cfl").as_deref(), Some("0.7"));
        assert_eq!(get(&f, "other"), None);
        assert_eq!(get(&r.extract("a.avbp", b"CFL 0.9\n", None), "cfl").as_deref(), Some("0.9"));
        assert!(r.wants("a.avbp") && r.wants("INCAR") && !r.wants("a.txt"));
        let bad = "[[program]]\nname = \"X\"\n[[program.input]]\nglobs = [\"a\"]\npattern = '(?P<key>x'\n";
        let e = InputRules::from_toml(bad, "site.toml").unwrap_err().to_string();
        assert!(e.contains("program \"X\" input #1") && e.contains("pattern"), "{e}");
        let bad = "[[program]]\nname = \"X\"\n[[program.input]]\nglobs = [\"a\"]\npattern = 'x'\n";
        assert!(InputRules::from_toml(bad, "s").unwrap_err().to_string().contains("named groups"));
    }
}
