//! The restorer: partitions rebuilt from the changelog as it is read, and
//! where their input is read from next.
//!
//! A [`Restore`] streams every record into its partition's [`Rebuild`]
//! (decoded once, nothing of the log kept), so a worker holds only the
//! state being rebuilt. It reads the partitions one after the other, the
//! smallest first; [`restore`] drives it to the end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::broker::{Broker, ChangelogRead, Start, StartAt};
use super::partition::Partition;
use super::ProcessorError;
use crate::telemetry;
use earlykill_core::event::{ChangelogRecord, Contract, Decoder, InputTopic};
use earlykill_core::monitor::{Rebuild, Rebuilt};
use earlykill_core::shadow::{parse_shadow_key, Policies, ShadowRebuild};

/// Most records one step hands over before the worker reads input again.
const STEP_RECORDS: usize = 20_000;
/// How often the restore logs its progress (the metrics follow every
/// second).
const LOG_EVERY: Duration = Duration::from_secs(3);

/// A partition read to its end: its state, ready to fold.
pub(crate) struct Restored {
    pub partition: i32,
    pub part: Partition,
    /// Changelog records read.
    pub records: u64,
    /// The `earlykill_transaction` header of the latest partition record:
    /// which run and transaction wrote the state restored.
    pub writer: Option<String>,
}

/// How far the restore of one changelog partition is.
pub(crate) struct Progress {
    /// Records read so far.
    pub records: u64,
    /// The offset after the last record read.
    pub position: i64,
    /// Where the partition started and ended when the restore began
    /// (`None` when the broker did not say).
    pub bounds: Option<(i64, i64)>,
    /// When the restore began.
    pub started: Instant,
}

impl Progress {
    /// Offsets left to read to the end the partition had at the start (an
    /// upper bound on records: a compacted log has gaps).
    pub fn remaining(&self) -> Option<u64> {
        self.bounds
            .map(|(low, high)| (high - self.position.max(low)).max(0) as u64)
    }

    /// When the rest will be read, at the rate so far.
    pub fn eta(&self) -> Option<Duration> {
        let (low, _) = self.bounds?;
        let remaining = self.remaining()? as f64;
        let done = (self.position - low).max(0) as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        (done > 0.0 && elapsed > 0.0).then(|| Duration::from_secs_f64(remaining * elapsed / done))
    }
}

/// One partition being rebuilt.
struct Part {
    rebuild: Rebuild,
    /// The shadow policies' state, from their records beside the live ones.
    shadows: ShadowRebuild,
    writer: Option<String>,
    progress: Progress,
}

/// The restore of a worker's partitions, under way.
pub(crate) struct Restore {
    parts: BTreeMap<i32, Part>,
    decoder: Decoder,
    /// Nothing arriving for this long fails the restore.
    timeout: Duration,
    /// When a record or an end last arrived.
    heard: Instant,
    last_metrics: Instant,
    last_log: Instant,
    /// The partitions the reader points at.
    reading: BTreeSet<i32>,
    /// Whether the last step handed anything over (more may be waiting).
    busy: bool,
}

impl Restore {
    /// Starts restoring `partitions`: one at a time, the smallest first,
    /// each from its beginning (the fetch then serves one partition, in
    /// large fetches; see the restore consumer's settings).
    pub fn start(
        broker: &impl Broker,
        policies: &Policies,
        timeout: Duration,
        partitions: &BTreeSet<i32>,
    ) -> Result<Restore, ProcessorError> {
        let now = Instant::now();
        let parts: BTreeMap<i32, Part> = partitions
            .iter()
            .map(|&p| {
                let bounds = broker.changelog_bounds(p);
                let progress = Progress {
                    records: 0,
                    position: bounds.map_or(0, |(low, _)| low),
                    bounds,
                    started: now,
                };
                let part = Part {
                    rebuild: Rebuild::new(policies.live),
                    shadows: ShadowRebuild::new(policies.shadows.clone()),
                    writer: None,
                    progress,
                };
                (p, part)
            })
            .collect();
        let total: u64 = parts.values().filter_map(|p| p.progress.remaining()).sum();
        tracing::info!(
            ?partitions,
            changelog_offsets = total,
            "restoring partitions from the changelog"
        );
        let mut restore = Restore {
            parts,
            decoder: Decoder::new(Contract::ChangelogRecord),
            timeout,
            heard: now,
            last_metrics: now,
            last_log: now,
            reading: BTreeSet::new(),
            busy: false,
        };
        restore.read_next(broker)?;
        restore.report(true);
        Ok(restore)
    }

    /// Points the reader at the smallest partition left (by the offsets
    /// its changelog held at the start; unknown sizes last), together with
    /// every partition listed as empty, each from its beginning; at nothing
    /// once all are read. An empty partition costs a round trip or two
    /// whatever its company, so they go along with the next one rather
    /// than one after another; they are still read, not skipped, since a
    /// listed end can trail the real one.
    fn read_next(&mut self, broker: &impl Broker) -> Result<(), ProcessorError> {
        let size = |part: &Part| {
            part.progress
                .bounds
                .map_or(i64::MAX, |(low, high)| high - low)
        };
        let smallest = self
            .parts
            .iter()
            .filter(|(_, part)| size(part) > 0)
            .min_by_key(|(&p, part)| (size(part), p))
            .map(|(&p, _)| p);
        self.reading = self
            .parts
            .iter()
            .filter(|(_, part)| size(part) <= 0)
            .map(|(&p, _)| p)
            .chain(smallest)
            .collect();
        let from = self.reading.iter().map(|&p| (p, None)).collect();
        broker.read_changelog_from(&from)
    }

    /// Whether every partition is restored.
    pub fn is_done(&self) -> bool {
        self.parts.is_empty()
    }

    /// The partitions not yet restored.
    pub fn partitions(&self) -> BTreeSet<i32> {
        self.parts.keys().copied().collect()
    }

    /// Whether the last step handed records over: the next may find more
    /// at once.
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Stops restoring `gone` (revoked): what was read of them is dropped,
    /// and the reader moves on if it was reading one of them.
    pub fn forget(
        &mut self,
        broker: &impl Broker,
        gone: &BTreeSet<i32>,
    ) -> Result<(), ProcessorError> {
        self.parts.retain(|p, _| !gone.contains(p));
        if self.reading.is_disjoint(gone) {
            return Ok(());
        }
        // Those of the pass already read are done as well.
        self.reading
            .retain(|p| !gone.contains(p) && self.parts.contains_key(p));
        if self.reading.is_empty() {
            return self.read_next(broker);
        }
        // The others read with them go on from where they were.
        let from = self
            .reading
            .iter()
            .map(|p| (*p, Some(self.parts[p].progress.position)))
            .collect();
        broker.read_changelog_from(&from)
    }

    /// Reads what the changelog has, waiting up to `wait` for it; returns
    /// the partitions read to their end.
    pub fn step(
        &mut self,
        broker: &impl Broker,
        wait: Duration,
    ) -> Result<Vec<Restored>, ProcessorError> {
        let mut done = Vec::new();
        let Restore { parts, decoder, .. } = self;
        let handed = broker.read_changelog(wait, STEP_RECORDS, &mut |read| match read {
            ChangelogRead::Record {
                partition,
                offset,
                key,
                value,
                names_commit,
                writer,
            } => {
                let Some(part) = parts.get_mut(&partition) else {
                    return Ok(());
                };
                let corrupt = |reason: String| ProcessorError::CorruptChangelog {
                    partition,
                    offset,
                    reason,
                };
                let record = value
                    .map(|bytes| decoder.decode::<ChangelogRecord>(bytes))
                    .transpose()
                    .map_err(|e| corrupt(e.to_string()))?;
                part.progress.records += 1;
                part.progress.position = part.progress.position.max(offset + 1);
                if let Some((policy, variant)) = parse_shadow_key(key) {
                    return part
                        .shadows
                        .push(policy, variant, record, names_commit)
                        .map_err(|e| corrupt(e.to_string()));
                }
                let key = std::str::from_utf8(key).map_err(|e| corrupt(e.to_string()))?;
                if key == ChangelogRecord::PARTITION_KEY {
                    if let Some(writer) = writer {
                        part.writer = Some(String::from_utf8_lossy(writer).into_owned());
                    }
                    part.shadows
                        .push_partition(&record)
                        .map_err(|e| corrupt(e.to_string()))?;
                }
                part.rebuild
                    .push(key, record, names_commit)
                    .map_err(|e| corrupt(e.to_string()))?;
                Ok(())
            }
            ChangelogRead::End { partition } => {
                if let Some(part) = parts.remove(&partition) {
                    done.push((partition, part));
                }
                Ok(())
            }
        })?;
        self.busy = handed > 0;
        if handed > 0 {
            self.heard = Instant::now();
        } else if self.heard.elapsed() > self.timeout {
            // A restore may take as long as the changelog needs; it times
            // out only when nothing at all has arrived for the timeout.
            return Err(ProcessorError::RestoreTimeout {
                partitions: self.parts.keys().copied().collect(),
                timeout: self.timeout,
            });
        }
        let restored = done
            .into_iter()
            .map(|(p, part)| self.finish(p, part))
            .collect::<Result<Vec<_>, _>>()?;
        // The next partitions once all those read together are done.
        if !restored.is_empty() && self.reading.iter().all(|p| !self.parts.contains_key(p)) {
            self.read_next(broker)?;
        }
        self.report(false);
        Ok(restored)
    }

    fn finish(&mut self, p: i32, part: Part) -> Result<Restored, ProcessorError> {
        let Part {
            rebuild,
            shadows,
            writer,
            mut progress,
        } = part;
        let corrupt = |e: earlykill_core::monitor::RestoreError| ProcessorError::CorruptChangelog {
            partition: p,
            offset: -1,
            reason: e.to_string(),
        };
        let skipped = shadows.skipped;
        let (shadows, shadows_torn) = shadows.finish().map_err(corrupt)?;
        if skipped > 0 {
            tracing::info!(
                partition = p,
                records = skipped,
                "changelog records of shadow policies no longer configured skipped"
            );
        }
        let Rebuilt {
            monitor,
            offsets,
            torn,
            records,
        } = rebuild
            .finish()
            .map_err(|e| ProcessorError::CorruptChangelog {
                partition: p,
                offset: -1,
                reason: e.to_string(),
            })?;
        // Read to its end: nothing remains.
        progress.bounds = progress
            .bounds
            .map(|(low, _)| (low, progress.position.max(low)));
        telemetry::restore_progress(p, progress.records, progress.remaining());
        if torn > 0 {
            tracing::warn!(
                partition = p,
                records = torn,
                "changelog records of a commit that never completed ignored; their input is read again and the next commit rewrites them"
            );
        }
        tracing::info!(
            partition = p,
            records,
            active_sessions = monitor.active_sessions(),
            held = monitor.held_interactions(),
            clock = monitor.clock(),
            ?offsets,
            writer = writer.as_deref().unwrap_or("-"),
            elapsed_ms = progress.started.elapsed().as_millis() as u64,
            "partition restored"
        );
        let mut restored = Partition::new(monitor, offsets);
        restored.shadows = shadows;
        restored.changelog_next = progress.position;
        // The first commit writes the keys a torn commit left behind.
        restored.dirty = torn + shadows_torn > 0;
        Ok(Restored {
            partition: p,
            part: restored,
            records,
            writer,
        })
    }

    /// The progress metrics every second, and a log line every few (or
    /// now, with `log`).
    fn report(&mut self, log: bool) {
        if !log && self.last_metrics.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_metrics = Instant::now();
        let log = log || self.last_log.elapsed() >= LOG_EVERY;
        if log {
            self.last_log = Instant::now();
        }
        for (&p, part) in &self.parts {
            let progress = &part.progress;
            let remaining = progress.remaining();
            telemetry::restore_progress(p, progress.records, remaining);
            if log {
                let eta = progress
                    .eta()
                    .map(|eta| format!("{:.1}", eta.as_secs_f64()));
                tracing::info!(
                    partition = p,
                    records = progress.records,
                    remaining,
                    eta_seconds = eta.as_deref().unwrap_or("-"),
                    "restoring"
                );
            }
        }
    }
}

/// Rebuilds `partitions` from the changelog at once (a recovery, or a
/// test), each as soon as it is read calling `each`.
pub(crate) fn restore(
    broker: &impl Broker,
    policies: &Policies,
    timeout: Duration,
    partitions: &BTreeSet<i32>,
    mut each: impl FnMut(Restored),
) -> Result<(), ProcessorError> {
    if partitions.is_empty() {
        return Ok(());
    }
    let mut restore = Restore::start(broker, policies, timeout, partitions)?;
    while !restore.is_done() {
        for restored in restore.step(broker, Duration::from_millis(100))? {
            each(restored);
        }
    }
    Ok(())
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
pub(crate) fn starts<'a>(restored: impl IntoIterator<Item = (i32, &'a Partition)>) -> Vec<Start> {
    let mut starts = Vec::new();
    for (partition, part) in restored {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64, started: Instant) -> Progress {
        Progress {
            records: 0,
            position,
            bounds: Some((10, 110)),
            started,
        }
    }

    #[test]
    fn what_remains_is_counted_to_the_end_the_restore_began_with() {
        let now = Instant::now();
        assert_eq!(at(60, now).remaining(), Some(50));
        assert_eq!(at(0, now).remaining(), Some(100), "the log starts at 10");
        assert_eq!(at(200, now).remaining(), Some(0));
        let unknown = Progress {
            bounds: None,
            ..at(60, now)
        };
        assert_eq!(unknown.remaining(), None);
        assert_eq!(unknown.eta(), None);
    }

    #[test]
    fn the_eta_follows_the_rate_so_far() {
        let ten_seconds_ago = Instant::now() - Duration::from_secs(10);
        // Half read in ten seconds: ten more.
        let eta = at(60, ten_seconds_ago).eta().expect("an eta").as_secs_f64();
        assert!((9.9..11.0).contains(&eta), "{eta}");
        assert_eq!(at(10, ten_seconds_ago).eta(), None, "nothing read yet");
    }
}
