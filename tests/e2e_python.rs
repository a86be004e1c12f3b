//! What Python did in each job, on the real local cluster (issue #14): jobs of the unprivileged
//! user run Debian's python3 (python3-numpy and python3-scipy, installed by packaging/lib.sh)
//! through the node package's hook, and the ledger answers with the packages and their versions:
//! `query job`, `query jobs`, `query packages`, `who-used --python`. A process killed by SIGKILL
//! still leaves what it imported and is `unfinished`; an opted-out job records nothing; four
//! ranks give one record; two venvs holding two versions of one package are told apart. The
//! other user sees none of it.

use runledger_e2e::*;
use serde_json::Value;

/// `collector ARGS` as `user`: (exit code, stdout, stderr).
fn collector_as(user: &str, args: &str) -> (i32, String, String) {
    let out = as_user(user, &format!("{COLLECTOR} {args}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_as(user: &str, args: &str) -> Value {
    let (code, out, err) = collector_as(user, &format!("{args} --json"));
    assert_eq!(code, 0, "{user}: collector {args}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{user}: collector {args}: not JSON ({e}): {out}"))
}

/// The recorded Python processes of a job (`query job ID --json`, as root).
fn processes(job: u32) -> Vec<Value> {
    query(&["job", &job.to_string()])[0]["python"].as_array().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

/// The versions the cluster's python3 has of numpy and scipy, as it says itself.
fn versions() -> (String, String) {
    let out = as_user(USER, "python3 -c 'import numpy, scipy; print(numpy.__version__, scipy.__version__)'");
    assert!(out.status.success(), "python3 with numpy and scipy: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(str::to_string);
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn python_jobs_record_their_packages_for_their_user_only() {
    require_cluster();
    let (numpy, scipy) = versions();
    let dir = user_dir(USER, "python");
    let script = dir.join("train.py");
    std::fs::write(&script, "import numpy, scipy\nprint(numpy.__version__)\n").unwrap();
    std::process::Command::new("chown").arg(format!("{USER}:{USER}")).arg(&script).status().unwrap();
    let script = script.to_string_lossy().into_owned();

    let ok = sbatch(USER, "py-numpy", &[], &format!("#!/bin/bash\npython3 {}\n", shell_quote(&script)));
    let killed = sbatch(
        USER,
        "py-killed",
        &[],
        "#!/bin/bash\npython3 -c 'import numpy, os, signal; os.kill(os.getpid(), signal.SIGKILL)'\ntrue\n",
    );
    let off_option =
        sbatch(USER, "py-off-option", &["--runledger-python=no"], "#!/bin/bash\npython3 -c 'import numpy'\n");
    let off_env =
        sbatch_after(USER, "export RUNLEDGER_PYTHON=0", "py-off-env", &[], "#!/bin/bash\npython3 -c 'import numpy'\n");
    let ranks = sbatch(USER, "py-ranks", &["-n", "4", "-O"], "#!/bin/bash\nsrun -n 4 -O python3 -c 'import numpy'\n");
    for j in [ok, killed, off_option, off_env, ranks] {
        finished(j);
    }

    // The job that ran train.py: one process, rank 0, normal exit, numpy and scipy with versions.
    let p = processes(ok);
    assert_eq!(p.len(), 1, "job {ok}: {p:#?}");
    assert_eq!(p[0]["rank"], 0);
    assert_eq!(p[0]["ended"], "normal", "{p:#?}");
    assert_eq!(p[0]["main"].as_str(), Some(script.as_str()), "{p:#?}");
    assert!(p[0]["interpreter"].as_str().is_some_and(|i| i.starts_with("/usr/bin/python3")), "{p:#?}");
    let pkgs = strings(&p[0]["packages"]);
    for want in [format!("numpy/{numpy}"), format!("scipy/{scipy}")] {
        assert!(pkgs.contains(&want), "job {ok}: {want} not in {pkgs:?}");
    }
    let listed = query(&["jobs", "-j", &ok.to_string()]);
    assert!(strings(&listed[0]["packages"]).contains(&format!("numpy/{numpy}")), "{listed:#}");
    let text = String::from_utf8_lossy(
        &std::process::Command::new(COLLECTOR).args(["query", "job", &ok.to_string()]).output().unwrap().stdout,
    )
    .into_owned();
    assert!(text.contains(&format!("numpy/{numpy}")) && text.contains("Python"), "{text}");

    // Killed by SIGKILL after importing numpy: what it imported is kept, and it never finished.
    let p = processes(killed);
    assert_eq!(p.len(), 1, "job {killed}: {p:#?}");
    assert_eq!(p[0]["ended"], "unfinished", "{p:#?}");
    assert!(strings(&p[0]["packages"]).iter().any(|s| s == "numpy" || s.starts_with("numpy/")), "{p:#?}");

    // Opted out, by the SPANK option and by the environment: nothing recorded.
    for j in [off_option, off_env] {
        assert_eq!(processes(j), Vec::<Value>::new(), "job {j} opted out");
        assert_eq!(query(&["jobs", "-j", &j.to_string()])[0]["packages"], serde_json::json!([]), "job {j}");
    }

    // Four tasks of one srun: rank 0 alone records.
    let p = processes(ranks);
    assert_eq!(p.len(), 1, "job {ranks}: four ranks, one record: {p:#?}");
    assert_eq!(p[0]["rank"], 0);

    // The user's own questions see it.
    let mine = json_as(USER, &format!("query packages -j {ok},{killed},{ranks}"));
    let numpy_row = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["package"] == "numpy" && r["version"] == numpy.as_str())
        .unwrap_or_else(|| panic!("{mine:#}"));
    assert_eq!(numpy_row["jobs"], 2, "the train.py job and the 4-rank job: {mine:#}");
    let who = json_as(USER, &format!("query who-used --python numpy/{numpy} -j {ok}"));
    assert_eq!(who.as_array().unwrap().len(), 1, "{who:#}");
    assert_eq!(who[0]["jobs"], 1);

    // The other user: the job reads as never recorded, and its packages are counted nowhere.
    let (code, out, err) = collector_as(USER2, &format!("query job {ok} --json"));
    assert_ne!(code, 0, "{USER2} read {USER}'s job: {out}");
    assert!(err.contains(&format!("no job {ok} is recorded")) && !out.contains("numpy"), "{err}{out}");
    assert_eq!(json_as(USER2, &format!("query packages -j {ok}")), serde_json::json!([]));
    assert_eq!(json_as(USER2, &format!("query who-used --python numpy -j {ok}")), serde_json::json!([]));
    let (code, out, _) = collector_as(USER2, &format!("query summary --by package -j {ok} --csv"));
    assert_eq!(code, 0);
    assert!(!out.contains("numpy"), "{USER2}'s summary: {out}");
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn two_venvs_with_two_versions_of_a_package_are_told_apart() {
    require_cluster();
    let tag = std::process::id();
    let dir = user_dir(USER, "python-venvs");
    let d = dir.to_string_lossy().into_owned();
    // Two venvs on Debian's python3 (so the hook reaches them through the system site-packages),
    // each with its own version of a small local package.
    let mut jobs = Vec::new();
    for major in [1, 2] {
        let venv = format!("{d}/venv{major}");
        let version = format!("{major}.0.{tag}");
        let setup = format!(
            "python3 -m venv --system-site-packages {v} && \
             site=$({v}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])') && \
             mkdir -p \"$site/rle2epkg\" && echo '__version__ = \"{version}\"' > \"$site/rle2epkg/__init__.py\"",
            v = shell_quote(&venv)
        );
        let out = as_user(USER, &setup);
        assert!(out.status.success(), "venv {major}: {}", String::from_utf8_lossy(&out.stderr));
        let script = format!("#!/bin/bash\n{}/bin/python -c 'import rle2epkg, numpy'\n", shell_quote(&venv));
        jobs.push((sbatch(USER, &format!("py-venv{major}"), &[], &script), venv, version));
    }
    for (j, _, _) in &jobs {
        finished(*j);
    }
    for (j, venv, version) in &jobs {
        let p = processes(*j);
        assert_eq!(p.len(), 1, "job {j}: {p:#?}");
        assert_eq!(p[0]["prefix"].as_str(), Some(venv.as_str()), "the venv is the prefix: {p:#?}");
        assert!(strings(&p[0]["packages"]).contains(&format!("rle2epkg/{version}")), "{p:#?}");
    }
    let ids = format!("{},{}", jobs[0].0, jobs[1].0);
    let who = query(&["who-used", "--python", "rle2epkg", "-j", &ids]);
    let rows: Vec<(String, u64)> = who
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["package"].as_str().unwrap().to_string(), r["jobs"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (format!("rle2epkg/1.0.{tag}"), 1),
            (format!("rle2epkg/2.0.{tag}"), 1),
            ("rle2epkg (all versions)".to_string(), 2)
        ],
        "{who:#}"
    );
}
