//! Partitions handed between the workers of one instance at a rebalance,
//! so that a partition moving from one worker to another (or revoked and
//! given back to the same worker, as every eager rebalance does) keeps its
//! state instead of being restored from the changelog.
//!
//! A worker parks a revoked partition here only after the commit that
//! revocation makes succeeded: what it parks is the committed state, with
//! the changelog offset after the last record holding it. The partition's
//! next owner in this instance takes it back only if nobody wrote that
//! changelog partition since (another instance owned it in between): it
//! reads from that offset to the end, and a record there means a restore.
//! A partition no worker of this instance takes within [`KEPT_FOR`] has
//! moved to another instance and is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::partition::Partition;

/// How long a parked partition waits for an owner in this instance: longer
/// than a rebalance may take (librdkafka's `max.poll.interval.ms`, 300 s by
/// default, bounds a member's rejoin).
const KEPT_FOR: Duration = Duration::from_secs(300);

/// The instance's parked partitions, shared by its workers; used at
/// rebalances only, never per record.
#[derive(Clone, Default)]
pub(crate) struct Handoff(Arc<Mutex<BTreeMap<i32, (Instant, Partition)>>>);

impl Handoff {
    fn parked(&self) -> MutexGuard<'_, BTreeMap<i32, (Instant, Partition)>> {
        let mut parked = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        parked.retain(|_, (since, _)| since.elapsed() < KEPT_FOR);
        parked
    }

    /// Parks partition `p`'s committed state for its next owner.
    pub fn park(&self, p: i32, part: Partition) {
        self.parked().insert(p, (Instant::now(), part));
    }

    /// Takes the parked state of those of `partitions` that have one.
    pub fn take(&self, partitions: &BTreeSet<i32>) -> BTreeMap<i32, Partition> {
        let mut parked = self.parked();
        partitions
            .iter()
            .filter_map(|p| Some((*p, parked.remove(p)?.1)))
            .collect()
    }

    /// Drops parked partitions no worker took in time.
    pub fn expire(&self) {
        drop(self.parked());
    }
}
