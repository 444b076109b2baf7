//! What a processor has done so far: the [`Status`] it publishes for
//! readiness, tests and operators, and its decision-latency histogram.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lifecycle::Phase;
use crate::telemetry;

/// How many aborted transaction numbers, and how many restores, [`Status`]
/// lists.
pub const MAX_ABORTED_LISTED: usize = 1024;

/// What a processor has done so far, for readiness, tests and operators.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Where the worker is in its life (with several workers, the least
    /// advanced of the running ones: see [`Phase`]).
    pub phase: Phase,
    /// Partitions assigned and being restored: not processed yet.
    pub restoring: Vec<i32>,
    /// Partitions assigned and restored.
    pub partitions: Vec<i32>,
    /// Partitions of each input topic, counted at start (0 before).
    pub input_partitions: i32,
    /// Why partitions are stalled: input unread and no progress for
    /// `stall-seconds` (one line each).
    pub stalled: Vec<String>,
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
    /// Partitions assigned that kept their state from their previous owner
    /// in this instance (a worker, or the same one after an eager
    /// rebalance) instead of a restore: nobody wrote their changelog since.
    pub handed_over: u64,
    /// Per owned `(topic, partition)`, the committed input offset: the one
    /// included in the last commit, or restored from the changelog.
    pub committed: Vec<((String, i32), i64)>,
    /// Latency of committed decisions that a record triggered (all but
    /// timeouts): from the record's append to the commit.
    pub latency: LatencyHistogram,
    /// With more than one worker thread, each worker's own status, in
    /// worker order: the fields above are their sums and unions, except
    /// `incarnation`, `last_committed_transaction` and
    /// `aborted_transactions`, which only a worker has (each worker runs
    /// its own transactions) and which are empty here. Empty with one
    /// worker, whose status is this one.
    pub workers: Vec<Status>,
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

    /// Adds what `other` counted.
    pub fn add(&mut self, other: &LatencyHistogram) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
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
    /// Whether the transaction labelled `label` (`<incarnation>/<number>`,
    /// the `earlykill_transaction` header) committed in this run, by this
    /// status or one of its workers'.
    pub fn transaction_committed(&self, label: &str) -> bool {
        let Some((run, n)) = label.rsplit_once('/') else {
            return false;
        };
        let Ok(n) = n.parse::<u64>() else {
            return false;
        };
        let own = self.incarnation == run
            && n <= self.last_committed_transaction
            && !self.aborted_transactions.contains(&n);
        own || self.workers.iter().any(|w| w.transaction_committed(label))
    }

    /// The status of an instance whose workers' statuses are `workers`.
    fn merged(workers: &[Status]) -> Status {
        if let [only] = workers {
            return only.clone();
        }
        let mut all = Status {
            phase: merged_phase(workers.iter().map(|w| w.phase)),
            committing: workers.iter().any(|w| w.committing),
            workers: workers.to_vec(),
            ..Status::default()
        };
        for w in workers {
            all.input_partitions = all.input_partitions.max(w.input_partitions);
            all.restoring.extend(&w.restoring);
            all.stalled.extend(w.stalled.iter().cloned());
            all.partitions.extend(&w.partitions);
            all.records_in += w.records_in;
            all.dead_letters += w.dead_letters;
            all.decisions += w.decisions;
            all.committed_decisions += w.committed_decisions;
            all.commits += w.commits;
            all.aborts += w.aborts;
            all.restored_from.extend(w.restored_from.iter().cloned());
            all.restored_records += w.restored_records;
            all.restore_time += w.restore_time;
            all.handed_over += w.handed_over;
            all.committed.extend(w.committed.iter().cloned());
            all.latency.add(&w.latency);
        }
        all.restoring.sort_unstable();
        all.partitions.sort_unstable();
        all.committed.sort();
        all
    }

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

/// Where one worker publishes its status: its own slot, merged with the
/// other workers' into the instance's [`StatusWatch`]. Publishing takes a
/// lock shared by the workers; they publish at commits and rebalances,
/// never per record.
#[derive(Clone)]
pub(crate) struct StatusSink {
    worker: usize,
    shared: Arc<Shared>,
}

struct Shared {
    watch: StatusWatch,
    workers: Mutex<Vec<Worker>>,
}

#[derive(Default)]
struct Worker {
    status: Status,
    active_sessions: usize,
}

impl StatusSink {
    /// The sinks of `workers` workers publishing to `watch`.
    pub fn workers(watch: StatusWatch, workers: usize) -> Vec<StatusSink> {
        let shared = Arc::new(Shared {
            watch,
            workers: Mutex::new((0..workers).map(|_| Worker::default()).collect()),
        });
        (0..workers)
            .map(|worker| StatusSink {
                worker,
                shared: shared.clone(),
            })
            .collect()
    }

    /// This worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Changes this worker's status and publishes the instance's.
    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut workers = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut workers[self.worker].status);
        let statuses: Vec<Status> = workers.iter().map(|w| w.status.clone()).collect();
        let all = Status::merged(&statuses);
        telemetry::partitions(all.restoring.len(), all.partitions.len());
        // Under the lock: the watch sees the workers' changes in order.
        self.shared.watch.update(|status| *status = all);
    }

    /// This worker's active sessions; the gauge shows the instance's.
    pub fn sessions_active(&self, active: usize) {
        let mut workers = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        workers[self.worker].active_sessions = active;
        telemetry::sessions_active(workers.iter().map(|w| w.active_sessions).sum());
    }
}

/// An instance's phase from its workers': the least advanced of the running
/// ones (a failed worker first, then a stopping one, then one waiting for
/// its assignment, restoring, draining, running), so readiness holds only
/// when every worker is ready; with none running, `Dead` once any has
/// exited, else `Created`.
fn merged_phase(phases: impl Iterator<Item = Phase> + Clone) -> Phase {
    fn rank(p: Phase) -> u8 {
        match p {
            Phase::Failed => 0,
            Phase::Abandoned => 1,
            Phase::Starting => 2,
            Phase::Restoring => 3,
            Phase::PendingShutdown => 4,
            Phase::Running => 5,
            Phase::Created | Phase::Dead => 6,
        }
    }
    phases
        .clone()
        .filter(|p| p.is_running())
        .min_by_key(|p| rank(*p))
        .unwrap_or_else(|| {
            if phases.clone().any(|p| p == Phase::Dead) {
                Phase::Dead
            } else {
                Phase::Created
            }
        })
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
