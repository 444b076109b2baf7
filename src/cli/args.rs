//! Arguments more than one subcommand takes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use earlykill::generate::TrafficConfig;

/// Where the Confluent Schema Registry is, for records its serializers
/// framed (and decisions written with `--decisions-format registry`).
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Confluent Schema Registry, `http(s)://host:port`.
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// `user:password` for the schema registry.
    #[arg(
        long,
        env = "EARLYKILL_SCHEMA_REGISTRY_BASIC_AUTH",
        hide_env_values = true
    )]
    pub schema_registry_basic_auth: Option<String>,
    /// Extra CA certificate (PEM) for an https registry.
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_CA")]
    pub schema_registry_ca: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn resolve(&self) -> Result<Option<earlykill::registry::Registry>> {
        earlykill::registry::Registry::from_settings(
            self.schema_registry_url.as_deref(),
            self.schema_registry_basic_auth.as_deref(),
            self.schema_registry_ca.as_deref(),
        )
        .map_err(|problem| anyhow!("configuration key `schema-registry-url`: {problem}"))
    }
}

/// The traffic model's knobs, shared by `generate` and `demo`.
#[derive(Debug, clap::Args)]
pub struct TrafficArgs {
    /// Variants to post; 0 posts until stopped.
    #[arg(long, default_value_t = 0)]
    pub variants: u64,
    /// Variants posted per second of event time.
    #[arg(long, default_value_t = 2.0)]
    pub posts_per_second: f64,
    /// Share of variants that engage well below their expected rate (and
    /// should be killed).
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    pub poor_fraction: f64,
    /// Share of variants stopped by a command partway through.
    #[arg(long, default_value_t = 0.02, value_parser = fraction)]
    pub stop_fraction: f64,
    /// Fewest views per second of event time a variant gets.
    #[arg(long, default_value_t = 1.0)]
    pub min_views_per_second: f64,
    /// Most views per second of event time a variant gets.
    #[arg(long, default_value_t = 6.0)]
    pub max_views_per_second: f64,
    /// The window each variant is posted with, in minutes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10080))]
    pub timeout_minutes: u32,
    /// Seed of every random draw: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Most events per second (on top of the event-time pacing).
    #[arg(long)]
    pub rate: Option<f64>,
}

impl TrafficArgs {
    pub fn traffic(&self, id_prefix: String) -> Result<TrafficConfig> {
        if !(self.min_views_per_second > 0.0
            && self.min_views_per_second <= self.max_views_per_second)
        {
            bail!("--min-views-per-second must be above 0 and at most --max-views-per-second");
        }
        if self.posts_per_second <= 0.0 {
            bail!("--posts-per-second must be above 0");
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

/// An HTTP listen address, or none (`off`).
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<SocketAddr>);

pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{s:?} is not host:port (e.g. 0.0.0.0:8080) or off"))
}

pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}
