//! The clients' contexts: a producer's delivery reports (failures counted,
//! the changelog's delivered offsets kept), the restore consumer's quiet
//! partition ends, and a flush that returns as soon as the last delivery
//! is reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

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
    } else if let Some(held) = super::client_log::admit(&format!("{client}: {error}: {reason}")) {
        let held_back = (held > 0).then_some(held);
        tracing::error!(%error, %reason, client, held_back, "librdkafka error");
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
