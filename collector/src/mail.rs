//! `runledger-mail`: slurmctld's `MailProg` that adds the job's efficiency report to the mail a
//! job with `--mail-type=END` (or FAIL, ALL) gets when it ends, like Princeton's jobstats and
//! slurm-mail do.
//!
//! slurmctld runs `MailProg -s SUBJECT RECIPIENT` as `SlurmUser`, with the job in its environment
//! (`SLURM_JOB_ID`, `SLURM_JOB_MAIL_TYPE`, `SLURM_ARRAY_JOB_ID`, `SLURM_ARRAY_TASK_ID`, …; the
//! subject's `Job_id=` when they are missing). For a mail that says the job ended (`Ended`,
//! `Failed`), runledger-mail asks the ledger for the report `runledger-seff` prints. slurmctld
//! mails as soon as the job ends, often before the nodes' epilogs delivered their records, so it
//! asks again until a node's end record is there, for at most `[mail] wait_s` seconds (30), then
//! sends the mail without the report, saying where to find it later. Other mails (`Began`,
//! `Requeued`, time-limit warnings) go out as Slurm wrote them. Mail goes through the system
//! MTA's `sendmail` (`[mail] sendmail`); its exit status is this program's.
//!
//! It reads the ledger as `collector query job ID --efficiency` does: directly as root, else
//! through the collector's socket, where `[collector] slurm_user` sees every job. So the
//! collector runs on the controller's host, or the mail says where to look.

use crate::cli::Failure;
use crate::seff::SeffCli;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG_ABOUT: &str = "\
slurmctld's MailProg (slurm.conf: MailProg=/usr/bin/runledger-mail): sends Slurm's job mail \
through the system MTA's sendmail, and adds to the mail of a job that ended (--mail-type=END, \
FAIL or ALL) its efficiency report from the runledger ledger, as runledger-seff prints it: CPU \
and memory efficiency, time used against the limit, the failure category with its evidence and \
a suggestion where the numbers call for one.\n\n\
slurmctld sends the mail as the job ends, often before the nodes' records reach the collector: \
runledger-mail asks again until a node's end record is there, for at most [mail] wait_s seconds \
(default 30), then mails without the report and says where to find it later (runledger-seff ID). \
Other mails (Began, Requeued, time limit warnings) are sent as Slurm wrote them.\n\n\
The job comes from the environment slurmctld gives (SLURM_JOB_ID, SLURM_JOB_MAIL_TYPE, \
SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID), else from the subject's Job_id=. It reads the ledger \
directly as root, else through the collector's local socket, where collector.slurm_user (the \
SlurmUser slurmctld runs this as) sees every job. Mail goes out through [mail] sendmail \
(default /usr/sbin/sendmail, as exim4 and postfix provide it); its exit status is this \
program's.";

/// `runledger-mail`'s command line: mail(1)'s, as slurmctld calls it.
#[derive(Parser, Debug)]
#[command(
    name = "runledger-mail",
    version,
    about = "slurmctld's MailProg: Slurm's job mail, with the job's efficiency report when it ended",
    long_about = LONG_ABOUT,
    after_help = "slurm.conf:\n  MailProg=/usr/bin/runledger-mail\n\nBy hand:\n  \
        SLURM_JOB_ID=1234 SLURM_JOB_MAIL_TYPE=Ended runledger-mail -s 'Slurm Job_id=1234 Ended' alice"
)]
pub struct MailCli {
    /// The subject (slurmctld's: "Slurm Job_id=1234 Name=run Ended, Run time 00:10:02, COMPLETED,
    /// ExitCode 0").
    #[arg(short = 's', value_name = "SUBJECT", default_value = "")]
    pub subject: String,

    /// Configuration file [default: $RUNLEDGER_CONF or /etc/runledger/runledger.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Who gets the mail (slurmctld: --mail-user, else the job's user).
    #[arg(value_name = "RECIPIENT", required = true)]
    pub recipients: Vec<String>,
}

/// The job a mail is about and whether it says the job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailJob {
    /// As `query job` takes it: `1234`, or `1300_7` for an array task.
    pub id: Option<String>,
    pub ended: bool,
}

/// Reads the job from slurmctld's environment (`var`), else from the subject.
pub fn job_of(var: impl Fn(&str) -> Option<String>, subject: &str) -> MailJob {
    let nonempty = |k: &str| var(k).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
    let from_env = match (nonempty("SLURM_ARRAY_JOB_ID"), nonempty("SLURM_ARRAY_TASK_ID")) {
        (Some(a), Some(t)) if a.bytes().all(|b| b.is_ascii_digit()) && t.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("{a}_{t}"))
        }
        _ => nonempty("SLURM_JOB_ID").filter(|j| j.bytes().all(|b| b.is_ascii_digit())),
    };
    // "Slurm Job_id=1234 Name=…", "Slurm Array Task Job_id=1300_7 (1307) Name=…"; an array's
    // summary ("Job_id=1300_*") names no one job.
    let from_subject = subject.split_whitespace().find_map(|w| w.strip_prefix("Job_id=")).filter(|id| {
        let (j, t) = id.split_once('_').unwrap_or((id, "0"));
        !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
    });
    let ended = match nonempty("SLURM_JOB_MAIL_TYPE") {
        Some(t) => matches!(t.as_str(), "Ended" | "Failed"),
        None => subject.contains(" Ended,") || subject.contains(" Failed,"),
    };
    MailJob { id: from_env.or(from_subject.map(str::to_string)), ended }
}

/// Asks for the job's report until a node's end record is there or `wait` has passed: the
/// report, or why there is none.
pub fn wait_for_report(config: &Option<PathBuf>, id: &str, wait: Duration) -> Result<String, String> {
    let deadline = Instant::now() + wait;
    let ask = |json: bool| -> Result<String, Failure> {
        let q = SeffCli { job: id.to_string(), cluster: None, json, config: config.clone(), database: None };
        let mut out = Vec::new();
        crate::seff::ask(&q, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let mut pause = Duration::from_millis(200);
    loop {
        // Newest record first: the job that just ended.
        let why = match ask(true) {
            Ok(j) => match serde_json::from_str::<serde_json::Value>(&j) {
                Ok(v) if v[0]["partial"] == false => break,
                Ok(_) => "no node has reported its end yet".to_string(),
                Err(e) => format!("the answer is not understood: {e}"),
            },
            Err(f) => f.msg.trim().trim_start_matches("collector: error: ").to_string(),
        };
        if Instant::now() >= deadline {
            return Err(why);
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    ask(false).map_err(|f| f.msg.trim().to_string())
}

/// The body of the mail: the report, or where to find it later.
pub fn body(id: &str, report: Result<String, String>, wait: Duration) -> String {
    match report {
        Ok(r) => {
            format!("{r}\n-- \nReport by the runledger job ledger; `runledger-seff {id}` prints this report again.\n")
        }
        Err(why) => format!(
            "runledger has no report of how job {id} used what it asked for yet ({why}; waited {} s).\n\
             Later: `runledger-seff {id}`, or `collector query job {id} --efficiency`, on the collector's host.\n",
            wait.as_secs()
        ),
    }
}

/// An RFC 5322 message: headers (the subject encoded when it is not ASCII), a blank line, the body.
pub fn message(subject: &str, recipients: &[String], body: &str) -> String {
    let subject = if subject.is_ascii() {
        subject.replace(['\r', '\n'], " ")
    } else {
        format!("=?UTF-8?B?{}?=", base64(subject.replace(['\r', '\n'], " ").as_bytes()))
    };
    let mut m = String::new();
    m.push_str(&format!("To: {}\n", recipients.join(", ")));
    m.push_str(&format!("Subject: {subject}\n"));
    m.push_str("Auto-Submitted: auto-generated\nMIME-Version: 1.0\n");
    m.push_str("Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n");
    m.push_str(body);
    m
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Hands `message` to `sendmail -oi -- RECIPIENT…`; its exit code.
pub fn send(sendmail: &std::path::Path, recipients: &[String], message: &str) -> Result<i32, String> {
    let mut child = Command::new(sendmail)
        .arg("-oi")
        .arg("--")
        .args(recipients)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", sendmail.display()))?;
    let wrote = child.stdin.take().map(|mut i| i.write_all(message.as_bytes())).unwrap_or(Ok(()));
    let status = child.wait().map_err(|e| format!("{}: {e}", sendmail.display()))?;
    wrote.map_err(|e| format!("writing to {}: {e}", sendmail.display()))?;
    Ok(status.code().unwrap_or(1))
}

/// The program's `main`.
pub fn main() -> i32 {
    let cli = MailCli::parse();
    let cfg = match crate::cli::load_config(&cli.config) {
        Ok(c) => c.mail,
        Err(f) => {
            // The mail still goes out, as Slurm wrote it, through the default sendmail.
            eprintln!("runledger-mail: {}", f.msg);
            runledger_record::config::MailConfig::default()
        }
    };
    let job = job_of(|k| std::env::var(k).ok(), &cli.subject);
    let wait = Duration::from_secs(cfg.wait_s);
    let text = match (&job.id, job.ended) {
        (Some(id), true) => body(id, wait_for_report(&cli.config, id, wait), wait),
        _ => String::new(),
    };
    match send(&cfg.sendmail, &cli.recipients, &message(&cli.subject, &cli.recipients, &text)) {
        Ok(0) => 0,
        Ok(code) => {
            eprintln!("runledger-mail: {} exited with {code}", cfg.sendmail.display());
            code
        }
        Err(e) => {
            eprintln!("runledger-mail: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn clap_definition_is_consistent_and_takes_slurms_argv() {
        MailCli::command().debug_assert();
        let c = MailCli::try_parse_from(["mail", "-s", "Slurm Job_id=5 Name=x Ended, Run time 00:00:01", "alice"]);
        let c = c.unwrap();
        assert_eq!(
            (c.subject.as_str(), c.recipients.as_slice()),
            ("Slurm Job_id=5 Name=x Ended, Run time 00:00:01", &["alice".to_string()][..])
        );
    }

    #[test]
    fn the_job_comes_from_slurmctlds_environment_else_the_subject() {
        let s = "Slurm Job_id=12 Name=run Ended, Run time 00:00:03, COMPLETED, ExitCode 0";
        assert_eq!(
            job_of(env(&[("SLURM_JOB_ID", "12"), ("SLURM_JOB_MAIL_TYPE", "Ended")]), s),
            MailJob { id: Some("12".into()), ended: true }
        );
        let arr = env(&[
            ("SLURM_JOB_ID", "1307"),
            ("SLURM_ARRAY_JOB_ID", "1300"),
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_JOB_MAIL_TYPE", "Failed"),
        ]);
        assert_eq!(job_of(arr, "x"), MailJob { id: Some("1300_7".into()), ended: true });
        assert_eq!(job_of(env(&[]), s), MailJob { id: Some("12".into()), ended: true });
        let t = "Slurm Array Task Job_id=1300_7 (1307) Name=run Failed, Run time 00:00:03, FAILED, ExitCode 1";
        assert_eq!(job_of(env(&[]), t), MailJob { id: Some("1300_7".into()), ended: true });
        let began = env(&[("SLURM_JOB_ID", "12"), ("SLURM_JOB_MAIL_TYPE", "Began")]);
        assert!(!job_of(began, "Slurm Job_id=12 Name=run Began, Queued time 00:00:01").ended);
        assert_eq!(job_of(env(&[]), "Slurm Array Summary Job_id=1300_* (1300) Name=run Ended, …").id, None);
    }

    #[test]
    fn the_message_holds_the_report_or_says_where_to_look() {
        let m = message(
            "Slurm Job_id=12 Ended",
            &["alice".into(), "bob@x".into()],
            &body("12", Ok("Job ID: 12\n".into()), Duration::from_secs(30)),
        );
        assert!(
            m.starts_with("To: alice, bob@x\nSubject: Slurm Job_id=12 Ended\nAuto-Submitted: auto-generated\n"),
            "{m}"
        );
        assert!(m.contains("\n\nJob ID: 12\n\n-- \nReport by the runledger job ledger; `runledger-seff 12`"), "{m}");
        let late = body("12", Err("no node has reported its end yet".into()), Duration::from_secs(30));
        assert!(
            late.contains("(no node has reported its end yet; waited 30 s)") && late.contains("`runledger-seff 12`"),
            "{late}"
        );
        assert_eq!(message("Jöb", &["a".into()], "").lines().nth(1), Some("Subject: =?UTF-8?B?SsO2Yg==?="));
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
    }
}
