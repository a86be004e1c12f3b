//! The API the epilog's pre-check uses: which patterns trigger which part of a rules file, and
//! compiling only some parts.

use logparse::{analyze, Part, Rules, Triggers, Window, BUILTIN_TOML};
use std::collections::BTreeSet;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_builtin_program_has_a_trigger_or_is_always_needed() {
    let t = Triggers::from_toml(BUILTIN_TOML, "builtin.toml").unwrap();
    assert!(t.patterns.iter().any(|(_, p)| *p == Part::Generic), "the generic rules have patterns");
    for name in Rules::builtin().program_names() {
        let triggered = t.patterns.iter().any(|(_, p)| *p == Part::Program(name.to_string()));
        assert!(triggered || t.always.contains(name), "{name} has no trigger");
    }
}

#[test]
fn a_program_without_detect_is_always_needed_and_detect_lists_are_split() {
    let text = "[[program]]\nname = \"A\"\n[[program]]\nname = \"B\"\ndetect = [\"^B one\", \"^B two\"]\n\
                [generic]\n[[generic.failure]]\npattern = \"boom\"\ncategory = \"crash\"\n";
    let t = Triggers::from_toml(text, "site.toml").unwrap();
    assert_eq!(t.always, set(&["A"]));
    let b: Vec<&str> =
        t.patterns.iter().filter(|(_, p)| *p == Part::Program("B".into())).map(|(s, _)| s.as_str()).collect();
    assert_eq!(b, ["^B one", "^B two"]);
    assert!(t.patterns.contains(&("boom".to_string(), Part::Generic)));
}

#[test]
fn a_bad_rules_file_is_an_error_with_its_line() {
    let e = Triggers::from_toml("[[program]]\nname = \"A\"\nbogus = 1\n", "site.toml").unwrap_err();
    assert_eq!((e.origin.as_str(), e.line), ("site.toml", Some(3)), "{e}");
}

#[test]
fn a_part_of_the_rules_says_what_the_whole_says_about_its_programs_log() {
    let log = b"LAMMPS (29 Sep 2021)\nERROR: Lost atoms: original 4000 current 0 (src/thermo.cpp:439)\n";
    let part = Rules::from_toml_part(BUILTIN_TOML, "builtin.toml", true, Some(&set(&["LAMMPS"]))).unwrap();
    assert_eq!(part.program_names(), ["LAMMPS"]);
    let w = Window::whole(log);
    // The same verdict and facts; only the scan's own counts differ (fewer patterns searched).
    let said = |r: &Rules| {
        let mut a = analyze(r, &w);
        a.stats = Default::default();
        a
    };
    assert_eq!(said(&part), said(&Rules::builtin()));
    let none = Rules::from_toml_part(BUILTIN_TOML, "builtin.toml", false, Some(&set(&[]))).unwrap();
    assert!(none.program_names().is_empty());
    assert_ne!(said(&none), said(&Rules::builtin()), "LAMMPS left out says nothing");
}
