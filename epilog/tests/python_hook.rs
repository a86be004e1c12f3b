//! The Python hook (packaging/python) run by a real Debian python3, read back by the epilog's
//! reader: what the hook writes is exactly what `runledger_epilog::python` accepts, in every way
//! a process can end, and the hook is silent where it must be.
//!
//! The hook is installed into a venv's site-packages, as the node package installs it into
//! /usr/lib/python3/dist-packages (a .pth there is processed the same way). Skipped, saying so,
//! where /usr/bin/python3 or its venv module is missing.

use runledger_epilog::python::{collect, parse};
use runledger_record::python::PythonProcess;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

struct Setup {
    _tmp: tempfile::TempDir,
    python: PathBuf,
    job: PathBuf,
    lib: PathBuf,
}

fn setup() -> Option<Setup> {
    if !Path::new(PYTHON).exists() {
        eprintln!("SKIPPED: no {PYTHON}");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    let ok = Command::new(PYTHON).args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    if !ok.success() {
        eprintln!("SKIPPED: {PYTHON} -m venv failed (python3-venv missing?)");
        return None;
    }
    let python = venv.join("bin/python");
    let out = Command::new(&python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .unwrap();
    let site = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/python");
    for f in ["_runledger_pyhook.py", "runledger-python.pth"] {
        std::fs::copy(src.join(f), site.join(f)).unwrap();
    }
    // A package of the job's own, with a version, and one without.
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(lib.join("rlpkg")).unwrap();
    std::fs::write(lib.join("rlpkg/__init__.py"), "__version__ = '2.5.1'\nfrom . import sub\n").unwrap();
    std::fs::write(lib.join("rlpkg/sub.py"), "X = 1\n").unwrap();
    std::fs::write(lib.join("plain.py"), "Y = 2\n").unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir(&job).unwrap();
    Some(Setup { _tmp: tmp, python, job, lib })
}

impl Setup {
    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = Command::new(&self.python);
        c.args(args).env("PYTHONPATH", &self.lib).env("RUNLEDGER_PYTHON_DIR", &self.job);
        for v in ["SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "RUNLEDGER_PYTHON"] {
            c.env_remove(v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn records(&self) -> Vec<PythonProcess> {
        let me = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
        let r = collect(&self.job, me, None, Instant::now() + Duration::from_secs(10));
        let r = r.map(|r| {
            assert!(r.rejected.is_empty(), "{:?}", r.rejected);
            r.processes
        });
        for f in std::fs::read_dir(&self.job).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        r.unwrap_or_default()
    }
}

fn names(p: &PythonProcess) -> Vec<String> {
    p.packages.iter().map(|p| p.full_name()).collect()
}

#[test]
fn normal_exit_records_packages_with_versions() {
    let Some(s) = setup() else { return };
    let script = s.lib.join("../main.py");
    std::fs::write(&script, "import rlpkg, plain, json\nprint('out')\n").unwrap();
    let out = s.run(&[("SLURM_PROCID", "0")], &[script.to_str().unwrap(), "arg"]);
    assert!(out.status.success());
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b""[..]), "the hook prints nothing");
    let recs = s.records();
    let [p] = &recs[..] else { panic!("{recs:?}") };
    assert_eq!(p.ended, "normal");
    assert_eq!(names(p), ["rlpkg/2.5.1", "plain"], "stdlib (json) left out, submodules under their package");
    assert!(p.main.ends_with("main.py"), "{}", p.main);
    assert!(p.prefix.ends_with("/venv") && p.base_prefix == "/usr", "{p:?}");
    assert!(p.interpreter.ends_with("/venv/bin/python"));
}

#[test]
fn an_exception_names_its_type_and_the_program_still_fails_the_same() {
    let Some(s) = setup() else { return };
    let out = s.run(&[], &["-c", "import rlpkg\nraise KeyError('x')"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with("KeyError: 'x'\n"), "the traceback is Python's own");
    let recs = s.records();
    assert_eq!((recs[0].ended.as_str(), recs[0].main.as_str()), ("exception:KeyError", "-c"));
    let out = s.run(&[], &["-m", "rlpkg.sub"]);
    assert!(out.status.success());
    assert_eq!(s.records()[0].main, "-m rlpkg.sub");
}

#[test]
fn a_killed_process_leaves_what_it_had_imported() {
    let Some(s) = setup() else { return };
    let out = s.run(&[], &["-c", "import rlpkg, os, signal\ntry:\n import missing_pkg\nexcept ImportError:\n pass\nimport plain\nos.kill(os.getpid(), signal.SIGKILL)"]);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9));
    let recs = s.records();
    let [p] = &recs[..] else { panic!("{recs:?}") };
    assert_eq!(p.ended, "unfinished");
    assert_eq!(names(p), ["rlpkg", "plain"], "the failed import is not listed; versions are read at exit only");
}

#[test]
fn other_ranks_opted_out_and_outside_jobs_stay_silent() {
    let Some(s) = setup() else { return };
    for env in [
        &[("SLURM_PROCID", "1")][..],
        &[("SLURM_PROCID", "0"), ("OMPI_COMM_WORLD_RANK", "3")][..],
        &[("PMI_RANK", "2")][..],
        &[("RUNLEDGER_PYTHON", "0")][..],
        &[("RUNLEDGER_PYTHON_DIR", "")][..],
    ] {
        let out = s.run(env, &["-c", "import rlpkg, sys; print(sys.meta_path[0].__module__)"]);
        assert!(out.status.success());
        assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "_runledger_pyhook", "{env:?}: hook not loaded");
        assert!(s.records().is_empty(), "{env:?}");
    }
    // A directory that is gone (the job ended) costs nothing and breaks nothing.
    let out = s.run(&[("RUNLEDGER_PYTHON_DIR", "/nonexistent/dir")], &["-c", "import rlpkg; print(rlpkg.__version__)"]);
    assert_eq!((out.status.success(), out.stdout.as_slice(), out.stderr.as_slice()), (true, &b"2.5.1\n"[..], &b""[..]));
}

#[test]
fn a_forked_child_does_not_rewrite_the_parents_record() {
    let Some(s) = setup() else { return };
    let code =
        "import os, rlpkg\npid = os.fork()\nif pid == 0:\n import plain\n raise SystemExit(0)\nos.waitpid(pid, 0)";
    assert!(s.run(&[], &["-c", code]).status.success());
    let recs = s.records();
    let [p] = &recs[..] else { panic!("{recs:?}") };
    assert_eq!((p.ended.as_str(), names(p)), ("normal", vec!["rlpkg/2.5.1".to_string()]));
    assert!(parse("1.rlpy", b"{}").is_err());
}
