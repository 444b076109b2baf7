//! What the fold reports: each event's outcome, running counts, memory
//! and a session's figures.

use crate::event::{Millis, SessionState};

use super::rule;

/// What applying one event did, for the shell's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A VariantPosted started a session.
    Started,
    /// A VariantPosted for a variant whose session is active: ignored.
    DuplicatePost,
    /// An interaction was counted and the session goes on.
    Counted,
    /// An interaction was counted and crossed the kill threshold.
    Killed,
    /// A stop command ended the session.
    Stopped,
    /// An interaction for a variant not posted yet is held.
    Held,
    /// An interaction for a variant not posted yet that already holds
    /// `hold_per_variant` interactions: dropped.
    HoldRefused,
    /// A VariantPosted when the partition already remembers `max_sessions`
    /// sessions: nothing started; the shell dead-letters the record.
    SessionLimit,
    /// The event's session has ended: nothing changed.
    Late,
    /// A stop command for a variant with no session: ignored.
    UnknownVariant,
    /// The event's variant is outside the hold-out share of a monitor
    /// that folds only that share (the `holdout` shadow policy): only its
    /// time counted.
    Excluded,
    /// The event cannot be applied (empty or oversized id, negative count);
    /// validation should have stopped it before the fold.
    Rejected,
}

/// Running counts of what the fold has done, for metrics. Not part of the
/// changelog: a restored monitor starts from zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Sessions started.
    pub started: u64,
    /// Sessions killed by the rule.
    pub killed: u64,
    /// Sessions that reached their deadline.
    pub timed_out: u64,
    /// Sessions stopped by a command.
    pub stopped: u64,
    /// VariantPosted events for an active session (ignored).
    pub duplicate_posts: u64,
    /// Events for ended or forgotten sessions (ignored).
    pub late: u64,
    /// Interactions held because their post had not arrived.
    pub held: u64,
    /// Held interactions applied when their post arrived.
    pub held_applied: u64,
    /// Held interactions dropped after the grace period.
    pub held_expired: u64,
    /// Held interactions dropped because the buffer was full.
    pub held_evicted: u64,
    /// Interactions not held because their variant held the most it may.
    pub held_refused: u64,
    /// Posts refused because the partition remembered `max_sessions`.
    pub session_limit: u64,
    /// Stop commands for variants with no session (ignored).
    pub unknown_stops: u64,
    /// Events the fold could not apply (see `Outcome::Rejected`).
    pub rejected: u64,
    /// Ended sessions forgotten after retention.
    pub purged: u64,
}

/// Bytes a monitor holds for its sessions, by part: allocated capacity,
/// used or not (see `cargo bench -p earlykill-core --bench memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// The session slab: 48 bytes per slot.
    pub slab: usize,
    /// The variant_id index: 4 bytes per bucket.
    pub index: usize,
    /// The variant and post ids, in 64 KiB chunks.
    pub ids: usize,
    /// The profiles: each distinct persona_id and thresholds, once.
    pub profiles: usize,
    /// The deadline heap: 8 bytes per entry.
    pub timers: usize,
}

/// A session's figures, for status queries.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    /// The variant.
    pub variant_id: String,
    /// Its parameters, counts and status.
    pub state: SessionState,
    /// When it times out (or timed out).
    pub deadline: Millis,
    /// interactions / views; `None` without views.
    pub engagement_rate: Option<f64>,
}

impl SessionView {
    /// The view of a session as stored in the changelog.
    pub fn from_state(variant_id: &str, state: SessionState) -> SessionView {
        let timeout_minutes = u32::try_from(state.timeout_minutes).unwrap_or(0);
        let clamp = |n: i64| u64::try_from(n).unwrap_or(0);
        SessionView {
            variant_id: variant_id.to_owned(),
            deadline: rule::deadline(state.posted_at, timeout_minutes),
            engagement_rate: rule::engagement_rate(clamp(state.interactions), clamp(state.views)),
            state,
        }
    }
}
