//! The job's Python records: the files the node package's Python hook wrote into the per-job
//! directory the plugin made (`StepStart::python_dir`, owned by the job's user).
//!
//! The user owns that directory and everything in it, so it is read like a user's log: listed
//! and read as the job's user with [`crate::safe_read`] (no symlink followed, nothing but regular
//! files, at most [`MAX_FILES`] files of at most [`MAX_FILE_BYTES`], within a time budget), and
//! every file is parsed strictly: a file that is not exactly what the hook writes is rejected
//! whole, with the reason in [`PythonReport::rejected`] and the log. What passes is the user's
//! word about their own job ([`PythonReport::source`] `user`) and goes nowhere else.

use crate::safe_read::{list_dir_as, read_each_as, ReadError};
use runledger_record::python::{
    PythonPackage, PythonProcess, PythonReport, FILE_SUFFIX, MAX_FILES, MAX_FILE_BYTES, MAX_PACKAGES, MAX_REJECTED,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long reading the directory may take at most (a share of the epilog's budget).
pub const TIME_BUDGET: Duration = Duration::from_millis(1000);

/// The hook's JSON line: the header alone while the process runs, with `ended` and `packages`
/// once it has exited.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    v: u32,
    pid: u32,
    rank: String,
    interpreter: String,
    version: String,
    prefix: String,
    base_prefix: String,
    main: String,
    start: i64,
    #[serde(default)]
    ended: Option<String>,
    #[serde(default)]
    packages: Option<Vec<(String, String)>>,
}

/// Reads the job's Python directory as `uid`/`gid`. `None` when there is nothing to say (no
/// directory, or an empty one).
pub fn collect(dir: &Path, uid: u32, gid: Option<u32>, deadline: Instant) -> Option<PythonReport> {
    let deadline = deadline.min(Instant::now() + TIME_BUDGET);
    let mut report = PythonReport { source: "user".into(), ..Default::default() };
    let listed = match list_dir_as(uid, gid, dir, |n| n.ends_with(FILE_SUFFIX), MAX_FILES * 8, deadline) {
        Ok(l) => l,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("not reading the Python records in {}: {e}", dir.display());
            report.rejected.push(format!("{}: {e}", dir.display()));
            return Some(report);
        }
    };
    let mut files: Vec<PathBuf> = listed.into_iter().map(|f| f.path).collect();
    files.sort();
    if files.len() > MAX_FILES {
        report.skipped = (files.len() - MAX_FILES) as u32;
        files.truncate(MAX_FILES);
    }
    // One byte more than allowed tells a file over the bound from one at it.
    let wanted: Vec<(PathBuf, u64, u64)> = files.iter().map(|p| (p.clone(), MAX_FILE_BYTES + 1, 0)).collect();
    for (path, r) in files.iter().zip(read_each_as(uid, gid, &wanted, deadline)) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parsed = match r {
            Ok(w) if w.size > MAX_FILE_BYTES || w.head.len() as u64 > MAX_FILE_BYTES => {
                Err(format!("larger than {MAX_FILE_BYTES} bytes"))
            }
            Ok(w) => parse(&name, &w.head),
            Err(ReadError::TimedOut) => {
                report.skipped += 1;
                continue;
            }
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(p) => report.processes.push(p),
            Err(why) => {
                log::warn!("rejected Python record {}: {why}", path.display());
                if report.rejected.len() < MAX_REJECTED {
                    report.rejected.push(format!("{name}: {why}"));
                }
            }
        }
    }
    if report.skipped > 0 {
        log::warn!(
            "{} Python record(s) in {} not read (over {MAX_FILES} files or out of time)",
            report.skipped,
            dir.display()
        );
    }
    report.processes.sort_by_key(|p| (p.start, p.pid));
    (!report.processes.is_empty() || !report.rejected.is_empty() || report.skipped > 0).then_some(report)
}

/// Parses one file `<pid>.rlpy`; the error says what is wrong with it.
pub fn parse(name: &str, bytes: &[u8]) -> Result<PythonProcess, String> {
    let pid: u32 = name
        .strip_suffix(FILE_SUFFIX)
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| "file name is not <pid>.rlpy".to_string())?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let line: Line = serde_json::from_str(first).map_err(|e| format!("line 1: {e}"))?;
    if line.v != 1 {
        return Err(format!("format version {} (this epilog reads 1)", line.v));
    }
    if line.pid != pid {
        return Err(format!("pid {} in a file named for {pid}", line.pid));
    }
    let rank: u32 = line.rank.parse().map_err(|_| format!("rank {:?} is not a number", line.rank))?;
    let mut packages: Vec<PythonPackage> = Vec::new();
    let ended = match (line.ended, line.packages) {
        (Some(ended), Some(list)) => {
            if let Some((n, extra)) = lines.enumerate().find(|(_, l)| !l.is_empty()) {
                return Err(format!("line {}: {extra:?} after the exit record", n + 2));
            }
            for (name, version) in list {
                packages.push(PythonPackage { name, version: Some(version).filter(|v| !v.is_empty()) });
            }
            ended
        }
        (None, None) => {
            // Still running, or killed: one `?name` / `+name` / `-name` line per import begun.
            for (n, l) in lines.enumerate() {
                if l.is_empty() {
                    continue;
                }
                let (mark, name) = l.split_at(l.chars().next().map_or(0, char::len_utf8));
                match mark {
                    "+" | "?" => packages.push(PythonPackage { name: name.to_string(), version: None }),
                    "-" => {}
                    _ => return Err(format!("line {}: {l:?} is not an import line", n + 2)),
                }
                if packages.len() > MAX_PACKAGES {
                    break;
                }
            }
            "unfinished".to_string()
        }
        _ => return Err("line 1: ended and packages come together".into()),
    };
    // The same package twice (an import retried after a failure) is one package.
    let mut seen = std::collections::HashSet::new();
    packages.retain(|p| seen.insert(p.name.clone()));
    let p = PythonProcess {
        pid,
        rank,
        interpreter: line.interpreter,
        version: line.version,
        prefix: line.prefix,
        base_prefix: line.base_prefix,
        main: line.main,
        start: line.start,
        packages,
        ended,
    };
    p.validate()?;
    Ok(p)
}

/// Removes the directory after the job (as root: its parent is root's, and the removal follows
/// no symbolic link). Logged, never fatal.
pub fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove the Python record directory {}: {e}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"v":1,"pid":42,"rank":"0","interpreter":"/usr/bin/python3","version":"3.11.2","prefix":"/home/a/venv","base_prefix":"/usr","main":"run.py","start":1700000000"#;

    #[test]
    fn an_exited_process() {
        let text = format!(
            "{HEADER},\"ended\":\"exception:ValueError\",\"packages\":[[\"numpy\",\"1.24.2\"],[\"rlpkg\",\"\"]]}}\n"
        );
        let p = parse("42.rlpy", text.as_bytes()).unwrap();
        assert_eq!(p.ended, "exception:ValueError");
        assert_eq!((p.prefix.as_str(), p.base_prefix.as_str(), p.main.as_str()), ("/home/a/venv", "/usr", "run.py"));
        let names: Vec<String> = p.packages.iter().map(PythonPackage::full_name).collect();
        assert_eq!(names, ["numpy/1.24.2", "rlpkg"]);
    }

    #[test]
    fn a_killed_process_keeps_what_it_imported() {
        let text = format!("{HEADER}}}\n-apport_python_hook\n+numpy\n?scipy\n+numpy\n");
        let p = parse("42.rlpy", text.as_bytes()).unwrap();
        assert_eq!(p.ended, "unfinished");
        let names: Vec<&str> = p.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["numpy", "scipy"], "failed imports dropped, begun ones kept, duplicates once");
    }

    #[test]
    fn anything_else_is_rejected_with_its_reason() {
        let done = |extra: &str| format!("{HEADER},\"ended\":\"normal\",\"packages\":[]{extra}}}\n");
        let cases: Vec<(&str, String, &str)> = vec![
            ("x.rlpy", format!("{HEADER}}}\n"), "file name"),
            ("43.rlpy", format!("{HEADER}}}\n"), "pid 42 in a file named for 43"),
            ("42.rlpy", "not json".into(), "line 1:"),
            ("42.rlpy", done(",\"job_id\":7"), "line 1: unknown field `job_id`"),
            ("42.rlpy", format!("{}+numpy\n", done("")), "line 2:"),
            ("42.rlpy", format!("{HEADER}}}\n*numpy\n"), "line 2:"),
            ("42.rlpy", format!("{HEADER}}}\n+../../x\n"), "package name"),
            ("42.rlpy", done("").replace("\"0\"", "\"3\""), "rank 3"),
            ("42.rlpy", done("").replace("normal", "exit:1"), "ended"),
            ("42.rlpy", done("").replace("run.py", "a\\u001b[31m"), "main:"),
            ("42.rlpy", format!("{HEADER},\"ended\":\"normal\"}}\n"), "line 1: ended and packages"),
            ("42.rlpy", done("").replace("\"v\":1", "\"v\":2"), "format version 2"),
        ];
        for (name, text, want) in cases {
            let e = parse(name, text.as_bytes()).unwrap_err();
            assert!(e.starts_with(want) || e.contains(want), "{name} {text:?}: {e} (want {want})");
        }
        assert!(parse("42.rlpy", b"\xff\xfe").unwrap_err().starts_with("not UTF-8"));
    }

    #[test]
    fn a_directory_is_read_bounded_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("77");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("42.rlpy"), format!("{HEADER}}}\n+numpy\n")).unwrap();
        std::fs::write(dir.join("43.rlpy"), "garbage").unwrap();
        std::fs::write(dir.join("44.rlpy"), vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        std::fs::write(dir.join("45.rlpy.tmp"), "half written").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.join("46.rlpy")).unwrap();
        let me = nix_uid();
        let r = collect(&dir, me, None, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(r.source, "user");
        assert_eq!(r.processes.len(), 1);
        assert_eq!(r.processes[0].packages[0].name, "numpy");
        assert_eq!(r.rejected.len(), 2, "{:?}", r.rejected);
        assert!(r.rejected[0].starts_with("43.rlpy: line 1:"), "{:?}", r.rejected);
        assert!(r.rejected[1].starts_with("44.rlpy: larger than"), "{:?}", r.rejected);
        for i in 0..MAX_FILES + 3 {
            std::fs::write(dir.join(format!("{}.rlpy", 1000 + i)), format!("{HEADER}}}\n")).unwrap();
        }
        let r = collect(&dir, me, None, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(r.skipped, 6, "{MAX_FILES} files read of {}", MAX_FILES + 6);
        remove(&dir);
        assert!(!dir.exists());
        assert!(collect(&dir, me, None, Instant::now() + Duration::from_secs(5)).is_none());
    }

    fn nix_uid() -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    }
}
