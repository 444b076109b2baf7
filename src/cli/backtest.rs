//! `earlykill backtest`'s flags and what the command does with them.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches};

use earlykill::backtest::read::{read, ReadOptions};
use earlykill::backtest::{grid, output, ranked, Options, CAVEAT};
use earlykill::config::Settings;
use earlykill_core::event::Millis;
use earlykill_core::monitor::{Holdout, MonitorConfig};

/// The backtest's flags. Everything else (topics, Kafka properties, the
/// rule's configured values, hold limits) is the processor's
/// configuration: `--config FILE`, the environment, the defaults.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The processor's TOML configuration file, for topics, Kafka
    /// properties and the configured rule.
    #[arg(long, env = "EARLYKILL_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (else the configuration's).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Kill thresholds to try, comma-separated fractions (default: the
    /// configured one).
    #[arg(long, value_delimiter = ',', value_parser = fraction_above_zero)]
    kill_threshold: Vec<f64>,
    /// Minimum interactions to try, comma-separated (default: the
    /// configured one).
    #[arg(long, value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    min_interactions: Vec<u32>,
    /// Windows to try, minutes, comma-separated (default: the configured
    /// one).
    #[arg(long, value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=10_080))]
    timeout_minutes: Vec<u32>,
    /// The truth's threshold: a session is poor at the end when its rate
    /// over its full window is below this fraction of its expected rate
    /// (default: the configured kill threshold).
    #[arg(long, value_parser = fraction_above_zero)]
    truth_threshold: Option<f64>,
    /// Apply each set to every post, ignoring the posts' own thresholds.
    #[arg(long)]
    ignore_overrides: bool,
    /// At the end, move every partition's clock to this time (`now`, or an
    /// RFC 3339 time), timing out the sessions whose window has ended by
    /// then; without it they are reported as open.
    #[arg(long, value_parser = time_or_now)]
    close_at: Option<Millis>,
    /// Only events at or after this event time (RFC 3339).
    #[arg(long, value_parser = time)]
    from: Option<Millis>,
    /// Only events before this event time (RFC 3339).
    #[arg(long, value_parser = time)]
    to: Option<Millis>,
    /// Write the reports to this file: `.json` (an array, one object per
    /// set) or `.csv`.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Draw kills, precision and recall against the threshold to this SVG
    /// file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Score only the variants of this hold-out share (the processor's
    /// `--holdout-share`, 0 to 0.5): they were never killed live, so their
    /// recorded traffic is whole and precision and recall are unbiased.
    /// Without it every session is scored.
    #[arg(long, value_parser = share)]
    holdout_share: Option<f64>,
    /// Folding threads (default: the cores available).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// librdkafka property, `-X key=value` (repeatable).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE",
          value_parser = earlykill::config::parse_property)]
    kafka_property: Vec<earlykill::config::Property>,
}

fn fraction_above_zero(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a fraction above 0 and at most 1")),
    }
}

fn share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 0.5 => Ok(f),
        _ => Err(format!("{s:?} is not a share above 0 and at most 0.5")),
    }
}

fn time(s: &str) -> Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-24T09:00:00Z: {e}"))
}

fn time_or_now(s: &str) -> Result<Millis, String> {
    if s.trim() == "now" {
        Ok(chrono::Utc::now().timestamp_millis())
    } else {
        time(s)
    }
}

/// The processor's settings from the environment (as `run` reads them)
/// over the file's.
fn settings(args: &BacktestArgs) -> Result<earlykill::processor::ProcessorConfig> {
    /// `run`'s flags, to read their environment variables.
    #[derive(clap::Parser)]
    struct Env {
        #[command(flatten)]
        settings: Settings,
    }
    let matches = Env::command()
        .no_binary_name(true)
        .try_get_matches_from(Vec::<String>::new())
        .context("reading the processor's settings from the environment")?;
    let from_env = Env::from_arg_matches(&matches)?.settings;
    let file = args
        .config
        .as_deref()
        .map(Settings::from_file)
        .transpose()?
        .unwrap_or_default();
    let flags = Settings {
        bootstrap_servers: args.bootstrap_servers.clone(),
        kafka: (!args.kafka_property.is_empty()).then(|| args.kafka_property.clone()),
        ..Settings::default()
    };
    Ok(flags
        .or(from_env)
        .or(Settings::from_env_properties(std::env::vars()))
        .or(file)
        .resolve()?)
}

/// Progress of a long phase: a bar on a terminal, else a line on stderr
/// every five seconds (and none for a phase shorter than that).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    phase: &'static str,
    unit: &'static str,
    started: std::time::Instant,
    last_line: std::sync::Mutex<std::time::Instant>,
}

fn progress(phase: &'static str, unit: &'static str) -> Progress {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{phase} {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"
            ))
            .expect("a valid template"),
        );
        bar
    });
    let now = std::time::Instant::now();
    Progress {
        bar,
        phase,
        unit,
        started: now,
        last_line: std::sync::Mutex::new(now),
    }
}

impl Progress {
    fn at(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= std::time::Duration::from_secs(5) {
            *last = std::time::Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {done} of {total} {} ({:.0}/s, {:.0} s so far)",
                self.phase,
                self.unit,
                done as f64 / elapsed.max(1e-9),
                elapsed
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs `earlykill backtest`.
pub fn run(args: BacktestArgs) -> Result<()> {
    let config = settings(&args)?;
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from >= to {
            bail!("--from must be before --to");
        }
    }
    let rule = config.monitor.defaults;
    let or = |given: &[f64], default: f64| {
        if given.is_empty() {
            vec![default]
        } else {
            given.to_vec()
        }
    };
    let sets = grid(
        &or(&args.kill_threshold, rule.kill_threshold),
        &if args.min_interactions.is_empty() {
            vec![rule.min_interactions]
        } else {
            args.min_interactions.clone()
        },
        &if args.timeout_minutes.is_empty() {
            vec![rule.timeout_minutes]
        } else {
            args.timeout_minutes.clone()
        },
    );
    // The configured share spares kills live; a backtest judges every
    // variant it folds, and with --holdout-share folds only that share.
    let holdout = match args.holdout_share {
        None => Holdout::None,
        Some(share) => Holdout::Only {
            parts_per_million: Holdout::parts_per_million(share),
        },
    };
    let options = Options {
        sets,
        base: MonitorConfig {
            holdout,
            ..config.monitor
        },
        close_at: args.close_at,
        truth_threshold: args.truth_threshold.unwrap_or(rule.kill_threshold),
    };
    let bar = progress("reading", "records");
    let started = std::time::Instant::now();
    let (histories, summary) = read(
        &config,
        &ReadOptions {
            from: args.from,
            to: args.to,
            ignore_overrides: args.ignore_overrides,
        },
        |done, total| bar.at(done, total),
    )?;
    bar.finish();
    let read_time = started.elapsed();
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the folding threads")?;
    let folding = std::time::Instant::now();
    let bar = progress("folding", "set-partition folds");
    let reports = ranked(pool.install(|| {
        earlykill::backtest::run_with_progress(&histories, &options, &|done, total| {
            bar.at(done as u64, total as u64)
        })
    }));
    bar.finish();
    let fold_time = folding.elapsed();
    let (scored, caveat) = match args.holdout_share {
        None => ("every session".to_owned(), CAVEAT),
        Some(share) => (
            format!(
                "the held-out sessions only (a share of {share} of variants, by the FNV-1a hash \
                 of variant_id, as the processor's --holdout-share chooses them), {} of them",
                reports.first().map_or(0, |r| r.sessions)
            ),
            "",
        ),
    };
    let mut stdout = std::io::stdout().lock();
    output::table(&reports, &mut stdout)?;
    use std::io::Write as _;
    writeln!(
        stdout,
        "\n{} records read in {:.1} s ({} folded, {} outside --from/--to, dead letters: {:?}); \
         {} sets folded in {:.1} s on {threads} threads.\nScored: {scored}.\nScore: F1 of \
         precision and recall against the truth (final rate below {} x expected). {caveat}",
        summary.records,
        read_time.as_secs_f64(),
        summary.events,
        summary.outside,
        summary.rejected,
        options.sets.len(),
        fold_time.as_secs_f64(),
        options.truth_threshold,
    )?;
    if let Some(path) = &args.output {
        output::save(&reports, path)?;
    }
    if let Some(path) = &args.plot {
        let live = (
            rule.kill_threshold,
            rule.min_interactions,
            rule.timeout_minutes,
        );
        output::plot(&reports, Some(live), path)?;
    }
    Ok(())
}
