//! Who sees what: any command line a user can send through the collector's socket, answered for
//! alice, must never show bob's jobs. The ledger holds one job of each; bob's user name, account
//! and a tag value appear in alice's answer only if alice typed them herself (an error message may
//! echo the arguments back).
#![no_main]
use libfuzzer_sys::fuzz_target;
use runledger_collector::cli::{Owner, Scope};
use runledger_collector::daemon::local;
use runledger_ledger::{db, merge};
use runledger_synth::Sample;
use std::path::PathBuf;
use std::sync::OnceLock;

const SECRET: &str = "qz7bobonly";
/// Bob's user and account names: nothing else in the collector's output (help texts included)
/// contains them.
const BOB: &str = "zbobuser9";
/// Alice's uid (the sample's default); bob's is 2002.
const ALICE_UID: u32 = 1000;
const BOB_ACCOUNT: &str = "zbobacct9";

fn ledger() -> &'static PathBuf {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rl-fuzz-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.db");
        let conn = db::open_rw(&path).unwrap();
        let mut a = Sample::new("tc", 1, 1_700_000_000);
        a.user = "alice".into();
        let mut b = Sample::new("tc", 2, 1_700_000_600);
        b.user = BOB.into();
        b.uid = 2002;
        b.account = BOB_ACCOUNT.into();
        b.tags.insert("secret".into(), SECRET.into());
        let batches = [a.batch(0), b.batch(0)];
        let refs: Vec<_> = batches.iter().collect();
        for r in merge::apply_group(&conn, &refs, 1_700_100_000).unwrap() {
            r.unwrap();
        }
        path
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // First byte picks the command; the rest are arguments separated by newlines.
    let mut args: Vec<String> = match text.bytes().next() {
        Some(b'e') => vec!["export".into()],
        _ => vec!["query".into()],
    };
    args.extend(text.get(1..).unwrap_or("").split('\n').filter(|a| !a.is_empty()).map(String::from));
    if args.iter().any(|a| a.contains("--plot") || a.contains("-o")) {
        // Output files are checked like stdout; charts are slow to draw, keep them rare.
        if data.len() % 8 != 0 {
            return;
        }
    }
    let a = local::answer(&args, ledger(), &Scope::Own(Owner { uid: ALICE_UID, name: "alice".into(), clusters: Vec::new() }));
    // Error messages echo arguments with control characters dropped.
    let typed: String = text.chars().filter(|c| !c.is_control()).collect::<String>().to_ascii_lowercase();
    let mut shown = String::from_utf8_lossy(&a.stdout).to_ascii_lowercase();
    shown.push_str(&a.stderr.to_ascii_lowercase());
    for f in &a.files {
        shown.push_str(&String::from_utf8_lossy(f).to_ascii_lowercase());
    }
    for needle in [SECRET, BOB, BOB_ACCOUNT] {
        assert!(!shown.contains(needle) || typed.contains(needle), "{needle} leaked to alice for {args:?}:\n{shown}");
    }
});
