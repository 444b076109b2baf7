//! Layered configuration: built-in defaults, then a TOML file, then
//! environment variables, then command-line flags, each layer overriding the
//! one before. A file key is its flag's long name (`kill-threshold = 0.4`),
//! so there is one name per setting everywhere; librdkafka properties go in
//! the file's `[kafka]` table, in `EARLYKILL_RDKAFKA_*` variables or in
//! `-X key=value` flags and pass through unchanged (SASL and TLS included).
//!
//! [`Settings`] is one layer: every field optional. [`Settings::resolve`]
//! fills the gaps with defaults and checks every value, and an error names
//! the key and how to fix it, so a bad configuration fails at start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::event::schema::WriterSchemas;
use crate::event::validate::{Limits, MAX_TIMEOUT_MINUTES};
use crate::monitor::rule::{Thresholds, MINUTE_MS};
use crate::monitor::MonitorConfig;

/// A setting that cannot be used, naming the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value out of its range, or a combination that cannot work.
    #[error("configuration key `{key}`: {problem}; {fix}")]
    Invalid {
        /// The key (the flag's long name, the file key).
        key: &'static str,
        /// What is wrong with the value.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A librdkafka property earlykill sets itself.
    #[error("Kafka property `{property}` is managed by earlykill; {fix}")]
    ReservedProperty {
        /// The property.
        property: String,
        /// What to set instead.
        fix: &'static str,
    },
    /// The configuration file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has an unknown key.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key or line.
        message: String,
    },
}

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

/// Declares [`Settings`] once: each field is a flag, an environment variable
/// and a file key, and `or` layers two settings field by field.
macro_rules! settings {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty, )*) => {
        /// One layer of configuration (flags and environment, or the file):
        /// every field optional, `None` meaning "not set in this layer".
        #[derive(Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $( $(#[$meta])* pub $name: Option<$ty>, )*
            /// librdkafka property for every client, `-X key=value`, e.g.
            /// `-X security.protocol=SASL_SSL` (repeatable; in the file, a
            /// `[kafka]` table; in the environment, `EARLYKILL_RDKAFKA_*`
            /// with `_` for `.`, e.g. `EARLYKILL_RDKAFKA_SASL_PASSWORD`).
            #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
            #[serde(skip)]
            pub kafka_property: Vec<(String, String)>,
            /// librdkafka properties from the file's `[kafka]` table.
            #[arg(skip)]
            #[serde(default)]
            pub kafka: BTreeMap<String, String>,
        }

        /// Secrets (the token, the database URL, librdkafka passwords) show
        /// as `***`.
        impl std::fmt::Debug for Settings {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("Settings");
                $(
                    if SECRET_SETTINGS.contains(&stringify!($name)) {
                        d.field(stringify!($name), &self.$name.as_ref().map(|_| "***"));
                    } else {
                        d.field(stringify!($name), &self.$name);
                    }
                )*
                let properties: BTreeMap<String, String> =
                    self.kafka_property.iter().cloned().collect();
                d.field("kafka_property", &Redacted(&properties))
                    .field("kafka", &Redacted(&self.kafka))
                    .finish()
            }
        }

        impl Settings {
            /// This layer over `lower`: a field set here wins.
            pub fn or(self, lower: Settings) -> Settings {
                let mut kafka = lower.kafka;
                kafka.extend(self.kafka);
                kafka.extend(self.kafka_property.iter().cloned());
                Settings {
                    $( $name: self.$name.or(lower.$name), )*
                    kafka_property: Vec::new(),
                    kafka,
                }
            }
        }
    };
}

settings! {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(long, env = "EARLYKILL_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// Consumer group of the processor instances. Instances in one group
    /// split the partitions.
    #[arg(long, env = "EARLYKILL_GROUP_ID")]
    group_id: String,
    /// This instance's name, stable across restarts and unique in the group
    /// (a pod name). The transactional id is `<group-id>-<instance-id>`, so
    /// a restarted instance fences its previous incarnation. Defaults to
    /// $HOSTNAME.
    #[arg(long, env = "EARLYKILL_INSTANCE_ID")]
    instance_id: String,
    /// Delivery guarantee.
    #[arg(long, env = "EARLYKILL_GUARANTEE", value_enum)]
    guarantee: Guarantee,
    /// Longest time between commits, in milliseconds. It bounds decision
    /// latency under exactly-once: a decision is visible once committed.
    #[arg(long, env = "EARLYKILL_COMMIT_INTERVAL_MS")]
    commit_interval_ms: u64,
    /// Topic of VariantPosted events.
    #[arg(long, env = "EARLYKILL_POSTED_TOPIC")]
    posted_topic: String,
    /// Topic of Interaction events.
    #[arg(long, env = "EARLYKILL_INTERACTIONS_TOPIC")]
    interactions_topic: String,
    /// Topic of StopMonitoring commands.
    #[arg(long, env = "EARLYKILL_COMMANDS_TOPIC")]
    commands_topic: String,
    /// Topic the decisions are published to.
    #[arg(long, env = "EARLYKILL_DECISIONS_TOPIC")]
    decisions_topic: String,
    /// Compacted state changelog topic, with the input topics' partition
    /// count.
    #[arg(long, env = "EARLYKILL_CHANGELOG_TOPIC")]
    changelog_topic: String,
    /// Topic undecodable or invalid input records go to.
    #[arg(long, env = "EARLYKILL_DEAD_LETTER_TOPIC")]
    dead_letter_topic: String,
    /// Default kill threshold: kill when the rate is below this fraction of
    /// the expected rate. In (0, 1].
    #[arg(long, env = "PERFORMANCE_MONITOR_KILL_THRESHOLD")]
    kill_threshold: f64,
    /// Default minimum interactions before a kill. At least 1.
    #[arg(long, env = "PERFORMANCE_MONITOR_MIN_INTERACTIONS")]
    min_interactions: u32,
    /// Default monitoring window in minutes. 1 to 10080.
    #[arg(long, env = "PERFORMANCE_MONITOR_TIMEOUT_MINUTES")]
    timeout_minutes: u32,
    /// How long, in event-time seconds, an interaction for a variant not
    /// posted yet is held before it is dropped.
    #[arg(long, env = "EARLYKILL_HOLD_GRACE_SECONDS")]
    hold_grace_seconds: u64,
    /// Most interactions held per partition.
    #[arg(long, env = "EARLYKILL_HOLD_CAPACITY")]
    hold_capacity: usize,
    /// Most interactions held for one variant; more are dropped and counted
    /// (`earlykill_held_dropped_total{reason="refused"}`). Bounds the
    /// variant's changelog record below the producer's message size.
    #[arg(long, env = "EARLYKILL_HOLD_PER_VARIANT")]
    hold_per_variant: usize,
    /// Most sessions (active, or ended and remembered) per partition; a
    /// post beyond that is a dead letter (`session_limit`).
    #[arg(long, env = "EARLYKILL_MAX_SESSIONS")]
    max_sessions: usize,
    /// How long, in event-time minutes, an ended session is remembered.
    #[arg(long, env = "EARLYKILL_ENDED_RETENTION_MINUTES")]
    ended_retention_minutes: u64,
    /// Largest accepted gap between an event's time and the wall clock, in
    /// seconds, before the event is a dead letter; 0 turns the check off.
    #[arg(long, env = "EARLYKILL_MAX_FUTURE_SKEW_SECONDS")]
    max_future_skew_seconds: u64,
    /// How long, in milliseconds, a partition waits for records still in
    /// flight on an input topic that is read to its end, before folding the
    /// other topics past it. An input that is behind (its end not reached)
    /// is always waited for. 0, like Kafka Streams' `max.task.idle.ms`, folds
    /// at once.
    #[arg(long, env = "EARLYKILL_MERGE_WAIT_MS")]
    merge_wait_ms: u64,
    /// How far behind the wall clock an idle partition's clock is advanced,
    /// in milliseconds: room for upstream delivery delay, paid in timeout
    /// lateness.
    #[arg(long, env = "EARLYKILL_IDLE_LAG_MS")]
    idle_lag_ms: u64,
    /// Static group membership: the consumer joins as `group.instance.id` =
    /// instance-id, so a restarted instance (a pod after `kill -9`) gets its
    /// partitions back at once, without waiting out the dead member's
    /// session. The cost: a stopped instance's partitions move only after
    /// `session.timeout.ms` (45 s). `false` joins dynamically.
    #[arg(long, env = "EARLYKILL_STATIC_MEMBERSHIP")]
    static_membership: bool,
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
    decisions_format: DecisionsFormat,
    /// Records buffered per input topic partition before it is paused.
    #[arg(long, env = "EARLYKILL_MAX_BUFFERED")]
    max_buffered: usize,
    /// Bytes (keys and values) buffered per input topic partition before it
    /// is paused.
    #[arg(long, env = "EARLYKILL_MAX_BUFFERED_BYTES")]
    max_buffered_bytes: usize,
    /// Timeout of blocking Kafka calls (transactions, restore), in seconds.
    #[arg(long, env = "EARLYKILL_KAFKA_TIMEOUT_SECONDS")]
    kafka_timeout_seconds: u64,
    /// Log level (trace, debug, info, warning, error, critical) or a filter
    /// such as `earlykill=debug,rdkafka=warn`. The decision audit lines are
    /// kept whatever the level, unless the filter names
    /// `earlykill::audit` itself.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL")]
    log_level: String,
    /// Where the HTTP API (health, readiness, metrics, status, stop)
    /// listens, `host:port`, or `off`. The default, 127.0.0.1:8080, is
    /// reachable from this machine only; in a container use 0.0.0.0:8080.
    #[arg(long, env = "EARLYKILL_HTTP_LISTEN")]
    http_listen: String,
    /// Bearer token the API's POST endpoints (start-monitoring, stop)
    /// require. Without one they are open to whoever reaches the listener.
    #[arg(long, env = "EARLYKILL_HTTP_TOKEN", hide_env_values = true)]
    http_token: String,
    /// PostgreSQL URL of the variant_monitoring table (optional): the
    /// status endpoint answers ended sessions from it and readiness checks
    /// it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// Settings whose values are secrets.
const SECRET_SETTINGS: [&str; 3] = ["http_token", "database_url", "schema_registry_basic_auth"];

/// Whether a librdkafka property holds a secret (a password, a client
/// secret, a private key, OAUTHBEARER or JAAS configuration).
pub fn is_secret_property(key: &str) -> bool {
    [
        "password",
        "secret",
        "pem",
        "sasl.oauthbearer.config",
        "jaas",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// librdkafka properties for debug output: secret values show as `***`.
pub struct Redacted<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, v)
            }))
            .finish()
    }
}

/// A value never shown in logs or debug output (tokens, URLs with
/// passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// librdkafka properties only consumers understand: passed to every
/// client, they would make each producer warn that it ignores them.
const CONSUMER_ONLY: [&str; 12] = [
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "group.instance.id",
];

/// The pass-through properties a producer should get: all but the
/// consumer-only ones.
pub fn producer_properties(
    kafka: &BTreeMap<String, String>,
) -> impl Iterator<Item = (&String, &String)> {
    kafka
        .iter()
        .filter(|(key, _)| !CONSUMER_ONLY.contains(&key.as_str()))
}

/// Parses a `-X key=value` librdkafka property.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl Settings {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// librdkafka properties from `EARLYKILL_RDKAFKA_*` variables:
    /// `EARLYKILL_RDKAFKA_SASL_USERNAME=x` is `sasl.username=x`.
    pub fn from_env_properties(vars: impl IntoIterator<Item = (String, String)>) -> Settings {
        let kafka = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("EARLYKILL_RDKAFKA_")?;
                Some((name.to_ascii_lowercase().replace('_', "."), v))
            })
            .collect();
        Settings {
            kafka,
            ..Settings::default()
        }
    }

    /// Fills unset fields with defaults and checks every value.
    pub fn resolve(self) -> Result<ProcessorConfig, ConfigError> {
        let defaults = Thresholds::default();
        let thresholds = Thresholds {
            kill_threshold: self.kill_threshold.unwrap_or(defaults.kill_threshold),
            min_interactions: self.min_interactions.unwrap_or(defaults.min_interactions),
            timeout_minutes: self.timeout_minutes.unwrap_or(defaults.timeout_minutes),
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
        let monitor_defaults = MonitorConfig::default();
        let monitor = MonitorConfig {
            defaults: thresholds,
            hold_grace_ms: self
                .hold_grace_seconds
                .map_or(monitor_defaults.hold_grace_ms, |s| millis(s * 1000)),
            hold_capacity: self.hold_capacity.unwrap_or(monitor_defaults.hold_capacity),
            hold_per_variant: self
                .hold_per_variant
                .unwrap_or(monitor_defaults.hold_per_variant),
            max_sessions: self.max_sessions.unwrap_or(monitor_defaults.max_sessions),
            ended_retention_ms: self
                .ended_retention_minutes
                .map_or(monitor_defaults.ended_retention_ms, |m| {
                    millis(m).saturating_mul(MINUTE_MS)
                }),
        };
        let limits = match self.max_future_skew_seconds {
            None => Limits::default(),
            Some(0) => Limits {
                max_future_skew_ms: None,
            },
            Some(s) => Limits {
                max_future_skew_ms: Some(millis(s).saturating_mul(1000)),
            },
        };
        let commit_interval = Duration::from_millis(self.commit_interval_ms.unwrap_or(100));
        if commit_interval.is_zero() || commit_interval > Duration::from_secs(60) {
            return Err(invalid(
                "commit-interval-ms",
                format!("{} ms is outside 1..=60000", commit_interval.as_millis()),
                "set how often to commit in milliseconds (the default is 100)",
            ));
        }
        let max_buffered = self.max_buffered.unwrap_or(10_000);
        if max_buffered == 0 {
            return Err(invalid(
                "max-buffered",
                "0 would never read anything".into(),
                "set at least 1 (the default is 10000)",
            ));
        }
        let max_buffered_bytes = self.max_buffered_bytes.unwrap_or(64 << 20);
        if max_buffered_bytes < 2 << 20 {
            return Err(invalid(
                "max-buffered-bytes",
                format!("{max_buffered_bytes} is less than 2 MiB, the size of two records at the producer's limit"),
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
        let kafka_timeout = Duration::from_secs(self.kafka_timeout_seconds.unwrap_or(30));
        if kafka_timeout.is_zero() {
            return Err(invalid(
                "kafka-timeout-seconds",
                "0 fails every call".into(),
                "set a timeout in seconds (the default is 30)",
            ));
        }
        let mut kafka = self.kafka;
        kafka.extend(self.kafka_property);
        for property in kafka.keys() {
            if let Some(fix) = reserved(property) {
                return Err(ConfigError::ReservedProperty {
                    property: property.clone(),
                    fix,
                });
            }
        }
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
        let writer_schemas = match &self.schema_dir {
            None => WriterSchemas::default(),
            Some(dir) => WriterSchemas::load(dir).map_err(|problem| {
                invalid(
                    "schema-dir",
                    problem,
                    "fix or remove that file: each must be a version of VariantPosted, Interaction, StopMonitoring, MonitoringDecision or ChangelogRecord that adds or removes fields with defaults",
                )
            })?,
        };
        let schema_registry = crate::registry::Registry::from_settings(
            self.schema_registry_url.as_deref(),
            self.schema_registry_basic_auth.as_deref(),
            self.schema_registry_ca.as_deref(),
        )
        .map_err(|problem| {
            invalid(
                "schema-registry-url",
                problem,
                "give the registry's URL, e.g. https://registry:8081, and a readable schema-registry-ca",
            )
        })?;
        let decisions_format = self.decisions_format.unwrap_or_default();
        if decisions_format == DecisionsFormat::Registry && schema_registry.is_none() {
            return Err(invalid(
                "decisions-format",
                "registry framing needs a schema registry to register the decision schema with"
                    .into(),
                "set schema-registry-url too, or use decisions-format = single-object",
            ));
        }
        let log_level = crate::telemetry::log_filter(self.log_level.as_deref().unwrap_or("info"))
            .map_err(|problem| {
                invalid(
                    "log-level",
                    problem,
                    "use trace, debug, info, warning, error or critical, or a filter such as earlykill=debug,rdkafka=warn",
                )
            })?;
        let group_id = self.group_id.unwrap_or_else(|| "earlykill".to_owned());
        let instance_id = match self.instance_id {
            Some(id) => id,
            None => std::env::var("HOSTNAME").unwrap_or_else(|_| "earlykill-0".to_owned()),
        };
        for (key, value) in [("group-id", &group_id), ("instance-id", &instance_id)] {
            if value.trim().is_empty() {
                return Err(invalid(key, "it is empty".into(), "set a non-empty name"));
            }
        }
        let topics = Topics {
            posted: self
                .posted_topic
                .unwrap_or_else(|| "earlykill.posted".into()),
            interactions: self
                .interactions_topic
                .unwrap_or_else(|| "earlykill.interactions".into()),
            commands: self
                .commands_topic
                .unwrap_or_else(|| "earlykill.commands".into()),
            decisions: self
                .decisions_topic
                .unwrap_or_else(|| "earlykill.decisions".into()),
            changelog: self
                .changelog_topic
                .unwrap_or_else(|| "earlykill.changelog".into()),
            dead_letters: self
                .dead_letter_topic
                .unwrap_or_else(|| "earlykill.dead-letters".into()),
        };
        topics.check_distinct()?;
        let http_listen = match self.http_listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            Some("off") => None,
            Some(address) => Some(address.parse().map_err(|_| {
                invalid(
                    "http-listen",
                    format!("{address:?} is not host:port"),
                    "use an address such as 0.0.0.0:8080 (all interfaces) or 127.0.0.1:8080, or off",
                )
            })?),
        };
        let http_token = self.http_token.filter(|t| !t.trim().is_empty());
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
            database_url: self.database_url.map(Secret),
            bootstrap_servers: self
                .bootstrap_servers
                .unwrap_or_else(|| "localhost:9092".into()),
            kafka,
            group_id,
            instance_id,
            guarantee: self.guarantee.unwrap_or(Guarantee::ExactlyOnce),
            commit_interval,
            topics,
            monitor,
            limits,
            merge_wait: Duration::from_millis(self.merge_wait_ms.unwrap_or(0)),
            idle_lag: Duration::from_millis(self.idle_lag_ms.unwrap_or(0)),
            static_membership: self.static_membership.unwrap_or(true),
            max_buffered,
            max_buffered_bytes,
            message_max_bytes: message_max,
            writer_schemas,
            schema_registry,
            decisions_format,
            kafka_timeout,
            log_level,
            #[cfg(feature = "test-hooks")]
            crash_after_decisions: None,
        })
    }
}

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

fn millis(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn invalid(key: &'static str, problem: String, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem,
        fix: fix.to_owned(),
    }
}

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

    fn check_distinct(&self) -> Result<(), ConfigError> {
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
