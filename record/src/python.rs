//! What a job's Python processes said about themselves: user-reported records.
//!
//! The node package's Python hook (`_runledger_pyhook.py`) writes one file per interpreter
//! process of rank 0 into a per-job directory the job's user owns (the plugin names it in
//! [`DIR_ENV`] and in [`crate::StepStart::python_dir`]); the epilog reads it as that user,
//! validates every field ([`PythonProcess::validate`]) and carries what passed in
//! [`crate::JobEnd::python`]. Everything here is the user's word, never root's: it describes
//! only the job whose directory it was found in and fills no other field of the ledger.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// The variable the plugin sets for the job's tasks: the per-job directory the hook writes into.
/// Private to runledger, so Python 2 and programs reading `PYTHONPATH` see no difference.
pub const DIR_ENV: &str = "RUNLEDGER_PYTHON_DIR";
/// `RUNLEDGER_PYTHON=0` (or `no`, `false`, `off`) in a job's environment: record no Python.
pub const OPT_OUT_ENV: &str = "RUNLEDGER_PYTHON";
/// The hook's files: `<pid>.rlpy`.
pub const FILE_SUFFIX: &str = ".rlpy";
/// Bounds the epilog applies to what it reads (the hook keeps within them too).
pub const MAX_FILES: usize = 128;
pub const MAX_FILE_BYTES: u64 = 32 * 1024;
pub const MAX_PACKAGES: usize = 256;
pub const MAX_NAME: usize = 64;
pub const MAX_VERSION: usize = 64;
pub const MAX_TEXT: usize = 512;
/// At most this many files are described in [`PythonReport::rejected`].
pub const MAX_REJECTED: usize = 16;

/// Whether `value` of [`OPT_OUT_ENV`], the SPANK option or the plugin argument says "no".
pub fn is_off(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "0" | "no" | "false" | "off")
}

/// One node's Python records of a job, as the epilog found them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PythonReport {
    /// Marks the whole report as written by the job's user, not by root.
    #[serde(default = "user_reported")]
    pub source: String,
    #[serde(default)]
    pub processes: Vec<PythonProcess>,
    /// Files not taken, each `file: reason` (at most [`MAX_REJECTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
    /// Files beyond [`MAX_FILES`] or past the time budget, not read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u32,
}

fn user_reported() -> String {
    "user".into()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One Python interpreter process of rank 0.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PythonProcess {
    pub pid: u32,
    /// The MPI rank or SLURM_PROCID it ran as (always 0: other ranks stay silent).
    pub rank: u32,
    /// `sys.executable`.
    pub interpreter: String,
    /// `major.minor.micro`.
    pub version: String,
    /// `sys.prefix`: a venv or conda environment when it differs from `base_prefix`.
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_prefix: String,
    /// The main script, `-m module`, `-c`, or empty (interactive, embedded).
    #[serde(default)]
    pub main: String,
    pub start: Timestamp,
    #[serde(default)]
    pub packages: Vec<PythonPackage>,
    /// `normal`, `exception:<Type>` or `unfinished` (killed, or still running at the epilog).
    pub ended: String,
}

/// A top-level package the process imported.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PythonPackage {
    pub name: String,
    /// `__version__` or the package metadata's; absent when neither said, or the process never
    /// reached its exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl PythonPackage {
    /// `name/version`, or `name` alone, as `query jobs --json` lists them.
    pub fn full_name(&self) -> String {
        match &self.version {
            Some(v) => format!("{}/{v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A top-level import name: an ASCII Python identifier, at most [`MAX_NAME`] long.
pub fn valid_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A version as packages spell it: 1–[`MAX_VERSION`] printable ASCII characters, no spaces.
pub fn valid_version(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VERSION && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Text the user controls (paths, main): bounded and free of control characters.
pub fn valid_text(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

/// `normal`, `unfinished`, or `exception:` and an identifier.
pub fn valid_ended(s: &str) -> bool {
    match s {
        "normal" | "unfinished" => true,
        _ => s.strip_prefix("exception:").is_some_and(valid_package_name),
    }
}

impl PythonProcess {
    /// Checks every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.rank != 0 {
            return Err(format!("rank {} (only rank 0 records)", self.rank));
        }
        for (what, v) in [
            ("interpreter", &self.interpreter),
            ("prefix", &self.prefix),
            ("base_prefix", &self.base_prefix),
            ("main", &self.main),
        ] {
            if !valid_text(v) {
                return Err(format!("{what}: longer than {MAX_TEXT} bytes or control characters"));
            }
        }
        if !self.interpreter.starts_with('/') {
            return Err("interpreter: not an absolute path".into());
        }
        let v: Vec<&str> = self.version.split('.').collect();
        if v.len() != 3 || v.iter().any(|p| p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("version {:?}: not major.minor.micro", self.version));
        }
        if !valid_ended(&self.ended) {
            return Err(format!("ended {:?}: not normal, exception:<Type> or unfinished", self.ended));
        }
        if self.packages.len() > MAX_PACKAGES {
            return Err(format!("{} packages (at most {MAX_PACKAGES})", self.packages.len()));
        }
        for p in &self.packages {
            if !valid_package_name(&p.name) {
                return Err(format!("package name {:?}: not a Python identifier of at most {MAX_NAME}", p.name));
            }
            if p.version.as_deref().is_some_and(|v| !valid_version(v)) {
                return Err(format!("package {}: version not printable ASCII of at most {MAX_VERSION}", p.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> PythonProcess {
        PythonProcess {
            pid: 42,
            rank: 0,
            interpreter: "/usr/bin/python3".into(),
            version: "3.11.2".into(),
            prefix: "/usr".into(),
            base_prefix: "/usr".into(),
            main: "run.py".into(),
            start: 1,
            packages: vec![PythonPackage { name: "numpy".into(), version: Some("1.24.2".into()) }],
            ended: "exception:ValueError".into(),
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert_eq!(good().validate(), Ok(()));
        type Spoil = fn(&mut PythonProcess);
        let cases: [(Spoil, &str); 7] = [
            (|p| p.rank = 1, "rank 1"),
            (|p| p.interpreter = "python".into(), "interpreter: not an absolute"),
            (|p| p.main = "a\x1b[2Jb".into(), "main:"),
            (|p| p.version = "3.x".into(), "version \"3.x\""),
            (|p| p.ended = "exception:a b".into(), "ended"),
            (|p| p.packages[0].name = "../etc".into(), "package name \"../etc\""),
            (|p| p.packages[0].version = Some("1 2".into()), "package numpy: version"),
        ];
        for (spoil, want) in cases {
            let mut p = good();
            spoil(&mut p);
            let e = p.validate().unwrap_err();
            assert!(e.starts_with(want), "{e} / {want}");
        }
    }

    #[test]
    fn names_versions_and_switches() {
        assert!(valid_package_name("mpi4py") && valid_package_name("_x"));
        assert!(!valid_package_name("4py") && !valid_package_name("") && !valid_package_name("a.b"));
        assert!(valid_version("1.26.0+local") && !valid_version("") && !valid_version(&"1".repeat(65)));
        assert!(is_off(" No ") && is_off("0") && !is_off("yes") && !is_off(""));
        let p = PythonPackage { name: "numpy".into(), version: None };
        assert_eq!(p.full_name(), "numpy");
    }

    #[test]
    fn an_old_reader_and_a_new_writer_agree() {
        let r: PythonReport = serde_json::from_str(r#"{"processes":[]}"#).unwrap();
        assert_eq!(r.source, "user");
        let back: PythonReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
