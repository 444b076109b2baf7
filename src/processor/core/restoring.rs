//! Partitions restored into the core: an assignment's partitions restored
//! one by one while the loop runs, each live (its input read, its
//! decisions flowing) as soon as its changelog is read; a recovery's
//! restored at once.
//!
//! Going live is an assignment, not a seek: the input consumer's
//! assignment is replaced by every live partition at the offset after its
//! last record read (the newly restored one at its restored positions).
//! librdkafka stops and starts each partition there and drops what was
//! fetched before, so no record is read twice or skipped, and a partition
//! still restoring is never fetched.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Core;
use crate::processor::broker::{Broker, Start};
use crate::processor::lifecycle::Phase;
use crate::processor::restorer::{self, Restore, Restored};
use crate::processor::status::MAX_ABORTED_LISTED;
use crate::processor::ProcessorError;
use earlykill_core::event::InputTopic;

/// An assignment's restore, under way.
pub(super) struct Restoring {
    restore: Restore,
    /// Every partition this restore began with.
    partitions: BTreeSet<i32>,
    started: Instant,
}

impl Restoring {
    /// Whether the changelog reader had records at the last step.
    pub fn is_busy(&self) -> bool {
        self.restore.is_busy()
    }
}

impl Core {
    /// The group assigned these partitions of each input topic (in `rank`
    /// order): checks them, takes those handed over within the instance,
    /// and starts restoring the others. Returns where to read the live
    /// ones from; the others are assigned as each is restored.
    pub fn assigned(
        &mut self,
        broker: &impl Broker,
        by_topic: &[BTreeSet<i32>; 3],
    ) -> Result<Vec<Start>, ProcessorError> {
        if let Some(&p) = by_topic[0].iter().find(|&&p| p >= self.input_partitions) {
            // The topic queues cover the partitions counted at start-up; a
            // topic that grew also moved keys to other partitions, away
            // from their state.
            return Err(ProcessorError::PartitionsAdded {
                partition: p,
                counted: self.input_partitions,
            });
        }
        if by_topic.iter().any(|set| *set != by_topic[0]) {
            return Err(ProcessorError::MisalignedAssignment {
                assignment: format!("{by_topic:?}"),
            });
        }
        // A restore still under way belonged to the previous assignment
        // (a revocation normally ended it first).
        self.stop_restoring();
        let handed = self.handed_over(broker, &by_topic[0])?;
        self.out.counters.handed_over += handed.len() as u64;
        let kept: Vec<i32> = handed.keys().copied().collect();
        self.partitions.extend(handed);
        let rest: BTreeSet<i32> = by_topic[0]
            .iter()
            .filter(|p| !self.partitions.contains_key(p))
            .copied()
            .collect();
        // A failed or stopping worker still serves the group's callbacks,
        // but stays where it is, and its loop no longer steps: it restores
        // at once.
        let live = self.lifecycle.phase().can_become(Phase::Restoring);
        if live {
            self.become_(Phase::Restoring);
            if !rest.is_empty() {
                let (policies, timeout) = (self.config.policies(), self.config.kafka_timeout);
                self.restoring = Some(Restoring {
                    restore: Restore::start(broker, &policies, timeout, &rest)?,
                    partitions: rest.clone(),
                    started: Instant::now(),
                });
                self.out.counters.restoring = rest.iter().copied().collect();
            }
        } else {
            self.restore(broker, &rest)?;
        }
        self.restored_positions_are_committed();
        tracing::info!(
            partitions = ?by_topic[0],
            handed_over = ?kept,
            restoring = ?self.out.counters.restoring,
            "partitions assigned"
        );
        self.finish_restoring();
        self.publish();
        Ok(restorer::starts(
            self.partitions.iter().map(|(&p, part)| (p, part)),
        ))
    }

    /// Reads what the changelog has for the restore under way; each
    /// partition read to its end goes live.
    pub(super) fn restore_step(&mut self, broker: &impl Broker) -> Result<(), ProcessorError> {
        let Some(restoring) = &mut self.restoring else {
            return Ok(());
        };
        let restored = restoring.restore.step(broker, Duration::ZERO)?;
        if restored.is_empty() {
            return Ok(());
        }
        let live: Vec<i32> = restored.iter().map(|r| r.partition).collect();
        for r in restored {
            self.take_restored(r, false);
        }
        // Every live partition from the offset after its last record read
        // (those already live) or its restored position (the new ones).
        let starts = restorer::starts(self.partitions.iter().map(|(&p, part)| (p, part)));
        broker
            .assign(&starts)
            .map_err(|source| ProcessorError::Kafka {
                action: "assign a restored partition",
                source,
            })?;
        // Every live partition's fetch restarted: a topic it had read to
        // its end may have more now, so none counts as caught up until its
        // end is heard again (else the merge or the idle clock could move
        // past records in flight). The assignment also resumed every
        // partition: those held back for backpressure are paused again.
        for (&p, part) in &mut self.partitions {
            part.refetched();
            for topic in InputTopic::ALL.into_iter().filter(|&t| part.is_paused(t)) {
                if let Err(e) = broker.pause(topic, p, true) {
                    tracing::warn!(error = %e, partition = p, "pause failed");
                }
            }
        }
        // The API sees the partitions now, before anything is folded into
        // them (this thread folds), and after their fetch has started: a
        // large partition takes the read model a while.
        for p in &live {
            let part = &self.partitions[p];
            self.read.restored(*p, &part.monitor, &part.shadows);
        }
        let offsets: Vec<_> = self
            .input_offsets()
            .into_iter()
            .filter(|o| live.contains(&o.partition))
            .collect();
        let listed = self.listed(&offsets);
        // (`restored` above waited for the commits before.)
        self.status.update(|status| status.committed.extend(listed));
        let counters = &mut self.out.counters;
        counters.restoring.retain(|p| !live.contains(p));
        tracing::info!(partitions = ?live, restoring = ?counters.restoring, "partitions live");
        self.finish_restoring();
        self.publish();
        Ok(())
    }

    /// Ends the restore under way once nothing is left of it (read, or
    /// revoked).
    pub(super) fn finish_restoring(&mut self) {
        let done = match &self.restoring {
            Some(r) => r.restore.is_done(),
            None => self.lifecycle.phase() == Phase::Restoring,
        };
        if !done {
            return;
        }
        if let Some(r) = self.restoring.take() {
            self.out.counters.restore_time += r.started.elapsed();
            tracing::info!(
                elapsed_ms = r.started.elapsed().as_millis() as u64,
                partitions = ?r.partitions,
                "restore finished"
            );
        }
        self.out.counters.restoring.clear();
        if self.lifecycle.phase() == Phase::Restoring {
            self.become_(Phase::Running);
        }
    }

    /// The group took `gone` away: those still restoring are restored no
    /// further.
    pub(super) fn restoring_revoked(&mut self, broker: &impl Broker, gone: &BTreeSet<i32>) {
        let Some(r) = &mut self.restoring else {
            return;
        };
        let forgot = r.restore.forget(broker, gone);
        let done = r.restore.is_done();
        if let Err(e) = forgot {
            self.fail(e);
        }
        self.out.counters.restoring.retain(|p| !gone.contains(p));
        if done {
            self.stop_restoring();
            tracing::info!(partitions = ?gone, "restore stopped: its partitions were revoked");
        }
    }

    /// Abandons the restore under way (a recovery restores its partitions
    /// at once); returns the partitions it had left.
    pub(super) fn stop_restoring(&mut self) -> BTreeSet<i32> {
        let Some(r) = self.restoring.take() else {
            return BTreeSet::new();
        };
        self.out.counters.restoring.clear();
        self.out.counters.restore_time += r.started.elapsed();
        if self.lifecycle.phase() == Phase::Restoring {
            self.become_(Phase::Running);
        }
        r.restore.partitions()
    }

    /// Restores `partitions` from the changelog into the core at once,
    /// counting the time it took.
    pub(super) fn restore(
        &mut self,
        broker: &impl Broker,
        partitions: &BTreeSet<i32>,
    ) -> Result<(), ProcessorError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut restored = Vec::new();
        let (policies, timeout) = (self.config.policies(), self.config.kafka_timeout);
        restorer::restore(broker, &policies, timeout, partitions, |r| restored.push(r))?;
        for r in restored {
            self.take_restored(r, true);
        }
        self.out.counters.restore_time += started.elapsed();
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ?partitions,
            "restore finished"
        );
        Ok(())
    }

    /// A partition read to its end: counted, shown to the API (`show`,
    /// else by the caller), and folded from now on.
    fn take_restored(&mut self, r: Restored, show: bool) {
        let Restored {
            partition,
            part,
            records,
            writer,
        } = r;
        let counters = &mut self.out.counters;
        counters.restored_records += records;
        if let Some(writer) = writer {
            let from = &mut counters.restored_from;
            if from.len() == MAX_ABORTED_LISTED {
                from.remove(0);
            }
            from.push((partition, writer));
        }
        if show {
            self.read.restored(partition, &part.monitor, &part.shadows);
        }
        self.partitions.insert(partition, part);
    }
}
