//! The `earlykill` binary's subcommands: the command line ([`Cli`]) and,
//! one module per group of subcommands, the wiring from parsed arguments
//! to the library.
//!
//! - `processor.rs` — `run`.
//! - `projector.rs` — `migrate`, `project`, `replay`.
//! - `tools.rs` — `tail`, `generate`, `schemas`.
//! - `demo.rs` — `demo`.
//! - `serve.rs` — logging, and a worker thread with the HTTP API until a
//!   signal asks it to drain.

mod backtest;
mod demo;
mod processor;
mod projector;
mod serve;
mod tools;

use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use earlykill::config::projector::ProjectorSettings;
use earlykill::config::tools::{GenerateSettings, TailSettings, TrafficSettings};
use earlykill::config::Settings;
use earlykill::demo::DemoSettings;

/// earlykill: kill under-performing content variants in their first minutes.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The settings whose value came from an environment variable: the
    /// long flag's name and the variable, so that an error names the
    /// variable the user set.
    #[arg(skip)]
    from_env: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the processor: consume the input topics, fold, and publish the
    /// decisions (exactly once by default). Stops cleanly on SIGTERM or
    /// Ctrl-C: commits what is done and unsubscribes.
    // `--kill-threshold -1` is a value to refuse with its reason, not an
    // unknown flag.
    #[command(allow_negative_numbers = true)]
    Run {
        /// TOML configuration file. Its keys are the flags' long names
        /// (`kill-threshold = 0.4`); librdkafka properties go in a
        /// `[kafka]` table. Environment variables and flags override it.
        #[arg(long, env = "EARLYKILL_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Create or update the PostgreSQL schema (the variant_monitoring table,
    /// its shadow twin and the projector's offsets). Running it again is a
    /// no-op.
    Migrate {
        /// The projector's TOML configuration file, for its `database-url`.
        #[arg(long, env = "EARLYKILL_PROJECTOR_CONFIG")]
        config: Option<PathBuf>,
        /// PostgreSQL URL, e.g. postgresql://user:password@host:5432/database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Run the projector: apply the decisions topic to the variant_monitoring
    /// table, exactly once (rows and offsets commit in one database
    /// transaction). Waits for the database while it is down.
    Project {
        /// TOML configuration file (keys: the flags' long names; librdkafka
        /// properties in a `[kafka]` table). Environment variables and
        /// flags override it.
        #[arg(long, env = "EARLYKILL_PROJECTOR_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<ProjectorSettings>,
    },
    /// Rebuild the variant_monitoring table from the decisions topic, from
    /// offset 0: into another schema for analysis (`--into-schema`), or
    /// into the live table (`--confirm-live`; stop the projectors first).
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["into_schema", "confirm_live"])))]
    Replay {
        /// The projector's TOML configuration file (keys: the flags' long
        /// names). Environment variables and flags override it.
        #[arg(long, env = "EARLYKILL_PROJECTOR_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<ProjectorSettings>,
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
    // `--kill-threshold -1` is a value to refuse with its reason, not an
    // unknown flag.
    #[command(allow_negative_numbers = true)]
    Generate {
        /// TOML configuration file (keys: the flags' long names; librdkafka
        /// properties in a `[kafka]` table). Environment variables and
        /// flags override it.
        #[arg(long, env = "EARLYKILL_GENERATE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<GenerateSettings>,
        #[command(flatten)]
        traffic: Box<TrafficSettings>,
    },
    /// The whole flow in this process, with nothing to install: an
    /// in-process Kafka (librdkafka's mock cluster), the simulated
    /// upstream, the processor, the HTTP API, and the projector when
    /// DATABASE_URL is set. Runs until Ctrl-C or --duration.
    // `--kill-threshold -1` is a value to refuse with its reason, not an
    // unknown flag.
    #[command(allow_negative_numbers = true)]
    Demo {
        /// TOML configuration file (keys: the flags' long names). Flags
        /// override it.
        #[arg(long, env = "EARLYKILL_DEMO_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<DemoSettings>,
        #[command(flatten)]
        traffic: Box<TrafficSettings>,
    },
    /// Print any earlykill topic as JSON lines: inputs, decisions, the
    /// changelog, dead letters with their headers. Each record's schema
    /// fingerprint says what it is. Stops at the end the topic had when it
    /// started, unless --follow.
    Tail {
        /// TOML configuration file (keys: the flags' long names; librdkafka
        /// properties in a `[kafka]` table). Environment variables and
        /// flags override it.
        #[arg(long, env = "EARLYKILL_TAIL_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<TailSettings>,
        #[command(flatten)]
        args: tools::TailArgs,
    },
    /// Fold the recorded input topics again under other thresholds
    /// (`--kill-threshold 0.3,0.4,0.5 --min-interactions 5,10`) and report
    /// what each set would have killed, how early, and how well against
    /// each session's rate over its full window. Reads `run`'s
    /// configuration file and environment for the topics and the rule.
    // `--kill-threshold -1` is a value to refuse with its reason, not an
    // unknown flag.
    #[command(allow_negative_numbers = true)]
    Backtest {
        #[command(flatten)]
        args: backtest::BacktestArgs,
    },
    /// List the Avro schemas of the event contract with their fingerprints,
    /// or print one schema's JSON (for registering it with another system).
    Schemas {
        /// File name of the schema to print, e.g. `interaction.avsc`.
        name: Option<String>,
    },
}

impl Cli {
    /// Parses the command line, with each setting's default in `--help`.
    pub fn parse_with_defaults() -> Cli {
        let command = Cli::command_with_defaults();
        let matches = command.clone().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.from_env = from_env(&command, &matches);
        cli
    }

    /// The command line, each flag's help ending with its default (the
    /// defaults are applied after the file, so clap does not know them).
    pub fn command_with_defaults() -> clap::Command {
        let mut command = Cli::command();
        let layers: [(&str, Vec<(&str, String)>); 6] = [
            ("run", Settings::help_defaults()),
            ("project", ProjectorSettings::help_defaults()),
            ("replay", ProjectorSettings::help_defaults()),
            (
                "generate",
                [
                    GenerateSettings::help_defaults(),
                    TrafficSettings::help_defaults(),
                ]
                .concat(),
            ),
            (
                "demo",
                [
                    DemoSettings::help_defaults(),
                    TrafficSettings::help_defaults(),
                ]
                .concat(),
            ),
            ("tail", TailSettings::help_defaults()),
        ];
        for (name, defaults) in layers {
            command = command.mut_subcommand(name, |mut sub| {
                for (id, value) in defaults {
                    sub = sub.mut_arg(id, |arg| with_default(arg, &value));
                }
                sub
            });
        }
        // A replay serves no HTTP and projects the live decisions only.
        command.mut_subcommand("replay", |sub| {
            ["http_listen", "shadow", "shadow_decisions_topic"]
                .into_iter()
                .fold(sub, |sub, id| sub.mut_arg(id, |arg| arg.hide(true)))
        })
    }

    /// Runs the subcommand.
    pub fn dispatch(self) -> Result<()> {
        let from_env = self.from_env;
        self.command.dispatch().map_err(|error| {
            let key = match error.downcast_ref::<earlykill::config::ConfigError>() {
                Some(earlykill::config::ConfigError::Invalid { key, .. }) => *key,
                _ => return error,
            };
            match from_env.iter().find(|(long, _)| long == key) {
                Some((_, variable)) => error.context(format!(
                    "`{key}` was set by the environment variable {variable}: fix or unset it"
                )),
                None => error,
            }
        })
    }
}

/// Of the subcommand's arguments, those whose value came from their
/// environment variable: (long flag, variable).
fn from_env(command: &clap::Command, matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let Some((name, matches)) = matches.subcommand() else {
        return Vec::new();
    };
    let Some(sub) = command.find_subcommand(name) else {
        return Vec::new();
    };
    sub.get_arguments()
        .filter(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::EnvVariable)
        })
        .filter_map(|arg| {
            let long = arg.get_long()?.to_owned();
            let variable = arg.get_env()?.to_string_lossy().into_owned();
            Some((long, variable))
        })
        .collect()
}

impl Command {
    fn dispatch(self) -> Result<()> {
        match self {
            Command::Run { config, settings } => processor::run(config, *settings),
            Command::Project { config, settings } => {
                projector::project(settings.load(config.as_deref())?)
            }
            Command::Replay {
                config,
                settings,
                into_schema,
                confirm_live,
                accept_lost_decisions,
            } => projector::replay(
                settings.load(config.as_deref())?,
                into_schema,
                confirm_live,
                accept_lost_decisions,
            ),
            Command::Migrate {
                config,
                database_url,
            } => {
                let settings = ProjectorSettings {
                    database_url,
                    ..ProjectorSettings::default()
                };
                projector::migrate(&settings.load(config.as_deref())?.config.database_url)
            }
            Command::Generate {
                config,
                settings,
                traffic,
            } => tools::generate(settings.load(*traffic, config.as_deref())?),
            Command::Tail {
                config,
                settings,
                args,
            } => tools::tail(settings.load(config.as_deref())?, args),
            Command::Schemas { name } => tools::schemas(name.as_deref()),
            Command::Backtest { args } => {
                serve::init_logging("warn")?;
                Ok(backtest::run(args)?)
            }
            Command::Demo {
                config,
                settings,
                traffic,
            } => demo::demo(settings.load(*traffic, config.as_deref())?),
        }
    }
}

/// `arg`'s help with ` [default: value]` after it, as clap shows the
/// defaults it knows.
fn with_default(arg: clap::Arg, value: &str) -> clap::Arg {
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    let long_help = arg.get_long_help().map(ToString::to_string);
    let arg = arg.help(format!("{help} [default: {value}]"));
    match long_help {
        Some(long) => arg.long_help(format!("{long}\n\n[default: {value}]")),
        None => arg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_number_is_a_value_the_configuration_refuses_with_its_key() {
        let matches = Cli::command_with_defaults()
            .try_get_matches_from(["earlykill", "run", "--kill-threshold", "-1"])
            .expect("-1 is a value");
        let cli = Cli::from_arg_matches(&matches).expect("parsed");
        let Command::Run { settings, .. } = cli.command else {
            panic!("run");
        };
        let error = settings.resolve().expect_err("-1 is refused").to_string();
        assert!(
            error.contains("kill-threshold") && error.contains("(0, 1]"),
            "{error}"
        );
    }

    #[test]
    fn the_command_line_is_consistent_and_every_default_names_a_flag() {
        // `mut_arg` panics on an id that names no argument.
        Cli::command_with_defaults().debug_assert();
    }

    #[test]
    fn help_shows_the_defaults_applied_after_the_file() {
        let mut command = Cli::command_with_defaults();
        let run = command
            .find_subcommand_mut("run")
            .expect("run")
            .render_help()
            .to_string();
        assert!(run.contains("[default: 0.5]"), "{run}");
        assert!(run.contains("[default: exactly-once]"), "{run}");
        assert!(run.contains("[default: earlykill.decisions]"), "{run}");
        let project = command
            .find_subcommand_mut("project")
            .expect("project")
            .render_help()
            .to_string();
        assert!(
            project.contains("[default: earlykill-projector]"),
            "{project}"
        );
        let generate = command
            .find_subcommand_mut("generate")
            .expect("generate")
            .render_help()
            .to_string();
        assert!(
            generate.contains("[default: 0.3]"),
            "poor-fraction: {generate}"
        );
    }
}
