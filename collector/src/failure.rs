//! Why a command failed, and the one way every command prints ([`write_out`]): shared by the
//! questions, the daemon and the command line, so it sits below all three.

use std::io::Write;

/// Why a command failed: a runtime failure is printed as `collector: error: …` (exit code 1); a
/// usage error found after parsing (a bad combination of values) is reported like clap's own
/// (exit code 2). Never `exit()` below `main`: the daemon runs these commands for its socket's
/// clients, and one bad request must not end it.
#[derive(Debug)]
pub struct Failure {
    pub msg: String,
    pub kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `collector: error: …`, exit code 1.
    Runtime,
    /// Reported like clap's own errors, exit code 2.
    Usage,
    /// The collector daemon already formatted it (a query through its socket): printed as is,
    /// with the daemon's exit code.
    Relayed(i32),
}

impl Failure {
    pub fn new(msg: impl Into<String>) -> Self {
        Failure { msg: msg.into(), kind: FailureKind::Runtime }
    }

    pub fn usage(msg: impl std::fmt::Display) -> Self {
        Failure { msg: msg.to_string(), kind: FailureKind::Usage }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::new(s)
    }
}

/// Writes a command's output: what every command prints goes through here.
pub fn write_out(out: &mut dyn Write, s: impl AsRef<[u8]>) -> Result<(), Failure> {
    output_written(out.write_all(s.as_ref()).and_then(|_| out.flush()))
}

/// What writing a command's output came to, for output written piece by piece (or through
/// [`write_out`]).
pub fn output_written(written: std::io::Result<()>) -> Result<(), Failure> {
    match written {
        Ok(()) => Ok(()),
        // `collector query … | head`: the reader left, nothing to complain about.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(format!("writing the output: {e}"))),
    }
}
