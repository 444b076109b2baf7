//! Partitions restored into the core.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Core;
use crate::processor::broker::Broker;
use crate::processor::restorer::{self, Restored};
use crate::processor::status::MAX_ABORTED_LISTED;
use crate::processor::ProcessorError;

impl Core {
    /// Restores `partitions` from the changelog into the core, counting
    /// the time it took.
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
            self.take_restored(r);
        }
        self.out.counters.restore_time += started.elapsed();
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ?partitions,
            "restore finished"
        );
        Ok(())
    }

    /// A partition read to its end: counted, shown to the API, and folded
    /// from now on.
    fn take_restored(&mut self, r: Restored) {
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
        self.read.restored(partition, &part.monitor, &part.shadows);
        self.partitions.insert(partition, part);
    }
}
