//! Logging to Slurm's log (slurmd log in slurmstepd, the terminal in srun/sbatch).
//!
//! Every message is prefixed `runledger: `. The unit tests capture messages per thread instead.

pub use crate::host::Level;

pub fn error(msg: &str) {
    emit(Level::Error, msg);
}

#[allow(dead_code)] // nothing is worth info-level noise in slurmd.log today
pub fn info(msg: &str) {
    emit(Level::Info, msg);
}

pub fn verbose(msg: &str) {
    emit(Level::Verbose, msg);
}

pub fn debug(msg: &str) {
    emit(Level::Debug, msg);
}

#[cfg(not(test))]
fn emit(level: Level, msg: &str) {
    crate::ffi::log(level, &format!("runledger: {msg}"));
}

#[cfg(test)]
thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn emit(level: Level, msg: &str) {
    CAPTURED.with(|c| c.borrow_mut().push((level, format!("runledger: {msg}"))));
}

/// The messages this thread logged since the last call.
#[cfg(test)]
pub fn take() -> Vec<(Level, String)> {
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}
