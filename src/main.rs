//! The `earlykill` binary: parses the command line and calls into the library.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};

use std::net::SocketAddr;

use earlykill::api::{self, Api};
use earlykill::config::{ProcessorConfig, Settings, Topics};
use earlykill::demo::DemoConfig;
use earlykill::event::Contract;
use earlykill::generate::{self, GenerateConfig, GenerateStatus, TrafficConfig};
use earlykill::processor::{self, Sessions, Shutdown, StatusWatch};
use earlykill::projector::{self, ProjectorConfig, ProjectorStatus, ReplayTarget};
use earlykill::upstream::Publisher;
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
    /// Ctrl-C: commits what is done and unsubscribes.
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
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
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
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["into_schema", "confirm_live"])))]
    Replay {
        #[command(flatten)]
        args: ProjectorArgs,
        /// Schema to rebuild the table in (created and migrated if needed;
        /// its copy of the table is emptied first).
        #[arg(long)]
        into_schema: Option<String>,
        /// Rebuild the live table: its rows are deleted first. Also needed
        /// when --into-schema names the live table's schema.
        #[arg(long)]
        confirm_live: bool,
        /// Rebuild even when the decisions topic no longer starts at offset
        /// 0: the sessions of the decisions retention dropped lose their
        /// rows. Without it such a replay is refused before anything is
        /// deleted.
        #[arg(long)]
        accept_lost_decisions: bool,
    },
    /// Publish simulated upstream traffic to the input topics: variants
    /// posted over time, a mix of good and poor performers, views and
    /// engagements drawn at random, paced by event time.
    Generate {
        #[command(flatten)]
        args: GenerateArgs,
    },
    /// The whole flow in this process, with nothing to install: an
    /// in-process Kafka (librdkafka's mock cluster), the simulated
    /// upstream, the processor, the HTTP API, and the projector when
    /// DATABASE_URL is set. Runs until Ctrl-C or --duration.
    Demo {
        #[command(flatten)]
        args: DemoArgs,
    },
    /// Print any earlykill topic as JSON lines: inputs, decisions, the
    /// changelog, dead letters with their headers. Each record's schema
    /// fingerprint says what it is. Stops at the end the topic had when it
    /// started, unless --follow.
    Tail {
        #[command(flatten)]
        args: TailArgs,
    },
    /// Fold the recorded input topics again under other thresholds
    /// (`--kill-threshold 0.3,0.4,0.5 --min-interactions 5,10`) and report
    /// what each set would have killed, how early, and how well against
    /// each session's rate over its full window.
    Backtest {
        #[command(flatten)]
        args: earlykill::backtest::cli::BacktestArgs,
    },
    /// List the Avro schemas of the event contract with their fingerprints,
    /// or print one schema's JSON (for registering it with another system).
    Schemas {
        /// File name of the schema to print, e.g. `interaction.avsc`.
        name: Option<String>,
    },
}

/// What `earlykill tail` reads.
#[derive(Debug, clap::Args)]
struct TailArgs {
    /// The topic, e.g. earlykill.decisions or earlykill.dead-letters.
    topic: String,
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(
        long,
        env = "EARLYKILL_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    bootstrap_servers: String,
    /// Where to start in each partition: beginning, end, an offset, or
    /// last:N (the last N records).
    #[arg(long, default_value = "end")]
    from: earlykill::tail::Start,
    /// Only these partitions (repeatable; default all).
    #[arg(long = "partition", short = 'p')]
    partitions: Vec<i32>,
    /// Keep printing new records until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    max: Option<u64>,
    /// Directory of extra writer schemas (`.avsc`), as for `run`.
    #[arg(long, env = "EARLYKILL_SCHEMA_DIR")]
    schema_dir: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// librdkafka property, `-X key=value` (repeatable; also
    /// `EARLYKILL_RDKAFKA_*` variables, `_` for `.`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = earlykill::config::parse_property)]
    kafka_property: Vec<(String, String)>,
}

/// Where the Confluent Schema Registry is, for records its serializers
/// framed (and decisions written with `--decisions-format registry`).
#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// Confluent Schema Registry, `http(s)://host:port`.
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
    /// `user:password` for the schema registry.
    #[arg(
        long,
        env = "EARLYKILL_SCHEMA_REGISTRY_BASIC_AUTH",
        hide_env_values = true
    )]
    schema_registry_basic_auth: Option<String>,
    /// Extra CA certificate (PEM) for an https registry.
    #[arg(long, env = "EARLYKILL_SCHEMA_REGISTRY_CA")]
    schema_registry_ca: Option<PathBuf>,
}

impl RegistryArgs {
    fn resolve(&self) -> Result<Option<earlykill::registry::Registry>> {
        earlykill::registry::Registry::from_settings(
            self.schema_registry_url.as_deref(),
            self.schema_registry_basic_auth.as_deref(),
            self.schema_registry_ca.as_deref(),
        )
        .map_err(|problem| anyhow!("configuration key `schema-registry-url`: {problem}"))
    }
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
    /// Where the HTTP API (health, readiness, metrics) listens,
    /// `host:port`, or `off`.
    #[arg(long, env = "EARLYKILL_HTTP_LISTEN", default_value = "127.0.0.1:8081",
          value_parser = parse_listen)]
    http_listen: Listen,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// The traffic model's knobs, shared by `generate` and `demo`.
#[derive(Debug, clap::Args)]
struct TrafficArgs {
    /// Variants to post; 0 posts until stopped.
    #[arg(long, default_value_t = 0)]
    variants: u64,
    /// Variants posted per second of event time.
    #[arg(long, default_value_t = 2.0)]
    posts_per_second: f64,
    /// Share of variants that engage well below their expected rate (and
    /// should be killed).
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    poor_fraction: f64,
    /// Share of variants stopped by a command partway through.
    #[arg(long, default_value_t = 0.02, value_parser = fraction)]
    stop_fraction: f64,
    /// Fewest views per second of event time a variant gets.
    #[arg(long, default_value_t = 1.0)]
    min_views_per_second: f64,
    /// Most views per second of event time a variant gets.
    #[arg(long, default_value_t = 6.0)]
    max_views_per_second: f64,
    /// The window each variant is posted with, in minutes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10080))]
    timeout_minutes: u32,
    /// Seed of every random draw: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most events per second (on top of the event-time pacing).
    #[arg(long)]
    rate: Option<f64>,
}

impl TrafficArgs {
    fn traffic(&self, id_prefix: String) -> Result<TrafficConfig> {
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

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(
        long,
        env = "EARLYKILL_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    bootstrap_servers: String,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Seconds of event time per wall-clock second (60 plays an hour in
    /// a minute; the processor then needs --max-future-skew-seconds 0); 0
    /// publishes as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    speedup: f64,
    /// The posted topic.
    #[arg(
        long,
        env = "EARLYKILL_POSTED_TOPIC",
        default_value = "earlykill.posted"
    )]
    posted_topic: String,
    /// The interactions topic.
    #[arg(
        long,
        env = "EARLYKILL_INTERACTIONS_TOPIC",
        default_value = "earlykill.interactions"
    )]
    interactions_topic: String,
    /// The commands topic.
    #[arg(
        long,
        env = "EARLYKILL_COMMANDS_TOPIC",
        default_value = "earlykill.commands"
    )]
    commands_topic: String,
    /// librdkafka property for the producer, `-X key=value` (repeatable;
    /// also `EARLYKILL_RDKAFKA_*` variables, `_` for `.`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = earlykill::config::parse_property)]
    kafka_property: Vec<(String, String)>,
    /// Log filter.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Seconds of event time per wall-clock second: at 10, a variant's
    /// 10-minute window passes in a minute.
    #[arg(long, default_value_t = 10.0)]
    speedup: f64,
    /// Partitions of the input topics.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=64))]
    partitions: i32,
    /// Where the HTTP API listens, `host:port`, or `off`.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    http_listen: Listen,
    /// Also run the projector into this PostgreSQL database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Log filter (audit lines are at info).
    #[arg(long, default_value = "warn")]
    log_level: String,
}

/// An HTTP listen address, or none (`off`).
#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{s:?} is not host:port (e.g. 0.0.0.0:8080) or off"))
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
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

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { config, settings } => run(config, *settings)?,
        Command::Project { args } => project(args)?,
        Command::Generate { args } => generate(args)?,
        Command::Tail { args } => tail(args)?,
        Command::Backtest { args } => {
            init_logging("warn")?;
            earlykill::backtest::cli::run(args)?
        }
        Command::Demo { args } => demo(args)?,
        Command::Replay {
            args,
            into_schema,
            confirm_live,
            accept_lost_decisions,
        } => replay(args, into_schema, confirm_live, accept_lost_decisions)?,
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
    let status = StatusWatch::default();
    let sessions = Sessions::default();
    let http = match config.http_listen {
        Some(address) => {
            let publisher = Publisher::new(
                &config.bootstrap_servers,
                &config.kafka,
                config.topics.clone(),
                config.kafka_timeout,
            )
            .context("could not create the HTTP API's producer")?;
            let database = config
                .database_url
                .as_ref()
                .map(|url| projector::connect(url.expose(), 2))
                .transpose()
                .context("configuration key `database-url`")?;
            Some((
                address,
                Api {
                    processor: Some((status.clone(), sessions.clone())),
                    publisher: Some(publisher),
                    database,
                    token: config.http_token.as_ref().map(|t| t.expose().to_owned()),
                    limits: config.limits,
                    ..Api::default()
                },
            ))
        }
        None => None,
    };
    until_signal(
        "processor",
        "committing and leaving the group",
        http,
        move |shutdown| processor::run(config, shutdown, status, sessions),
    )
}

/// Runs the projector on its own thread until a signal asks it to stop.
fn project(args: ProjectorArgs) -> Result<()> {
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

/// Publishes simulated traffic until it ends or a signal stops it.
/// `earlykill tail`: JSON lines on stdout, logs (warnings only) on stderr.
fn tail(args: TailArgs) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let schemas = match &args.schema_dir {
        None => earlykill::event::schema::WriterSchemas::default(),
        Some(dir) => earlykill::event::schema::WriterSchemas::load(dir)
            .map_err(|problem| anyhow!("configuration key `schema-dir`: {problem}"))?,
    };
    let registry = args.registry.resolve()?;
    let mut kafka: BTreeMap<String, String> = Settings::from_env_properties(std::env::vars()).kafka;
    kafka.extend(args.kafka_property);
    let config = earlykill::tail::TailConfig {
        bootstrap_servers: args.bootstrap_servers,
        kafka,
        topic: args.topic,
        partitions: args.partitions,
        from: args.from,
        follow: args.follow,
        max: args.max,
        schemas,
        registry,
        timeout: Duration::from_secs(30),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match earlykill::tail::run(&config, &mut out) {
        Ok(_) => Ok(()),
        // `earlykill tail … | head` closes the pipe: that ends tail quietly.
        Err(earlykill::tail::TailError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn generate(args: GenerateArgs) -> Result<()> {
    init_logging(&args.log_level)?;
    let mut kafka = Settings::from_env_properties(std::env::vars()).kafka;
    kafka.extend(args.kafka_property);
    let config = GenerateConfig {
        bootstrap_servers: args.bootstrap_servers,
        kafka,
        topics: Topics {
            posted: args.posted_topic,
            interactions: args.interactions_topic,
            commands: args.commands_topic,
            ..ProcessorConfig::with_bootstrap("unused").topics
        },
        traffic: args
            .traffic
            .traffic(format!("gen-{}-", args.traffic.seed))?,
        speedup: args.speedup,
        rate: args.traffic.rate,
    };
    let status: Watch<GenerateStatus> = Watch::default();
    let summary = status.clone();
    until_signal(
        "generator",
        "flushing what is queued",
        None,
        move |shutdown| generate::run(&config, &shutdown, &status).map(|_| ()),
    )?;
    let s = summary.get();
    println!(
        "published {} events in {:.1} s ({:.0}/s): {} variants posted, {} interactions, {} stops; {} deliveries failed",
        s.events(),
        s.elapsed.as_secs_f64(),
        s.events() as f64 / s.elapsed.as_secs_f64().max(1e-3),
        s.posted,
        s.interactions,
        s.stops,
        s.failed,
    );
    if s.failed > 0 {
        bail!("{} events were not delivered", s.failed);
    }
    Ok(())
}

/// Runs the embedded demo with live progress, then prints its summary.
fn demo(args: DemoArgs) -> Result<()> {
    use std::io::IsTerminal;
    init_logging(&args.log_level)?;
    let config = DemoConfig {
        partitions: args.partitions,
        traffic: args.traffic.traffic("v-".into())?,
        speedup: args.speedup,
        rate: args.traffic.rate,
        duration: args.duration.map(Duration::from_secs),
        database_url: args.database_url,
        http: args.http_listen.0,
    };
    let shutdown = Shutdown::new();
    {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(terminate());
                    shutdown.drain();
                }
            })?;
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut last_line: Option<std::time::Instant> = None;
    let mut announced = false;
    let summary = earlykill::demo::run(config, &shutdown, |p| {
        if !announced {
            announced = true;
            let api = p.http.map_or_else(
                || "off".to_owned(),
                |a| format!("http://{a}/performance-monitor/active (also /metrics, /readyz)"),
            );
            let line = format!("demo running: in-process Kafka, processor, generator; HTTP API {api}; Ctrl-C stops");
            match &bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        let count = |kind: &str| p.decisions.get(kind).copied().unwrap_or(0);
        let line = format!(
            "{:>5.0} s | active {} | killed {} | timed out {} | stopped {} | {:.0} events/s | decision latency p99 {}",
            p.elapsed.as_secs_f64(),
            p.active,
            count("killed"),
            count("timed_out"),
            count("stopped"),
            p.events_per_second,
            p.latency_p99
                .map_or_else(|| "-".to_owned(), |l| format!("{} ms", l.as_millis())),
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None if last_line.is_none_or(|l| l.elapsed() >= Duration::from_secs(5)) => {
                last_line = Some(std::time::Instant::now());
                eprintln!("{line}");
            }
            None => {}
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_summary(&summary);
    Ok(())
}

fn print_summary(s: &earlykill::demo::DemoSummary) {
    let g = &s.generated;
    println!(
        "demo ran {:.1} s: {} events published ({} variants posted, {} interactions, {} stops)",
        s.elapsed.as_secs_f64(),
        g.events(),
        g.posted,
        g.interactions,
        g.stops
    );
    let kinds: Vec<String> = s
        .decisions
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "decisions on the decisions topic (read_committed): {} (the processor committed {})",
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        },
        s.committed_decisions
    );
    let ms = |q: f64| {
        s.latency
            .quantile(q)
            .map_or_else(|| "-".to_owned(), |l| format!("{} ms", l.as_millis()))
    };
    println!(
        "decision latency, trigger's append to commit: p50 {}, p99 {}, p999 {}; dead letters {}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        s.dead_letters
    );
    if let Some((rows, active)) = s.rows {
        println!("variant_monitoring: {rows} rows, {active} active");
    }
}

/// Runs `work` on a thread named `name` until it returns, or until SIGTERM
/// or Ctrl-C, which asks it to drain (saying `draining` in the log) and
/// waits for it.
fn until_signal<E>(
    name: &'static str,
    draining: &'static str,
    http: Option<(SocketAddr, Api)>,
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
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some((address, api)) = http {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(address))
            .with_context(|| {
                format!("cannot listen on {address}; choose another address with --http-listen (or `off`)")
            })?;
        runtime.spawn(async move {
            let stopped = async {
                let _ = http_stopped.await;
            };
            if let Err(e) = api::serve(listener, api, stopped).await {
                tracing::error!(error = %e, "the HTTP API stopped");
            }
        });
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
    let _ = http_stop.send(());
    result
        .map_err(|_| anyhow::anyhow!("the {name} thread panicked"))?
        .with_context(|| format!("{name} stopped"))?;
    Ok(())
}

/// Rebuilds the table, with a progress bar on a terminal and a log line
/// every five seconds otherwise, then prints a summary.
fn replay(
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

/// Logs to stdout: JSON lines when stdout is not a terminal (a container,
/// a pipe, a file), text for people otherwise; `EARLYKILL_LOG_FORMAT=json`
/// or `text` overrides the choice. Installs the metrics recorder too.
fn init_logging(filter: &str) -> Result<()> {
    use std::io::IsTerminal;
    let filter = earlykill::telemetry::log_filter(filter)
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).map_err(|e| e.to_string()))
        .map_err(|problem| {
            anyhow!("configuration key `log-level`: {problem}; use trace, debug, info, warning, error or critical, or a filter such as earlykill=debug")
        })?;
    // Before any worker starts, so that no early metric is lost.
    earlykill::telemetry::prometheus();
    let json = match std::env::var("EARLYKILL_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        Ok(other) => bail!(
            "EARLYKILL_LOG_FORMAT={other:?} is not a log format; use json or text (or unset it)"
        ),
        Err(_) => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
    Ok(())
}
