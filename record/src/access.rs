//! `[access]` in runledger.toml: who, besides admins, sees jobs other than their own.
//!
//! Account managers (a group leader, an account's coordinator) see every job of the accounts
//! they manage. The table maps account patterns to users and `@groups`:
//!
//! ```toml
//! [access.managers]
//! chem = ["alice", "@chem-leads"]      # alice and members of group chem-leads manage account chem
//! "phys-*" = ["bob"]                   # bob manages phys-a, phys-b, …
//! ```
//!
//! Patterns are globs where only `*` is special (any run of characters), as elsewhere in this
//! file; accounts are matched as Slurm records them. The collector resolves names and groups when
//! a caller asks (a membership change takes effect at the next query); this module only parses,
//! checks and matches, so it needs no user database.

use crate::env::Pattern;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Account pattern → users and `@groups` who manage the matching accounts.
    pub managers: BTreeMap<String, Vec<String>>,
}

/// One entry of a manager list: a user name, or a Unix group (`@name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member<'a> {
    User(&'a str),
    Group(&'a str),
}

impl<'a> Member<'a> {
    pub fn parse(s: &'a str) -> Result<Member<'a>, String> {
        let t = s.trim();
        match t.strip_prefix('@') {
            Some("") => Err(format!("'{s}': a group needs a name after '@'")),
            Some(g) => Ok(Member::Group(g)),
            None if t.is_empty() => Err("an empty user name".into()),
            None => Ok(Member::User(t)),
        }
    }
}

impl AccessConfig {
    /// Every pattern and member well-formed: an empty pattern or member would silently manage
    /// nothing (or, for a pattern, be mistaken for "every account"), so it is an error.
    pub fn validate(&self) -> Result<(), String> {
        for (pattern, members) in &self.managers {
            if pattern.trim().is_empty() {
                return Err("[access.managers]: an empty account pattern".into());
            }
            if members.is_empty() {
                return Err(format!("[access.managers] {pattern}: no users or @groups"));
            }
            for m in members {
                Member::parse(m).map_err(|e| format!("[access.managers] {pattern}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The account patterns `user` manages, as themselves or through a group (`in_group(name)`
    /// says whether the user belongs to the named group). Sorted, each once; empty: a manager of
    /// nothing.
    pub fn managed_by(&self, user: &str, mut in_group: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (pattern, members) in &self.managers {
            let mine = members.iter().filter_map(|m| Member::parse(m).ok()).any(|m| match m {
                Member::User(u) => u == user,
                Member::Group(g) => in_group(g),
            });
            if mine {
                out.push(pattern.trim().to_string());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Whether `account` matches one of `patterns` (globs with `*`).
pub fn account_matches(patterns: &[String], account: &str) -> bool {
    patterns.iter().any(|p| Pattern::new(p).matches(account))
}

/// A pattern as an SQLite `GLOB` operand with the same meaning: `*` stays, while GLOB's other
/// specials (`?`, `[`) are made literal (`[?]`, `[[]`), so `chem?` manages only "chem?".
pub fn sql_glob(pattern: &str) -> String {
    let mut s = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '?' => s.push_str("[?]"),
            '[' => s.push_str("[[]"),
            _ => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn parses_users_groups_and_globs() {
        let c =
            Config::parse("[access.managers]\nchem = [\"alice\", \"@chem-leads\"]\n\"phys-*\" = [\"bob\"]\n").unwrap();
        let a = &c.access;
        assert_eq!(a.managed_by("alice", |_| false), vec!["chem"]);
        assert_eq!(a.managed_by("carol", |g| g == "chem-leads"), vec!["chem"]);
        assert_eq!(a.managed_by("bob", |_| true), vec!["chem", "phys-*"]);
        assert!(a.managed_by("dave", |_| false).is_empty());
        assert_eq!(Config::parse("").unwrap().access, AccessConfig::default());
    }

    #[test]
    fn bad_entries_are_clear_errors() {
        for (text, needle) in [
            ("[access.managers]\nchem = []\n", "no users"),
            ("[access.managers]\nchem = [\"@\"]\n", "after '@'"),
            ("[access.managers]\nchem = [\" \"]\n", "empty user"),
            ("[access.managers]\n\"\" = [\"a\"]\n", "empty account pattern"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let e = Config::parse("[access.manager]\nchem = [\"a\"]\n").unwrap_err();
        assert!(e.contains("unknown field `manager`"), "{e}");
        let e = Config::parse("[access.managers]\nchem = \"alice\"\n").unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn account_globs_match_as_sqlite_reads_them() {
        let p = vec!["chem".to_string(), "phys-*".to_string()];
        assert!(account_matches(&p, "chem"));
        assert!(!account_matches(&p, "chemistry"));
        assert!(account_matches(&p, "phys-a"));
        assert!(!account_matches(&p, "phys"));
        assert_eq!(sql_glob("phys-*"), "phys-*");
        assert_eq!(sql_glob("a?[b"), "a[?][[]b");
    }
}
