//! Loaded environment modules, read from the variables Lmod and Environment Modules both keep.
//!
//! `LOADEDMODULES` lists the loaded modules (`gcc/12.2.0:openmpi/4.1.4`) and `_LMFILES_` the
//! modulefiles they came from, in the same order, for both Lmod (`.lua` files) and Environment
//! Modules (Tcl files). The version is the last path component of the full name, as both tools
//! print it (`module list`); a name without `/` has no version.

use serde::{Deserialize, Serialize};
use std::fmt;

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
    fn specs() {
        assert_eq!(nv(&parse_spec("gcc/12").unwrap()), ("gcc".into(), Some("12".into())));
        assert_eq!(nv(&parse_spec("gcc").unwrap()), ("gcc".into(), None));
        assert!(parse_spec(" ").is_err());
        assert_eq!(parse_spec("python/3.11").unwrap().full_name(), "python/3.11");
    }
}
