//! The `earlykill` binary: parses the command line and calls into the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use earlykill::config::Settings;
use earlykill::event::Contract;
use earlykill::processor::{self, Shutdown, StatusWatch};
use earlykill::projector::{self, ProjectorConfig, ReplayTarget};
use earlykill::watch::Watch;

/// earlykill: kill under-performing content variants in their first minutes.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the processor: consume the input topics, fold, and publish the
    /// decisions (exactly once by default). Stops cleanly on SIGTERM or
    /// Ctrl-C: commits what is done and leaves the group.
    Run {
        /// TOML configuration file. Its keys are the flags' long names
        /// (`kill-threshold = 0.4`); librdkafka properties go in a
        /// `[kafka]` table. Environment variables and flags override it.
        #[arg(long, env = "EARLYKILL_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Create or update the PostgreSQL schema (the variant_monitoring table
    /// and the projector's offsets). Running it again is a no-op.
    Migrate {
        /// PostgreSQL URL, e.g. postgresql://user:password@host:5432/database.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Run the projector: apply the decisions topic to the variant_monitoring
    /// table, exactly once (rows and offsets commit in one database
    /// transaction). Waits for the database while it is down.
    Project {
        #[command(flatten)]
        args: ProjectorArgs,
    },
    /// Rebuild the variant_monitoring table from the decisions topic, from
    /// offset 0: into another schema for analysis (`--into-schema`), or
    /// into the live table (`--confirm-live`; stop the projectors first).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["into_schema", "confirm_live"])))]
    Replay {
        #[command(flatten)]
        args: ProjectorArgs,
        /// Schema to rebuild the table in (created and migrated if needed;
        /// its copy of the table is emptied first).
        #[arg(long)]
        into_schema: Option<String>,
        /// Rebuild the live table: its rows are deleted first.
        #[arg(long)]
        confirm_live: bool,
    },
    /// List the Avro schemas of the event contract with their fingerprints,
    /// or print one schema's JSON (for registering it with another system).
    Schemas {
        /// File name of the schema to print, e.g. `interaction.avsc`.
        name: Option<String>,
    },
}

/// The projector's settings: flags, or the environment variables named.
#[derive(Debug, clap::Args)]
struct ProjectorArgs {
    /// PostgreSQL URL, e.g. postgresql://user:password@host:5432/database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(
        long,
        env = "EARLYKILL_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    bootstrap_servers: String,
    /// The decisions topic.
    #[arg(
        long,
        env = "EARLYKILL_DECISIONS_TOPIC",
        default_value = "earlykill.decisions"
    )]
    decisions_topic: String,
    /// Consumer group of the projector instances.
    #[arg(
        long,
        env = "EARLYKILL_PROJECTOR_GROUP_ID",
        default_value = "earlykill-projector"
    )]
    group_id: String,
    /// Most decisions per database transaction.
    #[arg(long, env = "EARLYKILL_PROJECTOR_BATCH_SIZE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Longest a decision waits for its batch to fill, in milliseconds.
    #[arg(long, env = "EARLYKILL_PROJECTOR_BATCH_WAIT_MS", default_value_t = 100)]
    batch_wait_ms: u64,
    /// Database connections.
    #[arg(long, env = "EARLYKILL_PROJECTOR_POOL_SIZE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pool_size: u32,
    /// Longest wait between attempts while the database is down, in
    /// milliseconds (waits start at 100 ms and double).
    #[arg(long, env = "EARLYKILL_PROJECTOR_RETRY_MAX_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    retry_max_ms: u64,
    /// librdkafka property for the consumer, `-X key=value` (repeatable;
    /// also `EARLYKILL_RDKAFKA_*` variables, `_` for `.`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = earlykill::config::parse_property)]
    kafka_property: Vec<(String, String)>,
    /// Log filter, e.g. `info` or `earlykill=debug,rdkafka=warn`.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
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
        Ok(config)
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { config, settings } => run(config, *settings)?,
        Command::Project { args } => project(args)?,
        Command::Replay {
            args,
            into_schema,
            confirm_live,
        } => replay(args, into_schema, confirm_live)?,
        Command::Migrate { database_url } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let applied = runtime.block_on(async {
                let pool = projector::connect(&database_url, 1)?;
                projector::migrate(&pool).await
            })?;
            if applied.is_empty() {
                println!("schema is up to date; nothing to apply");
            } else {
                println!("applied migrations {applied:?}");
            }
        }
        Command::Schemas { name: None } => {
            println!(
                "{:<26} {:<44} fingerprint (CRC-64-AVRO, LE)",
                "file", "record"
            );
            for contract in Contract::ALL {
                let record = contract
                    .reference()
                    .name()
                    .map(|n| n.fullname(None))
                    .unwrap_or_default();
                let fingerprint: String = contract
                    .fingerprint()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                println!("{:<26} {record:<44} {fingerprint}", contract.file_name());
            }
        }
        Command::Schemas { name: Some(name) } => {
            let Some(contract) = Contract::ALL.into_iter().find(|c| c.file_name() == name) else {
                let known: Vec<_> = Contract::ALL.iter().map(|c| c.file_name()).collect();
                bail!(
                    "no schema named {name:?}; the schemas are {}",
                    known.join(", ")
                );
            };
            println!("{}", contract.json());
        }
    }
    Ok(())
}

/// Layers the configuration (flags and environment over `EARLYKILL_RDKAFKA_*`
/// over the file over defaults), then runs the processor on its own thread
/// until a signal asks it to drain.
fn run(file: Option<PathBuf>, settings: Settings) -> Result<()> {
    let file = file
        .map(|path| Settings::from_file(&path))
        .transpose()?
        .unwrap_or_default();
    let config = settings
        .or(Settings::from_env_properties(std::env::vars()).or(file))
        .resolve()?;
    init_logging(&config.log_level)?;
    until_signal(
        "processor",
        "committing and leaving the group",
        move |shutdown| {
            processor::run(config, shutdown, StatusWatch::default(), Default::default())
        },
    )
}

/// Runs the projector on its own thread until a signal asks it to stop.
fn project(args: ProjectorArgs) -> Result<()> {
    init_logging(&args.log_level)?;
    let config = args.resolve()?;
    until_signal(
        "projector",
        "writing the open batch and leaving the group",
        move |shutdown| projector::run(config, shutdown, Watch::default()),
    )
}

/// Runs `work` on a thread named `name` until it returns, or until SIGTERM
/// or Ctrl-C, which asks it to drain (saying `draining` in the log) and
/// waits for it.
fn until_signal<E>(
    name: &'static str,
    draining: &'static str,
    work: impl FnOnce(Shutdown) -> Result<(), E> + Send + 'static,
) -> Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let shutdown = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = done.send(work(shutdown));
            })?;
    }
    let result = runtime.block_on(async {
        tokio::pin!(finished);
        tokio::select! {
            result = &mut finished => result,
            _ = terminate() => {
                tracing::info!("signal received; {draining}");
                shutdown.drain();
                finished.await
            }
        }
    });
    result
        .map_err(|_| anyhow::anyhow!("the {name} thread panicked"))?
        .with_context(|| format!("{name} stopped"))?;
    Ok(())
}

/// Rebuilds the table, with a progress bar on a terminal and a log line
/// every five seconds otherwise, then prints a summary.
fn replay(args: ProjectorArgs, into_schema: Option<String>, confirm_live: bool) -> Result<()> {
    use std::io::IsTerminal;
    init_logging(&args.log_level)?;
    let config = args.resolve()?;
    let target = match into_schema {
        Some(schema) => ReplayTarget::Schema(schema),
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
        ReplayTarget::Schema(schema) => format!("schema {schema}"),
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

/// Resolves on SIGTERM (how orchestrators stop a pod) or Ctrl-C.
async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).with_context(|| {
        format!("configuration key `log-level`: {filter:?} is not a log filter; use e.g. `info` or `earlykill=debug`")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
