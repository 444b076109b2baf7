//! What many sessions share, stored once: their thresholds (a palette of
//! the distinct ones; usually one entry, the configured defaults) and
//! their persona_id (a persona has many variants).
//!
//! A session holds the 4-byte number of its profile, the pair of a
//! persona_id and a palette entry. A profile is 16 bytes, its persona_id's
//! bytes in 64 KiB chunks like the sessions' own ids, and a 4-byte entry
//! in a hash table; profiles are counted and freed with their last
//! session. Shared by a hundred variants, a persona costs each well under
//! a byte; a persona with a single variant costs about 40 bytes instead of
//! its 13 (see `cargo bench -p earlykill-core --bench memory`).

use foldhash::fast::FixedState;
use hashbrown::{HashMap, HashTable};
use std::hash::BuildHasher;

use super::ids::{At, Ids as IdChunks};
use super::INDEX_SEED;
use crate::monitor::rule::Thresholds;

/// The distinct thresholds of the stored profiles, each with the number of
/// profiles using it.
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

    fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(Thresholds, u32)>()
            + self.free.capacity() * 4
            + self.lookup.capacity() * (std::mem::size_of::<((u64, u32, u32), u32)>() + 1)
    }
}

/// One profile: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Profile {
    /// Its persona_id in the chunks; meaningless while `users` is 0.
    at: Option<At>,
    /// Its thresholds in the palette.
    thresholds: u32,
    /// Sessions using it; 0 for a free entry.
    users: u32,
    len: u16,
}

/// The profiles of the stored sessions.
#[derive(Debug)]
pub(super) struct Profiles {
    entries: Vec<Profile>,
    free: Vec<u32>,
    /// Profile numbers, by the hash of their persona_id and thresholds.
    lookup: HashTable<u32>,
    personas: IdChunks,
    palette: Palette,
    hasher: FixedState,
}

impl Default for Profiles {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            lookup: HashTable::new(),
            personas: IdChunks::default(),
            palette: Palette::default(),
            hasher: FixedState::with_seed(INDEX_SEED),
        }
    }
}

impl Profiles {
    fn persona(&self, profile: &Profile) -> &str {
        profile
            .at
            .map_or("", |at| self.personas.get(at, usize::from(profile.len)))
    }

    fn hash_of(&self, i: u32) -> u64 {
        let profile = &self.entries[i as usize];
        let key = palette_key(self.palette.get(profile.thresholds));
        self.hasher.hash_one((key, self.persona(profile)))
    }

    fn find(&self, hash: u64, thresholds: Thresholds, persona_id: &str) -> Option<u32> {
        let key = palette_key(thresholds);
        self.lookup
            .find(hash, |&i| {
                let profile = &self.entries[i as usize];
                palette_key(self.palette.get(profile.thresholds)) == key
                    && self.persona(profile) == persona_id
            })
            .copied()
    }

    /// The number of the profile of `persona_id` and `thresholds`, one
    /// more session counted, and the palette number of the thresholds;
    /// `None` when the persona chunks are full. persona_id is at most 511
    /// bytes (the sessions check).
    pub(super) fn intern(
        &mut self,
        thresholds: Thresholds,
        persona_id: &str,
    ) -> Option<(u32, u32)> {
        let hash = self.hasher.hash_one((palette_key(thresholds), persona_id));
        if let Some(i) = self.find(hash, thresholds, persona_id) {
            let profile = &mut self.entries[i as usize];
            profile.users += 1;
            return Some((i, profile.thresholds));
        }
        let at = if persona_id.is_empty() {
            None
        } else {
            Some(self.personas.push([persona_id, ""])?)
        };
        let profile = Profile {
            at,
            thresholds: self.palette.intern(thresholds),
            users: 1,
            len: persona_id.len() as u16,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = profile;
                i
            }
            None => {
                self.entries.push(profile);
                // At most one entry per stored session, and those fit u32.
                (self.entries.len() - 1) as u32
            }
        };
        let mut lookup = std::mem::take(&mut self.lookup);
        lookup.insert_unique(hash, i, |&j| self.hash_of(j));
        self.lookup = lookup;
        Some((i, profile.thresholds))
    }

    /// The thresholds of palette entry `i` (as [`Profiles::intern`] gave it).
    pub(super) fn thresholds_at(&self, i: u32) -> Thresholds {
        self.palette.get(i)
    }

    /// The persona_id and thresholds of profile `i`.
    pub(super) fn get(&self, i: u32) -> (&str, Thresholds) {
        let profile = &self.entries[i as usize];
        (self.persona(profile), self.palette.get(profile.thresholds))
    }

    /// One session fewer uses profile `i`; the last frees it.
    pub(super) fn release(&mut self, i: u32) {
        let users = &mut self.entries[i as usize].users;
        *users -= 1;
        if *users > 0 {
            return;
        }
        let hash = self.hash_of(i);
        if let Ok(found) = self.lookup.find_entry(hash, |&j| j == i) {
            found.remove();
        }
        let profile = self.entries[i as usize];
        if let Some(at) = profile.at {
            self.personas.release(at, usize::from(profile.len));
        }
        self.palette.release(profile.thresholds);
        self.free.push(i);
        if self.personas.needs_compaction() {
            self.compact_personas();
        }
    }

    /// Moves every profile's persona_id into fresh chunks.
    fn compact_personas(&mut self) {
        let mut fresh = IdChunks::default();
        for i in 0..self.entries.len() {
            let profile = self.entries[i];
            if profile.users == 0 {
                continue;
            }
            // Fewer bytes than the old chunks held: they fit.
            if let Some(at) = fresh.push([self.persona(&profile), ""]) {
                self.entries[i].at = Some(at);
            }
        }
        self.personas = fresh;
    }

    /// Number of profiles in use.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lookup.len()
    }

    /// Number of distinct thresholds in use.
    #[cfg(test)]
    pub(super) fn thresholds(&self) -> usize {
        self.palette.lookup.len()
    }

    /// Entries held, used or free.
    #[cfg(test)]
    pub(super) fn entries(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Profile>()
            + self.free.capacity() * 4
            + self.lookup.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.personas.bytes()
            + self.palette.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Profile>(), 16);
    }

    #[test]
    fn churned_profiles_compact_their_personas_and_keep_their_own() {
        let mut profiles = Profiles::default();
        let persona = |i: usize| format!("persona-{i:0>300}");
        let t = Thresholds::default();
        let numbers: Vec<u32> = (0..2_000)
            .map(|i| profiles.intern(t, &persona(i)).unwrap().0)
            .collect();
        for (i, &n) in numbers.iter().enumerate() {
            if i % 5 != 0 {
                profiles.release(n);
            }
        }
        assert!(!profiles.personas.needs_compaction());
        for (i, &n) in numbers.iter().enumerate().filter(|(i, _)| i % 5 == 0) {
            assert_eq!(profiles.get(n).0, persona(i));
            assert_eq!(profiles.intern(t, &persona(i)), Some((n, 0)), "found again");
        }
        assert_eq!(profiles.len(), 400);
        let empty = profiles.intern(t, "");
        assert_eq!(profiles.intern(t, ""), empty);
        assert_eq!(empty.map(|(n, _)| profiles.get(n).0), Some(""));
    }
}
