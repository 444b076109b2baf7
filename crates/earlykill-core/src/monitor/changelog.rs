//! The fold's state as changelog records, and back.
//!
//! A partition's state is a set of keyed [`ChangelogRecord`]s: one per
//! variant with a session or held interactions, plus the partition record
//! (empty key) with the clock. [`Monitor::drain_changes`] gives the records
//! whose key changed since the last drain (a `None` value deletes the key),
//! so the I/O shell writes them in the same transaction as the decisions; a
//! compacted topic then holds exactly [`Monitor::snapshot`], and
//! [`Monitor::restore`] rebuilds a monitor that decides identically from
//! there on.

use super::sessions::{Ids, Refused, SessionRef};
use super::{
    rule::{self, Thresholds},
    Monitor, MonitorConfig, MAX_SESSIONS,
};
use crate::event::{ChangelogRecord, Millis, SessionState, SessionStatus, MAX_ID_BYTES};

/// Longest encoding of one held interaction in a changelog record: an
/// event id of at most 256 bytes with its length, the kind, and four longs
/// of at most 10 bytes.
pub const MAX_HELD_BYTES: usize = 256 + 2 + 1 + 4 * 10;

/// Most interactions one variant may hold so that its changelog record fits
/// in `message_max` bytes: a held interaction encodes to at most
/// [`MAX_HELD_BYTES`], and 8 KiB covers the session and the record's
/// framing.
pub fn held_record_fits(message_max: usize) -> usize {
    message_max.saturating_sub(8 << 10) / MAX_HELD_BYTES
}

/// One key of the changelog to write: the new record, or `None` to delete
/// the key (a Kafka tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangelogChange {
    /// The Kafka key: a variant_id, or empty for the partition record.
    pub key: String,
    /// The value to write; `None` deletes the key.
    pub record: Option<ChangelogRecord>,
    /// The shadow policy whose state this is; `None` for the live state.
    /// A shadow policy's Kafka key is [`crate::shadow::shadow_key`].
    pub policy: Option<std::sync::Arc<str>>,
}

impl ChangelogChange {
    /// Its Kafka key.
    pub fn kafka_key(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.policy {
            None => self.key.as_bytes().into(),
            Some(policy) => crate::shadow::shadow_key(policy, &self.key).into(),
        }
    }
}

/// Why changelog records could not be restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestoreError {
    /// A key that no variant can have.
    #[error("changelog key {key:?} is not a valid variant id (1 to {MAX_ID_BYTES} bytes)")]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// More sessions than a partition can hold ([`MAX_SESSIONS`]).
    #[error("the changelog holds more than {max} sessions for one partition")]
    TooManySessions {
        /// The most a partition holds.
        max: usize,
    },
    /// A stored figure outside its range.
    #[error("changelog record for {key:?} has {field} = {value}, outside its range")]
    OutOfRange {
        /// The key.
        key: String,
        /// The field.
        field: &'static str,
        /// The value found.
        value: i64,
    },
}

/// A session as stored; `forget_at` is set when events kept it remembered
/// past `deadline + retention`.
pub(crate) fn session_state(session: &SessionRef<'_>, forget_at: Option<Millis>) -> SessionState {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let thresholds = session.thresholds();
    SessionState {
        persona_id: session.persona_id().to_owned(),
        post_id: session.post_id().to_owned(),
        expected_engagement_rate: session.expected_engagement_rate,
        kill_threshold: thresholds.kill_threshold,
        min_interactions: i32::try_from(thresholds.min_interactions).unwrap_or(i32::MAX),
        timeout_minutes: i32::try_from(thresholds.timeout_minutes).unwrap_or(i32::MAX),
        posted_at: session.posted_at,
        interactions: clamp(session.interactions),
        views: clamp(session.views),
        status: session.status(),
        ended_at: (!session.is_active()).then_some(session.ended_at()),
        forget_at,
    }
}

impl Monitor {
    fn partition_record(&self) -> ChangelogRecord {
        ChangelogRecord {
            variant_id: ChangelogRecord::PARTITION_KEY.to_owned(),
            partition_clock: Some(self.clock),
            input_offsets: None,
            session: None,
            held: Vec::new(),
        }
    }

    /// The current record of `key`, or `None` if the key holds nothing.
    pub(super) fn record(&self, key: &str) -> Option<ChangelogRecord> {
        self.record_at(key, self.sessions.find(key))
    }

    /// The current record of `key`, whose session (if any) is in `slot`.
    fn record_at(&self, key: &str, slot: Option<u32>) -> Option<ChangelogRecord> {
        let session = slot.and_then(|slot| {
            let forget_at = self.kept.get(&slot).copied();
            self.sessions
                .get(slot)
                .map(|session| session_state(&session, forget_at))
        });
        let held: Vec<_> = self
            .held
            .get(key)
            .map(|queue| queue.iter().cloned().collect())
            .unwrap_or_default();
        (session.is_some() || !held.is_empty()).then(|| ChangelogRecord {
            variant_id: key.to_owned(),
            partition_clock: None,
            input_offsets: None,
            session,
            held,
        })
    }

    /// The records whose keys changed since the last drain, each key once:
    /// the sessions in slot order (in key order when a key also changed
    /// otherwise), then the partition record. Writing them to the
    /// compacted changelog keeps it equal to [`Monitor::snapshot`].
    ///
    /// A changed session is read once, from its slot: at a large state
    /// nearly every changed key is a session, and a second lookup by key
    /// would cost a cache miss or three each.
    pub fn drain_changes(&mut self) -> Vec<ChangelogChange> {
        let mut slots = std::mem::take(&mut self.dirty_slots);
        slots.retain(|&slot| match self.sessions.get_mut(slot) {
            Some((session, _)) if session.dirty() => {
                session.set_dirty(false);
                true
            }
            _ => false,
        });
        let keys = std::mem::take(&mut self.dirty_keys);
        let sessions = &self.sessions;
        // In slot order: the slab is read front to back, and no key is
        // compared (each one a cache miss at a large state).
        slots.sort_unstable();
        let mut changed: Vec<(&str, Option<u32>)> = slots
            .iter()
            .filter_map(|&slot| sessions.get(slot).map(|s| (s.variant_id(), Some(slot))))
            .collect();
        if !keys.is_empty() {
            // A key also changed otherwise (held events, a forgotten
            // session): read by key, unless its session is in the list
            // already.
            changed.extend(keys.iter().map(|key| (&**key, None)));
            changed.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.is_some().cmp(&a.1.is_some())));
            changed.dedup_by(|later, first| later.0 == first.0);
        }
        let mut changes = Vec::with_capacity(changed.len() + 1);
        for (key, slot) in changed {
            let slot = slot.or_else(|| self.sessions.find(key));
            changes.push(ChangelogChange {
                key: key.to_owned(),
                record: self.record_at(key, slot),
                policy: None,
            });
        }
        if std::mem::take(&mut self.clock_dirty) {
            changes.push(ChangelogChange {
                key: ChangelogRecord::PARTITION_KEY.to_owned(),
                record: Some(self.partition_record()),
                policy: None,
            });
        }
        slots.clear();
        self.dirty_slots = slots;
        changes
    }

    /// Every session, active or ended and still remembered, as stored, in
    /// no particular order.
    pub fn session_states(&self) -> impl Iterator<Item = (&str, SessionState)> + '_ {
        self.sessions.iter().map(|(slot, s)| {
            let state = session_state(&s, self.kept.get(&slot).copied());
            (s.variant_id(), state)
        })
    }

    /// The whole state as changelog records: the partition record (once the
    /// clock has started), then one record per key, sorted by key.
    pub fn snapshot(&self) -> Vec<ChangelogRecord> {
        let mut keys: Vec<&str> = self
            .sessions
            .iter()
            .map(|(_, s)| s.variant_id())
            .chain(self.held.iter().map(|(k, _)| k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let started = self.clock != Millis::MIN;
        started
            .then(|| self.partition_record())
            .into_iter()
            .chain(keys.into_iter().filter_map(|k| self.record(k)))
            .collect()
    }

    /// Rebuilds a monitor from changelog records in log order (the latest
    /// record of a key wins). The result has nothing to drain. A restore
    /// from Kafka goes through [`Rebuild`](super::Rebuild), which also
    /// drops a torn commit's records.
    pub fn restore(
        config: MonitorConfig,
        records: impl IntoIterator<Item = ChangelogRecord>,
    ) -> Result<Self, RestoreError> {
        let mut rebuild = super::Rebuild::new(config);
        for record in records {
            let key = record.variant_id.clone();
            rebuild.push(&key, Some(record), false)?;
        }
        Ok(rebuild.finish()?.monitor)
    }

    /// Adds a session as stored. Its timer entry is made once the whole
    /// partition is in (`build_timers`).
    pub(super) fn restore_session(
        &mut self,
        key: &str,
        state: SessionState,
    ) -> Result<(), RestoreError> {
        let positive = |field: &'static str, value: i64| {
            u32::try_from(value)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| RestoreError::OutOfRange {
                    key: key.to_owned(),
                    field,
                    value,
                })
        };
        let count = |field: &'static str, value: i64| {
            u64::try_from(value).map_err(|_| RestoreError::OutOfRange {
                key: key.to_owned(),
                field,
                value,
            })
        };
        let thresholds = Thresholds {
            kill_threshold: state.kill_threshold,
            min_interactions: positive("min_interactions", state.min_interactions.into())?,
            timeout_minutes: positive("timeout_minutes", state.timeout_minutes.into())?,
        };
        let ids = Ids {
            variant_id: key,
            persona_id: &state.persona_id,
            post_id: &state.post_id,
        };
        let interactions = count("interactions", state.interactions)?;
        let views = count("views", state.views)?;
        let active = state.status == SessionStatus::Active;
        let deadline = rule::deadline(state.posted_at, thresholds.timeout_minutes);
        let forget_at = state.forget_at.filter(|_| !active);
        let slot = self
            .sessions
            .insert(
                ids,
                state.expected_engagement_rate,
                state.posted_at,
                thresholds,
            )
            .map_err(|refused| match refused {
                Refused::IdTooLong => RestoreError::InvalidKey {
                    key: key.to_owned(),
                },
                Refused::Full => RestoreError::TooManySessions { max: MAX_SESSIONS },
            })?;
        if let Some((session, _)) = self.sessions.get_mut(slot) {
            session.interactions = interactions;
            session.views = views;
            session.set_status(state.status);
            session.set_dirty(false);
        }
        if !active {
            self.sessions
                .set_ended_at(slot, state.ended_at.unwrap_or(deadline));
        }
        if active {
            self.active += 1;
        }
        if let Some(forget_at) = forget_at {
            self.kept.insert(slot, forget_at);
        }
        Ok(())
    }
}
