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
//! auth_timeout_ms = 1000                # a connection's credential must arrive by then
//! query_timeout_ms = 60000              # one user query through the local socket, at most
//! metrics = "127.0.0.1:9826"            # Prometheus' GET /metrics (empty: none)
//!
//! [epilog]
//! spool = "/var/spool/runledger"          # %n: the node's name (several nodes on one host)
//! budget_ms = 5000
//! retries = 3                           # transient failures retried in a row (see EpilogConfig)
//! spool_max_bytes = 268435456           # outbox bound (256 MiB); oldest batches dropped, loudly
//! spool_max_age_days = 30
//! orphan_grace_s = 3600                 # records of a job whose epilog never ran here are sent after this
//! batch_max_bytes = 4194304             # a job's records travel in batches of at most this
//!
//! [logs]                                # solver logs read by the epilog (see LogsConfig)
//! enabled = true
//! globs = ["log.lammps", "md.log", "*.log", "*.out"]
//! max_files = 16
//!
//! [retention]                           # like slurmdbd's PurgeJobAfter (see RetentionConfig)
//! keep_days = 730                       # `collector serve` prunes older jobs daily; 0: never
//! drop_rollups = false                  # true: summaries forget pruned jobs too
//! [mail]                                # runledger-mail, slurmctld's MailProg (see MailConfig)
//! wait_s = 30                           # for the job's end record, at most
//! sendmail = "/usr/sbin/sendmail"
//!
//! [access.managers]                     # account pattern → users and @groups (see access.rs)
//! chem = ["alice", "@chem-leads"]
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
    pub logs: LogsConfig,
    /// `[access]`: account managers (see [`crate::access`]).
    pub access: crate::access::AccessConfig,
    /// `[retention]`: how long `collector serve` keeps jobs (see [`RetentionConfig`]).
    pub retention: RetentionConfig,
    /// `[mail]`: `runledger-mail`, slurmctld's `MailProg` (see [`MailConfig`]).
    pub mail: MailConfig,
}

/// `[retention]`, like slurmdbd.conf's `PurgeJobAfter`: with `keep_days` set, `collector serve`
/// runs `collector prune --before now-<keep_days>days` once a day (the first time at start-up),
/// keeping the rollups unless `drop_rollups`.
#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Jobs that ended more than this many days ago are pruned daily; 0 (default): never.
    pub keep_days: u64,
    /// Take the pruned jobs out of the rollups too (summaries then forget them).
    pub drop_rollups: bool,
}

/// `[mail]`: `runledger-mail`, which slurmctld runs as `MailProg` for `--mail-type` mail, adds
/// the job's efficiency report to the mail of a job that ended. slurmctld may send that mail
/// before the nodes' records reach the collector, so it waits for the job's end record at most
/// `wait_s` seconds (then says where to look later). Mail goes out through `sendmail`, the
/// system MTA's (exim4, postfix) `sendmail` interface.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub wait_s: u64,
    pub sendmail: PathBuf,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig { wait_s: 30, sendmail: PathBuf::from("/usr/sbin/sendmail") }
    }
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
    /// `host:port` where `collector serve` answers Prometheus' `GET /metrics`; empty (default):
    /// no metrics endpoint.
    pub metrics: String,
    /// The clusters whose uids are this host's: a user asking through the socket sees their own
    /// jobs (by uid) of these clusters only. Empty (default): every cluster — a ledger of one
    /// cluster, or of clusters sharing one user directory. Set it when the ledger holds clusters
    /// whose uids mean different people.
    pub user_clusters: Vec<String>,
    /// `"off"` (default) or `"address"`: a node's records are accepted only from the address its
    /// name has for Slurm (`node_addresses`, else the name resolved), as MUNGE's credential says.
    pub node_binding: String,
    /// A node's address(es) where its name does not resolve to it (slurm.conf `NodeAddr`): keys
    /// `NODE` or `CLUSTER/NODE`, values comma-separated IP addresses.
    pub node_addresses: std::collections::BTreeMap<String, String>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// A connection that has not delivered its whole request by then is dropped.
    pub read_timeout_ms: u64,
    /// A connection must send its credential this soon after connecting.
    pub auth_timeout_ms: u64,
    /// Connections waiting for their credential, apart from the `max_connections` that have
    /// authenticated; one more closes the oldest waiting one.
    pub max_unauthenticated: usize,
    /// Requests whose credential has arrived, waiting for munged to verify it or for one of the
    /// `max_connections`; one more is answered "busy" (the epilog retries). A job of N nodes
    /// ending sends N at once: keep it above the largest job's node count.
    pub max_queued: usize,
    /// Wall-clock limit of one user query through the local socket.
    pub query_timeout_ms: u64,
    /// Address space of the process that answers one user query, in MiB.
    pub query_max_memory_mb: u64,
    /// Queries one uid may have open on the local socket at once.
    pub query_max_per_user: usize,
    /// Largest answer to one user query (output and files), in bytes.
    pub query_max_output_bytes: u64,
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
            metrics: String::new(),
            user_clusters: Vec::new(),
            node_binding: "off".into(),
            node_addresses: Default::default(),
            max_message_bytes: crate::wire::DEFAULT_MAX_FRAME,
            max_connections: 64,
            read_timeout_ms: 10_000,
            auth_timeout_ms: 1000,
            max_unauthenticated: 256,
            max_queued: 8192,
            query_timeout_ms: 60_000,
            query_max_memory_mb: 1024,
            query_max_per_user: 2,
            query_max_output_bytes: 256 * 1024 * 1024,
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
    /// How long one read or write to the collector may block (the reply comes after its commit).
    /// A hung collector thus costs each epilog this much, not its whole budget; a late reply only
    /// means the batch is sent again, which the merge makes harmless.
    pub reply_timeout_ms: u64,
    /// `syslog` (default) or `stderr`.
    pub log: String,
    /// Transient failures (connection refused or reset, collector busy) retried in a row before a
    /// run decides the collector is down and leaves the rest in the outbox. Kept small: slurmd
    /// waits for the epilog, and the next run (or the flush timer) retries anyway.
    pub retries: u32,
    /// Backoff before retry n (from 0): a random delay in [0, min(retry_max_ms, retry_base_ms × 2ⁿ)]
    /// ("full jitter", so nodes whose jobs ended together do not retry in step).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Wall-clock budget of a flush (`runledger-epilog --flush`), which no job waits for.
    pub flush_budget_ms: u64,
    /// Bound on the outbox's size (0: none). Over it, the oldest batches are dropped, loudly and counted.
    pub spool_max_bytes: u64,
    /// Batches older than this are dropped, loudly and counted (0: kept until sent).
    pub spool_max_age_days: u64,
    /// How long a job's spooled records must be left alone, with no slurmstepd of the job on the
    /// node, before a run sends them as an orphan (its epilog never ran here). An hour by default:
    /// a job's own epilog comes seconds after its last step; tests shorten it.
    pub orphan_grace_s: u64,
    /// Largest batch sent in one request: a job whose records are larger travels in as many
    /// batches as it takes, so no job can exceed the collector's `max_message_bytes` (16 MiB by
    /// default). Capped at that default; a collector configured lower needs this lower too.
    pub batch_max_bytes: u64,
    /// The scontrol the batch node's epilog asks for a job's time limit when no step's
    /// environment gave it (Slurm 22.05): empty looks in the usual places, `none` never asks.
    pub scontrol: String,
}

/// Default `[epilog] batch_max_bytes`: 4 MiB, a quarter of the collector's default message limit.
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Default `[epilog] spool_max_bytes`: 256 MiB, some 25,000 typical batches.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;

impl Default for EpilogConfig {
    fn default() -> Self {
        EpilogConfig {
            spool: PathBuf::from(crate::spool::DEFAULT_ROOT),
            budget_ms: 5000,
            connect_timeout_ms: 1000,
            reply_timeout_ms: 2000,
            log: "syslog".into(),
            retries: 3,
            retry_base_ms: 100,
            retry_max_ms: 2000,
            flush_budget_ms: 60_000,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            spool_max_age_days: 30,
            orphan_grace_s: 3600,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            scontrol: String::new(),
        }
    }
}

/// `[logs]`: which of a job's files the epilog reads for solver-log facts, and how much of them.
///
/// The job's stdout and stderr are always candidates; so are the regular files directly in the
/// work directory (not below it) whose name matches one of `globs` (`*` matches any run of
/// characters) and that were modified since the job started. At most `max_files` files, newest
/// first; of each only the first `head_bytes` and the last `tail_bytes`; at most `job_bytes` in
/// all, and no more than `time_budget_ms` of the epilog's own budget.
///
/// With `inputs`, the job's input files too (`param.*` facts): those the steps' command lines
/// name after `-in`/`-i`/`-f`/`-s`…, then those in the work directory (and its `system/`) whose
/// names the built-in formats or the site's `[[program.input]]` rules know; at most
/// `max_inputs` files, `input_bytes` of each, within the same `time_budget_ms` again.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// `false`: no log is read, no rules are loaded.
    pub enabled: bool,
    /// File names in the work directory that are read as logs.
    pub globs: Vec<String>,
    /// Files read per job, stdout and stderr included.
    pub max_files: usize,
    /// Bytes read from the start of each file.
    pub head_bytes: u64,
    /// Bytes read from the end of each file.
    pub tail_bytes: u64,
    /// Bytes read per job, all files together.
    pub job_bytes: u64,
    /// Wall-clock time for finding, reading and parsing the logs (never beyond the epilog's budget).
    pub time_budget_ms: u64,
    /// The site's parser rules, added to the built-in ones (a missing file: built-ins only).
    pub rules: PathBuf,
    /// `false`: the job's input files are not read (no `param.*` facts).
    pub inputs: bool,
    /// Input files read per job (those the steps' argv names first, then the work directory's,
    /// newest first).
    pub max_inputs: usize,
    /// Bytes read from the start of each input file (inputs are small; the rest is not read).
    pub input_bytes: u64,
}

/// The default `[logs] globs`: what the solver codes runledger knows write in their work directory.
pub const DEFAULT_LOG_GLOBS: &[&str] = &[
    "log.lammps",
    "log.*",
    "md.log",
    "*.log",
    "*.out",
    "*.err",
    "*.stdout",
    "*.stderr",
    "rsl.out.0000",
    "rsl.error.0000",
    "OUTCAR",
    "OSZICAR",
];

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            globs: DEFAULT_LOG_GLOBS.iter().map(|g| g.to_string()).collect(),
            max_files: 16,
            head_bytes: 64 * 1024,
            tail_bytes: 1024 * 1024,
            job_bytes: 16 * 1024 * 1024,
            time_budget_ms: 1500,
            rules: PathBuf::from("/etc/runledger/parsers.toml"),
            inputs: true,
            max_inputs: 8,
            input_bytes: 256 * 1024,
        }
    }
}

impl Config {
    /// The path in `RUNLEDGER_CONF`, else [`DEFAULT_PATH`].
    pub fn default_path() -> PathBuf {
        std::env::var_os(ENV_VAR).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.access.validate()?;
        Ok(c)
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
        let e = Config::default().epilog;
        assert_eq!((e.retries, e.retry_base_ms, e.retry_max_ms, e.flush_budget_ms), (3, 100, 2000, 60_000));
        assert_eq!((e.spool_max_bytes, e.spool_max_age_days, e.orphan_grace_s), (256 << 20, 30, 3600));
        assert_eq!((e.connect_timeout_ms, e.reply_timeout_ms), (1000, 2000));
        let c = Config::parse(
            "[epilog]\nretries = 0\nspool_max_bytes = 1024\nspool_max_age_days = 0\norphan_grace_s = 2\n",
        )
        .unwrap();
        assert_eq!(
            (c.epilog.retries, c.epilog.spool_max_bytes, c.epilog.spool_max_age_days, c.epilog.orphan_grace_s),
            (0, 1024, 0, 2)
        );
        assert_eq!(c.epilog.flush_budget_ms, 60_000);
        let c = Config::default().collector;
        assert_eq!((c.auth_timeout_ms, c.max_unauthenticated, c.max_connections, c.max_queued), (1000, 256, 64, 8192));
        assert_eq!((c.query_timeout_ms, c.query_max_memory_mb, c.query_max_per_user), (60_000, 1024, 2));
        assert_eq!(c.query_max_output_bytes, 256 << 20);
        let c = Config::parse("[collector]\nauth_timeout_ms = 250\nquery_max_per_user = 1\n").unwrap().collector;
        assert_eq!((c.auth_timeout_ms, c.query_max_per_user, c.read_timeout_ms), (250, 1, 10_000));
    }

    #[test]
    fn logs_section_defaults_overrides_and_typos() {
        let d = Config::parse("").unwrap().logs;
        assert!(d.enabled);
        assert_eq!((d.max_files, d.head_bytes, d.tail_bytes), (16, 65536, 1 << 20));
        assert_eq!((d.job_bytes, d.time_budget_ms), (16 << 20, 1500));
        assert_eq!(d.rules, PathBuf::from("/etc/runledger/parsers.toml"));
        assert!(d.globs.iter().any(|g| g == "log.lammps") && d.globs.iter().any(|g| g == "*.out"));
        let c = Config::parse("[logs]\nenabled = false\nglobs = [\"*.txt\"]\nmax_files = 2\nrules = \"/x.toml\"\n")
            .unwrap();
        assert!(!c.logs.enabled);
        assert_eq!(c.logs.globs, vec!["*.txt".to_string()]);
        assert_eq!((c.logs.max_files, c.logs.tail_bytes), (2, 1 << 20));
        assert_eq!(c.logs.rules, PathBuf::from("/x.toml"));
        let e = Config::parse("[logs]\nglob = [\"*\"]\n").unwrap_err();
        assert!(e.contains("unknown field `glob`"), "{e}");
    }

    #[test]
    fn retention_section() {
        assert_eq!(Config::parse("").unwrap().retention, RetentionConfig { keep_days: 0, drop_rollups: false });
        let c = Config::parse("[retention]\nkeep_days = 730\ndrop_rollups = true\n").unwrap();
        assert_eq!(c.retention, RetentionConfig { keep_days: 730, drop_rollups: true });
        let e = Config::parse("[retention]\nkeep = 3\n").unwrap_err();
        assert!(e.contains("unknown field `keep`"), "{e}");
        let e = Config::parse("[retention]\nkeep_days = -1\n").unwrap_err();
        assert!(e.contains("keep_days") || e.contains("invalid value"), "{e}");
    }

    #[test]
    fn mail_section() {
        let m = Config::parse("").unwrap().mail;
        assert_eq!((m.wait_s, m.sendmail), (30, PathBuf::from("/usr/sbin/sendmail")));
        let m = Config::parse("[mail]\nwait_s = 5\nsendmail = \"/usr/lib/sendmail\"\n").unwrap().mail;
        assert_eq!((m.wait_s, m.sendmail), (5, PathBuf::from("/usr/lib/sendmail")));
        assert!(Config::parse("[mail]\nwait = 5\n").unwrap_err().contains("unknown field `wait`"));
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
/// Every key the config reads is in runledger.toml(5): the parser's own list of the keys it
/// expects (the error for an unknown key names them all) is checked against the man page, so a
/// new key without its entry fails here.
#[cfg(test)]
mod man_page {
    const PAGE: &str = include_str!("../../packaging/man/runledger.toml.5");

    fn keys_of(section: &str) -> Vec<String> {
        let err = super::Config::parse(&format!("[{section}]\nzz_not_a_key = 1\n")).unwrap_err();
        let line = err.lines().find(|l| l.starts_with("unknown field")).unwrap_or_else(|| panic!("{err}"));
        let expected = line.split("expected").nth(1).unwrap().to_string();
        expected.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    #[test]
    fn every_key_has_its_entry() {
        let entries: Vec<&str> = PAGE.lines().filter(|l| l.starts_with(".BR ") || l.starts_with(".B ")).collect();
        for section in ["collector", "epilog", "logs", "retention", "mail"] {
            let keys = keys_of(section);
            assert!(keys.len() >= 2, "[{section}]: {keys:?}");
            assert!(PAGE.contains(&format!(".SH \"[{section}]\"")), "no [{section}] section");
            for k in keys {
                let word = |l: &&str| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == k);
                assert!(entries.iter().any(word), "[{section}] {k} has no entry in runledger.toml(5)");
            }
        }
    }
}
