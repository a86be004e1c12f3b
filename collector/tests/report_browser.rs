//! `collector report --html` in a real browser: Debian's headless Chromium opens the page from
//! the file system, takes a screenshot (decoded here and checked not blank) and dumps the DOM
//! it built (checked: every chart is there as SVG, every table has the rows the ledger says).
//!
//! Chromium comes from packaging/lib.sh's list. Without it the plain test says SKIPPED; its
//! `#[ignore]`d twin (`-- --ignored`) fails instead, for CI.

use runledger_ledger::{db, merge};
use runledger_synth::Synth;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_collector");

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|n| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(n)).find(|p| p.is_file()))
}

/// A month of made-up jobs (several accounts, users, modules, failures), through the real merge.
fn ledger(dir: &Path) -> PathBuf {
    let path = dir.join("ledger.db");
    let conn = db::open_rw(&path).unwrap();
    let end = 1_764_547_200; // 2025-12-01T00:00:00Z
    let mut synth = Synth::new(2000, 11, end);
    let mut batches = Vec::new();
    while let Some(b) = synth.next_job_batch() {
        batches.push(b);
    }
    let refs: Vec<_> = batches.iter().collect();
    for r in merge::apply_group(&conn, &refs, end).unwrap() {
        r.unwrap();
    }
    path
}

fn collector(args: &[&str]) -> String {
    let out = Command::new(COLLECTOR).args(args).output().unwrap();
    assert!(out.status.success(), "collector {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    tag[at..].split('"').next()
}

fn check(browser: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let dbs = db.to_str().unwrap();
    let html = dir.path().join("report");
    collector(&["report", "--html", html.to_str().unwrap(), "--database", dbs]);
    let page = html.join("index.html");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(
        !text.contains("<script") && !text.contains("src=\"http") && !text.contains("href=\"http"),
        "not self-contained"
    );
    let url = format!("file://{}", page.display());
    let profile = dir.path().join("profile");
    let base = |extra: &[&str]| {
        let mut c = Command::new(browser);
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1300,2400"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url);
        c
    };

    // The DOM Chromium built: every chart an SVG, every table its rows.
    let out = base(&["--dump-dom"]).output().unwrap();
    assert!(out.status.success(), "chromium --dump-dom: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let charts: Vec<&str> = dom.split("<figure").skip(1).collect();
    let names: Vec<&str> = charts.iter().filter_map(|f| attr(f, "data-chart")).collect();
    for want in [
        "failures-by-category",
        "modules-by-jobs",
        "modules-by-users",
        "throughput",
        "utilization",
        "starts-weekday-hour",
        "efficiency-by-program",
        "efficiency-by-ranks",
    ] {
        assert!(names.contains(&want), "chart {want} missing: {names:?}");
    }
    for f in &charts {
        let body = f.split("</figure>").next().unwrap();
        assert!(
            body.contains("<svg")
                && body.matches("<rect").count() + body.matches("<path").count() + body.matches("<polyline").count()
                    > 3,
            "an empty chart: {}",
            &body[..body.len().min(300)]
        );
    }
    let mut tables = std::collections::BTreeMap::new();
    for t in dom.split("<table").skip(1) {
        let t = t.split("</table>").next().unwrap();
        let id = attr(t, "id").unwrap().to_string();
        let said: usize = attr(t, "data-rows").unwrap().parse().unwrap();
        let body = t.split("<tbody>").nth(1).unwrap_or("");
        assert_eq!(body.matches("<tr>").count(), said, "table {id}");
        tables.insert(id, said);
    }
    // The row counts are the ledger's, as the command line tells them.
    let q = |args: &[&str]| -> Value {
        let mut a = vec!["query", "--database", dbs];
        a.extend_from_slice(args);
        a.push("--json");
        serde_json::from_str(&collector(&a)).unwrap()
    };
    let accounts = q(&["summary", "--by", "account"]);
    let accounts = accounts.as_array().unwrap();
    assert!(accounts.len() > 1);
    assert_eq!(tables["accounts"], accounts.len());
    for (i, a) in accounts.iter().enumerate() {
        let users = q(&["summary", "--by", "user", "-A", a["account"].as_str().unwrap()]);
        let n = users.as_array().unwrap().len();
        assert!(tables.values().filter(|&&v| v == n).count() > 0, "account {i}");
        assert!(tables.contains_key(&format!("account-{i}")), "account {i}'s table");
    }
    let errors = q(&["errors"]);
    assert_eq!(tables["failures-by-category"], errors["categories"].as_array().unwrap().len());
    let modules = q(&["modules"]);
    assert_eq!(tables["modules-by-jobs"], modules.as_array().unwrap().len().min(15));
    let eff = q(&["efficiency", "--by", "program"]);
    assert_eq!(tables["efficiency-by-program"], eff["groups"].as_array().unwrap().len());

    // The screenshot: a real picture, not a blank page.
    let shot = dir.path().join("report.png");
    let out = base(&[&format!("--screenshot={}", shot.display())]).output().unwrap();
    assert!(out.status.success(), "chromium --screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let white = pixels.iter().filter(|p| p[..3].iter().all(|&c| c > 245)).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().map(|p| &p[..3]).collect();
    let lum: Vec<f64> = pixels.iter().map(|p| (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0).collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    println!(
        "screenshot {}x{}: {:.1}% white, {} colours, luminance variance {var:.0}",
        info.width,
        info.height,
        white as f64 * 100.0 / pixels.len() as f64,
        colours.len()
    );
    if let Some(keep) = std::env::var_os("RUNLEDGER_KEEP_REPORT") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&shot, keep.join("report.png")).unwrap();
        std::fs::copy(&page, keep.join("index.html")).unwrap();
    }
    assert!((info.width, info.height) == (1300, 2400), "{}x{}", info.width, info.height);
    assert!(white < pixels.len() * 97 / 100, "the screenshot is (nearly) blank");
    assert!(colours.len() > 50 && var > 100.0, "the screenshot has no picture in it");
}

#[test]
fn the_report_renders_in_headless_chromium() {
    match chromium() {
        Some(b) => check(&b),
        None => {
            eprintln!("SKIPPED the_report_renders_in_headless_chromium: no chromium on PATH (apt install chromium)")
        }
    }
}

#[test]
#[ignore = "needs chromium"]
fn the_report_renders_in_headless_chromium_strictly() {
    check(&chromium().expect("chromium is not installed (packaging/lib.sh installs it)"));
}
