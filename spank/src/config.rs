//! The plugin's arguments from plugstack.conf:
//!
//! ```text
//! required /usr/local/lib/runledger/runledger.so spool=/var/spool/runledger env_allow=PAT,PAT env_deny=PAT,PAT sample_interval=30
//! ```
//!
//! `python=no` turns off recording what Python processes import, for the whole site;
//! `python_dir=` is where the per-job directories of the Python hook go (default
//! [`crate::python::DEFAULT_DIR`], `%n` the node's name).
//!
//! `spool=` is where records go (default [`runledger_record::spool::DEFAULT_ROOT`]);
//! `env_allow=` / `env_deny=` are comma-separated name patterns for
//! [`runledger_record::env::EnvFilter`] (`*` matches any run of characters; the defaults keep
//! everything except a few noisy variables, and secrets are always redacted);
//! `sample_interval=` is how often, in seconds, every step's processes are sampled for its usage
//! over time ([`DEFAULT_SAMPLE_INTERVAL`]; 0 turns it off). A bad argument is reported and
//! skipped: it never stops a job.

use runledger_record::env::EnvFilter;
use runledger_record::spool::DEFAULT_ROOT;
use std::path::PathBuf;

/// Seconds between two usage samples of a step unless `sample_interval=` says otherwise.
pub const DEFAULT_SAMPLE_INTERVAL: u32 = 30;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub spool: PathBuf,
    pub env_filter: EnvFilter,
    /// Seconds; 0: no sampling.
    pub sample_interval: u32,
    /// Whether the site records Python processes (`python=no` says no).
    pub python: bool,
    pub python_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spool: PathBuf::from(DEFAULT_ROOT),
            env_filter: EnvFilter::default(),
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            python: true,
            python_dir: PathBuf::from(crate::python::DEFAULT_DIR),
        }
    }
}

impl Config {
    /// Parses the plugin arguments; returns the configuration and one message per bad argument.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> (Config, Vec<String>) {
        let mut errors = Vec::new();
        let mut spool = None;
        let (mut allow, mut deny) = (None, None);
        let mut sample_interval = DEFAULT_SAMPLE_INTERVAL;
        let mut python = true;
        let mut python_dir = None;
        for arg in args {
            let arg = arg.as_ref();
            match arg.split_once('=') {
                Some(("spool", p)) if p.starts_with('/') => spool = Some(PathBuf::from(p)),
                Some(("spool", p)) => errors.push(format!(
                    "plugin argument 'spool={p}': the spool must be an absolute path; using {DEFAULT_ROOT}"
                )),
                Some(("env_allow", l)) => allow = Some(l.to_string()),
                Some(("env_deny", l)) => deny = Some(l.to_string()),
                // A day at most: a longer interval would sample nothing a step end does not say.
                Some(("sample_interval", n)) => match n.parse::<u32>() {
                    Ok(n) if n <= 86_400 => sample_interval = n,
                    _ => errors.push(format!(
                        "plugin argument 'sample_interval={n}': expected whole seconds from 0 (off) to 86400; \
                         using {DEFAULT_SAMPLE_INTERVAL}"
                    )),
                },
                Some(("python", v)) => match crate::python::parse_switch(v) {
                    Some(on) => python = on,
                    None => errors.push(format!("plugin argument 'python={v}': expected yes or no; recording Python")),
                },
                Some(("python_dir", p)) if p.starts_with('/') => python_dir = Some(PathBuf::from(p)),
                Some(("python_dir", p)) => errors.push(format!(
                    "plugin argument 'python_dir={p}': must be an absolute path; using {}",
                    crate::python::DEFAULT_DIR
                )),
                _ => errors.push(format!(
                    "unknown plugin argument '{arg}' ignored (known: spool=/path env_allow=PAT,PAT env_deny=PAT,PAT \
                     sample_interval=SECONDS python=yes|no python_dir=/path)"
                )),
            }
        }
        let config = Config {
            spool: spool.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
            env_filter: EnvFilter::from_lists(allow.as_deref(), deny.as_deref()),
            sample_interval,
            python,
            python_dir: python_dir.unwrap_or_else(|| PathBuf::from(crate::python::DEFAULT_DIR)),
        };
        (config, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_known_arguments() {
        let (c, errs) = Config::from_args::<&str>(&[]);
        assert_eq!(c, Config::default());
        assert!(errs.is_empty());

        let (c, errs) = Config::from_args(&["spool=/tmp/rl", "env_allow=SLURM_*,PATH", "env_deny=SLURM_JOB_NAME"]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.spool, PathBuf::from("/tmp/rl"));
        assert!(c.env_filter.keeps("SLURM_JOB_ID") && c.env_filter.keeps("PATH"));
        assert!(!c.env_filter.keeps("SLURM_JOB_NAME") && !c.env_filter.keeps("HOME"));
        assert_eq!(c.sample_interval, 30);
        for (arg, want) in [("sample_interval=5", 5), ("sample_interval=0", 0)] {
            let (c, errs) = Config::from_args(&[arg]);
            assert_eq!((c.sample_interval, errs.len()), (want, 0), "{arg}");
        }
        assert!(c.python);

        let (c, errs) = Config::from_args(&["python=no", "python_dir=/run/py/%n"]);
        assert!(errs.is_empty(), "{errs:?}");
        assert!(!c.python);
        assert_eq!(c.python_dir, PathBuf::from("/run/py/%n"));
        let (c, errs) = Config::from_args(&["python=perhaps", "python_dir=py"]);
        assert!(c.python && c.python_dir == std::path::Path::new(crate::python::DEFAULT_DIR));
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn bad_arguments_are_reported_and_skipped() {
        let (c, errs) = Config::from_args(&["spool=relative", "verbose", "spol=/x", "env_deny=HOME"]);
        assert_eq!(c.spool, PathBuf::from(DEFAULT_ROOT));
        assert!(!c.env_filter.keeps("HOME"));
        assert_eq!(errs.len(), 3, "{errs:?}");
        for bad in ["sample_interval=-1", "sample_interval=5s", "sample_interval=86401", "sample_interval="] {
            let (c, errs) = Config::from_args(&[bad]);
            assert_eq!(c.sample_interval, DEFAULT_SAMPLE_INTERVAL, "{bad}");
            assert!(errs.len() == 1 && errs[0].contains("expected whole seconds"), "{errs:?}");
        }
        assert!(errs[0].contains("absolute path"));
        assert!(errs[1].contains("unknown plugin argument 'verbose'"));
        assert!(errs[2].contains("'spol=/x'"));
    }
}
