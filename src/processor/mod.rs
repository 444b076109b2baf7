//! `earlykill run`: consume the input topics, fold each partition's events,
//! and publish the decisions, exactly once.
//!
//! One consumer group reads the posted, interactions and commands topics,
//! which are co-partitioned: partition N of each holds the same variants,
//! the range assignor gives all three to the same instance, and the state
//! of partition N lives in partition N of the compacted changelog topic.
//!
//! The loop, on one thread (librdkafka's calls block, and the fold is
//! faster than any hand-off between threads):
//!
//! 1. Poll a batch of input records. Each is decoded and validated at once:
//!    a bad one becomes a dead letter, a good one is buffered in its
//!    partition's event-time merge (`merge.rs`).
//! 2. Fold what the merge releases, earliest event time first; an idle
//!    partition's clock is advanced from the wall clock, so timeouts fire
//!    without traffic.
//! 3. Produce decisions and dead letters in the open transaction; at the
//!    commit, the changed changelog keys and each partition's record (clock
//!    and input offsets), then the consumer offsets, then commit. A
//!    transaction is committed at least every `commit-interval-ms`, and at
//!    once when it holds a decision and no input is waiting.
//!
//! On an abortable error the transaction is aborted and every partition
//! rewinds to its last committed state (restored from the changelog) and
//! offsets. On assignment a partition's state is restored from the
//! changelog before any of its input is read; on revocation the open
//! transaction is committed first. A fenced producer is fatal: another
//! instance with the same transactional id took over.

mod engine;
pub(crate) mod kafka;
pub mod merge;
mod read_model;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;

pub use engine::run;
pub use read_model::{ActivePage, NotRunning, Sessions};

/// What ends a processor, and whether it ends cleanly.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicU8>);

const RUNNING: u8 = 0;
const DRAIN: u8 = 1;
const ABANDON: u8 = 2;

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Stop cleanly: commit what is done and leave the group.
    pub fn drain(&self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, DRAIN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Stop at once, committing nothing, as a crash would: the open
    /// transaction is left for the broker to abort or for the next instance
    /// with this transactional id to fence. For fault-injection tests.
    pub fn abandon(&self) {
        self.0.store(ABANDON, Ordering::Release);
    }

    /// True once [`Shutdown::drain`] or [`Shutdown::abandon`] was called.
    pub fn is_stopping(&self) -> bool {
        self.state() != RUNNING
    }

    /// True once [`Shutdown::abandon`] was called.
    pub fn is_abandoned(&self) -> bool {
        self.state() == ABANDON
    }

    fn state(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// How many aborted transaction numbers, and how many restores, [`Status`]
/// lists.
pub const MAX_ABORTED_LISTED: usize = 1024;

/// What a processor has done so far, for readiness, tests and operators.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Between start-up (topics checked, subscribed) and exit.
    pub running: bool,
    /// The group has given this instance its first assignment (possibly
    /// empty, when there are more instances than partitions).
    pub joined: bool,
    /// Partitions assigned and being restored: not processed yet.
    pub restoring: Vec<i32>,
    /// Partitions assigned and restored.
    pub partitions: Vec<i32>,
    /// Input records read (as of the last commit).
    pub records_in: u64,
    /// A commit (the transaction, or at-least-once the acknowledgements and
    /// offsets) is under way.
    pub committing: bool,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Decisions produced (committed or not).
    pub decisions: u64,
    /// Decisions in committed transactions (at-least-once: acknowledged
    /// before an offset commit).
    pub committed_decisions: u64,
    /// Transactions (or at-least-once offset commits) completed.
    pub commits: u64,
    /// Transactions aborted, each followed by a rewind.
    pub aborts: u64,
    /// This run's name, `<instance-id>@<start ms>.<n>`: with a transaction's
    /// number it forms the `earlykill_transaction` header of every decision.
    pub incarnation: String,
    /// The number of the last transaction (at-least-once: batch) that
    /// committed. Transactions are numbered from 1 in each run and run one
    /// at a time, so every transaction up to this one committed unless it
    /// is in `aborted_transactions`.
    pub last_committed_transaction: u64,
    /// The numbers of the transactions aborted in this run (the most recent
    /// [`MAX_ABORTED_LISTED`]).
    pub aborted_transactions: Vec<u64>,
    /// Per restore of a partition in this run, the partition and the
    /// `earlykill_transaction` of the changelog state it restored (the most
    /// recent [`MAX_ABORTED_LISTED`]; none for an empty changelog).
    pub restored_from: Vec<(i32, String)>,
    /// Changelog records read by restores.
    pub restored_records: u64,
    /// Time spent restoring, in total.
    pub restore_time: Duration,
    /// Per owned `(topic, partition)`, the committed input offset: the one
    /// included in the last commit, or restored from the changelog.
    pub committed: Vec<((String, i32), i64)>,
    /// Latency of committed decisions that a record triggered (all but
    /// timeouts): from the record's append to the commit.
    pub latency: LatencyHistogram,
}

/// Latencies in buckets a quarter of a power of two wide: under 1 ms, then
/// `[2^((i-1)/4), 2^(i/4))` ms up to about 65 s. Cheap enough to copy with
/// every status, so a watcher can take the difference of two copies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
}

const LATENCY_BUCKETS: usize = 65;

impl LatencyHistogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS];
        }
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = if ms < 1.0 {
            0
        } else {
            ((ms.log2() * 4.0).floor() as usize + 1).min(LATENCY_BUCKETS - 1)
        };
        self.counts[bucket] += 1;
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding the `q` quantile (0..=1), or
    /// `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let upper_ms = 2f64.powf(bucket as f64 / 4.0);
                return Some(Duration::from_secs_f64(upper_ms / 1000.0));
            }
        }
        None
    }

    /// What was counted since `earlier`, a copy of this histogram.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c - earlier.counts.get(i).copied().unwrap_or(0).min(*c))
            .collect();
        LatencyHistogram { counts }
    }
}

impl Status {
    /// The committed offset of one input topic partition.
    pub fn committed_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.committed
            .iter()
            .find(|((t, p), _)| t == topic && *p == partition)
            .map(|(_, o)| *o)
    }
}

/// A processor's [`Status`], shared with whoever watches it.
pub type StatusWatch = crate::watch::Watch<Status>;

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
    /// The crash injected by `crash_after_decisions` (tests only).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_are_bucket_upper_bounds_within_a_fifth() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.99), None);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        for (q, exact) in [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0)] {
            let got = h.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(got >= exact && got <= exact * 1.19, "q{q}: {got} ms");
        }
        let earlier = h.clone();
        h.record(Duration::from_secs(5));
        let recent = h.since(&earlier);
        assert_eq!(recent.count(), 1);
        let five = recent.quantile(0.5).unwrap().as_secs_f64();
        assert!((5.0..=5.0 * 1.19).contains(&five), "{five}");
        h.record(Duration::from_micros(10));
        assert_eq!(h.count(), 102);
    }
}
