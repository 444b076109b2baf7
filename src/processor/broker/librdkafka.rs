//! [`Broker`] over librdkafka's clients: the input consumer (borrowed from
//! the poll loop or the rebalance callback that has it), the producer and
//! the changelog reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{Broker, OutRecord, Position, Restored, RestoredState, Start, StartAt};
use crate::kafka::{self, DeliveryContext, RestoreContext};
use crate::processor::ProcessorConfig;
use crate::processor::ProcessorError;
use crate::telemetry;
use earlykill_core::event::{ChangelogRecord, Contract, Decoder, InputTopic};
use earlykill_core::merge::rank;

/// The clients a processor owns besides its input consumer, and what it
/// needs to name topics to librdkafka.
pub(crate) struct Clients {
    pub config: std::sync::Arc<ProcessorConfig>,
    pub producer: ThreadedProducer<DeliveryContext>,
    pub restorer: BaseConsumer<RestoreContext>,
    /// The input topics' names for librdkafka's C calls, in `rank` order.
    pub topic_names: [CString; 3],
    /// Where a partition with no recorded position starts.
    pub reset: Offset,
}

impl Clients {
    /// The [`Broker`] of these clients and the input consumer `consumer`.
    pub fn with<'a, C: ConsumerContext>(
        &'a self,
        consumer: &'a BaseConsumer<C>,
    ) -> LibRdKafka<'a, C> {
        LibRdKafka {
            clients: self,
            consumer,
        }
    }
}

/// [`Broker`] over librdkafka.
pub(crate) struct LibRdKafka<'a, C: ConsumerContext> {
    clients: &'a Clients,
    consumer: &'a BaseConsumer<C>,
}

impl<C: ConsumerContext> LibRdKafka<'_, C> {
    fn topic(&self, topic: InputTopic) -> &str {
        self.clients.config.topics.input(topic)
    }

    fn list(&self, offsets: &[Position]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for p in offsets {
            let _ = tpl.add_partition_offset(
                self.topic(p.topic),
                p.partition,
                Offset::Offset(p.offset),
            );
        }
        tpl
    }
}

impl<C: ConsumerContext> Broker for LibRdKafka<'_, C> {
    fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.clients.producer.begin_transaction()
    }

    fn send(&self, record: &OutRecord<'_>) -> Result<(), KafkaError> {
        let headers = (!record.headers.is_empty()).then(|| {
            record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |headers, (key, value)| headers.insert(Header { key, value: *value }),
            )
        });
        let mut base = BaseRecord::<[u8], [u8]>::to(record.topic);
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(headers) = headers {
            base = base.headers(headers);
        }
        let producer = &self.clients.producer;
        loop {
            match producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer's queue is the backpressure: wait for
                    // deliveries to make room.
                    let _ = kafka::flush(producer, Duration::from_millis(10));
                    base = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn commit_transaction(&self, offsets: &[Position]) -> Result<(), KafkaError> {
        let timeout = self.clients.config.kafka_timeout;
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
        let producer = &self.clients.producer;
        producer.send_offsets_to_transaction(&self.list(offsets), &metadata, timeout)?;
        kafka::flush(producer, timeout)?;
        producer.commit_transaction(timeout)
    }

    fn abort_transaction(&self) -> Result<(), KafkaError> {
        self.clients
            .producer
            .abort_transaction(self.clients.config.kafka_timeout)
    }

    fn flush(&self) -> Result<(), KafkaError> {
        kafka::flush(&self.clients.producer, self.clients.config.kafka_timeout)
    }

    fn delivery_failures(&self) -> (u64, Option<(KafkaError, String)>) {
        self.clients.producer.context().failures()
    }

    fn commit_offsets(&self, offsets: &[Position]) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.consumer.commit(&self.list(offsets), CommitMode::Sync)
    }

    fn fetched_watermarks(&self, topic: InputTopic, partition: i32) -> Option<(i64, i64)> {
        let name = &self.clients.topic_names[rank(topic)];
        kafka::cached_watermarks(self.consumer, name, partition)
    }

    fn pause(&self, topic: InputTopic, partition: i32, pause: bool) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topic(topic), partition);
        if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        }
    }

    fn rewind(&self, starts: &[Start]) -> Result<(), KafkaError> {
        let tpl = starts_list(&self.clients.config, self.clients.reset, starts);
        if tpl.count() == 0 {
            return Ok(());
        }
        // A rewound partition starts unpaused and empty, so the consumer
        // must not keep it paused for backpressure that no longer exists:
        // it would never be resumed (the fault soak found this stall).
        self.consumer.resume(&tpl)?;
        self.consumer
            .seek_partitions(tpl, self.clients.config.kafka_timeout)
            .map(|_| ())
    }

    fn changelog_written(&self, partition: i32) -> Option<i64> {
        self.clients.producer.context().changelog_written(partition)
    }

    fn changelog_unchanged(
        &self,
        from: &BTreeMap<i32, i64>,
    ) -> Result<BTreeSet<i32>, ProcessorError> {
        changelog_unchanged(&self.clients.restorer, &self.clients.config, from)
    }

    fn read_changelog(&self, partitions: &BTreeSet<i32>) -> Result<RestoredState, ProcessorError> {
        read_changelog(
            &self.clients.restorer,
            &self.clients.config,
            partitions,
            |progress, log| {
                let remaining = progress.remaining();
                telemetry::restore_progress(progress.partition, progress.records, remaining);
                if log {
                    let eta = progress
                        .eta()
                        .map(|eta| format!("{:.1}", eta.as_secs_f64()));
                    tracing::info!(
                        partition = progress.partition,
                        records = progress.records,
                        remaining,
                        eta_seconds = eta.as_deref().unwrap_or("-"),
                        "restoring"
                    );
                }
            },
        )
    }
}

/// `starts` as librdkafka's list, `reset` standing for [`StartAt::Reset`].
pub(crate) fn starts_list(
    config: &ProcessorConfig,
    reset: Offset,
    starts: &[Start],
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(starts.len());
    for start in starts {
        let offset = match start.at {
            StartAt::Offset(o) => Offset::Offset(o),
            StartAt::Beginning => Offset::Beginning,
            StartAt::Reset => reset,
        };
        let _ = tpl.add_partition_offset(config.topics.input(start.topic), start.partition, offset);
    }
    tpl
}

/// How far the restore of one changelog partition is.
pub(crate) struct RestoreProgress {
    /// The partition.
    pub partition: i32,
    /// Records read so far.
    pub records: u64,
    /// The offset after the last record read.
    pub position: i64,
    /// Where the partition started and ended when the restore began
    /// (`None` when the broker did not say).
    pub bounds: Option<(i64, i64)>,
    /// When the restore began.
    pub started: Instant,
}

impl RestoreProgress {
    /// Offsets left to read to the end the partition had at the start (an
    /// upper bound on records: a compacted log has gaps).
    pub fn remaining(&self) -> Option<u64> {
        self.bounds
            .map(|(low, high)| (high - self.position.max(low)).max(0) as u64)
    }

    /// When the rest will be read, at the rate so far.
    pub fn eta(&self) -> Option<Duration> {
        let (low, _) = self.bounds?;
        let remaining = self.remaining()? as f64;
        let done = (self.position - low).max(0) as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        (done > 0.0 && elapsed > 0.0).then(|| Duration::from_secs_f64(remaining * elapsed / done))
    }
}

/// How often the restore logs its progress (the metrics follow every
/// second).
const RESTORE_LOG_EVERY: Duration = Duration::from_secs(3);

/// Reads `partitions` of the changelog from the beginning to their end
/// (the last committed record), keeping the latest record per key.
/// `progress` hears of each partition every second and at its end (`true`
/// when that is also a time to log).
fn read_changelog<C: ConsumerContext>(
    restorer: &BaseConsumer<C>,
    config: &ProcessorConfig,
    partitions: &BTreeSet<i32>,
    mut progress: impl FnMut(&RestoreProgress, bool),
) -> Result<RestoredState, ProcessorError> {
    let topic = &config.topics.changelog;
    // A consumer learns the leaders of a newly assigned topic on its next
    // periodic metadata scan, up to a second later; asking first lets the
    // fetch start at once.
    restorer
        .fetch_metadata(Some(topic), config.kafka_timeout)
        .map_err(|e| ProcessorError::Kafka {
            action: "fetch the changelog's metadata for restore",
            source: e,
        })?;
    let mut assignment = TopicPartitionList::new();
    for &p in partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| ProcessorError::Kafka {
                action: "assign the changelog for restore",
                source: e,
            })?;
    }
    restorer
        .assign(&assignment)
        .map_err(|e| ProcessorError::Kafka {
            action: "assign the changelog for restore",
            source: e,
        })?;
    // Where each partition ends now: what is left, and when it will be read.
    let started = Instant::now();
    let mut state: BTreeMap<i32, RestoreProgress> = partitions
        .iter()
        .map(|&p| {
            let bounds = restorer
                .fetch_watermarks(topic, p, config.kafka_timeout)
                .inspect_err(
                    |e| tracing::debug!(error = %e, partition = p, "changelog end unknown"),
                )
                .ok();
            let at = RestoreProgress {
                partition: p,
                records: 0,
                position: bounds.map_or(0, |(low, _)| low),
                bounds,
                started,
            };
            (p, at)
        })
        .collect();
    for at in state.values() {
        progress(at, true);
    }
    let mut last_log = Instant::now();
    let decoder = Decoder::new(Contract::ChangelogRecord);
    let mut latest: BTreeMap<i32, HashMap<Vec<u8>, Option<ChangelogRecord>>> =
        partitions.iter().map(|&p| (p, HashMap::new())).collect();
    let mut writers: BTreeMap<i32, String> = BTreeMap::new();
    // Per partition, the session records read since its last partition
    // record, and whether it has one at all.
    let mut pending: HashMap<i32, Vec<KeyedRecord>> = HashMap::new();
    let mut positioned: BTreeSet<i32> = BTreeSet::new();
    let mut read: BTreeMap<i32, u64> = BTreeMap::new();
    let mut nexts: BTreeMap<i32, i64> = BTreeMap::new();
    let mut remaining = partitions.clone();
    let mut last_progress = Instant::now();
    // A restore may take as long as the changelog needs; it times out only
    // when nothing at all has arrived for kafka-timeout-seconds.
    let mut heard = Instant::now();
    while !remaining.is_empty() {
        match restorer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                heard = Instant::now();
                let p = message.partition();
                let key = message.key().unwrap_or_default().to_vec();
                let record = match message.payload() {
                    None => None,
                    Some(bytes) => Some(decoder.decode::<ChangelogRecord>(bytes).map_err(|e| {
                        ProcessorError::CorruptChangelog {
                            partition: p,
                            offset: message.offset(),
                            reason: e.to_string(),
                        }
                    })?),
                };
                if key.is_empty() {
                    let writer = message
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == "earlykill_transaction"))
                        .and_then(|h| h.value);
                    if let Some(writer) = writer {
                        writers.insert(p, String::from_utf8_lossy(writer).into_owned());
                    }
                }
                // A session record counts once a partition record after
                // it has landed (see `torn_tail`).
                let header = |name: &str| {
                    message
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == name))
                        .and_then(|h| h.value)
                        .map(<[u8]>::to_vec)
                };
                if key.is_empty() {
                    if let Some(keys) = latest.get_mut(&p) {
                        let closes = header("earlykill_transaction");
                        let tail = pending.remove(&p).unwrap_or_default();
                        commit_pending(p, closes.as_deref(), tail, keys);
                        keys.insert(key, record);
                    }
                    positioned.insert(p);
                } else {
                    let commit = header(crate::processor::output::COMMIT_HEADER);
                    pending.entry(p).or_default().push((key, record, commit));
                }
                let next = nexts.entry(p).or_insert(0);
                *next = (*next).max(message.offset() + 1);
                *read.entry(p).or_default() += 1;
                if let Some(at) = state.get_mut(&p) {
                    at.records += 1;
                    at.position = at.position.max(message.offset() + 1);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                heard = Instant::now();
                remaining.remove(&p);
                if let Some(mut at) = state.remove(&p) {
                    // Read to its end: nothing remains.
                    at.bounds = at.bounds.map(|(low, _)| (low, at.position.max(low)));
                    progress(&at, true);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "changelog restore: consumer error"),
            None if heard.elapsed() > config.kafka_timeout => {
                return Err(ProcessorError::RestoreTimeout {
                    partitions: remaining.into_iter().collect(),
                    timeout: config.kafka_timeout,
                })
            }
            None => {}
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let log = last_log.elapsed() >= RESTORE_LOG_EVERY;
            if log {
                last_log = Instant::now();
            }
            for at in state.values() {
                progress(at, log);
            }
        }
    }
    restorer.unassign().map_err(|e| ProcessorError::Kafka {
        action: "release the changelog after restore",
        source: e,
    })?;
    for (p, tail) in pending {
        if let Some(keys) = latest.get_mut(&p) {
            torn_tail(p, positioned.contains(&p), tail, keys);
        }
    }
    Ok(latest
        .into_iter()
        .map(|(p, keys)| {
            let restored = Restored {
                records: keys.into_values().flatten().collect(),
                writer: writers.remove(&p),
                next: nexts.get(&p).copied().unwrap_or(0),
            };
            (p, restored)
        })
        .collect())
}

/// A changelog record read: its key, its value (`None`: a tombstone), and
/// the commit that wrote it (`None` on records written before commits were
/// named on them).
type KeyedRecord = (Vec<u8>, Option<ChangelogRecord>, Option<Vec<u8>>);

/// A partition record closing commit `closes` arrived: the session records
/// read since the previous one are its commit's, and count, unless they
/// name another commit, one that never wrote its partition record (torn:
/// at-least-once, the brokers refused part of it and the processor
/// stopped). Those are dropped even once later commits follow them.
fn commit_pending(
    p: i32,
    closes: Option<&[u8]>,
    pending: Vec<KeyedRecord>,
    keys: &mut HashMap<Vec<u8>, Option<ChangelogRecord>>,
) {
    let mut torn = 0;
    for (key, record, commit) in pending {
        match (commit.as_deref(), closes) {
            (Some(commit), Some(closes)) if commit != closes => torn += 1,
            _ => {
                keys.insert(key, record);
            }
        }
    }
    if torn > 0 {
        tracing::warn!(
            partition = p,
            records = torn,
            "changelog records of a commit that never completed ignored; their input is read again"
        );
    }
}

/// The session records after a partition's last partition record. Each
/// commit writes a partition's session records first and its partition
/// record (the input positions) last, the latter only once the former are
/// acknowledged: records after the last partition record belong to a
/// commit whose positions never landed (at-least-once: the brokers refused
/// part of it, and the processor stopped). Counting them would fold their
/// input twice after the restore, which resumes from the older positions;
/// so they are dropped, and the sessions keep the state those positions
/// cover. A partition with no partition record at all, and records that
/// name no commit (written by an older release or another tool), count as
/// they always did.
fn torn_tail(
    p: i32,
    positioned: bool,
    tail: Vec<KeyedRecord>,
    keys: &mut HashMap<Vec<u8>, Option<ChangelogRecord>>,
) {
    let mut torn = 0;
    for (key, record, commit) in tail {
        // Records that name no commit were written by an older release or
        // another tool: they count as they always did.
        if positioned && commit.is_some() {
            torn += 1;
        } else {
            keys.insert(key, record);
        }
    }
    if torn > 0 {
        tracing::warn!(
            partition = p,
            records = torn,
            "changelog records after the partition's last positions ignored: their commit never completed, and their input is read again"
        );
    }
}

/// Of the changelog partitions in `from`, those where reading from their
/// offset there reaches the end (the last committed record) without a
/// record: nobody wrote them since.
fn changelog_unchanged<C: ConsumerContext>(
    restorer: &BaseConsumer<C>,
    config: &ProcessorConfig,
    from: &BTreeMap<i32, i64>,
) -> Result<BTreeSet<i32>, ProcessorError> {
    let kafka = |action| move |source| ProcessorError::Kafka { action, source };
    let topic = &config.topics.changelog;
    let mut assignment = TopicPartitionList::new();
    for (&p, &offset) in from {
        assignment
            .add_partition_offset(topic, p, Offset::Offset(offset))
            .map_err(kafka(
                "assign the changelog to check a handed-over partition",
            ))?;
    }
    restorer.assign(&assignment).map_err(kafka(
        "assign the changelog to check a handed-over partition",
    ))?;
    let mut remaining: BTreeSet<i32> = from.keys().copied().collect();
    let mut unchanged = BTreeSet::new();
    let mut heard = Instant::now();
    while !remaining.is_empty() {
        match restorer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                heard = Instant::now();
                remaining.remove(&message.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                heard = Instant::now();
                if remaining.remove(&p) {
                    unchanged.insert(p);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "changelog check: consumer error"),
            None if heard.elapsed() > config.kafka_timeout => {
                return Err(ProcessorError::RestoreTimeout {
                    partitions: remaining.into_iter().collect(),
                    timeout: config.kafka_timeout,
                })
            }
            None => {}
        }
    }
    restorer
        .unassign()
        .map_err(kafka("release the changelog after the check"))?;
    Ok(unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64, started: Instant) -> RestoreProgress {
        RestoreProgress {
            partition: 0,
            records: 0,
            position,
            bounds: Some((10, 110)),
            started,
        }
    }

    #[test]
    fn what_remains_is_counted_to_the_end_the_restore_began_with() {
        let now = Instant::now();
        assert_eq!(at(60, now).remaining(), Some(50));
        assert_eq!(at(0, now).remaining(), Some(100), "the log starts at 10");
        assert_eq!(at(200, now).remaining(), Some(0));
        let unknown = RestoreProgress {
            bounds: None,
            ..at(60, now)
        };
        assert_eq!(unknown.remaining(), None);
        assert_eq!(unknown.eta(), None);
    }

    #[test]
    fn the_eta_follows_the_rate_so_far() {
        let ten_seconds_ago = Instant::now() - Duration::from_secs(10);
        // Half read in ten seconds: ten more.
        let eta = at(60, ten_seconds_ago).eta().expect("an eta").as_secs_f64();
        assert!((9.9..11.0).contains(&eta), "{eta}");
        assert_eq!(at(10, ten_seconds_ago).eta(), None, "nothing read yet");
    }
}
