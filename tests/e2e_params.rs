//! End to end on the real local cluster: the parameters behind the runs. Real LAMMPS runs
//! (Debian's `lmp`) under two `pair_style` settings and two rank counts: the epilog reads each
//! job's input file as the user and the ledger carries `param.pair_style` (and the rest) as a
//! job-level fact. The inputs of the mpirun jobs are found by their name (`in.x`: mpirun inside
//! the batch script is not a step, so its argv is not seen); the srun job's input has a name no
//! format knows and is found only through the step's argv (`lmp -in melt.txt`). Run by
//! `packaging/run-tests` after `packaging/local-cluster up`.

use runledger_e2e::*;
use serde_json::Value;

/// A small Lennard-Jones melt, as in LAMMPS's examples/melt; `{PAIR}` is the pair style and its
/// coefficients.
const MELT: &str = "units lj\natom_style atomic\nlattice fcc 0.8442\nregion box block 0 8 0 8 0 8\n\
create_box 1 box\ncreate_atoms 1 box\nmass 1 1.0\nvelocity all create 3.0 87287 loop geom\n\
{PAIR}\nneighbor 0.3 bin\nneigh_modify every 20 delay 0 check no\n\
fix 1 all nve\nthermo 50\nrun 200\n";

const LJ: &str = "pair_style lj/cut 2.5\npair_coeff 1 1 1.0 1.0 2.5";
const SOFT: &str = "pair_style soft 1.0\npair_coeff * * 10.0";

fn input(pair: &str) -> String {
    MELT.replace("{PAIR}", pair)
}

fn submit(name: &str, ranks: u32, script: &str) -> u32 {
    let dir = user_dir(USER, name);
    let d = dir.to_string_lossy().into_owned();
    let n = ranks.to_string();
    sbatch_after(USER, "module load lammps/20220106", name, &["-D", d.as_str(), "-n", n.as_str()], script)
}

fn mpirun_job(name: &str, pair: &str, ranks: u32) -> u32 {
    let script =
        format!("#!/bin/bash\ncat > in.x <<'IN'\n{}IN\nmpirun -np {ranks} lmp -in in.x -log log.lammps\n", input(pair));
    submit(name, ranks, &script)
}

/// The job-level facts of a ledger row (`query jobs --json`'s `job_facts`).
fn job_fact(row: &Value, key: &str) -> Option<String> {
    row["job_facts"][key].as_str().map(str::to_string)
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn lammps_pair_style_and_ranks_become_job_facts() {
    require_cluster();
    let runs = [
        ("params-lj-1", LJ, 1, "lj/cut"),
        ("params-lj-2", LJ, 2, "lj/cut"),
        ("params-soft-1", SOFT, 1, "soft"),
        ("params-soft-2", SOFT, 2, "soft"),
    ];
    let ids: Vec<(u32, &str, u32, &str)> =
        runs.iter().map(|(name, pair, ranks, style)| (mpirun_job(name, pair, *ranks), *name, *ranks, *style)).collect();
    // The srun step names its input; its name (melt.txt) is no format's.
    let srun_script =
        format!("#!/bin/bash\ncat > melt.txt <<'IN'\n{}IN\nsrun -n 1 lmp -in melt.txt -log log.lammps\n", input(SOFT));
    let srun_id = submit("params-srun", 1, &srun_script);

    for (id, name, ranks, style) in &ids {
        let row = finished(*id);
        let out = output_of(USER, &format!("{name}/{name}"), *id);
        assert_eq!(row["state"], "COMPLETED", "{row:#}\n{out}");
        assert_eq!(job_fact(&row, "param.pair_style").as_deref(), Some(*style), "{:#}", row["job_facts"]);
        assert_eq!(job_fact(&row, "param.units").as_deref(), Some("lj"));
        assert_eq!(job_fact(&row, "param.fix").as_deref(), Some("nve"));
        assert_eq!(job_fact(&row, "param.run").as_deref(), Some("200"));
        assert_eq!(job_fact(&row, "mpi_ranks"), Some(ranks.to_string()), "{:#}", row["job_facts"]);
    }
    queries_group_and_filter_by_the_parameter(&ids);

    let row = finished(srun_id);
    assert_eq!(job_fact(&row, "param.pair_style").as_deref(), Some("soft"), "argv-named input: {:#}", row["job_facts"]);
    let d = job_detail(srun_id);
    let rows = d["fact_rows"].as_array().or(d["facts"].as_array()).cloned().unwrap_or_default();
    assert!(
        rows.iter()
            .any(|f| f["key"] == "param.pair_style" && f["source"].as_str().is_some_and(|s| s.ends_with("/melt.txt"))),
        "the per-file fact names melt.txt: {rows:#?}"
    );
}

/// `query summary` and `query efficiency` group by the parameter (`--by fact:NAME`) and `query
/// jobs --fact NAME=VALUE` filters on it, over the four mpirun jobs (`-j`: the ledger holds other
/// tests' LAMMPS runs). Ranks come from the `mpi_ranks` fact: mpirun inside the batch script is no
/// Slurm step, so the `ranks` key (the steps' task counts) does not see them.
fn queries_group_and_filter_by_the_parameter(ids: &[(u32, &str, u32, &str)]) {
    let jobs = ids.iter().map(|(id, ..)| id.to_string()).collect::<Vec<_>>().join(",");
    let summary = query(&["summary", "-j", &jobs, "--by", "fact:param.pair_style,fact:mpi_ranks"]);
    let mut groups: Vec<(String, String, i64)> = summary
        .as_array()
        .unwrap_or_else(|| panic!("summary: {summary:#}"))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().map(str::to_string).unwrap_or_else(|| r[k].to_string());
            (s("fact:param.pair_style"), s("fact:mpi_ranks"), r["jobs"].as_i64().unwrap_or(-1))
        })
        .collect();
    groups.sort();
    let want: Vec<(String, String, i64)> = [("lj/cut", "1"), ("lj/cut", "2"), ("soft", "1"), ("soft", "2")]
        .iter()
        .map(|(p, r)| (p.to_string(), r.to_string(), 1))
        .collect();
    assert_eq!(groups, want, "{summary:#}");

    let eff = query(&["efficiency", "-j", &jobs, "--by", "fact:param.pair_style"]);
    let mut groups: Vec<(String, i64)> = eff["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("efficiency: {eff:#}"))
        .iter()
        .map(|g| (g["fact:param.pair_style"].as_str().unwrap_or("?").to_string(), g["jobs"].as_i64().unwrap_or(-1)))
        .collect();
    groups.sort();
    assert_eq!(groups, vec![("lj/cut".to_string(), 2), ("soft".to_string(), 2)], "{eff:#}");

    let lj = query(&["jobs", "-j", &jobs, "--fact", "param.pair_style=lj/cut"]);
    let mut got: Vec<u64> = lj.as_array().unwrap().iter().filter_map(|j| j["job_id"].as_u64()).collect();
    got.sort();
    let mut want: Vec<u64> = ids.iter().filter(|i| i.3 == "lj/cut").map(|i| u64::from(i.0)).collect();
    want.sort();
    assert_eq!(got, want, "{lj:#}");
    // Repeated --fact: all must hold.
    let lj2 = query(&["jobs", "-j", &jobs, "--fact", "param.pair_style=lj/cut", "--fact", "mpi_ranks=2"]);
    let got: Vec<u64> = lj2.as_array().unwrap().iter().filter_map(|j| j["job_id"].as_u64()).collect();
    let want: Vec<u64> = ids.iter().filter(|i| i.3 == "lj/cut" && i.2 == 2).map(|i| u64::from(i.0)).collect();
    assert_eq!(got, want, "{lj2:#}");
}
