//! Property tests: whatever bytes the windows hold, the analysis does not panic, its output is
//! bounded, and its cost stays linear in the input (checked with the analysis' own work
//! counters, not with timings).

use logparse::{analyze, Analysis, Rules, Window, MAX_FACTS, MAX_VALUE};
use proptest::prelude::*;

/// Cost bound: regex searches and the bytes they cover, per byte and per line of input. The
/// constant is the number of patterns that can look at one line (about 150 built-in ones) times
/// the lines a multi-line pattern may cross, with room; a quadratic scan blows through it at
/// the sizes generated here.
const PER_BYTE: usize = 1000;
const PER_LINE: usize = 400;

fn check_bounded(a: &Analysis, head: &[u8], tail: &[u8]) {
    let input = head.len() + tail.len();
    assert!(a.stats.bytes <= input + 2, "{:?}", a.stats);
    assert!(a.stats.searched_bytes <= PER_BYTE * (a.stats.bytes + 1), "{:?}", a.stats);
    assert!(a.stats.searches <= PER_LINE * (a.stats.lines + 1), "{:?}", a.stats);
    assert!(a.facts.len() <= MAX_FACTS);
    for f in &a.facts {
        assert!(f.value.len() <= MAX_VALUE, "{}", f.key);
        assert!(!f.value.is_empty(), "{}", f.key);
        assert!(!f.value.chars().any(char::is_control), "{}: {:?}", f.key, f.value);
    }
    if let Some(e) = &a.evidence {
        assert!(e.len() <= MAX_VALUE);
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(a.category.is_some());
    }
    // It serialises (the epilog sends it as JSON).
    assert!(serde_json::to_string(a).is_ok());
}

/// Pieces of real logs, so that generated text hits many rules (and their multi-line forms).
const PIECES: &[&str] = &[
    "LAMMPS (2 Aug 2023)\n",
    "Step Temp E_pair TotEng\n",
    "       0   1.44   -6.77   -4.61\n",
    "   100   nan   -nan   2.0\n",
    "Loop time of 12.5 on 8 procs for 1000 steps with 32000 atoms\n",
    "Performance: 34560.000 tau/day, 80.000 timesteps/s\n",
    "Total wall time: 0:00:13\n",
    "ERROR on proc 0: Lost atoms: original 4000 current 3999 at step 7 (src/thermo.cpp:488)\n",
    "Last command: run 1000\n",
    "                      :-) GROMACS - gmx mdrun, 2021.3 (-:\n",
    "           Step           Time\n",
    "         500000     1000.00000\n",
    "Fatal error:\n",
    "Step 5: The total potential energy is nan, which is not finite.\n",
    "Finished mdrun on rank 0 Sun May  1 09:51:47 2022\n",
    "Exec   : pimpleFoam -parallel\n",
    "[0] --> FOAM FATAL IO ERROR: (openfoam-2012)\n",
    "[0] Unknown asymmetric matrix solver type smmothSolver\n",
    "Time = 1e-05\n",
    "End\n",
    "     Program PWSCF v.7.2 starts on  6Dec2024 at 16:56:58\n",
    "     Error in routine cdiaghg (159):\n",
    "     PWSCF        :   7m 6.26s CPU   7m18.39s WALL\n",
    "   JOB DONE.\n",
    "WRF V4.1.4 MODEL\n",
    "Timing for main: time 2020-03-18_00:03:00 on domain   1:    1.52669 elapsed seconds\n",
    "-------------- FATAL CALLED ---------------\n",
    "           Version | 0.12.2\n",
    "                   | The OpenMC Monte Carlo Code\n",
    " Simulating batch 18\n",
    "slurmstepd: error: *** JOB 59536 ON hpc160 CANCELLED AT 2021-07-28T10:31:42 DUE TO TIME LIMIT ***\n",
    "slurmstepd: error: Detected 2 oom-kill event(s) in step 55548.batch cgroup.\n",
    "MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD\n",
    "with errorcode 1.\n",
    "  Process name: [[20819,1],12]\n",
    "  Exit code:    1\n",
    "A process or daemon was unable to complete a TCP connection\n",
    "to another process:\n",
    "  Local host:    solo175\n",
    " WARNING: Particle 23634 underwent maximum number of events.\n",
    "Segmentation fault (core dumped)\n",
    " |     EEEEEEE  RRRRRR   RRRRRR   OOOOOOO  RRRRRR      ###     ###     ###     |\n",
    " *  \\___/    SCF run NOT converged.                                          *\n",
    "10%\r20%\r30%\r",
    "\r\n",
    "\n",
    "\u{feff}\u{1b}[31m",
];

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => (0usize..6000).prop_map(|n| vec![b'x'; n]),
    ]
}

fn log_like() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(piece(), 0..200).prop_map(|ps| ps.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_never_panic(
        head in proptest::collection::vec(any::<u8>(), 0..16384),
        tail in proptest::collection::vec(any::<u8>(), 0..16384),
        gap in any::<bool>(),
    ) {
        let rules = Rules::builtin();
        let a = analyze(&rules, &Window { head: &head, tail: &tail, truncated_between: gap });
        check_bounded(&a, &head, &tail);
    }

    #[test]
    fn log_like_bytes_never_panic(head in log_like(), tail in log_like(), gap in any::<bool>()) {
        let rules = Rules::builtin();
        let a = analyze(&rules, &Window { head: &head, tail: &tail, truncated_between: gap });
        check_bounded(&a, &head, &tail);
        // Given contiguously, head + tail is the same text as one whole window.
        if !gap {
            let whole: Vec<u8> = [head.as_slice(), tail.as_slice()].concat();
            let b = analyze(&rules, &Window::whole(&whole));
            prop_assert_eq!(&a.facts, &b.facts);
            prop_assert_eq!(a.outcome, b.outcome);
            prop_assert_eq!(&a.evidence, &b.evidence);
        }
    }

    #[test]
    fn any_text_as_rules_never_panics(text in "\\PC{0,400}") {
        // A garbled site file is an error (or valid rules), never a panic.
        let _ = Rules::from_toml(&text, "fuzz.toml");
    }
}

#[test]
fn adversarial_site_patterns_stay_linear() {
    // Patterns that would make a naive "search again from the next line" loop quadratic: they
    // could run to the end of the text from every line. Classes stop at line ends and
    // multi-line patterns are bounded, so each line is looked at a bounded number of times.
    let site = Rules::from_toml(
        r#"
[[program]]
name = "Adversary"
detect = 'A'
success = 'never-printed'
[[program.failure]]
pattern = 'A[^!]*z'
category = "unknown"
[[program.field]]
pattern = 'A(?P<tail>[\s\S]*)Q'
pick = "last"
[[program.field]]
pattern = 'A(?:.*\n){0,16}?(?P<far>Q)'
pick = "sum"
count = "far_count"
[[program.field]]
pattern = '(?P<x>(?:a|aa)*b)'
pick = "last"
"#,
        "adversary.toml",
    )
    .expect("rules");
    let rules = Rules::builtin().with_site(site);
    let mut text = Vec::new();
    for _ in 0..20_000 {
        text.extend_from_slice(b"A aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa no end here\n");
    }
    let a = analyze(&rules, &Window::whole(&text));
    println!("adversary: {} bytes, {:?}", text.len(), a.stats);
    assert!(a.stats.searched_bytes <= 100 * text.len(), "{:?}", a.stats);
    assert_eq!(a.program.as_deref(), Some("Adversary"));
    assert_eq!(a.value("far_count"), None);
}
