//! The narrow boundary between the processor's parts and Kafka.
//!
//! Everything the processor asks of Kafka while it runs goes through
//! [`Broker`]: produce a record, begin, commit or abort a transaction,
//! commit offsets, pause or rewind an input partition, ask how far a fetch
//! reached, and read the changelog back. [`librdkafka`] implements it over
//! the real clients; [`fake`] (tests only) over an in-memory log with
//! transactions and a compacted changelog, so that the merge rule and the
//! commit / abort / rewind / restore protocol are unit-tested in
//! milliseconds.
//!
//! What is not here stays in the shell (`shell.rs`): creating the clients,
//! the poll loop, the topic queues and the rebalance callback's
//! assign/unassign, which only librdkafka has.

pub(crate) mod librdkafka;

#[cfg(test)]
pub(crate) mod fake;

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::ProcessorError;
use earlykill_core::event::{InputTopic, Millis};

/// One record to produce. Borrowed: building it copies nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutRecord<'a> {
    pub topic: &'a str,
    /// `None`: the producer's partitioner picks one from the key.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// The next offset to read of one input topic partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub topic: InputTopic,
    pub partition: i32,
    pub offset: i64,
}

/// Where to start reading one input topic partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// This offset.
    Offset(i64),
    /// The partition's first offset.
    Beginning,
    /// Where the input consumer's `auto.offset.reset` says.
    Reset,
}

/// A [`StartAt`] for one input topic partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    pub topic: InputTopic,
    pub partition: i32,
    pub at: StartAt,
}

/// What the changelog reader hands over while a restore reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChangelogRead<'a> {
    /// A record, borrowed from the reader.
    Record {
        partition: i32,
        offset: i64,
        key: &'a [u8],
        /// `None`: a tombstone.
        value: Option<&'a [u8]>,
        /// Whether the record names the commit that wrote it (this
        /// release's session records do).
        names_commit: bool,
        /// The `earlykill_transaction` header: on a partition record, which
        /// run and transaction wrote it.
        writer: Option<&'a [u8]>,
    },
    /// The partition was read to its end (its last committed record).
    End { partition: i32 },
}

/// What the processor asks of Kafka while it runs.
///
/// Errors are librdkafka's [`KafkaError`] values: the committer classifies
/// them (fatal, refused for good, abortable) the same way whichever
/// implementation produced them.
pub(crate) trait Broker {
    /// Exactly-once: begins a transaction.
    fn begin_transaction(&self) -> Result<(), KafkaError>;
    /// Queues `record`; waits for room while the producer's queue is full
    /// (that is the backpressure on output).
    fn send(&self, record: &OutRecord<'_>) -> Result<(), KafkaError>;
    /// Exactly-once: adds `offsets` (the group's input positions) to the
    /// open transaction, waits for its records and commits it.
    fn commit_transaction(&self, offsets: &[Position]) -> Result<(), KafkaError>;
    /// Exactly-once: aborts the open transaction.
    fn abort_transaction(&self) -> Result<(), KafkaError>;
    /// Waits until every record sent is delivered or failed.
    fn flush(&self) -> Result<(), KafkaError>;
    /// Deliveries failed so far, and the last failure with its topic.
    fn delivery_failures(&self) -> (u64, Option<(KafkaError, String)>);
    /// At-least-once: commits the group's offsets, for tools to show lag.
    fn commit_offsets(&self, offsets: &[Position]) -> Result<(), KafkaError>;
    /// The (low, high) watermarks of an input topic partition as the
    /// consumer's own last fetch reported them; no request is made.
    fn fetched_watermarks(&self, topic: InputTopic, partition: i32) -> Option<(i64, i64)>;
    /// Stops (`true`) or resumes fetching an input topic partition.
    fn pause(&self, topic: InputTopic, partition: i32, pause: bool) -> Result<(), KafkaError>;
    /// Resumes `starts` and moves the consumer to them (a rewind).
    fn rewind(&self, starts: &[Start]) -> Result<(), KafkaError>;
    /// Makes `starts` the input consumer's whole assignment, each partition
    /// fetched from its start, unpaused. Partitions already fetched start
    /// again there: what was fetched of them and not yet read is dropped.
    fn assign(&self, starts: &[Start]) -> Result<(), KafkaError>;
    /// Points the changelog reader at `from`: each partition from its
    /// beginning (`None`) or an offset; nothing else is read. An empty map
    /// stops reading.
    fn read_changelog_from(&self, from: &BTreeMap<i32, Option<i64>>) -> Result<(), ProcessorError>;
    /// Where changelog partition `partition` starts and ends now, if the
    /// broker says.
    fn changelog_bounds(&self, partition: i32) -> Option<(i64, i64)>;
    /// Hands what the changelog reader has to `each`: up to `max` records
    /// and partition ends, waiting up to `wait` for the first. Returns how
    /// many it handed.
    fn read_changelog(
        &self,
        wait: std::time::Duration,
        max: usize,
        each: &mut dyn FnMut(ChangelogRead<'_>) -> Result<(), ProcessorError>,
    ) -> Result<usize, ProcessorError>;
    /// The offset of the last record this producer delivered to changelog
    /// partition `partition`, if any.
    fn changelog_written(&self, partition: i32) -> Option<i64>;
    /// Of the changelog partitions in `from`, those with no committed
    /// record at or after their offset there: nobody wrote them since.
    fn changelog_unchanged(
        &self,
        from: &BTreeMap<i32, i64>,
    ) -> Result<BTreeSet<i32>, ProcessorError>;
}

/// One input record as the processor reads it.
pub(crate) trait Inbound {
    /// The topic's name.
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> Option<&[u8]>;
    /// The broker's append time, when it has one.
    fn appended(&self) -> Option<Millis>;
    /// The headers, copied (only a dead letter needs them).
    fn headers(&self) -> Vec<(String, Option<Vec<u8>>)>;
}

impl Inbound for BorrowedMessage<'_> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }

    fn partition(&self) -> i32 {
        Message::partition(self)
    }

    fn offset(&self) -> i64 {
        Message::offset(self)
    }

    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }

    fn value(&self) -> Option<&[u8]> {
        self.payload()
    }

    fn appended(&self) -> Option<Millis> {
        self.timestamp().to_millis()
    }

    fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        Message::headers(self)
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default()
    }
}
