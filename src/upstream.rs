//! Producing input events as an upstream does: for the HTTP API's
//! start-monitoring and stop requests, and for `earlykill generate`.
//!
//! Records are keyed by `variant_id` and hashed with murmur2, like Java
//! clients and the processor's own producer, so they land in the partition
//! that holds their variant's state. The producer is idempotent with
//! `acks=all`: a retried send is never written twice.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::kafka::Topics;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{CodecError, Contract, StopMonitoring, VariantPosted};

/// The configuration of an upstream producer: `kafka` (librdkafka
/// properties, e.g. SASL) over earlykill's defaults.
pub fn producer_config(bootstrap_servers: &str, kafka: &BTreeMap<String, String>) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap_servers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5");
    for (key, value) in crate::kafka::producer_properties(kafka) {
        client.set(key, value);
    }
    client.set("enable.idempotence", "true").set("acks", "all");
    client
}

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event does not encode (it should have been validated first).
    #[error("could not encode the event: {0}")]
    Encode(#[from] CodecError),
    /// The broker did not acknowledge it.
    #[error("the broker did not take the event: {0}")]
    Kafka(#[from] KafkaError),
}

/// Where a published event was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Publishes single events and waits for the broker's acknowledgement.
pub struct Publisher {
    producer: FutureProducer,
    topics: Topics,
    timeout: Duration,
}

impl Publisher {
    /// A publisher to `topics` on the cluster at `bootstrap_servers`.
    pub fn new(
        bootstrap_servers: &str,
        kafka: &BTreeMap<String, String>,
        topics: Topics,
        timeout: Duration,
    ) -> Result<Publisher, KafkaError> {
        let producer = producer_config(bootstrap_servers, kafka)
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create()?;
        Ok(Publisher {
            producer,
            topics,
            timeout,
        })
    }

    /// Publishes a VariantPosted to the posted topic.
    pub async fn post(&self, event: &VariantPosted<'_>) -> Result<Delivered, PublishError> {
        let value = encode(Contract::VariantPosted, event)?;
        self.send(&self.topics.posted, &event.variant_id, &value)
            .await
    }

    /// Publishes a StopMonitoring to the commands topic.
    pub async fn stop(&self, command: &StopMonitoring<'_>) -> Result<Delivered, PublishError> {
        let value = encode(Contract::StopMonitoring, command)?;
        self.send(&self.topics.commands, &command.variant_id, &value)
            .await
    }

    async fn send(&self, topic: &str, key: &str, value: &[u8]) -> Result<Delivered, PublishError> {
        let record = FutureRecord::to(topic).key(key).payload(value);
        let delivery = self
            .producer
            .send(record, self.timeout)
            .await
            .map_err(|(e, _)| e)?;
        Ok(Delivered {
            topic: topic.to_owned(),
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// Asks a broker for the cluster's metadata: `Ok` when one answered
    /// within `timeout`. Blocks.
    pub fn reachable(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topics.posted), timeout)
            .map(|_| ())
    }
}
