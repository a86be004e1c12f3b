//! `collector parse`: run the solver-log parser on files by hand.
//!
//! For admins writing site rules (`/etc/runledger/parsers.toml`) and checking what runledger
//! makes of a log: the program, the outcome, the failure category with its evidence line, and
//! every fact, exactly as the epilog would record them ([`logparse::Analysis::to_facts`]).
//! Files up to [`MAX_WHOLE`] are read whole; of a larger file the first and last
//! [`HEAD_TAIL`] bytes are read (the parser is told that bytes were skipped between them).

use logparse::{analyze, Analysis, Rules, Window};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A file up to this size is read whole.
pub const MAX_WHOLE: u64 = 64 << 20;
/// Of a larger file, this many bytes from its start and this many from its end.
pub const HEAD_TAIL: u64 = 32 << 20;

/// Why a command of this crate's analysis family failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// The user's input is wrong (a file that cannot be read, a bad rules file): exit code 2.
    Usage(String),
    /// Something else went wrong (the database cannot be read): exit code 1.
    Failure(String),
}

impl From<rusqlite::Error> for CmdError {
    fn from(e: rusqlite::Error) -> Self {
        CmdError::Failure(format!("reading the database: {e}"))
    }
}

pub const ABOUT: &str =
    "Show what runledger reads from solver logs: program, outcome, failure category, evidence, facts";

pub const LONG_ABOUT: &str = "\
Show what runledger reads from solver logs: the program (and version), the outcome (success, \
failed, incomplete, unknown), the failure category and the one line that shows it, and every \
fact (ranks, threads, steps, atoms or cells, wall time, performance, …) — exactly what the epilog \
records for a job's log files.

Use it to check a log by hand, or while writing site rules: --rules loads a rules file on top of \
the built-in rules (a program of the same name replaces the built-in one). Without --rules, the \
site file the epilog uses is used when it exists: the configuration's [logs] rules, by default \
/etc/runledger/parsers.toml. A rules file \
that cannot be used is reported with its line and rule, and nothing is parsed (exit code 2).

Files up to 64 MiB are read whole; of a larger file the first and the last 32 MiB are read (counts \
over the whole file, such as summed steps, are then left out).

Outcomes: success (the code's own success marker came last), failed (a failure marker no success \
marker overrides), incomplete (a code was recognised but its log just stops: category truncated), \
unknown (nothing recognised). Categories: numerical_instability, input_error, file_not_found, \
out_of_memory, time_limit, mpi_abort, launch_failure, environment_error, io_error, segfault, signal, \
cancelled, node_failure, truncated, unknown.";

pub const AFTER_HELP: &str = "\
Examples:
  collector parse run/log.lammps
  collector parse slurm-1234.out slurm-1234.err --combine
  collector parse --rules ./parsers.toml avbp.log --json
  collector parse /scratch/alice/case/log.* | less

Exit status: 0 when every file was read; 2 when a file could not be read or the rules file is bad.";

#[derive(Debug)]
pub struct ParseArgs {
    /// Log files to read.
    pub files: Vec<PathBuf>,

    /// A site rules file, on top of the built-in rules [default: the configuration's [logs] rules,
    /// /etc/runledger/parsers.toml, when it exists].
    pub rules: Option<PathBuf>,

    /// Only the built-in rules (ignore the site's rules file).
    pub builtin: bool,

    /// Also show the job-level verdict of all the files together, as the epilog combines one job's
    /// stdout and stderr (a failure anywhere wins).
    pub combine: bool,

    /// Print JSON: an array with one object per file (and a "combined" object with --combine).
    pub json: bool,
}

/// What was read of one file.
pub struct LogRead {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    pub size: u64,
}

impl LogRead {
    pub fn window(&self) -> Window<'_> {
        Window { head: &self.head, tail: &self.tail, truncated_between: !self.tail.is_empty() }
    }
}

/// Reads a file whole, or its head and tail when it is larger than [`MAX_WHOLE`].
pub fn read_log(path: &Path) -> Result<LogRead, String> {
    read_log_limited(path, MAX_WHOLE, HEAD_TAIL)
}

pub fn read_log_limited(path: &Path, max_whole: u64, head_tail: u64) -> Result<LogRead, String> {
    let err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        return Err(format!("{} is a directory, not a log file", path.display()));
    }
    let mut f = std::fs::File::open(path).map_err(err)?;
    let size = meta.len();
    if size <= max_whole {
        let mut head = Vec::with_capacity(size as usize);
        // `take`: a file still being written does not make us read more than we planned.
        f.by_ref().take(max_whole).read_to_end(&mut head).map_err(err)?;
        return Ok(LogRead { head, tail: Vec::new(), size });
    }
    let mut head = Vec::with_capacity(head_tail as usize);
    f.by_ref().take(head_tail).read_to_end(&mut head).map_err(err)?;
    f.seek(SeekFrom::Start(size - head_tail)).map_err(err)?;
    let mut tail = Vec::with_capacity(head_tail as usize);
    f.take(head_tail).read_to_end(&mut tail).map_err(err)?;
    Ok(LogRead { head, tail, size })
}

/// The rules `collector parse` uses: `--rules FILE` on top of the built-ins, else the site file
/// `site` when it exists (unless `builtin`).
pub fn load_rules(rules: Option<&Path>, builtin: bool, site: &Path) -> Result<Rules, CmdError> {
    if builtin {
        return Ok(Rules::builtin());
    }
    match rules {
        Some(p) => {
            if let Err(e) = std::fs::metadata(p) {
                return Err(CmdError::Usage(format!("cannot read the rules file {}: {e}", p.display())));
            }
            Rules::load_site(p).map_err(|e| CmdError::Usage(format!("bad rules file: {e}")))
        }
        None => Rules::load_site(site)
            .map_err(|e| CmdError::Usage(format!("bad site rules file (use --builtin to parse without it): {e}"))),
    }
}

/// One file's result.
pub struct FileReport {
    pub path: PathBuf,
    pub size: u64,
    pub head_bytes: usize,
    pub tail_bytes: usize,
    pub analysis: Analysis,
}

fn fmt_size(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

/// Human-readable report of one file.
pub fn report_text(r: &FileReport) -> String {
    let a = &r.analysis;
    let mut o = String::new();
    let how = if r.tail_bytes == 0 {
        "read whole".to_string()
    } else {
        format!("first {} and last {} read", fmt_size(r.head_bytes as u64), fmt_size(r.tail_bytes as u64))
    };
    let _ = writeln!(o, "{} ({}, {how})", r.path.display(), fmt_size(r.size));
    let dash = |v: Option<&str>| v.map(str::to_string).unwrap_or_else(|| "-".into());
    let _ = writeln!(o, "  program   {}", dash(a.program.as_deref()));
    if a.programs_seen.len() > 1 {
        let _ = writeln!(o, "  programs  {}", a.programs_seen.join(", "));
    }
    let _ = writeln!(o, "  outcome   {}", a.outcome);
    let _ = writeln!(o, "  category  {}", dash(a.category.map(|c| c.as_str())));
    let _ = writeln!(o, "  evidence  {}", dash(a.evidence.as_deref()));
    if a.facts.is_empty() {
        let _ = writeln!(o, "  facts     none");
    } else {
        let _ = writeln!(o, "  facts:");
        let width = a.facts.iter().map(|f| f.key.chars().count()).max().unwrap_or(0).min(28);
        for f in &a.facts {
            let unit = f.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            let _ = writeln!(o, "    {:<width$}  {}{unit}", f.key, f.value);
        }
    }
    o
}

pub fn report_json(r: &FileReport) -> Value {
    let a = &r.analysis;
    json!({
        "file": r.path.display().to_string(),
        "bytes": r.size,
        "head_bytes": r.head_bytes,
        "tail_bytes": r.tail_bytes,
        "truncated_between": r.tail_bytes > 0,
        "program": a.program,
        "programs_seen": a.programs_seen,
        "outcome": a.outcome.as_str(),
        "category": a.category.map(|c| c.as_str()),
        "evidence": a.evidence,
        "facts": a.facts.iter().map(|f| json!({"key": f.key, "value": f.value, "unit": f.unit})).collect::<Vec<_>>(),
        "record_facts": a.to_facts(&r.path.display().to_string()).iter()
            .map(|f| json!({"source": f.source, "key": f.key, "value": f.value, "unit": f.unit}))
            .collect::<Vec<_>>(),
    })
}

/// Reads and analyses every file with the built-in rules plus `--rules` (else `site`, the
/// configuration's rules file); returns the output text and the files that could not be read.
pub fn parse_files(args: &ParseArgs, site: &Path) -> Result<(String, Vec<String>), CmdError> {
    let rules = load_rules(args.rules.as_deref(), args.builtin, site)?;
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for path in &args.files {
        match read_log(path) {
            Ok(read) => {
                let analysis = analyze(&rules, &read.window());
                reports.push(FileReport {
                    path: path.clone(),
                    size: read.size,
                    head_bytes: read.head.len(),
                    tail_bytes: read.tail.len(),
                    analysis,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    let combined = (args.combine && !reports.is_empty()).then(|| {
        let parts: Vec<&Analysis> = reports.iter().map(|r| &r.analysis).collect();
        logparse::combine(&parts)
    });
    let text = if args.json {
        let mut v = json!(reports.iter().map(report_json).collect::<Vec<_>>());
        if let Some(c) = &combined {
            v = json!({
                "files": v,
                "combined": {
                    "program": c.program,
                    "outcome": c.outcome.as_str(),
                    "category": c.category.map(|c| c.as_str()),
                    "evidence": c.evidence,
                }
            });
        }
        let mut s = serde_json::to_string_pretty(&v).expect("JSON values serialize");
        s.push('\n');
        s
    } else {
        let mut s = reports.iter().map(report_text).collect::<Vec<_>>().join("\n");
        if let Some(c) = &combined {
            let dash = |v: Option<&str>| v.map(str::to_string).unwrap_or_else(|| "-".into());
            let _ = writeln!(s, "\nCombined ({} files, as the epilog judges one job's logs)", reports.len());
            let _ = writeln!(s, "  program   {}", dash(c.program.as_deref()));
            let _ = writeln!(s, "  outcome   {}", c.outcome);
            let _ = writeln!(s, "  category  {}", dash(c.category.map(|c| c.as_str())));
            let _ = writeln!(s, "  evidence  {}", dash(c.evidence.as_deref()));
        }
        s
    };
    Ok((text, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../logparse/tests/corpus").join(rel)
    }

    fn args(files: &[PathBuf]) -> ParseArgs {
        ParseArgs { files: files.to_vec(), rules: None, builtin: true, combine: false, json: true }
    }

    fn parsed_json(a: &ParseArgs) -> Value {
        let (text, errors) = parse_files(a, Path::new(logparse::SITE_RULES_PATH)).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn corpus_logs_give_program_outcome_and_category() {
        let v = parsed_json(&args(&[corpus("lammps/melt-success-4procs.log")]));
        let f = &v[0];
        assert_eq!(f["program"], "LAMMPS");
        assert_eq!(f["outcome"], "success");
        assert_eq!(f["category"], Value::Null);
        let facts = f["facts"].as_array().unwrap();
        let get = |k: &str| facts.iter().find(|x| x["key"] == k).map(|x| x["value"].clone());
        assert_eq!(get("mpi_ranks"), Some(json!("4")));
        assert_eq!(get("atoms"), Some(json!("4000")));
        assert_eq!(get("steps"), Some(json!("250")));

        let v = parsed_json(&args(&[corpus("lammps/potential-file-missing.log")]));
        assert_eq!(v[0]["outcome"], "failed");
        assert_eq!(v[0]["category"], "file_not_found");
        assert!(v[0]["evidence"].as_str().unwrap().contains("MCM2011_eam.fs"));
        // The record facts are what the epilog stores: source = the file.
        let rf = v[0]["record_facts"].as_array().unwrap();
        assert!(rf.iter().any(|x| x["key"] == "failure_category" && x["value"] == "file_not_found"));
        assert!(rf.iter().all(|x| x["source"].as_str().unwrap().ends_with("potential-file-missing.log")));
    }

    #[test]
    fn text_report_and_combined_verdict() {
        let mut a = args(&[corpus("slurm/openmc-timelimit.job.out"), corpus("slurm/openmc-timelimit.job.err.tail")]);
        a.json = false;
        a.combine = true;
        let (text, errors) = parse_files(&a, Path::new(logparse::SITE_RULES_PATH)).unwrap();
        assert!(errors.is_empty());
        assert!(text.contains("openmc-timelimit.job.out ("), "{text}");
        assert!(text.contains("  program   OpenMC"), "{text}");
        assert!(text.contains("  outcome   incomplete"), "{text}");
        let combined = &text[text.find("Combined (2 files").expect(&text)..];
        assert!(combined.contains("outcome   failed") && combined.contains("category  time_limit"), "{combined}");
        assert!(combined.contains("DUE TO TIME LIMIT"), "{combined}");
    }

    #[test]
    fn unreadable_files_are_reported_and_others_still_parsed() {
        let a = args(&[PathBuf::from("/nonexistent/log.lammps"), corpus("lammps/melt-success-4procs.log")]);
        let (text, errors) = parse_files(&a, Path::new(logparse::SITE_RULES_PATH)).unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("/nonexistent/log.lammps"), "{errors:?}");
        assert!(text.contains("LAMMPS"));
        let dir = tempfile::tempdir().unwrap();
        let e = read_log(dir.path()).err().unwrap();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn site_rules_add_programs_and_bad_rules_name_line_and_rule() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("parsers.toml");
        std::fs::write(
            &rules,
            "[[program]]\nname = \"AVBP\"\ndetect = '^\\s*Running avbp version (?P<version>\\S+)'\n\
             success = '^\\s*AVBP: normal end'\n\n[[program.failure]]\npattern = '^\\s*Error: (?P<evidence>.*)'\n\
             category = \"input_error\"\n",
        )
        .unwrap();
        let log = dir.path().join("avbp.log");
        std::fs::write(&log, "Running avbp version 7.9\nstep 1\nError: bad mesh file\n").unwrap();
        let mut a = args(&[log]);
        a.builtin = false;
        a.rules = Some(rules.clone());
        let v = parsed_json(&a);
        assert_eq!(v[0]["program"], "AVBP");
        assert_eq!(v[0]["outcome"], "failed");
        assert_eq!(v[0]["category"], "input_error");
        assert_eq!(v[0]["evidence"], "bad mesh file");

        std::fs::write(
            &rules,
            "[[program]]\nname = \"AVBP\"\ndetect = 'x'\n\n[[program.failure]]\npattern = '(unclosed'\ncategory = \"input_error\"\n",
        )
        .unwrap();
        let Err(CmdError::Usage(e)) = parse_files(&a, Path::new(logparse::SITE_RULES_PATH)) else {
            panic!("bad rules accepted")
        };
        assert!(e.contains("parsers.toml:6") && e.contains("AVBP") && e.contains("failure #1"), "{e}");
        a.rules = Some(dir.path().join("missing.toml"));
        let Err(CmdError::Usage(e)) = parse_files(&a, Path::new(logparse::SITE_RULES_PATH)) else {
            panic!("missing rules accepted")
        };
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn big_files_are_read_as_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.log");
        let mut content = b"LAMMPS (8 Apr 2021)\n".to_vec();
        content.extend(std::iter::repeat_n(b"1 2 3 4\n".as_slice(), 1000).flatten());
        content.extend(b"ERROR: Lost atoms: original 4000 current 3998 (src/thermo.cpp:481)\n");
        let r = read_log_limited(&p, 100, 40).err().unwrap();
        assert!(r.contains("big.log"));
        std::fs::write(&p, &content).unwrap();
        let r = read_log_limited(&p, 100, 80).unwrap();
        assert_eq!((r.head.len(), r.tail.len(), r.size), (80, 80, content.len() as u64));
        assert!(r.window().truncated_between);
        let a = analyze(&Rules::builtin(), &r.window());
        assert_eq!(a.program.as_deref(), Some("LAMMPS"));
        assert_eq!(a.outcome, logparse::Outcome::Failed);
        let whole = read_log(&p).unwrap();
        assert!(whole.tail.is_empty() && whole.head.len() == content.len());
    }
}
