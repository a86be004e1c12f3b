//! The job's time limit, for the efficiency report: from a step's environment when the release
//! puts it there (23.02+), else asked once of slurmctld by the batch node's epilog.
//!
//! Asking is bounded ([`SCONTROL_BOUND`], and never more than a quarter of what is left of the
//! epilog's budget): a slow or absent slurmctld costs the epilog that, and the record then says
//! why the limit is missing. Only one node asks (the one that ran the batch step, or the first
//! node of a job without one), so a thousand-node job costs slurmctld one RPC, not a thousand.
//! slurmd gives the Epilog no PATH: scontrol is looked for in the usual places.

use runledger_record::limits::limit_from_scontrol;
use runledger_record::TimeLimit;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where scontrol is looked for, in order (Debian/RPM packages, source installs, OpenHPC).
pub const SCONTROL_PATHS: [&str; 4] =
    ["/usr/bin/scontrol", "/usr/local/bin/scontrol", "/opt/slurm/bin/scontrol", "/opt/ohpc/pub/slurm/bin/scontrol"];

/// Longest wait for scontrol's answer (slurmctld answers a local `show job` in milliseconds).
pub const SCONTROL_BOUND: Duration = Duration::from_millis(1500);

/// Most bytes of scontrol's answer read (one job's line is a few KiB).
const MAX_ANSWER: u64 = 256 * 1024;

/// Asks slurmctld for the job's time limit (no step's environment gave it): the limit, or why
/// there is none. `scontrol` is `[epilog] scontrol`: empty looks in [`SCONTROL_PATHS`], `none`
/// does not ask.
pub fn ask_time_limit(job_id: u32, scontrol: &str, deadline: Instant) -> (Option<TimeLimit>, Option<String>) {
    let exe = match scontrol.trim() {
        "none" => return (None, Some("not asked ([epilog] scontrol = \"none\")".into())),
        "" => match SCONTROL_PATHS.iter().map(Path::new).find(|p| p.is_file()) {
            Some(p) => p.to_path_buf(),
            None => return (None, Some(format!("scontrol not found (looked in {})", SCONTROL_PATHS.join(", ")))),
        },
        p => PathBuf::from(p),
    };
    let bound = SCONTROL_BOUND.min(deadline.saturating_duration_since(Instant::now()) / 4);
    match ask_scontrol(&exe, job_id, bound) {
        Ok(l) => (Some(l), None),
        Err(e) => {
            log::warn!("job {job_id}: time limit unknown: {e}");
            (None, Some(e))
        }
    }
}

/// `EXE show job -o JOB_ID`, killed if it has not exited within `bound`; its `TimeLimit=`.
pub fn ask_scontrol(exe: &Path, job_id: u32, bound: Duration) -> Result<TimeLimit, String> {
    let mut cmd = Command::new(exe);
    cmd.args(["show", "job", "-o", &job_id.to_string()]);
    ask(cmd, &format!("{} show job -o {job_id}", exe.display()), bound)
}

/// Runs `cmd` (an scontrol call, described by `what`) within `bound`; the `TimeLimit=` it prints.
fn ask(mut cmd: Command, what: &str, bound: Duration) -> Result<TimeLimit, String> {
    let until = Instant::now() + bound;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    // Read on a helper thread so that a hung scontrol costs `bound`, not the epilog.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let reader = std::thread::Builder::new().name("runledger-scontrol".into()).spawn(move || {
        let mut text = Vec::new();
        for r in
            [out.map(|o| Box::new(o) as Box<dyn Read>), err.map(|e| Box::new(e) as Box<dyn Read>)].into_iter().flatten()
        {
            let _ = r.take(MAX_ANSWER).read_to_end(&mut text);
        }
        let _ = tx.send(text);
    });
    if let Err(e) = reader {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{what}: cannot start a reader thread: {e}"));
    }
    let text = rx.recv_timeout(until.saturating_duration_since(Instant::now()));
    // Its output closed, the child is exiting: reap it (its status says whether it failed),
    // and past the bound kill it.
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if text.is_ok() && Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = match text {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(_) => return Err(format!("{what} did not answer within {} ms", bound.as_millis())),
    };
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
    limit_from_scontrol(&text).map_err(|e| match status {
        Some(st) if !st.success() => format!("{what} failed ({st}): {first}"),
        _ => format!("{what}: {e}: {first}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_record::LimitSource;

    /// A stand-in scontrol: `sh -c SCRIPT scontrol show job -o 42`. Run by sh rather than exec'd
    /// from a file just written, which another test thread's fork could hold open (ETXTBSY).
    fn fake_scontrol(script: &str, bound: Duration) -> Result<TimeLimit, String> {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script, "scontrol", "show", "job", "-o", "42"]);
        ask(cmd, "fake scontrol", bound)
    }

    #[test]
    fn scontrol_answer_gives_the_limit() {
        let l = fake_scontrol(
            r#"[ "$1 $2 $3 $4" = "show job -o 42" ] || exit 9
echo "JobId=42 JobName=x JobState=COMPLETED RunTime=00:00:03 TimeLimit=1-00:00:00 TimeMin=N/A""#,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(l, TimeLimit { seconds: Some(86_400), source: LimitSource::Scontrol });
    }

    #[test]
    fn scontrol_error_is_said_not_guessed() {
        let e = fake_scontrol(
            "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.contains("failed") && e.contains("Invalid job id specified"), "{e}");
    }

    #[test]
    fn hung_scontrol_is_killed_at_the_bound() {
        // exec: the shell becomes the sleep, so killing the child ends it.
        let e = fake_scontrol("exec sleep 600", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not answer within 200 ms"), "{e}");
    }

    #[test]
    fn not_asking_or_no_scontrol_says_why() {
        let soon = Instant::now() + Duration::from_secs(30);
        let (l, why) = ask_time_limit(1, "none", soon);
        assert_eq!(l, None);
        assert!(why.unwrap().contains("not asked"));
        let (l, why) = ask_time_limit(1, "/nonexistent/scontrol", soon);
        assert_eq!(l, None);
        assert!(why.unwrap().contains("/nonexistent/scontrol"));
    }
}
