//! `runledger-mail` as slurmctld runs it (argv `-s SUBJECT USER`, the job in its environment),
//! on a real ledger file, with a `sendmail` that keeps what it is given. The real MTA is
//! tests/e2e_mail.rs's (exim4 on the local cluster).

use runledger_record::{Item, LimitSource, TimeLimit};
use runledger_synth::Sample;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

const MAIL: &str = env!("CARGO_BIN_EXE_runledger-mail");
const T0: i64 = 1_700_000_000;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// A ledger holding job 21 (it asked for 8 GiB and an hour), a config pointing at it, and a
    /// sendmail that writes its arguments and its input to files.
    fn new(wait_s: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let mut s = Sample::new("tc", 21, T0);
        s.duration = 600;
        let mut b = s.batch(0);
        for item in &mut b.items {
            if let Item::JobEnd(j) = item {
                j.alloc_mem_mb = Some(8192);
                j.time_limit = Some(TimeLimit { seconds: Some(3600), source: LimitSource::Environment });
            }
        }
        let conn = runledger_ledger::db::open_rw(&db).unwrap();
        runledger_ledger::merge::apply_group(&conn, &[&b], T0 + 700).unwrap()[0].as_ref().unwrap();
        let sendmail = dir.path().join("sendmail");
        std::fs::write(
            &sendmail,
            format!("#!/bin/sh\necho \"$@\" > {0}/argv\ncat > {0}/message\n", dir.path().display()),
        )
        .unwrap();
        std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("runledger.toml"),
            format!(
                "[collector]\ndatabase = \"{}\"\nsocket = \"{}/none.sock\"\n[mail]\nwait_s = {wait_s}\nsendmail = \"{}\"\n",
                db.display(),
                dir.path().display(),
                sendmail.display()
            ),
        )
        .unwrap();
        Setup { dir }
    }

    fn mail(&self, env: &[(&str, &str)], subject: &str) -> (i32, String, String, String) {
        let out = Command::new(MAIL)
            .arg0_mail()
            .args(["-s", subject, "alice"])
            .env("RUNLEDGER_CONF", self.dir.path().join("runledger.toml"))
            .env_remove("SLURM_JOB_ID")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        (out.status.code().unwrap_or(-1), read("argv"), read("message"), String::from_utf8_lossy(&out.stderr).into())
    }
}

trait Arg0 {
    fn arg0_mail(&mut self) -> &mut Self;
}

impl Arg0 for Command {
    /// slurmctld calls its MailProg with argv[0] "mail".
    fn arg0_mail(&mut self) -> &mut Self {
        std::os::unix::process::CommandExt::arg0(self, "mail")
    }
}

#[test]
fn an_ended_jobs_mail_carries_its_report() {
    let s = Setup::new(30);
    let subject = "Slurm Job_id=21 Name=run Ended, Run time 00:10:00, COMPLETED, ExitCode 0";
    let (code, argv, msg, err) = s.mail(&[("SLURM_JOB_ID", "21"), ("SLURM_JOB_MAIL_TYPE", "Ended")], subject);
    assert_eq!(code, 0, "{err}");
    assert_eq!(argv.trim(), "-oi -- alice");
    assert!(msg.starts_with(&format!("To: alice\nSubject: {subject}\n")), "{msg}");
    for line in [
        "\n\nJob ID: 21\n",
        "State: COMPLETED (exit code 0)\n",
        "Memory Efficiency: 11.92% of 8.00 GB\n",
        "Time Limit: 01:00:00 (from environment)\n",
        "Time Efficiency: 16.67% of 01:00:00 time limit\n",
        "Failure: none\n",
        "Suggestion: asked 8.00 GB per node, peak 976.56 MB: --mem=2G\n",
        "`runledger-seff 21` prints this report again.",
    ] {
        assert!(msg.contains(line), "{line:?} not in:\n{msg}");
    }
}

#[test]
fn a_job_not_recorded_in_time_gets_its_mail_saying_where_to_look() {
    let s = Setup::new(1);
    let t = Instant::now();
    let (code, _, msg, err) =
        s.mail(&[("SLURM_JOB_ID", "22"), ("SLURM_JOB_MAIL_TYPE", "Failed")], "Slurm Job_id=22 Name=x Failed, …");
    assert_eq!(code, 0, "{err}");
    let waited = t.elapsed().as_secs_f64();
    assert!((0.9..10.0).contains(&waited), "waited {waited} s for a 1 s bound");
    assert!(
        msg.contains(
            "runledger has no report of how job 22 used what it asked for yet (no job 22 is recorded; waited 1 s)"
        ),
        "{msg}"
    );
    assert!(msg.contains("Later: `runledger-seff 22`"), "{msg}");
}

#[test]
fn other_mails_go_out_as_slurm_wrote_them() {
    let s = Setup::new(30);
    let t = Instant::now();
    let (code, _, msg, _) = s.mail(
        &[("SLURM_JOB_ID", "21"), ("SLURM_JOB_MAIL_TYPE", "Began")],
        "Slurm Job_id=21 Name=run Began, Queued time 00:00:01",
    );
    assert_eq!(code, 0);
    assert!(t.elapsed().as_secs() < 10, "a Began mail does not wait");
    assert!(msg.ends_with("Content-Transfer-Encoding: 8bit\n\n"), "no body added: {msg}");
}

#[test]
fn sendmails_failure_is_the_exit_status() {
    let s = Setup::new(1);
    let conf = s.dir.path().join("runledger.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace(&s.dir.path().join("sendmail").display().to_string(), "/nonexistent/sendmail"))
        .unwrap();
    let (code, _, _, err) = s.mail(&[("SLURM_JOB_MAIL_TYPE", "Began")], "x");
    assert_eq!(code, 1);
    assert!(err.contains("cannot run /nonexistent/sendmail"), "{err}");
}
