//! The input-file fact source: the parameters a job ran with (`param.NAME` facts), read from its
//! input files with the same care as its logs.
//!
//! **Which files.** First those the steps' command lines name (`lmp -in in.melt`, `pw.x -i
//! scf.in`, `gmx grompp -f md.mdp`: [`logparse::files_in_argv`], resolved against the step's
//! working directory), then the regular files directly in the work directory and in its
//! `system/` (OpenFOAM's `controlDict`, `fvSolution`) whose names a built-in format or a site
//! `[[program.input]]` rule knows ([`logparse::InputRules::wants`]), newest first; at most
//! `[logs] max_inputs` in all. Unlike logs, inputs are not required to be modified since the
//! job started: they are written before it. A file fed through a shell redirection (`lmp <
//! in.melt`) is not in argv, so it is found only by its name.
//!
//! **How.** As for logs ([`crate::logs`]): listed and read with the job user's identity
//! ([`crate::safe_read`]), symbolic links never followed (the work directory and `system/` are
//! opened with `O_NOFOLLOW`, every file too), FIFOs and devices refused, only the first
//! `[logs] input_bytes` of each file, and all of it within `[logs] time_budget_ms` and the
//! epilog's own deadline.
//!
//! **Facts.** Per file, the `param.*` facts with the file's path as `source`; and at job level
//! (`source = ""`, like the logs' verdict) each parameter from the first file that gives it, in
//! the order above, so that `collector query … --by fact:param.pair_style` groups jobs by it.

use crate::facts::{FactSource, JobContext};
use crate::safe_read::{list_dir_as, read_each_as, ReadError};
use logparse::{InputFormat, InputRules};
use runledger_record::env::Pattern;
use runledger_record::Fact;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directory entries looked at, at most, per directory listed.
const MAX_DIR_ENTRIES: usize = 20_000;
/// Largest site rules file read.
const MAX_SITE_FILE: u64 = 4 << 20;

/// The input-file source.
pub struct InputFiles;

impl FactSource for InputFiles {
    fn name(&self) -> &'static str {
        "input file"
    }

    fn collect(&self, ctx: &JobContext) -> Vec<Fact> {
        collect(ctx)
    }
}

/// The built-in formats plus the site's `[[program.input]]` rules from `[logs] rules`; a bad
/// site file is logged and the built-ins are used.
pub fn load_rules(path: &Path) -> InputRules {
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_SITE_FILE => {
            log::error!(
                "input rules: {}: larger than {MAX_SITE_FILE} bytes; using the built-in formats",
                path.display()
            );
            return InputRules::builtin();
        }
        Ok(_) => std::fs::read_to_string(path),
        Err(e) => Err(e),
    };
    match text {
        Ok(t) => InputRules::from_toml(&t, &path.display().to_string()).unwrap_or_else(|e| {
            log::error!("input rules: {e}; using the built-in formats");
            InputRules::builtin()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => InputRules::builtin(),
        Err(e) => {
            log::error!("input rules: {}: {e}; using the built-in formats", path.display());
            InputRules::builtin()
        }
    }
}

/// The files to read, in order: argv's first, then the work directory's (and `system/`'s),
/// newest first; at most `max`.
pub fn plan(ctx: &JobContext, rules: &InputRules, deadline: Instant) -> Vec<(PathBuf, Option<InputFormat>)> {
    let max = ctx.logs.max_inputs;
    let Some(uid) = ctx.uid else { return Vec::new() };
    let mut out: Vec<(PathBuf, Option<InputFormat>)> = Vec::new();
    for (p, hint) in &ctx.argv_inputs {
        if out.len() < max && p.is_absolute() && !out.iter().any(|(q, _)| q == p) {
            out.push((p.clone(), *hint));
        }
    }
    let Some(wd) = ctx.work_dir.as_ref().filter(|w| w.is_absolute()) else { return out };
    let mut found = Vec::new();
    for dir in [wd.clone(), wd.join("system")] {
        if out.len() + found.len() >= max || Instant::now() >= deadline {
            break;
        }
        let in_system = dir != *wd;
        // Every name a built-in format or a site rule reads (InputRules::globs holds both).
        let globs: Vec<Pattern> = rules.globs().iter().map(|g| Pattern::new(g)).collect();
        let keep = move |name: &str| {
            if in_system {
                matches!(name, "controlDict" | "fvSolution")
            } else {
                globs.iter().any(|g| g.matches(name))
            }
        };
        match list_dir_as(uid, ctx.gid, &dir, keep, MAX_DIR_ENTRIES, deadline) {
            Ok(files) => found.extend(files),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::debug!("job {}: {} not listed for inputs: {e}", ctx.job_id, dir.display()),
        }
    }
    found.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| a.path.cmp(&b.path)));
    for f in found {
        if out.len() >= max {
            break;
        }
        if !out.iter().any(|(q, _)| *q == f.path) {
            out.push((f.path, None));
        }
    }
    out
}

/// See the module docs.
pub fn collect(ctx: &JobContext) -> Vec<Fact> {
    let cfg = ctx.logs;
    if !cfg.enabled || !cfg.inputs || cfg.max_inputs == 0 {
        return Vec::new();
    }
    let Some(uid) = ctx.uid else { return Vec::new() };
    let t0 = Instant::now();
    let deadline = ctx.deadline.min(t0 + Duration::from_millis(cfg.time_budget_ms));
    let rules = load_rules(&cfg.rules);
    let planned = plan(ctx, &rules, deadline);
    if planned.is_empty() {
        return Vec::new();
    }
    let bytes = cfg.input_bytes.min(crate::facts::MAX_JOB_BYTES);
    let wanted: Vec<(PathBuf, u64, u64)> = planned.iter().map(|(p, _)| (p.clone(), bytes, 0)).collect();
    let results = read_each_as(uid, ctx.gid, &wanted, deadline);
    let mut facts = Vec::new();
    let mut job_level: Vec<Fact> = Vec::new();
    let mut read = 0;
    for ((path, hint), r) in planned.iter().zip(results) {
        let w = match r {
            Ok(w) => w,
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e @ ReadError::Refused(_)) => {
                log::info!("job {}: input {} not read: {e}", ctx.job_id, path.display());
                continue;
            }
            Err(e) => {
                log::debug!("job {}: input {} not read: {e}", ctx.job_id, path.display());
                continue;
            }
        };
        read += 1;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let source = path.to_string_lossy().into_owned();
        for p in rules.extract(&name, &w.head, *hint) {
            if !job_level.iter().any(|f| f.key == p.key) {
                job_level.push(Fact { source: String::new(), key: p.key.clone(), value: p.value.clone(), unit: None });
            }
            facts.push(Fact { source: source.clone(), key: p.key, value: p.value, unit: p.unit });
        }
    }
    log::info!(
        "job {}: inputs: files={} read={} params={} wall_ms={}",
        ctx.job_id,
        planned.len(),
        read,
        job_level.len(),
        t0.elapsed().as_millis()
    );
    facts.extend(job_level);
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::config::LogsConfig;
    use runledger_record::JobState;
    use std::os::unix::fs::PermissionsExt;

    /// Root reads as `nobody` (as for a real job); anyone else as themselves.
    fn reader() -> u32 {
        match nix_euid() {
            0 => 65534,
            u => u,
        }
    }

    /// Our effective uid: the owner of a directory we just made.
    fn nix_euid() -> u32 {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(d.path()).unwrap())
    }

    fn write(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn ctx<'a>(work: &Path, argv_inputs: Vec<(PathBuf, Option<InputFormat>)>, logs: &'a LogsConfig) -> JobContext<'a> {
        JobContext {
            job_id: 42,
            uid: Some(reader()),
            gid: Some(reader()),
            user: None,
            work_dir: Some(work.to_path_buf()),
            stdout: None,
            stderr: None,
            array_job_id: None,
            array_task_id: None,
            start: None,
            state: JobState::Completed,
            argv_inputs,
            logs,
            deadline: Instant::now() + Duration::from_secs(20),
        }
    }

    fn value<'a>(f: &'a [Fact], source: &str, key: &str) -> Option<&'a str> {
        f.iter().find(|x| x.source == source && x.key == key).map(|x| x.value.as_str())
    }

    #[test]
    fn argv_first_then_names_in_the_work_dir_and_system_never_links_or_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("system")).unwrap();
        for d in [dir.path(), &work, &work.join("system")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        write(&work.join("in.melt"), "units lj\natom_style atomic\npair_style lj/cut 2.5\nfix 1 all nve\nrun 250\n");
        // Named by `lmp -in run.txt`: no known name, LAMMPS by its program; read first, so its
        // pair_style is the job's.
        write(&work.join("run.txt"), "units lj\npair_style soft 1.0\nrun 100\n");
        write(&work.join("md.mdp"), "integrator = sd ; stochastic\ndt = 0.004\n");
        write(&work.join("system/controlDict"), "application pimpleFoam;\ndeltaT 0.001; // s\n");
        write(&work.join("notes.txt"), "pair_style never\n");
        std::os::unix::fs::symlink("/etc/passwd", work.join("INCAR")).unwrap();
        let made = std::process::Command::new("mkfifo").arg("-m").arg("666").arg(work.join("x.in")).status().unwrap();
        assert!(made.success());
        let logs = LogsConfig::default();
        let facts = collect(&ctx(&work, vec![(work.join("run.txt"), Some(InputFormat::LammpsIn))], &logs));
        let src = |n: &str| work.join(n).to_string_lossy().into_owned();
        assert_eq!(value(&facts, "", "param.pair_style"), Some("soft"), "{facts:#?}");
        assert_eq!(value(&facts, &src("run.txt"), "param.run"), Some("100"));
        assert_eq!(value(&facts, &src("in.melt"), "param.pair_style"), Some("lj/cut"));
        assert_eq!(value(&facts, "", "param.fix"), Some("nve"), "a parameter only in.melt gives");
        assert_eq!(value(&facts, "", "param.integrator"), Some("sd"));
        assert_eq!(value(&facts, "", "param.deltaT"), Some("0.001"));
        assert_eq!(value(&facts, &src("system/controlDict"), "param.application"), Some("pimpleFoam"));
        let sources: std::collections::BTreeSet<&str> = facts.iter().map(|f| f.source.as_str()).collect();
        let want: std::collections::BTreeSet<String> = ["", "run.txt", "in.melt", "md.mdp", "system/controlDict"]
            .iter()
            .map(|n| if n.is_empty() { String::new() } else { src(n) })
            .collect();
        assert_eq!(sources, want.iter().map(String::as_str).collect(), "no symlink, FIFO or other file read");
        // Job-level facts once each.
        let job: Vec<&str> = facts.iter().filter(|f| f.source.is_empty()).map(|f| f.key.as_str()).collect();
        let mut dedup = job.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(job.len(), dedup.len());

        // Off, or no owner: nothing is read.
        let off = LogsConfig { inputs: false, ..LogsConfig::default() };
        assert!(collect(&ctx(&work, Vec::new(), &off)).is_empty());
        let mut c = ctx(&work, Vec::new(), &logs);
        c.uid = None;
        assert!(collect(&c).is_empty());
        // At most max_inputs files, argv's first.
        let one = LogsConfig { max_inputs: 1, ..LogsConfig::default() };
        let f = collect(&ctx(&work, vec![(work.join("run.txt"), Some(InputFormat::LammpsIn))], &one));
        assert!(f.iter().all(|x| x.source.is_empty() || x.source == src("run.txt")), "{f:#?}");
    }
}
