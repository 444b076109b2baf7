//! Why the projector stopped, and which failures are worth retrying.

use rdkafka::error::KafkaError;

use super::StoreError;

/// Why the projector stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The database refused in a way retrying will not fix.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A Kafka call failed.
    #[error("could not {action}: {source}")]
    Kafka {
        /// What the projector was doing.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Asked to stop while the database was unavailable.
    #[error(
        "stopped while the database was unavailable ({cause}); {pending} decisions read but not \
         applied are read again from the database's offsets on the next start"
    )]
    StoppedDuringOutage {
        /// Decisions not applied.
        pending: usize,
        /// The last database error.
        cause: String,
    },
    /// The decisions topic no longer starts at offset 0: retention or
    /// deletion dropped decisions, whose rows a rebuild would lose.
    #[error(
        "the decisions topic {topic:?} no longer starts at offset 0 (partition, first offset: \
         {starts:?}): {lost} decisions are gone, and the sessions they started would lose their \
         rows. Give the topic unlimited retention (retention.ms=-1) so that it stays \
         replayable; to rebuild from what is left anyway, pass --accept-lost-decisions"
    )]
    TopicTruncated {
        /// The topic.
        topic: String,
        /// Each partition that does not start at 0, with its first offset.
        starts: Vec<(i32, i64)>,
        /// Decisions before those offsets, in all.
        lost: i64,
    },
    /// `--into-schema` named the live table's schema without
    /// `--confirm-live`.
    #[error(
        "schema {0:?} holds the live table (it is the database URL's current schema): replaying \
         into it deletes the live rows first; pass --confirm-live too (stop the projectors first)"
    )]
    SchemaIsLive(String),
    /// A replay into the live table was not confirmed.
    #[error(
        "replaying into the live table deletes its rows first; pass --confirm-live (stop the \
         projectors first), or replay into another schema with --into-schema"
    )]
    LiveNotConfirmed,
    /// `replay --shadow`: replay rebuilds `variant_monitoring` only.
    #[error(
        "replay rebuilds variant_monitoring from the decisions topic; to rebuild          variant_monitoring_shadow, empty it (TRUNCATE variant_monitoring_shadow; DELETE FROM          projector_offsets WHERE topic = '<shadow decisions topic>') and run `earlykill project          --shadow`"
    )]
    ShadowReplay,
    /// The schema registry stayed unavailable while a decision needed its
    /// schema from it.
    #[error(
        "{source}; gave up after repeated attempts. No decision was skipped: they are read \
         again from the stored offsets once the registry answers (check --schema-registry-url \
         and its credentials)"
    )]
    Registry {
        /// Why the last attempt failed.
        source: crate::registry::RegistryError,
    },
    /// The schema name is not a plain identifier.
    #[error("schema name {0:?} is not a plain identifier: use lower-case letters, digits and _")]
    BadSchema(String),
}

pub(super) fn kafka(action: &'static str) -> impl FnOnce(KafkaError) -> ProjectorError {
    move |source| ProjectorError::Kafka { action, source }
}

/// Whether retrying a failed database call can help.
pub(super) fn retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(_) | StoreError::Pool(_))
}
