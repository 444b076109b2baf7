//! An in-memory [`Broker`] for unit tests: a log of what was sent, an open
//! transaction that commits or aborts whole, the group's offsets, a
//! compacted changelog read back, and switches that make the next calls
//! fail the way a broker does.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::{Broker, ChangelogRead, Inbound, OutRecord, Position, Start};
use crate::processor::ProcessorError;
use crate::processor::{Guarantee, ProcessorConfig};
use earlykill_core::event::{Contract, Decoder, InputTopic, Millis, MonitoringDecision};
use earlykill_core::merge::rank;

/// A record as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sent {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Sent {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
            .map(|v| String::from_utf8(v).expect("utf-8 header"))
    }
}

/// What the protocol asked of the broker, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Begin,
    /// A record sent to this topic.
    Send(String),
    Commit,
    Abort,
    Flush,
    CommitOffsets,
    Rewind,
    ReadChangelog,
    /// A check that changelog partitions are unchanged since an offset.
    CheckChangelog,
}

#[derive(Default)]
struct State {
    /// Records committed (or, without transactions, delivered): what a
    /// read_committed reader sees.
    visible: Vec<Sent>,
    /// Records of the open transaction.
    pending: Vec<Sent>,
    in_transaction: bool,
    offsets: BTreeMap<(usize, i32), i64>,
    fetched: BTreeMap<(usize, i32), (i64, i64)>,
    paused: BTreeSet<(usize, i32)>,
    rewinds: Vec<Vec<Start>>,
    /// Every assignment made outside the rebalance callback, in order.
    assignments: Vec<Vec<Start>>,
    calls: Vec<Call>,
    /// Errors the next commits meet, first first.
    commit_errors: Vec<KafkaError>,
    /// Sends refused for delivery (at-least-once) from now on, with this
    /// error: counted in the delivery failures.
    undeliverable: Option<KafkaError>,
    /// Only sends with a key are refused (`Some(true)`: a changelog's
    /// session records), or only those without (`Some(false)`: its
    /// partition records).
    undeliverable_only_keyed: Option<bool>,
    failures: u64,
    last_failure: Option<(KafkaError, String)>,
    /// Indexes in `visible` of records another producer wrote.
    foreign: BTreeSet<usize>,
    /// The changelog partitions being read, with the next offset of each.
    reading: BTreeMap<i32, i64>,
    /// Indexes in `visible` of changelog records compaction removed.
    compacted: BTreeSet<usize>,
    /// The partitions of each `read_changelog_from`, in order.
    changelog_reads: Vec<Vec<i32>>,
}

impl State {
    /// The visible changelog records of partition `p`, with their offsets
    /// and whether another producer wrote them.
    fn changelog<'a>(
        &'a self,
        topic: &'a str,
        p: i32,
    ) -> impl Iterator<Item = (i64, &'a Sent, bool)> + 'a {
        self.visible
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.topic == topic && r.partition == Some(p))
            .enumerate()
            .filter(|(_, (i, _))| !self.compacted.contains(i))
            .map(|(offset, (i, r))| (offset as i64, r, self.foreign.contains(&i)))
    }
}

/// The in-memory broker.
pub(crate) struct Fake {
    config: Arc<ProcessorConfig>,
    transactional: bool,
    partitions: i32,
    state: RefCell<State>,
}

impl Fake {
    /// A broker for `config`'s topics, with `partitions` partitions each.
    pub fn new(config: &Arc<ProcessorConfig>, partitions: i32) -> Fake {
        Fake {
            config: config.clone(),
            transactional: config.guarantee == Guarantee::ExactlyOnce,
            partitions,
            state: RefCell::default(),
        }
    }

    /// Another producer (another instance) appends a copy of changelog
    /// partition `p`'s last record.
    pub fn write_changelog_elsewhere(&self, p: i32) {
        let mut state = self.state.borrow_mut();
        let last = state
            .changelog(&self.config.topics.changelog, p)
            .last()
            .map(|(_, r, _)| r.clone())
            .expect("a changelog record to copy");
        state.visible.push(last);
        let i = state.visible.len() - 1;
        state.foreign.insert(i);
    }

    /// Compacts the changelog as Kafka's cleaner does when it catches up:
    /// of each key only its latest record stays, at its offset.
    pub fn compact_changelog(&self) {
        let mut state = self.state.borrow_mut();
        let topic = &self.config.topics.changelog;
        let mut latest = BTreeMap::new();
        for (i, r) in state.visible.iter().enumerate() {
            if &r.topic == topic {
                latest.insert((r.partition, r.key.clone()), i);
            }
        }
        let superseded: Vec<usize> = (0..state.visible.len())
            .filter(|i| {
                let r = &state.visible[*i];
                &r.topic == topic && latest[&(r.partition, r.key.clone())] != *i
            })
            .collect();
        state.compacted.extend(superseded);
    }

    /// The changelog partitions each restore read was pointed at, in order.
    pub fn changelog_reads(&self) -> Vec<Vec<i32>> {
        self.state.borrow().changelog_reads.clone()
    }

    /// The next commit fails with `error`.
    pub fn fail_next_commit(&self, error: KafkaError) {
        self.state.borrow_mut().commit_errors.push(error);
    }

    /// Every record sent from now on fails its delivery with `error`.
    pub fn fail_deliveries(&self, error: Option<KafkaError>) {
        let mut state = self.state.borrow_mut();
        state.undeliverable = error;
        state.undeliverable_only_keyed = None;
    }

    /// A restarted process's producer: no delivery failures counted yet.
    pub fn new_producer(&self) {
        let mut state = self.state.borrow_mut();
        state.failures = 0;
        state.last_failure = None;
    }

    /// As [`Fake::fail_deliveries`], refusing only records with a key:
    /// the brokers refuse the batch of a changelog partition's session
    /// records while its partition record (empty key) lands.
    pub fn fail_keyed_deliveries(&self, error: KafkaError) {
        let mut state = self.state.borrow_mut();
        state.undeliverable = Some(error);
        state.undeliverable_only_keyed = Some(true);
    }

    /// As [`Fake::fail_deliveries`], refusing only records without a key:
    /// a changelog partition's own record, after its session records
    /// landed.
    pub fn fail_unkeyed_deliveries(&self, error: KafkaError) {
        let mut state = self.state.borrow_mut();
        state.undeliverable = Some(error);
        state.undeliverable_only_keyed = Some(false);
    }

    /// The consumer's last fetch of `topic`'s partition saw this high
    /// watermark.
    pub fn fetched(&self, topic: InputTopic, partition: i32, high: i64) {
        self.state
            .borrow_mut()
            .fetched
            .insert((rank(topic), partition), (0, high));
    }

    /// Records of the open transaction.
    pub fn pending(&self) -> Vec<Sent> {
        self.state.borrow().pending.clone()
    }

    /// Records a read_committed reader of `topic` sees.
    pub fn visible(&self, topic: &str) -> Vec<Sent> {
        let state = self.state.borrow();
        state
            .visible
            .iter()
            .filter(|r| r.topic == topic)
            .cloned()
            .collect()
    }

    /// The decisions a read_committed reader sees, as `(variant, kind)`.
    pub fn decisions(&self) -> Vec<(String, String)> {
        self.visible(&self.config.topics.decisions)
            .iter()
            .map(|r| {
                let d: MonitoringDecision = Decoder::new(Contract::MonitoringDecision)
                    .decode(r.value.as_deref().unwrap())
                    .unwrap();
                (d.variant_id.to_string(), d.kind.as_str().to_owned())
            })
            .collect()
    }

    /// The group's committed offset of one input topic partition.
    pub fn offset(&self, topic: InputTopic, partition: i32) -> Option<i64> {
        self.state
            .borrow()
            .offsets
            .get(&(rank(topic), partition))
            .copied()
    }

    pub fn is_paused(&self, topic: InputTopic, partition: i32) -> bool {
        self.state
            .borrow()
            .paused
            .contains(&(rank(topic), partition))
    }

    /// Every rewind, in order.
    pub fn rewinds(&self) -> Vec<Vec<Start>> {
        self.state.borrow().rewinds.clone()
    }

    /// Every assignment the core made, in order.
    pub fn assignments(&self) -> Vec<Vec<Start>> {
        self.state.borrow().assignments.clone()
    }

    /// The calls made, in order; `take` empties the record.
    pub fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.borrow_mut().calls)
    }

    fn call(&self, call: Call) {
        self.state.borrow_mut().calls.push(call);
    }
}

impl Broker for Fake {
    fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.call(Call::Begin);
        let mut state = self.state.borrow_mut();
        assert!(self.transactional, "a transaction without transactions");
        assert!(!state.in_transaction, "begin inside a transaction");
        state.in_transaction = true;
        Ok(())
    }

    fn send(&self, record: &OutRecord<'_>) -> Result<(), KafkaError> {
        self.call(Call::Send(record.topic.to_owned()));
        let sent = Sent {
            topic: record.topic.to_owned(),
            partition: record.partition,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(<[u8]>::to_vec)))
                .collect(),
        };
        let mut state = self.state.borrow_mut();
        if self.transactional {
            assert!(state.in_transaction, "a send outside a transaction");
            state.pending.push(sent);
        } else if let Some(error) = state.undeliverable.clone().filter(|_| {
            let keyed = sent.key.as_ref().is_some_and(|k| !k.is_empty());
            state
                .undeliverable_only_keyed
                .is_none_or(|only| only == keyed)
        }) {
            state.failures += 1;
            state.last_failure = Some((error, sent.topic));
        } else {
            state.visible.push(sent);
        }
        Ok(())
    }

    fn commit_transaction(&self, offsets: &[Position]) -> Result<(), KafkaError> {
        self.call(Call::Commit);
        let mut state = self.state.borrow_mut();
        assert!(state.in_transaction, "a commit outside a transaction");
        if !state.commit_errors.is_empty() {
            return Err(state.commit_errors.remove(0));
        }
        let pending = std::mem::take(&mut state.pending);
        state.visible.extend(pending);
        for p in offsets {
            state.offsets.insert((rank(p.topic), p.partition), p.offset);
        }
        state.in_transaction = false;
        Ok(())
    }

    fn abort_transaction(&self) -> Result<(), KafkaError> {
        self.call(Call::Abort);
        let mut state = self.state.borrow_mut();
        state.pending.clear();
        state.in_transaction = false;
        Ok(())
    }

    fn flush(&self) -> Result<(), KafkaError> {
        self.call(Call::Flush);
        Ok(())
    }

    fn delivery_failures(&self) -> (u64, Option<(KafkaError, String)>) {
        let state = self.state.borrow();
        (state.failures, state.last_failure.clone())
    }

    fn commit_offsets(&self, offsets: &[Position]) -> Result<(), KafkaError> {
        self.call(Call::CommitOffsets);
        let mut state = self.state.borrow_mut();
        for p in offsets {
            state.offsets.insert((rank(p.topic), p.partition), p.offset);
        }
        Ok(())
    }

    fn fetched_watermarks(&self, topic: InputTopic, partition: i32) -> Option<(i64, i64)> {
        self.state
            .borrow()
            .fetched
            .get(&(rank(topic), partition))
            .copied()
    }

    fn pause(&self, topic: InputTopic, partition: i32, pause: bool) -> Result<(), KafkaError> {
        let mut state = self.state.borrow_mut();
        if pause {
            state.paused.insert((rank(topic), partition));
        } else {
            state.paused.remove(&(rank(topic), partition));
        }
        Ok(())
    }

    fn rewind(&self, starts: &[Start]) -> Result<(), KafkaError> {
        self.call(Call::Rewind);
        let mut state = self.state.borrow_mut();
        for s in starts {
            state.paused.remove(&(rank(s.topic), s.partition));
        }
        state.rewinds.push(starts.to_vec());
        Ok(())
    }

    fn assign(&self, starts: &[Start]) -> Result<(), KafkaError> {
        let mut state = self.state.borrow_mut();
        state.paused.clear();
        state.assignments.push(starts.to_vec());
        Ok(())
    }

    fn changelog_written(&self, partition: i32) -> Option<i64> {
        let state = self.state.borrow();
        state
            .changelog(&self.config.topics.changelog, partition)
            .filter(|(_, _, foreign)| !foreign)
            .map(|(offset, _, _)| offset)
            .last()
    }

    fn changelog_unchanged(
        &self,
        from: &BTreeMap<i32, i64>,
    ) -> Result<BTreeSet<i32>, ProcessorError> {
        self.call(Call::CheckChangelog);
        let state = self.state.borrow();
        let topic = &self.config.topics.changelog;
        Ok(from
            .iter()
            .filter(|&(&p, &offset)| state.changelog(topic, p).all(|(o, _, _)| o < offset))
            .map(|(&p, _)| p)
            .collect())
    }

    fn read_changelog_from(&self, from: &BTreeMap<i32, Option<i64>>) -> Result<(), ProcessorError> {
        if !from.is_empty() {
            self.call(Call::ReadChangelog);
        }
        let mut state = self.state.borrow_mut();
        if !from.is_empty() {
            state.changelog_reads.push(from.keys().copied().collect());
        }
        state.reading = from
            .iter()
            .map(|(&p, &at)| {
                assert!(p < self.partitions, "changelog partition {p} out of range");
                (p, at.unwrap_or(0))
            })
            .collect();
        Ok(())
    }

    fn changelog_bounds(&self, partition: i32) -> Option<(i64, i64)> {
        let state = self.state.borrow();
        let end = state
            .changelog(&self.config.topics.changelog, partition)
            .count();
        Some((0, end as i64))
    }

    fn read_changelog(
        &self,
        _wait: std::time::Duration,
        max: usize,
        each: &mut dyn FnMut(ChangelogRead<'_>) -> Result<(), ProcessorError>,
    ) -> Result<usize, ProcessorError> {
        // The partitions one after another, each to its end: the first
        // goes live while the others are still read.
        let topic = self.config.topics.changelog.clone();
        let mut handed = 0;
        while handed < max {
            let next = {
                let state = self.state.borrow();
                state.reading.iter().next().map(|(&p, &at)| {
                    let record = state
                        .changelog(&topic, p)
                        .find(|&(o, _, _)| o >= at)
                        .map(|(o, r, _)| (o, r.clone()));
                    (p, record)
                })
            };
            let Some((partition, record)) = next else {
                break;
            };
            let mut state = self.state.borrow_mut();
            match record {
                Some((offset, sent)) => {
                    state.reading.insert(partition, offset + 1);
                    drop(state);
                    let commit = sent.header(crate::processor::output::COMMIT_HEADER);
                    let writer = sent.header("earlykill_transaction");
                    each(ChangelogRead::Record {
                        partition,
                        offset,
                        key: sent.key.as_deref().unwrap_or_default(),
                        value: sent.value.as_deref(),
                        names_commit: commit.is_some(),
                        writer: writer.as_deref().map(str::as_bytes),
                    })?;
                }
                None => {
                    state.reading.remove(&partition);
                    drop(state);
                    each(ChangelogRead::End { partition })?;
                }
            }
            handed += 1;
        }
        Ok(handed)
    }
}

/// An input record for the core, as a test makes it.
#[derive(Debug, Clone)]
pub(crate) struct In {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub appended: Millis,
}

impl Inbound for In {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn offset(&self) -> i64 {
        self.offset
    }

    fn key(&self) -> Option<&[u8]> {
        Some(&self.key)
    }

    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    fn appended(&self) -> Option<Millis> {
        Some(self.appended)
    }

    fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        vec![("origin".to_owned(), Some(b"test".to_vec()))]
    }
}

/// An abortable error, as a broker's transient failure gives.
pub(crate) fn transient() -> KafkaError {
    KafkaError::MessageProduction(RDKafkaErrorCode::RequestTimedOut)
}
