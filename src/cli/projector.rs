//! `earlykill migrate`, `project` and `replay`: the decisions topic into
//! PostgreSQL.

use std::time::Duration;

use anyhow::{bail, Result};

use earlykill::api::Api;
use earlykill::config::Settings;
use earlykill::projector::{self, ProjectorConfig, ProjectorStatus, ReplayTarget};
use earlykill::watch::Watch;

use super::args::{parse_listen, Listen, RegistryArgs};
use super::serve::{init_logging, until_signal};

/// The projector's settings: flags, or the environment variables named.
#[derive(Debug, clap::Args)]
pub struct ProjectorArgs {
    /// PostgreSQL URL, e.g. postgresql://user:password@host:5432/database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(
        long,
        env = "EARLYKILL_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap_servers: String,
    /// The decisions topic.
    #[arg(
        long,
        env = "EARLYKILL_DECISIONS_TOPIC",
        default_value = "earlykill.decisions"
    )]
    pub decisions_topic: String,
    /// Consumer group of the projector instances.
    #[arg(
        long,
        env = "EARLYKILL_PROJECTOR_GROUP_ID",
        default_value = "earlykill-projector"
    )]
    pub group_id: String,
    /// Most decisions per database transaction.
    #[arg(long, env = "EARLYKILL_PROJECTOR_BATCH_SIZE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Longest a decision waits for its batch to fill, in milliseconds.
    #[arg(long, env = "EARLYKILL_PROJECTOR_BATCH_WAIT_MS", default_value_t = 100)]
    pub batch_wait_ms: u64,
    /// Database connections.
    #[arg(long, env = "EARLYKILL_PROJECTOR_POOL_SIZE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pool_size: u32,
    /// Longest wait between attempts while the database is down, in
    /// milliseconds (waits start at 100 ms and double, each with a jitter of
    /// up to as much again, never past this).
    #[arg(long, env = "EARLYKILL_PROJECTOR_RETRY_MAX_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub retry_max_ms: u64,
    /// librdkafka property for the consumer, `-X key=value` (repeatable;
    /// also `EARLYKILL_RDKAFKA_*` variables, `_` for `.`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = earlykill::config::parse_property)]
    pub kafka_property: Vec<(String, String)>,
    /// Log filter, e.g. `info` or `earlykill=debug,rdkafka=warn`.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Where the HTTP API (health, readiness, metrics) listens,
    /// `host:port`, or `off`.
    #[arg(long, env = "EARLYKILL_HTTP_LISTEN", default_value = "127.0.0.1:8081",
          value_parser = parse_listen)]
    pub http_listen: Listen,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl ProjectorArgs {
    fn resolve(self) -> Result<ProjectorConfig> {
        let mut config = ProjectorConfig::new(&self.bootstrap_servers, &self.database_url);
        config.kafka = Settings::from_env_properties(std::env::vars()).kafka;
        config.kafka.extend(self.kafka_property);
        if let Some((property, fix)) = config
            .kafka
            .keys()
            .find_map(|k| projector::reserved_property(k).map(|fix| (k, fix)))
        {
            bail!("Kafka property `{property}` is managed by earlykill; {fix}");
        }
        config.decisions_topic = self.decisions_topic;
        config.group_id = self.group_id;
        config.batch_size = self.batch_size as usize;
        config.batch_wait = Duration::from_millis(self.batch_wait_ms);
        config.pool_size = self.pool_size as usize;
        config.retry_max = Duration::from_millis(self.retry_max_ms);
        config.registry = self.registry.resolve()?;
        Ok(config)
    }
}

/// Runs the projector on its own thread until a signal asks it to stop.
pub fn project(args: ProjectorArgs) -> Result<()> {
    init_logging(&args.log_level)?;
    let listen = args.http_listen.0;
    let config = args.resolve()?;
    let status: Watch<ProjectorStatus> = Watch::default();
    let http = match listen {
        Some(address) => Some((
            address,
            Api {
                projector: Some(status.clone()),
                database: Some(projector::connect(&config.database_url, 1)?),
                ..Api::default()
            },
        )),
        None => None,
    };
    until_signal(
        "projector",
        "writing the open batch and leaving the group",
        http,
        move |shutdown| projector::run(config, shutdown, status),
    )
}

/// Rebuilds the table, with a progress bar on a terminal and a log line
/// every five seconds otherwise, then prints a summary.
pub fn replay(
    args: ProjectorArgs,
    into_schema: Option<String>,
    confirm_live: bool,
    accept_lost_decisions: bool,
) -> Result<()> {
    use std::io::IsTerminal;
    init_logging(&args.log_level)?;
    let mut config = args.resolve()?;
    config.accept_lost_decisions = accept_lost_decisions;
    let target = match into_schema {
        Some(name) => ReplayTarget::Schema {
            name,
            confirmed_live: confirm_live,
        },
        None => ReplayTarget::Live {
            confirmed: confirm_live,
        },
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} decisions ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_log = std::time::Instant::now();
    let summary = projector::replay(&config, &target, |p| match &bar {
        Some(bar) => {
            bar.set_length(p.total);
            bar.set_position(p.read.min(p.total));
        }
        None if last_log.elapsed() >= Duration::from_secs(5) => {
            last_log = std::time::Instant::now();
            tracing::info!(read = p.read, total = p.total, "replaying");
        }
        None => {}
    })?;
    if let Some(bar) = bar {
        bar.finish();
    }
    let where_ = match &target {
        ReplayTarget::Schema { name, .. } => format!("schema {name}"),
        ReplayTarget::Live { .. } => "the live table".to_owned(),
    };
    println!(
        "replayed {} decisions into {where_} in {:.1} s: {} started, {} ended, {} skipped, {} undecodable; \
         {} rows deleted first; the table now has {} rows, {} active",
        summary.read,
        summary.elapsed.as_secs_f64(),
        summary.applied.started,
        summary.applied.ended,
        summary.applied.skipped,
        summary.undecodable,
        summary.removed,
        summary.rows.0,
        summary.rows.1,
    );
    Ok(())
}

/// Creates or updates the PostgreSQL schema.
pub fn migrate(database_url: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let applied = runtime.block_on(async {
        let pool = projector::connect(database_url, 1)?;
        projector::migrate(&pool).await
    })?;
    if applied.is_empty() {
        println!("schema is up to date; nothing to apply");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}
