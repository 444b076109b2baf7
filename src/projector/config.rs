//! What the projector runs with ([`ProjectorConfig`], with the defaults of
//! its settings; `crate::config` layers the command line, environment and
//! file into it) and what it reports ([`ProjectorStatus`]).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

use super::store::{Applied, Table};

/// The defaults of the projector's settings.
pub mod defaults {
    /// `group-id`.
    pub const GROUP_ID: &str = "earlykill-projector";
    /// `batch-size`.
    pub const BATCH_SIZE: usize = 5_000;
    /// `batch-wait-ms`.
    pub const BATCH_WAIT_MS: u64 = 100;
    /// `pool-size`.
    pub const POOL_SIZE: usize = 2;
    /// `retry-max-ms`.
    pub const RETRY_MAX_MS: u64 = 10_000;
    /// `http-listen`: this machine only, port 8081.
    pub const HTTP_LISTEN: &str = "127.0.0.1:8081";
}

/// Everything `earlykill project` needs.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// librdkafka properties passed to the consumer.
    pub kafka: BTreeMap<String, String>,
    /// Consumer group of the projector instances.
    pub group_id: String,
    /// The decisions topic (the shadow decisions topic with
    /// [`Table::Shadow`]).
    pub decisions_topic: String,
    /// The table written.
    pub table: Table,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Database connections in the pool.
    pub pool_size: usize,
    /// Most decisions per database transaction.
    pub batch_size: usize,
    /// Longest a decision waits for its batch to fill.
    pub batch_wait: Duration,
    /// Longest wait between two attempts while the database is down.
    pub retry_max: Duration,
    /// Replay only: rebuild even when the decisions topic no longer starts
    /// at offset 0 (retention dropped decisions).
    pub accept_lost_decisions: bool,
    /// The schema registry, for decisions written with
    /// `--decisions-format registry`.
    pub registry: Option<crate::registry::Registry>,
    /// Fault injection for tests: stop as a crash would right after this
    /// many batches are committed to the database, before anything is
    /// committed to Kafka. Not settable from the command line; only in
    /// builds with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub crash_after_batches: Option<u64>,
}

impl ProjectorConfig {
    /// The defaults, for a broker at `bootstrap_servers` and a database at
    /// `database_url`.
    pub fn new(bootstrap_servers: &str, database_url: &str) -> Self {
        ProjectorConfig {
            bootstrap_servers: bootstrap_servers.to_owned(),
            kafka: BTreeMap::new(),
            group_id: defaults::GROUP_ID.to_owned(),
            decisions_topic: crate::kafka::Topics::default().decisions,
            table: Table::Live,
            database_url: database_url.to_owned(),
            pool_size: defaults::POOL_SIZE,
            batch_size: defaults::BATCH_SIZE,
            batch_wait: Duration::from_millis(defaults::BATCH_WAIT_MS),
            retry_max: Duration::from_millis(defaults::RETRY_MAX_MS),
            accept_lost_decisions: false,
            registry: None,
            #[cfg(feature = "test-hooks")]
            crash_after_batches: None,
        }
    }

    /// The bootstrap servers and the pass-through properties.
    pub(super) fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        for (key, value) in &self.kafka {
            client.set(key, value);
        }
        client.set("bootstrap.servers", &self.bootstrap_servers);
        client
    }

    pub(super) fn consumer(&self, group_id: &str) -> ClientConfig {
        let mut client = self.client();
        if !self.kafka.contains_key("auto.offset.reset") {
            client.set("auto.offset.reset", "earliest");
        }
        client
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed");
        client
    }
}

/// What the projector has done, for readiness, tests and operators.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectorStatus {
    /// The database is reachable and the last write succeeded.
    pub ready: bool,
    /// Partitions of the decisions topic assigned to this instance.
    pub partitions: Vec<i32>,
    /// Decisions read from Kafka.
    pub read: u64,
    /// What the committed batches did.
    pub applied: Applied,
    /// Batches committed to the database.
    pub batches: u64,
    /// Failed database attempts.
    pub failed_attempts: u64,
    /// Records of the decisions topic that did not decode (logged, skipped).
    pub undecodable: u64,
    /// Per partition, the next offset to apply: as stored in the database
    /// at assignment, then after each committed batch.
    pub next_offsets: BTreeMap<i32, i64>,
    /// The last database error, while it lasts.
    pub last_error: Option<String>,
    /// The decisions topic's id as last read from the broker, once known.
    pub topic_id: Option<String>,
    /// Times the decisions topic was found deleted and created again (its
    /// stored offsets forgotten and the new topic read from its start).
    pub topic_recreated: u64,
}
