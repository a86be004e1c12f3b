//! How many connections are being served, against a limit: the TCP listener's
//! ([`crate::daemon::serve`]) and the query socket's ([`crate::daemon::local`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections being served, against a limit (the TCP listener's and the query socket's).
pub(crate) struct Slots {
    active: AtomicUsize,
    max: usize,
}

/// One connection's place among the [`Slots`], given back when dropped: when its thread ends,
/// panics, or could not be started.
pub(crate) struct Slot(Arc<Slots>);

impl Slots {
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots { active: AtomicUsize::new(0), max })
    }

    /// A place, or `None` when `max` connections are being served.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        if self.active.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
