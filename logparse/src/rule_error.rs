//! The one error of a rules file, shared by the log rules ([`crate::rules`]) and the input-file
//! rules ([`crate::inputs`]) that the same TOML file holds.

use std::fmt;

/// A rules file that cannot be used. `Display` names the file, the line and the rule:
/// `/etc/runledger/parsers.toml:12: program "AVBP" failure #1: pattern: regex parse error: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file (or whatever name the caller gave the text).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The rule, e.g. `program "LAMMPS" field #3`, when the error is inside one.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, ": {r}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RuleError {}
