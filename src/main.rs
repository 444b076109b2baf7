//! The `earlykill` binary: parses the command line and calls into the library.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use earlykill::event::Contract;
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
