//! [`Broker`] over librdkafka's clients: the input consumer (borrowed from
//! the poll loop or the rebalance callback that has it), the producer and
//! the changelog reader.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{Broker, ChangelogRead, OutRecord, Position, Start, StartAt};
use crate::kafka::produce::{self, TopicHandles};
use crate::kafka::{self, DeliveryContext, RestoreContext};
use crate::processor::output::COMMIT_HEADER;
use crate::processor::ProcessorConfig;
use crate::processor::ProcessorError;
use earlykill_core::event::InputTopic;
use earlykill_core::merge::rank;

/// The clients a processor owns besides its input consumer, and what it
/// needs to name topics to librdkafka.
pub(crate) struct Clients {
    pub config: std::sync::Arc<ProcessorConfig>,
    /// Handles on the topics the producer writes (decisions, shadow
    /// decisions, dead letters, changelog), so that a record is not looked
    /// up by name; declared before the producer, so dropped before it.
    pub out_topics: TopicHandles,
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
        let producer = &self.clients.producer;
        if let Some(topic) = self.clients.out_topics.get(producer, record.topic) {
            let send = || {
                produce::send(
                    producer,
                    topic,
                    record.partition,
                    record.key,
                    record.value,
                    record.headers,
                )
            };
            return loop {
                match send() {
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        // The producer's queue is the backpressure: wait for
                        // deliveries to make room.
                        let _ = kafka::flush(producer, Duration::from_millis(10));
                    }
                    result => break result,
                }
            };
        }
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

    fn assign(&self, starts: &[Start]) -> Result<(), KafkaError> {
        let tpl = starts_list(&self.clients.config, self.clients.reset, starts);
        // An eager assign() replaces the assignment: every partition is
        // stopped and started again at its offset here, and records
        // fetched before (in any queue) are dropped by librdkafka's
        // version barrier, so each continues exactly where given.
        self.consumer.assign(&tpl)?;
        self.consumer.resume(&tpl)
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

    fn read_changelog_from(&self, from: &BTreeMap<i32, Option<i64>>) -> Result<(), ProcessorError> {
        read_changelog_from(&self.clients.restorer, &self.clients.config, from)
    }

    fn changelog_bounds(&self, partition: i32) -> Option<(i64, i64)> {
        let config = &self.clients.config;
        self.clients
            .restorer
            .fetch_watermarks(&config.topics.changelog, partition, config.kafka_timeout)
            .inspect_err(|e| tracing::debug!(error = %e, partition, "changelog end unknown"))
            .ok()
    }

    fn read_changelog(
        &self,
        wait: Duration,
        max: usize,
        each: &mut dyn FnMut(ChangelogRead<'_>) -> Result<(), ProcessorError>,
    ) -> Result<usize, ProcessorError> {
        read_changelog(&self.clients.restorer, wait, max, each)
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

/// Points `restorer` at `from` (see [`Broker::read_changelog_from`]).
fn read_changelog_from<C: ConsumerContext>(
    restorer: &BaseConsumer<C>,
    config: &ProcessorConfig,
    from: &BTreeMap<i32, Option<i64>>,
) -> Result<(), ProcessorError> {
    let kafka = |action| move |source| ProcessorError::Kafka { action, source };
    if from.is_empty() {
        return restorer
            .unassign()
            .map_err(kafka("release the changelog after restore"));
    }
    let topic = &config.topics.changelog;
    // A consumer learns the leaders of a newly assigned topic on its next
    // periodic metadata scan, up to a second later; asking first lets the
    // fetch start at once.
    restorer
        .fetch_metadata(Some(topic), config.kafka_timeout)
        .map_err(kafka("fetch the changelog's metadata for restore"))?;
    let mut assignment = TopicPartitionList::new();
    for (&p, &at) in from {
        let offset = at.map_or(Offset::Beginning, Offset::Offset);
        assignment
            .add_partition_offset(topic, p, offset)
            .map_err(kafka("assign the changelog for restore"))?;
    }
    restorer
        .assign(&assignment)
        .map_err(kafka("assign the changelog for restore"))
}

/// Hands up to `max` records and partition ends of `restorer` to `each`,
/// waiting up to `wait` for the first.
fn read_changelog<C: ConsumerContext>(
    restorer: &BaseConsumer<C>,
    wait: Duration,
    max: usize,
    each: &mut dyn FnMut(ChangelogRead<'_>) -> Result<(), ProcessorError>,
) -> Result<usize, ProcessorError> {
    let mut handed = 0;
    let mut timeout = wait;
    while handed < max {
        match restorer.poll(timeout) {
            Some(Ok(message)) => {
                let header = |name: &str| {
                    message
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == name))
                        .and_then(|h| h.value)
                };
                each(ChangelogRead::Record {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().unwrap_or_default(),
                    value: message.payload(),
                    names_commit: header(COMMIT_HEADER).is_some(),
                    writer: header("earlykill_transaction"),
                })?;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                each(ChangelogRead::End { partition })?;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "changelog restore: consumer error"),
            None => return Ok(handed),
        }
        handed += 1;
        timeout = Duration::ZERO;
    }
    Ok(handed)
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
