//! What the core does with a partition the restorer read to its end.

use super::Core;
use crate::processor::restorer::Restored;
use crate::processor::status::MAX_ABORTED_LISTED;

impl Core {
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
}
