//! `/etc/runledger/runledger.toml`: the site configuration read by the epilog and the collector.
//!
//! Like slurm.conf, one file on every node; `RUNLEDGER_CONF` points elsewhere (as `SLURM_CONF`
//! does for Slurm). Unknown keys are errors, so a typo is caught rather than ignored.
//!
//! ```toml
//! [collector]
//! address = "ledger.example.org:6820"   # where epilogs send
//! listen = "0.0.0.0:6820"               # where `collector serve` listens
//! database = "/var/lib/runledger/runledger.db"
//! slurm_user = "slurm"                  # node records are accepted from root and this user
//! admin_group = "hpcadmin"              # members see every job
//!
//! [epilog]
//! spool = "/var/spool/runledger"
//! budget_ms = 5000
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/runledger/runledger.toml";
pub const ENV_VAR: &str = "RUNLEDGER_CONF";

#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub collector: CollectorConfig,
    pub epilog: EpilogConfig,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// `host:port` the epilog sends to.
    pub address: String,
    /// `host:port` `collector serve` binds.
    pub listen: String,
    pub database: PathBuf,
    /// Besides root, the only user whose MUNGE credentials may carry node records.
    pub slurm_user: String,
    /// Members of this group (and root) see every user's jobs.
    pub admin_group: Option<String>,
    /// Local socket through which users query their own jobs.
    pub socket: PathBuf,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// A connection that has not delivered its whole request by then is dropped.
    pub read_timeout_ms: u64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            address: format!("127.0.0.1:{}", crate::wire::DEFAULT_PORT),
            listen: format!("0.0.0.0:{}", crate::wire::DEFAULT_PORT),
            database: PathBuf::from("/var/lib/runledger/runledger.db"),
            slurm_user: "slurm".into(),
            admin_group: None,
            socket: PathBuf::from("/run/runledger/collector.sock"),
            max_message_bytes: crate::wire::DEFAULT_MAX_FRAME,
            max_connections: 64,
            read_timeout_ms: 10_000,
        }
    }
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EpilogConfig {
    pub spool: PathBuf,
    /// Wall-clock budget of one epilog run; it exits 0 by then whatever happened.
    pub budget_ms: u64,
    pub connect_timeout_ms: u64,
    /// `syslog` (default) or `stderr`.
    pub log: String,
}

impl Default for EpilogConfig {
    fn default() -> Self {
        EpilogConfig {
            spool: PathBuf::from(crate::spool::DEFAULT_ROOT),
            budget_ms: 5000,
            connect_timeout_ms: 1000,
            log: "syslog".into(),
        }
    }
}

impl Config {
    /// The path in `RUNLEDGER_CONF`, else [`DEFAULT_PATH`].
    pub fn default_path() -> PathBuf {
        std::env::var_os(ENV_VAR).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads a config file; the error names the file and what is wrong in it.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("[collector]\naddress = \"h:1\"\n[epilog]\nbudget_ms = 200\n").unwrap();
        assert_eq!(c.collector.address, "h:1");
        assert_eq!(c.collector.slurm_user, "slurm");
        assert_eq!(c.epilog.budget_ms, 200);
        assert_eq!(c.epilog.spool, PathBuf::from("/var/spool/runledger"));
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn typos_and_bad_values_are_clear_errors() {
        let e = Config::parse("[epilog]\nbudget = 5\n").unwrap_err();
        assert!(e.contains("unknown field `budget`"), "{e}");
        let e = Config::parse("[epilog]\nbudget_ms = \"soon\"\n").unwrap_err();
        assert!(e.contains("budget_ms") || e.contains("invalid type"), "{e}");
        let e = Config::load(Path::new("/nonexistent/runledger.toml")).unwrap_err();
        assert!(e.starts_with("/nonexistent/runledger.toml: "), "{e}");
    }
}
