//! The Kafka clients the processor uses, and what it asks of the cluster:
//! client settings, the co-partitioning check, one queue per input topic,
//! librdkafka's cached watermarks, the topic id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset};

use super::ProcessorError;
use crate::config::{Guarantee, ProcessorConfig};

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
    let mut client = base(config);
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
    for (key, value) in crate::config::producer_properties(&config.kafka) {
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

/// Counts the producer's failed deliveries, so the at-least-once path knows
/// whether everything it sent since the last commit arrived (and the
/// generator how many events were lost); the first failure is logged.
#[derive(Default)]
pub struct DeliveryContext {
    failed: AtomicU64,
    last_error: Mutex<Option<(KafkaError, String)>>,
    /// The changelog topic, whose delivered offsets are kept.
    changelog: Option<String>,
    /// Per changelog partition, the offset of the last record delivered.
    changelog_written: Mutex<HashMap<i32, i64>>,
}

impl DeliveryContext {
    /// A context that also keeps the offset of the last record delivered
    /// to each partition of `changelog`.
    pub fn tracking(changelog: &str) -> DeliveryContext {
        DeliveryContext {
            changelog: Some(changelog.to_owned()),
            ..DeliveryContext::default()
        }
    }

    /// The offset of the last record this producer delivered to changelog
    /// partition `partition`.
    pub fn changelog_written(&self, partition: i32) -> Option<i64> {
        let written = self.changelog_written.lock().ok()?;
        written.get(&partition).copied()
    }

    /// Failed deliveries so far, and the last failure with its record's
    /// topic.
    pub fn failures(&self) -> (u64, Option<(KafkaError, String)>) {
        let last = self
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        (self.failed.load(Ordering::Acquire), last)
    }
}

impl ClientContext for DeliveryContext {}

/// Waits until every message the producer holds is delivered or failed.
///
/// rust-rdkafka's own `flush` (and so its `commit_transaction`, which
/// flushes first) polls in 100 ms slices and, with the delivery reports
/// served by the `ThreadedProducer`'s thread, sleeps a whole slice whenever
/// a message is in flight: 100 ms added to every commit. librdkafka's
/// `rd_kafka_flush` waits on a condition variable instead, so it returns
/// as soon as the last delivery is reported.
pub fn flush<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client pointer lives as long as `producer`; the call
    // blocks until the message count is zero or the timeout passes.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), millis) };
    match err {
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        other => Err(KafkaError::Flush(other.into())),
    }
}

/// The restore consumer's context: reaching the end of a partition is how
/// a restore knows it is done, not an error worth an error line (librdkafka
/// reports it through the error callback too).
#[derive(Default)]
pub struct RestoreContext;

impl ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason, "changelog restore");
    }
}

/// Logs an error librdkafka reports to a consumer's context: a partition
/// read to its end is reported there too, and is no error (the consumer's
/// poll delivers it where it is used).
pub fn log_client_error(error: &KafkaError, reason: &str, client: &str) {
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
        tracing::trace!(%reason, client, "partition read to its end");
    } else {
        tracing::error!(%error, %reason, client, "librdkafka error");
    }
}

impl ConsumerContext for RestoreContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let (Ok(message), Some(changelog)) = (result, &self.changelog) {
            if message.topic() == changelog {
                if let Ok(mut written) = self.changelog_written.lock() {
                    let last = written.entry(message.partition()).or_insert(-1);
                    *last = (*last).max(message.offset());
                }
            }
        }
        if let Err((error, message)) = result {
            if self.failed.load(Ordering::Acquire) == 0 {
                tracing::warn!(%error, topic = message.topic(), "a record was not delivered");
            }
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some((error.clone(), message.topic().to_owned()));
            }
            self.failed.fetch_add(1, Ordering::AcqRel);
        }
    }
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
        .map_err(|e| ProcessorError::Kafka {
            action: "fetch the cluster's metadata",
            source: e,
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
    let missing: Vec<String> = required
        .iter()
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

/// What librdkafka last heard of a partition's watermarks, with no request
/// to the broker: `(low, high)`, or `None` before its first fetch.
pub fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &CString,
    partition: i32,
) -> Option<(i64, i64)> {
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client pointer lives as long as `consumer`; the call
    // reads librdkafka's cached watermarks into the two out-parameters and
    // keeps no pointer.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// Wakes the processor's loop when any of its queues receives something.
///
/// librdkafka calls [`Wake::notify`] when a queue goes from empty to
/// non-empty, with that queue locked: it only sets a flag and signals.
#[derive(Default)]
pub struct Wake {
    ready: AtomicBool,
    lock: Mutex<()>,
    signal: Condvar,
}

impl Wake {
    /// Something arrived.
    pub fn notify(&self) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.signal.notify_one();
        }
    }

    /// Forgets earlier notifications: call before looking at the queues,
    /// so that whatever arrives after the look wakes the next wait.
    pub fn clear(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Waits until a notification since the last [`Wake::clear`], or
    /// `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .signal
            .wait_timeout_while(guard, timeout, |_| !self.ready.load(Ordering::Acquire));
    }
}

/// The input consumer's records, one queue per input topic (in the order
/// of `topics`), so that a partition's end (librdkafka's partition EOF,
/// which names the partition but not the topic) is known by the queue it
/// arrives on.
///
/// Each topic's partition 0 queue is split from the consumer's queue, and
/// the topic's other partitions are forwarded into it ([`forward`]). A
/// forward set by the application makes librdkafka never forward the
/// partition to the consumer's queue itself, but stopping a partition's
/// fetch (on revocation) clears it: so every partition is forwarded once at
/// start, before subscribing, and the assigned ones again after each
/// assignment (records fetched in between wait in the partition's own queue
/// and move along when the forward is set).
pub struct TopicQueues<C: ConsumerContext + 'static> {
    queues: Vec<PartitionQueue<C>>,
}

impl<C: ConsumerContext + 'static> TopicQueues<C> {
    /// Splits the queues of `topics`, each with `partitions` partitions;
    /// `wake` is notified when any of them receives something.
    pub fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topics: [&str; 3],
        partitions: i32,
        wake: &Arc<Wake>,
    ) -> Result<TopicQueues<C>, ProcessorError> {
        let mut queues = Vec::with_capacity(topics.len());
        for topic in topics {
            let mut queue = consumer
                .split_partition_queue(topic, 0)
                .ok_or_else(|| split_failed(topic))?;
            let wake = wake.clone();
            queue.set_nonempty_callback(move || wake.notify());
            queues.push(queue);
        }
        forward(consumer, topics, 1..partitions)?;
        Ok(TopicQueues { queues })
    }

    /// The next record, or partition end, of the topic at `index`, if one is
    /// waiting.
    pub fn poll(&self, index: usize) -> Option<KafkaResult<rdkafka::message::BorrowedMessage<'_>>> {
        self.queues[index].poll(Duration::ZERO)
    }
}

/// Forwards `partitions` of each of `topics` into the topic's partition 0
/// queue (see [`TopicQueues`]); partition 0 is that queue.
pub fn forward<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: [&str; 3],
    partitions: impl IntoIterator<Item = i32> + Clone,
) -> Result<(), ProcessorError> {
    let rk = consumer.client().native_ptr();
    for topic in topics {
        let name = CString::new(topic).map_err(|_| split_failed(topic))?;
        for p in partitions.clone().into_iter().filter(|&p| p > 0) {
            // SAFETY: the client outlives this call; each queue handle is
            // destroyed once used, which keeps the forward (the partitions'
            // queues are owned by the client).
            let forwarded = unsafe {
                let from = rdkafka::bindings::rd_kafka_queue_get_partition(rk, name.as_ptr(), p);
                let to = rdkafka::bindings::rd_kafka_queue_get_partition(rk, name.as_ptr(), 0);
                let ok = !from.is_null() && !to.is_null();
                if ok {
                    rdkafka::bindings::rd_kafka_queue_forward(from, to);
                }
                for q in [from, to] {
                    if !q.is_null() {
                        rdkafka::bindings::rd_kafka_queue_destroy(q);
                    }
                }
                ok
            };
            if !forwarded {
                return Err(split_failed(topic));
            }
        }
    }
    Ok(())
}

fn split_failed(topic: &str) -> ProcessorError {
    ProcessorError::Kafka {
        action: "split the input consumer's queue by topic",
        source: KafkaError::Subscription(topic.to_owned()),
    }
}

/// Why a topic's id could not be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot describe topic {topic:?}: {reason}")]
pub struct DescribeError {
    /// The topic.
    pub topic: String,
    /// librdkafka's explanation.
    pub reason: String,
}

/// The topic id of `topic` (KIP-516), base64 as Kafka's tools print it, or
/// `None` when the broker reports no ids (brokers before Kafka 2.8, and
/// Kafka-protocol servers that leave it zero). A topic deleted and created
/// again under the same name gets a new id, so its offsets start over.
///
/// rust-rdkafka has no DescribeTopics yet, so this calls librdkafka's
/// `rd_kafka_DescribeTopics` directly and waits up to `timeout` for it.
pub fn topic_id<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<String>, DescribeError> {
    use rdkafka::bindings as rd;
    use std::ffi::CStr;
    let failed = |reason: String| DescribeError {
        topic: topic.to_owned(),
        reason,
    };
    let name = CString::new(topic).map_err(|_| failed("the name contains a NUL byte".into()))?;
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);

    /// Frees what librdkafka allocated, whatever way the call ends.
    struct Owned {
        queue: *mut rd::rd_kafka_queue_t,
        options: *mut rd::rd_kafka_AdminOptions_t,
        topics: *mut rd::rd_kafka_TopicCollection_t,
        event: *mut rd::rd_kafka_event_t,
    }
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: each pointer is null or was returned by the matching
            // librdkafka constructor and is destroyed once, here.
            unsafe {
                if !self.event.is_null() {
                    rd::rd_kafka_event_destroy(self.event);
                }
                if !self.topics.is_null() {
                    rd::rd_kafka_TopicCollection_destroy(self.topics);
                }
                if !self.options.is_null() {
                    rd::rd_kafka_AdminOptions_destroy(self.options);
                }
                if !self.queue.is_null() {
                    rd::rd_kafka_queue_destroy(self.queue);
                }
            }
        }
    }

    // SAFETY: the client pointer lives as long as `client`; every object
    // created here is owned by `owned` and freed when it drops, after the
    // last read of the event's contents (the strings are copied out first).
    unsafe {
        let rk = client.native_ptr();
        let mut names = [name.as_ptr()];
        let mut owned = Owned {
            queue: rd::rd_kafka_queue_new(rk),
            options: rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            topics: rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1),
            event: std::ptr::null_mut(),
        };
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            owned.options,
            millis,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_DescribeTopics(rk, owned.topics, owned.options, owned.queue);
        owned.event = rd::rd_kafka_queue_poll(owned.queue, millis.saturating_add(1000));
        if owned.event.is_null() {
            return Err(failed(format!("no answer within {timeout:?}")));
        }
        if rd::rd_kafka_event_error(owned.event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let reason = CStr::from_ptr(rd::rd_kafka_event_error_string(owned.event));
            return Err(failed(reason.to_string_lossy().into_owned()));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(owned.event);
        if result.is_null() {
            return Err(failed("the answer is not a DescribeTopics result".into()));
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        if descriptions.is_null() || count == 0 {
            return Err(failed("the broker described no topic".into()));
        }
        let description = *descriptions;
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null()
            && rd::rd_kafka_error_code(error) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let reason = CStr::from_ptr(rd::rd_kafka_error_string(error));
            return Err(failed(reason.to_string_lossy().into_owned()));
        }
        let id = rd::rd_kafka_TopicDescription_topic_id(description);
        if id.is_null()
            || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                && rd::rd_kafka_Uuid_least_significant_bits(id) == 0)
        {
            return Ok(None);
        }
        let text = CStr::from_ptr(rd::rd_kafka_Uuid_base64str(id));
        Ok(Some(text.to_string_lossy().into_owned()))
    }
}
