//! `earlykill migrate`, `project` and `replay`: the decisions topic into
//! PostgreSQL.

use std::time::Duration;

use anyhow::{Context, Result};

use earlykill::api::Api;
use earlykill::config::projector::Projector;
use earlykill::projector::{self, ProjectorStatus, ReplayTarget};
use earlykill::watch::Watch;

use super::serve::{init_logging, until_signal};

/// Runs the projector on its own thread until a signal asks it to stop.
pub fn project(projector: Projector) -> Result<()> {
    init_logging(&projector.log_level)?;
    let listen = projector.http_listen;
    let config = projector.config;
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
    projector: Projector,
    into_schema: Option<String>,
    confirm_live: bool,
    accept_lost_decisions: bool,
) -> Result<()> {
    use std::io::IsTerminal;
    init_logging(&projector.log_level)?;
    let mut config = projector.config;
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
    let applied = runtime
        .block_on(async {
            let pool = projector::connect(database_url, 1)?;
            projector::migrate(&pool).await
        })
        .with_context(|| {
            format!(
                "migrating the database at {} (database-url, DATABASE_URL): check that it \
                 runs there and accepts this user",
                projector::address(database_url)
            )
        })?;
    if applied.is_empty() {
        println!("schema is up to date; nothing to apply");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}
