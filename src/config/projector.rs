//! `earlykill project`, `replay` and `migrate`: the projector's settings
//! ([`ProjectorSettings`]) and what they resolve to
//! ([`ProjectorConfig`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::layer::{env_properties, layer, Property};
use super::{invalid, kafka_properties, listen_address, log_filter, registry, ConfigError};
use crate::kafka::Topics;
use crate::processor;
use crate::projector::config::defaults;
use crate::projector::{ProjectorConfig, Table};

layer! {
    /// The projector's settings, one layer of them (flags and environment,
    /// or the file).
    pub struct ProjectorSettings => ProjectorValues {
        /// PostgreSQL URL, e.g. postgresql://user:password@host:5432/database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Kafka bootstrap servers, `host:port[,host:port]`.
        #[arg(long, env = "EARLYKILL_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String = processor::defaults::BOOTSTRAP_SERVERS.to_owned(),
        /// The decisions topic.
        #[arg(long, env = "EARLYKILL_DECISIONS_TOPIC")]
        decisions_topic: String = Topics::default().decisions,
        /// Project the shadow policies' decisions (`run --shadow-policy`,
        /// `--holdout-share`) from the shadow decisions topic into
        /// `variant_monitoring_shadow` instead of the live ones; the
        /// consumer group is then `<group-id>-shadow`. Run it beside the
        /// live projector.
        #[arg(long, env = "EARLYKILL_PROJECTOR_SHADOW", num_args = 0..=1, default_missing_value = "true")]
        shadow: bool = false,
        /// The shadow decisions topic (with `--shadow`).
        #[arg(long, env = "EARLYKILL_SHADOW_DECISIONS_TOPIC")]
        shadow_decisions_topic: String = processor::defaults::SHADOW_DECISIONS_TOPIC.to_owned(),
        /// Consumer group of the projector instances.
        #[arg(long, env = "EARLYKILL_PROJECTOR_GROUP_ID")]
        group_id: String = defaults::GROUP_ID.to_owned(),
        /// Most decisions per database transaction, 1 to 100000.
        #[arg(long, env = "EARLYKILL_PROJECTOR_BATCH_SIZE")]
        batch_size: usize = defaults::BATCH_SIZE,
        /// Longest a decision waits for its batch to fill, in milliseconds.
        #[arg(long, env = "EARLYKILL_PROJECTOR_BATCH_WAIT_MS")]
        batch_wait_ms: u64 = defaults::BATCH_WAIT_MS,
        /// Database connections, 1 to 64.
        #[arg(long, env = "EARLYKILL_PROJECTOR_POOL_SIZE")]
        pool_size: usize = defaults::POOL_SIZE,
        /// Longest wait between attempts while the database is down, in
        /// milliseconds, at least 100 (waits start at 100 ms and double,
        /// each with a jitter of up to as much again, never past this).
        #[arg(long, env = "EARLYKILL_PROJECTOR_RETRY_MAX_MS")]
        retry_max_ms: u64 = defaults::RETRY_MAX_MS,
        /// Log filter, e.g. `info` or `earlykill=debug,rdkafka=warn`.
        #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL")]
        log_level: String = processor::defaults::LOG_LEVEL.to_owned(),
        /// Where the HTTP API (health, readiness, metrics) listens,
        /// `host:port`, or `off`.
        #[arg(long, env = "EARLYKILL_HTTP_LISTEN")]
        http_listen: String = defaults::HTTP_LISTEN.to_owned(),
        /// Confluent Schema Registry, `http(s)://host:port`, for decisions
        /// written with `--decisions-format registry`.
        #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_URL")]
        schema_registry_url: String,
        /// `user:password` for the schema registry.
        #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_BASIC_AUTH", hide_env_values = true)]
        schema_registry_basic_auth: String,
        /// Extra CA certificate (PEM) for an https registry.
        #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_CA")]
        schema_registry_ca: PathBuf,
        /// librdkafka property for the consumer, `-X key=value`
        /// (repeatable; in the file, a `[kafka]` table; in the
        /// environment, `EARLYKILL_RDKAFKA_*` with `_` for `.`).
        #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = super::parse_property)]
        #[serde(default, deserialize_with = "super::layer::kafka_table")]
        kafka: Vec<Property>,
    }
}

/// The projector's configuration with what only the process needs.
pub struct Projector {
    /// What the library runs with.
    pub config: ProjectorConfig,
    /// Where the HTTP API listens; `None` for no API.
    pub http_listen: Option<SocketAddr>,
    /// Log filter.
    pub log_level: String,
}

/// The database URL may hold a password: the debug output leaves the
/// library's configuration out.
impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("http_listen", &self.http_listen)
            .field("log_level", &self.log_level)
            .finish_non_exhaustive()
    }
}

impl ProjectorSettings {
    /// Layers flags and environment (`self`) over `EARLYKILL_RDKAFKA_*`
    /// variables over the file, then resolves.
    pub fn load(self, file: Option<&std::path::Path>) -> Result<Projector, ConfigError> {
        let file = file
            .map(ProjectorSettings::from_file)
            .transpose()?
            .unwrap_or_default();
        let env = ProjectorSettings {
            kafka: env_properties(std::env::vars()),
            ..ProjectorSettings::default()
        };
        self.or(env).or(file).resolve()
    }

    /// Fills unset fields with defaults and checks every value.
    pub fn resolve(self) -> Result<Projector, ConfigError> {
        let v = self.with_defaults();
        let database_url = v.database_url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            invalid(
                "database-url",
                "it is not set".into(),
                "set DATABASE_URL or --database-url, e.g. postgresql://user:password@host:5432/database",
            )
        })?;
        if !(1..=100_000).contains(&v.batch_size) {
            return Err(invalid(
                "batch-size",
                format!("{} is outside 1..=100000", v.batch_size),
                "set the most decisions per transaction (the default is 5000)",
            ));
        }
        if !(1..=64).contains(&v.pool_size) {
            return Err(invalid(
                "pool-size",
                format!("{} is outside 1..=64", v.pool_size),
                "set the database connections (the default is 2)",
            ));
        }
        if v.retry_max_ms < 100 {
            return Err(invalid(
                "retry-max-ms",
                format!("{} ms is below the first wait, 100 ms", v.retry_max_ms),
                "set at least 100 (the default is 10000)",
            ));
        }
        if v.group_id.trim().is_empty() {
            return Err(invalid(
                "group-id",
                "it is empty".into(),
                "set a non-empty name",
            ));
        }
        if v.decisions_topic.is_empty() {
            return Err(invalid(
                "decisions-topic",
                "it is empty".into(),
                "name a topic",
            ));
        }
        let (table, group_id, decisions_topic) = if v.shadow {
            if v.shadow_decisions_topic.trim().is_empty() {
                return Err(invalid(
                    "shadow-decisions-topic",
                    "it is empty".into(),
                    "name the topic `run --shadow-decisions-topic` writes",
                ));
            }
            let group = format!("{}-shadow", v.group_id);
            (Table::Shadow, group, v.shadow_decisions_topic)
        } else {
            (Table::Live, v.group_id, v.decisions_topic)
        };
        let config = ProjectorConfig {
            bootstrap_servers: v.bootstrap_servers,
            kafka: kafka_properties(v.kafka, reserved)?,
            group_id,
            decisions_topic,
            table,
            database_url,
            pool_size: v.pool_size,
            batch_size: v.batch_size,
            batch_wait: Duration::from_millis(v.batch_wait_ms),
            retry_max: Duration::from_millis(v.retry_max_ms),
            accept_lost_decisions: false,
            registry: registry(
                v.schema_registry_url.as_deref(),
                v.schema_registry_basic_auth.as_deref(),
                v.schema_registry_ca.as_deref(),
            )?,
            #[cfg(feature = "test-hooks")]
            crash_after_batches: None,
        };
        Ok(Projector {
            config,
            http_listen: listen_address(&v.http_listen, 8081)?,
            log_level: log_filter(&v.log_level)?,
        })
    }
}

/// Properties the projector sets itself, with what to use instead.
pub fn reserved(property: &str) -> Option<&'static str> {
    Some(match property {
        "group.id" => "use `group-id`",
        "bootstrap.servers" | "metadata.broker.list" => "use `bootstrap-servers`",
        "enable.auto.commit" | "enable.auto.offset.store" => {
            "offsets are stored in the database with the rows; remove it"
        }
        "isolation.level" => "the projector reads committed decisions only; remove it",
        _ => return None,
    })
}
