//! The HTTP API's view of a processor's sessions: a concurrent map the
//! processor updates after each commit, so that a status or listing
//! request never waits for the processor (which may sit in a commit, a
//! backoff or a restore for seconds) and the processor never waits for a
//! request.
//!
//! It holds the committed state: what a restart would restore. A session's
//! figures move when the transaction that changed them commits (every
//! `commit-interval-ms`, 100 ms by default).

use std::collections::{BTreeSet, BinaryHeap};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// processor runs while any worker does.
    pub(crate) fn set_running(&self, running: bool) {
        if running {
            self.0.running.fetch_add(1, Ordering::AcqRel);
        } else if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.sessions.clear();
        }
    }

    /// A commit made `changes` (partition, changelog change) durable. They
    /// are moved in: a known session's entry is updated in place, with no
    /// copy of its key or state.
    pub(crate) fn committed(&self, changes: impl IntoIterator<Item = (i32, ChangelogChange)>) {
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
                Some(state) => match self.0.sessions.get_mut(change.key.as_str()) {
                    Some(mut entry) => *entry = (p, state),
                    None => {
                        self.0.sessions.insert(change.key.into(), (p, state));
                    }
                },
                None => {
                    self.0.sessions.remove(change.key.as_str());
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
        let shadows = &self.0.shadows;
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

    /// Partition `p` was restored into `monitor` and `shadows`.
    pub(crate) fn restored(&self, p: i32, monitor: &Monitor, shadows: &Shadows) {
        self.0.sessions.retain(|_, (q, _)| *q != p);
        for (id, state) in monitor.session_states() {
            self.0.sessions.insert(id.into(), (p, state));
        }
        self.0.shadows.retain(|_, (q, _)| *q != p);
        for (policy, monitor) in shadows.monitors() {
            for (id, state) in monitor.session_states() {
                self.shadow_committed(p, id, policy, Some(state));
            }
        }
    }

    /// Partitions moved to another instance.
    pub(crate) fn revoked(&self, gone: &BTreeSet<i32>) {
        self.0.sessions.retain(|_, (p, _)| !gone.contains(p));
        self.0.shadows.retain(|_, (p, _)| !gone.contains(p));
    }
}
