//! The pure core: fold one partition's events into its sessions and say what
//! was decided. No clock, no I/O, no randomness: the same events in the same
//! order always give the same decisions, so replays reproduce history and
//! property tests can check the rule against an oracle.
//!
//! # Time
//!
//! Each partition has an event-time clock: the largest event time it has
//! seen, or been advanced to by [`Monitor::advance_to`] (which the I/O shell
//! calls from the wall clock when the partition is idle). The clock never
//! goes back. Before an event is applied the clock advances to the event's
//! time, and every timeout whose deadline is at or before the new clock fires
//! first, in deadline order (ties by variant_id). So a session covers event
//! times `[posted_at, deadline)`: an interaction stamped exactly at the
//! deadline arrives after the timeout and is late. How far ahead of the wall
//! clock an event may be is the shell's validation (a few seconds by
//! default), so no single event moves the clock further than that.
//!
//! # Invariants
//!
//! - A session ends exactly once: killed, timed out or stopped.
//! - Events for an ended session change nothing and are counted as late.
//!   A session is remembered until `deadline + ended_retention_ms`, then
//!   forgotten; a VariantPosted whose session would already be forgotten by
//!   then is late too, so a replayed post can never start its session twice.
//!   An ended session that keeps receiving events is remembered longer: an
//!   event that finds less than half the retention left moves forgetting to
//!   `ended_retention_ms` after the partition clock. So the views a killed
//!   post keeps getting are counted late, never held as if for a post to
//!   come.
//! - A partition remembers at most `max_sessions` sessions; a post beyond
//!   that starts nothing ([`Outcome::SessionLimit`]) and the shell
//!   dead-letters it.
//! - Interactions for a variant not posted yet are held (see `held.rs`) and
//!   applied, in arrival order, when the post arrives.

mod changelog;
mod decisions;
mod held;
pub mod holdout;
mod outcome;
mod rebuild;
pub mod rule;
mod sessions;
mod timers;

pub use crate::event::{decision_id, session_id};
use crate::event::{
    DecisionKind, Decoded, HeldInteraction, Interaction, InteractionKind, Millis,
    MonitoringDecision, SessionStatus, StopMonitoring, VariantPosted, MAX_ID_BYTES,
};
use decisions::{decision, kill_reason, started_reason, timeout_reason};
use foldhash::fast::FixedState;
use hashbrown::HashMap;
use held::{Dropped, Held};
use rule::Thresholds;
use sessions::{Ids, Refused, SessionRef, Sessions};

pub use holdout::Holdout;
pub use outcome::{MemoryUse, MonitorStats, Outcome, SessionView};
pub use sessions::MAX_SESSIONS;
use timers::Timers;

pub use changelog::{held_record_fits, ChangelogChange, RestoreError, MAX_HELD_BYTES};
pub use rebuild::{Rebuild, Rebuilt};

/// Events whose lookups [`Monitor::apply_batch`] prefetches together.
const PREFETCH_GROUP: usize = 16;

/// Configuration of the fold. Everything here is part of the deterministic
/// function: two monitors with different configurations may decide
/// differently on the same input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorConfig {
    /// Rule parameters for variants that do not override them.
    pub defaults: Thresholds,
    /// How long, in event time, an interaction for a variant not posted yet
    /// is held before it is dropped.
    pub hold_grace_ms: Millis,
    /// Most interactions held at once per partition; when full, the oldest
    /// is dropped to make room.
    pub hold_capacity: usize,
    /// Most interactions held for one variant; more are refused (dropped
    /// and counted). Bounds the size of one changelog record.
    pub hold_per_variant: usize,
    /// Most sessions (active, or ended and still remembered) per partition;
    /// a post beyond that starts nothing.
    pub max_sessions: usize,
    /// How long after its deadline, in event time, a session is remembered so
    /// that late events and repeated posts for it are recognised.
    pub ended_retention_ms: Millis,
    /// The hold-out share and what this monitor does with it.
    pub holdout: Holdout,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            defaults: Thresholds::default(),
            hold_grace_ms: 5 * rule::MINUTE_MS,
            hold_capacity: 100_000,
            hold_per_variant: 1_000,
            max_sessions: 1_000_000,
            ended_retention_ms: 60 * rule::MINUTE_MS,
            holdout: Holdout::None,
        }
    }
}

/// One input event of a partition.
#[derive(Debug, Clone, Copy)]
pub enum Input<'e, 'a> {
    /// A variant was posted: start its session.
    Posted(&'e VariantPosted<'a>),
    /// Views or engagements: count them and apply the rule.
    Interaction(&'e Interaction<'a>),
    /// An operator ends a session.
    Stop(&'e StopMonitoring<'a>),
}

impl Input<'_, '_> {
    /// The event time the event carries.
    pub fn event_time(&self) -> Millis {
        match self {
            Input::Posted(p) => p.posted_at,
            Input::Interaction(i) => i.occurred_at,
            Input::Stop(s) => s.requested_at,
        }
    }

    /// The variant the event is about (its Kafka key).
    pub fn variant_id(&self) -> &str {
        match self {
            Input::Posted(p) => &p.variant_id,
            Input::Interaction(i) => &i.variant_id,
            Input::Stop(s) => &s.variant_id,
        }
    }
}

impl<'e, 'a> From<&'e Decoded<'a>> for Input<'e, 'a> {
    fn from(decoded: &'e Decoded<'a>) -> Self {
        match decoded {
            Decoded::Posted(p) => Input::Posted(p),
            Decoded::Interaction(i) => Input::Interaction(i),
            Decoded::Stop(s) => Input::Stop(s),
        }
    }
}

/// The fold for one partition: its sessions, its clock, its timers and its
/// held interactions.
pub struct Monitor {
    config: MonitorConfig,
    clock: Millis,
    sessions: Sessions,
    timers: Timers,
    held: Held,
    active: usize,
    stats: MonitorStats,
    /// Slots changed since the last changelog drain (see `changelog`).
    dirty_slots: Vec<u32>,
    /// Keys removed or whose held interactions changed since the last drain.
    dirty_keys: Vec<Box<str>>,
    /// Ended sessions remembered past `deadline + ended_retention_ms`
    /// because events kept arriving: slot to the time they are forgotten.
    kept: HashMap<u32, Millis, FixedState>,
    clock_dirty: bool,
    /// Scratch space for due timers, kept to avoid an allocation per step.
    due: Vec<(Millis, u32)>,
}

impl Monitor {
    /// An empty partition whose clock has not started.
    pub fn new(config: MonitorConfig) -> Self {
        Self {
            config,
            clock: Millis::MIN,
            sessions: Sessions::default(),
            timers: Timers::default(),
            held: Held::new(
                config.hold_grace_ms,
                config.hold_capacity,
                config.hold_per_variant,
            ),
            active: 0,
            stats: MonitorStats::default(),
            dirty_slots: Vec::new(),
            dirty_keys: Vec::new(),
            kept: HashMap::with_hasher(FixedState::with_seed(0)),
            clock_dirty: false,
            due: Vec::new(),
        }
    }

    /// The configuration the fold runs with.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The partition's event-time clock; `Millis::MIN` before any event.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// Number of sessions that have started and not ended.
    pub fn active_sessions(&self) -> usize {
        self.active
    }

    /// Number of interactions held for variants not posted yet.
    pub fn held_interactions(&self) -> usize {
        self.held.len()
    }

    /// The event time at which the next timer (a deadline, or the moment a
    /// session is forgotten) falls due: advancing the clock to it is the
    /// next time [`Monitor::advance_to`] can decide anything without an
    /// event. The shell uses it to wake up exactly when a timeout is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.timers.next_due()
    }

    /// Number of entries in the deadline index: one per remembered session.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Bytes held for the sessions, by part.
    pub fn memory(&self) -> MemoryUse {
        let [slab, index, ids, profiles] = self.sessions.memory();
        MemoryUse {
            slab,
            index,
            ids,
            profiles,
            timers: self.timers.bytes(),
        }
    }

    /// What the fold has done since it was created or restored.
    pub fn stats(&self) -> &MonitorStats {
        &self.stats
    }

    /// The session of `variant_id`, active or recently ended.
    pub fn session(&self, variant_id: &str) -> Option<SessionView> {
        let slot = self.sessions.find(variant_id)?;
        let session = self.sessions.get(slot)?;
        Some(SessionView {
            variant_id: variant_id.to_owned(),
            state: changelog::session_state(&session, self.kept.get(&slot).copied()),
            deadline: session.deadline(),
            engagement_rate: rule::engagement_rate(session.interactions, session.views),
        })
    }

    /// Every active session, in no particular order.
    pub fn active(&self) -> impl Iterator<Item = SessionView> + '_ {
        self.sessions
            .iter()
            .filter(|(_, s)| s.is_active())
            .map(|(_, s)| SessionView {
                variant_id: s.variant_id().to_owned(),
                state: changelog::session_state(&s, None),
                deadline: s.deadline(),
                engagement_rate: rule::engagement_rate(s.interactions, s.views),
            })
    }

    /// The variant ids of every active session, in no particular order.
    pub fn active_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.sessions
            .iter()
            .filter(|(_, s)| s.is_active())
            .map(|(_, s)| s.variant_id())
    }

    /// Applies one event, appending what it decided to `decisions`.
    pub fn apply(
        &mut self,
        input: Input<'_, '_>,
        decisions: &mut Vec<MonitoringDecision>,
    ) -> Outcome {
        if !valid_id(input.variant_id()) {
            self.stats.rejected += 1;
            return Outcome::Rejected;
        }
        match input {
            Input::Posted(posted) => self.on_posted(posted, decisions),
            Input::Interaction(interaction) => self.on_interaction(interaction, decisions),
            Input::Stop(stop) => self.on_stop(stop, decisions),
        }
    }

    /// Applies `inputs` in order, exactly as [`Monitor::apply`] on each in
    /// turn would: the same decisions, state and outcomes (`outcome` gets
    /// each input's index, its outcome, and the length of `decisions` once
    /// it is applied, so a caller can tell which decisions each made). Faster when a partition holds many
    /// sessions: there each event's lookup is a chain of cache misses (index
    /// bucket, session, id bytes), so before applying a group of events the
    /// fold asks the CPU for every bucket of the group, then every session,
    /// then every id, and the misses of a group overlap instead of following
    /// one another. The prefetches are hints: they change nothing.
    pub fn apply_batch(
        &mut self,
        inputs: &[Input<'_, '_>],
        decisions: &mut Vec<MonitoringDecision>,
        mut outcome: impl FnMut(usize, Outcome, usize),
    ) {
        let mut hashes = [0u64; PREFETCH_GROUP];
        for (g, group) in inputs.chunks(PREFETCH_GROUP).enumerate() {
            let hashes = &mut hashes[..group.len()];
            for (hash, input) in hashes.iter_mut().zip(group) {
                *hash = self.sessions.hash(input.variant_id());
                self.sessions.prefetch_bucket(*hash);
            }
            for &hash in hashes.iter() {
                self.sessions.prefetch_session(hash);
            }
            for &hash in hashes.iter() {
                self.sessions.prefetch_ids(hash);
            }
            for (i, input) in group.iter().enumerate() {
                let result = self.apply(*input, decisions);
                outcome(g * PREFETCH_GROUP + i, result, decisions.len());
            }
        }
    }

    /// Moves the clock forward to `time` (never back), firing every timeout
    /// due by then and dropping held interactions whose grace has ended.
    pub fn advance_to(&mut self, time: Millis, decisions: &mut Vec<MonitoringDecision>) {
        if time <= self.clock {
            return;
        }
        self.clock = time;
        self.clock_dirty = true;
        self.settle(decisions);
    }

    /// Fires whatever is due at the current clock: the timeouts of sessions
    /// whose deadline it has passed and the held interactions whose grace
    /// has ended. Only a restore can leave such things behind, when the
    /// shell recorded a clock advance before the decisions it causes (see
    /// the processor's idle clock); settling makes those decisions again,
    /// identical, since they depend only on the state and the clock.
    pub fn settle(&mut self, decisions: &mut Vec<MonitoringDecision>) {
        self.fire_due(decisions);
        let (held, stats, dirty_keys) = (&mut self.held, &mut self.stats, &mut self.dirty_keys);
        held.expire(self.clock, |variant_id, why| {
            count_drop(stats, why);
            dirty_keys.push(variant_id.into());
        });
    }

    fn on_posted(
        &mut self,
        posted: &VariantPosted<'_>,
        decisions: &mut Vec<MonitoringDecision>,
    ) -> Outcome {
        if !valid_id(&posted.persona_id) || posted.post_id.len() > MAX_ID_BYTES {
            self.stats.rejected += 1;
            return Outcome::Rejected;
        }
        self.advance_to(posted.posted_at, decisions);
        if self.config.holdout.excludes(&posted.variant_id) {
            return Outcome::Excluded;
        }
        if let Some(slot) = self.sessions.find(&posted.variant_id) {
            let active = self.sessions.get(slot).is_some_and(|s| s.is_active());
            return if active {
                self.stats.duplicate_posts += 1;
                Outcome::DuplicatePost
            } else {
                self.late(slot)
            };
        }
        let thresholds = self.config.defaults.with_overrides(
            posted.kill_threshold,
            posted.min_interactions,
            posted.timeout_minutes,
        );
        let deadline = rule::deadline(posted.posted_at, thresholds.timeout_minutes);
        if deadline.saturating_add(self.config.ended_retention_ms) <= self.clock {
            // Its session would already have ended and been forgotten.
            self.stats.late += 1;
            return Outcome::Late;
        }
        if self.sessions.len() >= self.config.max_sessions.min(MAX_SESSIONS) {
            self.stats.session_limit += 1;
            return Outcome::SessionLimit;
        }
        let ids = Ids {
            variant_id: &posted.variant_id,
            persona_id: &posted.persona_id,
            post_id: &posted.post_id,
        };
        let slot = match self.sessions.insert(
            ids,
            posted.expected_engagement_rate,
            posted.posted_at,
            thresholds,
        ) {
            Ok(slot) => slot,
            Err(Refused::IdTooLong) => {
                self.stats.rejected += 1;
                return Outcome::Rejected;
            }
            Err(Refused::Full) => {
                self.stats.session_limit += 1;
                return Outcome::SessionLimit;
            }
        };
        self.dirty_slots.push(slot);
        self.timers.push(deadline, slot);
        self.active += 1;
        self.stats.started += 1;
        if let Some(session) = self.sessions.get(slot) {
            let mut started = decision(
                &session,
                DecisionKind::Started,
                self.clock,
                started_reason(&session),
            );
            started.metadata = posted.metadata.clone();
            decisions.push(started);
        }
        // A post that arrives after its own deadline starts and times out at
        // once, before any held interaction can count.
        self.fire_due(decisions);
        if let Some(held) = self.held.take(&posted.variant_id) {
            for interaction in held {
                self.stats.held_applied += 1;
                if self.sessions.get(slot).is_some_and(|s| s.is_active()) {
                    self.count(
                        slot,
                        interaction.kind,
                        interaction.count,
                        &interaction.event_id,
                        decisions,
                    );
                } else {
                    self.stats.late += 1;
                }
            }
        }
        Outcome::Started
    }

    fn on_interaction(
        &mut self,
        interaction: &Interaction<'_>,
        decisions: &mut Vec<MonitoringDecision>,
    ) -> Outcome {
        if interaction.count < 0 || interaction.event_id.len() > MAX_ID_BYTES {
            self.stats.rejected += 1;
            return Outcome::Rejected;
        }
        self.advance_to(interaction.occurred_at, decisions);
        if self.config.holdout.excludes(&interaction.variant_id) {
            return Outcome::Excluded;
        }
        match self.sessions.find(&interaction.variant_id) {
            Some(slot) if self.sessions.get(slot).is_some_and(|s| s.is_active()) => {
                if self.count(
                    slot,
                    interaction.kind,
                    interaction.count,
                    &interaction.event_id,
                    decisions,
                ) {
                    Outcome::Killed
                } else {
                    Outcome::Counted
                }
            }
            Some(slot) => self.late(slot),
            None => {
                let held = HeldInteraction {
                    event_id: interaction.event_id.as_ref().to_owned(),
                    kind: interaction.kind,
                    count: interaction.count,
                    occurred_at: interaction.occurred_at,
                    held_at: self.clock,
                    seq: 0,
                };
                let (stats, dirty_keys) = (&mut self.stats, &mut self.dirty_keys);
                let mut refused = false;
                self.held.hold(
                    &interaction.variant_id,
                    held,
                    self.clock,
                    |variant_id, why| {
                        count_drop(stats, why);
                        if why == Dropped::Refused {
                            refused = true;
                        } else {
                            dirty_keys.push(variant_id.into());
                        }
                    },
                );
                if refused {
                    return Outcome::HoldRefused;
                }
                self.stats.held += 1;
                self.dirty_keys.push(interaction.variant_id.as_ref().into());
                Outcome::Held
            }
        }
    }

    fn on_stop(
        &mut self,
        stop: &StopMonitoring<'_>,
        decisions: &mut Vec<MonitoringDecision>,
    ) -> Outcome {
        self.advance_to(stop.requested_at, decisions);
        if self.config.holdout.excludes(&stop.variant_id) {
            return Outcome::Excluded;
        }
        let Some(slot) = self.sessions.find(&stop.variant_id) else {
            self.stats.unknown_stops += 1;
            return Outcome::UnknownVariant;
        };
        if !self.sessions.get(slot).is_some_and(|s| s.is_active()) {
            return self.late(slot);
        }
        let clock = self.clock;
        if let Some(session) = self.end(slot, SessionStatus::Stopped, clock) {
            let reason = format!("stopped by {}: {}", stop.requested_by, stop.reason);
            let mut stopped = decision(&session, DecisionKind::Stopped, clock, reason);
            stopped.requested_by = Some(stop.requested_by.as_ref().to_owned());
            decisions.push(stopped);
        }
        self.stats.stopped += 1;
        Outcome::Stopped
    }

    /// Adds an interaction to an active session and applies the rule; true if
    /// it killed the session.
    fn count(
        &mut self,
        slot: u32,
        kind: InteractionKind,
        count: i64,
        event_id: &str,
        decisions: &mut Vec<MonitoringDecision>,
    ) -> bool {
        let Some((session, thresholds)) = self.sessions.get_mut(slot) else {
            return false;
        };
        let count = u64::try_from(count).unwrap_or(0);
        if count == 0 {
            return false;
        }
        if kind.is_view() {
            session.views = session.views.saturating_add(count);
        } else {
            session.interactions = session.interactions.saturating_add(count);
        }
        if !session.dirty() {
            session.set_dirty(true);
            self.dirty_slots.push(slot);
        }
        if !rule::should_kill(
            session.interactions,
            session.views,
            session.expected_engagement_rate,
            &thresholds,
        ) {
            return false;
        }
        let holdout = self.config.holdout;
        if self
            .sessions
            .get(slot)
            .is_some_and(|s| holdout.spares(s.variant_id()))
        {
            // Held out: watched, never killed.
            return false;
        }
        let clock = self.clock;
        if let Some(session) = self.end(slot, SessionStatus::Killed, clock) {
            let mut killed = decision(&session, DecisionKind::Killed, clock, kill_reason(&session));
            killed.trigger_event_id = Some(event_id.to_owned());
            decisions.push(killed);
        }
        self.stats.killed += 1;
        true
    }

    /// Counts an event for the ended session in `slot` as late, and keeps
    /// the session remembered while such events keep coming: when less than
    /// half the retention is left, forgetting moves to a full retention
    /// after the clock.
    fn late(&mut self, slot: u32) -> Outcome {
        self.stats.late += 1;
        let Some((session, thresholds)) = self.sessions.get_mut(slot) else {
            return Outcome::Late;
        };
        let retention = self.config.ended_retention_ms;
        let deadline = rule::deadline(session.posted_at, thresholds.timeout_minutes);
        let forget_at = self
            .kept
            .get(&slot)
            .copied()
            .unwrap_or_else(|| deadline.saturating_add(retention));
        // Before its deadline a session's timer entry is the deadline, which
        // then moves on to the forget time: only past it is the entry the
        // forget time, to be replaced here.
        if self.clock < deadline || forget_at.saturating_sub(self.clock) >= retention / 2 {
            return Outcome::Late;
        }
        let later = self.clock.saturating_add(retention);
        self.kept.insert(slot, later);
        self.timers.push(later, slot);
        if !session.dirty() {
            session.set_dirty(true);
            self.dirty_slots.push(slot);
        }
        Outcome::Late
    }

    /// When the ended session in `slot` is forgotten.
    fn forget_at(&self, slot: u32, deadline: Millis) -> Millis {
        self.kept
            .get(&slot)
            .copied()
            .unwrap_or_else(|| deadline.saturating_add(self.config.ended_retention_ms))
    }

    /// Ends an active session. Its timer entry stays where it is: at the
    /// deadline it is moved on to the purge time.
    fn end(&mut self, slot: u32, status: SessionStatus, at: Millis) -> Option<SessionRef<'_>> {
        self.sessions.set_ended_at(slot, at);
        let (session, _) = self.sessions.get_mut(slot)?;
        session.set_status(status);
        if !session.dirty() {
            session.set_dirty(true);
            self.dirty_slots.push(slot);
        }
        self.active -= 1;
        self.sessions.get(slot)
    }

    /// Fires every timer due at or before the clock: timeouts in (deadline,
    /// variant_id) order, and purges of ended sessions past retention.
    fn fire_due(&mut self, decisions: &mut Vec<MonitoringDecision>) {
        loop {
            let mut due = std::mem::take(&mut self.due);
            due.clear();
            self.timers.pop_due(self.clock, &mut due);
            if due.is_empty() {
                self.due = due;
                return;
            }
            let sessions = &self.sessions;
            due.sort_by(|(a_at, a), (b_at, b)| {
                let id = |slot| sessions.get(slot).map_or("", |s| s.variant_id());
                a_at.cmp(b_at).then_with(|| id(*a).cmp(id(*b)))
            });
            for &(at, slot) in &due {
                self.fire(at, slot, decisions);
            }
            self.due = due;
        }
    }

    /// Acts on one timer entry. Each session has exactly one entry: at its
    /// deadline (time out if still active), then at `deadline + retention`
    /// (forget it). Entries that match neither are stale: their slot was
    /// reused by another session, which has its own entry.
    fn fire(&mut self, at: Millis, slot: u32, decisions: &mut Vec<MonitoringDecision>) {
        let Some(session) = self.sessions.get(slot) else {
            return;
        };
        let (active, deadline) = (session.is_active(), session.deadline());
        let purge_at = self.forget_at(slot, deadline);
        if !active && at == purge_at {
            if let Some(variant_id) = self.sessions.remove(slot) {
                self.dirty_keys.push(variant_id);
            }
            self.kept.remove(&slot);
            self.stats.purged += 1;
        } else if at == deadline {
            if active {
                if let Some(session) = self.end(slot, SessionStatus::TimedOut, at) {
                    decisions.push(decision(
                        &session,
                        DecisionKind::TimedOut,
                        at,
                        timeout_reason(&session),
                    ));
                }
                self.stats.timed_out += 1;
            }
            self.timers.push(purge_at, slot);
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

fn count_drop(stats: &mut MonitorStats, why: Dropped) {
    match why {
        Dropped::Expired => stats.held_expired += 1,
        Dropped::Evicted => stats.held_evicted += 1,
        Dropped::Refused => stats.held_refused += 1,
    }
}
