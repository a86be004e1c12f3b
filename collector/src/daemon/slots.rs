//! How many connections are being served, against a limit: the TCP listener's
//! ([`crate::daemon::serve`]) and the query socket's ([`crate::daemon::local`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

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

/// Places that a thread may wait for, until a deadline: the collector's verification of
/// credentials by munged and the [`Slots`]-like places of authenticated requests during a storm,
/// when refusing at once would only make the epilogs come back later.
pub(crate) struct Queue {
    active: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// One place in a [`Queue`], given back when dropped.
pub(crate) struct Place(Arc<Queue>);

impl Queue {
    pub(crate) fn new(max: usize) -> Arc<Queue> {
        Arc::new(Queue { active: Mutex::new(0), freed: Condvar::new(), max: max.max(1) })
    }

    /// A place, waiting for one until `deadline`; `None` if none was free by then.
    pub(crate) fn take_until(self: &Arc<Self>, deadline: Instant) -> Option<Place> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        while *active >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            active = self.freed.wait_timeout(active, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *active += 1;
        Some(Place(self.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        *self.0.active.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}
