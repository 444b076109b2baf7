//! `earlykill generate` and `tail`: their settings, declared with the same
//! `layer!` as `run`'s, and what they resolve to; and the traffic model's
//! knobs ([`TrafficSettings`]) that `generate` and `demo` share (their
//! files hold both layers' keys). The demo's own settings are declared
//! beside it, in `crate::demo`, which sits above this module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layer::{env_properties, layer, File, Property};
use super::{invalid, kafka_properties, log_filter, registry, writer_schemas, ConfigError};
use crate::generate::{GenerateConfig, TrafficConfig};
use crate::kafka::Topics;
use crate::processor;
use earlykill_core::event::schema::WriterSchemas;
use earlykill_core::event::validate::MAX_TIMEOUT_MINUTES;

layer! {
    /// The simulated traffic, for `generate` and `demo`.
    pub struct TrafficSettings => TrafficValues {
        /// Variants to post; 0 posts until stopped.
        #[arg(long)]
        variants: u64 = 0,
        /// Variants posted per second of event time.
        #[arg(long)]
        posts_per_second: f64 = TrafficConfig::default().posts_per_second,
        /// Share of variants that engage well below their expected rate
        /// (and should be killed), 0 to 1.
        #[arg(long)]
        poor_fraction: f64 = TrafficConfig::default().poor_fraction,
        /// Share of variants stopped by a command partway through, 0 to 1.
        #[arg(long)]
        stop_fraction: f64 = TrafficConfig::default().stop_fraction,
        /// Fewest views per second of event time a variant gets.
        #[arg(long)]
        min_views_per_second: f64 = TrafficConfig::default().views_per_second.0,
        /// Most views per second of event time a variant gets.
        #[arg(long)]
        max_views_per_second: f64 = TrafficConfig::default().views_per_second.1,
        /// The window each variant is posted with, in minutes (1 to 10080).
        #[arg(long)]
        timeout_minutes: u32 = TrafficConfig::default().timeout_minutes,
        /// Seed of every random draw: the same seed gives the same traffic.
        #[arg(long)]
        seed: u64 = TrafficConfig::default().seed,
        /// Most events per second (on top of the event-time pacing).
        #[arg(long)]
        rate: f64,
    }
}

impl TrafficValues {
    /// The traffic model, its variant ids starting with `id_prefix`, from
    /// the wall clock now.
    pub fn traffic(&self, id_prefix: String) -> Result<TrafficConfig, ConfigError> {
        for (key, value) in [
            ("poor-fraction", self.poor_fraction),
            ("stop-fraction", self.stop_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is not a fraction between 0 and 1"),
                    "set a share such as 0.3",
                ));
            }
        }
        if !(self.min_views_per_second > 0.0
            && self.min_views_per_second <= self.max_views_per_second)
        {
            return Err(invalid(
                "min-views-per-second",
                format!(
                    "{} is not above 0 and at most max-views-per-second ({})",
                    self.min_views_per_second, self.max_views_per_second
                ),
                "set 0 < min-views-per-second <= max-views-per-second",
            ));
        }
        if self.posts_per_second.is_nan() || self.posts_per_second <= 0.0 {
            return Err(invalid(
                "posts-per-second",
                format!("{} is not above 0", self.posts_per_second),
                "set how many variants to post per second of event time (the default is 2)",
            ));
        }
        if !(1..=MAX_TIMEOUT_MINUTES as u32).contains(&self.timeout_minutes) {
            return Err(invalid(
                "timeout-minutes",
                format!(
                    "{} is outside 1..={MAX_TIMEOUT_MINUTES}",
                    self.timeout_minutes
                ),
                "set the window in minutes (the default is 10)",
            ));
        }
        if let Some(rate) = self.rate.filter(|r| r.is_nan() || *r <= 0.0) {
            return Err(invalid(
                "rate",
                format!("{rate} is not above 0"),
                "set the most events per second, or leave it out",
            ));
        }
        Ok(TrafficConfig {
            variants: (self.variants > 0).then_some(self.variants),
            posts_per_second: self.posts_per_second,
            poor_fraction: self.poor_fraction,
            stop_fraction: self.stop_fraction,
            views_per_second: (self.min_views_per_second, self.max_views_per_second),
            timeout_minutes: self.timeout_minutes,
            id_prefix,
            seed: self.seed,
            start: chrono::Utc::now().timestamp_millis(),
            ..TrafficConfig::default()
        })
    }
}

/// Checks a speed-up: event-time seconds per wall-clock second, 0 for as
/// fast as possible.
pub(crate) fn speedup(value: f64) -> Result<f64, ConfigError> {
    if value.is_nan() || value < 0.0 {
        return Err(invalid(
            "speedup",
            format!("{value} is below 0"),
            "set event-time seconds per wall-clock second, e.g. 1, or 0 for as fast as possible",
        ));
    }
    Ok(value)
}

/// The file's layers: `A`'s keys and the traffic's.
pub(crate) fn with_traffic<A: super::layer::Layer>(
    path: Option<&Path>,
) -> Result<(A, TrafficSettings), ConfigError> {
    let mut file = File::maybe(path)?;
    let own = file.take::<A>()?;
    let traffic = file.take::<TrafficSettings>()?;
    file.finish()?;
    Ok((own, traffic))
}

layer! {
    /// `earlykill generate`'s own settings (the traffic's are in
    /// [`TrafficSettings`]).
    pub struct GenerateSettings => GenerateValues {
        /// Kafka bootstrap servers, `host:port[,host:port]`.
        #[arg(long, env = "EARLYKILL_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String = processor::defaults::BOOTSTRAP_SERVERS.to_owned(),
        /// Seconds of event time per wall-clock second (60 plays an hour in
        /// a minute; the processor then needs --max-future-skew-seconds 0);
        /// 0 publishes as fast as possible.
        #[arg(long)]
        speedup: f64 = 1.0,
        /// The posted topic.
        #[arg(long, env = "EARLYKILL_POSTED_TOPIC")]
        posted_topic: String = Topics::default().posted,
        /// The interactions topic.
        #[arg(long, env = "EARLYKILL_INTERACTIONS_TOPIC")]
        interactions_topic: String = Topics::default().interactions,
        /// The commands topic.
        #[arg(long, env = "EARLYKILL_COMMANDS_TOPIC")]
        commands_topic: String = Topics::default().commands,
        /// Log filter.
        #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL")]
        log_level: String = processor::defaults::LOG_LEVEL.to_owned(),
        /// librdkafka property for the producer, `-X key=value`
        /// (repeatable; in the file, a `[kafka]` table; in the
        /// environment, `EARLYKILL_RDKAFKA_*` with `_` for `.`).
        #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = super::parse_property)]
        #[serde(default, deserialize_with = "super::layer::kafka_table")]
        kafka: Vec<Property>,
    }
}

impl GenerateSettings {
    /// Layers flags and environment (`self`, `traffic`) over
    /// `EARLYKILL_RDKAFKA_*` variables over the file, then resolves to the
    /// generator's configuration and the log filter.
    pub fn load(
        self,
        traffic: TrafficSettings,
        file: Option<&Path>,
    ) -> Result<(GenerateConfig, String), ConfigError> {
        let (own_file, traffic_file) = with_traffic::<GenerateSettings>(file)?;
        let env = GenerateSettings {
            kafka: env_properties(std::env::vars()),
            ..GenerateSettings::default()
        };
        let v = self.or(env).or(own_file).with_defaults();
        let traffic = traffic.or(traffic_file).with_defaults();
        let topics = Topics {
            posted: v.posted_topic,
            interactions: v.interactions_topic,
            commands: v.commands_topic,
            ..Topics::default()
        };
        super::processor::check_distinct(&topics)?;
        let config = GenerateConfig {
            bootstrap_servers: v.bootstrap_servers,
            kafka: kafka_properties(v.kafka, |_| None)?,
            topics,
            traffic: traffic.traffic(format!("gen-{}-", traffic.seed))?,
            speedup: speedup(v.speedup)?,
            rate: traffic.rate,
        };
        Ok((config, log_filter(&v.log_level)?))
    }
}

layer! {
    /// `earlykill tail`'s settings: where the cluster is and how to decode
    /// (what to read is given on the command line).
    pub struct TailSettings => TailValues {
        /// Kafka bootstrap servers, `host:port[,host:port]`.
        #[arg(long, env = "EARLYKILL_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String = processor::defaults::BOOTSTRAP_SERVERS.to_owned(),
        /// Directory of extra writer schemas (`.avsc`), as for `run`.
        #[arg(long, env = "EARLYKILL_SCHEMA_DIR")]
        schema_dir: PathBuf,
        /// Confluent Schema Registry, `http(s)://host:port`, for records
        /// its serializers framed.
        #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_URL")]
        schema_registry_url: String,
        /// `user:password` for the schema registry.
        #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_BASIC_AUTH", hide_env_values = true)]
        schema_registry_basic_auth: String,
        /// Extra CA certificate (PEM) for an https registry.
        #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_CA")]
        schema_registry_ca: PathBuf,
        /// Timeout of the metadata and offset requests, in seconds.
        #[arg(long, env = "EARLYKILL_KAFKA_TIMEOUT_SECONDS")]
        kafka_timeout_seconds: u64 = processor::defaults::KAFKA_TIMEOUT_SECONDS,
        /// librdkafka property for the consumer, `-X key=value`
        /// (repeatable; in the file, a `[kafka]` table; in the
        /// environment, `EARLYKILL_RDKAFKA_*` with `_` for `.`).
        #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = super::parse_property)]
        #[serde(default, deserialize_with = "super::layer::kafka_table")]
        kafka: Vec<Property>,
    }
}

/// What `tail` connects with and decodes by.
pub struct TailSource {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// librdkafka properties.
    pub kafka: BTreeMap<String, String>,
    /// Extra writer schemas.
    pub schemas: WriterSchemas,
    /// The schema registry, if any.
    pub registry: Option<crate::registry::Registry>,
    /// Timeout of blocking Kafka calls.
    pub timeout: Duration,
}

impl TailSettings {
    /// Layers flags and environment (`self`) over `EARLYKILL_RDKAFKA_*`
    /// variables over the file, then resolves.
    pub fn load(self, file: Option<&Path>) -> Result<TailSource, ConfigError> {
        let file = file
            .map(TailSettings::from_file)
            .transpose()?
            .unwrap_or_default();
        let env = TailSettings {
            kafka: env_properties(std::env::vars()),
            ..TailSettings::default()
        };
        let v = self.or(env).or(file).with_defaults();
        if v.kafka_timeout_seconds == 0 {
            return Err(invalid(
                "kafka-timeout-seconds",
                "0 fails every call".into(),
                "set a timeout in seconds (the default is 30)",
            ));
        }
        Ok(TailSource {
            bootstrap_servers: v.bootstrap_servers,
            kafka: kafka_properties(v.kafka, |_| None)?,
            schemas: writer_schemas(v.schema_dir.as_deref())?,
            registry: registry(
                v.schema_registry_url.as_deref(),
                v.schema_registry_basic_auth.as_deref(),
                v.schema_registry_ca.as_deref(),
            )?,
            timeout: Duration::from_secs(v.kafka_timeout_seconds),
        })
    }
}
