//! The per-job directory of the Python hook, and whether a job's Python is recorded at all.
//!
//! The hook (`_runledger_pyhook.py`, loaded by `runledger-python.pth` from the system's
//! site-packages) runs in the user's processes, so it must never write into root's spool. The
//! plugin gives each job a directory of its own instead, `<python_dir>/<job>` (default
//! `/run/runledger-python/<node>/<job>`: tmpfs, apart from the spool's file system, so a user
//! filling it cannot stop root's records), owned by the job's user with mode 0700 under a parent
//! only root writes, and names it to the tasks in `RUNLEDGER_PYTHON_DIR` — a variable no Python
//! but the hook reads. The epilog reads and removes it.
//!
//! The directory appears whole (made under a temporary name, given to the user, renamed into
//! place), so concurrent steps of one job never see it half made; one left by an earlier job with
//! the same id (another owner) is replaced.
//!
//! Off for the site with the plugin argument `python=no`, for a job with `--runledger-python=no`
//! or `RUNLEDGER_PYTHON=0` in its environment: then there is no directory and no variable.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the job directories go; `%n` is the node's name (several slurmd on one host).
pub const DEFAULT_DIR: &str = "/run/runledger-python/%n";
/// The SPANK option that turns it off for a job or step.
pub const OPTION: &str = "runledger-python";
#[cfg_attr(test, allow(dead_code))] // used by ffi, which the unit tests leave out
pub const OPTION_ARGINFO: &str = "no|yes";
#[cfg_attr(test, allow(dead_code))]
pub const OPTION_USAGE: &str = "Whether runledger records which Python packages this job's Python processes import \
                                (default yes; RUNLEDGER_PYTHON=0 in the environment says no too).";

/// Parses the option's value: `Some(false)` for no, `Some(true)` for yes, `None` otherwise.
pub fn parse_switch(v: &str) -> Option<bool> {
    if runledger_record::python::is_off(v) {
        return Some(false);
    }
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "yes" | "true" | "on").then_some(true)
}

/// Whether the step's Python is recorded: the site allows it, the option did not say no, and the
/// job's environment does not say `RUNLEDGER_PYTHON=0`.
pub fn wanted(site: bool, option: Option<bool>, env_value: Option<&[u8]>) -> bool {
    let env_off = env_value.is_some_and(|v| runledger_record::python::is_off(&String::from_utf8_lossy(v)));
    site && option != Some(false) && !env_off
}

/// How long the first task's post-fork callback waits for the helper thread to have made the
/// job's directory ([`prepare`]), so that no task runs before it exists. Making it takes about
/// 0.1 ms; past this bound the tasks run anyway, and the hook records nothing until it exists.
pub const PREPARE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// `<base>/<job>`, the job's directory under the base.
pub fn job_dir(base: &Path, job_id: u32) -> PathBuf {
    base.join(job_id.to_string())
}

/// Whether the job's directory is made already (by an earlier step of the job): two `lstat`s,
/// cheap enough for a step's start; [`prepare`] otherwise, off the step's critical path.
pub fn is_made(base: &Path, job_id: u32, uid: u32) -> bool {
    base_is_sound(base).is_ok_and(|()| is_ready(&job_dir(base, job_id), uid))
}

/// The base must be a directory only root writes, and not a link. Root is slurmstepd's real
/// uid: its euid is the user's while it forks the tasks (see `privileged`).
fn base_is_sound(base: &Path) -> io::Result<()> {
    let me = nix::unistd::getuid().as_raw();
    let b = fs::symlink_metadata(base)?;
    if !b.is_dir() || b.uid() != me || b.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} must be a directory only its owner (uid {me}) may write, not a link",
            base.display()
        )));
    }
    Ok(())
}

/// Makes (or finds) `<base>/<job>` for the job's user and returns it; see the module docs.
pub fn prepare(base: &Path, job_id: u32, uid: u32, gid: u32) -> io::Result<PathBuf> {
    // The usual path (the base there, the job's directory made by an earlier step or not) makes
    // no system call it can do without.
    match base_is_sound(base) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(base)?;
            base_is_sound(base)?;
        }
        sound => sound?,
    }
    let dir = job_dir(base, job_id);
    if is_ready(&dir, uid) {
        return Ok(dir);
    }
    let tmp = base.join(format!(".{job_id}.{}", std::process::id()));
    if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&tmp) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        // Left by an earlier slurmstepd with this pid.
        fs::remove_dir_all(&tmp)?;
        fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    }
    let mut renamed = false;
    let made = std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid))
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)))
        .and_then(|()| {
            match fs::symlink_metadata(&dir) {
                // Another step of this job was first: keep its directory (and what is in it).
                Ok(_) if is_ready(&dir, uid) => return Ok(()),
                // Left by an earlier job with this id, or not a directory at all.
                Ok(m) if m.is_dir() => fs::remove_dir_all(&dir)?,
                Ok(_) => fs::remove_file(&dir)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            fs::rename(&tmp, &dir)?;
            renamed = true;
            Ok(())
        });
    if !renamed {
        let _ = fs::remove_dir_all(&tmp);
    }
    made?;
    if is_ready(&dir, uid) {
        Ok(dir)
    } else {
        Err(io::Error::other(format!("{} is not the job's own directory", dir.display())))
    }
}

fn is_ready(dir: &Path, uid: u32) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> (u32, u32) {
        let m = fs::metadata("/proc/self").unwrap();
        (m.uid(), m.gid())
    }

    #[test]
    fn switches() {
        assert_eq!(parse_switch("no"), Some(false));
        assert_eq!(parse_switch("YES"), Some(true));
        assert_eq!(parse_switch("maybe"), None);
        assert!(wanted(true, None, None));
        assert!(wanted(true, Some(true), Some(b"1")));
        assert!(!wanted(false, Some(true), None), "python=no for the site wins");
        assert!(!wanted(true, Some(false), None));
        assert!(!wanted(true, None, Some(b"0")));
        assert!(!wanted(true, None, Some(b"off")));
    }

    #[test]
    fn a_job_directory_is_made_once_and_private() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("py/n1");
        let (uid, gid) = me();
        let dir = prepare(&base, 77, uid, gid).unwrap();
        assert_eq!(dir, base.join("77"));
        let m = fs::symlink_metadata(&dir).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o700));
        assert_eq!(fs::metadata(&base).unwrap().mode() & 0o777, 0o755);
        // A second step of the job keeps what the first step's processes wrote.
        fs::write(dir.join("1.rlpy"), "x").unwrap();
        assert_eq!(prepare(&base, 77, uid, gid).unwrap(), dir);
        assert!(dir.join("1.rlpy").exists());
        assert_eq!(fs::read_dir(&base).unwrap().count(), 1, "no temporary left behind");
    }

    #[test]
    fn stale_or_planted_entries_are_replaced() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("py");
        let (uid, gid) = me();
        fs::create_dir_all(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        // An earlier job's directory, open to others: not this job's.
        fs::create_dir(base.join("5")).unwrap();
        fs::set_permissions(base.join("5"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(base.join("5/old.rlpy"), "old").unwrap();
        let dir = prepare(&base, 5, uid, gid).unwrap();
        assert!(!dir.join("old.rlpy").exists());
        // A symbolic link where the directory goes is removed, never followed.
        let target = d.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, base.join("6")).unwrap();
        let dir = prepare(&base, 6, uid, gid).unwrap();
        assert!(!fs::symlink_metadata(&dir).unwrap().file_type().is_symlink());
        assert!(target.exists());
        // The temporary name of an earlier slurmstepd with this pid, with something in it.
        let tmp = base.join(format!(".7.{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("left.rlpy"), "left").unwrap();
        let dir = prepare(&base, 7, uid, gid).unwrap();
        assert!(is_ready(&dir, uid) && !dir.join("left.rlpy").exists());
        assert!(!tmp.exists());
    }

    #[test]
    fn a_parent_others_may_write_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("open");
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
        let (uid, gid) = me();
        let e = prepare(&base, 1, uid, gid).unwrap_err();
        assert!(e.to_string().contains("only its owner"), "{e}");
    }
}
