//! The `earlykill` binary: parses the command line and calls into the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use earlykill::config::Settings;
use earlykill::event::Contract;
use earlykill::processor::{self, Shutdown, StatusWatch};
use earlykill::projector;

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
    /// List the Avro schemas of the event contract with their fingerprints,
    /// or print one schema's JSON (for registering it with another system).
    Schemas {
        /// File name of the schema to print, e.g. `interaction.avsc`.
        name: Option<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { config, settings } => run(config, *settings)?,
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
    let shutdown = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("processor".into())
            .spawn(move || {
                let _ = done.send(processor::run(config, shutdown, StatusWatch::default()));
            })?;
    }
    let result = runtime.block_on(async {
        tokio::pin!(finished);
        tokio::select! {
            result = &mut finished => result,
            _ = terminate() => {
                tracing::info!("signal received; committing and leaving the group");
                shutdown.drain();
                finished.await
            }
        }
    });
    result
        .map_err(|_| anyhow::anyhow!("the processor thread panicked"))?
        .context("processor stopped")?;
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
