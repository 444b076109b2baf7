//! `earlykill generate`: the upstream simulator and load generator. It
//! publishes the [`traffic`] model's events to the input topics, paced by
//! event time (`speedup` seconds of event time per wall second; 0 for no
//! pacing) and optionally capped at `rate` events per second.
//!
//! Decisions follow event time, so an hour of traffic can be played in a
//! minute (`speedup` 60). Event time then runs ahead of the wall clock:
//! run the processor with `--max-future-skew-seconds 0`, or its validation
//! turns the events away as too far in the future.

pub mod traffic;

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::DeliveryContext;
use crate::kafka::Topics;
use crate::shutdown::Shutdown;
use crate::upstream;
use crate::watch::Watch;
use earlykill_core::event::codec::encode_into;
use earlykill_core::event::{CodecError, Contract, Millis};
pub use traffic::{Generated, Traffic, TrafficConfig};

/// Everything `earlykill generate` needs.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// librdkafka properties for the producer.
    pub kafka: std::collections::BTreeMap<String, String>,
    /// Where the events go (the input topics).
    pub topics: Topics,
    /// The simulated traffic.
    pub traffic: TrafficConfig,
    /// Seconds of event time per wall-clock second; 0 publishes as fast as
    /// possible.
    pub speedup: f64,
    /// Most events per second, on top of the event-time pacing.
    pub rate: Option<f64>,
}

/// What the generator has published so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateStatus {
    /// Variants posted.
    pub posted: u64,
    /// Views and engagements.
    pub interactions: u64,
    /// Stop commands.
    pub stops: u64,
    /// Deliveries the broker refused (after librdkafka's retries).
    pub failed: u64,
    /// Event time of the last event.
    pub event_time: Millis,
    /// Wall time since the first event.
    pub elapsed: Duration,
}

impl GenerateStatus {
    /// Events published.
    pub fn events(&self) -> u64 {
        self.posted + self.interactions + self.stops
    }
}

/// Why the generator stopped early.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The producer could not be created or flushed.
    #[error("could not {action}: {source}")]
    Kafka {
        /// What it was doing.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// An event did not encode.
    #[error("could not encode an event: {0}")]
    Encode(#[from] CodecError),
}

/// How often the status is published, in events.
const STATUS_EVERY: u64 = 1024;
/// Longest single pacing sleep, so a stop request is noticed.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Publishes the traffic until it ends or `shutdown` is triggered, then
/// waits for every event to be acknowledged.
pub fn run(
    config: &GenerateConfig,
    shutdown: &Shutdown,
    status: &Watch<GenerateStatus>,
) -> Result<GenerateStatus, GenerateError> {
    // Batches for throughput, unless the caller's properties say otherwise.
    let mut kafka: std::collections::BTreeMap<String, String> = [
        ("linger.ms", "20"),
        ("queue.buffering.max.messages", "200000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    kafka.extend(config.kafka.clone());
    let producer: ThreadedProducer<DeliveryContext> =
        upstream::producer_config(&config.bootstrap_servers, &kafka)
            .create_with_context(DeliveryContext::default())
            .map_err(|source| GenerateError::Kafka {
                action: "create the producer",
                source,
            })?;
    let traffic = Traffic::new(config.traffic.clone());
    let start = config.traffic.start;
    let started = Instant::now();
    let mut current = GenerateStatus::default();
    let mut buf = Vec::with_capacity(256);
    for event in traffic {
        if shutdown.is_stopping() {
            break;
        }
        if !pace(config, &event, start, started, current.events(), shutdown) {
            break;
        }
        buf.clear();
        let topic = match &event {
            Generated::Posted(p) => {
                encode_into(Contract::VariantPosted, p, &mut buf)?;
                current.posted += 1;
                &config.topics.posted
            }
            Generated::Interaction(i) => {
                encode_into(Contract::Interaction, i, &mut buf)?;
                current.interactions += 1;
                &config.topics.interactions
            }
            Generated::Stop(s) => {
                encode_into(Contract::StopMonitoring, s, &mut buf)?;
                current.stops += 1;
                &config.topics.commands
            }
        };
        let mut record = BaseRecord::to(topic)
            .key(event.variant_id().as_bytes())
            .payload(&buf[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer's queue is the backpressure: give the
                    // broker time to take what is queued.
                    std::thread::sleep(Duration::from_millis(1));
                    record = back;
                }
                Err((source, _)) => {
                    return Err(GenerateError::Kafka {
                        action: "send an event",
                        source,
                    })
                }
            }
        }
        current.event_time = event.time();
        if current.events() % STATUS_EVERY == 0 {
            current.elapsed = started.elapsed();
            current.failed = producer.context().failures().0;
            status.update(|s| *s = current.clone());
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|source| GenerateError::Kafka {
            action: "deliver the last events",
            source,
        })?;
    current.elapsed = started.elapsed();
    current.failed = producer.context().failures().0;
    status.update(|s| *s = current.clone());
    Ok(current)
}

/// Waits until `event` is due; false if a stop was asked meanwhile.
fn pace(
    config: &GenerateConfig,
    event: &Generated,
    start: Millis,
    started: Instant,
    sent: u64,
    shutdown: &Shutdown,
) -> bool {
    let mut due = Duration::ZERO;
    if config.speedup > 0.0 {
        let event_seconds = (event.time() - start).max(0) as f64 / 1000.0;
        due = due.max(Duration::from_secs_f64(event_seconds / config.speedup));
    }
    if let Some(rate) = config.rate.filter(|r| *r > 0.0) {
        due = due.max(Duration::from_secs_f64(sent as f64 / rate));
    }
    loop {
        let Some(wait) = due.checked_sub(started.elapsed()) else {
            return true;
        };
        if wait.is_zero() {
            return true;
        }
        if shutdown.is_stopping() {
            return false;
        }
        // Pacing, not synchronisation: the generator plays traffic at a
        // chosen speed.
        std::thread::sleep(wait.min(MAX_SLEEP));
    }
}
