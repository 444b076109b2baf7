//! An in-process Kafka (librdkafka's mock cluster) with earlykill's topics,
//! and clients to feed it and read it back.

use std::collections::{BTreeMap, BTreeSet};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use earlykill::processor::{self, ProcessorError, Sessions, StatusWatch};
use earlykill::processor::{Guarantee, ProcessorConfig};
use earlykill::shutdown::Shutdown;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{
    Contract, Decoder, Interaction, MonitoringDecision, StopMonitoring, VariantPosted,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The safety net for every wait: generous, never a synchronisation.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Kafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub partitions: i32,
    pub config: ProcessorConfig,
    producer: ThreadedProducer<DefaultProducerContext>,
}

/// One record as the test produced or read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl Kafka {
    /// A one-broker cluster with every topic created, inputs and changelog
    /// with `partitions` partitions.
    pub fn new(partitions: i32) -> Kafka {
        Kafka::with_brokers(partitions, 1)
    }

    /// As [`Kafka::new`], with `brokers` brokers; topics' leaders are
    /// spread over them until a test moves them.
    pub fn with_brokers(partitions: i32, brokers: i32) -> Kafka {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
            .try_init();
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        let config = test_config(&cluster.bootstrap_servers());
        let topics = &config.topics;
        for topic in [
            &topics.posted,
            &topics.interactions,
            &topics.commands,
            &topics.changelog,
        ] {
            cluster.create_topic(topic, partitions, 1).expect("topic");
        }
        cluster
            .create_topic(&topics.decisions, 1, 1)
            .expect("topic");
        cluster
            .create_topic(&topics.dead_letters, 1, 1)
            .expect("topic");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        Kafka {
            cluster,
            partitions,
            config,
            producer,
        }
    }

    /// A processor configuration for this cluster, for instance `name`.
    pub fn processor_config(&self, instance: &str) -> ProcessorConfig {
        let mut config = self.config.clone();
        config.instance_id = instance.to_owned();
        config
    }

    pub fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        // A full local queue is emptied first; anything else fails.
        match self.producer.send(record) {
            Ok(()) => {}
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                self.flush();
                self.producer
                    .send(back)
                    .map_err(|(e, _)| e)
                    .expect("send after emptying the queue");
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }

    pub fn post(&self, event: &VariantPosted<'_>) {
        let value = encode(Contract::VariantPosted, event).expect("encode");
        self.send_raw(
            &self.config.topics.posted,
            Some(event.variant_id.as_bytes()),
            Some(&value),
            &[],
        );
    }

    pub fn interact(&self, event: &Interaction<'_>) {
        let value = encode(Contract::Interaction, event).expect("encode");
        self.send_raw(
            &self.config.topics.interactions,
            Some(event.variant_id.as_bytes()),
            Some(&value),
            &[],
        );
    }

    pub fn stop(&self, command: &StopMonitoring<'_>) {
        let value = encode(Contract::StopMonitoring, command).expect("encode");
        self.send_raw(
            &self.config.topics.commands,
            Some(command.variant_id.as_bytes()),
            Some(&value),
            &[],
        );
    }

    pub fn flush(&self) {
        self.producer.flush(PATIENCE).expect("flush");
    }

    /// The end offset of every input topic partition, after a flush.
    /// Fails if the mock cluster dropped records: it keeps at most 100,000
    /// records or 5 MB per partition and deletes the oldest beyond that, so
    /// a test with more would compare against input nobody could read.
    pub fn input_ends(&self) -> Vec<(String, i32, i64)> {
        self.flush();
        let topics = &self.config.topics;
        let consumer = self.reader("ends", false);
        let mut ends = Vec::new();
        for topic in [&topics.posted, &topics.interactions, &topics.commands] {
            for p in 0..self.partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, PATIENCE)
                    .expect("watermarks");
                assert_eq!(
                    low, 0,
                    "{topic}/{p}: the mock cluster dropped the first {low} of {high} records \
                     (it keeps 100,000 records or 5 MB per partition); use fewer events \
                     per partition"
                );
                ends.push((topic.clone(), p, high));
            }
        }
        ends
    }

    fn reader(&self, name: &str, eof: bool) -> BaseConsumer {
        reader(&self.cluster.bootstrap_servers(), name, eof)
    }

    /// Reads `topic` from the beginning, read_committed, until `enough`
    /// holds for what was read and every partition is at its end.
    pub fn read_until(&self, topic: &str, enough: impl Fn(&[Raw]) -> bool) -> Vec<Raw> {
        read_until(&self.cluster.bootstrap_servers(), topic, enough)
    }

    /// The decisions topic (one partition, so in publishing order),
    /// read_committed, once it holds at least `n` decisions and is read to
    /// its end.
    pub fn decisions(&self, n: usize) -> Vec<MonitoringDecision> {
        decisions(
            &self.cluster.bootstrap_servers(),
            &self.config.topics.decisions,
            n,
        )
    }
}

fn reader(bootstrap: &str, name: &str, eof: bool) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{name}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .create()
        .expect("reader")
}

/// Reads `topic` of the cluster at `bootstrap` from the beginning,
/// read_committed, until `enough` holds for what was read and every
/// partition is at its end.
///
/// Offsets skipped on the way are read once more before waiting for new
/// records: tansu 0.6 raises a partition's high watermark before it stores
/// the batch, so a fetch racing two producers' batches into one partition
/// (two worker threads writing the decisions topic) can step over the
/// first. A second look finds it stored; offsets still missing then
/// (transaction markers, compacted records) are gaps, not read again.
pub fn read_until(bootstrap: &str, topic: &str, enough: impl Fn(&[Raw]) -> bool) -> Vec<Raw> {
    let consumer = reader(bootstrap, topic, true);
    let metadata = consumer
        .fetch_metadata(Some(topic), PATIENCE)
        .expect("metadata");
    let count = metadata.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..count as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut records = Vec::new();
    let mut at_end = vec![false; count];
    // Per partition: the offsets read, and the offset below which a
    // missing one has been looked for twice.
    let mut seen = vec![BTreeSet::new(); count];
    let mut checked = vec![0i64; count];
    let mut recovered = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if at_end.iter().all(|e| *e) && !enough(&records) {
            for p in 0..count {
                if let Some(skipped) = first_missing(&seen[p], checked[p]) {
                    checked[p] = seen[p].last().map_or(0, |last| last + 1);
                    consumer
                        .seek(topic, p as i32, Offset::Offset(skipped), PATIENCE)
                        .expect("seek back to a skipped offset");
                    at_end[p] = false;
                }
            }
        }
        if at_end.iter().all(|e| *e) && enough(&records) {
            if recovered > 0 {
                eprintln!("{topic}: {recovered} record(s) found on a second look");
                records.sort_by_key(|r: &Raw| (r.partition, r.offset));
            }
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: gave up waiting; read {} records: {records:#?}",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                at_end[p] = false;
                if !seen[p].insert(m.offset()) {
                    continue;
                }
                if m.offset() < checked[p] {
                    recovered += 1;
                }
                let headers = m
                    .headers()
                    .map(|h| {
                        use rdkafka::message::Headers;
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
}

/// The first offset at or above `from`, below the last one read, that was
/// not read.
fn first_missing(seen: &BTreeSet<i64>, from: i64) -> Option<i64> {
    seen.range(from..)
        .zip(from..)
        .find(|(read, expected)| *read != expected)
        .map(|(_, expected)| expected)
}

/// The decisions in `topic` at `bootstrap` (in publishing order, if it has
/// one partition), read_committed, once it holds at least `n` and is read
/// to its end.
pub fn decisions(bootstrap: &str, topic: &str, n: usize) -> Vec<MonitoringDecision> {
    let decoder = Decoder::new(Contract::MonitoringDecision);
    read_until(bootstrap, topic, |r| r.len() >= n)
        .iter()
        .map(|r| {
            decoder
                .decode_reference(r.value.as_deref().expect("value"))
                .expect("decision decodes")
        })
        .collect()
}

fn test_config(bootstrap: &str) -> ProcessorConfig {
    let mut config = ProcessorConfig::with_bootstrap(bootstrap);
    config.group_id = "earlykill-test".into();
    config.kafka_timeout = Duration::from_secs(30);
    // One worker unless a test asks for more (the default is the cores
    // available, which would make the tests depend on the machine).
    config.threads = 1;
    if let Ok(debug) = std::env::var("EARLYKILL_TEST_RDKAFKA_DEBUG") {
        config.kafka.insert("debug".into(), debug);
    }
    // The mock cluster's group coordinator rejects shorter sessions.
    config
        .kafka
        .insert("session.timeout.ms".into(), "6000".into());
    config
}

/// A processor running on its own thread.
pub struct Running {
    pub shutdown: Shutdown,
    pub status: StatusWatch,
    #[allow(dead_code)]
    pub sessions: Sessions,
    handle: Option<JoinHandle<Result<(), ProcessorError>>>,
}

impl Running {
    pub fn start(config: ProcessorConfig) -> Running {
        let shutdown = Shutdown::new();
        let status = StatusWatch::default();
        let sessions = Sessions::default();
        let handle = {
            let (shutdown, status, sessions) = (shutdown.clone(), status.clone(), sessions.clone());
            std::thread::Builder::new()
                .name("processor".into())
                .spawn(move || processor::run(config, shutdown, status, sessions))
                .expect("spawn the processor")
        };
        Running {
            shutdown,
            status,
            sessions,
            handle: Some(handle),
        }
    }

    /// Waits until this processor owns `n` partitions.
    pub fn wait_for_partitions(&self, n: usize) {
        assert!(
            self.status
                .wait_until(PATIENCE, |s| s.partitions.len() == n),
            "expected {n} partitions, have {:?}",
            self.status.get()
        );
    }

    /// Waits until the processor owns partitions and has committed every
    /// input record up to `ends` for those it owns (an instance that owns
    /// nothing yet, such as one restarted while its dead predecessor still
    /// holds them, has committed nothing).
    pub fn wait_committed(&self, ends: &[(String, i32, i64)]) {
        let done = self.status.wait_until(PATIENCE, |s| {
            !s.partitions.is_empty()
                && ends
                    .iter()
                    .filter(|(_, p, _)| s.partitions.contains(p))
                    .all(|(t, p, end)| *end == 0 || s.committed_offset(t, *p) == Some(*end))
        });
        assert!(
            done,
            "not committed up to {ends:?}: {:?}",
            self.status.get()
        );
    }

    /// Whether the processor's thread has ended (on its own or asked to).
    #[allow(dead_code)]
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Drains and waits for the processor to finish.
    pub fn stop(mut self) -> Result<(), ProcessorError> {
        self.shutdown.drain();
        self.join()
    }

    pub fn join(&mut self) -> Result<(), ProcessorError> {
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("processor thread panicked")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.shutdown.drain();
            let _ = self.join();
        }
    }
}

pub fn exactly_once() -> Guarantee {
    Guarantee::ExactlyOnce
}

/// Every record of `topic` once it holds `n` distinct decision ids, each
/// with its `earlykill.policy` header (empty on the live topic).
pub fn decisions_with_policy(
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> Vec<(String, MonitoringDecision)> {
    let records = read_until(bootstrap, topic, |read| {
        let ids: BTreeSet<&str> = read.iter().map(|r| &*r.headers["decision_id"]).collect();
        ids.len() >= n
    });
    let decoder = Decoder::new(Contract::MonitoringDecision);
    records
        .iter()
        .map(|r| {
            let policy = r
                .headers
                .get("earlykill.policy")
                .cloned()
                .unwrap_or_default();
            let decision = decoder
                .decode_reference(r.value.as_deref().expect("value"))
                .expect("decodes");
            (policy, decision)
        })
        .collect()
}
