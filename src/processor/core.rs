//! The processor's core: the parts wired together. Each input record goes
//! through the intake into its partition (folded at once, or buffered in
//! the merge), each step folds what the merges release and advances idle
//! clocks, the output writes what the fold decides in the committer's open
//! unit of work, and a failed unit is aborted and every partition rewound
//! through the restorer.
//!
//! Everything here reaches Kafka through [`Broker`], so the whole protocol
//! runs in unit tests against the in-memory fake (`tests` below); the
//! shell (`shell.rs`) drives it with librdkafka's clients.
//!
//! It is the processor's longest file and stays one piece on purpose
//! (under the 800 lines `tests/suite/architecture.rs` allows any file): it
//! is the one place where the parts meet, and each method is one step of
//! the protocol (accept, step, commit, recover, assign, revoke) that reads
//! best beside the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::broker::{Broker, Inbound, Position};
use super::committer::{Committer, Failure};
use super::handoff::Handoff;
use super::intake::{DeadLetter, Intake};
use super::lifecycle::{Lifecycle, Phase};
use super::output::Output;
use super::partition::Partition;
use super::status::{StatusSink, MAX_ABORTED_LISTED};
use super::ProcessorConfig;
use super::{restorer, ProcessorError, Sessions, Status};
use crate::telemetry;
use earlykill_core::event::codec::Framing;
use earlykill_core::event::{DecisionKind, InputTopic, Millis, MonitoringDecision};
use earlykill_core::monitor::{ChangelogChange, Holdout};

/// Longest the loop sleeps in a poll when nothing is due.
const MAX_POLL: Duration = Duration::from_millis(100);
/// Most records the merge releases into one batched fold.
const FOLD_RUN: usize = 256;
/// How often the metrics kept as plain counters are copied out.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The write side the fold feeds: records sent in the committer's open
/// unit of work, counted in the status.
struct Out {
    output: Output,
    committer: Committer,
    counters: Status,
    /// Fault injection: stop as a crash would after this many decisions.
    #[cfg(feature = "test-hooks")]
    crash_after_decisions: Option<u64>,
}

impl Out {
    fn begin(&mut self, broker: &impl Broker) -> Result<(), Failure> {
        self.committer.begin(broker)
    }

    /// Sends the decisions a fold made, emptying `decisions`; `appended` is
    /// when the record that made them was appended (none for a timeout).
    fn decisions(
        &mut self,
        broker: &impl Broker,
        decisions: &mut Vec<MonitoringDecision>,
        appended: Option<Millis>,
    ) -> Result<(), Failure> {
        self.send(broker, decisions.drain(..), appended)
    }

    /// Sends `decisions`, which one record (or none, for timeouts) made.
    fn send(
        &mut self,
        broker: &impl Broker,
        decisions: impl Iterator<Item = MonitoringDecision>,
        appended: Option<Millis>,
    ) -> Result<(), Failure> {
        let mut decisions = decisions.peekable();
        if decisions.peek().is_none() {
            return Ok(());
        }
        self.begin(broker)?;
        for decision in decisions {
            let label = self.committer.work().label();
            self.output
                .decision(broker, &decision, label)
                .map_err(|e| self.committer.failed_output(broker, e))?;
            let due = due(&decision, appended);
            self.committer.decided(decision, due);
            self.counters.decisions += 1;
            #[cfg(feature = "test-hooks")]
            if let Some(n) = self.crash_after_decisions {
                if self.counters.decisions >= n {
                    return Err(Failure::Fatal(ProcessorError::InjectedCrash {
                        decisions: self.counters.decisions,
                    }));
                }
            }
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        broker: &impl Broker,
        topic: InputTopic,
        dead: &DeadLetter,
    ) -> Result<(), Failure> {
        self.begin(broker)?;
        self.output
            .dead_letter(broker, topic, dead)
            .map_err(|e| self.committer.failed_output(broker, e))?;
        self.counters.dead_letters += 1;
        Ok(())
    }
}

/// Everything the loop and the rebalance callback share.
pub(crate) struct Core {
    config: Arc<ProcessorConfig>,
    intake: Intake,
    out: Out,
    partitions: BTreeMap<i32, Partition>,
    /// The fold's decisions, emptied as they are sent.
    decisions: Vec<MonitoringDecision>,
    status: StatusSink,
    /// Input records read, per input topic (in `rank` order).
    records_in: [u64; 3],
    /// Records in (per input topic) and out (decisions, changelog, dead
    /// letters) as last added to the metrics: each worker adds its own.
    flushed: [u64; 6],
    /// Partitions of each input topic, checked at start: the topic queues
    /// cover exactly these.
    input_partitions: i32,
    /// The API's view of the sessions, updated after each commit.
    read: Sessions,
    /// Revoked partitions' committed state, for their next owner among the
    /// instance's workers.
    handoff: Handoff,
    /// The assigned partitions still being restored, each live as soon as
    /// it is read (`restoring.rs`).
    restoring: Option<restoring::Restoring>,
    /// Where the worker is in its life; a fatal error from the
    /// rebalance callback waits in it for the loop to return it.
    lifecycle: Lifecycle,
    /// When the metrics that are not counted as they happen were last
    /// copied out.
    last_flush: Instant,
}

impl Core {
    pub fn new(
        config: Arc<ProcessorConfig>,
        framing: Framing,
        input_partitions: i32,
        status: StatusSink,
        read: Sessions,
        handoff: Handoff,
    ) -> Core {
        let counters = Status {
            incarnation: incarnation(&config.instance_id),
            input_partitions,
            ..Status::default()
        };
        if let Holdout::Spare { parts_per_million } = config.monitor.holdout {
            read.set_holdout(parts_per_million);
        }
        Core {
            intake: Intake::new(&config),
            out: Out {
                output: Output::new(config.clone(), framing),
                committer: Committer::new(
                    config.guarantee,
                    counters.incarnation.clone(),
                    config.transactional_id(),
                ),
                counters,
                #[cfg(feature = "test-hooks")]
                crash_after_decisions: config.crash_after_decisions,
            },
            config,
            partitions: BTreeMap::new(),
            decisions: Vec::new(),
            status,
            records_in: [0; 3],
            flushed: [0; 6],
            input_partitions,
            read,
            handoff,
            restoring: None,
            lifecycle: Lifecycle::default(),
            last_flush: Instant::now(),
        }
    }

    /// The input topic named `topic`, if it is one.
    pub fn role(&self, topic: &str) -> Option<InputTopic> {
        self.intake.role(topic)
    }

    /// Moves the worker to `phase` (see [`Lifecycle`]), for the status,
    /// readiness and the API.
    pub fn become_(&mut self, phase: Phase) {
        let was_running = self.lifecycle.phase().is_running();
        self.lifecycle.become_(phase);
        let running = self.lifecycle.phase().is_running();
        if running != was_running {
            self.read.set_running(running);
        }
        self.out.counters.phase = self.lifecycle.phase();
        self.publish();
    }

    /// A fatal error: the worker commits nothing more, and the loop
    /// returns the first such error.
    pub fn fail(&mut self, error: ProcessorError) {
        self.lifecycle.fail(error);
        self.out.counters.phase = self.lifecycle.phase();
    }

    /// The error that failed the worker, once.
    pub fn take_error(&mut self) -> Option<ProcessorError> {
        self.lifecycle.take_error()
    }

    /// Whether every assigned partition has been given back.
    pub fn owns_nothing(&self) -> bool {
        self.partitions.is_empty() && self.restoring.is_none()
    }

    /// Decodes and validates one input record, and folds it at once if the
    /// merge would release it at once; else puts it in its partition's
    /// merge (see [`Core::accept_batch`]).
    pub fn accept(&mut self, broker: &impl Broker, record: &impl Inbound) -> Result<(), Failure> {
        match self.intake.role(record.topic()) {
            Some(topic) => self.accept_batch(broker, topic, std::slice::from_ref(record)),
            None => Ok(()),
        }
    }

    /// The consumer read `topic` of partition `p` to its end.
    pub fn reached_end(&mut self, topic: InputTopic, p: i32) {
        if let Some(part) = self.partitions.get_mut(&p) {
            part.reached_end(topic);
        }
    }

    /// How long the next poll may block: until the next commit, timeout or
    /// merge wait falls due.
    pub fn poll_timeout(&self, broker: &impl Broker) -> Duration {
        if self.restoring.as_ref().is_some_and(|r| r.is_busy()) {
            // The changelog reader had records: there may be more now.
            return Duration::ZERO;
        }
        let mut timeout = MAX_POLL;
        if let Some(since) = self.out.committer.work().open_since() {
            timeout = timeout.min(self.config.commit_interval.saturating_sub(since.elapsed()));
        }
        let now = wall_millis();
        let lag = self.config.idle_lag.as_millis() as Millis;
        for (&p, part) in &self.partitions {
            let caught =
                |t| part.caught_up(t, || broker.fetched_watermarks(t, p).map(|(_, high)| high));
            // A timer wakes the loop only where the idle clock may move:
            // behind a held merge (or a topic not read to its end) it
            // cannot fire, and waking for it would spin until the merge
            // wait is over. That wait, or the input, wakes the loop then.
            if part.may_idle(InputTopic::ALL.map(caught)) {
                if let Some(due) = part.next_due() {
                    let wait = due.saturating_add(lag).saturating_sub(now).max(0);
                    timeout = timeout.min(Duration::from_millis(wait as u64));
                }
            }
            if let Some(wait) = part.merge_wake(self.config.merge_wait, caught) {
                timeout = timeout.min(wait);
            }
        }
        timeout
    }

    /// Folds what every partition's merge releases, advances idle clocks,
    /// applies backpressure, and commits when due.
    pub fn step(&mut self, broker: &impl Broker, input_idle: bool) -> Result<(), ProcessorError> {
        self.restore_step(broker)?;
        if let Err(failure) = self.fold(broker) {
            return self.recover(broker, failure);
        }
        let work = self.out.committer.work();
        let due = work.open_since().is_some_and(|since| {
            since.elapsed() >= self.config.commit_interval || (input_idle && work.decisions() > 0)
        });
        if due {
            if let Err(failure) = self.commit(broker) {
                return self.recover(broker, failure);
            }
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush_metrics(broker);
        }
        Ok(())
    }

    fn fold(&mut self, broker: &impl Broker) -> Result<(), Failure> {
        let Core {
            config,
            out,
            partitions,
            decisions,
            ..
        } = self;
        let now = Instant::now();
        let wall = wall_millis();
        let mut idle = Vec::new();
        for (&p, part) in partitions.iter_mut() {
            if std::mem::take(&mut part.unsettled) {
                part.monitor.settle(decisions);
                let mut shadow = Vec::new();
                part.shadows.settle(&mut shadow);
                if !decisions.is_empty() || !shadow.is_empty() {
                    part.dirty = true;
                    out.decisions(broker, decisions, None)?;
                    out.shadow_decisions(broker, &mut shadow)?;
                }
            }
            let caught = part.caught(|t| broker.fetched_watermarks(t, p).map(|(_, high)| high));
            let waited = part.waited(now, config.merge_wait);
            let mut released = false;
            let mut run = Vec::with_capacity(FOLD_RUN);
            loop {
                // A run of records in event-time order, folded at once:
                // the fold prefetches each group's lookups (see
                // `Monitor::apply_batch`), which pays at a large state.
                while run.len() < FOLD_RUN {
                    match part.pop(waited, caught) {
                        Some(next) => run.push(next),
                        None => break,
                    }
                }
                if run.is_empty() {
                    break;
                }
                if !released {
                    // Folding moves offsets and state even when it decides
                    // nothing: that needs a commit too.
                    out.begin(broker)?;
                    released = true;
                }
                let items = fold::released(&run);
                fold::fold_items(out, broker, config, p, part, decisions, &items)?;
                run.clear();
            }
            part.after_release(released, now, caught);
            if let Some(target) = part.idle_target(caught, wall, config.idle_lag) {
                idle.push((p, target));
            }
            for (topic, pause) in part.backpressure(config) {
                match broker.pause(topic, p, pause) {
                    Ok(()) => part.set_paused(topic, pause),
                    Err(e) => tracing::warn!(error = %e, partition = p, "pause/resume failed"),
                }
            }
        }
        self.advance_idle(broker, idle)
    }

    /// Advances idle partitions' clocks from the wall clock, publishing what
    /// that decides.
    ///
    /// The wall clock is not in the input, so a re-fold after a crash would
    /// not make the same advance at the same point: under at-least-once it
    /// could publish a kill where a timeout was already published. So there
    /// the advance is recorded before it is made: the open work is
    /// committed, then each partition's record carrying the clock it
    /// advances to, and only then the decisions; a restore from that record
    /// settles the clock and makes the same decisions again (exactly-once
    /// needs none of this: the advance commits atomically with its
    /// decisions or not at all).
    fn advance_idle(
        &mut self,
        broker: &impl Broker,
        idle: Vec<(i32, Millis)>,
    ) -> Result<(), Failure> {
        if idle.is_empty() {
            return Ok(());
        }
        if self.out.committer.records_advances_first() {
            self.commit(broker)?;
            let records: Vec<(i32, ChangelogChange)> = idle
                .iter()
                .filter_map(|&(p, target)| Some((p, self.partitions.get(&p)?.own_record(target))))
                .collect();
            let out = &mut self.out;
            out.committer
                .record_advance(broker, &mut out.output, &records)?;
        }
        for (p, target) in idle {
            let Some(part) = self.partitions.get_mut(&p) else {
                continue;
            };
            part.monitor.advance_to(target, &mut self.decisions);
            let mut shadow = Vec::new();
            part.shadows.advance_to(target, &mut shadow);
            part.dirty = true;
            self.out.begin(broker)?;
            self.out.decisions(broker, &mut self.decisions, None)?;
            self.out.shadow_decisions(broker, &mut shadow)?;
        }
        Ok(())
    }

    /// Commits the open work with the changelog of every changed partition
    /// and the input offsets (see [`Committer::commit`]).
    pub fn commit(&mut self, broker: &impl Broker) -> Result<(), Failure> {
        let Some(opened) = self.out.committer.work().open_since() else {
            return Ok(());
        };
        let started = Instant::now();
        self.status.update(|status| status.committing = true);
        let drained: Vec<_> = (self.partitions.iter_mut())
            .filter(|(_, part)| part.dirty)
            .map(|(&p, part)| (p, part.drain_changes()))
            .collect();
        // Every session record before the partition records (the
        // positions): see `Committer::commit`. Moved once, into a list
        // of the right size (a commit at a large state has tens of
        // thousands).
        let sessions: usize = drained.iter().map(|(_, (changes, _))| changes.len()).sum();
        let mut changes = Vec::with_capacity(sessions + drained.len());
        let mut positions = Vec::with_capacity(drained.len());
        for (p, (sessions, own)) in drained {
            changes.extend(sessions.into_iter().map(|change| (p, change)));
            positions.push((p, own));
        }
        changes.append(&mut positions);
        let offsets = self.input_offsets();
        let listed = self.listed(&offsets);
        let out = &mut self.out;
        let decisions = out
            .committer
            .commit(broker, &mut out.output, &changes, &offsets)?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            open_ms = opened.elapsed().as_millis() as u64,
            decisions = decisions.len(),
            "committed"
        );
        let counters = &mut out.counters;
        counters.last_committed_transaction = out.committer.work().number();
        counters.committed_decisions += decisions.len() as u64;
        let now = wall_millis();
        for (decision, due) in decisions {
            let latency = Duration::from_millis((now - due).max(0) as u64);
            if decision.kind != DecisionKind::TimedOut {
                counters.latency.record(latency);
            }
            telemetry::decision(&decision, latency);
        }
        counters.commits += 1;
        telemetry::commit();
        // The offsets show as committed once the API sees their changes.
        let status = self.status.clone();
        self.read.committed(changes, move || {
            status.update(|status| status.committed = listed);
        });
        self.publish();
        Ok(())
    }

    /// The next offset to read of every owned input topic partition.
    fn input_offsets(&self) -> Vec<Position> {
        let mut offsets = Vec::with_capacity(self.partitions.len() * 3);
        for (&partition, part) in &self.partitions {
            for topic in InputTopic::ALL {
                if let Some(offset) = part.position(topic) {
                    offsets.push(Position {
                        topic,
                        partition,
                        offset,
                    });
                }
            }
        }
        offsets
    }

    /// `offsets` as `Status::committed` lists them.
    fn listed(&self, offsets: &[Position]) -> Vec<((String, i32), i64)> {
        offsets
            .iter()
            .map(|p| {
                let topic = self.config.topics.input(p.topic).to_owned();
                ((topic, p.partition), p.offset)
            })
            .collect()
    }

    /// After a failed commit or produce: abort, and rewind every partition
    /// to its last committed state and offsets. Fatal errors, and too many
    /// failures in a row, end the loop.
    pub fn recover(
        &mut self,
        broker: &impl Broker,
        failure: Failure,
    ) -> Result<(), ProcessorError> {
        let (attempt, backoff, error) = self.out.committer.after_failure(failure)?;
        tracing::warn!(
            %error,
            attempt,
            backoff_ms = backoff.as_millis() as u64,
            "transaction failed; aborting and rewinding to the last commit"
        );
        self.abort(broker)?;
        // Backing off before the retry, not waiting for anything: the
        // broker needs time to recover from whatever failed.
        std::thread::sleep(backoff);
        let mut owned: BTreeSet<i32> = self.partitions.keys().copied().collect();
        // Partitions still restoring are restored with the others here,
        // and everything is assigned afresh rather than rewound (they are
        // not in the consumer's assignment yet).
        let restoring = self.stop_restoring();
        owned.extend(&restoring);
        self.partitions.clear();
        self.restore(broker, &owned)?;
        let starts = restorer::starts(self.partitions.iter().map(|(&p, part)| (p, part)));
        self.restored_positions_are_committed();
        self.publish();
        let (action, moved) = if restoring.is_empty() {
            (
                "rewind the input to the last commit",
                broker.rewind(&starts),
            )
        } else {
            ("assign the restored partitions", broker.assign(&starts))
        };
        moved.map_err(|source| ProcessorError::Kafka { action, source })
    }

    /// Aborts the open unit of work, counting it.
    pub fn abort(&mut self, broker: &impl Broker) -> Result<(), ProcessorError> {
        let out = &mut self.out;
        if let Some(number) = out.committer.abort(broker)? {
            let aborted = &mut out.counters.aborted_transactions;
            if aborted.len() == MAX_ABORTED_LISTED {
                aborted.remove(0);
            }
            aborted.push(number);
        }
        out.counters.aborts += 1;
        telemetry::abort();
        Ok(())
    }

    /// Right after a restore every owned position is a committed one.
    fn restored_positions_are_committed(&mut self) {
        let listed = self.listed(&self.input_offsets());
        self.read.flush();
        self.status.update(|status| status.committed = listed);
    }

    /// Of `partitions`, those parked in the handoff by their previous
    /// owner in this instance whose changelog nobody wrote since: their
    /// state, shown to the API as a restore would.
    fn handed_over(
        &mut self,
        broker: &impl Broker,
        partitions: &BTreeSet<i32>,
    ) -> Result<BTreeMap<i32, Partition>, ProcessorError> {
        let mut parked = self.handoff.take(partitions);
        if parked.is_empty() {
            return Ok(parked);
        }
        let from = parked
            .iter()
            .map(|(&p, part)| (p, part.changelog_next))
            .collect();
        let unchanged = broker.changelog_unchanged(&from)?;
        parked.retain(|p, _| unchanged.contains(p));
        for (&p, part) in &parked {
            self.read.restored(p, &part.monitor, &part.shadows);
        }
        Ok(parked)
    }

    /// The group takes `gone` away: the open work is committed first
    /// (aborted if that fails), then their state is dropped, or, after a
    /// commit, parked in the handoff for their next owner in this
    /// instance.
    pub fn revoked(&mut self, broker: &impl Broker, gone: &BTreeSet<i32>) {
        let mut committed = false;
        if self.lifecycle.phase().may_commit() {
            committed = true;
            if let Err(failure) = self.commit(broker) {
                committed = false;
                if let Failure::Abortable(e) = &failure {
                    tracing::warn!(error = %e, "commit on revocation failed; aborting");
                }
                if let Err(e) = self.abort(broker) {
                    self.fail(e);
                }
                if let Failure::Fatal(e) = failure {
                    self.fail(e);
                }
            }
        }
        self.restoring_revoked(broker, gone);
        for p in gone {
            if let Some(part) = self.partitions.remove(p) {
                if committed {
                    let written = broker.changelog_written(*p);
                    self.handoff.park(*p, part.hand_over(written));
                }
            }
        }
        // (`revoked` waits for the commits before.)
        self.read.revoked(gone);
        self.status
            .update(|status| status.committed.retain(|((_, p), _)| !gone.contains(p)));
        let topics = InputTopic::ALL.map(|t| self.config.topics.input(t));
        for &p in gone {
            telemetry::partition_revoked(topics, p);
        }
        tracing::info!(partitions = ?gone, "partitions revoked");
        self.publish();
    }

    /// Publishes the status.
    pub fn publish(&self) {
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        let counters = &self.out.counters;
        self.status.update(|status| {
            *status = Status {
                partitions,
                // Set when the API sees a commit (see `commit`).
                committed: std::mem::take(&mut status.committed),
                ..counters.clone()
            }
        });
    }
}

/// When `decision` was due, for its latency: a timeout at its deadline,
/// anything else when the record that triggered it was appended.
fn due(decision: &MonitoringDecision, appended: Option<Millis>) -> Millis {
    match (decision.kind, appended) {
        (DecisionKind::TimedOut, _) | (_, None) => decision.deadline,
        (_, Some(appended)) => appended,
    }
}

/// A name for this run of instance `instance`, unique in this process and
/// across restarts.
fn incarnation(instance: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("{instance}@{}.{n}", wall_millis())
}

/// The wall clock in ms since the epoch, read for every input record: from
/// `SystemTime` directly (chrono's `Utc::now` builds a calendar date on the
/// way, about 2 % of a worker's time on a backlog).
fn wall_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as Millis)
}

mod fold;
mod metrics;
mod restoring;
mod shadow;
#[cfg(test)]
mod tests;
