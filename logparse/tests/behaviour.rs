//! How the parser judges logs that mislead a naive "grep ERROR": environment noise in
//! successful runs, failures after the main loop, coupled runs, truncation; how a site's rules
//! file adds a code or fails; and the generic Slurm / MPI / OS markers.

use std::io::Write;

use logparse::{analyze, combine, Analysis, Category, Outcome, RuleError, Rules, Window};

fn run(log: &str) -> Analysis {
    analyze(&Rules::builtin(), &Window::whole(log.as_bytes()))
}

const LAMMPS_OK: &str = "LAMMPS (2 Aug 2023)
  using 2 OpenMP thread(s) per MPI task
  2 by 2 by 2 MPI processor grid
Created 32000 atoms
run 1000
Step Temp E_pair TotEng
       0    1.44   -6.77   -4.61
    1000   0.703   -5.67   -4.62
Loop time of 12.5 on 8 procs for 1000 steps with 32000 atoms

Performance: 34560.000 tau/day, 80.000 timesteps/s, 2.560 Matom-step/s
99.1% CPU use with 8 MPI tasks x 2 OpenMP threads
Total wall time: 0:00:13
";

#[test]
fn error_lines_from_the_environment_do_not_fail_a_successful_run() {
    let log = format!(
        "ERROR: Unable to locate a modulefile for 'lammps/2020'\n\
         /etc/profile.d/site.sh: line 3: /opt/old/env.sh: No such file or directory\n\
         Lmod has detected the following error: ERROR\n{LAMMPS_OK}"
    );
    let a = run(&log);
    assert_eq!(a.outcome, Outcome::Success, "{a:#?}");
    assert_eq!(a.category, None);
    assert_eq!(a.evidence, None);
    assert_eq!(a.value("missing_file"), None, "facts of a marker that does not count are not reported");
    assert_eq!(a.value("steps"), Some("1000"));
    assert_eq!(a.value("mpi_ranks"), Some("8"));
    assert_eq!(a.value("threads"), Some("2"));
    assert_eq!(a.fact("performance").and_then(|f| f.unit.as_deref()), Some("tau/day"));
    assert_eq!(a.value("wall_seconds"), Some("13"));
}

#[test]
fn a_nan_row_the_run_recovers_from_is_still_a_success() {
    let log = LAMMPS_OK.replace("    1000   0.703", "     500   nan   nan   nan\n    1000   0.703");
    let a = run(&log);
    assert_eq!(a.outcome, Outcome::Success, "{a:#?}");
}

#[test]
fn a_run_that_finishes_its_loop_and_then_fails_is_failed() {
    // The loop ran to the end and printed its performance, then the next command failed.
    let log = LAMMPS_OK.replace(
        "Total wall time: 0:00:13\n",
        "write_restart restart.equil\nERROR: Cannot open restart file restart.equil: Disk quota exceeded (src/write_restart.cpp:80)\nLast command: write_restart restart.equil\n",
    );
    let a = run(&log);
    assert_eq!(a.outcome, Outcome::Failed, "{a:#?}");
    assert_eq!(a.category, Some(Category::FileNotFound));
    assert_eq!(
        a.evidence.as_deref(),
        Some("ERROR: Cannot open restart file restart.equil: Disk quota exceeded (src/write_restart.cpp:80)")
    );
    assert_eq!(a.value("steps"), Some("1000"), "what the loop did is still reported");
    assert_eq!(a.value("last_command"), Some("write_restart restart.equil"));

    // QE: SCF converged, then the next routine failed.
    let qe = "     Program PWSCF v.7.2 starts on  6Dec2024 at 16:56:58\n\
              \x20    convergence has been achieved in  14 iterations\n\
              \x20%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\n\
              \x20    Error in routine cdiaghg (159):\n\
              \x20    S matrix not positive definite\n\
              \x20%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\n\
              \x20    stopping ...\n";
    let a = run(qe);
    assert_eq!(a.program.as_deref(), Some("Quantum ESPRESSO PWSCF"));
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.category, Some(Category::NumericalInstability));
    assert_eq!(a.evidence.as_deref(), Some("S matrix not positive definite"));
    assert_eq!(a.value("error_routine"), Some("cdiaghg"));
    assert_eq!(a.value("iterations"), Some("14"));
}

#[test]
fn two_codes_in_one_file_are_both_reported() {
    // A coupled CFD-DEM job: OpenFOAM and LAMMPS write to the same output.
    let log = format!(
        "/*---------------------------------------------------------------------------*\\\n\
         |  \\\\    /   O peration     | Version:  v2206                                 |\n\
         Build  : _abc-20220610 OPENFOAM=2206\n\
         Exec   : cfdemSolverPiso -parallel\n\
         nProcs : 8\n\
         {LAMMPS_OK}\
         Time = 0.01\n\
         ExecutionTime = 10.5 s  ClockTime = 11 s\n\
         End\n"
    );
    let a = run(&log);
    assert_eq!(a.programs_seen, vec!["OpenFOAM cfdemSolverPiso".to_string(), "LAMMPS".to_string()]);
    assert_eq!(a.program.as_deref(), Some("OpenFOAM cfdemSolverPiso"));
    assert_eq!(a.outcome, Outcome::Success, "both codes printed their success marker");
    assert_eq!(a.value("version"), Some("v2206"));
    assert_eq!(a.value("lammps.version"), Some("2 Aug 2023"), "the second code's facts carry its name");
    assert_eq!(a.value("lammps.steps"), Some("1000"));
    assert_eq!(a.value("mpi_ranks"), Some("8"));
    let facts = a.to_facts("slurm-1.out");
    assert!(facts.iter().any(|f| f.key == "programs" && f.value == "OpenFOAM cfdemSolverPiso, LAMMPS"));

    // If one of them stops without its success marker, the run is incomplete.
    let a = run(&log.replace("Total wall time: 0:00:13\n", ""));
    assert_eq!(a.outcome, Outcome::Incomplete);
    assert_eq!(a.category, Some(Category::Truncated));
}

#[test]
fn a_truncated_log_is_incomplete() {
    let cut = LAMMPS_OK.split("Loop time").next().unwrap_or_default();
    let a = run(cut);
    assert_eq!(a.program.as_deref(), Some("LAMMPS"));
    assert_eq!(a.outcome, Outcome::Incomplete);
    assert_eq!(a.category, Some(Category::Truncated));
    assert_eq!(a.evidence, None);
    // The facts seen so far are still reported.
    assert_eq!(a.value("atoms"), Some("32000"));
    assert_eq!(a.value("final_step"), Some("1000"), "the last thermo row");

    // Nothing recognised and nothing wrong: unknown.
    let a = run("hello\nworld\n");
    assert_eq!(a.outcome, Outcome::Unknown);
    assert_eq!(a.program, None);
}

#[test]
fn success_marker_in_the_tail_window_counts() {
    let mut big = String::from("LAMMPS (2 Aug 2023)\nrun 100000\n");
    for i in 0..20000 {
        big.push_str(&format!("{:8} 1.0 -6.7 -4.6\n", i * 10));
    }
    big.push_str("Loop time of 100 on 1 procs for 100000 steps with 4000 atoms\nTotal wall time: 0:01:40\n");
    let b = big.as_bytes();
    let w = Window { head: &b[..4096], tail: &b[b.len() - 4096..], truncated_between: true };
    let a = analyze(&Rules::builtin(), &w);
    assert_eq!(a.outcome, Outcome::Success);
    assert_eq!(a.value("steps"), Some("100000"));
    assert_eq!(a.value("wall_seconds"), Some("100"));
}

#[test]
fn ranks_printing_the_same_error_give_one_clean_line() {
    let log = "Exec   : simpleFoam -parallel\nnProcs : 2\n\
               [0] \n[1] \n[0] --> FOAM FATAL ERROR: (openfoam-2206)\n[0] Cannot find file \"points\" in directory \"polyMesh\"\n\
               [1] --> FOAM FATAL ERROR: (openfoam-2206)\n[1] Cannot find file \"points\" in directory \"polyMesh\"\n\
               [0] \n[0]     From Foam::polyMesh::polyMesh(const Foam::IOobject&)\n\
               --------------------------------------------------------------------------\n\
               MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\nwith errorcode 1.\n";
    let a = run(log);
    assert_eq!(a.program.as_deref(), Some("OpenFOAM simpleFoam"));
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.category, Some(Category::FileNotFound), "the cause, not MPI_ABORT");
    assert_eq!(a.evidence.as_deref(), Some("Cannot find file \"points\" in directory \"polyMesh\""));
    assert_eq!(a.value("mpi_abort_rank"), Some("0"));
}

#[test]
fn slurm_lines_with_the_node_after_slurmstepd() {
    // What Slurm 22.05 prints into a job's stderr when the time limit is reached.
    let a = run("slurmstepd-vm: error: *** JOB 47 ON vm CANCELLED AT 2026-11-22T03:10:58 DUE TO TIME LIMIT ***\n");
    assert_eq!(a.category, Some(Category::TimeLimit));
    assert_eq!(a.value("scheduler"), Some("Slurm"));
}

#[test]
fn generic_markers() {
    let cases: &[(&str, Category, &str)] = &[
        (
            "slurmstepd: error: *** STEP 123.0 ON n1 CANCELLED AT 2024-01-01T00:00:00 DUE TO TIME LIMIT ***",
            Category::TimeLimit,
            "slurmstepd: error: *** STEP 123.0 ON n1 CANCELLED AT 2024-01-01T00:00:00 DUE TO TIME LIMIT ***",
        ),
        (
            "slurmstepd: error: *** JOB 77 ON n2 CANCELLED AT 2024-01-01T00:00:00 ***",
            Category::Cancelled,
            "slurmstepd: error: *** JOB 77 ON n2 CANCELLED AT 2024-01-01T00:00:00 ***",
        ),
        ("srun: error: Node failure on n3", Category::NodeFailure, "srun: error: Node failure on n3"),
        (
            "slurmstepd: error: Detected 1 oom_kill event in StepId=55.0. Some of the step tasks have been OOM Killed.",
            Category::OutOfMemory,
            "slurmstepd: error: Detected 1 oom_kill event in StepId=55.0. Some of the step tasks have been OOM Killed.",
        ),
        (
            "===================================================================================\n\
             =   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n\
             =   PID 1234 RUNNING AT n1\n\
             =   EXIT CODE: 139\n",
            Category::Segfault,
            "=   EXIT CODE: 139",
        ),
        ("forrtl: severe (174): SIGSEGV, segmentation fault occurred", Category::Segfault, "forrtl: severe (174): SIGSEGV, segmentation fault occurred"),
        ("/bin/bash: line 1: 4321 Segmentation fault      ./a.out", Category::Segfault, "/bin/bash: line 1: 4321 Segmentation fault      ./a.out"),
        ("Floating point exception (core dumped)", Category::NumericalInstability, "Floating point exception (core dumped)"),
        ("   100   1.5   nan   -nan   2.0", Category::NumericalInstability, "100   1.5   nan   -nan   2.0"),
        ("total energy = NaN", Category::NumericalInstability, "total energy = NaN"),
        ("write error: No space left on device", Category::IoError, "write error: No space left on device"),
        ("cp: cannot stat 'in.dat': No such file or directory", Category::FileNotFound, "cp: cannot stat 'in.dat': No such file or directory"),
        (
            "./a.out: error while loading shared libraries: libmpi.so.40: cannot open shared object file: No such file or directory",
            Category::EnvironmentError,
            "./a.out: error while loading shared libraries: libmpi.so.40: cannot open shared object file: No such file or directory",
        ),
        (
            "MPI_ABORT was invoked on rank 3 in communicator MPI_COMM_WORLD\nwith errorcode 42.",
            Category::MpiAbort,
            "MPI_ABORT was invoked on rank 3 in communicator MPI_COMM_WORLD",
        ),
        ("srun: error: n1: task 0: Exited with exit code 2", Category::Unknown, "srun: error: n1: task 0: Exited with exit code 2"),
    ];
    for (log, cat, evidence) in cases {
        let a = run(log);
        assert_eq!(a.outcome, Outcome::Failed, "{log}");
        assert_eq!(a.category, Some(*cat), "{log}");
        assert_eq!(a.evidence.as_deref(), Some(*evidence), "{log}");
    }
    let a = run("cp: cannot stat 'in.dat': No such file or directory\n");
    assert_eq!(a.value("missing_file"), Some("in.dat"));
    let a = run("MPI_ABORT was invoked on rank 3 in communicator MPI_COMM_WORLD\nwith errorcode 42.\n");
    assert_eq!(a.value("mpi_abort_errorcode"), Some("42"));
    // Scheduler kill beats what the dying processes print after it.
    let a = run("slurmstepd: error: *** JOB 9 ON n1 CANCELLED AT 2024-01-01T00:00:00 DUE TO TIME LIMIT ***\n\
                 srun: error: n1: task 0: Killed\nSegmentation fault\n");
    assert_eq!(a.category, Some(Category::TimeLimit));
    assert_eq!(a.value("job_id"), Some("9"));
}

#[test]
fn job_verdict_from_stdout_and_stderr() {
    let out = run("LAMMPS (2 Aug 2023)\nrun 1000\n");
    let err = run("slurmstepd: error: *** JOB 9 ON n1 CANCELLED AT 2024-01-01T00:00:00 DUE TO TIME LIMIT ***\n");
    assert_eq!(out.outcome, Outcome::Incomplete);
    let v = combine(&[&out, &err]);
    assert_eq!((v.outcome, v.category), (Outcome::Failed, Some(Category::TimeLimit)));
    assert_eq!(v.program.as_deref(), Some("LAMMPS"));
    let ok = run(LAMMPS_OK);
    let v = combine(&[&ok, &run("")]);
    assert_eq!((v.outcome, v.category), (Outcome::Success, None));
}

#[test]
fn carriage_returns_binary_and_long_lines() {
    let mut log: Vec<u8> = Vec::new();
    log.extend_from_slice(b"LAMMPS (2 Aug 2023)\r\n");
    log.extend_from_slice(b"Reading data 10%\r20%\r30%\r100%\r\n");
    log.extend_from_slice(b"\xff\xfe\x00\x01 binary junk \xc3\x28 caf\xe9\n");
    log.extend_from_slice(&vec![b'x'; 100_000]);
    log.push(b'\n');
    log.extend_from_slice(b"ERROR: Illegal fix command: caf\xe9 \x1b[31mred\x1b[0m (src/fix.cpp:1)\n");
    log.extend_from_slice(b"Last command: fix 1 all nve\n");
    let a = analyze(&Rules::builtin(), &Window::whole(&log));
    assert_eq!(a.program.as_deref(), Some("LAMMPS"));
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.category, Some(Category::InputError));
    assert_eq!(a.evidence.as_deref(), Some("ERROR: Illegal fix command: caf\u{fffd}  [31mred [0m (src/fix.cpp:1)"));
    assert_eq!(a.stats.cut_lines, 1);
    assert_eq!(a.value("last_command"), Some("fix 1 all nve"));
    // The cut long line is not joined to the next one: the ERROR line still starts a line.
    let mut log2 = vec![b'y'; 10_000];
    log2.extend_from_slice(b" Segmentation fault\n");
    let a = analyze(&Rules::builtin(), &Window::whole(&log2));
    assert_eq!(a.outcome, Outcome::Unknown, "what lies beyond 4 KiB of one line is dropped");
}

const AVBP_RULES: &str = r#"
# A site's own code, no recompiling.
[[program]]
name = "AVBP"
label = "AVBP {_flavour}"
detect = '^\s*\*+ (?P<_flavour>AVBP\S*) V(?P<version>\d+\.\d+(?:\.\d+)?) \*+'
success = '^\s*---> AVBP finished normally'

[[program.failure]]
pattern = '^\s*(?:\[\d+\] )?Error in (?P<error_routine>\w+): (?P<evidence>.*)'
category = "unknown"
when = [
  { match = '(?i:negative (?:density|pressure|temperature))', category = "numerical_instability" },
  { match = '(?i:cannot open)', category = "file_not_found" },
]

[[program.field]]
pattern = '^\s*Number of MPI processes\s*:\s*(?P<mpi_ranks>\d+)'

[[program.field]]
pattern = '^\s*Number of nodes\s*:\s*(?P<mesh_nodes>\d+)\s*$'

[[program.field]]
pattern = '^\s*---> Iteration\s+(?P<steps>\d+)\s+dt\s*=\s*(?P<dt>\S+)'
pick = "last"
units = { dt = "s" }

[[program.field]]
pattern = '^\s*---> Iteration\s+'
count = "iteration_lines"

[[program.field]]
pattern = '^\s*Total elapsed time\s*:\s*(?P<wall_seconds>\S+) s'
units = { wall_seconds = "s" }
convert = { wall_seconds = "number" }
"#;

const AVBP_LOG: &str = "\
 ******************** AVBP_V7 V7.12.1 ********************
  Number of MPI processes : 256
  Number of nodes         : 1284567
 ---> Iteration      1 dt = 1.2e-08
 ---> Iteration      2 dt = 1.3e-08
 ---> Iteration      3 dt = 1.1e-08
 ---> AVBP finished normally
 Total elapsed time : 1234.5 s
";

fn site_file(text: &str) -> tempfile_path::TempPath {
    tempfile_path::write(text)
}

/// A tiny temporary-file helper (no extra dependency).
mod tempfile_path {
    use super::*;
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    pub fn write(text: &str) -> TempPath {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("logparse-site-{}-{n}.toml", std::process::id()));
        let mut f = std::fs::File::create(&p).expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        TempPath(p)
    }
}

#[test]
fn a_site_rule_adds_a_code_without_recompiling() {
    let path = site_file(AVBP_RULES);
    let rules = Rules::load_site(&path.0).expect("site rules");
    let a = analyze(&rules, &Window::whole(AVBP_LOG.as_bytes()));
    assert_eq!(a.program.as_deref(), Some("AVBP AVBP_V7"));
    assert_eq!(a.outcome, Outcome::Success);
    assert_eq!(a.value("version"), Some("7.12.1"));
    assert_eq!(a.value("mpi_ranks"), Some("256"));
    assert_eq!(a.value("mesh_nodes"), Some("1284567"));
    assert_eq!(a.value("steps"), Some("3"));
    assert_eq!(a.fact("dt").map(|f| (f.value.as_str(), f.unit.as_deref())), Some(("1.1e-08", Some("s"))));
    assert_eq!(a.value("iteration_lines"), Some("3"));
    assert_eq!(a.value("wall_seconds"), Some("1234.5"));

    let failed = AVBP_LOG
        .replace(" ---> AVBP finished normally\n", "[12] Error in temperature: negative temperature in cell 77\n");
    let a = analyze(&rules, &Window::whole(failed.as_bytes()));
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.category, Some(Category::NumericalInstability));
    assert_eq!(a.evidence.as_deref(), Some("negative temperature in cell 77"));
    assert_eq!(a.value("error_routine"), Some("temperature"));

    // The built-ins are still there.
    assert_eq!(analyze(&rules, &Window::whole(LAMMPS_OK.as_bytes())).outcome, Outcome::Success);
    // Without the site file, AVBP is not known.
    assert_eq!(run(AVBP_LOG).program, None);
}

#[test]
fn a_site_rule_replaces_or_removes_a_builtin() {
    let site = Rules::from_toml(
        r#"
[[program]]
name = "LAMMPS"
detect = '^LAMMPS \((?P<version>[^)]+)\)'
success = '^Loop time of '

[[program]]
name = "WRF"
enabled = false

[generic]
[[generic.failure]]
pattern = 'QUOTA WARNING'
category = "io_error"
"#,
        "site.toml",
    )
    .expect("site rules");
    let rules = Rules::builtin().with_site(site);
    let names = rules.program_names();
    assert!(!names.contains(&"WRF"));
    assert!(names.contains(&"GROMACS"));
    // The site's LAMMPS counts the loop's end as success and extracts nothing else.
    let cut = LAMMPS_OK.replace("Total wall time: 0:00:13\n", "");
    let a = analyze(&rules, &Window::whole(cut.as_bytes()));
    assert_eq!(a.outcome, Outcome::Success);
    assert_eq!(a.value("steps"), None);
    assert_eq!(a.value("version"), Some("2 Aug 2023"));
    // Site generic markers are added to the built-in ones.
    let a = analyze(&rules, &Window::whole(b"QUOTA WARNING on /scratch\n"));
    assert_eq!(a.category, Some(Category::IoError));
    let a = analyze(&rules, &Window::whole(b"Segmentation fault\n"));
    assert_eq!(a.category, Some(Category::Segfault));
}

fn err(text: &str) -> RuleError {
    Rules::from_toml(text, "/etc/runledger/parsers.toml").expect_err("must be rejected")
}

#[test]
fn a_bad_rules_file_names_the_line_and_the_rule() {
    // A bad regex in AVBP's failure rule.
    let bad = AVBP_RULES.replace(r"(?P<evidence>.*)'", r"(?P<evidence>.*'");
    assert_ne!(bad, AVBP_RULES);
    let e = Rules::from_toml(&bad, "/etc/runledger/parsers.toml").expect_err("must be rejected");
    let line = bad.lines().position(|l| l.contains(r"(?P<evidence>.*'")).map(|i| i + 1);
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.rule.as_deref(), Some("program \"AVBP\" failure #1"), "{e}");
    let shown = e.to_string();
    let prefix = format!("/etc/runledger/parsers.toml:{}: program \"AVBP\" failure #1: pattern: ", line.unwrap_or(0));
    assert!(shown.starts_with(&prefix), "{shown}");

    // Unknown category.
    let e = err(
        "[[program]]\nname = \"X\"\ndetect = 'X v1'\n[[program.failure]]\npattern = 'boom'\ncategory = \"kaboom\"\n",
    );
    assert_eq!((e.line, e.rule.as_deref()), (Some(6), Some("program \"X\" failure #1")), "{e}");
    assert!(e.message.contains("kaboom") && e.message.contains("numerical_instability"), "{e}");

    // TOML syntax error inside the third field of a program.
    let e = err("[[program]]\nname = \"Y\"\ndetect = 'Y'\n[[program.field]]\npattern = '(?P<a>a)'\n[[program.field]]\npattern = '(?P<b>b)'\n[[program.field]]\npattern = 'unterminated\n");
    assert_eq!((e.line, e.rule.as_deref()), (Some(9), Some("program \"Y\" field #3")), "{e}");

    // A misspelt key.
    let e = err("[[program]]\nname = \"Z\"\ndetect = 'Z'\nsucess = 'done'\n");
    assert_eq!((e.line, e.rule.as_deref()), (Some(4), Some("program \"Z\"")), "{e}");
    assert!(e.message.contains("sucess"), "{e}");

    // A group name that is not a usable fact key, a template naming a missing group.
    let e = err("[[program]]\nname = \"W\"\ndetect = 'W'\n[[program.field]]\npattern = '(?P<Bad>x)'\n");
    assert_eq!(e.rule.as_deref(), Some("program \"W\" field #1"), "{e}");
    let e = err("[[program]]\nname = \"W\"\ndetect = 'W'\n[[program.field]]\npattern = '(?P<_a>x)'\nset = { grid = \"{_b}\" }\n");
    assert_eq!((e.line, e.rule.as_deref()), (Some(6), Some("program \"W\" field #1")), "{e}");
    // An unbounded multi-line pattern, a missing detect, a generic rule.
    let e = err("[[program]]\nname = \"V\"\ndetect = '(?:.*\\n)*V'\n");
    assert_eq!((e.line, e.rule.as_deref()), (Some(3), Some("program \"V\"")), "{e}");
    let e = err("[[program]]\nname = \"U\"\n");
    assert!(e.message.contains("detect"), "{e}");
    let e = err("[generic]\n[[generic.failure]]\npattern = 'a'\ncategory = \"unknown\"\n[[generic.failure]]\npattern = '['\ncategory = \"unknown\"\n");
    assert_eq!((e.line, e.rule.as_deref()), (Some(6), Some("generic failure #2")), "{e}");

    // load_site: the error names the file; a missing file means built-ins only.
    let path = site_file("[[program]]\nname = 'Q'\ndetect = '('\n");
    let e = Rules::load_site(&path.0).expect_err("bad file");
    assert!(e.to_string().starts_with(&format!("{}:3: program \"Q\": detect: ", path.0.display())), "{e}");
    let missing = std::env::temp_dir().join("logparse-no-such-site-file.toml");
    assert!(Rules::load_site(&missing).is_ok());
}

#[test]
fn to_facts_carries_the_verdict() {
    let a = run(&LAMMPS_OK.replace(
        "Total wall time: 0:00:13\n",
        "ERROR: Lost atoms: original 32000 current 31999 (src/thermo.cpp:488)\n",
    ));
    let facts = a.to_facts("/scratch/u/run/log.lammps");
    let get = |k: &str| facts.iter().find(|f| f.key == k).map(|f| f.value.as_str());
    assert_eq!(get("program"), Some("LAMMPS"));
    assert_eq!(get("outcome"), Some("failed"));
    assert_eq!(get("failure_category"), Some("numerical_instability"));
    assert_eq!(get("error"), Some("ERROR: Lost atoms: original 32000 current 31999 (src/thermo.cpp:488)"));
    assert!(facts.iter().all(|f| f.source == "/scratch/u/run/log.lammps"));
    // Categories serialise with their snake_case names.
    assert_eq!(serde_json::to_string(&Category::OutOfMemory).ok().as_deref(), Some("\"out_of_memory\""));
    assert_eq!("node_failure".parse::<Category>(), Ok(Category::NodeFailure));
}

#[test]
fn builtin_codes_without_corpus_files() {
    // Short snippets in each code's real format, for the codes the corpus does not cover.
    let gromacs = "                      :-) GROMACS - gmx mdrun, 2023.1 (-:\n\
                   Using 4 MPI threads\nUsing 2 OpenMP threads per tMPI thread\n\
                   Started mdrun on rank 0 Mon Jan  1 10:00:00 2024\n\
                   -------------------------------------------------------\n\
                   Program:     gmx mdrun, version 2023.1\n\
                   Source file: src/gromacs/mdlib/sim_util.cpp (line 652)\n\n\
                   Fatal error:\n\
                   Step 1500: The total potential energy is nan, which is not finite. The LJ and\n\
                   electrostatic contributions to the energy are 0 and -1.23e+05, respectively.\n\
                   -------------------------------------------------------\n";
    let a = run(gromacs);
    assert_eq!(a.program.as_deref(), Some("GROMACS gmx mdrun"));
    assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::NumericalInstability)));
    assert_eq!(
        a.evidence.as_deref(),
        Some("Step 1500: The total potential energy is nan, which is not finite. The LJ and")
    );
    assert_eq!((a.value("mpi_ranks"), a.value("threads")), (Some("4"), Some("2")));

    let wrf = "taskid: 0 hostname: n1\nWRF V4.5.1 MODEL\n\
               -------------- FATAL CALLED ---------------\n\
               FATAL CALLED FROM FILE:  <stdin>  LINE:    1133\n\
               Program wrf: error opening wrfinput_d01 for reading ierr=       -1021\n\
               -------------------------------------------\n";
    let a = run(wrf);
    assert_eq!((a.program.as_deref(), a.value("version")), (Some("WRF"), Some("V4.5.1")));
    assert_eq!(a.category, Some(Category::FileNotFound));
    assert_eq!(a.evidence.as_deref(), Some("Program wrf: error opening wrfinput_d01 for reading ierr=       -1021"));

    let cp2k = " CP2K| version string:                                          CP2K version 2023.1\n\
                \x20GLOBAL| Total number of message passing processes                            64\n\
                \x20GLOBAL| Number of threads for this process                                    2\n\
                \x20                            - Atoms:                                     192\n\
                \x20*******************************************************************************\n\
                \x20*   ___                                                                       *\n\
                \x20*  /   \\                                                                      *\n\
                \x20* [ABORT]                                                                     *\n\
                \x20*  \\___/        SCF run NOT converged. To continue the calculation            *\n\
                \x20*    |          regardless, please set the keyword IGNORE_CONVERGENCE_FAILURE.*\n\
                \x20*******************************************************************************\n";
    let a = run(cp2k);
    assert_eq!((a.program.as_deref(), a.value("version")), (Some("CP2K"), Some("2023.1")));
    assert_eq!((a.value("mpi_ranks"), a.value("threads"), a.value("atoms")), (Some("64"), Some("2"), Some("192")));
    assert_eq!(a.category, Some(Category::NumericalInstability));
    assert_eq!(a.evidence.as_deref(), Some("SCF run NOT converged. To continue the calculation"));
    let fine = cp2k.lines().take(4).collect::<Vec<_>>().join("\n")
        + "\n  **** **** ******  **  PROGRAM ENDED AT                 2024-01-01 10:00:00.000\n";
    let a = run(&fine);
    assert_eq!(a.outcome, Outcome::Success);

    let vasp = " running   16 mpi-ranks, with    2 threads/rank, on    1 nodes\n\
                \x20vasp.6.4.2 20Jul23 (build Jan 10 2024 10:00:00) complex\n\
                \x20POSCAR found type information on POSCAR Si\n\
                \x20POSCAR found :  1 types and       8 ions\n\
                DAV:   1     0.394826985281E+03    0.39483E+03   -0.14829E+04  1992   0.162E+03\n\
                \x20  1 F= -.43389512E+02 E0= -.43389512E+02  d E =-.433895E+02\n\
                \x20  2 F= -.43401234E+02 E0= -.43401234E+02  d E =-.117220E-01\n\
                \x20reached required accuracy - stopping structural energy minimisation\n\
                \x20writing wavefunctions\n";
    let a = run(vasp);
    assert_eq!((a.program.as_deref(), a.value("version")), (Some("VASP"), Some("6.4.2")));
    assert_eq!(a.outcome, Outcome::Success);
    assert_eq!((a.value("mpi_ranks"), a.value("threads"), a.value("nodes")), (Some("16"), Some("2"), Some("1")));
    assert_eq!((a.value("atoms"), a.value("steps")), (Some("8"), Some("2")));
    assert_eq!(
        a.fact("free_energy").map(|f| (f.value.as_str(), f.unit.as_deref())),
        Some(("-.43401234E+02", Some("eV")))
    );
    let a = run(&vasp
        .replace(" reached required", " ZBRENT: fatal error in bracketing\n reached")
        .replace(" writing wavefunctions\n", "")
        .replace(" reached required accuracy - stopping structural energy minimisation\n", ""));
    assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::NumericalInstability)));

    let openmc = "                   | The OpenMC Monte Carlo Code\n           Version | 0.13.3\n\
                  \x20    MPI Processes | 4\n    OpenMP Threads | 8\n\
                  \x20===============>     K EIGENVALUE SIMULATION     <===============\n\
                  \x20Total time elapsed                = 1.0234e+02 seconds\n\
                  \x20Calculation Rate (active)         = 4567.8 particles/second\n\
                  \x20Combined k-effective        = 1.16875 +/- 0.00074\n";
    let a = run(openmc);
    assert_eq!((a.program.as_deref(), a.outcome), (Some("OpenMC"), Outcome::Success));
    assert_eq!(a.value("run_mode"), Some("k eigenvalue"));
    assert_eq!(
        a.fact("performance").map(|f| (f.value.as_str(), f.unit.as_deref())),
        Some(("4567.8", Some("particles/second")))
    );
    assert_eq!(a.value("k_effective"), Some("1.16875"));
    let a = run("                   | The OpenMC Monte Carlo Code\n ERROR: No cross_sections.xml file was specified in materials.xml.\n");
    assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::InputError)));
}

fn corpus_file(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(path);
    String::from_utf8_lossy(&std::fs::read(p).expect("corpus file")).into_owned()
}

#[test]
fn the_software_environment_is_its_own_category() {
    // Issue #13: what managers watch after a software update.
    let cases: &[(&str, &str)] = &[
        ("/var/spool/slurmd/job01234/slurm_script: line 12: pw.x: command not found", "pw.x: command not found"),
        (
            "Lmod has detected the following error:  The following module(s) are unknown: \"gromacs/2099\"",
            "The following module(s) are unknown",
        ),
        ("ModuleNotFoundError: No module named 'torch'", "ModuleNotFoundError"),
        (
            "lmp: error while loading shared libraries: libfftw3.so.3: cannot open shared object file: No such file or directory",
            "error while loading shared libraries",
        ),
    ];
    for (line, part) in cases {
        let a = run(&format!("{line}\n"));
        assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::EnvironmentError)), "{line}");
        assert!(a.evidence.as_deref().is_some_and(|e| e.contains(part)), "{line}: {:?}", a.evidence);
    }
    assert_eq!("environment_error".parse::<Category>(), Ok(Category::EnvironmentError));
}

#[test]
fn a_python_traceback_names_python_its_script_and_why() {
    let log = "Traceback (most recent call last):\n  File \"/home/u/train.py\", line 88, in <module>\n    \
               main()\n  File \"/home/u/train.py\", line 80, in main\n    model.load_state_dict(sd)\n\
               RuntimeError: Error(s) in loading state_dict for Net:\n\tsize mismatch for fc.weight\n";
    let a = run(log);
    assert_eq!(a.program.as_deref(), Some("Python"));
    assert_eq!(a.value("script"), Some("/home/u/train.py"));
    assert_eq!(a.evidence.as_deref(), Some("RuntimeError: Error(s) in loading state_dict for Net:"));
    let a = run(&log.replace(
        "RuntimeError: Error(s) in loading state_dict for Net:\n\tsize mismatch for fc.weight",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    ));
    assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::OutOfMemory)));
    let a = run(&log.replace(
        "RuntimeError: Error(s) in loading state_dict for Net:",
        "RuntimeError: size mismatch, m1: [4 x 512], m2: [256 x 10]",
    ));
    assert_eq!(a.category, Some(Category::InputError), "a consistency check on the input");
}

#[test]
fn several_tools_of_one_package_are_judged_by_the_main_run() {
    // An Allrun-style stream: blockMesh succeeds ("End"), then the solver fails.
    let stream = corpus_file("openfoam/blockMesh-success.log") + &corpus_file("openfoam/pimpleFoam-fatal-io-error.log");
    let a = run(&stream);
    assert_eq!(a.program.as_deref(), Some("OpenFOAM pimpleFoam"), "the main run names the program");
    assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::InputError)));

    // The solver succeeds, then a post-processing utility runs (no "End" printed in this cut):
    // the utility's lines do not make the run incomplete.
    let solver =
        "Exec   : pimpleFoam -parallel\nnProcs : 4\nTime = 0.1\n\nExecutionTime = 1.5 s  ClockTime = 2 s\n\nEnd\n\n";
    let a = run(&format!("{solver}Exec   : reconstructPar -latestTime\nReconstructing fields\n"));
    assert_eq!((a.program.as_deref(), a.outcome), (Some("OpenFOAM pimpleFoam"), Outcome::Success), "{a:#?}");
    // A solver cut short after a preprocessor that finished is still incomplete.
    let a = run(&format!("Exec   : blockMesh\nEnd\n\n{}", solver.replace("\nEnd\n", "\n")));
    assert_eq!((a.program.as_deref(), a.outcome), (Some("OpenFOAM pimpleFoam"), Outcome::Incomplete));

    // GROMACS: only mdrun prints "Finished mdrun"; grompp before it and gmx energy after it
    // are tools of the same package.
    let g = |tool: &str| format!("                      :-) GROMACS - gmx {tool}, 2023.1 (-:\n");
    let mdrun = format!("{}Using 4 MPI threads\nStarted mdrun on rank 0 Mon Jan  1 10:00:00 2024\nFinished mdrun on rank 0 Mon Jan  1 11:00:00 2024\n", g("mdrun"));
    let a =
        run(&format!("{}Setting the LD random seed\n{mdrun}{}Select the terms you want\n", g("grompp"), g("energy")));
    assert_eq!((a.program.as_deref(), a.outcome), (Some("GROMACS gmx mdrun"), Outcome::Success), "{a:#?}");
}

#[test]
fn code_errors_without_a_banner_and_what_they_mean() {
    // A LAMMPS error on stderr, the banner being in the other stream: known by its source file.
    let a = run("ERROR: Unrecognized fix style 'bond/react' is part of the REACTION package which is not enabled in this LAMMPS binary. (src/modify.cpp:924)\nLast command: fix 1 all bond/react\n");
    assert_eq!((a.program.as_deref(), a.category), (Some("LAMMPS"), Some(Category::InputError)));
    // A QE routine's I/O failure, banner not in the window.
    let qe = "\n %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\n     \
              Error in routine davcio (10):\n     error while writing from file \"/scratch/u/Sn.wfc1\"\n \
              %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\n";
    let a = run(qe);
    assert_eq!(a.program.as_deref(), Some("Quantum ESPRESSO"));
    assert_eq!((a.outcome, a.category), (Outcome::Failed, Some(Category::IoError)));
    assert_eq!(a.evidence.as_deref(), Some("error while writing from file \"/scratch/u/Sn.wfc1\""));
    // A consistency check of the input.
    let a = run(&qe.replace("davcio (10)", "readpp (1)").replace(
        "error while writing from file \"/scratch/u/Sn.wfc1\"",
        "size mismatch between pseudopotential and input",
    ));
    assert_eq!(a.category, Some(Category::InputError));
    // Fortran runtimes.
    let a = run("forrtl: severe (24): end-of-file during read, unit 10, file /home/u/run/input.dat\n");
    assert_eq!(a.category, Some(Category::InputError));
    let a = run("forrtl: severe (38): error during write, unit 12, file /scratch/u/out.dat\n");
    assert_eq!(a.category, Some(Category::IoError));
}

#[test]
fn a_job_scripts_own_output_joins_the_solver_stream() {
    // The solver's log just stops; the job script's own output (GNU time) says the command failed.
    let solver = run("LAMMPS (2 Aug 2023)\n  2 by 2 by 2 MPI processor grid\nStep Temp\n 0 1.0\n");
    assert_eq!(solver.outcome, Outcome::Incomplete);
    let script = run("starting at Mon Jan  1 10:00:00 2024\nCommand exited with non-zero status 137\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n");
    assert_eq!(script.outcome, Outcome::Failed);
    assert_eq!(script.value("script_exit_code"), Some("137"));
    let v = combine(&[&solver, &script]);
    assert_eq!((v.program.as_deref(), v.outcome), (Some("LAMMPS"), Outcome::Failed));
    assert_eq!(v.evidence.as_deref(), Some("Command exited with non-zero status 137"));
}

#[test]
fn a_missing_command_the_script_survives_is_not_the_jobs_failure() {
    // A job script's information commands (`cpuinfo`) missing, then the run's own output.
    let survived = "/tmp/slurmd/job1/slurm_script: line 68: cpuinfo: command not found\n\
                    Running pw.x on 4 nodes\nstep 1\nstep 2\nstep 3\nstep 4\nstep 5\nQE finished\n";
    let a = run(survived);
    assert_eq!(a.outcome, Outcome::Unknown, "{a:#?}");
    assert_eq!(a.category, None);
    // The job's main command missing: nothing but the launcher's lines follow.
    let fatal = "Running pw.x on 4 nodes\n/tmp/slurmd/job1/slurm_script: line 70: pw.x: command not found\n\
                 srun: error: n01: task 0: Exited with exit code 127\n";
    let a = run(fatal);
    assert_eq!(a.outcome, Outcome::Failed, "{a:#?}");
    assert_eq!(a.category, Some(Category::EnvironmentError));
    assert_eq!(a.evidence.as_deref(), Some("/tmp/slurmd/job1/slurm_script: line 70: pw.x: command not found"));
}

#[test]
fn srun_option_dump_is_not_an_oom_kill() {
    let a = run(
        "srun: oom-kill-step       : 0\nsrun: verbose             : 1\nforrtl: severe (71): integer divide by zero\n",
    );
    assert_eq!(a.category, Some(Category::NumericalInstability), "{a:#?}");
}

#[test]
fn mdrun_stopped_by_a_signal_fails_although_it_ends_the_normal_way() {
    let log = "          :-) GROMACS - gmx mdrun, 2023.3 (-:\n\nUsing 1 MPI process\n\
               starting mdrun 'water'\n500000 steps,   1000.0 ps.\n\n\
               Received the INT signal, stopping within 50 steps\n\n\
               GROMACS reminds you: \"Nothing\" (Nobody)\n";
    let a = run(log);
    assert_eq!(a.outcome, Outcome::Failed, "{a:#?}");
    assert_eq!(a.category, Some(Category::Signal));
    assert_eq!(a.evidence.as_deref(), Some("Received the INT signal, stopping within 50 steps"));
}

#[test]
fn a_script_copying_results_after_the_run_failed_does_not_hide_the_cause() {
    // The job script's `cp` of files the run never wrote comes after the real failure.
    let a = run("MPI_ABORT was invoked on rank 0 in communicator MPI COMMUNICATOR 3 DUP FROM 0\n\
                 with errorcode 9999.\n\
                 cp: cannot stat '/scratch/job/out*': No such file or directory\n");
    assert_eq!(a.category, Some(Category::MpiAbort));
    assert_eq!(a.value("mpi_abort_errorcode"), Some("9999"));
    // Alone, the same line still says what happened.
    let a = run("cp: cannot stat '/scratch/job/in.dat': No such file or directory\n");
    assert_eq!(a.category, Some(Category::FileNotFound));
    assert_eq!(a.value("missing_file"), Some("/scratch/job/in.dat"));
}

#[test]
fn a_gfortran_error_on_a_file_statement_is_an_io_error_unless_the_input_is_bad() {
    let a = run("At line 186 of file io_base.f90 (unit = 4, file = './pwscf.save/wfc1.dat')\n\
                 Fortran runtime error: Bad address\n");
    assert_eq!(a.category, Some(Category::IoError));
    assert_eq!(a.evidence.as_deref(), Some("Fortran runtime error: Bad address"));
    let a = run("At line 3070 of file cligen.f (unit = 9, file = 'obs.prn')\n\
                 Fortran runtime error: End of file\n");
    assert_eq!(a.category, Some(Category::InputError));
}

#[test]
fn a_when_clause_can_lower_a_markers_priority() {
    let site = r#"
[[program]]
name = "Toy"
detect = '^TOY START'
success = '^TOY END'

[[program.failure]]
pattern = '^toy: (?P<evidence>.*)'
category = "unknown"
when = [ { match = 'cleanup', category = "file_not_found", priority = 3 } ]

[[program.failure]]
pattern = '^fatal: (?P<evidence>.*)'
category = "io_error"
"#;
    let rules = Rules::from_toml(site, "site.toml").expect("rules");
    let text = "TOY START\ntoy: cleanup found nothing\nfatal: disk full\n";
    let a = analyze(&rules, &Window::whole(text.as_bytes()));
    assert_eq!(a.category, Some(Category::IoError), "the later cause outranks the earlier consequence");
    let bad = Rules::from_toml(&site.replace("priority = 3", "priority = 7"), "site.toml");
    assert!(bad.unwrap_err().to_string().contains("priority: 0 (first) to 3 (last)"));
}
