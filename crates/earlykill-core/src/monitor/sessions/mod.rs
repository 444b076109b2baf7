//! Compact storage of sessions: a slab of fixed-size [`Session`]s, a hash
//! index from variant_id to slab slot, the ids packed in chunks, and the
//! persona and rule parameters shared.
//!
//! Memory is the point of this module: a million active sessions should
//! cost little more than the bytes of their ids. A session is 48 bytes: its
//! counts, posting time and expected rate; the position of its variant and
//! post ids (`ids.rs`, 4 bytes); its end as an offset from its posting (4
//! bytes; an end that does not fit waits in a side table); the number of
//! its profile, the persona_id and thresholds it shares with other sessions
//! (many variants of one persona, most with the configured defaults); and
//! one word packing the id lengths, the status and the dirty flag. Nothing
//! the rule reads is narrowed. The index (`index.rs`) holds
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
mod profiles;

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use std::hash::BuildHasher;
use std::ops::Deref;

use super::rule::{self, Thresholds};
use crate::event::{Millis, SessionStatus};
use ids::{At, Ids as IdChunks};
use index::Index;
use profiles::Profiles;

/// Most sessions a partition can hold, whatever `max_sessions` says: slot
/// numbers are 24 bits in the index.
pub const MAX_SESSIONS: usize = index::MAX_SLOT as usize + 1;

/// Seed of the index hasher; any constant will do.
const INDEX_SEED: u64 = 0x6561_726c_796b_696c;

/// Id lengths are 9 bits each: ids are validated to at most
/// [`crate::event::MAX_ID_BYTES`] (256) bytes.
const LEN_BITS: u32 = 9;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
const STATUS_SHIFT: u32 = 2 * LEN_BITS;
const DIRTY_BIT: u32 = 1 << (STATUS_SHIFT + 2);
/// The word's last 11 bits: the session's thresholds in the palette, so
/// that the fold reads them without its profile (a cache miss at a large
/// state where personas are not shared); [`FAR_PALETTE`] when the number
/// does not fit.
const PALETTE_SHIFT: u32 = STATUS_SHIFT + 3;
const FAR_PALETTE: u32 = (1 << (32 - PALETTE_SHIFT)) - 1;

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

/// [`Session::ended`] of a session whose end is not `posted_at` plus a
/// `u32` of milliseconds (49 days): its end is in `Sessions::far_ends`.
const FAR_END: u32 = u32::MAX;

/// One monitoring session, packed into 48 bytes (`Option<Session>` too).
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) posted_at: Millis,
    pub(crate) expected_engagement_rate: f64,
    pub(crate) interactions: u64,
    pub(crate) views: u64,
    at: At,
    /// Once the session is not active: its end minus `posted_at`, in
    /// milliseconds, or [`FAR_END`].
    ended: u32,
    /// Number of its persona_id and thresholds in the profiles.
    profile: u32,
    /// variant and post id lengths (9 bits each), status (2 bits), dirty
    /// (1 bit), palette number of its thresholds (11 bits).
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

impl Session {
    fn len(&self, part: u32) -> usize {
        ((self.bits >> (part * LEN_BITS)) & LEN_MASK) as usize
    }

    fn ids_len(&self) -> usize {
        self.len(0) + self.len(1)
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
        self.bits = (self.bits & !(3 << STATUS_SHIFT)) | status.symbol_index() << STATUS_SHIFT;
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

/// A stored session with its ids, thresholds and end at hand.
#[derive(Clone, Copy)]
pub(crate) struct SessionRef<'a> {
    session: &'a Session,
    ids: &'a str,
    persona_id: &'a str,
    thresholds: Thresholds,
    ended_at: Millis,
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
        self.persona_id
    }

    pub(crate) fn post_id(&self) -> &'a str {
        &self.ids[self.session.len(0)..]
    }

    /// When the session ended; meaningful once it is not active.
    pub(crate) fn ended_at(&self) -> Millis {
        self.ended_at
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    pub(crate) fn deadline(&self) -> Millis {
        rule::deadline(self.session.posted_at, self.thresholds.timeout_minutes)
    }
}

/// Slab of sessions with a variant_id index.
pub(crate) struct Sessions {
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    index: Index,
    ids: IdChunks,
    profiles: Profiles,
    /// Ends of sessions whose [`Session::ended`] is [`FAR_END`].
    far_ends: HashMap<u32, Millis, FixedState>,
    hasher: FixedState,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            ids: IdChunks::default(),
            profiles: Profiles::default(),
            far_ends: HashMap::with_hasher(FixedState::with_seed(INDEX_SEED)),
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
    /// points to (both cache lines a 48-byte slot may span).
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
        let (persona_id, thresholds) = self.profiles.get(session.profile);
        let ended_at = match session.ended {
            FAR_END => self.far_ends.get(&slot).copied().unwrap_or(Millis::MIN),
            offset => session.posted_at.saturating_add(i64::from(offset)),
        };
        Some(SessionRef {
            session,
            ids: self.ids.get(session.at, session.ids_len()),
            persona_id,
            thresholds,
            ended_at,
        })
    }

    /// The session in `slot`, to change its figures, with its thresholds.
    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<(&mut Session, Thresholds)> {
        let session = self.slots.get_mut(slot as usize)?.as_mut()?;
        let thresholds = match session.bits >> PALETTE_SHIFT {
            FAR_PALETTE => self.profiles.get(session.profile).1,
            near => self.profiles.thresholds_at(near),
        };
        Some((session, thresholds))
    }

    /// Records when the session in `slot` ended: as an offset from its
    /// posting when one fits in a `u32` (always, for an end between the
    /// posting and a deadline of at most a week), else in the side table.
    pub(crate) fn set_ended_at(&mut self, slot: u32, ended_at: Millis) {
        let Some(Some(session)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let offset = ended_at
            .checked_sub(session.posted_at)
            .and_then(|o| u32::try_from(o).ok())
            .filter(|&o| o != FAR_END);
        match offset {
            Some(offset) => {
                session.ended = offset;
                self.far_ends.remove(&slot);
            }
            None => {
                session.ended = FAR_END;
                self.far_ends.insert(slot, ended_at);
            }
        }
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
        let bits = lens[0] as u32 | (lens[2] as u32) << LEN_BITS;
        let (profile, palette) = self
            .profiles
            .intern(thresholds, ids.persona_id)
            .ok_or(Refused::Full)?;
        let bits = bits | palette.min(FAR_PALETTE) << PALETTE_SHIFT;
        let Some(at) = self.ids.push([ids.variant_id, ids.post_id]) else {
            self.profiles.release(profile);
            return Err(Refused::Full);
        };
        let session = Session {
            posted_at,
            expected_engagement_rate,
            interactions: 0,
            views: 0,
            at,
            ended: 0,
            profile,
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
        self.profiles.release(session.profile);
        if session.ended == FAR_END {
            self.far_ends.remove(&slot);
        }
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
            // Fewer bytes than the old chunks held: they fit.
            if let Some(at) = fresh.push([text, ""]) {
                session.at = at;
            }
        }
        self.ids = fresh;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, SessionRef<'_>)> {
        (0..self.slots.len() as u32).filter_map(|slot| self.get(slot).map(|s| (slot, s)))
    }

    /// Bytes held, by part: slab, index, ids, profiles.
    pub(crate) fn memory(&self) -> [usize; 4] {
        let slab = self.slots.capacity() * std::mem::size_of::<Option<Session>>()
            + self.free.capacity() * 4
            + self.far_ends.capacity() * std::mem::size_of::<(u32, Millis)>();
        [
            slab,
            self.index.bytes(),
            self.ids.bytes(),
            self.profiles.bytes(),
        ]
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
    fn a_session_is_48_bytes_so_a_million_fit_in_48_mb() {
        assert_eq!(std::mem::size_of::<Option<Session>>(), 48);
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
        assert_eq!(sessions.profiles.thresholds(), 2);
        assert_eq!(sessions.get(b).unwrap().thresholds(), custom);
        assert_eq!(sessions.get(c).unwrap().thresholds(), Thresholds::default());
        sessions.remove(b);
        assert_eq!(
            sessions.profiles.thresholds(),
            1,
            "the custom entry is freed"
        );
        sessions.remove(a);
        assert_eq!(sessions.get(c).unwrap().thresholds(), Thresholds::default());
    }

    #[test]
    fn a_persona_is_stored_once_for_all_its_variants_and_freed_with_the_last() {
        let mut sessions = Sessions::default();
        let ids = |variant_id, persona_id| Ids {
            variant_id,
            persona_id,
            post_id: "q",
        };
        let t = Thresholds::default();
        let a = sessions.insert(ids("a", "persona-1"), 0.1, 0, t).unwrap();
        let b = sessions.insert(ids("b", "persona-1"), 0.1, 0, t).unwrap();
        let c = sessions.insert(ids("c", "persona-2"), 0.1, 0, t).unwrap();
        assert_eq!(sessions.profiles.len(), 2);
        for (slot, persona) in [(a, "persona-1"), (b, "persona-1"), (c, "persona-2")] {
            assert_eq!(sessions.get(slot).unwrap().persona_id(), persona);
        }
        sessions.remove(a);
        assert_eq!(sessions.profiles.len(), 2, "b still uses persona-1");
        sessions.remove(b);
        assert_eq!(sessions.profiles.len(), 1);
        let d = sessions.insert(ids("d", "persona-3"), 0.1, 0, t).unwrap();
        assert_eq!(sessions.profiles.entries(), 2, "the freed entry is reused");
        assert_eq!(sessions.get(d).unwrap().persona_id(), "persona-3");
        assert_eq!(sessions.get(c).unwrap().persona_id(), "persona-2");
    }

    #[test]
    fn an_end_is_kept_exactly_near_or_far_from_the_posting() {
        let mut sessions = Sessions::default();
        let posted_at = 1_700_000_000_000;
        let ids = Ids {
            variant_id: "v",
            persona_id: "p",
            post_id: "q",
        };
        let slot = sessions
            .insert(ids, 0.1, posted_at, Thresholds::default())
            .unwrap();
        let far = i64::from(u32::MAX);
        for ended_at in [
            posted_at,
            posted_at + 600_000,
            posted_at + far - 1,
            posted_at + far,
            posted_at - 1,
            Millis::MIN,
            Millis::MAX,
            posted_at + 5,
        ] {
            sessions.set_ended_at(slot, ended_at);
            assert_eq!(sessions.get(slot).unwrap().ended_at(), ended_at);
        }
        assert!(
            sessions.far_ends.is_empty(),
            "a near end clears the far one"
        );
        sessions.set_ended_at(slot, Millis::MIN);
        sessions.remove(slot);
        assert!(sessions.far_ends.is_empty(), "removed with its session");
    }

    #[test]
    fn thresholds_are_read_right_past_the_palette_numbers_a_session_holds() {
        let mut sessions = Sessions::default();
        let n = FAR_PALETTE as usize + 10;
        let thresholds = |i: usize| Thresholds {
            min_interactions: i as u32 + 1,
            ..Thresholds::default()
        };
        let slots: Vec<u32> = (0..n)
            .map(|i| {
                let variant_id = format!("v{i}");
                let ids = Ids {
                    variant_id: &variant_id,
                    persona_id: "p",
                    post_id: "q",
                };
                sessions.insert(ids, 0.1, 0, thresholds(i)).unwrap()
            })
            .collect();
        for (i, &slot) in slots.iter().enumerate() {
            assert_eq!(sessions.get_mut(slot).unwrap().1, thresholds(i), "{i}");
            assert_eq!(sessions.get(slot).unwrap().thresholds(), thresholds(i));
        }
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
