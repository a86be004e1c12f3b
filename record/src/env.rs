//! Which parts of a job's environment the ledger keeps.
//!
//! The full environment says a lot about how software is used (compilers, MPI, OMP settings) but
//! also carries secrets and noise. An allowlist and a denylist of name patterns (plugin arguments
//! `env_allow=` / `env_deny=`) choose the variables; values of secret-looking names are replaced by
//! [`REDACTED`]; sizes are bounded so a hostile environment cannot fill the spool.

use std::collections::BTreeMap;

/// What a secret's value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Substrings that make a variable name secret-looking (compared case-insensitively).
pub const SECRET_MARKERS: [&str; 6] = ["TOKEN", "SECRET", "PASSW", "KEY", "CREDENTIAL", "AUTH"];

/// Longest value kept, in bytes; longer values are cut and marked.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most variables kept per step.
pub const MAX_VARS: usize = 2048;
/// Most bytes of names and values kept per step.
pub const MAX_TOTAL_BYTES: usize = 256 * 1024;

/// Marker appended to a cut value.
pub const TRUNCATED: &str = "…<truncated>";
/// Name of the variable that says how many variables were dropped for size.
pub const DROPPED_VAR: &str = "RUNLEDGER_ENV_DROPPED";

/// Kept before any other variable when the size bounds bite: what the ledger's questions need.
pub const PRIORITY: &[&str] =
    &["SLURM_*", "PATH", "LD_LIBRARY_PATH", "LOADEDMODULES", "_LMFILES_", "MODULEPATH", "OMP_*", "HOME", "USER", "PWD"];

/// Denied unless the site's own `env_deny=` replaces the list: large or purely cosmetic.
pub const DEFAULT_DENY: &[&str] = &[
    "BASH_FUNC_*",
    "_ModuleTable*",
    "__LMOD_*",
    "LS_COLORS",
    "LESSOPEN",
    "LESSCLOSE",
    "DBUS_SESSION_BUS_ADDRESS",
    "SSH_CONNECTION",
    "SSH_CLIENT",
    "SSH_TTY",
    "XDG_SESSION_*",
    "OLDPWD",
];

pub fn is_secret_name(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| up.contains(m))
}

/// Glob-style name pattern: `*` matches any run of characters, everything else is literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: &str) -> Self {
        Pattern(p.to_string())
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

// Iterative matcher with one backtrack point: linear enough for names, no allocation.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Allowlist and denylist of variable names. A name is kept when it matches an allow pattern and
/// no deny pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFilter {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl Default for EnvFilter {
    fn default() -> Self {
        EnvFilter { allow: vec![Pattern::new("*")], deny: DEFAULT_DENY.iter().map(|p| Pattern::new(p)).collect() }
    }
}

impl EnvFilter {
    /// From the plugin arguments: comma-separated patterns; `None` keeps the default list.
    /// An empty allow list (`env_allow=`) keeps nothing.
    pub fn from_lists(allow: Option<&str>, deny: Option<&str>) -> Self {
        let split = |s: &str| -> Vec<Pattern> {
            s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(Pattern::new).collect()
        };
        let d = EnvFilter::default();
        EnvFilter { allow: allow.map(split).unwrap_or(d.allow), deny: deny.map(split).unwrap_or(d.deny) }
    }

    pub fn keeps(&self, name: &str) -> bool {
        self.allow.iter().any(|p| p.matches(name)) && !self.deny.iter().any(|p| p.matches(name))
    }

    /// Applies the filter to `NAME=value` entries (raw bytes: environments need not be UTF-8).
    /// Secrets are redacted, long values cut, and the total bounded; what is dropped for size is
    /// counted in [`DROPPED_VAR`], never lost silently. Slurm appends its own variables last, so
    /// the [`PRIORITY`] names are kept first: a huge user environment cannot push them out.
    pub fn apply<'a, I>(&self, entries: I) -> BTreeMap<String, String>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let priority_patterns: Vec<Pattern> = PRIORITY.iter().map(|p| Pattern::new(p)).collect();
        let mut kept: Vec<(bool, String, &'a [u8])> = Vec::new();
        for entry in entries {
            let Some(eq) = entry.iter().position(|&c| c == b'=') else { continue };
            let name = String::from_utf8_lossy(&entry[..eq]);
            if name.is_empty() || !self.keeps(&name) {
                continue;
            }
            let priority = priority_patterns.iter().any(|p| p.matches(&name));
            kept.push((!priority, name.into_owned(), &entry[eq + 1..]));
        }
        // Stable: priority names first, each group in environment order.
        kept.sort_by_key(|(rest, _, _)| *rest);
        let mut out = BTreeMap::new();
        let mut total = 0usize;
        let mut dropped = 0usize;
        for (_, name, raw) in kept {
            let value = if is_secret_name(&name) { REDACTED.to_string() } else { cut_value(raw) };
            if out.len() >= MAX_VARS || total + name.len() + value.len() > MAX_TOTAL_BYTES {
                dropped += 1;
                continue;
            }
            total += name.len() + value.len();
            out.insert(name, value);
        }
        if dropped > 0 {
            out.insert(DROPPED_VAR.to_string(), dropped.to_string());
        }
        out
    }
}

fn cut_value(v: &[u8]) -> String {
    if v.len() <= MAX_VALUE_BYTES {
        return String::from_utf8_lossy(v).into_owned();
    }
    let mut s = String::from_utf8_lossy(&v[..MAX_VALUE_BYTES]).into_owned();
    // A cut in the middle of a UTF-8 sequence shows as U+FFFD; that is fine for a marker.
    s.push_str(TRUNCATED);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(f: &EnvFilter, entries: &[&str]) -> BTreeMap<String, String> {
        f.apply(entries.iter().map(|e| e.as_bytes()))
    }

    #[test]
    fn globs() {
        assert!(Pattern::new("SLURM_*").matches("SLURM_JOB_ID"));
        assert!(Pattern::new("*PATH").matches("LD_LIBRARY_PATH"));
        assert!(Pattern::new("*_MOD*_*").matches("LMOD_MODULE_X"));
        assert!(!Pattern::new("SLURM_*").matches("XSLURM_JOB_ID"));
        assert!(Pattern::new("HOME").matches("HOME"));
        assert!(!Pattern::new("HOME").matches("HOMER"));
        assert!(Pattern::new("*").matches(""));
    }

    #[test]
    fn secrets_are_redacted_case_insensitively() {
        let f = EnvFilter::default();
        let env = apply(
            &f,
            &[
                "GITHUB_TOKEN=abc",
                "my_secret=x",
                "DB_Password=p",
                "API_KEY=k",
                "AWS_CREDENTIALS=c",
                "X_AUTH=a",
                "HOME=/home/u",
            ],
        );
        for k in ["GITHUB_TOKEN", "my_secret", "DB_Password", "API_KEY", "AWS_CREDENTIALS", "X_AUTH"] {
            assert_eq!(env[k], REDACTED, "{k}");
        }
        assert_eq!(env["HOME"], "/home/u");
    }

    #[test]
    fn allow_and_deny_lists() {
        let f = EnvFilter::from_lists(Some("SLURM_*,OMP_*,PATH"), Some("SLURM_JOB_NAME"));
        let env = apply(&f, &["SLURM_JOB_ID=1", "SLURM_JOB_NAME=x", "OMP_NUM_THREADS=4", "HOME=/h", "PATH=/bin"]);
        assert_eq!(env.keys().collect::<Vec<_>>(), ["OMP_NUM_THREADS", "PATH", "SLURM_JOB_ID"]);
        let default = apply(&EnvFilter::default(), &["BASH_FUNC_module%%=() {}", "_ModuleTable001_=x", "A=b"]);
        assert_eq!(default.keys().collect::<Vec<_>>(), ["A"]);
        assert!(apply(&EnvFilter::from_lists(Some(""), None), &["A=b"]).is_empty());
    }

    #[test]
    fn hostile_environments_are_bounded_not_lost_silently() {
        let f = EnvFilter::default();
        let big = format!("BIG={}", "x".repeat(1 << 20));
        let env = f.apply([big.as_bytes(), b"BAD=\xff\xfe".as_slice(), b"NOEQUALS".as_slice(), b"=v".as_slice()]);
        assert!(env["BIG"].len() < MAX_VALUE_BYTES + 32 && env["BIG"].ends_with(TRUNCATED));
        assert_eq!(env["BAD"], "\u{fffd}\u{fffd}");
        assert_eq!(env.len(), 2);

        let many: Vec<String> = (0..10_000).map(|i| format!("V{i}={}", "y".repeat(100))).collect();
        let env = f.apply(many.iter().map(|s| s.as_bytes()));
        let kept = env.len() - 1;
        assert!(kept <= MAX_VARS);
        assert_eq!(env[DROPPED_VAR].parse::<usize>().unwrap() + kept, 10_000);
    }

    #[test]
    fn slurm_variables_survive_a_huge_user_environment() {
        let mut entries: Vec<String> = (0..5_000).map(|i| format!("U{i}={}", "z".repeat(200))).collect();
        entries.push("SLURM_JOB_ID=42".into());
        entries.push("PATH=/usr/bin".into());
        let env = EnvFilter::default().apply(entries.iter().map(|s| s.as_bytes()));
        assert_eq!(env["SLURM_JOB_ID"], "42");
        assert_eq!(env["PATH"], "/usr/bin");
        assert!(env.contains_key(DROPPED_VAR));
    }
}
