//! A worker's lifecycle, named (Kafka Streams calls it
//! `StreamThread.State`): one enum with checked transitions, which the
//! status and readiness read, instead of flags set from several places.
//!
//! ```text
//! Created ─▶ Starting ─▶ Restoring ⇄ Running ─▶ PendingShutdown ─▶ Dead
//!                └────────────────────▲
//!   (every state but Dead) ─▶ Failed | Abandoned ─▶ Dead
//! ```
//!
//! `Starting` goes straight to `Running` on an empty assignment (more
//! workers than partitions). `Failed` and `Abandoned` commit nothing more:
//! a failed worker stops as a crash would, and so does one asked to.

use super::ProcessorError;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Built, not subscribed yet.
    #[default]
    Created,
    /// Subscribed (topics checked), waiting for the group's first
    /// assignment.
    Starting,
    /// Partitions assigned and being restored from the changelog (or
    /// taken over from another worker of the instance).
    Restoring,
    /// Partitions assigned (possibly none) and processed.
    Running,
    /// Asked to stop: commits what is done and leaves the group.
    PendingShutdown,
    /// A fatal error: commits nothing more, and the loop returns it.
    Failed,
    /// Stopping as a crash would: commits nothing more.
    Abandoned,
    /// Exited.
    Dead,
}

impl Phase {
    /// Whether `self -> next` is a transition of the lifecycle.
    pub fn can_become(self, next: Phase) -> bool {
        use Phase::*;
        match (self, next) {
            (Dead, _) => false,
            (Failed | Abandoned, Dead) => true,
            (Failed | Abandoned, _) => false,
            (_, Failed | Abandoned) => true,
            (Created, Starting)
            | (Starting, Restoring | Running)
            | (Restoring, Running)
            | (Running, Restoring)
            | (Starting | Restoring | Running, PendingShutdown)
            | (Created | PendingShutdown, Dead) => true,
            _ => false,
        }
    }

    /// Between start-up (subscribed) and exit, whatever its health.
    pub fn is_running(self) -> bool {
        !matches!(self, Phase::Created | Phase::Dead)
    }

    /// The group has given the worker an assignment (possibly empty).
    pub fn has_joined(self) -> bool {
        matches!(
            self,
            Phase::Restoring | Phase::Running | Phase::PendingShutdown
        )
    }

    /// The worker may still commit: it has neither failed nor been told to
    /// stop as a crash would.
    pub fn may_commit(self) -> bool {
        !matches!(self, Phase::Failed | Phase::Abandoned | Phase::Dead)
    }
}

/// A worker's phase, and the error that failed it until the loop takes it.
#[derive(Debug, Default)]
pub struct Lifecycle {
    phase: Phase,
    error: Option<ProcessorError>,
}

impl Lifecycle {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Moves to `next`. A transition the lifecycle does not have is a bug:
    /// it panics in debug builds and is ignored (and logged) in release
    /// builds, so that the worker's state never goes backwards.
    pub fn become_(&mut self, next: Phase) {
        if self.phase == next {
            return;
        }
        if self.phase.can_become(next) {
            self.phase = next;
        } else {
            debug_assert!(
                false,
                "no lifecycle transition {:?} -> {next:?}",
                self.phase
            );
            tracing::error!(from = ?self.phase, to = ?next, "no such lifecycle transition");
        }
    }

    /// A fatal error: the worker fails with the first one (later ones are
    /// consequences and dropped), unless it already stops.
    pub fn fail(&mut self, error: ProcessorError) {
        if self.phase.may_commit() {
            self.become_(Phase::Failed);
            self.error = Some(error);
        }
    }

    /// The error that failed the worker, once: the loop returns it.
    pub fn take_error(&mut self) -> Option<ProcessorError> {
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::Phase::*;
    use super::*;

    const ALL: [Phase; 8] = [
        Created,
        Starting,
        Restoring,
        Running,
        PendingShutdown,
        Failed,
        Abandoned,
        Dead,
    ];

    #[test]
    fn every_state_but_dead_reaches_dead_and_nothing_leaves_it() {
        for from in ALL {
            let reaches_dead = from.can_become(Dead)
                || ALL
                    .iter()
                    .any(|&via| from.can_become(via) && via.can_become(Dead));
            assert_eq!(reaches_dead, from != Dead, "{from:?}");
            assert!(ALL.iter().all(|&to| !Dead.can_become(to)));
        }
    }

    #[test]
    fn a_failed_or_abandoned_worker_never_commits_again() {
        for stopped in [Failed, Abandoned] {
            assert!(!stopped.may_commit());
            for to in ALL {
                assert_eq!(stopped.can_become(to), to == Dead, "{stopped:?} -> {to:?}");
            }
        }
        assert!([Starting, Restoring, Running, PendingShutdown]
            .iter()
            .all(|p| p.may_commit()));
    }

    #[test]
    fn the_usual_life_and_a_rebalance() {
        let mut l = Lifecycle::default();
        for next in [
            Starting,
            Restoring,
            Running,
            Restoring,
            Running,
            PendingShutdown,
            Dead,
        ] {
            l.become_(next);
            assert_eq!(l.phase(), next);
        }
    }

    #[test]
    fn the_first_failure_is_kept_and_taken_once() {
        let mut l = Lifecycle::default();
        l.become_(Starting);
        l.fail(ProcessorError::MissingTopics {
            topics: vec!["a".into()],
        });
        l.fail(ProcessorError::MissingTopics {
            topics: vec!["b".into()],
        });
        assert_eq!(l.phase(), Failed);
        let first = l.take_error().expect("the failure");
        assert!(first.to_string().contains('a'), "{first}");
        assert!(l.take_error().is_none());
        l.become_(Dead);
        assert_eq!(l.phase(), Dead);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "no lifecycle transition")]
    fn a_transition_the_lifecycle_lacks_is_a_bug() {
        let mut l = Lifecycle::default();
        l.become_(Running);
    }
}
