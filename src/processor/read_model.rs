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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use earlykill_core::event::{ChangelogRecord, SessionState, SessionStatus};
use earlykill_core::monitor::{ChangelogChange, Monitor, SessionView};
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
}

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

    /// A commit made `changes` (partition, changelog change) durable.
    pub(crate) fn committed<'a>(
        &self,
        changes: impl IntoIterator<Item = &'a (i32, ChangelogChange)>,
    ) {
        for (p, change) in changes {
            if change.key == ChangelogRecord::PARTITION_KEY || change.policy.is_some() {
                continue;
            }
            match change.record.as_ref().and_then(|r| r.session.as_ref()) {
                Some(state) => {
                    let key = change.key.as_str().into();
                    self.0.sessions.insert(key, (*p, state.clone()));
                }
                None => {
                    self.0.sessions.remove(change.key.as_str());
                }
            }
        }
    }

    /// Partition `p` was restored into `monitor`.
    pub(crate) fn restored(&self, p: i32, monitor: &Monitor) {
        self.0.sessions.retain(|_, (q, _)| *q != p);
        for (id, state) in monitor.session_states() {
            self.0.sessions.insert(id.into(), (p, state));
        }
    }

    /// Partitions moved to another instance.
    pub(crate) fn revoked(&self, gone: &BTreeSet<i32>) {
        self.0.sessions.retain(|_, (p, _)| !gone.contains(p));
    }
}
