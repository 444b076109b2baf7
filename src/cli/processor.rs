//! `earlykill run`: the processor, with its HTTP API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use earlykill::api::Api;
use earlykill::cluster::{Cluster, ClusterConfig, ClusterError};
use earlykill::config::Settings;
use earlykill::processor::{self, Sessions, StatusWatch};
use earlykill::projector;
use earlykill::upstream::Publisher;

use super::serve::{init_logging, until_signal};

/// Longest wait for another instance's answer to a group-wide request.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Layers the configuration (flags and environment over `EARLYKILL_RDKAFKA_*`
/// over the file over defaults), then runs the processor on its own thread
/// until a signal asks it to drain.
pub fn run(file: Option<PathBuf>, settings: Settings) -> Result<()> {
    let config = settings.load(file.as_deref())?;
    init_logging(&config.log_level)?;
    let status = StatusWatch::default();
    let sessions = Sessions::default();
    let mut cluster = None;
    let http = match config.http_listen {
        Some(address) => {
            let url = config
                .advertised_url
                .clone()
                .expect("an API has an advertised URL");
            let joined = Cluster::start(
                ClusterConfig {
                    bootstrap_servers: config.bootstrap_servers.clone(),
                    kafka: config.kafka.clone(),
                    topic: config.members_topic.clone(),
                    instance: config.instance_id.clone(),
                    url,
                    token: config.http_token.as_ref().map(|t| t.expose().to_owned()),
                    timeout: CLUSTER_TIMEOUT,
                    kafka_timeout: config.kafka_timeout,
                },
                status.clone(),
            )
            .map_err(|e| match e {
                ClusterError::Unreachable(unreachable) => anyhow::Error::new(*unreachable),
                other => anyhow::Error::new(other).context(
                    "the instances announce their partitions on `members-topic`: check that \
                     earlykill may create that topic (compacted, one partition) or that it exists",
                ),
            })?;
            let joined = Arc::new(joined);
            cluster = Some(joined.clone());
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
                    cluster: Some(joined),
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
        move |shutdown| {
            let result = processor::run(config, shutdown, status, sessions);
            // The others stop asking this instance.
            if let Some(cluster) = cluster {
                cluster.leave();
            }
            result
        },
    )
}
