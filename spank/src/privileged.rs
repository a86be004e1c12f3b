//! Root's file work on the step's helper thread, done again when slurmstepd had lent the
//! thread to the job's user.
//!
//! Around the fork of the tasks slurmstepd takes the user's euid, egid and groups
//! (`_drop_privileges`, `seteuid`), and glibc changes the credentials of every thread of the
//! process, the helper thread's too. What the helper does then in root's directories (the spool,
//! the Python base) is refused with `EACCES` or `EPERM`, and would be lost: so it waits until
//! slurmstepd has its privileges back (a fraction of a millisecond) and tries again. Each try
//! must leave nothing half done that the next cannot clean up; the spool's atomic write and
//! [`crate::python::prepare`] both do.

use std::io;
use std::time::{Duration, Instant};

/// How long the helper waits for slurmstepd to be root again, in all.
pub const WAIT: Duration = Duration::from_millis(500);
/// Tries in all: a refusal while root is not the window's, and gets only the tries left.
const TRIES: u32 = 3;

/// `f()`, tried again after a refusal once the thread's euid is root again.
pub fn as_root<T>(f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    retry(f, || nix::unistd::geteuid().is_root(), WAIT)
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>, is_root: impl Fn() -> bool, wait: Duration) -> io::Result<T> {
    let deadline = Instant::now() + wait;
    let mut tries = 1;
    loop {
        let r = f();
        let refused = matches!(&r, Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)));
        if !refused || tries == TRIES {
            return r;
        }
        // The euid may be root again already: the refusal came in the window all the same.
        while !is_root() {
            if Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        tries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn refused() -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(libc::EACCES))
    }

    #[test]
    fn a_refusal_in_the_window_is_tried_again_once_root() {
        let (calls, checks) = (Cell::new(0), Cell::new(0));
        let got = retry(
            || {
                calls.set(calls.get() + 1);
                if calls.get() == 1 {
                    refused()
                } else {
                    Ok(7)
                }
            },
            || {
                checks.set(checks.get() + 1);
                checks.get() > 3 // the user's euid for three looks, then root's
            },
            Duration::from_secs(5),
        );
        assert_eq!(got.unwrap(), 7);
        assert_eq!((calls.get(), checks.get()), (2, 4));
    }

    #[test]
    fn other_errors_and_lasting_refusals_are_returned() {
        let calls = Cell::new(0);
        let got = retry(
            || -> io::Result<u32> {
                calls.set(calls.get() + 1);
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            },
            || true,
            Duration::from_secs(5),
        );
        assert_eq!(got.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(calls.get(), 1, "a full disk is not tried again");

        calls.set(0);
        let got = retry(
            || {
                calls.set(calls.get() + 1);
                refused()
            },
            || true,
            Duration::from_secs(5),
        );
        assert_eq!(got.unwrap_err().raw_os_error(), Some(libc::EACCES));
        assert_eq!(calls.get(), TRIES, "refused as root: a few tries, then the error");

        calls.set(0);
        let got = retry(
            || {
                calls.set(calls.get() + 1);
                refused()
            },
            || false,
            Duration::from_millis(5),
        );
        assert!(got.is_err());
        assert_eq!(calls.get(), 1, "never root again within the wait: the first error");
    }
}
