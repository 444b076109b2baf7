//! Why a processor stopped, or could not start.

use std::time::Duration;

use rdkafka::error::KafkaError;

/// Why the processor stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A Kafka call failed in a way that retrying will not fix.
    #[error("could not {action}: {source}")]
    Kafka {
        /// What the processor was doing.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// No broker answered at the bootstrap servers.
    #[error(transparent)]
    Unreachable(#[from] crate::kafka::Unreachable),
    /// Another producer with this transactional id has taken over, or the
    /// group moved on without this instance.
    #[error(
        "this instance was fenced ({source}): another instance uses the transactional id \
         {transactional_id:?}, or this one was too slow and lost its partitions. Give every \
         instance its own --instance-id; a restart resumes from the last committed transaction"
    )]
    Fenced {
        /// The transactional id.
        transactional_id: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The brokers do not support transactions.
    #[error(
        "the brokers do not support transactions ({source}); run with --guarantee \
         at-least-once, or upgrade to brokers with transactions (Kafka 2.5 or later)"
    )]
    TransactionsUnsupported {
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Topics the processor needs do not exist.
    #[error(
        "topics {topics:?} do not exist; create them (the inputs and the changelog with the same \
         partition count, the changelog with cleanup.policy=compact) or set their names"
    )]
    MissingTopics {
        /// The missing topics.
        topics: Vec<String>,
    },
    /// The input topics and the changelog have different partition counts.
    #[error(
        "the input topics and the changelog must have the same partition count, so that \
         partition N of each holds the same variants; found {counts:?}. Recreate the odd ones \
         out (or add partitions) to match"
    )]
    NotCoPartitioned {
        /// Each topic with its partition count.
        counts: Vec<(String, i32)>,
    },
    /// The group assigned partition N of one input topic without the same
    /// partition of the others.
    #[error(
        "the group assigned input partitions that are not aligned across topics: {assignment}; \
         every member of group must run earlykill (which uses the range assignor)"
    )]
    MisalignedAssignment {
        /// What was assigned.
        assignment: String,
    },
    /// The input topics gained partitions while the processor ran.
    #[error(
        "partition {partition} of the input topics was assigned, but they had {counted} \
         partitions at start-up: adding partitions moves variants away from their state; \
         restart every instance (and see README, \"Topics\", before growing co-partitioned topics)"
    )]
    PartitionsAdded {
        /// The partition beyond the count.
        partition: i32,
        /// The partition count at start-up.
        counted: i32,
    },
    /// A changelog record cannot be decoded or restored.
    #[error("changelog partition {partition} offset {offset} cannot be restored: {reason}")]
    CorruptChangelog {
        /// The partition.
        partition: i32,
        /// The offset (-1 when the whole partition failed to restore).
        offset: i64,
        /// Why.
        reason: String,
    },
    /// The changelog could not be read to its end in time.
    #[error(
        "restoring changelog partitions {partitions:?} received nothing for {timeout:?} before \
         reaching their end; check the brokers, or raise kafka-timeout-seconds"
    )]
    RestoreTimeout {
        /// Partitions not restored.
        partitions: Vec<i32>,
        /// The limit.
        timeout: Duration,
    },
    /// The broker refused a record in a way that sending it again cannot
    /// change (too large, invalid).
    #[error(
        "the brokers refused a record for topic {topic:?} ({source}); sending it again would \
         fail the same way. If it is too large, raise the topic's max.message.bytes and \
         earlykill's -X message.max.bytes together (hold-per-variant and dead-letter copies \
         are sized from the latter)"
    )]
    RecordRefused {
        /// The topic of the record.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The schema registry stayed unreachable while a record needed a
    /// schema from it.
    #[error(
        "{source}; gave up after repeated attempts. The records that need it were not dead-lettered: \
         they are read again once the registry answers (check --schema-registry-url and its credentials)"
    )]
    Registry {
        /// Why the last attempt failed.
        source: crate::registry::RegistryError,
    },
    /// `decisions-format = registry`, and the decision schema could not be
    /// registered under the decisions topic's subject.
    #[error(
        "cannot register the decision schema under subject {subject:?}: {source}. Nothing was \
         written; check --schema-registry-url and its credentials, and that the subject's \
         compatibility rule accepts this schema (or use --decisions-format single-object)"
    )]
    RegisterSchema {
        /// The subject, `<decisions topic>-value`.
        subject: String,
        /// The registry's answer.
        source: crate::registry::RegistryError,
    },
    /// A worker thread could not be started.
    #[error("could not start a worker thread: {source}")]
    Spawn {
        /// The system's answer.
        source: std::io::Error,
    },
    /// A worker thread panicked (a bug): the other workers were stopped.
    #[error("worker {worker} panicked: {message}")]
    WorkerPanicked {
        /// The worker's index.
        worker: usize,
        /// The panic's message.
        message: String,
    },
    /// The crash injected by `crash_after_decisions` (the `test-hooks`
    /// feature only).
    #[cfg(feature = "test-hooks")]
    #[error("stopped by an injected crash after {decisions} decisions")]
    InjectedCrash {
        /// Decisions produced before the crash.
        decisions: u64,
    },
    /// A decision, changelog record or dead letter could not be encoded.
    #[error("could not encode a {what}: {reason}")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
}
