//! The input-file extractors against real public input files (logparse/tests/inputs/, each
//! with its source in MANIFEST.tsv): every file gives exactly the `param.*` facts its manifest
//! line lists — none missing, none extra, none different.

use logparse::InputRules;
use std::path::Path;

#[test]
fn real_inputs_give_exactly_their_manifest_params() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let rules = InputRules::builtin();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 7, "MANIFEST line with {} columns: {line}", cols.len());
        let (local, expected) = (cols[0], cols[6]);
        let text = std::fs::read(dir.join(local)).unwrap_or_else(|e| panic!("{local}: {e}"));
        let name = local.rsplit('/').next().unwrap();
        let got: Vec<String> =
            rules.extract(name, &text, None).iter().map(|f| format!("{}={}", f.key, f.value)).collect();
        let want: Vec<String> = expected.split("; ").map(str::to_string).collect();
        if std::env::var_os("PARAMS_DUMP").is_some() {
            println!("{local}\t{}", got.join("; "));
        }
        if got != want {
            failures.push(format!("{local}:\n  want {want:?}\n  got  {got:?}"));
        }
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} files in the manifest");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
