//! The `earlykill` binary's subcommands: the command line ([`Cli`]) and,
//! one module per group of subcommands, the wiring from parsed arguments
//! to the library.
//!
//! - `processor.rs` — `run`.
//! - `projector.rs` — `migrate`, `project`, `replay`.
//! - `tools.rs` — `tail`, `generate`, `schemas`.
//! - `demo.rs` — `demo`.
//! - `args.rs` — arguments several subcommands share.
//! - `serve.rs` — logging, and a worker thread with the HTTP API until a
//!   signal asks it to drain.

mod args;
mod demo;
mod processor;
mod projector;
mod serve;
mod tools;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use earlykill::config::Settings;

/// earlykill: kill under-performing content variants in their first minutes.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
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
        args: projector::ProjectorArgs,
    },
    /// Rebuild the variant_monitoring table from the decisions topic, from
    /// offset 0: into another schema for analysis (`--into-schema`), or
    /// into the live table (`--confirm-live`; stop the projectors first).
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["into_schema", "confirm_live"])))]
    Replay {
        #[command(flatten)]
        args: projector::ProjectorArgs,
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
        args: tools::GenerateArgs,
    },
    /// The whole flow in this process, with nothing to install: an
    /// in-process Kafka (librdkafka's mock cluster), the simulated
    /// upstream, the processor, the HTTP API, and the projector when
    /// DATABASE_URL is set. Runs until Ctrl-C or --duration.
    Demo {
        #[command(flatten)]
        args: demo::DemoArgs,
    },
    /// Print any earlykill topic as JSON lines: inputs, decisions, the
    /// changelog, dead letters with their headers. Each record's schema
    /// fingerprint says what it is. Stops at the end the topic had when it
    /// started, unless --follow.
    Tail {
        #[command(flatten)]
        args: tools::TailArgs,
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

impl Cli {
    /// Runs the subcommand.
    pub fn dispatch(self) -> Result<()> {
        match self.command {
            Command::Run { config, settings } => processor::run(config, *settings),
            Command::Project { args } => projector::project(args),
            Command::Replay {
                args,
                into_schema,
                confirm_live,
                accept_lost_decisions,
            } => projector::replay(args, into_schema, confirm_live, accept_lost_decisions),
            Command::Migrate { database_url } => projector::migrate(&database_url),
            Command::Generate { args } => tools::generate(args),
            Command::Tail { args } => tools::tail(args),
            Command::Schemas { name } => tools::schemas(name.as_deref()),
            Command::Backtest { args } => {
                serve::init_logging("warn")?;
                Ok(earlykill::backtest::cli::run(args)?)
            }
            Command::Demo { args } => demo::demo(args),
        }
    }
}
