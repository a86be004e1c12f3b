//! Slurm's output file name patterns (`sbatch --output`, SLURM_JOB_STDOUT), expanded minimally.
//!
//! Supported: `%%`, `%j` (job id), `%u` (user), `%x` (job name), `%A` (array master id, else the
//! job id), `%a` (array task id, else 4294967294 as Slurm prints it), `%N` (this node's name),
//! each with an optional zero-padding width (`%4a`) as sbatch allows. Any other `%` sequence is
//! left as it is: a wrong guess at a file name is worse than a path that does not exist.

use std::path::{Path, PathBuf};

/// What the supported specifiers expand to.
#[derive(Clone, Debug, Default)]
pub struct PatternVars<'a> {
    pub job_id: u32,
    pub user: Option<&'a str>,
    pub job_name: Option<&'a str>,
    pub array_job_id: Option<u32>,
    pub array_task_id: Option<u32>,
    pub node: Option<&'a str>,
}

/// Slurm's NO_VAL - 1, what `%a` becomes outside an array.
const NO_ARRAY_TASK: u32 = 0xffff_fffe;

/// Expands the specifiers of `pattern`; unknown ones and ones whose value is unknown stay literal.
pub fn expand(pattern: &str, v: &PatternVars) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let spec = &rest[pos + 1..];
        let digits = spec.bytes().take_while(|b| b.is_ascii_digit()).count();
        let width: usize = spec[..digits].parse().unwrap_or(0).min(10);
        let Some(c) = spec[digits..].chars().next() else {
            out.push_str(&rest[pos..]); // a trailing '%' (or '%12')
            return out;
        };
        let num = |n: u32| format!("{n:0width$}");
        let value = match c {
            '%' if digits == 0 => Some("%".to_string()),
            'j' => Some(num(v.job_id)),
            'A' => Some(num(v.array_job_id.unwrap_or(v.job_id))),
            'a' => Some(num(v.array_task_id.unwrap_or(NO_ARRAY_TASK))),
            'u' => v.user.map(str::to_string),
            'x' => v.job_name.map(str::to_string),
            'N' => v.node.map(str::to_string),
            _ => None,
        };
        let used = 1 + digits + c.len_utf8();
        match value {
            Some(s) => out.push_str(&s),
            None => out.push_str(&rest[pos..pos + used]),
        }
        rest = &rest[pos + used..];
    }
    out.push_str(rest);
    out
}

/// Expands `pattern` and makes it absolute against `work_dir`; `None` if it stays relative.
pub fn resolve(pattern: &str, v: &PatternVars, work_dir: Option<&Path>) -> Option<PathBuf> {
    let p = PathBuf::from(expand(pattern, v));
    if p.is_absolute() {
        Some(p)
    } else {
        work_dir.filter(|w| w.is_absolute()).map(|w| w.join(p))
    }
}

/// sbatch's default output name: `slurm-%j.out`, or `slurm-%A_%a.out` for an array task.
pub fn default_output(v: &PatternVars) -> &'static str {
    if v.array_task_id.is_some() {
        "slurm-%A_%a.out"
    } else {
        "slurm-%j.out"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> PatternVars<'static> {
        PatternVars { job_id: 42, user: Some("alice"), job_name: Some("run"), node: Some("n1"), ..Default::default() }
    }

    #[test]
    fn expands_the_supported_specifiers() {
        let v = vars();
        assert_eq!(expand("slurm-%j.out", &v), "slurm-42.out");
        assert_eq!(expand("%x-%u-%N-%j", &v), "run-alice-n1-42");
        assert_eq!(expand("100%%-%j", &v), "100%-42");
        assert_eq!(expand("%A_%a", &v), "42_4294967294");
        assert_eq!(expand("%6j", &v), "000042");
        let arr = PatternVars { job_id: 50, array_job_id: Some(40), array_task_id: Some(3), ..v };
        assert_eq!(expand("slurm-%A_%3a.out", &arr), "slurm-40_003.out");
        assert_eq!(expand(default_output(&arr), &arr), "slurm-40_3.out");
        assert_eq!(expand(default_output(&vars()), &vars()), "slurm-42.out");
    }

    #[test]
    fn leaves_unknown_and_broken_specifiers_alone() {
        let v = PatternVars { job_id: 1, ..Default::default() };
        assert_eq!(expand("%s.%t.%q", &v), "%s.%t.%q");
        assert_eq!(expand("%u-%x", &v), "%u-%x"); // values unknown
        assert_eq!(expand("end%", &v), "end%");
        assert_eq!(expand("end%12", &v), "end%12");
        assert_eq!(expand("é%jé", &v), "é1é");
        assert_eq!(expand("%é", &v), "%é");
    }

    #[test]
    fn relative_patterns_resolve_against_the_work_dir() {
        let v = vars();
        assert_eq!(resolve("o-%j", &v, Some(Path::new("/w"))), Some(PathBuf::from("/w/o-42")));
        assert_eq!(resolve("/abs/%j", &v, None), Some(PathBuf::from("/abs/42")));
        assert_eq!(resolve("o-%j", &v, None), None);
        assert_eq!(resolve("o-%j", &v, Some(Path::new("rel"))), None);
    }
}
