//! Reading the recorded input topics for a backtest: every partition from
//! its beginning to the end it had when the backtest started, committed
//! records only, each record decoded and validated once, as the processor
//! does, then each partition merged in event-time order by the processor's
//! own merge.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Event, History};
use crate::kafka::cached_watermarks;
use crate::processor::ProcessorConfig;
use earlykill_core::event::input::{Decoded, InputDecoders};
use earlykill_core::event::{InputTopic, Interaction, Millis, StopMonitoring, VariantPosted};
use earlykill_core::merge::{Entry, Merge};

/// Why the topics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A Kafka call failed.
    #[error("could not {action}: {source}")]
    Kafka {
        /// What was being done.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// An input topic is missing, or they are not co-partitioned.
    #[error("{0}")]
    Topics(String),
    /// No broker answered at the bootstrap servers.
    #[error(transparent)]
    Unreachable(#[from] crate::kafka::Unreachable),
}

fn kafka(action: &'static str) -> impl FnOnce(KafkaError) -> ReadError {
    move |source| ReadError::Kafka { action, source }
}

/// A consumer context that does not log reaching a partition's end (the
/// loop below uses it) as a client error.
struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = rdkafka::error::RDKafkaErrorCode::PartitionEOF;
        if !matches!(error, KafkaError::PartitionEOF(_)) && error.rdkafka_error_code() != Some(end)
        {
            tracing::error!(%error, reason, "Kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// What to read and what to keep.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep events at or after this event time.
    pub from: Option<Millis>,
    /// Keep events before this event time.
    pub to: Option<Millis>,
    /// Drop the posts' own thresholds, so that every set's values apply to
    /// every post.
    pub ignore_overrides: bool,
}

/// What reading found besides the histories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Records read.
    pub records: u64,
    /// Records folded (decoded, valid, inside `from`..`to`).
    pub events: u64,
    /// Records the processor dead-letters, by reason kind.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Records outside `from`..`to`.
    pub outside: u64,
}

/// An owned copy of a decoded input.
fn owned(decoded: Decoded<'_>, ignore_overrides: bool) -> Event {
    let s = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    match decoded {
        Decoded::Posted(p) => {
            let keep = !ignore_overrides;
            Event::Posted(VariantPosted {
                variant_id: s(p.variant_id),
                persona_id: s(p.persona_id),
                post_id: s(p.post_id),
                expected_engagement_rate: p.expected_engagement_rate,
                posted_at: p.posted_at,
                kill_threshold: p.kill_threshold.filter(|_| keep),
                min_interactions: p.min_interactions.filter(|_| keep),
                timeout_minutes: p.timeout_minutes.filter(|_| keep),
                metadata: p.metadata,
            })
        }
        Decoded::Interaction(i) => Event::Interaction(Interaction {
            event_id: s(i.event_id),
            variant_id: s(i.variant_id),
            kind: i.kind,
            count: i.count,
            occurred_at: i.occurred_at,
        }),
        Decoded::Stop(c) => Event::Stop(StopMonitoring {
            variant_id: s(c.variant_id),
            reason: s(c.reason),
            requested_by: s(c.requested_by),
            requested_at: c.requested_at,
        }),
    }
}

/// Merges one partition's events of the three topics (each in offset
/// order) as the processor folds a backlog: the earliest event time first,
/// ties in topic order.
pub fn merge(partition: i32, topics: [Vec<Event>; 3]) -> History {
    let mut merge: Merge<Event> = Merge::default();
    let mut count = 0;
    for (topic, events) in InputTopic::ALL.into_iter().zip(topics) {
        count += events.len();
        for (offset, event) in events.into_iter().enumerate() {
            let time = Some(event.time());
            merge.push(
                topic,
                Entry {
                    offset: offset as i64,
                    time,
                    item: event,
                },
            );
        }
    }
    let mut events = Vec::with_capacity(count);
    // Everything is buffered: no topic has more to give.
    while let Some((_, entry)) = merge.pop(|_| true) {
        events.push(entry.item);
    }
    History { partition, events }
}

/// Reads the three input topics of `config` from their beginning to their
/// end (as fetching finds it: records appended while reading are read too)
/// and returns each partition's history. `progress(read, total)` is called as records arrive.
pub fn read(
    config: &ProcessorConfig,
    options: &ReadOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<(Vec<History>, ReadSummary), ReadError> {
    let mut client = ClientConfig::new();
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    let consumer: BaseConsumer<Quiet> = client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", format!("{}-backtest", config.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(Quiet)
        .map_err(kafka("create the consumer"))?;
    let timeout = config.kafka_timeout.max(Duration::from_secs(10));
    let names = InputTopic::ALL.map(|t| config.topics.input(t).to_owned());
    let mut counts = Vec::new();
    for name in &names {
        let metadata = consumer.fetch_metadata(Some(name), timeout).map_err(|e| {
            match crate::kafka::Unreachable::from_error(&config.bootstrap_servers, timeout, e) {
                Ok(unreachable) => ReadError::from(unreachable),
                Err(e) => kafka("read the input topics' metadata")(e),
            }
        })?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0)
            .ok_or_else(|| ReadError::Topics(format!("input topic {name:?} does not exist")))?;
        counts.push(partitions as i32);
    }
    if counts.iter().any(|c| *c != counts[0]) {
        return Err(ReadError::Topics(format!(
            "the input topics are not co-partitioned: {:?}",
            names.iter().zip(&counts).collect::<Vec<_>>()
        )));
    }
    let partitions = counts[0];
    // Every partition is read until the consumer reaches its end (the end
    // that fetching reports; the end listed before reading is only the
    // progress bar's total: a Kafka-protocol server may list it wrong).
    let mut open: BTreeSet<(usize, i32)> = BTreeSet::new();
    let mut assignment = TopicPartitionList::new();
    let mut total = 0u64;
    let mut names_c = Vec::new();
    for (rank, name) in names.iter().enumerate() {
        names_c.push(
            CString::new(name.as_str())
                .map_err(|_| ReadError::Topics(format!("topic name {name:?} holds a NUL byte")))?,
        );
        for p in 0..partitions {
            if let Ok((low, high)) = consumer.fetch_watermarks(name, p, timeout) {
                total += u64::try_from(high - low).unwrap_or(0);
            }
            open.insert((rank, p));
            let _ = assignment.add_partition_offset(name, p, Offset::Beginning);
        }
    }
    consumer
        .assign(&assignment)
        .map_err(kafka("assign the input partitions"))?;
    let decoders = InputDecoders::with(&config.writer_schemas);
    let now = chrono::Utc::now().timestamp_millis();
    let mut by_partition: Vec<[Vec<Event>; 3]> =
        (0..partitions).map(|_| Default::default()).collect();
    let mut summary = ReadSummary::default();
    let rank_of = |topic: &str| names.iter().position(|n| n == topic);
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let Some(rank) = rank_of(message.topic()) else {
                    continue;
                };
                let p = message.partition();
                if !open.contains(&(rank, p)) {
                    continue;
                }
                summary.records += 1;
                if summary.records % 65_536 == 0 {
                    progress(summary.records, total.max(summary.records));
                }
                let topic = InputTopic::ALL[rank];
                match decoders.decode(topic, message.key(), message.payload(), &config.limits, now)
                {
                    Ok(decoded) => {
                        let event = owned(decoded, options.ignore_overrides);
                        let t = event.time();
                        if options.from.is_some_and(|f| t < f)
                            || options.to.is_some_and(|to| t >= to)
                        {
                            summary.outside += 1;
                            continue;
                        }
                        summary.events += 1;
                        by_partition[p as usize][rank].push(event);
                    }
                    Err(rejection) => *summary.rejected.entry(rejection.kind).or_default() += 1,
                }
            }
            // At the end of what is there: a partition whose position has
            // reached the end the last fetch reported is done (its last
            // offsets may be transaction markers, never delivered).
            Some(Err(KafkaError::PartitionEOF(_))) => {
                let positions = consumer
                    .position()
                    .map_err(kafka("read the consumer's positions"))?;
                for element in positions.elements() {
                    let Some(rank) = rank_of(element.topic()) else {
                        continue;
                    };
                    let p = element.partition();
                    let Some((low, high)) = cached_watermarks(&consumer, &names_c[rank], p) else {
                        continue;
                    };
                    let at = match element.offset() {
                        Offset::Offset(at) => at,
                        _ => low,
                    };
                    if at >= high {
                        open.remove(&(rank, p));
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            None => {}
        }
    }
    progress(summary.records, total.max(summary.records));
    let histories = by_partition
        .into_iter()
        .enumerate()
        .map(|(p, topics)| merge(p as i32, topics))
        .collect();
    Ok((histories, summary))
}
