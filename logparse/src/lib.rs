//! Reads HPC solver logs into facts: which code ran (and which version), on how many ranks and
//! threads, how far it got, how big the problem was, how fast it went, and — for a manager's
//! pie chart — whether it succeeded and, if not, why, with the one line that shows it.
//!
//! # Why it is built this way
//!
//! * **Rules are data.** Every code's patterns live in a TOML rules file: the built-ins
//!   ([`BUILTIN_TOML`], `rules/builtin.toml`, compiled in) plus an optional site file
//!   ([`SITE_RULES_PATH`]) that adds codes or replaces built-in ones, so a site teaches
//!   runledger its in-house code without recompiling. A bad site file is an error that names
//!   the file, the line and the rule ([`RuleError`]); the caller keeps the built-ins.
//! * **The code's own success marker decides.** Real logs print "ERROR" from environment
//!   scripts in successful runs, finish their main loop and then fail, carry two codes, or just
//!   stop. So a failure marker only counts if no success marker of the code follows it (the
//!   run went on and finished) and, for a code's own markers, if it comes after the code's
//!   banner; a recognised code without its success marker and without a failure is
//!   `incomplete` / `truncated`. Among the markers that count, the most telling one wins:
//!   an external kill (time limit, OOM) over the code's own diagnosis, over a crash, over
//!   MPI_ABORT and unspecific markers; then the code's own marker over a generic one; then the
//!   earliest ([`Category::default_priority`]). A stream holding several tools of one package
//!   (`blockMesh`, then the solver) is judged by its main run when the rules say which tools are
//!   main (`main`): the others' lines neither name the program nor make the run incomplete.
//! * **Bounded input, bounded cost.** The caller reads a head window and a tail window
//!   ([`Window`]); lines end at `\n`, `\r\n` or a lone `\r` (progress bars), lines over 4 KiB
//!   are cut, and bytes need not be UTF-8. All matching is done by the `regex` crate (finite
//!   automata: linear time, no catastrophic backtracking, whatever a site writes); character
//!   classes never match a line end, so a pattern crosses lines only where it says `\n`, at
//!   most 16 times, and searching line after line stays linear. [`analyze`] never panics on any
//!   bytes, and reports its own work ([`ScanStats`]) so tests can bound it without timing.
//! * **One pass over the text.** Each pattern is keyed on literals one of which every match
//!   must contain (`Loop time of `, `FOAM FATAL`, …, found from the regex syntax tree). One
//!   Aho-Corasick pass finds the lines holding any literal, skipping rows of numbers (thermo
//!   output, energies) at memory speed, and only the patterns owning those literals run on
//!   those lines. Patterns that cross lines run on their own, and only if their literal
//!   appeared. A 10 MiB log takes about 15–25 ms on one core; the line-by-line Python `re`
//!   parse with the same rules takes seconds (`bench/logparse-speed`). A site pattern without
//!   such a literal still works: those go through one multi-pattern automaton pass.
//!
//! # Use
//!
//! ```
//! use logparse::{analyze, Outcome, Rules, Window};
//!
//! let rules = Rules::builtin(); // or Rules::load_site(Path::new(logparse::SITE_RULES_PATH))
//! let log = b"LAMMPS (8 Apr 2021)\nLoop time of 0.49 on 4 procs for 250 steps with 4000 atoms\nTotal wall time: 0:00:01\n";
//! let a = analyze(&rules, &Window::whole(log));
//! assert_eq!(a.program.as_deref(), Some("LAMMPS"));
//! assert_eq!(a.outcome, Outcome::Success);
//! assert_eq!(a.value("steps"), Some("250"));
//! let facts = a.to_facts("/home/u/run/log.lammps"); // runledger_record::Fact
//! # assert!(!facts.is_empty());
//! ```
//!
//! # The rules file
//!
//! ```toml
//! [[program]]
//! name = "AVBP"                        # a site program of the same name replaces a built-in
//! label = "AVBP {_tool}"               # the `program` fact; {refs} to detect's groups
//! detect = '^\s*Running (?P<_tool>avbp\S*) version (?P<version>\S+)'   # string or array
//! success = ['^\s*AVBP: normal end']   # string or array; the code's own success marker
//! # main = 'avbp$'                     # optional: which tools (by label) are the main run; a
//!                                      # stream of several tools is judged by its last main run
//!
//! [[program.failure]]                  # in order; the first rule matching a line wins it
//! pattern = '^\s*Error: (?P<evidence>.*)'   # `evidence` (optional) is the line to report
//! category = "unknown"                 # see Category for the vocabulary
//! when = [ { match = 'not found', category = "file_not_found" } ]  # refine: on the match's lines
//!                                      # (a `priority` there overrides the failure's)
//! # priority = 0..3                    # optional, else the category's default
//! # tail_lines = 5                     # optional: counts only if at most 5 non-blank lines
//!                                      # follow its last match (errors a script survives)
//! # despite_success = true             # optional: counts even if the success marker follows
//!                                      # (a code told to stop that then ends normally)
//!
//! [[program.field]]                    # named groups become facts; `_x` groups stay hidden
//! pattern = '^\s*Iteration\s+(?P<steps>\d+)\s+dt=(?P<dt>\S+)'
//! pick = "last"                        # first (default) | last | sum
//! count = "iteration_lines"            # optional: number of matching lines
//! units = { dt = "s" }                 # unit per fact ({refs} allowed)
//! set = { grid = "{_nx}x{_ny}" }       # extra facts from templates
//! convert = { steps = "int" }          # text | int | number | duration | product | lower
//!
//! [[program.table]]                    # whitespace tables (e.g. LAMMPS thermo output)
//! header = '^\s*Step\s+[A-Za-z]'
//! row = "last"                         # first | last
//! columns = { Temp = "final_temperature" }
//!
//! [generic]                            # markers for every file (Slurm, MPI, OS)
//! [[generic.failure]]
//! pattern = 'DUE TO TIME LIMIT'
//! category = "time_limit"
//! ```
//!
//! Patterns use the `regex` crate's syntax in multi-line mode (`^`/`$` at line ends), ASCII
//! classes, matched against bytes. A pattern is held to one line unless it says `\n` (classes
//! such as `\s` or `[^x]` never match a line end); `when` refines a failure's category by
//! searching the whole lines its match covers. Write `(?P<name>…)` for groups (Python's `re` reads the same rules, see
//! `bench/logparse_baseline.py`). When several rules give the same fact key the first (in
//! file order) wins; facts of a second code in a coupled run carry its name as a prefix
//! (`wrf.version`). Counts and sums are left out when the window has a gap
//! (`truncated_between`), because they would be wrong.

#![deny(unsafe_code)]

mod convert;
mod engine;
mod inputs;
mod model;
mod pattern;
mod rule_error;
mod rules;
mod text;

pub use convert::MAX_VALUE;
pub use engine::{analyze, MAX_FACTS};
pub use inputs::{files_in_argv, InputFormat, InputRules, BUILTIN_FORMATS, MAX_PARAMS, MAX_PARAM_VALUE, PARAM_PREFIX};
pub use model::{combine, Analysis, Category, FactValue, Outcome, ScanStats, Verdict};
pub use rule_error::RuleError;
pub use rules::{Part, Rules, Triggers, BUILTIN_TOML, SITE_RULES_PATH};
pub use text::{Window, MAX_LINE};
