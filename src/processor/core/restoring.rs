//! The restore of assigned partitions, driven a step at a time between the
//! worker's input polls: each partition goes live (its input resumed at the
//! positions its changelog recorded) as soon as it is read to its end,
//! while the others are still read.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Core;
use crate::processor::broker::Broker;
use crate::processor::lifecycle::Phase;
use crate::processor::restorer::{self, Restore, Restored};
use crate::processor::status::MAX_ABORTED_LISTED;
use crate::processor::ProcessorError;
use earlykill_core::event::InputTopic;

impl Core {
    /// Starts restoring `partitions` (none: nothing to do).
    pub(super) fn start_restore(
        &mut self,
        broker: &impl Broker,
        partitions: &BTreeSet<i32>,
    ) -> Result<(), ProcessorError> {
        self.out.counters.restoring = partitions.iter().copied().collect();
        if partitions.is_empty() {
            return Ok(());
        }
        let config = &self.config;
        let restore = Restore::start(broker, config.monitor, config.kafka_timeout, partitions);
        match restore {
            Ok(restore) => {
                self.restore = Some(restore);
                Ok(())
            }
            Err(e) => {
                self.out.counters.restoring.clear();
                Err(e)
            }
        }
    }

    /// Whether partitions are still being restored.
    pub fn is_restoring(&self) -> bool {
        self.restore.is_some()
    }

    /// Reads what the changelog has for the partitions being restored,
    /// waiting up to `wait`; those read to their end go live.
    pub fn restore_step(
        &mut self,
        broker: &impl Broker,
        wait: Duration,
    ) -> Result<(), ProcessorError> {
        let Some(restore) = self.restore.as_mut() else {
            return Ok(());
        };
        let restored = restore.step(broker, wait)?;
        let done = restore.is_done();
        let elapsed = restore.started.elapsed();
        self.out.counters.restoring = restore.partitions().collect();
        if restored.is_empty() && !done {
            return Ok(());
        }
        let mut partitions = BTreeSet::new();
        for r in restored {
            partitions.insert(r.partition);
            self.take_restored(r);
        }
        let starts = restorer::starts(
            partitions
                .iter()
                .filter_map(|p| self.partitions.get(p).map(|part| (*p, part))),
        );
        for &p in &partitions {
            self.positions_committed(p);
        }
        broker
            .rewind(&starts)
            .map_err(|source| ProcessorError::Kafka {
                action: "start reading a restored partition's input",
                source,
            })?;
        tracing::info!(partitions = ?partitions, "partitions live");
        if done {
            self.restore = None;
            self.out.counters.restore_time += elapsed;
            if self.lifecycle.phase().can_become(Phase::Running) {
                self.become_(Phase::Running);
            }
            tracing::info!(
                elapsed_ms = elapsed.as_millis() as u64,
                partitions = ?self.partitions.keys().collect::<Vec<_>>(),
                "restore finished"
            );
        }
        self.publish();
        Ok(())
    }

    /// A partition read to its end: counted, shown to the API, and folded
    /// from now on.
    pub(super) fn take_restored(&mut self, r: Restored) {
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
        self.read.restored(partition, &part.monitor);
        self.partitions.insert(partition, part);
    }

    /// Partition `p`'s positions, just restored, are its committed ones.
    fn positions_committed(&mut self, p: i32) {
        let Some(part) = self.partitions.get(&p) else {
            return;
        };
        let committed = &mut self.out.counters.committed;
        committed.retain(|((_, q), _)| *q != p);
        for topic in InputTopic::ALL {
            if let Some(offset) = part.position(topic) {
                let name = self.config.topics.input(topic).to_owned();
                committed.push(((name, p), offset));
            }
        }
    }

    /// The group took `gone` away: those still being restored are not read
    /// on.
    pub(super) fn restore_revoked(&mut self, broker: &impl Broker, gone: &BTreeSet<i32>) {
        let Some(restore) = self.restore.as_mut() else {
            return;
        };
        let revoked = restore.revoke(broker, gone);
        self.out.counters.restoring = restore.partitions().collect();
        if restore.is_done() {
            self.restore = None;
            if self.lifecycle.phase().can_become(Phase::Running) {
                self.become_(Phase::Running);
            }
        }
        if let Err(e) = revoked {
            self.fail(e);
        }
    }
}
