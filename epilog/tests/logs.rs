//! The real `runledger-epilog --dry-run` reading a job's solver logs from a temp work directory,
//! as slurmd runs it (empty environment): which files, how much of them, as whom, and the facts
//! in the batch. Run as root the logs are read as `nobody`; otherwise as the current user (and
//! the checks that need another identity are skipped).

use runledger_record::{Batch, Fact, Item, JobEnd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_runledger-epilog");

const LAMMPS_OK: &str = "LAMMPS (29 Sep 2021 - Update 2)\n  using 1 OpenMP thread(s) per MPI task\n\
Created 4000 atoms\n  1 by 1 by 2 MPI processor grid\nStep Temp E_pair E_mol TotEng Press\n\
       0            3   -6.7733681            0   -2.2744931   -3.7033504\n\
    1000    1.6842865   -4.7947124            0   -2.2683449     5.669046\n\
Loop time of 1.2 on 2 procs for 1000 steps with 4000 atoms\n\n\
Performance: 360000.000 tau/day, 833.333 timesteps/s\n99.5% CPU use with 2 MPI tasks x 1 OpenMP threads\n\
Total wall time: 0:00:02\n";

const LAMMPS_LOST: &str = "LAMMPS (29 Sep 2021 - Update 2)\nCreated 4000 atoms\n\
ERROR: Lost atoms: original 4000 current 0 (src/thermo.cpp:439)\nLast command: run 1000\n";

fn euid() -> u32 {
    runledger_record::users::euid()
}

fn is_root() -> bool {
    euid() == 0
}

/// The identity the logs are read with.
fn reader() -> u32 {
    if is_root() {
        65534
    } else {
        euid()
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Job {
    dir: tempfile::TempDir,
    work: PathBuf,
    conf: PathBuf,
}

impl Job {
    /// A work directory anyone may read, and a config with `logs` in its `[logs]` section. The
    /// budgets are generous: a debug build under a loaded machine compiles rules slowly, and
    /// these tests are about which files and bytes, not about time.
    fn new(logs: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.path().join("runledger.toml");
        std::fs::write(
            &conf,
            format!(
                "[collector]\naddress = \"127.0.0.1:9\"\n[epilog]\nspool = \"{}\"\nlog = \"stderr\"\n\
                 budget_ms = 30000\n[logs]\ntime_budget_ms = 20000\n{logs}\n",
                dir.path().join("spool").display()
            ),
        )
        .unwrap();
        Job { dir, work, conf }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.work.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// Runs the epilog for job 42 (started 100 s ago, exit `exit`), with `extra` variables.
    fn run(&self, exit: &str, extra: &[(&str, &str)]) -> (Output, JobEnd) {
        let uid = reader().to_string();
        let start = (now() - 100).to_string();
        let mut cmd = Command::new(BIN);
        cmd.env_clear().arg("--dry-run").envs([
            ("RUNLEDGER_CONF", self.conf.to_str().unwrap()),
            ("SLURM_JOB_ID", "42"),
            ("SLURM_JOB_UID", uid.as_str()),
            ("SLURM_JOB_GID", uid.as_str()),
            ("SLURM_JOB_EXIT_CODE", exit),
            ("SLURM_CLUSTER_NAME", "testc"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_JOB_WORK_DIR", self.work.to_str().unwrap()),
            ("SLURM_JOB_START_TIME", start.as_str()),
        ]);
        cmd.envs(extra.iter().copied());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let batch = Batch::from_json(out.stdout.trim_ascii())
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out)));
        let Some(Item::JobEnd(j)) = batch.items.last().cloned() else { panic!("no JobEnd") };
        (out, j)
    }

    fn path(&self, name: &str) -> String {
        self.work.join(name).to_string_lossy().into_owned()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sources(j: &JobEnd) -> Vec<String> {
    let mut s: Vec<String> = j.facts.iter().map(|f| f.source.clone()).collect();
    s.sort();
    s.dedup();
    s
}

fn fact<'a>(j: &'a JobEnd, source: &str, key: &str) -> Option<&'a Fact> {
    j.facts.iter().find(|f| f.source == source && f.key == key)
}

fn job_value<'a>(j: &'a JobEnd, key: &str) -> &'a str {
    fact(j, "", key).map(|f| f.value.as_str()).unwrap_or_else(|| panic!("no job-level {key}: {:#?}", j.facts))
}

/// `files=` and `bytes=` of the epilog's `logs:` line.
fn logs_line(o: &Output) -> (usize, usize) {
    let e = stderr(o);
    let line = e.lines().find(|l| l.contains(" logs: files=")).unwrap_or_else(|| panic!("no logs line: {e}"));
    let num = |k: &str| -> usize {
        let at = line.find(k).unwrap() + k.len();
        line[at..].split(' ').next().unwrap().parse().unwrap()
    };
    (num("files="), num("bytes="))
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
}

#[test]
fn files_by_glob_and_mtime_with_per_file_and_job_level_facts() {
    let job = Job::new("");
    job.write("log.lammps", LAMMPS_OK);
    job.write("slurm-42.out", "starting\n");
    // Old: modified a day before the job started.
    let old = job.write("md.log", LAMMPS_LOST);
    set_mtime(&old, SystemTime::now() - Duration::from_secs(86400));
    // Not matching a glob; another job's output.
    job.write("notes.txt", LAMMPS_LOST);
    job.write("slurm-41.out", LAMMPS_LOST);
    let (o, j) = job.run("0", &[]);
    assert_eq!(sources(&j), vec![String::new(), job.path("log.lammps")], "{}", stderr(&o));
    let log = job.path("log.lammps");
    assert_eq!(fact(&j, &log, "program").unwrap().value, "LAMMPS");
    assert_eq!(fact(&j, &log, "outcome").unwrap().value, "success");
    assert_eq!(job_value(&j, "program"), "LAMMPS");
    assert_eq!(job_value(&j, "outcome"), "success");
    assert_eq!(job_value(&j, "version"), "29 Sep 2021 - Update 2");
    assert_eq!(job_value(&j, "mpi_ranks"), "2");
    assert_eq!(job_value(&j, "threads"), "1");
    assert_eq!(job_value(&j, "atoms"), "4000");
    assert_eq!(job_value(&j, "steps"), "1000");
    assert_eq!(job_value(&j, "wall_seconds"), "2");
    let perf = fact(&j, "", "performance").unwrap();
    assert_eq!((perf.value.as_str(), perf.unit.as_deref()), ("360000.000", Some("tau/day")));
    assert!(fact(&j, "", "failure_category").is_none() && fact(&j, "", "state_disagreement").is_none());
    // The stdout (sbatch's default name) was read too, and said nothing: no per-file facts.
    assert_eq!(logs_line(&o).0, 2, "{}", stderr(&o));
}

#[test]
fn failure_verdict_names_its_source_and_disagreement_with_the_state() {
    let job = Job::new("");
    job.write("log.lammps", LAMMPS_LOST);
    // COMPLETED (exit 0), yet the log says the run failed.
    let (_, j) = job.run("0", &[]);
    assert_eq!(job_value(&j, "outcome"), "failed");
    assert_eq!(job_value(&j, "failure_category"), "numerical_instability");
    assert!(job_value(&j, "error").starts_with("ERROR: Lost atoms"), "{:#?}", j.facts);
    assert_eq!(job_value(&j, "error_source"), job.path("log.lammps"));
    assert!(job_value(&j, "state_disagreement").contains("COMPLETED"), "{:#?}", j.facts);
    // FAILED (exit 1) but the log says success: also shown.
    job.write("log.lammps", LAMMPS_OK);
    let (_, j) = job.run("256", &[]);
    assert_eq!(job_value(&j, "outcome"), "success");
    assert_eq!(job_value(&j, "state_disagreement"), "state FAILED but the log says success");
    // Time limit in stderr (a custom pattern) beats the incomplete LAMMPS log.
    job.write("log.lammps", "LAMMPS (29 Sep 2021)\nCreated 4000 atoms\nStep Temp\n0 3.0\n");
    job.write(
        "err-42.txt",
        "slurmstepd: error: *** JOB 42 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n",
    );
    let (_, j) = job.run("15", &[("SLURM_JOB_STDERR", "err-%j.txt")]);
    assert_eq!(j.state.to_string(), "TIMEOUT");
    assert_eq!(job_value(&j, "outcome"), "failed");
    assert_eq!(job_value(&j, "failure_category"), "time_limit");
    assert_eq!(job_value(&j, "error_source"), job.path("err-42.txt"));
    assert_eq!(job_value(&j, "program"), "LAMMPS");
    assert!(fact(&j, "", "state_disagreement").is_none());
}

#[test]
fn count_and_byte_budgets_are_kept() {
    let job = Job::new("max_files = 3\nhead_bytes = 1024\ntail_bytes = 4096\njob_bytes = 16384\n");
    let body = format!("{LAMMPS_OK}{}", "x".repeat(100 * 1024));
    for i in 0..6 {
        job.write(&format!("run{i}.log"), &body);
    }
    let (o, _) = job.run("0", &[]);
    let (files, bytes) = logs_line(&o);
    assert_eq!(files, 3, "{}", stderr(&o));
    assert!(bytes <= 3 * 5120, "read {bytes} bytes: {}", stderr(&o));
    // Fewer bytes allowed than one window: the second file gets what is left, the third none.
    let job = Job::new("head_bytes = 1024\ntail_bytes = 8192\njob_bytes = 16000\n");
    for i in 0..6 {
        job.write(&format!("run{i}.log"), &body);
    }
    let (o, _) = job.run("0", &[]);
    let (files, bytes) = logs_line(&o);
    assert_eq!((files, bytes), (2, 16000), "{}", stderr(&o));
}

#[test]
fn ten_gib_sparse_log_costs_only_its_windows() {
    let job = Job::new("");
    let p = job.work.join("huge.log");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(10 << 30).unwrap(); // sparse: no blocks
    drop(f);
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::options().write(true).open(&p).unwrap();
    f.write_all(b"LAMMPS (29 Sep 2021 - Update 2)\n").unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"\nERROR: Lost atoms: original 4000 current 12 (src/thermo.cpp:439)\n").unwrap();
    drop(f);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (o, j) = job.run("256", &[]);
    let (files, bytes) = logs_line(&o);
    assert_eq!(files, 1);
    assert!(bytes <= 64 * 1024 + 1024 * 1024, "read {bytes} bytes");
    assert_eq!(job_value(&j, "failure_category"), "numerical_instability", "{}", stderr(&o));
    assert_eq!(job_value(&j, "error_source"), job.path("huge.log"));
}

#[test]
fn symlinks_fifos_devices_and_unreadable_files_are_not_read() {
    let job = Job::new("");
    std::os::unix::fs::symlink("/etc/shadow", job.work.join("log.lammps")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", job.work.join("passwd.log")).unwrap();
    nix::unistd::mkfifo(&job.work.join("md.log"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    std::fs::create_dir(job.work.join("dir.log")).unwrap();
    if is_root() {
        let secret = job.write("secret.log", LAMMPS_LOST);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The job's stdout named as a symlink to a root-only file, and as a FIFO.
    let t = std::time::Instant::now();
    let (o, j) = job.run("0", &[("SLURM_JOB_STDOUT", "log.lammps"), ("SLURM_JOB_STDERR", "md.log")]);
    assert!(t.elapsed() < Duration::from_secs(4), "took {:?}: {}", t.elapsed(), stderr(&o));
    assert!(j.facts.is_empty(), "{:#?}", j.facts);
    assert!(!stderr(&o).contains("root:"), "{}", stderr(&o));
    assert_eq!(j.state.to_string(), "COMPLETED");
}

#[test]
fn unlistable_work_dir_is_not_listed() {
    if !is_root() {
        eprintln!("skipped: needs root to read as another user");
        return;
    }
    let job = Job::new("");
    job.write("log.lammps", LAMMPS_LOST);
    // The user may not read the directory: root never lists it on the user's behalf.
    std::fs::set_permissions(&job.work, std::fs::Permissions::from_mode(0o711)).unwrap();
    let (_, j) = job.run("0", &[]);
    assert!(j.facts.is_empty(), "{:#?}", j.facts);
    // But a file named by the job (its stdout) is still read: the user may open it by name.
    let (_, j) = job.run("0", &[("SLURM_JOB_STDOUT", "log.lammps")]);
    assert_eq!(job_value(&j, "failure_category"), "numerical_instability");
}

#[test]
fn bad_rules_file_is_reported_and_the_builtins_used() {
    let job = Job::new("");
    let rules = job.dir.path().join("parsers.toml");
    std::fs::write(&rules, "[[program]]\nname = \"Mine\"\ndetect = '(unclosed'\n").unwrap();
    let conf = std::fs::read_to_string(&job.conf).unwrap();
    std::fs::write(&job.conf, format!("{conf}rules = \"{}\"\n", rules.display())).unwrap();
    job.write("log.lammps", LAMMPS_LOST);
    let (o, j) = job.run("0", &[]);
    let e = stderr(&o);
    assert!(e.contains("parsers.toml:3") && e.contains("using the built-in rules"), "{e}");
    assert_eq!(job_value(&j, "failure_category"), "numerical_instability");
    // A site file that works adds its program.
    std::fs::write(
        &rules,
        "[[program]]\nname = \"Mine\"\ndetect = '^Mine v(?P<version>\\S+)'\nsuccess = '^Mine done'\n",
    )
    .unwrap();
    job.write("mine.out", "Mine v3.1\nMine done\n");
    let (o, j) = job.run("0", &[]);
    assert!(!stderr(&o).contains("ERROR") && !stderr(&o).contains("error"), "{}", stderr(&o));
    assert_eq!(fact(&j, &job.path("mine.out"), "program").unwrap().value, "Mine");
}

#[test]
fn disabled_or_no_logs_means_no_facts() {
    let job = Job::new("enabled = false");
    job.write("log.lammps", LAMMPS_OK);
    let (o, j) = job.run("0", &[]);
    assert!(j.facts.is_empty());
    assert!(!stderr(&o).contains("logs:"));
    // A plain job: its stdout says nothing a rule knows, so nothing is compiled.
    let job = Job::new("");
    job.write("slurm-42.out", "hello\n");
    let (o, j) = job.run("0", &[]);
    assert!(stderr(&o).contains("rules=none"), "{}", stderr(&o));
    let keys: Vec<&str> = j.facts.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, vec!["outcome"], "{:#?}", j.facts);
    assert_eq!(job_value(&j, "outcome"), "unknown");
}
