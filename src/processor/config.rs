//! What `earlykill run` runs with ([`ProcessorConfig`]), resolved and
//! checked, and the defaults of its settings. The command line, the
//! environment and the file are layered into it by `crate::config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use earlykill_core::event::schema::WriterSchemas;
use earlykill_core::event::validate::Limits;
use earlykill_core::monitor::{Holdout, MonitorConfig};
use earlykill_core::shadow::{Policies, ShadowPolicy};
use serde::Deserialize;

use crate::kafka::{Redacted, Topics};
use crate::secret::Secret;

/// Which delivery guarantee the processor gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Decisions, changelog and offsets in one Kafka transaction: a crash
    /// neither loses nor repeats a decision for a read_committed reader.
    ExactlyOnce,
    /// For brokers without transactions: an idempotent producer, and input
    /// offsets committed only after the decisions are acknowledged. After a
    /// crash a decision may be published again, with the same decision id.
    AtLeastOnce,
}

/// How the processor frames the decisions it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionsFormat {
    /// Avro single-object encoding (`C3 01` and the schema fingerprint),
    /// which needs no registry: what `tail`, `project`, `replay` and the
    /// reference consumer read with or without one.
    #[default]
    SingleObject,
    /// Confluent Schema Registry framing (`00` and a schema id): the
    /// decision schema is registered under `<decisions topic>-value` at
    /// start, so Kafka Connect, ksqlDB and Confluent's deserializers read
    /// the decisions. Needs `schema-registry-url`.
    Registry,
}

/// The defaults of the settings that have no home in the fold's own
/// configuration ([`MonitorConfig::default`], [`Limits::default`]) or in
/// [`Topics::default`].
pub mod defaults {
    use std::net::SocketAddr;

    use super::Guarantee;

    /// `bootstrap-servers`.
    pub const BOOTSTRAP_SERVERS: &str = "localhost:9092";
    /// `group-id`.
    pub const GROUP_ID: &str = "earlykill";
    /// `guarantee`.
    pub const GUARANTEE: Guarantee = Guarantee::ExactlyOnce;
    /// `commit-interval-ms`.
    pub const COMMIT_INTERVAL_MS: u64 = 100;
    /// The shadow decisions topic.
    pub const SHADOW_DECISIONS_TOPIC: &str = "earlykill.shadow-decisions";
    /// `merge-wait-ms`.
    pub const MERGE_WAIT_MS: u64 = 0;
    /// `idle-lag-ms`.
    pub const IDLE_LAG_MS: u64 = 0;
    /// `static-membership`.
    pub const STATIC_MEMBERSHIP: bool = true;
    /// `stall-seconds`.
    pub const STALL_SECONDS: u64 = 120;
    /// `max-buffered`.
    pub const MAX_BUFFERED: usize = 10_000;
    /// `max-buffered-bytes`: 64 MiB.
    pub const MAX_BUFFERED_BYTES: usize = 64 << 20;
    /// `kafka-timeout-seconds`.
    pub const KAFKA_TIMEOUT_SECONDS: u64 = 30;
    /// `log-level`.
    pub const LOG_LEVEL: &str = "info";
    /// `http-listen`: this machine only, port 8080.
    pub const HTTP_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        8080,
    ));

    /// `members-topic`.
    pub const MEMBERS_TOPIC: &str = "earlykill.members";

    /// `advertised-url`: the listener's address, or this host's name
    /// (`$HOSTNAME`, else `localhost`) where it listens on every interface.
    pub fn advertised_url(listen: SocketAddr) -> String {
        if listen.ip().is_unspecified() {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
            format!("http://{host}:{}", listen.port())
        } else {
            format!("http://{listen}")
        }
    }

    /// `instance-id`: `$HOSTNAME` (a pod's name), else `earlykill-0`.
    pub fn instance_id() -> String {
        std::env::var("HOSTNAME").unwrap_or_else(|_| "earlykill-0".to_owned())
    }

    /// `threads`: the cores available.
    pub fn threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Most worker threads an instance runs.
pub const MAX_THREADS: usize = 256;

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Most bytes of a rejected record's value a dead letter carries: half the
/// producer's message size, so the copy, the key and the headers always
/// fit. A longer value is cut, and the dead letter says its full size.
pub fn dead_letter_value_max(message_max: usize) -> usize {
    message_max / 2
}

/// Everything `earlykill run` needs, resolved and checked. Its debug output
/// shows secrets as `***`.
#[derive(Clone)]
pub struct ProcessorConfig {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// librdkafka properties passed to every client.
    pub kafka: BTreeMap<String, String>,
    /// Consumer group.
    pub group_id: String,
    /// Stable name of this instance; with the group, the transactional id.
    pub instance_id: String,
    /// Delivery guarantee.
    pub guarantee: Guarantee,
    /// Longest time between commits.
    pub commit_interval: Duration,
    /// Topic names.
    pub topics: Topics,
    /// The fold's configuration.
    pub monitor: MonitorConfig,
    /// The shadow policies (`shadow-policy`); with the hold-out share in
    /// `monitor`, see [`ProcessorConfig::policies`].
    pub shadow_policies: Vec<ShadowPolicy>,
    /// Where shadow decisions go.
    pub shadow_decisions_topic: String,
    /// Validation limits for input.
    pub limits: Limits,
    /// How long a partition waits for records in flight on an input topic
    /// read to its end (a topic that is behind is always waited for).
    pub merge_wait: Duration,
    /// How far behind the wall clock idle partitions are advanced.
    pub idle_lag: Duration,
    /// Join the group as a static member (`group.instance.id` = instance
    /// id).
    pub static_membership: bool,
    /// Worker threads, each with its own group member, producer and
    /// partitions.
    pub threads: usize,
    /// How long a partition with input unread may make no progress before
    /// it is reported stalled (metric, log, readiness); zero never.
    pub stall_after: Duration,
    /// Records buffered per input topic partition before it is paused.
    pub max_buffered: usize,
    /// Bytes buffered per input topic partition before it is paused.
    pub max_buffered_bytes: usize,
    /// The producer's `message.max.bytes`: every record earlykill writes
    /// is kept below it.
    pub message_max_bytes: usize,
    /// Extra writer schemas from `schema-dir`.
    pub writer_schemas: WriterSchemas,
    /// The Confluent Schema Registry for registry-framed input.
    pub schema_registry: Option<crate::registry::Registry>,
    /// How decisions are framed.
    pub decisions_format: DecisionsFormat,
    /// Timeout of blocking Kafka calls.
    pub kafka_timeout: Duration,
    /// Log filter.
    pub log_level: String,
    /// Where the HTTP API listens; `None` for no API.
    pub http_listen: Option<SocketAddr>,
    /// This instance's API as the other instances reach it (announced on
    /// the members topic); `None` without an API.
    pub advertised_url: Option<String>,
    /// The compacted topic where instances announce the partitions they
    /// own and their API's address ([`crate::cluster`]).
    pub members_topic: String,
    /// Bearer token of the API's POST endpoints.
    pub http_token: Option<Secret>,
    /// PostgreSQL with the variant_monitoring table, for the status of
    /// ended sessions.
    pub database_url: Option<Secret>,
    /// Fault injection for tests: stop as a crash would (nothing committed,
    /// the transaction left open) right after producing this many
    /// decisions. Not settable from the command line; only in builds with
    /// the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub crash_after_decisions: Option<u64>,
}

impl std::fmt::Debug for ProcessorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("kafka", &Redacted(&self.kafka))
            .field("group_id", &self.group_id)
            .field("instance_id", &self.instance_id)
            .field("guarantee", &self.guarantee)
            .field("commit_interval", &self.commit_interval)
            .field("topics", &self.topics)
            .field("monitor", &self.monitor)
            .field("shadow_policies", &self.shadow_policies)
            .field("shadow_decisions_topic", &self.shadow_decisions_topic)
            .field("limits", &self.limits)
            .field("merge_wait", &self.merge_wait)
            .field("idle_lag", &self.idle_lag)
            .field("static_membership", &self.static_membership)
            .field("threads", &self.threads)
            .field("stall_after", &self.stall_after)
            .field("max_buffered", &self.max_buffered)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("writer_schemas", &self.writer_schemas)
            .field("schema_registry", &self.schema_registry)
            .field("decisions_format", &self.decisions_format)
            .field("kafka_timeout", &self.kafka_timeout)
            .field("log_level", &self.log_level)
            .field("http_listen", &self.http_listen)
            .field("advertised_url", &self.advertised_url)
            .field("members_topic", &self.members_topic)
            .field("http_token", &self.http_token)
            .field("database_url", &self.database_url)
            .finish_non_exhaustive()
    }
}

impl ProcessorConfig {
    /// The live fold's configuration and the shadow policies'.
    pub fn policies(&self) -> Policies {
        Policies::new(self.monitor, &self.shadow_policies)
    }

    /// Whether anything goes to the shadow decisions topic.
    pub fn has_shadows(&self) -> bool {
        !self.policies().shadows.is_empty()
    }

    /// The defaults, for a broker at `bootstrap_servers`: what the
    /// configuration resolves to when nothing else is set (a test in
    /// `config` holds the two equal).
    pub fn with_bootstrap(bootstrap_servers: &str) -> ProcessorConfig {
        ProcessorConfig {
            bootstrap_servers: bootstrap_servers.to_owned(),
            kafka: BTreeMap::new(),
            group_id: defaults::GROUP_ID.to_owned(),
            instance_id: defaults::instance_id(),
            guarantee: defaults::GUARANTEE,
            commit_interval: Duration::from_millis(defaults::COMMIT_INTERVAL_MS),
            topics: Topics::default(),
            monitor: MonitorConfig {
                holdout: Holdout::Spare {
                    parts_per_million: 0,
                },
                ..MonitorConfig::default()
            },
            shadow_policies: Vec::new(),
            shadow_decisions_topic: defaults::SHADOW_DECISIONS_TOPIC.to_owned(),
            limits: Limits::default(),
            merge_wait: Duration::from_millis(defaults::MERGE_WAIT_MS),
            idle_lag: Duration::from_millis(defaults::IDLE_LAG_MS),
            static_membership: defaults::STATIC_MEMBERSHIP,
            threads: defaults::threads(),
            stall_after: Duration::from_secs(defaults::STALL_SECONDS),
            max_buffered: defaults::MAX_BUFFERED,
            max_buffered_bytes: defaults::MAX_BUFFERED_BYTES,
            message_max_bytes: DEFAULT_MESSAGE_MAX_BYTES,
            writer_schemas: WriterSchemas::default(),
            schema_registry: None,
            decisions_format: DecisionsFormat::default(),
            kafka_timeout: Duration::from_secs(defaults::KAFKA_TIMEOUT_SECONDS),
            log_level: crate::telemetry::log_filter(defaults::LOG_LEVEL)
                .expect("the default log level is a level"),
            http_listen: Some(defaults::HTTP_LISTEN),
            advertised_url: Some(defaults::advertised_url(defaults::HTTP_LISTEN)),
            members_topic: defaults::MEMBERS_TOPIC.to_owned(),
            http_token: None,
            database_url: None,
            #[cfg(feature = "test-hooks")]
            crash_after_decisions: None,
        }
    }

    /// The configuration of worker `index` of `threads`: worker 0 is the
    /// instance itself, worker k > 0 is named `<instance-id>.<k>` (its
    /// client id, static member id and transactional id follow).
    pub fn worker(&self, index: usize) -> ProcessorConfig {
        let mut config = self.clone();
        if index > 0 {
            config.instance_id = format!("{}.{index}", self.instance_id);
        }
        config
    }

    /// The transactional id: stable per instance, unique per group.
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.group_id, self.instance_id)
    }
}
