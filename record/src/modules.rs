//! Loaded environment modules, read from the variables Lmod and Environment Modules both keep.
//!
//! `LOADEDMODULES` lists the loaded modules (`gcc/12.2.0:openmpi/4.1.4`) and `_LMFILES_` the
//! modulefiles they came from, in the same order, for both Lmod (`.lua` files) and Environment
//! Modules (Tcl files). The version is the last path component of the full name, as both tools
//! print it (`module list`); a name without `/` has no version.
//!
//! A step's modules are bounded like its environment ([`bound`]): `LOADEDMODULES` can list
//! thousands of names, and every query that pairs or groups modules pays for each one, so a
//! step keeps at most [`MAX_MODULES`] and the rest is counted in [`DROPPED_VAR`], never lost
//! silently.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Most modules kept per step: far above what real module stacks hold (a few dozen), far below
/// what makes `query co-usage` (pairs of modules per job) costly.
pub const MAX_MODULES: usize = 256;
/// Longest full name (`name/version`) or modulefile path kept; longer ones are dropped, counted.
pub const MAX_NAME_BYTES: usize = 1024;
/// Environment variable of the step's record that says how many modules were dropped by [`bound`].
pub const DROPPED_VAR: &str = "RUNLEDGER_MODULES_DROPPED";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Module {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The modulefile, when `_LMFILES_` says which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Module {
    /// Splits a full module name (`mpi/openmpi/4.1.4` → `mpi/openmpi`, `4.1.4`).
    pub fn from_full_name(full: &str) -> Option<Module> {
        let full = full.trim().trim_end_matches('/');
        if full.is_empty() {
            return None;
        }
        Some(match full.rsplit_once('/') {
            Some((name, version)) if !name.is_empty() && !version.is_empty() => {
                Module { name: name.to_string(), version: Some(version.to_string()), file: None }
            }
            _ => Module { name: full.trim_start_matches('/').to_string(), version: None, file: None },
        })
    }

    /// `name/version`, as `module list` shows it.
    pub fn full_name(&self) -> String {
        match &self.version {
            Some(v) => format!("{}/{}", self.name, v),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())
    }
}

/// Parses a `NAME[/VERSION]` filter argument.
pub fn parse_spec(spec: &str) -> Result<Module, String> {
    Module::from_full_name(spec).ok_or_else(|| format!("empty module name in '{spec}'"))
}

/// Reads the loaded modules from a step's `LOADEDMODULES`, `_LMFILES_` and `MODULEPATH`.
///
/// With only `_LMFILES_` (some sites unset `LOADEDMODULES`), names come from the file paths
/// relative to the `MODULEPATH` entry they live under, with Lmod's `.lua` suffix dropped.
pub fn parse_loaded(loaded: Option<&str>, lmfiles: Option<&str>, modulepath: Option<&str>) -> Vec<Module> {
    let files: Vec<&str> = lmfiles.map(|f| f.split(':').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let names: Vec<&str> = loaded.map(|l| l.split(':').filter(|s| !s.trim().is_empty()).collect()).unwrap_or_default();

    let mut out: Vec<Module> = if !names.is_empty() {
        let paired = files.len() == names.len();
        names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let mut m = Module::from_full_name(n)?;
                if paired {
                    m.file = Some(files[i].to_string());
                }
                Some(m)
            })
            .collect()
    } else {
        let roots: Vec<&str> = modulepath.map(|p| p.split(':').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        files
            .iter()
            .filter_map(|f| {
                let rel = roots
                    .iter()
                    .filter_map(|r| f.strip_prefix(r.trim_end_matches('/')).and_then(|x| x.strip_prefix('/')))
                    .min_by_key(|rel| rel.len())?;
                let mut m = Module::from_full_name(rel.strip_suffix(".lua").unwrap_or(rel))?;
                m.file = Some(f.to_string());
                Some(m)
            })
            .collect()
    };
    // A module listed twice (broken environments do this) counts once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|m| seen.insert((m.name.clone(), m.version.clone())));
    out
}

/// Keeps the first [`MAX_MODULES`] modules whose name and file are at most [`MAX_NAME_BYTES`]
/// long; returns how many it dropped (to be recorded in [`DROPPED_VAR`]).
pub fn bound(modules: &mut Vec<Module>) -> usize {
    let before = modules.len();
    modules.retain(|m| {
        m.name.len() + m.version.as_ref().map_or(0, |v| v.len() + 1) <= MAX_NAME_BYTES
            && m.file.as_ref().is_none_or(|f| f.len() <= MAX_NAME_BYTES)
    });
    modules.truncate(MAX_MODULES);
    before - modules.len()
}

/// Adds `dropped` to the count already in `env` under [`DROPPED_VAR`] (a step's modules are
/// bounded once at its start and again when the sampler adds what the script loaded).
pub fn count_dropped(env: &mut std::collections::BTreeMap<String, String>, dropped: usize) {
    if dropped == 0 {
        return;
    }
    let before: usize = env.get(DROPPED_VAR).and_then(|v| v.parse().ok()).unwrap_or(0);
    env.insert(DROPPED_VAR.to_string(), (before + dropped).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(m: &Module) -> (String, Option<String>) {
        (m.name.clone(), m.version.clone())
    }

    #[test]
    fn lmod_strings() {
        let m = parse_loaded(
            Some("gcc/12.2.0:openmpi/4.1.4"),
            Some("/opt/mf/gcc/12.2.0.lua:/opt/mf/openmpi/4.1.4.lua"),
            Some("/opt/mf"),
        );
        assert_eq!(nv(&m[0]), ("gcc".into(), Some("12.2.0".into())));
        assert_eq!(nv(&m[1]), ("openmpi".into(), Some("4.1.4".into())));
        assert_eq!(m[1].file.as_deref(), Some("/opt/mf/openmpi/4.1.4.lua"));
    }

    #[test]
    fn tcl_environment_modules_strings() {
        // Environment Modules 4/5: same variables, Tcl modulefiles without suffix, hierarchical names.
        let m = parse_loaded(
            Some("dot:mpi/openmpi/4.1.4:intel"),
            Some("/usr/share/modules/modulefiles/dot:/etc/mf/mpi/openmpi/4.1.4:/etc/mf/intel"),
            None,
        );
        assert_eq!(
            m.iter().map(nv).collect::<Vec<_>>(),
            vec![("dot".into(), None), ("mpi/openmpi".into(), Some("4.1.4".into())), ("intel".into(), None),]
        );
        assert_eq!(m[2].file.as_deref(), Some("/etc/mf/intel"));
    }

    #[test]
    fn files_only_and_broken_strings() {
        let m = parse_loaded(None, Some("/opt/mf/gcc/12.2.0.lua:/elsewhere/x/1"), Some("/opt/mf/:/other"));
        assert_eq!(m.iter().map(nv).collect::<Vec<_>>(), vec![("gcc".into(), Some("12.2.0".into()))]);
        // Mismatched counts: names kept, files not guessed.
        let m = parse_loaded(Some("a/1::b/2:a/1:"), Some("/f/a/1"), None);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|m| m.file.is_none()));
        assert!(parse_loaded(None, None, None).is_empty());
        assert!(parse_loaded(Some(":::"), None, None).is_empty());
    }

    #[test]
    fn thousands_of_modules_are_bounded_and_counted() {
        let loaded: Vec<String> = (0..6000).map(|i| format!("m{i}/1.0")).collect();
        let mut m = parse_loaded(Some(&loaded.join(":")), None, None);
        assert_eq!(m.len(), 6000);
        assert_eq!(bound(&mut m), 6000 - MAX_MODULES);
        assert_eq!(m.len(), MAX_MODULES);
        assert_eq!(m[0].full_name(), "m0/1.0", "the first modules are the ones kept");
        let long = format!("x/{}", "9".repeat(MAX_NAME_BYTES));
        let mut m = parse_loaded(Some(&format!("gcc/12:{long}")), None, None);
        assert_eq!(bound(&mut m), 1);
        assert_eq!(m.iter().map(|m| m.full_name()).collect::<Vec<_>>(), ["gcc/12"]);
        let mut env = std::collections::BTreeMap::new();
        count_dropped(&mut env, 0);
        assert!(env.is_empty(), "nothing dropped, no marker");
        count_dropped(&mut env, 5);
        count_dropped(&mut env, 2);
        assert_eq!(env[DROPPED_VAR], "7");
    }

    #[test]
    fn specs() {
        assert_eq!(nv(&parse_spec("gcc/12").unwrap()), ("gcc".into(), Some("12".into())));
        assert_eq!(nv(&parse_spec("gcc").unwrap()), ("gcc".into(), None));
        assert!(parse_spec(" ").is_err());
        assert_eq!(parse_spec("python/3.11").unwrap().full_name(), "python/3.11");
    }
}
