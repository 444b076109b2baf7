//! How every long-running part of earlykill is asked to stop.
//!
//! One [`Shutdown`] handle is shared between whoever decides to stop (the
//! signal handler, a test, the demo) and the workers that check it at a
//! point where stopping is safe. Its state only moves forward:
//!
//! ```text
//! Running ──drain──▶ Draining
//!    │                  │
//!    └─────abandon──────┴──▶ Abandoned   (test-hooks only)
//! ```
//!
//! `Draining` asks for a clean stop: commit what is done, leave the group,
//! close connections. `Abandoned` stops the way a crash would, committing
//! nothing more; it exists for fault-injection tests and can only be
//! reached with the `test-hooks` cargo feature, which production builds do
//! not enable.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Where a [`Shutdown`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Keep going.
    Running,
    /// Stop cleanly: commit what is done, then return.
    Draining,
    /// Stop at once, committing nothing, as a crash would.
    Abandoned,
}

impl State {
    const fn code(self) -> u8 {
        match self {
            State::Running => 0,
            State::Draining => 1,
            State::Abandoned => 2,
        }
    }

    const fn from_code(code: u8) -> State {
        match code {
            0 => State::Running,
            1 => State::Draining,
            _ => State::Abandoned,
        }
    }
}

/// A stop request shared between threads. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicU8>);

impl Shutdown {
    /// A handle in [`State::Running`].
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks for a clean stop. Does nothing once stopping.
    pub fn drain(&self) {
        let _ = self.0.compare_exchange(
            State::Running.code(),
            State::Draining.code(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Stops at once, committing nothing, as a crash would: the open
    /// transaction is left for the broker to abort or for the next instance
    /// with this transactional id to fence. For fault-injection tests.
    #[cfg(feature = "test-hooks")]
    pub fn abandon(&self) {
        self.0.store(State::Abandoned.code(), Ordering::Release);
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::from_code(self.0.load(Ordering::Acquire))
    }

    /// True once a stop was asked for, clean or not.
    pub fn is_stopping(&self) -> bool {
        self.state() != State::Running
    }

    /// Drains on SIGTERM or Ctrl-C, watched from a thread of its own.
    pub fn drain_on_signal(&self) -> std::io::Result<()> {
        let shutdown = self.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(signalled());
                shutdown.drain();
            })?;
        Ok(())
    }
}

/// Resolves on SIGTERM (how orchestrators stop a pod) or Ctrl-C.
pub async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_is_seen_by_every_clone_and_does_not_undo_itself() {
        let shutdown = Shutdown::new();
        let worker = shutdown.clone();
        assert_eq!(worker.state(), State::Running);
        assert!(!worker.is_stopping());
        shutdown.drain();
        shutdown.drain();
        assert_eq!(worker.state(), State::Draining);
        assert!(worker.is_stopping());
    }

    #[cfg(feature = "test-hooks")]
    #[test]
    fn an_abandon_overrides_a_drain_and_a_later_drain_does_not_undo_it() {
        let shutdown = Shutdown::new();
        shutdown.drain();
        shutdown.abandon();
        shutdown.drain();
        assert_eq!(shutdown.state(), State::Abandoned);
    }
}
