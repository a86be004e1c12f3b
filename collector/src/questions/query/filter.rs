//! sacct-like job filters, turned into one SQL `WHERE` clause over the indexed `jobs` columns.
//!
//! Each parser here is a clap value parser, so a bad value is reported by clap with the option
//! it was given to, what is accepted, and exit code 2 — the same as a typo in an option name.

use runledger_record::{JobState, Module};
use rusqlite::types::Value;

/// A `-j` value: a job id, or one task of a job array (`ARRAYID_TASK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSel {
    pub id: u32,
    pub task: Option<u32>,
}

pub fn parse_job_sel(s: &str) -> Result<JobSel, String> {
    let bad = || format!("invalid job id '{s}' (expected a job id like 1234, or an array task like 1234_7)");
    let s = s.trim();
    match s.split_once('_') {
        Some((id, task)) => {
            Ok(JobSel { id: id.parse().map_err(|_| bad())?, task: Some(task.parse().map_err(|_| bad())?) })
        }
        None => Ok(JobSel { id: s.parse().map_err(|_| bad())?, task: None }),
    }
}

/// A `--tag` value: `KEY=VALUE`, or `KEY` alone for "has this tag".
pub fn parse_tag(s: &str) -> Result<(String, Option<String>), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.to_string())),
        None => (s.trim(), None),
    };
    if k.is_empty() {
        return Err(format!("invalid tag filter '{s}' (expected KEY=VALUE or KEY)"));
    }
    Ok((k.to_string(), v))
}

/// A `--fact` value: `NAME=VALUE`, a job-level fact (parameters included) and its exact value.
pub fn parse_fact(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("invalid fact filter '{s}' (expected NAME=VALUE, e.g. param.pair_style=lj/cut)"));
    };
    let k = k.trim();
    check_fact_name(k).map_err(|e| format!("invalid fact filter '{s}': {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// A `--module` value: `NAME` (any version) or `NAME/VERSION`.
pub fn parse_module(s: &str) -> Result<Module, String> {
    runledger_record::modules::parse_spec(s)
        .map_err(|e| format!("{e} (expected NAME or NAME/VERSION, e.g. gcc/12.2.0)"))
}

pub fn parse_state(s: &str) -> Result<JobState, String> {
    s.parse()
}

/// The outcomes `--outcome` accepts (the job-level `outcome` fact's vocabulary).
pub const OUTCOMES: [&str; 4] = ["success", "failed", "incomplete", "unknown"];

/// An `--outcome` value: one of [`OUTCOMES`], any case.
pub fn parse_outcome(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    if OUTCOMES.contains(&t.as_str()) {
        Ok(t)
    } else {
        Err(format!("unknown outcome '{s}' (accepted: {})", OUTCOMES.join(", ")))
    }
}

/// A `--category` value: a failure category of the log parser's vocabulary, any case.
pub fn parse_category(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase().replace('-', "_");
    match t.parse::<logparse::Category>() {
        Ok(c) => Ok(c.as_str().to_string()),
        Err(_) => Err(format!(
            "unknown failure category '{s}' (accepted: {})",
            logparse::Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A non-empty name (user, account, partition, cluster).
pub fn parse_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("empty name in list (expected NAME[,NAME…])".into())
    } else {
        Ok(t.to_string())
    }
}

/// Everything `collector query jobs` can filter on; empty lists do not filter.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub jobs: Vec<JobSel>,
    /// User names, or uids when numeric (`-u`, as sacct reads it).
    pub users: Vec<String>,
    /// Only this uid, exactly: the caller a query through the socket is narrowed to, as the kernel
    /// named them (`SO_PEERCRED`). Never taken from a name, so a user called "1002" is not uid 1002.
    pub uid: Option<u32>,
    /// Only what an account manager may see (through the socket): their own jobs and those of
    /// the accounts they manage ([`Managed`]).
    pub managed: Option<Managed>,
    pub accounts: Vec<String>,
    pub partitions: Vec<String>,
    pub clusters: Vec<String>,
    pub states: Vec<JobState>,
    /// All must have been loaded.
    pub modules: Vec<Module>,
    /// All must be set (to the value, when given).
    pub tags: Vec<(String, Option<String>)>,
    /// Job-level facts (`source = ''`, parameters included) that must have these values.
    pub facts: Vec<(String, String)>,
    /// Programs named by the job's logs (any case; a name also matches the labels it begins, e.g.
    /// `openfoam` matches "OpenFOAM pimpleFoam").
    pub programs: Vec<String>,
    /// Job-level log outcomes ([`OUTCOMES`]).
    pub outcomes: Vec<String>,
    /// Failure categories.
    pub categories: Vec<String>,
    /// Jobs that were running at some time between `start` and `end` (sacct's -S/-E).
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// An account manager's view (`[access.managers]`): the jobs of their uid and of every account
/// matching one of `accounts` (globs where only `*` is special, as runledger.toml writes them).
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Managed {
    pub uid: u32,
    pub accounts: Vec<String>,
}

impl Managed {
    /// Whether a recorded job (its uid and account) is in this view.
    pub fn sees(&self, uid: Option<i64>, account: Option<&str>) -> bool {
        uid == Some(i64::from(self.uid))
            || account.is_some_and(|a| runledger_record::access::account_matches(&self.accounts, a))
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Filter {
    /// The `WHERE` clause (without the keyword; `1` when nothing filters) and its parameters.
    pub fn to_sql(&self) -> (String, Vec<Value>) {
        let mut conds: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let text_in = |col: &str, vals: &[String], conds: &mut Vec<String>, params: &mut Vec<Value>| {
            if !vals.is_empty() {
                conds.push(format!("{col} IN ({})", placeholders(vals.len())));
                params.extend(vals.iter().map(|v| Value::Text(v.clone())));
            }
        };
        if !self.jobs.is_empty() {
            let mut alts = Vec::new();
            let plain: Vec<u32> = self.jobs.iter().filter(|j| j.task.is_none()).map(|j| j.id).collect();
            if !plain.is_empty() {
                let ph = placeholders(plain.len());
                alts.push(format!("job_id IN ({ph})"));
                params.extend(plain.iter().map(|&i| Value::Integer(i.into())));
                alts.push(format!("array_job_id IN ({ph})"));
                params.extend(plain.iter().map(|&i| Value::Integer(i.into())));
            }
            for j in self.jobs.iter().filter(|j| j.task.is_some()) {
                alts.push("(array_job_id = ? AND array_task_id = ?)".into());
                params.push(Value::Integer(j.id.into()));
                params.push(Value::Integer(j.task.unwrap_or(0).into()));
            }
            conds.push(format!("({})", alts.join(" OR ")));
        }
        if !self.users.is_empty() {
            let (uids, names): (Vec<&String>, Vec<&String>) =
                self.users.iter().partition(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()));
            let mut alts = Vec::new();
            if !names.is_empty() {
                alts.push(format!("user IN ({})", placeholders(names.len())));
                params.extend(names.iter().map(|v| Value::Text(v.to_string())));
            }
            if !uids.is_empty() {
                alts.push(format!("uid IN ({})", placeholders(uids.len())));
                params.extend(uids.iter().map(|v| Value::Integer(v.parse().unwrap_or(-1))));
            }
            conds.push(format!("({})", alts.join(" OR ")));
        }
        if let Some(uid) = self.uid {
            conds.push("uid = ?".into());
            params.push(Value::Integer(uid.into()));
        }
        if let Some(m) = &self.managed {
            let mut alts = vec!["uid = ?".to_string()];
            params.push(Value::Integer(m.uid.into()));
            for a in &m.accounts {
                alts.push("account GLOB ?".into());
                params.push(Value::Text(runledger_record::access::sql_glob(a)));
            }
            conds.push(format!("({})", alts.join(" OR ")));
        }
        text_in("account", &self.accounts, &mut conds, &mut params);
        text_in("partition", &self.partitions, &mut conds, &mut params);
        text_in("cluster", &self.clusters, &mut conds, &mut params);
        let states: Vec<String> = self.states.iter().map(|s| s.as_str().to_string()).collect();
        text_in("state", &states, &mut conds, &mut params);
        if !self.programs.is_empty() {
            // A name matches itself and the labels it starts (`openfoam` matches "OpenFOAM
            // pimpleFoam"), in any case.
            let mut alts = Vec::new();
            for p in &self.programs {
                alts.push("program = ? COLLATE NOCASE OR program LIKE ? ESCAPE '\\'".to_string());
                params.push(Value::Text(p.clone()));
                let esc = p.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                params.push(Value::Text(format!("{esc} %")));
            }
            conds.push(format!("({})", alts.join(" OR ")));
        }
        text_in("outcome", &self.outcomes, &mut conds, &mut params);
        text_in("category", &self.categories, &mut conds, &mut params);
        for m in &self.modules {
            // The module sets holding the module, then their jobs through the index on module_set.
            let mut c = "jobs.module_set IN (SELECT ms.module_set FROM module_set_members ms
                          JOIN modules m ON m.id = ms.module WHERE m.name = ?"
                .to_string();
            params.push(Value::Text(m.name.clone()));
            if let Some(v) = &m.version {
                c.push_str(" AND m.version = ?");
                params.push(Value::Text(v.clone()));
            }
            c.push(')');
            conds.push(c);
        }
        for (k, v) in &self.tags {
            let mut c = "EXISTS (SELECT 1 FROM tags t WHERE t.job = jobs.id AND t.key = ?".to_string();
            params.push(Value::Text(k.clone()));
            if let Some(v) = v {
                c.push_str(" AND t.value = ?");
                params.push(Value::Text(v.clone()));
            }
            c.push(')');
            conds.push(c);
        }
        for (k, v) in &self.facts {
            conds.push(
                "EXISTS (SELECT 1 FROM facts f WHERE f.job = jobs.id AND f.source = '' AND f.key = ? AND f.value = ?)"
                    .into(),
            );
            params.push(Value::Text(k.clone()));
            params.push(Value::Text(v.clone()));
        }
        if let Some(s) = self.start {
            // Spelled so that the index on `end` serves it (a job without an end ran at its start).
            conds.push("(end >= ? OR (end IS NULL AND start >= ?))".into());
            params.push(Value::Integer(s));
            params.push(Value::Integer(s));
        }
        if let Some(e) = self.end {
            conds.push("start <= ?".into());
            params.push(Value::Integer(e));
        }
        if conds.is_empty() {
            ("1".into(), params)
        } else {
            (conds.join(" AND "), params)
        }
    }
}

/// A job-level fact's name as `--by fact:NAME` and `--fact NAME=VALUE` take it: 1 to 128 ASCII
/// letters, digits, `_`, `.`, `-` (the names the log and input parsers give, e.g.
/// `param.pair_style`, `mpi_ranks`).
pub fn check_fact_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty fact name (expected e.g. param.pair_style or mpi_ranks)".into());
    }
    if name.len() > 128 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(format!(
            "invalid fact name '{name}' (expected letters, digits, '_', '.' or '-', e.g. param.pair_style)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_accept_and_explain() {
        assert_eq!(parse_job_sel("12").unwrap(), JobSel { id: 12, task: None });
        assert_eq!(parse_job_sel("12_3").unwrap(), JobSel { id: 12, task: Some(3) });
        for bad in ["x", "12_", "_3", "-1", "12.batch"] {
            let e = parse_job_sel(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")) && e.contains("1234_7"), "{e}");
        }
        assert_eq!(parse_tag("a=b").unwrap(), ("a".into(), Some("b".into())));
        assert_eq!(parse_tag("a").unwrap(), ("a".into(), None));
        assert_eq!(parse_tag("a=").unwrap(), ("a".into(), Some(String::new())));
        assert!(parse_tag("=b").unwrap_err().contains("'=b'"));
        assert_eq!(parse_fact("param.pair_style=lj/cut").unwrap(), ("param.pair_style".into(), "lj/cut".into()));
        assert_eq!(parse_fact("a=").unwrap(), ("a".into(), String::new()));
        for bad in ["param.pair_style", "=lj/cut", "a b=1", "x'y=1"] {
            let e = parse_fact(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert_eq!(parse_module("gcc/12").unwrap().version.as_deref(), Some("12"));
        assert!(parse_module("").unwrap_err().contains("NAME/VERSION"));
        assert!(parse_state("RUNNING").unwrap_err().contains("'RUNNING'"));
        assert_eq!(parse_state("ca").unwrap(), JobState::Cancelled);
        assert!(parse_name(" ").is_err());
        assert_eq!(parse_outcome("FAILED").unwrap(), "failed");
        let e = parse_outcome("broken").unwrap_err();
        assert!(e.contains("'broken'") && e.contains("success, failed, incomplete, unknown"), "{e}");
        assert_eq!(parse_category("Time-Limit").unwrap(), "time_limit");
        let e = parse_category("gremlins").unwrap_err();
        assert!(e.contains("'gremlins'") && e.contains("numerical_instability") && e.contains("node_failure"), "{e}");
    }

    #[test]
    fn sql_has_one_parameter_per_placeholder() {
        let f = Filter {
            jobs: vec![JobSel { id: 1, task: None }, JobSel { id: 2, task: Some(3) }],
            users: vec!["alice".into(), "1001".into()],
            uid: Some(1002),
            managed: Some(Managed { uid: 7, accounts: vec!["chem".into(), "phys-*".into()] }),
            accounts: vec!["a".into()],
            partitions: vec!["p".into(), "q".into()],
            clusters: vec!["c".into()],
            states: vec![JobState::Failed, JobState::Timeout],
            modules: vec![parse_module("gcc").unwrap(), parse_module("mpi/4").unwrap()],
            tags: vec![("k".into(), Some("v".into())), ("x".into(), None)],
            facts: vec![("param.pair_style".into(), "lj/cut".into())],
            programs: vec!["lammps".into()],
            outcomes: vec!["failed".into()],
            categories: vec!["input_error".into(), "time_limit".into()],
            start: Some(10),
            end: Some(20),
        };
        let (sql, params) = f.to_sql();
        assert_eq!(sql.matches('?').count(), params.len(), "{sql}");
        assert_eq!(Filter::default().to_sql().0, "1");
    }
}
