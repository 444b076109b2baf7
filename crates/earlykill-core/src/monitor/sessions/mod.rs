//! Compact storage of sessions: a slab of fixed-size [`Session`]s, a hash
//! index from variant_id to slab slot, the ids packed in chunks and the
//! rule parameters shared.
//!
//! Memory is the point of this module: a million active sessions should
//! cost little more than the bytes of their ids. A session is 56 bytes: its
//! counts, times and expected rate, the position of its ids (`ids.rs`), the
//! number of its thresholds in a palette of the distinct ones (most
//! sessions share the configured defaults), and one word packing the id
//! lengths, the status and the dirty flag. The index (`index.rs`) holds
//! 4-byte entries and finds a key by comparing with the id stored for the
//! slot, so no id is stored twice. The hasher has a fixed seed: nothing in
//! the fold depends on it, and a fixed seed keeps the fold free of
//! randomness.
//!
//! Speed at a million sessions is the other point: there every lookup is a
//! chain of cache misses (index bucket, session, id bytes). The `prefetch_*`
//! methods let the batched fold ask for each link of many lookups before it
//! needs any of them (see `Monitor::apply_batch`).

mod ids;
mod index;

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use std::hash::BuildHasher;
use std::ops::Deref;

use super::rule::{self, Thresholds};
use crate::event::{Millis, SessionStatus};
use ids::{At, Ids as IdChunks};
use index::Index;

/// Most sessions a partition can hold, whatever `max_sessions` says: slot
/// numbers are 24 bits in the index.
pub const MAX_SESSIONS: usize = index::MAX_SLOT as usize + 1;

/// Seed of the index hasher; any constant will do.
const INDEX_SEED: u64 = 0x6561_726c_796b_696c;

/// Id lengths are 9 bits each: ids are validated to at most
/// [`crate::event::MAX_ID_BYTES`] (256) bytes.
const LEN_BITS: u32 = 9;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
const STATUS_SHIFT: u32 = 3 * LEN_BITS;
const DIRTY_BIT: u32 = 1 << (STATUS_SHIFT + 2);

/// Asks the CPU to bring the cache line at `p` in; never faults.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and
    // does not fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One monitoring session, packed into 56 bytes (`Option<Session>` too).
#[derive(Debug)]
pub(crate) struct Session {
    at: At,
    pub(crate) posted_at: Millis,
    /// Meaningful once the session is not active.
    pub(crate) ended_at: Millis,
    pub(crate) expected_engagement_rate: f64,
    pub(crate) interactions: u64,
    pub(crate) views: u64,
    /// Number of its thresholds in the palette.
    thresholds: u32,
    /// variant, persona and post id lengths (9 bits each), status (2 bits),
    /// dirty (1 bit).
    bits: u32,
}

/// The ids of a session, for building one.
pub(crate) struct Ids<'a> {
    pub(crate) variant_id: &'a str,
    pub(crate) persona_id: &'a str,
    pub(crate) post_id: &'a str,
}

/// Why a session could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An id is longer than 511 bytes.
    IdTooLong,
    /// [`MAX_SESSIONS`] are stored.
    Full,
}

fn status_code(status: SessionStatus) -> u32 {
    match status {
        SessionStatus::Active => 0,
        SessionStatus::Killed => 1,
        SessionStatus::TimedOut => 2,
        SessionStatus::Stopped => 3,
    }
}

impl Session {
    fn len(&self, part: u32) -> usize {
        ((self.bits >> (part * LEN_BITS)) & LEN_MASK) as usize
    }

    fn ids_len(&self) -> usize {
        self.len(0) + self.len(1) + self.len(2)
    }

    pub(crate) fn status(&self) -> SessionStatus {
        match (self.bits >> STATUS_SHIFT) & 3 {
            0 => SessionStatus::Active,
            1 => SessionStatus::Killed,
            2 => SessionStatus::TimedOut,
            _ => SessionStatus::Stopped,
        }
    }

    pub(crate) fn set_status(&mut self, status: SessionStatus) {
        self.bits = (self.bits & !(3 << STATUS_SHIFT)) | status_code(status) << STATUS_SHIFT;
    }

    pub(crate) fn is_active(&self) -> bool {
        (self.bits >> STATUS_SHIFT) & 3 == 0
    }

    /// Changed since the last changelog drain.
    pub(crate) fn dirty(&self) -> bool {
        self.bits & DIRTY_BIT != 0
    }

    pub(crate) fn set_dirty(&mut self, dirty: bool) {
        if dirty {
            self.bits |= DIRTY_BIT;
        } else {
            self.bits &= !DIRTY_BIT;
        }
    }
}

/// A stored session with its ids and thresholds at hand.
#[derive(Clone, Copy)]
pub(crate) struct SessionRef<'a> {
    session: &'a Session,
    ids: &'a str,
    thresholds: Thresholds,
}

impl Deref for SessionRef<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session
    }
}

impl<'a> SessionRef<'a> {
    pub(crate) fn variant_id(&self) -> &'a str {
        &self.ids[..self.session.len(0)]
    }

    pub(crate) fn persona_id(&self) -> &'a str {
        let start = self.session.len(0);
        &self.ids[start..start + self.session.len(1)]
    }

    pub(crate) fn post_id(&self) -> &'a str {
        &self.ids[self.session.len(0) + self.session.len(1)..]
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    pub(crate) fn deadline(&self) -> Millis {
        rule::deadline(self.session.posted_at, self.thresholds.timeout_minutes)
    }
}

/// The distinct thresholds of the stored sessions, each with the number of
/// sessions using it. Usually one entry: the configured defaults.
#[derive(Debug)]
struct Palette {
    entries: Vec<(Thresholds, u32)>,
    free: Vec<u32>,
    lookup: HashMap<(u64, u32, u32), u32, FixedState>,
}

impl Default for Palette {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            lookup: HashMap::with_hasher(FixedState::with_seed(INDEX_SEED)),
        }
    }
}

fn palette_key(t: Thresholds) -> (u64, u32, u32) {
    (
        t.kill_threshold.to_bits(),
        t.min_interactions,
        t.timeout_minutes,
    )
}

impl Palette {
    fn intern(&mut self, thresholds: Thresholds) -> u32 {
        let key = palette_key(thresholds);
        if let Some(&i) = self.lookup.get(&key) {
            self.entries[i as usize].1 += 1;
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = (thresholds, 1);
                i
            }
            None => {
                self.entries.push((thresholds, 1));
                // At most one entry per stored session, and those fit u32.
                (self.entries.len() - 1) as u32
            }
        };
        self.lookup.insert(key, i);
        i
    }

    fn get(&self, i: u32) -> Thresholds {
        self.entries[i as usize].0
    }

    fn release(&mut self, i: u32) {
        let (thresholds, users) = &mut self.entries[i as usize];
        *users -= 1;
        if *users == 0 {
            self.lookup.remove(&palette_key(*thresholds));
            self.free.push(i);
        }
    }
}

/// Slab of sessions with a variant_id index.
pub(crate) struct Sessions {
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    index: Index,
    ids: IdChunks,
    palette: Palette,
    hasher: FixedState,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            ids: IdChunks::default(),
            palette: Palette::default(),
            hasher: FixedState::with_seed(INDEX_SEED),
        }
    }
}

/// The variant_id of the session in `slot`, or "" for an empty slot.
fn key_of<'a>(slots: &'a [Option<Session>], ids: &'a IdChunks, slot: u32) -> &'a str {
    slots
        .get(slot as usize)
        .and_then(Option::as_ref)
        .map_or("", |s| ids.get(s.at, s.len(0)))
}

impl Sessions {
    /// The index hash of a variant_id.
    pub(crate) fn hash(&self, variant_id: &str) -> u64 {
        self.hasher.hash_one(variant_id)
    }

    /// Slot of the session of `variant_id`, if any.
    pub(crate) fn find(&self, variant_id: &str) -> Option<u32> {
        self.find_hashed(self.hash(variant_id), variant_id)
    }

    fn find_hashed(&self, hash: u64, variant_id: &str) -> Option<u32> {
        let (slots, ids) = (&self.slots, &self.ids);
        self.index
            .find(hash, |slot| key_of(slots, ids, slot) == variant_id)
    }

    /// First link of a lookup of `hash`: its index bucket.
    pub(crate) fn prefetch_bucket(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Second link, once the bucket is in: the session it most likely
    /// points to (both cache lines a 56-byte slot may span).
    pub(crate) fn prefetch_session(&self, hash: u64) {
        if let Some(slot) = self.index.first_candidate(hash) {
            let p = self.slots.as_ptr().wrapping_add(slot as usize);
            prefetch(p);
            prefetch(
                p.cast::<u8>()
                    .wrapping_add(std::mem::size_of::<Option<Session>>() - 1),
            );
        }
    }

    /// Third link, once the session is in: its ids, for the key comparison.
    pub(crate) fn prefetch_ids(&self, hash: u64) {
        let candidate = self.index.first_candidate(hash);
        if let Some(Some(session)) = candidate.and_then(|slot| self.slots.get(slot as usize)) {
            self.ids.prefetch(session.at);
        }
    }

    /// Number of sessions stored.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, slot: u32) -> Option<SessionRef<'_>> {
        let session = self.slots.get(slot as usize)?.as_ref()?;
        Some(SessionRef {
            session,
            ids: self.ids.get(session.at, session.ids_len()),
            thresholds: self.palette.get(session.thresholds),
        })
    }

    /// The session in `slot`, to change its figures, with its thresholds.
    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<(&mut Session, Thresholds)> {
        let session = self.slots.get_mut(slot as usize)?.as_mut()?;
        let thresholds = self.palette.get(session.thresholds);
        Some((session, thresholds))
    }

    /// Stores a new active, dirty session with no counts for a variant_id
    /// not present yet; returns its slot.
    pub(crate) fn insert(
        &mut self,
        ids: Ids<'_>,
        expected_engagement_rate: f64,
        posted_at: Millis,
        thresholds: Thresholds,
    ) -> Result<u32, Refused> {
        let lens = [ids.variant_id, ids.persona_id, ids.post_id].map(str::len);
        if lens.iter().any(|&len| len > LEN_MASK as usize) {
            return Err(Refused::IdTooLong);
        }
        if self.free.is_empty() && self.slots.len() >= MAX_SESSIONS {
            return Err(Refused::Full);
        }
        let bits =
            lens[0] as u32 | (lens[1] as u32) << LEN_BITS | (lens[2] as u32) << (2 * LEN_BITS);
        let session = Session {
            at: self.ids.push([ids.variant_id, ids.persona_id, ids.post_id]),
            posted_at,
            ended_at: 0,
            expected_engagement_rate,
            interactions: 0,
            views: 0,
            thresholds: self.palette.intern(thresholds),
            bits: bits | DIRTY_BIT,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(session);
                slot
            }
            None => {
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        let hash = self.hash(ids.variant_id);
        let (index, hash_of) = self.index_mut();
        index.insert(hash, slot, hash_of);
        Ok(slot)
    }

    /// The index, with how to hash the key of any stored slot (the index
    /// rehashes entries it moves).
    fn index_mut(&mut self) -> (&mut Index, impl Fn(u32) -> u64 + '_) {
        let Sessions {
            slots,
            index,
            ids,
            hasher,
            ..
        } = self;
        let (slots, ids, hasher) = (&*slots, &*ids, &*hasher);
        (index, move |s| hasher.hash_one(key_of(slots, ids, s)))
    }

    /// Removes the session in `slot`; returns its variant_id.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Box<str>> {
        let variant_id: Box<str> = self.get(slot)?.variant_id().into();
        let hash = self.hash(&variant_id);
        let (index, hash_of) = self.index_mut();
        index.remove(hash, slot, hash_of);
        let session = self.slots[slot as usize].take()?;
        self.ids.release(session.at, session.ids_len());
        self.palette.release(session.thresholds);
        self.free.push(slot);
        if self.ids.needs_compaction() {
            self.compact_ids();
        }
        Some(variant_id)
    }

    /// Moves every stored id into fresh chunks, in slot order.
    fn compact_ids(&mut self) {
        let mut fresh = IdChunks::default();
        for session in self.slots.iter_mut().flatten() {
            let text = self.ids.get(session.at, session.ids_len());
            session.at = fresh.push([text, "", ""]);
        }
        self.ids = fresh;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, SessionRef<'_>)> {
        (0..self.slots.len() as u32).filter_map(|slot| self.get(slot).map(|s| (slot, s)))
    }

    /// Bytes held, by part.
    pub(crate) fn memory(&self) -> (usize, usize, usize) {
        let slab = self.slots.capacity() * std::mem::size_of::<Option<Session>>()
            + self.free.capacity() * 4
            + self.palette.entries.capacity() * std::mem::size_of::<(Thresholds, u32)>();
        (slab, self.index.bytes(), self.ids.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(sessions: &mut Sessions, variant_id: &str) -> u32 {
        let ids = Ids {
            variant_id,
            persona_id: "persona",
            post_id: "post",
        };
        sessions.insert(ids, 0.1, 0, Thresholds::default()).unwrap()
    }

    #[test]
    fn a_session_is_56_bytes_so_a_million_fit_in_56_mb() {
        assert_eq!(std::mem::size_of::<Option<Session>>(), 56);
    }

    #[test]
    fn ids_are_packed_and_split_back_exactly() {
        let mut sessions = Sessions::default();
        let ids = Ids {
            variant_id: "v-1",
            persona_id: "p-22",
            post_id: "",
        };
        let slot = sessions.insert(ids, 0.1, 0, Thresholds::default()).unwrap();
        let s = sessions.get(slot).unwrap();
        assert_eq!(
            (s.variant_id(), s.persona_id(), s.post_id()),
            ("v-1", "p-22", "")
        );
        let long = "x".repeat(512);
        let too_long = Ids {
            variant_id: "v-2",
            persona_id: &long,
            post_id: "",
        };
        let refused = sessions.insert(too_long, 0.1, 0, Thresholds::default());
        assert_eq!(refused, Err(Refused::IdTooLong));
    }

    #[test]
    fn status_and_dirty_share_a_word_without_touching_the_lengths() {
        let mut sessions = Sessions::default();
        let slot = insert(&mut sessions, "variant");
        for status in [
            SessionStatus::Killed,
            SessionStatus::TimedOut,
            SessionStatus::Stopped,
            SessionStatus::Active,
        ] {
            for dirty in [false, true] {
                let (s, _) = sessions.get_mut(slot).unwrap();
                s.set_status(status);
                s.set_dirty(dirty);
                let s = sessions.get(slot).unwrap();
                assert_eq!((s.status(), s.dirty()), (status, dirty));
                assert_eq!(s.is_active(), status == SessionStatus::Active);
                assert_eq!((s.variant_id(), s.post_id()), ("variant", "post"));
            }
        }
    }

    #[test]
    fn removed_slots_are_reused_and_the_index_follows() {
        let mut sessions = Sessions::default();
        let a = insert(&mut sessions, "a");
        let b = insert(&mut sessions, "b");
        assert_eq!(sessions.find("a"), Some(a));
        assert_eq!(sessions.remove(a).as_deref(), Some("a"));
        assert_eq!(sessions.find("a"), None);
        let c = insert(&mut sessions, "c");
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(sessions.find("c"), Some(c));
        assert_eq!(sessions.find("b"), Some(b));
        assert_eq!(sessions.iter().count(), 2);
    }

    #[test]
    fn thresholds_are_shared_and_freed_with_their_last_session() {
        let mut sessions = Sessions::default();
        let custom = Thresholds {
            kill_threshold: 0.25,
            ..Thresholds::default()
        };
        let ids = |variant_id| Ids {
            variant_id,
            persona_id: "p",
            post_id: "q",
        };
        let a = sessions
            .insert(ids("a"), 0.1, 0, Thresholds::default())
            .unwrap();
        let b = sessions.insert(ids("b"), 0.1, 0, custom).unwrap();
        let c = sessions
            .insert(ids("c"), 0.1, 0, Thresholds::default())
            .unwrap();
        assert_eq!(sessions.palette.lookup.len(), 2);
        assert_eq!(sessions.get(b).unwrap().thresholds(), custom);
        assert_eq!(sessions.get(c).unwrap().thresholds(), Thresholds::default());
        sessions.remove(b);
        assert_eq!(
            sessions.palette.lookup.len(),
            1,
            "the custom entry is freed"
        );
        sessions.remove(a);
        assert_eq!(sessions.get(c).unwrap().thresholds(), Thresholds::default());
    }

    #[test]
    fn churn_compacts_the_ids_and_every_session_keeps_its_own() {
        let mut sessions = Sessions::default();
        let name = |i: usize| format!("variant-{i:0>200}");
        let mut slots = Vec::new();
        for i in 0..5_000 {
            slots.push((i, insert(&mut sessions, &name(i))));
        }
        // Remove four in five, scattered: the chunks go sparse and the ids
        // are compacted along the way.
        let mut kept = Vec::new();
        for (i, slot) in slots {
            if i % 5 == 0 {
                kept.push((i, slot));
            } else {
                sessions.remove(slot);
            }
        }
        assert!(!sessions.ids.needs_compaction());
        assert!(sessions.ids.bytes() < 3 * 1_000 * 211, "compacted");
        for (i, slot) in kept {
            assert_eq!(sessions.find(&name(i)), Some(slot));
            assert_eq!(sessions.get(slot).unwrap().variant_id(), name(i));
        }
        assert_eq!(sessions.len(), 1_000);
    }
}
