//! Several instances as one service. Each `earlykill run` instance
//! announces, on a small compacted topic (`members-topic`, one partition),
//! which input partitions it owns and where its API answers
//! (`advertised-url`); every instance reads that topic, so each API knows
//! whom to ask for the sessions it does not hold (Kafka Streams' interactive
//! queries, with `application.server`). No extra infrastructure: the topic is
//! created at start when it is missing.
//!
//! What an announcement says is only who to ask. What an answer covers is
//! what the owner itself reports (the partitions it has restored and
//! processes), so a stale announcement (an instance killed) can make an
//! answer partial, never wrong: the API names the partitions it could not
//! reach (`"partial": true, "missing_partitions": [...]`).
//!
//! Costs: one record per change of an instance's partitions and one every
//! [`HEARTBEAT`]; a group-wide answer costs one HTTP request per other
//! instance, in parallel, each bounded by `timeout`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::processor::StatusWatch;

/// How often an instance announces itself when nothing changed, so that a
/// reader can tell how fresh an announcement is.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often the announcer looks at the instance's status.
const LOOK: Duration = Duration::from_millis(200);

/// What one instance announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its instance id.
    pub instance: String,
    /// Where its API answers, e.g. `http://10.0.3.7:8080`.
    pub url: String,
    /// The input partitions it has restored and processes.
    pub partitions: Vec<i32>,
    /// Partitions of each input topic.
    pub input_partitions: i32,
    /// When it said so, milliseconds since the epoch (its clock).
    pub at: i64,
}

/// Where an instance announces itself and how it asks the others.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// librdkafka properties (security settings among them).
    pub kafka: BTreeMap<String, String>,
    /// The compacted topic of announcements.
    pub topic: String,
    /// This instance's id.
    pub instance: String,
    /// This instance's API, as the others reach it.
    pub url: String,
    /// The API's bearer token, sent with every request to another instance.
    pub token: Option<String>,
    /// Longest wait for another instance's answer.
    pub timeout: Duration,
    /// Longest wait for the broker (creating the topic).
    pub kafka_timeout: Duration,
}

/// Why the cluster view could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A Kafka client could not be created or the topic not made.
    #[error("members topic {topic:?} on the brokers at {bootstrap} (`bootstrap-servers`): cannot {action}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        bootstrap: String,
        /// What failed.
        action: &'static str,
        /// librdkafka's error.
        source: Box<KafkaError>,
    },
    /// No broker answered at the bootstrap servers.
    #[error(transparent)]
    Unreachable(#[from] Box<crate::kafka::Unreachable>),
}

/// The group as this instance knows it: the others' announcements, kept
/// up to date by a reader thread; and this instance's own, published by an
/// announcer thread. Dropping it (or [`Cluster::leave`]) stops both.
pub struct Cluster {
    shared: Arc<Shared>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    config: ClusterConfig,
    members: RwLock<BTreeMap<String, Member>>,
    stop: AtomicBool,
}

impl Cluster {
    /// Creates the topic if it is missing, then starts reading it and
    /// announcing what `status` says this instance owns.
    pub fn start(config: ClusterConfig, status: StatusWatch) -> Result<Cluster, ClusterError> {
        let failed = |action| {
            let topic = config.topic.clone();
            let bootstrap = config.bootstrap_servers.clone();
            move |source| ClusterError::Kafka {
                topic,
                bootstrap,
                action,
                source: Box::new(source),
            }
        };
        create_topic(&config).map_err(|e| {
            match crate::kafka::Unreachable::from_error(
                &config.bootstrap_servers,
                config.kafka_timeout,
                e,
            ) {
                Ok(unreachable) => ClusterError::from(Box::new(unreachable)),
                Err(e) => failed("create it")(e),
            }
        })?;
        let consumer: BaseConsumer = client(&config)
            .set("group.id", format!("{}-members", config.instance))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(failed("create its reader"))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&config.topic, 0, Offset::Beginning)
            .map_err(failed("assign its partition"))?;
        consumer
            .assign(&assignment)
            .map_err(failed("assign its partition"))?;
        let producer: BaseProducer = client(&config)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()
            .map_err(failed("create its producer"))?;
        let shared = Arc::new(Shared {
            config,
            members: RwLock::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        });
        let reader = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("members-reader".into())
                .spawn(move || read(&shared, &consumer))
                .expect("spawn the members reader")
        };
        let announcer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("members-announcer".into())
                .spawn(move || announce(&shared, &producer, &status))
                .expect("spawn the members announcer")
        };
        Ok(Cluster {
            shared,
            threads: std::sync::Mutex::new(vec![reader, announcer]),
        })
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.shared.config.instance
    }

    /// The API's bearer token, for requests to the other instances.
    pub fn token(&self) -> Option<&str> {
        self.shared.config.token.as_deref()
    }

    /// Longest wait for another instance's answer.
    pub fn timeout(&self) -> Duration {
        self.shared.config.timeout
    }

    /// Every announcement read, by instance id.
    fn members(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Member>> {
        self.shared
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The other instances that announced partitions, by instance id.
    pub fn others(&self) -> Vec<Member> {
        self.members()
            .values()
            .filter(|m| m.instance != self.shared.config.instance && !m.partitions.is_empty())
            .cloned()
            .collect()
    }

    /// Partitions of each input topic, as the latest announcement says
    /// (0 before any).
    pub fn input_partitions(&self) -> i32 {
        self.members()
            .values()
            .max_by_key(|m| m.at)
            .map_or(0, |m| m.input_partitions)
    }

    /// Stops announcing and says this instance owns nothing any more (a
    /// tombstone), so the others stop asking it.
    pub fn leave(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.leave();
    }
}

fn client(config: &ClusterConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in crate::kafka::producer_properties(&config.kafka) {
        client.set(key, value);
    }
    client.set("bootstrap.servers", &config.bootstrap_servers);
    client
}

/// Creates the compacted one-partition topic, with the brokers' default
/// replication (or 1 where a broker wants a number); an existing topic is
/// left as it is.
fn create_topic(config: &ClusterConfig) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client(config).create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::AdminOpCreation(e.to_string()))?;
    let options = AdminOptions::new().request_timeout(Some(config.kafka_timeout));
    let mut last = None;
    for replication in [-1, 1] {
        let topic = NewTopic::new(&config.topic, 1, TopicReplication::Fixed(replication))
            .set("cleanup.policy", "compact");
        let results = runtime.block_on(admin.create_topics([&topic], &options))?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
            Some(Err((_, code))) => last = Some(code),
        }
    }
    Err(KafkaError::AdminOp(
        last.unwrap_or(RDKafkaErrorCode::Unknown),
    ))
}

/// Follows the topic: each record is an instance's latest announcement, a
/// tombstone its departure.
fn read(shared: &Shared, consumer: &BaseConsumer) {
    while !shared.stop.load(Ordering::Acquire) {
        let Some(message) = consumer.poll(LOOK) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(error = %e, "reading the members topic");
                continue;
            }
        };
        let Some(key) = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
        else {
            continue;
        };
        let mut members = shared.members.write().unwrap_or_else(|p| p.into_inner());
        match message.payload().map(serde_json::from_slice::<Member>) {
            None => {
                members.remove(&key);
            }
            Some(Ok(member)) => {
                members.insert(key, member);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, instance = %key, "an undecodable announcement on the members topic; ignored")
            }
        }
    }
}

/// Announces this instance's partitions whenever they change, and every
/// [`HEARTBEAT`]; a tombstone when it stops.
fn announce(shared: &Shared, producer: &BaseProducer, status: &StatusWatch) {
    let config = &shared.config;
    let owned = |s: &crate::processor::Status| {
        if s.phase.is_running() {
            s.partitions.clone()
        } else {
            Vec::new()
        }
    };
    let mut last: Option<(Vec<i32>, Instant)> = None;
    while !shared.stop.load(Ordering::Acquire) {
        let now = status.get();
        let partitions = owned(&now);
        let due = match &last {
            None => true,
            Some((said, when)) => *said != partitions || when.elapsed() >= HEARTBEAT,
        };
        if due {
            let member = Member {
                instance: config.instance.clone(),
                url: config.url.clone(),
                partitions: partitions.clone(),
                input_partitions: now.input_partitions,
                at: chrono::Utc::now().timestamp_millis(),
            };
            let value = serde_json::to_vec(&member).expect("a member serialises");
            let record = BaseRecord::to(&config.topic)
                .key(&config.instance)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => last = Some((partitions, Instant::now())),
                Err((e, _)) => {
                    tracing::warn!(error = %e, "announcing this instance failed; retrying")
                }
            }
        }
        producer.poll(Duration::ZERO);
        // Wakes when the partitions change; else after LOOK, to see a stop
        // or a heartbeat due.
        let said = last.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
        status.wait_until(LOOK, |s| owned(s) != said);
    }
    // The tombstone is a courtesy (the others stop asking at once rather
    // than after a failed request): a stop never waits long for it.
    let record = BaseRecord::<String, [u8]>::to(&config.topic).key(&config.instance);
    if producer.send(record).is_ok() {
        let _ = producer.flush(config.timeout.min(Duration::from_secs(5)));
    }
}
