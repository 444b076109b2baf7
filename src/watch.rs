//! A value shared between a worker thread and whoever watches it (tests,
//! the HTTP API), with a wait for a condition on it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A shared `T` with change notification.
#[derive(Debug, Default)]
pub struct Watch<T>(Arc<(Mutex<T>, Condvar)>);

impl<T> Clone for Watch<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Clone + Default> Watch<T> {
    /// A copy of the current value.
    pub fn get(&self) -> T {
        self.0 .0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `done` holds for the value, up to `timeout`; returns
    /// whether it does.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&T) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.0;
        let Ok(mut value) = lock.lock() else {
            return false;
        };
        loop {
            if done(&value) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            value = match changed.wait_timeout(value, left) {
                Ok((v, _)) => v,
                Err(_) => return false,
            };
        }
    }

    /// Changes the value and wakes the waiters.
    pub(crate) fn update(&self, change: impl FnOnce(&mut T)) {
        if let Ok(mut value) = self.0 .0.lock() {
            change(&mut value);
        }
        self.0 .1.notify_all();
    }
}
