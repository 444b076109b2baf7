//! `earlykill run`: the processor's settings ([`Settings`]) and what they
//! resolve to ([`ProcessorConfig`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::layer::{env_properties, layer, value_enum_name, HelpValue, Merge, Property};
use super::{
    invalid, kafka_properties, listen_address, log_filter, millis, registry, writer_schemas,
    ConfigError, Redacted, Secret,
};
use crate::event::schema::WriterSchemas;
use crate::event::validate::{Limits, DEFAULT_MAX_FUTURE_SKEW_MS, MAX_TIMEOUT_MINUTES};
use crate::monitor::rule::{Thresholds, MINUTE_MS};
use crate::monitor::{MonitorConfig, MAX_SESSIONS};

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

layer! {
    /// `earlykill run`'s settings, one layer of them (flags and
    /// environment, or the file).
    pub struct Settings => SettingsValues {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(long, env = "EARLYKILL_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String = "localhost:9092".to_owned(),
    /// Consumer group of the processor instances. Instances in one group
    /// split the partitions.
    #[arg(long, env = "EARLYKILL_GROUP_ID")]
    group_id: String = "earlykill".to_owned(),
    /// This instance's name, stable across restarts and unique in the group
    /// (a pod name). The transactional id is `<group-id>-<instance-id>`, so
    /// a restarted instance fences its previous incarnation. Defaults to
    /// $HOSTNAME.
    #[arg(long, env = "EARLYKILL_INSTANCE_ID")]
    instance_id: String,
    /// Delivery guarantee.
    #[arg(long, env = "EARLYKILL_GUARANTEE", value_enum)]
    guarantee: Guarantee = Guarantee::ExactlyOnce,
    /// Longest time between commits, in milliseconds. It bounds decision
    /// latency under exactly-once: a decision is visible once committed.
    #[arg(long, env = "EARLYKILL_COMMIT_INTERVAL_MS")]
    commit_interval_ms: u64 = 100,
    /// Topic of VariantPosted events.
    #[arg(long, env = "EARLYKILL_POSTED_TOPIC")]
    posted_topic: String = "earlykill.posted".to_owned(),
    /// Topic of Interaction events.
    #[arg(long, env = "EARLYKILL_INTERACTIONS_TOPIC")]
    interactions_topic: String = "earlykill.interactions".to_owned(),
    /// Topic of StopMonitoring commands.
    #[arg(long, env = "EARLYKILL_COMMANDS_TOPIC")]
    commands_topic: String = "earlykill.commands".to_owned(),
    /// Topic the decisions are published to.
    #[arg(long, env = "EARLYKILL_DECISIONS_TOPIC")]
    decisions_topic: String = "earlykill.decisions".to_owned(),
    /// Compacted state changelog topic, with the input topics' partition
    /// count.
    #[arg(long, env = "EARLYKILL_CHANGELOG_TOPIC")]
    changelog_topic: String = "earlykill.changelog".to_owned(),
    /// Topic undecodable or invalid input records go to.
    #[arg(long, env = "EARLYKILL_DEAD_LETTER_TOPIC")]
    dead_letter_topic: String = "earlykill.dead-letters".to_owned(),
    /// Default kill threshold: kill when the rate is below this fraction of
    /// the expected rate. In (0, 1].
    #[arg(long, env = "PERFORMANCE_MONITOR_KILL_THRESHOLD")]
    kill_threshold: f64 = Thresholds::default().kill_threshold,
    /// Default minimum interactions before a kill. At least 1.
    #[arg(long, env = "PERFORMANCE_MONITOR_MIN_INTERACTIONS")]
    min_interactions: u32 = Thresholds::default().min_interactions,
    /// Default monitoring window in minutes. 1 to 10080.
    #[arg(long, env = "PERFORMANCE_MONITOR_TIMEOUT_MINUTES")]
    timeout_minutes: u32 = Thresholds::default().timeout_minutes,
    /// How long, in event-time seconds, an interaction for a variant not
    /// posted yet is held before it is dropped.
    #[arg(long, env = "EARLYKILL_HOLD_GRACE_SECONDS")]
    hold_grace_seconds: u64 = MonitorConfig::default().hold_grace_ms as u64 / 1000,
    /// Most interactions held per partition.
    #[arg(long, env = "EARLYKILL_HOLD_CAPACITY")]
    hold_capacity: usize = MonitorConfig::default().hold_capacity,
    /// Most interactions held for one variant; more are dropped and counted
    /// (`earlykill_held_dropped_total{reason="refused"}`). Bounds the
    /// variant's changelog record below the producer's message size.
    #[arg(long, env = "EARLYKILL_HOLD_PER_VARIANT")]
    hold_per_variant: usize = MonitorConfig::default().hold_per_variant,
    /// Most sessions (active, or ended and remembered) per partition; a
    /// post beyond that is a dead letter (`session_limit`).
    #[arg(long, env = "EARLYKILL_MAX_SESSIONS")]
    max_sessions: usize = MonitorConfig::default().max_sessions,
    /// How long, in event-time minutes, an ended session is remembered.
    #[arg(long, env = "EARLYKILL_ENDED_RETENTION_MINUTES")]
    ended_retention_minutes: u64 = (MonitorConfig::default().ended_retention_ms / MINUTE_MS) as u64,
    /// Largest accepted gap between an event's time and the wall clock, in
    /// seconds, before the event is a dead letter; 0 turns the check off.
    #[arg(long, env = "EARLYKILL_MAX_FUTURE_SKEW_SECONDS")]
    max_future_skew_seconds: u64 = (DEFAULT_MAX_FUTURE_SKEW_MS / 1000) as u64,
    /// How long, in milliseconds, a partition waits for records still in
    /// flight on an input topic that is read to its end, before folding the
    /// other topics past it. An input that is behind (its end not reached)
    /// is always waited for. 0, like Kafka Streams' `max.task.idle.ms`, folds
    /// at once.
    #[arg(long, env = "EARLYKILL_MERGE_WAIT_MS")]
    merge_wait_ms: u64 = 0,
    /// How far behind the wall clock an idle partition's clock is advanced,
    /// in milliseconds: room for upstream delivery delay, paid in timeout
    /// lateness.
    #[arg(long, env = "EARLYKILL_IDLE_LAG_MS")]
    idle_lag_ms: u64 = 0,
    /// Static group membership: the consumer joins as `group.instance.id` =
    /// instance-id, so a restarted instance (a pod after `kill -9`) gets its
    /// partitions back at once, without waiting out the dead member's
    /// session. The cost: a stopped instance's partitions move only after
    /// `session.timeout.ms` (45 s). `false` joins dynamically.
    #[arg(long, env = "EARLYKILL_STATIC_MEMBERSHIP")]
    static_membership: bool = true,
    /// Worker threads: the instance's partitions are spread over this many
    /// workers, each a member of the group with its own consumer,
    /// transactional producer and partitions' state (worker k > 0 joins as
    /// `<instance-id>.<k>`). More workers than input partitions sit idle.
    /// Defaults to the cores available.
    #[arg(long, env = "EARLYKILL_THREADS")]
    threads: usize,
    /// Directory of extra writer schemas (`.avsc`), versions of the input
    /// record types that producers write (a newer one with an added
    /// optional field, an older one): loaded at start, each checked to be
    /// readable with this build's schema.
    #[arg(long, env = "EARLYKILL_SCHEMA_DIR")]
    schema_dir: PathBuf,
    /// Confluent Schema Registry, `http(s)://host:port`: input records framed
    /// by Confluent's serializers (a zero byte and a schema id) are decoded
    /// with the writer schema fetched by id (once per id).
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_URL")]
    schema_registry_url: String,
    /// `user:password` for the schema registry's basic authentication.
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_BASIC_AUTH", hide_env_values = true)]
    schema_registry_basic_auth: String,
    /// Extra CA certificate (PEM) to trust for an https registry.
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_CA")]
    schema_registry_ca: PathBuf,
    /// How decisions are framed: `single-object` (default) or `registry`
    /// (Confluent framing, the schema registered under
    /// `<decisions topic>-value`; needs schema-registry-url).
    #[arg(long, env = "EARLYKILL_DECISIONS_FORMAT", value_enum)]
    decisions_format: DecisionsFormat = DecisionsFormat::SingleObject,
    /// Records buffered per input topic partition before it is paused.
    #[arg(long, env = "EARLYKILL_MAX_BUFFERED")]
    max_buffered: usize = 10_000,
    /// Bytes (keys and values) buffered per input topic partition before it
    /// is paused.
    #[arg(long, env = "EARLYKILL_MAX_BUFFERED_BYTES")]
    max_buffered_bytes: usize = 64 << 20,
    /// Timeout of blocking Kafka calls (transactions, restore), in seconds.
    #[arg(long, env = "EARLYKILL_KAFKA_TIMEOUT_SECONDS")]
    kafka_timeout_seconds: u64 = 30,
    /// Log level (trace, debug, info, warning, error, critical) or a filter
    /// such as `earlykill=debug,rdkafka=warn`. The decision audit lines are
    /// kept whatever the level, unless the filter names
    /// `earlykill::audit` itself.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL")]
    log_level: String = "info".to_owned(),
    /// Where the HTTP API (health, readiness, metrics, status, stop)
    /// listens, `host:port`, or `off`. The default, 127.0.0.1:8080, is
    /// reachable from this machine only; in a container use 0.0.0.0:8080.
    #[arg(long, env = "EARLYKILL_HTTP_LISTEN")]
    http_listen: String = "127.0.0.1:8080".to_owned(),
    /// Bearer token the API's POST endpoints (start-monitoring, stop)
    /// require. Without one they are open to whoever reaches the listener.
    #[arg(long, env = "EARLYKILL_HTTP_TOKEN", hide_env_values = true)]
    http_token: String,
    /// PostgreSQL URL of the variant_monitoring table (optional): the
    /// status endpoint answers ended sessions from it and readiness checks
    /// it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// librdkafka property for every client, `-X key=value`, e.g.
    /// `-X security.protocol=SASL_SSL` (repeatable; in the file, a
    /// `[kafka]` table; in the environment, `EARLYKILL_RDKAFKA_*` with `_`
    /// for `.`, e.g. `EARLYKILL_RDKAFKA_SASL_PASSWORD`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = super::parse_property)]
    #[serde(default, deserialize_with = "super::layer::kafka_table")]
    kafka: Vec<Property>,
    }
}

impl Merge for Guarantee {}
impl Merge for DecisionsFormat {}

impl HelpValue for Guarantee {
    fn help_value(&self) -> String {
        value_enum_name(self)
    }
}

impl HelpValue for DecisionsFormat {
    fn help_value(&self) -> String {
        value_enum_name(self)
    }
}

impl Settings {
    /// librdkafka properties from `EARLYKILL_RDKAFKA_*` variables, as a
    /// layer: `EARLYKILL_RDKAFKA_SASL_USERNAME=x` is `sasl.username=x`.
    pub fn from_env_properties(vars: impl IntoIterator<Item = (String, String)>) -> Settings {
        Settings {
            kafka: env_properties(vars),
            ..Settings::default()
        }
    }

    /// Layers flags and environment (`self`) over `EARLYKILL_RDKAFKA_*`
    /// variables over the file, then resolves, as every subcommand's
    /// `load` does.
    pub fn load(self, file: Option<&std::path::Path>) -> Result<ProcessorConfig, ConfigError> {
        let file = file
            .map(Settings::from_file)
            .transpose()?
            .unwrap_or_default();
        self.or(Settings::from_env_properties(std::env::vars()))
            .or(file)
            .resolve()
    }

    /// Fills unset fields with defaults and checks every value.
    pub fn resolve(self) -> Result<ProcessorConfig, ConfigError> {
        let v = self.with_defaults();
        let thresholds = Thresholds {
            kill_threshold: v.kill_threshold,
            min_interactions: v.min_interactions,
            timeout_minutes: v.timeout_minutes,
        };
        if !(thresholds.kill_threshold > 0.0 && thresholds.kill_threshold <= 1.0) {
            return Err(invalid(
                "kill-threshold",
                format!("{} is outside (0, 1]", thresholds.kill_threshold),
                "set a fraction such as 0.5 (kill below half the expected rate)",
            ));
        }
        if thresholds.min_interactions == 0 {
            return Err(invalid(
                "min-interactions",
                "0 would kill on the first view".into(),
                "set at least 1 (the default is 10)",
            ));
        }
        if !(1..=MAX_TIMEOUT_MINUTES as u32).contains(&thresholds.timeout_minutes) {
            return Err(invalid(
                "timeout-minutes",
                format!(
                    "{} is outside 1..={MAX_TIMEOUT_MINUTES}",
                    thresholds.timeout_minutes
                ),
                "set the monitoring window in minutes (the default is 10)",
            ));
        }
        let monitor = MonitorConfig {
            defaults: thresholds,
            hold_grace_ms: millis(v.hold_grace_seconds).saturating_mul(1000),
            hold_capacity: v.hold_capacity,
            hold_per_variant: v.hold_per_variant,
            max_sessions: v.max_sessions,
            ended_retention_ms: millis(v.ended_retention_minutes).saturating_mul(MINUTE_MS),
        };
        let limits = Limits {
            max_future_skew_ms: (v.max_future_skew_seconds > 0)
                .then(|| millis(v.max_future_skew_seconds).saturating_mul(1000)),
        };
        let commit_interval = Duration::from_millis(v.commit_interval_ms);
        if commit_interval.is_zero() || commit_interval > Duration::from_secs(60) {
            return Err(invalid(
                "commit-interval-ms",
                format!("{} ms is outside 1..=60000", commit_interval.as_millis()),
                "set how often to commit in milliseconds (the default is 100)",
            ));
        }
        if v.max_buffered == 0 {
            return Err(invalid(
                "max-buffered",
                "0 would never read anything".into(),
                "set at least 1 (the default is 10000)",
            ));
        }
        if v.max_buffered_bytes < 2 << 20 {
            return Err(invalid(
                "max-buffered-bytes",
                format!(
                    "{} is less than 2 MiB, the size of two records at the producer's limit",
                    v.max_buffered_bytes
                ),
                "set at least 2097152 (the default is 67108864, 64 MiB)",
            ));
        }
        if monitor.max_sessions == 0 {
            return Err(invalid(
                "max-sessions",
                "0 would start no session".into(),
                "set at least 1 (the default is 1000000)",
            ));
        }
        if monitor.max_sessions > MAX_SESSIONS {
            return Err(invalid(
                "max-sessions",
                format!(
                    "{} is more than a partition can hold ({MAX_SESSIONS})",
                    monitor.max_sessions
                ),
                "set at most 16777215, or spread the variants over more partitions",
            ));
        }
        let kafka_timeout = Duration::from_secs(v.kafka_timeout_seconds);
        if kafka_timeout.is_zero() {
            return Err(invalid(
                "kafka-timeout-seconds",
                "0 fails every call".into(),
                "set a timeout in seconds (the default is 30)",
            ));
        }
        let kafka = kafka_properties(v.kafka, reserved)?;
        let message_max = match kafka.get("message.max.bytes") {
            None => DEFAULT_MESSAGE_MAX_BYTES,
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    "kafka-property",
                    format!("message.max.bytes = {v:?} is not a number of bytes"),
                    "set it in bytes, e.g. 1000000",
                )
            })?,
        };
        let most_held = held_record_fits(message_max);
        if !(1..=most_held).contains(&monitor.hold_per_variant) {
            return Err(invalid(
                "hold-per-variant",
                format!(
                    "{} is outside 1..={most_held}: a variant's changelog record must fit the producer's message.max.bytes ({message_max})",
                    monitor.hold_per_variant
                ),
                "set at most that (the default is 1000), or raise message.max.bytes on the brokers and with -X message.max.bytes",
            ));
        }
        let writer_schemas = writer_schemas(v.schema_dir.as_deref())?;
        let schema_registry = registry(
            v.schema_registry_url.as_deref(),
            v.schema_registry_basic_auth.as_deref(),
            v.schema_registry_ca.as_deref(),
        )?;
        if v.decisions_format == DecisionsFormat::Registry && schema_registry.is_none() {
            return Err(invalid(
                "decisions-format",
                "registry framing needs a schema registry to register the decision schema with"
                    .into(),
                "set schema-registry-url too, or use decisions-format = single-object",
            ));
        }
        let log_level = log_filter(&v.log_level)?;
        let instance_id = match v.instance_id {
            Some(id) => id,
            None => std::env::var("HOSTNAME").unwrap_or_else(|_| "earlykill-0".to_owned()),
        };
        for (key, value) in [("group-id", &v.group_id), ("instance-id", &instance_id)] {
            if value.trim().is_empty() {
                return Err(invalid(key, "it is empty".into(), "set a non-empty name"));
            }
        }
        let threads = match v.threads {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(invalid(
                "threads",
                format!("{threads} is outside 1..={MAX_THREADS}"),
                "set the worker threads, at most the cores available (the default)",
            ));
        }
        let topics = Topics {
            posted: v.posted_topic,
            interactions: v.interactions_topic,
            commands: v.commands_topic,
            decisions: v.decisions_topic,
            changelog: v.changelog_topic,
            dead_letters: v.dead_letter_topic,
        };
        topics.check_distinct()?;
        let http_listen = listen_address(&v.http_listen, 8080)?;
        let http_token = v.http_token.filter(|t| !t.trim().is_empty());
        if http_token.is_none() {
            if let Some(address) = http_listen.filter(|a| !a.ip().is_loopback()) {
                return Err(invalid(
                    "http-token",
                    format!(
                        "the API listens on {address}, beyond this machine, and its write endpoints (start-monitoring, stop) would be open to anyone who reaches it"
                    ),
                    "set a long random token (EARLYKILL_HTTP_TOKEN, e.g. from `openssl rand -hex 32`), or listen on 127.0.0.1, or set http-listen = off",
                ));
            }
        }
        Ok(ProcessorConfig {
            http_listen,
            http_token: http_token.map(Secret),
            database_url: v.database_url.map(Secret),
            bootstrap_servers: v.bootstrap_servers,
            kafka,
            group_id: v.group_id,
            instance_id,
            guarantee: v.guarantee,
            commit_interval,
            topics,
            monitor,
            limits,
            merge_wait: Duration::from_millis(v.merge_wait_ms),
            idle_lag: Duration::from_millis(v.idle_lag_ms),
            static_membership: v.static_membership,
            threads,
            max_buffered: v.max_buffered,
            max_buffered_bytes: v.max_buffered_bytes,
            message_max_bytes: message_max,
            writer_schemas,
            schema_registry,
            decisions_format: v.decisions_format,
            kafka_timeout,
            log_level,
            #[cfg(feature = "test-hooks")]
            crash_after_decisions: None,
        })
    }
}

/// Most worker threads an instance runs.
pub const MAX_THREADS: usize = 256;

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Most interactions one variant may hold so that its changelog record fits
/// in `message_max` bytes: a held interaction encodes to at most
/// [`MAX_HELD_BYTES`], and 8 KiB covers the session and the record's
/// framing.
pub fn held_record_fits(message_max: usize) -> usize {
    message_max.saturating_sub(8 << 10) / MAX_HELD_BYTES
}

/// Most bytes of a rejected record's value a dead letter carries: half the
/// producer's message size, so the copy, the key and the headers always
/// fit. A longer value is cut, and the dead letter says its full size.
pub fn dead_letter_value_max(message_max: usize) -> usize {
    message_max / 2
}

/// Longest encoding of one held interaction: an event id of at most 256
/// bytes with its length, the kind, and four longs of at most 10 bytes.
pub const MAX_HELD_BYTES: usize = 256 + 2 + 1 + 4 * 10;

/// Properties earlykill must own for its guarantees, with what to use
/// instead.
fn reserved(property: &str) -> Option<&'static str> {
    Some(match property {
        "group.id" => "use `group-id`",
        "transactional.id" => "it is `<group-id>-<instance-id>`; set `instance-id`",
        "bootstrap.servers" | "metadata.broker.list" => "use `bootstrap-servers`",
        "enable.auto.commit" | "enable.auto.offset.store" => {
            "offsets are committed with the decisions; remove it"
        }
        "isolation.level" => "earlykill reads its changelog read_committed; remove it",
        "partition.assignment.strategy" => {
            "the co-partitioned inputs need the range assignor; remove it"
        }
        "enable.idempotence" => "the guarantee sets it; use `guarantee`",
        "enable.partition.eof" => {
            "the event-time merge learns that an input is read to its end from it; remove it"
        }
        "group.instance.id" => "it is the instance id; set `instance-id` (or `static-membership`)",
        _ => return None,
    })
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
            .field("limits", &self.limits)
            .field("merge_wait", &self.merge_wait)
            .field("idle_lag", &self.idle_lag)
            .field("static_membership", &self.static_membership)
            .field("threads", &self.threads)
            .field("max_buffered", &self.max_buffered)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("writer_schemas", &self.writer_schemas)
            .field("schema_registry", &self.schema_registry)
            .field("decisions_format", &self.decisions_format)
            .field("kafka_timeout", &self.kafka_timeout)
            .field("log_level", &self.log_level)
            .field("http_listen", &self.http_listen)
            .field("http_token", &self.http_token)
            .field("database_url", &self.database_url)
            .finish_non_exhaustive()
    }
}

impl ProcessorConfig {
    /// The defaults, for a broker at `bootstrap_servers`.
    pub fn with_bootstrap(bootstrap_servers: &str) -> ProcessorConfig {
        Settings {
            bootstrap_servers: Some(bootstrap_servers.to_owned()),
            ..Settings::default()
        }
        .resolve()
        .expect("the defaults are valid")
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

/// The topics the processor reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// VariantPosted input.
    pub posted: String,
    /// Interaction input.
    pub interactions: String,
    /// StopMonitoring input.
    pub commands: String,
    /// Decisions output.
    pub decisions: String,
    /// Compacted state changelog.
    pub changelog: String,
    /// Dead letters.
    pub dead_letters: String,
}

/// The documented names: `earlykill.posted`, `earlykill.interactions`,
/// `earlykill.commands`, `earlykill.decisions`, `earlykill.changelog`,
/// `earlykill.dead-letters`.
impl Default for Topics {
    fn default() -> Self {
        let v = Settings::default().with_defaults();
        Topics {
            posted: v.posted_topic,
            interactions: v.interactions_topic,
            commands: v.commands_topic,
            decisions: v.decisions_topic,
            changelog: v.changelog_topic,
            dead_letters: v.dead_letter_topic,
        }
    }
}

impl Topics {
    /// The name of an input topic.
    pub fn input(&self, topic: crate::event::InputTopic) -> &str {
        use crate::event::InputTopic;
        match topic {
            InputTopic::Posted => &self.posted,
            InputTopic::Interactions => &self.interactions,
            InputTopic::Commands => &self.commands,
        }
    }

    pub(super) fn check_distinct(&self) -> Result<(), ConfigError> {
        let named = [
            ("posted-topic", &self.posted),
            ("interactions-topic", &self.interactions),
            ("commands-topic", &self.commands),
            ("decisions-topic", &self.decisions),
            ("changelog-topic", &self.changelog),
            ("dead-letter-topic", &self.dead_letters),
        ];
        for (i, (key, name)) in named.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(key, "it is empty".into(), "name a topic"));
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, n)| n == name) {
                return Err(invalid(
                    key,
                    format!("topic {name:?} is also `{other}`"),
                    "give each role its own topic",
                ));
            }
        }
        Ok(())
    }
}
