//! Compact storage of sessions: a slab of fixed-size [`Session`]s and a hash
//! index from variant_id to slab slot.
//!
//! Memory is the point of this module. A session is 80 bytes plus one heap
//! allocation holding its three ids back to back; the index stores 4-byte
//! slot numbers (hashbrown's `HashTable`) and finds a key by comparing with
//! the id stored in the slot, so no id is stored twice. The hasher has a
//! fixed seed: nothing in the fold depends on it, and a fixed seed keeps the
//! fold free of randomness.

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use super::rule::{self, Thresholds};
use crate::event::{Millis, SessionStatus};

/// Seed of the index hasher; any constant will do.
const INDEX_SEED: u64 = 0x6561_726c_796b_696c;

/// One monitoring session, packed. Ids are validated to at most
/// [`crate::event::MAX_ID_BYTES`], so their lengths fit in `u16`.
#[derive(Debug)]
pub(crate) struct Session {
    /// variant_id, persona_id and post_id, concatenated: one allocation.
    ids: Box<str>,
    variant_len: u16,
    persona_len: u16,
    pub(crate) status: SessionStatus,
    /// Changed since the last changelog drain.
    pub(crate) dirty: bool,
    pub(crate) min_interactions: u32,
    pub(crate) timeout_minutes: u32,
    pub(crate) posted_at: Millis,
    /// Meaningful once `status` is not Active.
    pub(crate) ended_at: Millis,
    pub(crate) expected_engagement_rate: f64,
    pub(crate) kill_threshold: f64,
    pub(crate) interactions: u64,
    pub(crate) views: u64,
}

/// The ids of a session, for building one.
pub(crate) struct Ids<'a> {
    pub(crate) variant_id: &'a str,
    pub(crate) persona_id: &'a str,
    pub(crate) post_id: &'a str,
}

impl Session {
    /// A new active session; `None` if an id is longer than `u16::MAX` bytes
    /// (the fold rejects such input rather than truncate it).
    pub(crate) fn new(
        ids: Ids<'_>,
        expected_engagement_rate: f64,
        posted_at: Millis,
        thresholds: Thresholds,
    ) -> Option<Self> {
        let variant_len = u16::try_from(ids.variant_id.len()).ok()?;
        let persona_len = u16::try_from(ids.persona_id.len()).ok()?;
        let mut packed =
            String::with_capacity(ids.variant_id.len() + ids.persona_id.len() + ids.post_id.len());
        packed.push_str(ids.variant_id);
        packed.push_str(ids.persona_id);
        packed.push_str(ids.post_id);
        Some(Self {
            ids: packed.into_boxed_str(),
            variant_len,
            persona_len,
            status: SessionStatus::Active,
            dirty: true,
            min_interactions: thresholds.min_interactions,
            timeout_minutes: thresholds.timeout_minutes,
            posted_at,
            ended_at: 0,
            expected_engagement_rate,
            kill_threshold: thresholds.kill_threshold,
            interactions: 0,
            views: 0,
        })
    }

    pub(crate) fn variant_id(&self) -> &str {
        &self.ids[..usize::from(self.variant_len)]
    }

    pub(crate) fn persona_id(&self) -> &str {
        let start = usize::from(self.variant_len);
        &self.ids[start..start + usize::from(self.persona_len)]
    }

    pub(crate) fn post_id(&self) -> &str {
        &self.ids[usize::from(self.variant_len) + usize::from(self.persona_len)..]
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        Thresholds {
            kill_threshold: self.kill_threshold,
            min_interactions: self.min_interactions,
            timeout_minutes: self.timeout_minutes,
        }
    }

    pub(crate) fn deadline(&self) -> Millis {
        rule::deadline(self.posted_at, self.timeout_minutes)
    }

    pub(crate) fn is_active(&self) -> bool {
        self.status == SessionStatus::Active
    }
}

/// Slab of sessions with a variant_id index.
pub(crate) struct Sessions {
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: FixedState,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(INDEX_SEED),
        }
    }
}

impl Sessions {
    /// Slot of the session of `variant_id`, if any.
    pub(crate) fn find(&self, variant_id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(variant_id);
        let slots = &self.slots;
        self.index
            .find(hash, |&slot| {
                slots[slot as usize]
                    .as_ref()
                    .is_some_and(|s| s.variant_id() == variant_id)
            })
            .copied()
    }

    /// Number of sessions stored.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&Session> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut Session> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Stores a session whose variant_id is not present yet; returns its slot.
    pub(crate) fn insert(&mut self, session: Session) -> u32 {
        let hash = self.hasher.hash_one(session.variant_id());
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(session);
                slot
            }
            None => {
                self.slots.push(Some(session));
                // 2^32 sessions would need ~600 GiB: memory runs out long
                // before slot numbers do.
                u32::try_from(self.slots.len() - 1).expect("more than u32::MAX sessions")
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            slots[s as usize]
                .as_ref()
                .map_or(0, |s| hasher.hash_one(s.variant_id()))
        });
        slot
    }

    /// Removes the session in `slot` and returns it.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Session> {
        let session = self.slots.get_mut(slot as usize)?.take()?;
        let hash = self.hasher.hash_one(session.variant_id());
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        Some(session)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| s.as_ref().map(|s| (slot as u32, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(variant_id: &str) -> Session {
        Session::new(
            Ids {
                variant_id,
                persona_id: "persona",
                post_id: "post",
            },
            0.1,
            0,
            Thresholds::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_session_is_80_bytes_so_a_million_fit_in_80_mb() {
        assert_eq!(std::mem::size_of::<Option<Session>>(), 80);
    }

    #[test]
    fn ids_are_packed_and_split_back_exactly() {
        let s = Session::new(
            Ids {
                variant_id: "v-1",
                persona_id: "p-22",
                post_id: "",
            },
            0.1,
            0,
            Thresholds::default(),
        )
        .unwrap();
        assert_eq!(
            (s.variant_id(), s.persona_id(), s.post_id()),
            ("v-1", "p-22", "")
        );
    }

    #[test]
    fn removed_slots_are_reused_and_the_index_follows() {
        let mut sessions = Sessions::default();
        let a = sessions.insert(session("a"));
        let b = sessions.insert(session("b"));
        assert_eq!(sessions.find("a"), Some(a));
        sessions.remove(a);
        assert_eq!(sessions.find("a"), None);
        let c = sessions.insert(session("c"));
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(sessions.find("c"), Some(c));
        assert_eq!(sessions.find("b"), Some(b));
        assert_eq!(sessions.iter().count(), 2);
    }
}
