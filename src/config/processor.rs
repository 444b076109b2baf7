//! `earlykill run`: the processor's settings ([`Settings`]), layered and
//! checked into what it runs with ([`ProcessorConfig`], which the
//! processor owns with its defaults).

use std::path::PathBuf;
use std::time::Duration;

use super::layer::{env_properties, layer, value_enum_name, HelpValue, Merge, Property};
use super::{
    invalid, kafka_properties, listen_address, log_filter, millis, registry, writer_schemas,
    ConfigError, Secret,
};
use crate::kafka::Topics;
use crate::processor::{
    defaults, DecisionsFormat, Guarantee, ProcessorConfig, DEFAULT_MESSAGE_MAX_BYTES, MAX_THREADS,
};
use earlykill_core::event::validate::{Limits, DEFAULT_MAX_FUTURE_SKEW_MS, MAX_TIMEOUT_MINUTES};
use earlykill_core::monitor::rule::{Thresholds, MINUTE_MS};
use earlykill_core::monitor::{held_record_fits, Holdout, MonitorConfig, MAX_SESSIONS};
use earlykill_core::shadow::{check_unique, ShadowPolicy};

layer! {
    /// `earlykill run`'s settings, one layer of them (flags and
    /// environment, or the file).
    pub struct Settings => SettingsValues {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(long, env = "EARLYKILL_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String = defaults::BOOTSTRAP_SERVERS.to_owned(),
    /// Consumer group of the processor instances. Instances in one group
    /// split the partitions.
    #[arg(long, env = "EARLYKILL_GROUP_ID")]
    group_id: String = defaults::GROUP_ID.to_owned(),
    /// This instance's name, stable across restarts and unique in the group
    /// (a pod name). The transactional id is `<group-id>-<instance-id>`, so
    /// a restarted instance fences its previous incarnation. Defaults to
    /// $HOSTNAME.
    #[arg(long, env = "EARLYKILL_INSTANCE_ID")]
    instance_id: String,
    /// Delivery guarantee.
    #[arg(long, env = "EARLYKILL_GUARANTEE", value_enum)]
    guarantee: Guarantee = defaults::GUARANTEE,
    /// Longest time between commits, in milliseconds. It bounds decision
    /// latency under exactly-once: a decision is visible once committed.
    #[arg(long, env = "EARLYKILL_COMMIT_INTERVAL_MS")]
    commit_interval_ms: u64 = defaults::COMMIT_INTERVAL_MS,
    /// Topic of VariantPosted events.
    #[arg(long, env = "EARLYKILL_POSTED_TOPIC")]
    posted_topic: String = Topics::default().posted,
    /// Topic of Interaction events.
    #[arg(long, env = "EARLYKILL_INTERACTIONS_TOPIC")]
    interactions_topic: String = Topics::default().interactions,
    /// Topic of StopMonitoring commands.
    #[arg(long, env = "EARLYKILL_COMMANDS_TOPIC")]
    commands_topic: String = Topics::default().commands,
    /// Topic the decisions are published to.
    #[arg(long, env = "EARLYKILL_DECISIONS_TOPIC")]
    decisions_topic: String = Topics::default().decisions,
    /// Compacted state changelog topic, with the input topics' partition
    /// count.
    #[arg(long, env = "EARLYKILL_CHANGELOG_TOPIC")]
    changelog_topic: String = Topics::default().changelog,
    /// Topic undecodable or invalid input records go to.
    #[arg(long, env = "EARLYKILL_DEAD_LETTER_TOPIC")]
    dead_letter_topic: String = Topics::default().dead_letters,
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
    /// A shadow policy, `NAME:kill-threshold=X,min-interactions=N,timeout-minutes=M`
    /// (any subset of the keys; the rest are the live defaults; repeatable;
    /// in the environment separated by `;`, in the file a list). It folds
    /// the same input as the live policy and publishes its decisions to the
    /// shadow decisions topic, never acting on them.
    #[arg(long, env = "EARLYKILL_SHADOW_POLICIES", value_name = "NAME:KEY=VALUE,...", value_delimiter = ';', value_parser = parse_policy)]
    #[serde(default, deserialize_with = "policies")]
    shadow_policy: Vec<ShadowPolicy>,
    /// Share of variants (0 to 0.5) watched but never killed live, chosen
    /// by a hash of the variant id (the same on every instance and
    /// restart); what the live policy would have done to them is published
    /// on the shadow decisions topic as policy `holdout`.
    #[arg(long, env = "EARLYKILL_HOLDOUT_SHARE")]
    holdout_share: f64 = 0.0,
    /// Topic the shadow policies' decisions go to (needed only with shadow
    /// policies or a hold-out share), header `earlykill.policy` = the
    /// policy.
    #[arg(long, env = "EARLYKILL_SHADOW_DECISIONS_TOPIC")]
    shadow_decisions_topic: String = defaults::SHADOW_DECISIONS_TOPIC.to_owned(),
    /// How long, in event-time seconds, an interaction for a variant not
    /// posted yet is held before it is dropped.
    #[arg(long, env = "EARLYKILL_HOLD_GRACE_SECONDS")]
    hold_grace_seconds: u64 = MonitorConfig::default().hold_grace_ms as u64 / 1000,
    /// Most interactions held per partition.
    #[arg(long, env = "EARLYKILL_HOLD_CAPACITY")]
    hold_capacity: usize = MonitorConfig::default().hold_capacity,
    /// Most interactions held for one variant; more are dropped and counted
    /// (`earlykill_held_interactions_total{result="refused"}`). Bounds the
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
    merge_wait_ms: u64 = defaults::MERGE_WAIT_MS,
    /// How far behind the wall clock an idle partition's clock is advanced,
    /// in milliseconds: room for upstream delivery delay, paid in timeout
    /// lateness.
    #[arg(long, env = "EARLYKILL_IDLE_LAG_MS")]
    idle_lag_ms: u64 = defaults::IDLE_LAG_MS,
    /// Static group membership: the consumer joins as `group.instance.id` =
    /// instance-id, so a restarted instance (a pod after `kill -9`) gets its
    /// partitions back at once, without waiting out the dead member's
    /// session. The cost: a stopped instance's partitions move only after
    /// `session.timeout.ms` (45 s). `false` joins dynamically.
    #[arg(long, env = "EARLYKILL_STATIC_MEMBERSHIP")]
    static_membership: bool = defaults::STATIC_MEMBERSHIP,
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
    decisions_format: DecisionsFormat = DecisionsFormat::default(),
    /// Seconds a partition with input unread may make no progress (its
    /// event-time clock and read positions unchanged) before it is
    /// reported stalled: `earlykill_partition_stalled`, a warning, and a
    /// failed `partitions` check in /readyz. 0 turns it off.
    #[arg(long, env = "EARLYKILL_STALL_SECONDS")]
    stall_seconds: u64 = defaults::STALL_SECONDS,
    /// Records buffered per input topic partition before it is paused.
    #[arg(long, env = "EARLYKILL_MAX_BUFFERED")]
    max_buffered: usize = defaults::MAX_BUFFERED,
    /// Bytes (keys and values) buffered per input topic partition before it
    /// is paused.
    #[arg(long, env = "EARLYKILL_MAX_BUFFERED_BYTES")]
    max_buffered_bytes: usize = defaults::MAX_BUFFERED_BYTES,
    /// Timeout of blocking Kafka calls (transactions, restore), in seconds.
    #[arg(long, env = "EARLYKILL_KAFKA_TIMEOUT_SECONDS")]
    kafka_timeout_seconds: u64 = defaults::KAFKA_TIMEOUT_SECONDS,
    /// Log level (trace, debug, info, warning, error, critical) or a filter
    /// such as `earlykill=debug,rdkafka=warn`. The decision audit lines are
    /// kept whatever the level, unless the filter names
    /// `earlykill::audit` itself.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL")]
    log_level: String = defaults::LOG_LEVEL.to_owned(),
    /// Where the HTTP API (health, readiness, metrics, status, stop)
    /// listens, `host:port`, or `off`. The default, 127.0.0.1:8080, is
    /// reachable from this machine only; in a container use 0.0.0.0:8080.
    #[arg(long, env = "EARLYKILL_HTTP_LISTEN")]
    http_listen: String = defaults::HTTP_LISTEN.to_string(),
    /// This instance's API as the other instances of the group reach it,
    /// `http(s)://host:port`: any instance answers for the whole group by
    /// asking the owners of the partitions it does not hold. Defaults to
    /// the listener's address (this host's name when it listens on
    /// 0.0.0.0); in Kubernetes, the pod's IP (the chart sets it).
    #[arg(long, env = "EARLYKILL_ADVERTISED_URL")]
    advertised_url: String,
    /// Compacted one-partition topic where the instances announce the
    /// partitions they own and their API's address; created at start when
    /// missing.
    #[arg(long, env = "EARLYKILL_MEMBERS_TOPIC")]
    members_topic: String = defaults::MEMBERS_TOPIC.to_owned(),
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
impl Merge for Vec<ShadowPolicy> {}

fn parse_policy(s: &str) -> Result<ShadowPolicy, String> {
    s.parse()
        .map_err(|e: earlykill_core::shadow::PolicyError| e.to_string())
}

/// The file's `shadow-policy` list, each entry as on the command line.
fn policies<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<ShadowPolicy>>, D::Error> {
    let texts: Vec<String> = serde::Deserialize::deserialize(deserializer)?;
    texts
        .iter()
        .map(|t| t.parse().map_err(serde::de::Error::custom))
        .collect::<Result<_, _>>()
        .map(Some)
}
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
            holdout: Holdout::Spare {
                parts_per_million: Holdout::parts_per_million(v.holdout_share),
            },
        };
        if !(0.0..=0.5).contains(&v.holdout_share) {
            return Err(invalid(
                "holdout-share",
                format!("{} is outside 0..=0.5", v.holdout_share),
                "set the share of variants never killed live, e.g. 0.05 (the default, 0, holds none out)",
            ));
        }
        let shadow_policies = v.shadow_policy.unwrap_or_default();
        check_unique(&shadow_policies).map_err(|e| {
            invalid(
                "shadow-policy",
                e.to_string(),
                "give each shadow policy a name of its own",
            )
        })?;
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
            None => defaults::instance_id(),
        };
        for (key, value) in [("group-id", &v.group_id), ("instance-id", &instance_id)] {
            if value.trim().is_empty() {
                return Err(invalid(key, "it is empty".into(), "set a non-empty name"));
            }
        }
        let threads = match v.threads {
            Some(n) => n,
            None => defaults::threads(),
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
        check_distinct(&topics)?;
        if v.shadow_decisions_topic.trim().is_empty()
            || topics_named(&topics).contains(&v.shadow_decisions_topic.as_str())
        {
            return Err(invalid(
                "shadow-decisions-topic",
                format!(
                    "{:?} is empty or another role's topic",
                    v.shadow_decisions_topic
                ),
                "name a topic of its own (the default is earlykill.shadow-decisions)",
            ));
        }
        let http_listen = listen_address(&v.http_listen, 8080)?;
        let advertised_url = match (&v.advertised_url, http_listen) {
            (_, None) => None,
            (Some(url), Some(_)) => {
                let url = url.trim().trim_end_matches('/');
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url
                        .split_once("://")
                        .is_none_or(|(_, host)| host.is_empty())
                {
                    return Err(invalid(
                        "advertised-url",
                        format!("{url:?} is not an http:// or https:// URL"),
                        "give this instance's API as the others reach it, e.g. http://10.0.3.7:8080",
                    ));
                }
                Some(url.to_owned())
            }
            (None, Some(listen)) => Some(defaults::advertised_url(listen)),
        };
        if v.members_topic.trim().is_empty()
            || topics_named(&topics).contains(&v.members_topic.as_str())
        {
            return Err(invalid(
                "members-topic",
                format!("{:?} is empty or another role's topic", v.members_topic),
                "name a topic of its own (the default is earlykill.members)",
            ));
        }
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
            advertised_url,
            members_topic: v.members_topic,
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
            shadow_policies,
            shadow_decisions_topic: v.shadow_decisions_topic,
            limits,
            merge_wait: Duration::from_millis(v.merge_wait_ms),
            idle_lag: Duration::from_millis(v.idle_lag_ms),
            static_membership: v.static_membership,
            threads,
            stall_after: Duration::from_secs(v.stall_seconds),
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

/// The names of every topic role.
fn topics_named(topics: &Topics) -> [&str; 6] {
    [
        &topics.posted,
        &topics.interactions,
        &topics.commands,
        &topics.decisions,
        &topics.changelog,
        &topics.dead_letters,
    ]
}

/// Each topic role named, and no two roles on one topic.
pub(crate) fn check_distinct(topics: &Topics) -> Result<(), ConfigError> {
    let named = [
        ("posted-topic", &topics.posted),
        ("interactions-topic", &topics.interactions),
        ("commands-topic", &topics.commands),
        ("decisions-topic", &topics.decisions),
        ("changelog-topic", &topics.changelog),
        ("dead-letter-topic", &topics.dead_letters),
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
