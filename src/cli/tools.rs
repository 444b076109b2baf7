//! The tools around the service: `earlykill tail`, `generate` and
//! `schemas`.

use anyhow::{bail, Result};

use earlykill::config::tools::TailSource;
use earlykill::generate::{self, GenerateConfig, GenerateStatus};
use earlykill::watch::Watch;
use earlykill_core::event::Contract;

use super::serve::{init_logging, until_signal};

/// What `earlykill tail` reads, given per invocation (where the cluster
/// is comes from [`TailSettings`](earlykill::config::tools::TailSettings)).
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The topic, e.g. earlykill.decisions or earlykill.dead-letters.
    pub topic: String,
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
}

/// `earlykill tail`: JSON lines on stdout, logs (warnings only) on stderr.
pub fn tail(source: TailSource, args: TailArgs) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let config = earlykill::tail::TailConfig {
        bootstrap_servers: source.bootstrap_servers,
        kafka: source.kafka,
        topic: args.topic,
        partitions: args.partitions,
        from: args.from,
        follow: args.follow,
        max: args.max,
        schemas: source.schemas,
        registry: source.registry,
        timeout: source.timeout,
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
pub fn generate((config, log_level): (GenerateConfig, String)) -> Result<()> {
    init_logging(&log_level)?;
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
