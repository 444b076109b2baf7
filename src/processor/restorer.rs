//! The restorer: partitions rebuilt from the changelog, and where their
//! input is read from next.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::broker::{Broker, Start, StartAt};
use super::partition::Partition;
use super::status::MAX_ABORTED_LISTED;
use super::{ProcessorError, Sessions, Status};
use earlykill_core::event::InputTopic;
use earlykill_core::monitor::{Monitor, MonitorConfig};

/// Rebuilds `partitions` from the changelog, counting what it read in
/// `status` and showing the restored sessions to the API's `read` view.
pub(crate) fn restore(
    broker: &impl Broker,
    monitor: MonitorConfig,
    partitions: &BTreeSet<i32>,
    status: &mut Status,
    read: &Sessions,
) -> Result<BTreeMap<i32, Partition>, ProcessorError> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let started = Instant::now();
    tracing::info!(?partitions, "restoring partitions from the changelog");
    let state = broker.read_changelog(partitions)?;
    let mut restored = BTreeMap::new();
    for (
        p,
        super::broker::Restored {
            records,
            writer,
            next,
        },
    ) in state
    {
        status.restored_records += records.len() as u64;
        let offsets = records
            .iter()
            .find(|r| r.is_partition_record())
            .and_then(|r| r.input_offsets)
            .unwrap_or_default();
        read.restored(p, &records);
        let monitor =
            Monitor::restore(monitor, records).map_err(|e| ProcessorError::CorruptChangelog {
                partition: p,
                offset: -1,
                reason: e.to_string(),
            })?;
        tracing::info!(
            partition = p,
            active_sessions = monitor.active_sessions(),
            held = monitor.held_interactions(),
            clock = monitor.clock(),
            ?offsets,
            writer = writer.as_deref().unwrap_or("-"),
            "partition restored"
        );
        if let Some(writer) = writer {
            let from = &mut status.restored_from;
            if from.len() == MAX_ABORTED_LISTED {
                from.remove(0);
            }
            from.push((p, writer));
        }
        let mut part = Partition::new(monitor, offsets);
        part.changelog_next = next;
        restored.insert(p, part);
    }
    status.restore_time += started.elapsed();
    tracing::info!(
        ?partitions,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restore finished"
    );
    Ok(restored)
}

/// Where to read each input topic of `restored` partitions from.
///
/// The changelog holds a partition's positions with its state, written in
/// the same transaction. A topic it records no offset for has had nothing
/// read: it starts at the beginning. A partition it records nothing for
/// has no state either, so it starts where the consumer's
/// `auto.offset.reset` says, never at the group's committed offsets: those
/// could only run ahead of an empty state (a lost changelog), and fetching
/// them waits behind a crashed transaction's pending offsets, forever on a
/// broker that never resolves them (the fault soak stalled so on the mock
/// cluster).
pub(crate) fn starts(restored: &BTreeMap<i32, Partition>) -> Vec<Start> {
    let mut starts = Vec::with_capacity(restored.len() * 3);
    for (&partition, part) in restored {
        let fallback = if InputTopic::ALL.iter().any(|&t| part.next(t).is_some()) {
            StartAt::Beginning
        } else {
            StartAt::Reset
        };
        for topic in InputTopic::ALL {
            let at = part.next(topic).map_or(fallback, StartAt::Offset);
            starts.push(Start {
                topic,
                partition,
                at,
            });
        }
    }
    starts
}
