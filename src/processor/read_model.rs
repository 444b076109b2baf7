//! The HTTP API's view of a processor's sessions: a concurrent map the
//! processor updates after each commit, so that a status or listing
//! request never waits for the processor (which may sit in a commit, a
//! backoff or a restore for seconds) and the processor never waits for a
//! request.
//!
//! It holds the committed state: what a restart would restore. A session's
//! figures move when the transaction that changed them commits (every
//! `commit-interval-ms`, 100 ms by default).
//!
//! While a processor runs, the commits' changes are applied on the read
//! model's own thread, in order, and each commit's offsets appear in the
//! status only once its changes are in the map. A worker does not wait for
//! a map of a million sessions (its cache misses took a third of a
//! worker's time at that size).

use std::collections::{BTreeSet, BinaryHeap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use dashmap::DashMap;

use earlykill_core::event::{ChangelogRecord, SessionState, SessionStatus};
use earlykill_core::monitor::{holdout, ChangelogChange, Monitor, SessionView};
use earlykill_core::shadow::Shadows;
use foldhash::fast::RandomState;

/// Read access to a running processor's sessions, for the HTTP API.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Model>);

#[derive(Default)]
struct Model {
    /// Workers running.
    running: AtomicUsize,
    /// Every session of this instance's partitions, with its partition:
    /// as stored (the view is made when asked for), under a fast hash (a
    /// restore inserts a million of them).
    sessions: DashMap<Box<str>, (i32, SessionState), RandomState>,
    /// The shadow policies' sessions, by variant: the partition and each
    /// policy's session as stored.
    shadows: DashMap<Box<str>, (i32, PolicySessions), RandomState>,
    /// The hold-out share, in parts per million.
    holdout_ppm: AtomicU32,
    /// The thread that applies commits, while the processor runs.
    applier: Applier,
}

/// Work for the read model's thread, done in the order given.
type Job = Box<dyn FnOnce(&Model) + Send>;

#[derive(Default)]
struct Applier {
    state: Mutex<ApplierState>,
    /// Signalled when no job is pending.
    idle: Condvar,
}

#[derive(Default)]
struct ApplierState {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Jobs sent and not yet done.
    pending: usize,
}

impl Applier {
    fn lock(&self) -> MutexGuard<'_, ApplierState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The read model's thread: does each job, then says so.
fn apply_jobs(model: Arc<Model>, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&model))).is_err() {
            tracing::error!(
                "the API's view of the sessions could not take a commit's changes; \
                 it may show older figures for them until their next change"
            );
        }
        let mut state = model.applier.lock();
        state.pending -= 1;
        if state.pending == 0 {
            model.applier.idle.notify_all();
        }
    }
}

/// Each shadow policy's session of one variant, by policy name.
type PolicySessions = Vec<(Arc<str>, SessionState)>;

/// The view of a stored session.
fn view(entry: &dashmap::mapref::one::Ref<'_, Box<str>, (i32, SessionState)>) -> SessionView {
    SessionView::from_state(entry.key(), entry.value().1.clone())
}

/// The processor behind a [`Sessions`] is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the processor is not running")]
pub struct NotRunning;

/// One page of active sessions, in `variant_id` order.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivePage {
    /// The sessions, at most the limit asked for.
    pub sessions: Vec<SessionView>,
    /// Active sessions on this instance, in all.
    pub total: usize,
    /// The cursor for the next page, when there is one.
    pub next: Option<String>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl Sessions {
    fn running(&self) -> Result<&Model, NotRunning> {
        if self.0.running.load(Ordering::Acquire) > 0 {
            Ok(&self.0)
        } else {
            Err(NotRunning)
        }
    }

    /// The session of `variant_id` on this instance, active or recently
    /// ended; `None` if this instance's partitions do not know it.
    pub fn get(&self, variant_id: &str) -> Result<Option<SessionView>, NotRunning> {
        let model = self.running()?;
        Ok(model.sessions.get(variant_id).map(|entry| view(&entry)))
    }

    /// The session of `variant_id` if it belongs to one of `partitions`
    /// (see [`Sessions::active`] for why the caller names them).
    pub fn get_in(
        &self,
        variant_id: &str,
        partitions: &[i32],
    ) -> Result<Option<SessionView>, NotRunning> {
        let model = self.running()?;
        Ok(model
            .sessions
            .get(variant_id)
            .filter(|entry| partitions.contains(&entry.0))
            .map(|entry| view(&entry)))
    }

    /// What the shadow policies have of `variant_id`, if it belongs to one
    /// of `partitions`: each policy's session as stored, by policy name.
    pub fn shadows_in(
        &self,
        variant_id: &str,
        partitions: &[i32],
    ) -> Result<Vec<(Arc<str>, SessionView)>, NotRunning> {
        let model = self.running()?;
        Ok(model
            .shadows
            .get(variant_id)
            .filter(|entry| partitions.contains(&entry.0))
            .map(|entry| {
                entry
                    .1
                    .iter()
                    .map(|(policy, state)| {
                        (
                            policy.clone(),
                            SessionView::from_state(variant_id, state.clone()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether `variant_id` is in the hold-out share: watched, never
    /// killed live.
    pub fn held_out(&self, variant_id: &str) -> bool {
        holdout::in_share(variant_id, self.0.holdout_ppm.load(Ordering::Relaxed))
    }

    /// The hold-out share the processor runs with, in parts per million.
    pub(crate) fn set_holdout(&self, parts_per_million: u32) {
        self.0
            .holdout_ppm
            .store(parts_per_million, Ordering::Relaxed);
    }

    /// Active sessions on this instance.
    pub fn active_count(&self) -> Result<usize, NotRunning> {
        let model = self.running()?;
        Ok(model
            .sessions
            .iter()
            .filter(|entry| entry.1.status == SessionStatus::Active)
            .count())
    }

    /// Up to `limit` active sessions of `partitions` whose `variant_id`
    /// comes after `after`, in `variant_id` order. Only the partitions the
    /// caller names count: during a rebalance the map may already (a
    /// restore under way) or still (a revocation) hold other partitions'
    /// sessions, which an answer saying which partitions it covers must
    /// leave out.
    pub fn active(
        &self,
        after: Option<&str>,
        limit: usize,
        partitions: &[i32],
    ) -> Result<ActivePage, NotRunning> {
        let model = self.running()?;
        // The `limit + 1` smallest ids after the cursor: one more than
        // asked tells whether there is a next page.
        let mut smallest: BinaryHeap<Box<str>> = BinaryHeap::new();
        let mut total = 0;
        for entry in model.sessions.iter() {
            if entry.1.status != SessionStatus::Active || !partitions.contains(&entry.0) {
                continue;
            }
            total += 1;
            let id = entry.key();
            if after.is_some_and(|after| &**id <= after) {
                continue;
            }
            if smallest.len() <= limit {
                smallest.push(id.clone());
            } else if smallest.peek().is_some_and(|top| id < top) {
                smallest.pop();
                smallest.push(id.clone());
            }
        }
        let more = smallest.len() > limit;
        let mut ids = smallest.into_sorted_vec();
        ids.truncate(limit);
        let page: Vec<SessionView> = ids
            .iter()
            .filter_map(|id| model.sessions.get(id).map(|entry| view(&entry)))
            .collect();
        let next = more
            .then(|| page.last().map(|s| s.variant_id.clone()))
            .flatten();
        Ok(ActivePage {
            sessions: page,
            total,
            next,
        })
    }

    /// One of the processor's workers started (`true`) or stopped; the
    /// processor runs while any worker does, and the read model's thread
    /// with it.
    pub(crate) fn set_running(&self, running: bool) {
        let mut state = self.0.applier.lock();
        if running {
            self.0.running.fetch_add(1, Ordering::AcqRel);
            if state.jobs.is_none() {
                let (jobs, receive) = mpsc::channel();
                let model = self.0.clone();
                match std::thread::Builder::new()
                    .name("read-model".into())
                    .spawn(move || apply_jobs(model, receive))
                {
                    Ok(thread) => {
                        state.jobs = Some(jobs);
                        state.thread = Some(thread);
                    }
                    // Commits are then applied by the worker that made them.
                    Err(e) => tracing::warn!(
                        error = %e,
                        "could not start the read model's thread; the workers update it"
                    ),
                }
            }
            return;
        }
        // (Changed under the applier's lock only, so read and changed
        // here as one.)
        match self.0.running.load(Ordering::Acquire) {
            0 => return,
            1 => self.0.running.store(0, Ordering::Release),
            _ => {
                self.0.running.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
        // The thread ends once it has done what was sent to it.
        drop(state.jobs.take());
        let thread = state.thread.take();
        drop(state);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.0.sessions.clear();
    }

    /// Does `job` on the read model's thread after the jobs before it, or
    /// here when the thread is not running.
    fn defer(&self, job: Job) {
        let mut state = self.0.applier.lock();
        let job = match &state.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => {
                    state.pending += 1;
                    return;
                }
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        drop(state);
        job(&self.0);
    }

    /// Waits until every commit handed over so far is applied.
    pub(crate) fn flush(&self) {
        let applier = &self.0.applier;
        let state = applier.lock();
        drop(
            applier
                .idle
                .wait_while(state, |state| state.pending > 0)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }

    /// A commit made `changes` (partition, changelog change) durable; once
    /// they are applied (on the read model's thread while the processor
    /// runs), `then` runs.
    pub(crate) fn committed(
        &self,
        changes: Vec<(i32, ChangelogChange)>,
        then: impl FnOnce() + Send + 'static,
    ) {
        self.defer(Box::new(move |model| {
            model.committed(changes);
            then();
        }));
    }

    /// Partition `p` was restored into `monitor` and `shadows`.
    pub(crate) fn restored(&self, p: i32, monitor: &Monitor, shadows: &Shadows) {
        self.flush();
        let model = &self.0;
        model.sessions.retain(|_, (q, _)| *q != p);
        for (id, state) in monitor.session_states() {
            model.sessions.insert(id.into(), (p, state));
        }
        model.shadows.retain(|_, (q, _)| *q != p);
        for (policy, monitor) in shadows.monitors() {
            for (id, state) in monitor.session_states() {
                model.shadow_committed(p, id, policy, Some(state));
            }
        }
    }

    /// Partitions moved to another instance.
    pub(crate) fn revoked(&self, gone: &BTreeSet<i32>) {
        self.flush();
        self.0.sessions.retain(|_, (p, _)| !gone.contains(p));
        self.0.shadows.retain(|_, (p, _)| !gone.contains(p));
    }
}

impl Model {
    /// Moves `changes` in: a known session's entry is updated in place,
    /// with no copy of its key or state.
    fn committed(&self, changes: Vec<(i32, ChangelogChange)>) {
        for (p, change) in changes {
            if change.key == ChangelogRecord::PARTITION_KEY {
                continue;
            }
            let state = change.record.and_then(|r| r.session);
            if let Some(policy) = &change.policy {
                self.shadow_committed(p, &change.key, policy, state);
                continue;
            }
            match state {
                Some(state) => match self.sessions.get_mut(change.key.as_str()) {
                    Some(mut entry) => *entry = (p, state),
                    None => {
                        self.sessions.insert(change.key.into(), (p, state));
                    }
                },
                None => {
                    self.sessions.remove(change.key.as_str());
                }
            }
        }
    }

    /// A shadow policy's session of `variant_id` committed (`None`: gone).
    fn shadow_committed(
        &self,
        p: i32,
        variant_id: &str,
        policy: &Arc<str>,
        state: Option<SessionState>,
    ) {
        let shadows = &self.shadows;
        let mut entry = shadows
            .entry(variant_id.into())
            .or_insert_with(|| (p, Vec::new()));
        let (q, policies) = entry.value_mut();
        *q = p;
        policies.retain(|(name, _)| name != policy);
        if let Some(state) = state {
            policies.push((policy.clone(), state));
            policies.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let empty = policies.is_empty();
        drop(entry);
        if empty {
            shadows.remove_if(variant_id, |_, (_, policies)| policies.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earlykill_core::event::InteractionKind;
    use earlykill_core::fixtures::{interaction, posted};
    use earlykill_core::monitor::{Input, MonitorConfig};

    const T0: i64 = 1_700_000_000_000;

    /// What a commit of `views` views of `v-1` (posted in the first)
    /// hands the read model.
    fn commit(monitor: &mut Monitor, views: i64) -> Vec<(i32, ChangelogChange)> {
        let mut decisions = Vec::new();
        if views == 1 {
            monitor.apply(Input::Posted(&posted("v-1", T0, 0.1)), &mut decisions);
        }
        let seen = interaction(&format!("e-{views}"), "v-1", InteractionKind::View, 1, T0);
        monitor.apply(Input::Interaction(&seen), &mut decisions);
        monitor
            .drain_changes()
            .into_iter()
            .map(|c| (4, c))
            .collect()
    }

    fn views(sessions: &Sessions) -> Option<i64> {
        let view = sessions.get("v-1").expect("running")?;
        Some(view.state.views)
    }

    #[test]
    fn commits_are_applied_in_order_and_each_says_so_once_it_shows() {
        let sessions = Sessions::default();
        sessions.set_running(true);
        let mut monitor = Monitor::new(MonitorConfig::default());
        let (seen, shown) = mpsc::channel();
        for n in 1..=50 {
            let (seen, reader) = (seen.clone(), sessions.clone());
            sessions.committed(commit(&mut monitor, n), move || {
                seen.send((n, views(&reader))).expect("the test waits");
            });
        }
        // Each commit's `then` sees its own changes in the map, in order.
        let said: Vec<_> = shown.iter().take(50).collect();
        assert_eq!(said, (1..=50).map(|n| (n, Some(n))).collect::<Vec<_>>());
        sessions.flush();
        assert_eq!(views(&sessions), Some(50));
        // A revocation waits for the commits handed over before it.
        sessions.committed(commit(&mut monitor, 51), || {});
        sessions.revoked(&[4].into());
        assert_eq!(views(&sessions), None);
        sessions.set_running(false);
        assert_eq!(sessions.get("v-1"), Err(NotRunning));
    }

    #[test]
    fn without_a_running_processor_a_commit_is_applied_at_once() {
        let sessions = Sessions::default();
        let mut monitor = Monitor::new(MonitorConfig::default());
        let (seen, shown) = mpsc::channel();
        sessions.committed(commit(&mut monitor, 1), move || seen.send(()).unwrap());
        assert_eq!(shown.try_recv(), Ok(()), "done before `committed` returned");
        sessions.set_running(true);
        assert_eq!(views(&sessions), Some(1));
        sessions.set_running(false);
    }
}
