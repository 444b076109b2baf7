//! `earlykill run`: the processor, with its HTTP API.

use std::path::PathBuf;

use anyhow::{Context, Result};

use earlykill::api::Api;
use earlykill::config::Settings;
use earlykill::processor::{self, Sessions, StatusWatch};
use earlykill::projector;
use earlykill::upstream::Publisher;

use super::serve::{init_logging, until_signal};

/// Layers the configuration (flags and environment over `EARLYKILL_RDKAFKA_*`
/// over the file over defaults), then runs the processor on its own thread
/// until a signal asks it to drain.
pub fn run(file: Option<PathBuf>, settings: Settings) -> Result<()> {
    let config = settings.load(file.as_deref())?;
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
