//! The Kafka clients the processor uses and what it asks of the cluster:
//! each client's settings, and the co-partitioning check. The plumbing
//! shared with other components (contexts, watermarks, queues, topic ids)
//! is in [`crate::kafka`].

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{ClientConfig, Offset};

use crate::kafka::Unreachable;

use super::ProcessorError;
use super::{Guarantee, ProcessorConfig};

/// Settings every client shares: the bootstrap servers and the pass-through
/// properties (security settings among them).
fn base(config: &ProcessorConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    client
}

/// The input consumer: one group over the three input topics, the range
/// assignor (partition N of every topic to the same member, given equal
/// partition counts), offsets committed only with the decisions.
///
/// Two librdkafka defaults are lowered (both can be overridden):
/// `fetch.wait.max.ms` to 100 ms from 500, because a partition resumed after
/// backpressure joins the next fetch request only once the one in flight
/// returns, and a broker holds a fetch whose partitions have no new data
/// for the whole wait; `fetch.queue.backoff.ms` to 10 ms from 1000, because
/// a partition whose prefetch queue was full is otherwise not fetched again
/// for a second after the processor drains it (the queue limits still bound
/// memory).
pub fn input_consumer(config: &ProcessorConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "45000")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.queue.backoff.ms", "10");
    for (key, value) in base(config).config_map() {
        client.set(key, value);
    }
    client
        .set("group.id", &config.group_id)
        .set("client.id", format!("earlykill-{}", config.instance_id))
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        // The merge learns that an input is caught up from the consumer's
        // own fetch reaching the end, never from listed watermarks.
        .set("enable.partition.eof", "true");
    if config.static_membership {
        client.set("group.instance.id", &config.instance_id);
    }
    client
}

/// Where the input consumer starts a partition that has no position: its
/// `auto.offset.reset` (`earliest` unless configured). `error` asks the
/// group's committed offset, which then fails if there is none.
pub fn reset_offset(config: &ProcessorConfig) -> Offset {
    match input_consumer(config).get("auto.offset.reset") {
        Some("latest" | "largest" | "end") => Offset::End,
        Some("error") => Offset::Stored,
        _ => Offset::Beginning,
    }
}

/// The restore consumer: reads changelog partitions from the beginning up
/// to their end, committed records only, outside any group.
pub fn restore_consumer(config: &ProcessorConfig) -> ClientConfig {
    // Defaults a `[kafka]` property overrides. A restore reads one
    // partition at a time to its end as fast as it folds it: larger
    // fetches of that one partition, and no 1 s pause (librdkafka's
    // `fetch.queue.backoff.ms`) each time its queue is full.
    let mut client = ClientConfig::new();
    client
        .set("fetch.queue.backoff.ms", "10")
        .set("max.partition.fetch.bytes", "8388608");
    for (key, value) in base(config).config_map() {
        client.set(key, value);
    }
    client
        .set("group.id", format!("{}-restore", config.group_id))
        .set(
            "client.id",
            format!("earlykill-{}-restore", config.instance_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // A handed-over partition's check starting past the end (the
        // changelog was recreated) reads from the start: never the end,
        // which would find it unchanged.
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("isolation.level", "read_committed");
    client
}

/// The producer of decisions, changelog records and dead letters:
/// transactional under exactly-once, idempotent under at-least-once. Keys
/// are hashed like Java clients do (murmur2), so other producers and
/// consumers agree on where a variant lives.
pub fn producer(config: &ProcessorConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .set("transaction.timeout.ms", "10000")
        .set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in crate::kafka::producer_properties(&config.kafka) {
        client.set(key, value);
    }
    client
        .set("client.id", format!("earlykill-{}", config.instance_id))
        .set("enable.idempotence", "true")
        .set("acks", "all");
    if config.guarantee == Guarantee::ExactlyOnce {
        client.set("transactional.id", config.transactional_id());
    }
    client
}

/// Checks that the topics exist and that the inputs and the changelog are
/// co-partitioned, returning their common partition count.
pub fn check_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &ProcessorConfig,
) -> Result<i32, ProcessorError> {
    let topics = &config.topics;
    let metadata = consumer
        .fetch_metadata(None, config.kafka_timeout)
        .map_err(|e| {
            match Unreachable::from_error(&config.bootstrap_servers, config.kafka_timeout, e) {
                Ok(unreachable) => ProcessorError::from(unreachable),
                Err(e) => ProcessorError::Kafka {
                    action: "fetch the cluster's metadata",
                    source: e,
                },
            }
        })?;
    let counts: BTreeMap<&str, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name(), t.partitions().len() as i32))
        .collect();
    let required = [
        &topics.posted,
        &topics.interactions,
        &topics.commands,
        &topics.changelog,
        &topics.decisions,
        &topics.dead_letters,
    ];
    let shadow = config
        .has_shadows()
        .then_some(&config.shadow_decisions_topic);
    let missing: Vec<String> = required
        .into_iter()
        .chain(shadow)
        .filter(|t| !counts.contains_key(t.as_str()))
        .map(|t| t.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ProcessorError::MissingTopics { topics: missing });
    }
    let co_partitioned = [
        &topics.posted,
        &topics.interactions,
        &topics.commands,
        &topics.changelog,
    ];
    let found: Vec<(String, i32)> = co_partitioned
        .iter()
        .map(|t| (t.to_string(), counts[t.as_str()]))
        .collect();
    let distinct: BTreeSet<i32> = found.iter().map(|(_, n)| *n).collect();
    match distinct.len() {
        1 => Ok(found[0].1),
        _ => Err(ProcessorError::NotCoPartitioned { counts: found }),
    }
}
