//! Interactions that arrive before their variant's VariantPosted.
//!
//! The posted and interactions topics are read independently, so an
//! interaction can overtake its post. It is held here, in arrival order, and
//! applied when the post arrives. Holding is bounded three times: an
//! interaction is dropped once the partition clock reaches `held_at + grace`;
//! a variant that already holds `per_variant` interactions holds no more
//! (the newcomer is refused), which also bounds the variant's changelog
//! record; and when the partition holds `capacity` interactions the oldest
//! is dropped to make room. Every drop is counted.
//!
//! A FIFO of `(expires_at, seq, variant)` gives the expiry and eviction
//! order; `held_at` is the partition clock at arrival, so the FIFO is sorted
//! by expiry without a heap. Taking a variant's interactions leaves stale FIFO
//! entries behind, recognised by their `seq` and compacted away when they
//! outnumber the live ones.

use std::collections::VecDeque;

use foldhash::fast::FixedState;
use hashbrown::HashMap;

use crate::event::{HeldInteraction, Millis};

const HELD_SEED: u64 = 0x6865_6c64_6865_6c64;

struct Expiry {
    expires_at: Millis,
    seq: i64,
    variant_id: Box<str>,
}

/// Why a held interaction was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Its grace period ended before its post arrived.
    Expired,
    /// The partition's buffer was full and it was the oldest.
    Evicted,
    /// Its variant already held as many as one variant may.
    Refused,
}

pub(crate) struct Held {
    by_variant: HashMap<Box<str>, VecDeque<HeldInteraction>, FixedState>,
    fifo: VecDeque<Expiry>,
    len: usize,
    next_seq: i64,
    grace_ms: Millis,
    capacity: usize,
    per_variant: usize,
}

impl Held {
    pub(crate) fn new(grace_ms: Millis, capacity: usize, per_variant: usize) -> Self {
        Self {
            by_variant: HashMap::with_hasher(FixedState::with_seed(HELD_SEED)),
            fifo: VecDeque::new(),
            len: 0,
            next_seq: 0,
            grace_ms,
            capacity,
            per_variant,
        }
    }

    /// Number of interactions held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Holds an interaction, unless its variant already holds `per_variant`
    /// (reported as [`Dropped::Refused`], nothing changes); if holding it
    /// overflows the capacity, drops the oldest held interaction and reports
    /// its variant through `dropped`.
    pub(crate) fn hold(
        &mut self,
        variant_id: &str,
        mut interaction: HeldInteraction,
        clock: Millis,
        mut dropped: impl FnMut(&str, Dropped),
    ) {
        if self.capacity == 0 {
            dropped(variant_id, Dropped::Evicted);
            return;
        }
        let held = self.by_variant.get(variant_id).map_or(0, VecDeque::len);
        if held >= self.per_variant {
            dropped(variant_id, Dropped::Refused);
            return;
        }
        while self.len >= self.capacity {
            if !self.drop_front(Dropped::Evicted, &mut dropped) {
                break;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        interaction.held_at = clock;
        interaction.seq = seq;
        self.fifo.push_back(Expiry {
            expires_at: clock.saturating_add(self.grace_ms),
            seq,
            variant_id: variant_id.into(),
        });
        match self.by_variant.get_mut(variant_id) {
            Some(queue) => queue.push_back(interaction),
            None => {
                self.by_variant
                    .insert(variant_id.into(), VecDeque::from([interaction]));
            }
        }
        self.len += 1;
    }

    /// Removes and returns the interactions held for `variant_id`, oldest
    /// first.
    pub(crate) fn take(&mut self, variant_id: &str) -> Option<VecDeque<HeldInteraction>> {
        let queue = self.by_variant.remove(variant_id)?;
        self.len -= queue.len();
        if self.fifo.len() > 2 * self.len + 1024 {
            self.compact();
        }
        Some(queue)
    }

    /// The interactions held for `variant_id`, oldest first.
    pub(crate) fn get(&self, variant_id: &str) -> Option<&VecDeque<HeldInteraction>> {
        self.by_variant.get(variant_id)
    }

    /// Drops every interaction whose grace period has ended by `clock`.
    pub(crate) fn expire(&mut self, clock: Millis, mut dropped: impl FnMut(&str, Dropped)) {
        while self.fifo.front().is_some_and(|e| e.expires_at <= clock) {
            if let Some(entry) = self.fifo.pop_front() {
                if self.remove_if_live(&entry) {
                    dropped(&entry.variant_id, Dropped::Expired);
                }
            }
        }
    }

    /// Pops FIFO entries until one live interaction has been dropped (true)
    /// or the FIFO is empty (false), skipping stale entries.
    fn drop_front(&mut self, why: Dropped, dropped: &mut impl FnMut(&str, Dropped)) -> bool {
        while let Some(entry) = self.fifo.pop_front() {
            if self.remove_if_live(&entry) {
                dropped(&entry.variant_id, why);
                return true;
            }
        }
        false
    }

    /// Removes the interaction a FIFO entry stands for, if it is still held
    /// (it is not if its variant was posted since).
    fn remove_if_live(&mut self, entry: &Expiry) -> bool {
        let Some(queue) = self.by_variant.get_mut(&*entry.variant_id) else {
            return false;
        };
        if queue.front().is_none_or(|h| h.seq != entry.seq) {
            return false;
        }
        queue.pop_front();
        if queue.is_empty() {
            self.by_variant.remove(&*entry.variant_id);
        }
        self.len -= 1;
        true
    }

    /// Rebuilds the FIFO from the live interactions, dropping stale entries.
    fn compact(&mut self) {
        let mut live: Vec<Expiry> = self
            .by_variant
            .iter()
            .flat_map(|(variant_id, queue)| {
                queue.iter().map(|h| Expiry {
                    expires_at: h.held_at.saturating_add(self.grace_ms),
                    seq: h.seq,
                    variant_id: variant_id.clone(),
                })
            })
            .collect();
        live.sort_unstable_by_key(|e| (e.expires_at, e.seq));
        self.fifo = live.into();
    }

    /// Every variant with held interactions.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &VecDeque<HeldInteraction>)> {
        self.by_variant.iter().map(|(k, v)| (&**k, v))
    }

    /// Restores a variant's held interactions from the changelog. Call
    /// [`Held::finish_restore`] once every variant is in.
    pub(crate) fn restore(&mut self, variant_id: &str, held: Vec<HeldInteraction>) {
        if held.is_empty() {
            return;
        }
        self.len += held.len();
        self.next_seq = self.next_seq.max(
            held.iter()
                .map(|h| h.seq.saturating_add(1))
                .max()
                .unwrap_or(0),
        );
        self.by_variant.insert(variant_id.into(), held.into());
    }

    pub(crate) fn finish_restore(&mut self) {
        self.compact();
    }
}
