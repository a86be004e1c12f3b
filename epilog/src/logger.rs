//! A small `log::Log`: syslog (facility daemon, ident `runledger-epilog`, with the pid) by
//! default, stderr when asked (`--stderr`, `--dry-run`, or `log = "stderr"` in the config).

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::syslog;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

struct EpilogLogger {
    stderr: AtomicBool,
}

static LOGGER: EpilogLogger = EpilogLogger { stderr: AtomicBool::new(false) };

/// Installs the logger (once per process). Messages up to `info` are kept.
pub fn init(to_stderr: bool) {
    LOGGER.stderr.store(to_stderr, Ordering::Relaxed);
    // The ident is 'static, as openlog requires (it keeps the pointer).
    let _ = syslog::openlog(Some(c"runledger-epilog"), syslog::LogFlags::LOG_PID, syslog::Facility::LOG_DAEMON);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Switches between syslog and stderr (the config is read after the logger starts).
pub fn use_stderr(to_stderr: bool) {
    LOGGER.stderr.store(to_stderr, Ordering::Relaxed);
}

impl Log for EpilogLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        if self.stderr.load(Ordering::Relaxed) {
            // One write per line, so concurrent runs do not interleave within a line.
            let line = format!("runledger-epilog: {}: {msg}\n", r.level().as_str().to_lowercase());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            return;
        }
        let severity = match r.level() {
            Level::Error => syslog::Severity::LOG_ERR,
            Level::Warn => syslog::Severity::LOG_WARNING,
            Level::Info => syslog::Severity::LOG_INFO,
            Level::Debug | Level::Trace => syslog::Severity::LOG_DEBUG,
        };
        // nix passes the message as the argument of a constant "%s"; a NUL would cut it short.
        let _ = syslog::syslog(severity, msg.replace('\0', "\\0").as_str());
    }

    fn flush(&self) {}
}
