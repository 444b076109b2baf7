//! A partition's state rebuilt from its changelog record by record, in log
//! order, as the records are read: nothing of the log is held but the
//! state itself.
//!
//! The changelog is compacted, so a key may still appear several times
//! (compaction lags) or once; either way the latest record of a key wins,
//! and a tombstone removes it.
//!
//! Each commit writes a partition's session records first and its
//! partition record (empty key: the clock and the input positions) last,
//! the latter only once the former are acknowledged. Session records after
//! the last partition record therefore belong to a commit whose positions
//! never landed (at-least-once: the brokers refused part of it, and the
//! processor stopped): counting them would fold their input twice, since
//! the processor resumes from the older positions. So [`Rebuild`] keeps,
//! for the session records read since the latest partition record, what
//! each replaced, and at the end puts that back (the records are *torn*).
//! The keys put back are marked changed, so the first commit after the
//! restore rewrites them and the torn records never count later, when
//! other commits follow them. Only records that name their commit are
//! undone: a record of an older release or another tool counts as it
//! always did, and so does everything in a log with no partition record.
//!
//! Compaction keeps only the latest partition record, so session records
//! of earlier commits sit before it without their own: they count, as the
//! partition record after them vouches for them.

use super::changelog::RestoreError;
use super::{Monitor, MonitorConfig};
use crate::event::{ChangelogRecord, InputOffsets, MAX_ID_BYTES};

/// A partition's state being rebuilt from its changelog.
pub struct Rebuild {
    monitor: Monitor,
    /// The input positions of the latest partition record.
    offsets: InputOffsets,
    /// Whether a partition record was read.
    positioned: bool,
    /// The session records that name their commit read since the latest
    /// partition record: each key with the record it replaced.
    tentative: Vec<(Box<str>, Option<ChangelogRecord>)>,
    /// Records read.
    records: u64,
}

/// A rebuilt partition.
pub struct Rebuilt {
    /// The fold, as the changelog left it.
    pub monitor: Monitor,
    /// The input positions the state includes.
    pub offsets: InputOffsets,
    /// Session records of a torn commit, ignored (their keys are rewritten
    /// by the next commit).
    pub torn: usize,
    /// Records read, tombstones included.
    pub records: u64,
}

impl Rebuild {
    /// An empty partition.
    pub fn new(config: MonitorConfig) -> Rebuild {
        Rebuild {
            monitor: Monitor::new(config),
            offsets: InputOffsets::default(),
            positioned: false,
            tentative: Vec::new(),
            records: 0,
        }
    }

    /// The next record of the log: `key` is its Kafka key (empty for the
    /// partition record), `record` its value (`None`: a tombstone), and
    /// `names_commit` whether it names the commit that wrote it.
    pub fn push(
        &mut self,
        key: &str,
        record: Option<ChangelogRecord>,
        names_commit: bool,
    ) -> Result<(), RestoreError> {
        self.records += 1;
        if key == ChangelogRecord::PARTITION_KEY {
            if let Some(record) = record {
                if let Some(clock) = record.partition_clock {
                    self.monitor.clock = self.monitor.clock.max(clock);
                }
                self.offsets = record.input_offsets.unwrap_or_default();
                self.positioned = true;
                self.tentative.clear();
            }
            return Ok(());
        }
        if key.len() > MAX_ID_BYTES {
            return Err(RestoreError::InvalidKey { key: key.into() });
        }
        let slot = self.monitor.sessions.find(key);
        let held = self.monitor.held.get(key).is_some();
        if names_commit {
            let before = (slot.is_some() || held)
                .then(|| self.monitor.record(key))
                .flatten();
            self.tentative.push((key.into(), before));
        }
        self.monitor.replace(key, slot, held, record)
    }

    /// The state, once the whole log is read.
    pub fn finish(mut self) -> Result<Rebuilt, RestoreError> {
        let mut torn = 0;
        if self.positioned {
            torn = self.tentative.len();
            for (key, before) in self.tentative.drain(..).rev() {
                self.monitor.put(&key, before)?;
                self.monitor.dirty_keys.push(key);
            }
        }
        let monitor = &mut self.monitor;
        monitor.build_timers();
        monitor.held.finish_restore();
        monitor.dirty_slots.clear();
        Ok(Rebuilt {
            monitor: self.monitor,
            offsets: self.offsets,
            torn,
            records: self.records,
        })
    }
}

impl Monitor {
    /// Replaces whatever `key` holds with `record` (`None`: nothing). Its
    /// timer entry is made by [`Monitor::build_timers`].
    fn put(&mut self, key: &str, record: Option<ChangelogRecord>) -> Result<(), RestoreError> {
        let slot = self.sessions.find(key);
        let held = self.held.get(key).is_some();
        self.replace(key, slot, held, record)
    }

    /// [`Monitor::put`], given where `key`'s session is (`slot`) and
    /// whether it holds interactions.
    fn replace(
        &mut self,
        key: &str,
        slot: Option<u32>,
        held: bool,
        record: Option<ChangelogRecord>,
    ) -> Result<(), RestoreError> {
        if let Some(slot) = slot {
            if self.sessions.get(slot).is_some_and(|s| s.is_active()) {
                self.active -= 1;
            }
            self.sessions.remove(slot);
            self.kept.remove(&slot);
        }
        if held {
            self.held.take(key);
        }
        let Some(record) = record else {
            return Ok(());
        };
        if let Some(state) = record.session {
            self.restore_session(key, state)?;
        }
        self.held.restore(key, record.held);
        Ok(())
    }

    /// The one timer entry each session has: its deadline while that is
    /// ahead of the clock (or the session active), its purge time after.
    fn build_timers(&mut self) {
        let retention = self.config.ended_retention_ms;
        let mut entries = Vec::with_capacity(self.sessions.len());
        for (slot, session) in self.sessions.iter() {
            let deadline = session.deadline();
            let due = if deadline > self.clock || session.is_active() {
                deadline
            } else {
                self.kept
                    .get(&slot)
                    .copied()
                    .unwrap_or_else(|| deadline.saturating_add(retention))
            };
            entries.push((due, slot));
        }
        for (due, slot) in entries {
            self.timers.push(due, slot);
        }
    }
}
