//! After each job, for its user, on the real local cluster: a job submitted with
//! `--mail-type=END` gets Slurm's end-of-job mail through slurmctld's `MailProg`
//! (`runledger-mail`, which local-cluster configures) and the real local MTA (Debian's exim4,
//! local delivery to `/var/mail/rltest`), and the mail's body holds the job's efficiency report
//! and verdict, the same `runledger-seff ID` prints to the user. No mail is imitated: the test
//! reads the mailbox exim4 wrote.
//!
//! Slurm 22.05 only: the 24.11 controller runs in its Debian 13 root, where the host's
//! runledger-mail is not (local-cluster gives it `MailProg=/bin/true`).

use runledger_e2e::*;
use std::time::Duration;

const MAILBOX: &str = "/var/mail/rltest";

/// The message in the mailbox whose subject names job `id`, once exim4 delivered it.
fn mail_of(id: u32) -> String {
    wait_until(&format!("the mail of job {id} in {MAILBOX}"), Duration::from_secs(150), || {
        let text = std::fs::read_to_string(MAILBOX).ok()?;
        // mbox: each message starts with a "From " line.
        text.split("\nFrom ")
            .find(|m| m.contains(&format!("Job_id={id} ")) && m.contains("\nSubject: "))
            .map(str::to_string)
    })
}

/// `runledger-seff ID` as the job's user (through the collector's socket).
fn seff_as_user(id: u32) -> String {
    let out = as_user(USER, &format!("runledger-seff {id}"));
    assert!(out.status.success(), "runledger-seff {id} as {USER}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn a_job_with_mail_type_end_gets_its_efficiency_report_by_mail() {
    require_cluster();
    if slurm_release() != (22, 5) {
        eprintln!(
            "NOTE: Slurm {:?}: runledger-mail is not slurmctld's MailProg in the 24.11 root; skipped",
            slurm_release()
        );
        return;
    }
    let busy = "#!/bin/bash\nsrun bash -c 'x=0; for i in $(seq 1 200000); do x=$((x+i)); done; echo $x'\n";
    let ok = sbatch(USER, "mail-ok", &["--mail-type=END", "--mem=300M", "--time=5"], busy);
    let ledger_ok = finished(ok);

    let m = mail_of(ok);
    assert!(m.contains("\nTo: rltest"), "{m}");
    assert!(m.contains(&format!("Subject: Slurm Job_id={ok} Name=mail-ok Ended")), "{m}");
    for line in [
        format!("Job ID: {ok}\n"),
        "User/Group: rltest/".into(),
        "State: COMPLETED (exit code 0)\n".into(),
        "CPU Efficiency: ".into(),
        "Memory Utilized: ".into(),
        // 22.05: the batch node's epilog asked scontrol.
        "Time Limit: 00:05:00 (from scontrol)\n".into(),
        "Time Efficiency: ".into(),
        "Failure: none\n".into(),
        format!("`runledger-seff {ok}` prints this report again."),
    ] {
        assert!(m.contains(&line), "{line:?} not in the mail:\n{m}");
    }
    // The memory line says what the node recorded: S_JOB_ALLOC_MEM, when Slurm allocates memory.
    let detail = query(&["job", &ok.to_string()]);
    let alloc = detail[0]["node_records"][0]["alloc_mem_mb"].as_i64();
    match alloc {
        Some(mb) => {
            assert_eq!(mb, 300, "--mem=300M");
            assert!(m.contains("% of 300.00 MB\n"), "{m}");
        }
        None => assert!(m.contains("Memory Efficiency: not known (no memory allocation recorded"), "{m}"),
    }
    eprintln!("job {ok}: S_JOB_ALLOC_MEM recorded as {alloc:?} MiB; ledger row {}", ledger_ok["job_id"]);
    // The user gets the same report from runledger-seff.
    let report = seff_as_user(ok);
    assert!(m.contains(&report), "the mail holds runledger-seff's report:\n{report}\n---\n{m}");
}

/// A FAILED job (`exit 3`, `--mail-type=END,FAIL`) gets the mail too, with its state and verdict.
/// (In its first run, 2026-12-05, no mail came within 150 s and the test was set aside; on a
/// fresh cluster on 2026-12-06 the mail arrived in the second the job ended, in five runs in a
/// row, and the earlier miss was not seen again.)
#[test]
#[ignore = "needs the local cluster: packaging/local-cluster up"]
fn a_failed_jobs_mail_holds_its_verdict() {
    require_cluster();
    if slurm_release() != (22, 5) {
        eprintln!(
            "NOTE: Slurm {:?}: runledger-mail is not slurmctld's MailProg in the 24.11 root; skipped",
            slurm_release()
        );
        return;
    }
    let bad = sbatch(USER, "mail-bad", &["--mail-type=END,FAIL", "--time=5"], "#!/bin/bash\nexit 3\n");
    finished(bad);
    let m = mail_of(bad);
    for line in [format!("Job ID: {bad}\n"), "State: FAILED (exit code 3)\n".into(), "Failure: ".into()] {
        assert!(m.contains(&line), "{line:?} not in the mail:\n{m}");
    }
    assert!(!m.contains("Failure: none"), "a failed job's verdict: {m}");
}
