//! One input partition in the shell: its fold, its event-time merge, how
//! far each input topic has been read, its idle clock and its
//! backpressure. The rules here say what to do (release this record,
//! advance the clock to that time, pause that topic) and leave doing it to
//! the core; nothing here touches Kafka.

use std::time::{Duration, Instant};

use super::intake::DeadLetter;
use super::ProcessorConfig;
use earlykill_core::event::{ChangelogRecord, Decoded, InputOffsets, InputTopic, Millis};
use earlykill_core::merge::{rank, Entry, Merge};
use earlykill_core::monitor::{ChangelogChange, Monitor, MonitorStats};
use earlykill_core::shadow::Shadows;

/// How far the consumer has read one input topic partition, as its own
/// fetches tell it: never from listed watermarks, which lag on real brokers
/// and which a transactional producer's commit markers (never delivered)
/// keep out of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing heard since the partition was assigned or rewound: only its
    /// end (EOF) can say it is caught up (librdkafka's cached high
    /// watermark may date from an earlier assignment).
    Assigned,
    /// Records arrived: caught up once the position reaches the high
    /// watermark of the consumer's own last fetch response (the one that
    /// brought them), or at the partition's end.
    Reading,
    /// The consumer's fetch reached the end of the partition (librdkafka's
    /// partition EOF, emitted at the last stable offset, past control
    /// markers) and nothing has arrived since: whatever comes next is still
    /// in flight.
    AtEnd,
}

/// One buffered input record.
#[derive(Debug)]
pub(crate) enum Record {
    /// A record that decoded and validated, kept decoded (its strings
    /// owned): the fold does not decode it again. `appended` is its broker
    /// timestamp, when its decisions were due; `bytes` its key and value
    /// as read, for the merge's byte bound.
    Event {
        event: Decoded<'static>,
        appended: Millis,
        bytes: usize,
        /// A post's key and value as read: the fold can refuse a post (the
        /// session limit), and its dead letter carries the record as read.
        /// The fold refuses nothing else (see `after_fold`).
        post: Option<Box<PostBytes>>,
    },
    /// A record for the dead-letter topic.
    Dead(Box<DeadLetter>),
}

/// A post's key and value as read.
#[derive(Debug)]
pub(crate) struct PostBytes {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Record {
    /// `event`, read as `key` and `value`, kept for the fold.
    pub fn event(event: Decoded<'_>, key: &[u8], value: &[u8], appended: Millis) -> Record {
        let post = matches!(event, Decoded::Posted(_)).then(|| {
            Box::new(PostBytes {
                key: key.to_vec(),
                value: value.to_vec(),
            })
        });
        Record::Event {
            event: event.into_owned(),
            appended,
            bytes: key.len() + value.len(),
            post,
        }
    }

    /// Bytes the record holds, for the merge's byte bound.
    fn size(&self) -> usize {
        match self {
            Record::Event { bytes, .. } => *bytes,
            Record::Dead(dead) => {
                dead.key.as_ref().map_or(0, Vec::len) + dead.value.as_ref().map_or(0, Vec::len)
            }
        }
    }
}

/// One partition's state.
pub(crate) struct Partition {
    pub monitor: Monitor,
    /// The shadow policies, folding what `monitor` folds.
    pub shadows: Shadows,
    merge: Merge<Record>,
    /// Per input topic, the offset after the last record read (or the
    /// restored offset).
    next: [Option<i64>; 3],
    /// Per input topic, how far it has been read.
    progress: [Progress; 3],
    /// Since when the merge has held records back waiting for a caught-up
    /// topic that may still have records in flight.
    blocked_since: Option<Instant>,
    paused: [bool; 3],
    /// Bytes (keys and values) buffered in the merge, per input topic.
    buffered_bytes: [usize; 3],
    /// The fold's counts last copied to the metrics.
    pub exported: MonitorStats,
    /// The clock and positions last seen by [`Partition::progressed`], and
    /// when they last moved.
    last_progress: (Millis, [Option<i64>; 3], Instant),
    /// Changed since the last commit.
    pub dirty: bool,
    /// Restored and not settled yet: what its recorded clock has made due
    /// is still to be decided (see [`Monitor::settle`]).
    pub unsettled: bool,
    /// The changelog offset after the last record known to hold this
    /// partition's state (read at restore, or written since): a record at
    /// or after it is someone else's.
    pub changelog_next: i64,
}

impl Partition {
    pub fn new(monitor: Monitor, offsets: InputOffsets) -> Partition {
        Partition {
            monitor,
            shadows: Shadows::default(),
            merge: Merge::default(),
            next: [offsets.posted, offsets.interactions, offsets.commands],
            progress: [Progress::Assigned; 3],
            blocked_since: None,
            paused: [false; 3],
            buffered_bytes: [0; 3],
            exported: MonitorStats::default(),
            last_progress: (Millis::MIN, [None; 3], Instant::now()),
            dirty: false,
            unsettled: true,
            changelog_next: 0,
        }
    }

    /// How long the partition has made no progress (its clock and its
    /// positions unchanged), as of `now`.
    pub fn progressed(&mut self, now: Instant) -> std::time::Duration {
        let seen = (self.monitor.clock(), self.next);
        let (clock, next, since) = &mut self.last_progress;
        if (*clock, *next) != seen {
            (*clock, *next, *since) = (seen.0, seen.1, now);
        }
        now.saturating_duration_since(*since)
    }

    /// The committed state, to hand to the partition's next owner in this
    /// instance: the fold and the committed positions (records read past
    /// them are read again), and where its changelog ends. Only right
    /// after a commit is the fold the committed one.
    pub fn hand_over(self, changelog_written: Option<i64>) -> Partition {
        let offsets = self.offsets();
        let mut part = Partition::new(self.monitor, offsets);
        part.shadows = self.shadows;
        part.changelog_next = self
            .changelog_next
            .max(changelog_written.map_or(0, |offset| offset + 1));
        part
    }

    /// The offset after the last record read of `topic`, or the restored
    /// one; `None` when nothing was ever read.
    pub fn next(&self, topic: InputTopic) -> Option<i64> {
        self.next[rank(topic)]
    }

    /// Record `offset` of `topic` was read.
    pub fn read(&mut self, topic: InputTopic, offset: i64) {
        self.next[rank(topic)] = Some(offset + 1);
        self.progress[rank(topic)] = Progress::Reading;
    }

    /// The consumer's fetch of the partition stopped and started again at
    /// its position (a new assignment): nothing it reported before
    /// counts, since records may have arrived meanwhile. Like a newly
    /// assigned partition, each topic is caught up again only at its end.
    pub fn refetched(&mut self) {
        self.progress = [Progress::Assigned; 3];
    }

    /// The consumer read `topic` to its end.
    pub fn reached_end(&mut self, topic: InputTopic) {
        self.progress[rank(topic)] = Progress::AtEnd;
    }

    /// Whether `topic` has nothing more to give the merge for now: the
    /// consumer read it to its end. `fetched_end` is the high watermark of
    /// the consumer's last fetch response for the partition.
    pub fn caught_up(&self, topic: InputTopic, fetched_end: impl FnOnce() -> Option<i64>) -> bool {
        let i = rank(topic);
        match self.progress[i] {
            Progress::AtEnd => true,
            Progress::Assigned => false,
            Progress::Reading => self.next[i]
                .zip(fetched_end())
                .is_some_and(|(n, end)| n >= end),
        }
    }

    /// [`Partition::caught_up`] for every input topic, in `rank` order.
    pub fn caught(&self, fetched_end: impl Fn(InputTopic) -> Option<i64>) -> [bool; 3] {
        InputTopic::ALL.map(|t| self.caught_up(t, || fetched_end(t)))
    }

    /// Whether a record of `topic` that arrives now would be the merge's
    /// next release: nothing is buffered, the merge does not wait, and
    /// every other topic is caught up. Such a record is folded at once,
    /// without a copy.
    pub fn folds_at_once(
        &self,
        topic: InputTopic,
        merge_wait: Duration,
        fetched_end: impl Fn(InputTopic) -> Option<i64>,
    ) -> bool {
        self.merge.is_empty()
            && merge_wait.is_zero()
            && InputTopic::ALL
                .into_iter()
                .all(|t| t == topic || self.caught_up(t, || fetched_end(t)))
    }

    /// Buffers a record of `topic` in the merge.
    pub fn push(&mut self, topic: InputTopic, entry: Entry<Record>) {
        self.buffered_bytes[rank(topic)] += entry.item.size();
        self.merge.push(topic, entry);
    }

    /// Whether the merge has waited `merge_wait` for records in flight
    /// since it was blocked (always, for no wait).
    pub fn waited(&self, now: Instant, merge_wait: Duration) -> bool {
        merge_wait.is_zero() || self.blocked_since.is_some_and(|s| now - s >= merge_wait)
    }

    /// The merge rule: the next record by event time, where a topic with
    /// nothing buffered is passed over only once the consumer has read it
    /// to its end (`caught`), and then only after the merge wait
    /// (`waited`, for records still in flight). A topic that is behind is
    /// waited for however long it takes: folding past it would run the
    /// clock ahead of records known to exist.
    pub fn pop(&mut self, waited: bool, caught: [bool; 3]) -> Option<(InputTopic, Entry<Record>)> {
        let (topic, entry) = self.merge.pop(|t| waited && caught[rank(t)])?;
        self.buffered_bytes[rank(topic)] -= entry.item.size();
        self.dirty = true;
        Some((topic, entry))
    }

    /// After the releases of one step: the merge is blocked from `now` if
    /// it still holds records it did not release.
    pub fn after_release(&mut self, released: bool, now: Instant, caught: [bool; 3]) {
        if released || self.merge.is_empty() {
            self.blocked_since = None;
        }
        if !self.merge.is_empty() && self.blocked_since.is_none() {
            self.blocked_since = Some(now);
            tracing::trace!(
                buffered = ?InputTopic::ALL.map(|t| self.merge.len(t)),
                caught_up = ?caught,
                next = ?self.next,
                "merge waits for a topic"
            );
        }
    }

    /// How long until the merge wait runs out, when waking for it helps:
    /// only when every topic it waits for is caught up (a topic that is
    /// behind wakes the loop itself, with its records or its end).
    pub fn merge_wake(
        &self,
        merge_wait: Duration,
        caught: impl Fn(InputTopic) -> bool,
    ) -> Option<Duration> {
        let since = self.blocked_since?;
        if merge_wait.is_zero() {
            return None;
        }
        InputTopic::ALL
            .into_iter()
            .all(|t| !self.merge.is_empty_for(t) || caught(t))
            .then(|| merge_wait.saturating_sub(since.elapsed()))
    }

    /// Whether the idle clock may move: nothing buffered, and every topic
    /// read to its end.
    pub fn may_idle(&self, caught: [bool; 3]) -> bool {
        self.merge.is_empty() && caught.iter().all(|c| *c)
    }

    /// The idle clock: with nothing buffered and every topic caught up,
    /// the wall clock (less `idle_lag`) may move event time, but only when
    /// that fires something, so that an idle partition writes nothing.
    /// Returns the time to advance to.
    pub fn idle_target(
        &self,
        caught: [bool; 3],
        wall: Millis,
        idle_lag: Duration,
    ) -> Option<Millis> {
        if !self.may_idle(caught) {
            return None;
        }
        let target = wall - idle_lag.as_millis() as Millis;
        let timeout_due = self.next_due().is_some_and(|d| d <= target);
        ((timeout_due || self.monitor.held_interactions() > 0) && target > self.monitor.clock())
            .then_some(target)
    }

    /// Backpressure: the topics to pause (`true`: a bound reached) or
    /// resume (`false`: back under half of both bounds).
    pub fn backpressure(&self, config: &ProcessorConfig) -> Vec<(InputTopic, bool)> {
        let mut changes = Vec::new();
        for topic in InputTopic::ALL {
            let i = rank(topic);
            let (len, bytes) = (self.merge.len(topic), self.buffered_bytes[i]);
            let pause = len >= config.max_buffered || bytes >= config.max_buffered_bytes;
            let resume = self.paused[i]
                && len <= config.max_buffered / 2
                && bytes <= config.max_buffered_bytes / 2;
            if pause && !self.paused[i] || resume {
                tracing::debug!(?topic, len, bytes, pause, "backpressure");
                changes.push((topic, pause));
            }
        }
        changes
    }

    /// Whether `topic` is paused for backpressure.
    pub fn is_paused(&self, topic: InputTopic) -> bool {
        self.paused[rank(topic)]
    }

    /// `topic` was paused (`true`) or resumed.
    pub fn set_paused(&mut self, topic: InputTopic, paused: bool) {
        self.paused[rank(topic)] = paused;
    }

    /// The offset to resume `topic` from: the first record not folded yet.
    pub fn position(&self, topic: InputTopic) -> Option<i64> {
        self.merge.first_offset(topic).or(self.next[rank(topic)])
    }

    fn offsets(&self) -> InputOffsets {
        InputOffsets {
            posted: self.position(InputTopic::Posted),
            interactions: self.position(InputTopic::Interactions),
            commands: self.position(InputTopic::Commands),
        }
    }

    /// The earliest time the live fold or a shadow policy has something
    /// due.
    pub fn next_due(&self) -> Option<Millis> {
        match (self.monitor.next_due(), self.shadows.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The partition's own changelog record: its clock (`clock`, which may
    /// run ahead of the monitor's when an advance is recorded before it is
    /// made) and its input positions.
    pub fn own_record(&self, clock: Millis) -> ChangelogChange {
        ChangelogChange {
            key: ChangelogRecord::PARTITION_KEY.to_owned(),
            record: Some(ChangelogRecord {
                variant_id: ChangelogRecord::PARTITION_KEY.to_owned(),
                partition_clock: (clock != Millis::MIN).then_some(clock),
                input_offsets: Some(self.offsets()),
                session: None,
                held: Vec::new(),
            }),
            policy: None,
        }
    }

    /// The changelog records since the last commit: the changed keys
    /// (the fold's, then the shadow policies'), and the partition's own
    /// record (the fold's, completed with the input positions).
    pub fn drain_changes(&mut self) -> (Vec<ChangelogChange>, ChangelogChange) {
        let mut changes = self.monitor.drain_changes();
        let own = match changes.last() {
            Some(last) if last.key == ChangelogRecord::PARTITION_KEY => {
                changes.pop().and_then(|change| change.record)
            }
            _ => None,
        };
        changes.extend(self.shadows.drain_changes());
        let clock = self.monitor.clock();
        let own = match own {
            Some(mut record) => {
                record.partition_clock = (clock != Millis::MIN).then_some(clock);
                record.input_offsets = Some(self.offsets());
                ChangelogChange {
                    key: ChangelogRecord::PARTITION_KEY.to_owned(),
                    record: Some(record),
                    policy: None,
                }
            }
            None => self.own_record(clock),
        };
        self.dirty = false;
        (changes, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earlykill_core::event::{Interaction, InteractionKind};
    use earlykill_core::monitor::MonitorConfig;

    fn partition() -> Partition {
        Partition::new(
            Monitor::new(MonitorConfig::default()),
            InputOffsets::default(),
        )
    }

    fn event(offset: i64, time: Millis) -> Entry<Record> {
        Entry {
            offset,
            time: Some(time),
            item: Record::event(
                Decoded::Interaction(Interaction {
                    event_id: "e".into(),
                    variant_id: "v".into(),
                    kind: InteractionKind::View,
                    count: 1,
                    occurred_at: time,
                }),
                b"v",
                &[0; 10],
                time,
            ),
        }
    }

    const NONE: fn(InputTopic) -> Option<i64> = |_| None;

    #[test]
    fn a_topic_is_caught_up_only_once_its_end_is_heard_or_its_fetch_reached() {
        let mut part = partition();
        // Assigned: a cached watermark from an earlier assignment says nothing.
        assert!(!part.caught_up(InputTopic::Posted, || Some(0)));
        part.read(InputTopic::Posted, 9);
        assert!(!part.caught_up(InputTopic::Posted, || Some(20)));
        assert!(part.caught_up(InputTopic::Posted, || Some(10)));
        assert!(!part.caught_up(InputTopic::Posted, || None));
        part.reached_end(InputTopic::Posted);
        assert!(part.caught_up(InputTopic::Posted, || None));
        assert_eq!(part.next(InputTopic::Posted), Some(10));
    }

    #[test]
    fn a_record_folds_at_once_only_when_no_other_topic_can_give_an_earlier_one() {
        let mut part = partition();
        let wait = Duration::ZERO;
        assert!(!part.folds_at_once(InputTopic::Interactions, wait, NONE));
        part.reached_end(InputTopic::Posted);
        part.reached_end(InputTopic::Commands);
        assert!(part.folds_at_once(InputTopic::Interactions, wait, NONE));
        assert!(!part.folds_at_once(InputTopic::Interactions, Duration::from_millis(5), NONE));
        part.push(InputTopic::Interactions, event(0, 10));
        assert!(!part.folds_at_once(InputTopic::Interactions, wait, NONE));
    }

    #[test]
    fn the_merge_holds_records_back_until_the_other_topics_are_caught_up_then_releases_by_event_time(
    ) {
        let mut part = partition();
        let now = Instant::now();
        part.push(InputTopic::Interactions, event(0, 30));
        part.push(InputTopic::Interactions, event(1, 40));
        part.push(InputTopic::Posted, event(0, 35));
        // Commands is behind: nothing is released.
        let caught = [true, true, false];
        assert!(part.pop(part.waited(now, Duration::ZERO), caught).is_none());
        part.after_release(false, now, caught);
        assert!(!part.dirty);
        let caught = [true, true, true];
        let order: Vec<_> = std::iter::from_fn(|| part.pop(true, caught))
            .map(|(t, e)| (t, e.offset))
            .collect();
        // Posted's 35 waits for interactions' 30; interactions' 40 then
        // waits for nothing once posted is empty and caught up.
        assert_eq!(
            order,
            [
                (InputTopic::Interactions, 0),
                (InputTopic::Posted, 0),
                (InputTopic::Interactions, 1)
            ]
        );
        assert!(part.dirty);
    }

    #[test]
    fn a_merge_wait_starts_when_the_merge_blocks_and_ends_after_the_wait() {
        let mut part = partition();
        let wait = Duration::from_millis(50);
        let t0 = Instant::now();
        part.push(InputTopic::Interactions, event(0, 30));
        assert!(!part.waited(t0, wait));
        part.after_release(false, t0, [true; 3]);
        assert!(!part.waited(t0 + Duration::from_millis(49), wait));
        assert!(part.waited(t0 + wait, wait));
        assert!(part.merge_wake(wait, |_| true).is_some());
        // A topic that is behind wakes the loop itself.
        assert!(part
            .merge_wake(wait, |t| t == InputTopic::Interactions)
            .is_none());
        assert!(part.pop(true, [true; 3]).is_some());
        part.after_release(true, t0 + wait, [true; 3]);
        assert!(part.merge_wake(wait, |_| true).is_none());
    }

    #[test]
    fn backpressure_pauses_at_a_bound_and_resumes_under_half_of_both() {
        let mut part = partition();
        let mut config = ProcessorConfig::with_bootstrap("unused");
        config.max_buffered = 4;
        config.max_buffered_bytes = 1 << 20;
        for offset in 0..4 {
            part.push(InputTopic::Interactions, event(offset, 10 + offset));
        }
        assert_eq!(
            part.backpressure(&config),
            [(InputTopic::Interactions, true)]
        );
        part.set_paused(InputTopic::Interactions, true);
        assert!(part.backpressure(&config).is_empty());
        part.pop(true, [true; 3]);
        assert!(part.backpressure(&config).is_empty(), "3 is over half of 4");
        part.pop(true, [true; 3]);
        assert_eq!(
            part.backpressure(&config),
            [(InputTopic::Interactions, false)]
        );
        // The byte bound pauses on its own.
        config.max_buffered_bytes = 20;
        part.set_paused(InputTopic::Interactions, false);
        assert_eq!(
            part.backpressure(&config),
            [(InputTopic::Interactions, true)]
        );
    }

    #[test]
    fn an_idle_partition_advances_only_when_that_fires_something() {
        let part = partition();
        let lag = Duration::from_millis(100);
        // Nothing active: nothing to fire, nothing written.
        assert_eq!(part.idle_target([true; 3], 10_000, lag), None);
        assert_eq!(part.idle_target([true, false, true], 10_000, lag), None);
    }

    #[test]
    fn the_partition_record_carries_the_clock_and_the_first_unfolded_offsets() {
        let mut part = Partition::new(
            Monitor::new(MonitorConfig::default()),
            InputOffsets {
                posted: Some(5),
                interactions: None,
                commands: Some(2),
            },
        );
        part.push(InputTopic::Posted, event(5, 10));
        part.read(InputTopic::Posted, 5);
        part.read(InputTopic::Interactions, 7);
        let (changes, own) = part.drain_changes();
        assert!(changes.is_empty(), "{changes:?}");
        let record = own.record.unwrap();
        assert_eq!(record.partition_clock, None);
        assert_eq!(
            record.input_offsets,
            Some(InputOffsets {
                posted: Some(5),
                interactions: Some(8),
                commands: Some(2)
            })
        );
        assert!(!part.dirty);
    }

    #[test]
    fn no_progress_is_timed_from_the_last_move_of_the_clock_or_a_position() {
        let mut part = partition();
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        assert!(part.progressed(t0 + 5 * second) >= 5 * second);
        assert!(part.progressed(t0 + 7 * second) >= 7 * second);
        part.read(InputTopic::Interactions, 41);
        assert_eq!(part.progressed(t0 + 8 * second), Duration::ZERO);
        assert_eq!(part.progressed(t0 + 10 * second), 2 * second);
        let mut decisions = Vec::new();
        part.monitor.advance_to(1_000_000, &mut decisions);
        assert_eq!(part.progressed(t0 + 11 * second), Duration::ZERO);
    }
}
