//! The committer: the open unit of work and how it is made durable, under
//! either guarantee.
//!
//! A unit of work ([`Work`]) is idle or open; it opens with the first
//! record it will hold and closes at a commit or an abort. The guarantee
//! is one enum whose variants carry what only they need:
//!
//! - [`Committer::ExactlyOnce`]: the unit is a Kafka transaction holding
//!   the decisions, dead letters, changelog records and the group's input
//!   offsets; it commits or aborts whole.
//! - [`Committer::AtLeastOnce`]: the unit is a batch; its decisions must be
//!   acknowledged before the changelog is written, and the changelog before
//!   the offsets. It counts the deliveries that failed, to know whether
//!   everything since the last commit arrived.
//!
//! Errors are classified once, here ([`Failure`]): fatal (fenced, no
//! transactions, a record the brokers refuse for good), abortable (abort
//! and rewind), or a schema registry outage (rewind, to read the record
//! again).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::broker::{Broker, Position};
use super::output::{Output, OutputError};
use super::Guarantee;
use super::ProcessorError;
use crate::backoff::{self, Backoff};
use crate::registry::RegistryError;
use earlykill_core::event::{Millis, MonitoringDecision};
use earlykill_core::monitor::ChangelogChange;

/// Failed units of work in a row before the processor gives up (and exits
/// non-zero, for the orchestrator to restart it).
pub(crate) const MAX_FAILURES_IN_A_ROW: usize = 6;
/// First backoff after a failed unit of work, doubled on each failure in a
/// row (100 ms to 3.2 s, plus jitter).
#[cfg(not(test))]
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// The unit tests' backoff: the same policy, a hundred times faster.
#[cfg(test)]
const RETRY_BACKOFF: Duration = Duration::from_millis(1);

/// A commit or produce that failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Abort the transaction and rewind to the last commit.
    Abortable(KafkaError),
    /// The schema registry could not be asked: abort and rewind as for
    /// `Abortable`, so that the record is read again.
    Registry(RegistryError),
    /// Stop the processor.
    Fatal(ProcessorError),
}

impl Failure {
    /// The error to stop with, when retrying is over.
    pub fn into_fatal(self, action: &'static str) -> ProcessorError {
        match self {
            Failure::Fatal(e) => e,
            Failure::Abortable(source) => ProcessorError::Kafka { action, source },
            Failure::Registry(source) => ProcessorError::Registry { source },
        }
    }
}

impl From<ProcessorError> for Failure {
    fn from(e: ProcessorError) -> Self {
        Failure::Fatal(e)
    }
}

/// Produce errors that the same record will meet again however often it is
/// sent: retrying them (abort, rewind, fold again) would loop forever.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::InvalidRequiredAcks
            | RDKafkaErrorCode::TopicAuthorizationFailed
    )
}

/// Whether a unit of work is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing written since the last commit or abort.
    Idle,
    /// Records written since `since`, not committed yet.
    Open { since: Instant },
}

/// The unit of work both guarantees share: its state, its number and the
/// decisions it holds.
#[derive(Debug)]
pub(crate) struct Work {
    state: State,
    /// The number of the open (or last) unit of this run, from 1.
    number: u64,
    /// `<incarnation>/<number>`: the `earlykill_transaction` header.
    label: String,
    incarnation: String,
    /// The producer's transactional id, for errors.
    transactional_id: String,
    /// Decisions in the open unit, with when each was due: logged and
    /// counted once it commits.
    decisions: Vec<(MonitoringDecision, Millis)>,
}

/// How the open work becomes durable.
#[derive(Debug)]
pub(crate) enum Committer {
    /// One Kafka transaction per unit.
    ExactlyOnce {
        work: Work,
        /// Units failed in a row, and the wait before the next attempt.
        retry: Backoff,
    },
    /// Decisions acknowledged, then the changelog, then the offsets.
    AtLeastOnce {
        work: Work,
        retry: Backoff,
        /// Delivery failures already handled.
        failures_seen: u64,
    },
}

fn retries() -> Backoff {
    backoff::policy(
        RETRY_BACKOFF,
        RETRY_BACKOFF * 32,
        Some(MAX_FAILURES_IN_A_ROW),
    )
}

impl Committer {
    pub fn new(guarantee: Guarantee, incarnation: String, transactional_id: String) -> Committer {
        let work = Work {
            state: State::Idle,
            number: 0,
            label: String::new(),
            incarnation,
            transactional_id,
            decisions: Vec::new(),
        };
        match guarantee {
            Guarantee::ExactlyOnce => Committer::ExactlyOnce {
                work,
                retry: retries(),
            },
            Guarantee::AtLeastOnce => Committer::AtLeastOnce {
                work,
                retry: retries(),
                failures_seen: 0,
            },
        }
    }

    pub fn work(&self) -> &Work {
        match self {
            Committer::ExactlyOnce { work, .. } | Committer::AtLeastOnce { work, .. } => work,
        }
    }

    fn work_mut(&mut self) -> &mut Work {
        match self {
            Committer::ExactlyOnce { work, .. } | Committer::AtLeastOnce { work, .. } => work,
        }
    }

    /// Whether a wall-clock advance must be written to the changelog before
    /// it is made (see `Core::advance_idle`): only without transactions,
    /// where the advance cannot commit atomically with its decisions.
    pub fn records_advances_first(&self) -> bool {
        matches!(self, Committer::AtLeastOnce { .. })
    }

    /// Opens a unit of work unless one is open.
    pub fn begin(&mut self, broker: &impl Broker) -> Result<(), Failure> {
        if matches!(self.work().state, State::Open { .. }) {
            return Ok(());
        }
        if let Committer::ExactlyOnce { .. } = self {
            broker
                .begin_transaction()
                .map_err(|e| self.classify(broker, e, None))?;
        }
        let work = self.work_mut();
        work.state = State::Open {
            since: Instant::now(),
        };
        work.number += 1;
        work.label.clear();
        let _ = write!(work.label, "{}/{}", work.incarnation, work.number);
        Ok(())
    }

    /// A decision sent in the open unit, due at `due`.
    pub fn decided(&mut self, decision: MonitoringDecision, due: Millis) {
        self.work_mut().decisions.push((decision, due));
    }

    /// The failure an output error stands for.
    pub fn failed_output(&self, broker: &impl Broker, error: OutputError) -> Failure {
        match error {
            OutputError::Encode(e) => Failure::Fatal(e),
            OutputError::Send { topic, source } => self.classify(broker, source, Some(topic)),
        }
    }

    /// Classifies a Kafka error; `topic` is the record's, when a send
    /// failed.
    fn classify(&self, broker: &impl Broker, source: KafkaError, topic: Option<String>) -> Failure {
        let code = match &source {
            KafkaError::Transaction(e) => Some(e.code()),
            other => other.rdkafka_error_code(),
        };
        if code == Some(RDKafkaErrorCode::UnsupportedFeature) {
            return Failure::Fatal(ProcessorError::TransactionsUnsupported { source });
        }
        if code.is_some_and(refused_for_good) {
            return Failure::Fatal(ProcessorError::RecordRefused {
                topic: topic.unwrap_or_default(),
                source,
            });
        }
        // A transaction that fails to commit because the broker refused one
        // of its records says so only in that record's delivery report.
        let seen = match self {
            Committer::AtLeastOnce { failures_seen, .. } => *failures_seen,
            Committer::ExactlyOnce { .. } => 0,
        };
        if let (failed, Some((refused, topic))) = broker.delivery_failures() {
            if failed > seen && refused.rdkafka_error_code().is_some_and(refused_for_good) {
                return Failure::Fatal(ProcessorError::RecordRefused {
                    topic,
                    source: refused,
                });
            }
        }
        let fatal = match &source {
            KafkaError::Transaction(e) => e.is_fatal(),
            _ => matches!(
                code,
                Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
            ),
        };
        if fatal {
            Failure::Fatal(ProcessorError::Fenced {
                transactional_id: self.work().transactional_id.clone(),
                source,
            })
        } else {
            Failure::Abortable(source)
        }
    }

    /// Makes the open unit durable with `changes` (the changelog records of
    /// every changed partition, the session records first and the
    /// partitions' own records last) and `offsets` (the next input
    /// offsets), and
    /// returns the decisions it held. Under exactly-once: the changelog,
    /// the offsets and the commit in the one transaction. Under
    /// at-least-once: the decisions acknowledged first, then the changelog,
    /// then the group's offsets.
    pub fn commit(
        &mut self,
        broker: &impl Broker,
        output: &mut Output,
        changes: &[(i32, ChangelogChange)],
        offsets: &[Position],
    ) -> Result<Vec<(MonitoringDecision, Millis)>, Failure> {
        match self {
            Committer::ExactlyOnce { work, .. } => {
                output
                    .write(broker, changes, &work.label)
                    .map_err(|e| self.failed_output(broker, e))?;
                broker
                    .commit_transaction(offsets)
                    .map_err(|e| self.classify(broker, e, None))?;
            }
            Committer::AtLeastOnce { .. } => {
                // Without a transaction nothing can be taken back, so the
                // state may only move once its decisions are acknowledged:
                // a decision refused here is remade after the rewind, from
                // a changelog that never saw this batch.
                self.delivered(broker)?;
                // The sessions before the positions that cover them: were
                // the brokers to refuse a batch of session records while
                // the partition's record landed, a restore would resume
                // past input those sessions never counted. So the
                // partition records are written only once every session
                // record is acknowledged.
                // `changes` holds the session records first.
                let split = changes.partition_point(|(_, c)| !c.key.is_empty());
                let (sessions, positions) = changes.split_at(split);
                debug_assert!(positions.iter().all(|(_, c)| c.key.is_empty()));
                self.write_until_delivered(broker, output, sessions)?;
                self.write_until_delivered(broker, output, positions)?;
                // The positions are safe in the changelog, which is what a
                // restore resumes from: the group's offsets only show lag
                // to tools. A failed commit (a rebalance in progress) is
                // retried with the next one, not rewound.
                if let Err(error) = broker.commit_offsets(offsets) {
                    tracing::warn!(%error, "committing the group's offsets failed; the changelog holds the positions");
                }
            }
        }
        let (work, retry) = match self {
            Committer::ExactlyOnce { work, retry } | Committer::AtLeastOnce { work, retry, .. } => {
                (work, retry)
            }
        };
        work.state = State::Idle;
        *retry = retries();
        Ok(std::mem::take(&mut work.decisions))
    }

    /// At-least-once: writes `records` (partitions' own records carrying a
    /// clock they are about to advance to) until they are acknowledged.
    /// Under exactly-once there is nothing to do: an advance commits with
    /// its decisions or not at all.
    pub fn record_advance(
        &mut self,
        broker: &impl Broker,
        output: &mut Output,
        records: &[(i32, ChangelogChange)],
    ) -> Result<(), Failure> {
        match self {
            Committer::ExactlyOnce { .. } => Ok(()),
            Committer::AtLeastOnce { .. } => self.write_until_delivered(broker, output, records),
        }
    }

    /// At-least-once: waits for everything sent so far and fails if any of
    /// it was not delivered.
    fn delivered(&mut self, broker: &impl Broker) -> Result<(), Failure> {
        broker.flush().map_err(|e| self.classify(broker, e, None))?;
        let (failed, last) = broker.delivery_failures();
        let Committer::AtLeastOnce { failures_seen, .. } = self else {
            return Ok(());
        };
        if failed > *failures_seen {
            *failures_seen = failed;
            let (error, topic) = last.unwrap_or((
                KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
                String::new(),
            ));
            tracing::warn!(%error, %topic, "deliveries failed");
            return Err(self.classify(broker, error, Some(topic)));
        }
        Ok(())
    }

    /// At-least-once: writes `changes` until every record is acknowledged.
    /// The decisions they follow from are already out, so a failure here
    /// must not rewind (the decisions would not be made again from a state
    /// that may be partly written); the records are written again whole,
    /// which a compacted topic absorbs, until they land or the attempts
    /// run out (then the processor exits; see the README's guarantees).
    fn write_until_delivered(
        &mut self,
        broker: &impl Broker,
        output: &mut Output,
        changes: &[(i32, ChangelogChange)],
    ) -> Result<(), Failure> {
        let mut retry = retries();
        loop {
            let label = self.work().label.clone();
            let result = output
                .write(broker, changes, &label)
                .map_err(|e| self.failed_output(broker, e))
                .and_then(|()| self.delivered(broker));
            let error = match result {
                Ok(()) => return Ok(()),
                Err(Failure::Abortable(e)) => e,
                Err(other) => return Err(other),
            };
            let Some((attempt, backoff)) = retry.after_failure() else {
                return Err(Failure::Fatal(ProcessorError::Kafka {
                    action: "write the changelog (gave up after repeated failures)",
                    source: error,
                }));
            };
            tracing::warn!(
                %error,
                attempt,
                backoff_ms = backoff.as_millis() as u64,
                records = changes.len(),
                "changelog write failed; writing it again"
            );
            // Backing off before the retry, not waiting for anything.
            std::thread::sleep(backoff);
        }
    }

    /// After a failed unit: the attempt's number, how long to back off
    /// before rewinding and why it failed, or the error to stop with when
    /// the failure is fatal or the failures in a row are too many.
    pub fn after_failure(
        &mut self,
        failure: Failure,
    ) -> Result<(u32, Duration, String), ProcessorError> {
        let error = match &failure {
            Failure::Fatal(_) => return Err(failure.into_fatal("")),
            Failure::Abortable(e) => e.to_string(),
            Failure::Registry(e) => e.to_string(),
        };
        let retry = match self {
            Committer::ExactlyOnce { retry, .. } | Committer::AtLeastOnce { retry, .. } => retry,
        };
        match retry.after_failure() {
            Some((attempt, backoff)) => Ok((attempt, backoff, error)),
            None => {
                Err(failure.into_fatal("commit a transaction (gave up after repeated failures)"))
            }
        }
    }

    /// Aborts the open unit; returns its number if one was open. Under
    /// exactly-once the transaction is aborted at the broker; under
    /// at-least-once what was sent stays sent (the rewind makes it again).
    pub fn abort(&mut self, broker: &impl Broker) -> Result<Option<u64>, ProcessorError> {
        let open = matches!(self.work().state, State::Open { .. });
        if open {
            if let Committer::ExactlyOnce { .. } = self {
                broker.abort_transaction().map_err(|source| {
                    match self.classify(broker, source, None) {
                        Failure::Fatal(e) => e,
                        other => other.into_fatal("abort the transaction"),
                    }
                })?;
            }
        }
        let work = self.work_mut();
        work.state = State::Idle;
        work.decisions.clear();
        Ok(open.then_some(work.number))
    }
}

impl Work {
    /// When the open unit began; `None` when idle.
    pub fn open_since(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Open { since } => Some(since),
        }
    }

    /// The open (or last) unit's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The `earlykill_transaction` header of the open unit.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Decisions the open unit holds.
    pub fn decisions(&self) -> usize {
        self.decisions.len()
    }
}
