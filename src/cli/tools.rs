//! The tools around the service: `earlykill tail`, `generate` and
//! `schemas`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use earlykill::config::{ProcessorConfig, Settings, Topics};
use earlykill::event::Contract;
use earlykill::generate::{self, GenerateConfig, GenerateStatus};
use earlykill::watch::Watch;

use super::args::{RegistryArgs, TrafficArgs};
use super::serve::{init_logging, until_signal};

/// What `earlykill tail` reads.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The topic, e.g. earlykill.decisions or earlykill.dead-letters.
    pub topic: String,
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(
        long,
        env = "EARLYKILL_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap_servers: String,
    /// Where to start in each partition: beginning, end, an offset, or
    /// last:N (the last N records).
    #[arg(long, default_value = "end")]
    pub from: earlykill::tail::Start,
    /// Only these partitions (repeatable; default all).
    #[arg(long = "partition", short = 'p')]
    pub partitions: Vec<i32>,
    /// Keep printing new records until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub max: Option<u64>,
    /// Directory of extra writer schemas (`.avsc`), as for `run`.
    #[arg(long, env = "EARLYKILL_SCHEMA_DIR")]
    pub schema_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// librdkafka property, `-X key=value` (repeatable; also
    /// `EARLYKILL_RDKAFKA_*` variables, `_` for `.`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = earlykill::config::parse_property)]
    pub kafka_property: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(
        long,
        env = "EARLYKILL_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap_servers: String,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Seconds of event time per wall-clock second (60 plays an hour in
    /// a minute; the processor then needs --max-future-skew-seconds 0); 0
    /// publishes as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// The posted topic.
    #[arg(
        long,
        env = "EARLYKILL_POSTED_TOPIC",
        default_value = "earlykill.posted"
    )]
    pub posted_topic: String,
    /// The interactions topic.
    #[arg(
        long,
        env = "EARLYKILL_INTERACTIONS_TOPIC",
        default_value = "earlykill.interactions"
    )]
    pub interactions_topic: String,
    /// The commands topic.
    #[arg(
        long,
        env = "EARLYKILL_COMMANDS_TOPIC",
        default_value = "earlykill.commands"
    )]
    pub commands_topic: String,
    /// librdkafka property for the producer, `-X key=value` (repeatable;
    /// also `EARLYKILL_RDKAFKA_*` variables, `_` for `.`).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = earlykill::config::parse_property)]
    pub kafka_property: Vec<(String, String)>,
    /// Log filter.
    #[arg(long, env = "PERFORMANCE_MONITOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `earlykill tail`: JSON lines on stdout, logs (warnings only) on stderr.
pub fn tail(args: TailArgs) -> Result<()> {
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

/// Publishes simulated traffic until it ends or a signal stops it.
pub fn generate(args: GenerateArgs) -> Result<()> {
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

/// Lists the schemas of the contract with their fingerprints, or prints
/// the one named `name`.
pub fn schemas(name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
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
        return Ok(());
    };
    let Some(contract) = Contract::ALL.into_iter().find(|c| c.file_name() == name) else {
        let known: Vec<_> = Contract::ALL.iter().map(|c| c.file_name()).collect();
        bail!(
            "no schema named {name:?}; the schemas are {}",
            known.join(", ")
        );
    };
    println!("{}", contract.json());
    Ok(())
}
