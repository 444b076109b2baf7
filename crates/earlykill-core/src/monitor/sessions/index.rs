//! The variant_id index: an open-addressing hash table of 4-byte entries.
//!
//! Each entry packs a session's slot number (24 bits) with 8 bits of its
//! key's hash, so a probe rejects 255 of 256 wrong keys without touching the
//! session, and a lookup at a million sessions costs one cache line of the
//! table (plus the session it finds). Linear probing with backward-shift
//! deletion: no tombstones, so lookups never slow down with churn. A
//! session's home bucket is recomputed from its key when entries shift or
//! the table grows; the caller passes that as `hash_of`.
//!
//! hashbrown's `HashTable` did this job before; it exposes no bucket
//! address, and [`Index::prefetch`] is what the batched fold needs.

/// Largest slot number an entry can hold: slots are stored plus one in 24
/// bits, so that 0 means an empty bucket.
pub(crate) const MAX_SLOT: u32 = (1 << 24) - 2;

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// The index. Load stays at or below 3/4.
#[derive(Debug, Default)]
pub(crate) struct Index {
    buckets: Vec<u32>,
    len: usize,
}

fn tag(hash: u64) -> u32 {
    ((hash >> 56) as u32) << SLOT_BITS
}

fn entry(hash: u64, slot: u32) -> u32 {
    debug_assert!(slot <= MAX_SLOT);
    tag(hash) | (slot + 1)
}

fn slot_of(entry: u32) -> u32 {
    (entry & SLOT_MASK) - 1
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The slot whose key matches, among the entries whose hash tag does.
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let (mask, tag) = (self.mask(), tag(hash));
        let mut i = hash as usize & mask;
        loop {
            let e = self.buckets[i];
            if e == 0 {
                return None;
            }
            if e & !SLOT_MASK == tag && is_key(slot_of(e)) {
                return Some(slot_of(e));
            }
            i = (i + 1) & mask;
        }
    }

    /// The first slot whose hash tag matches: the session a lookup of this
    /// hash will most likely compare with. For prefetching only.
    pub(crate) fn first_candidate(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Asks the CPU to fetch the bucket a lookup of `hash` starts at.
    pub(crate) fn prefetch(&self, hash: u64) {
        if !self.buckets.is_empty() {
            super::prefetch(
                self.buckets
                    .as_ptr()
                    .wrapping_add(hash as usize & self.mask()),
            );
        }
    }

    /// Adds `slot`, whose key is not in the index yet.
    pub(crate) fn insert(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow(&hash_of);
        }
        self.place(entry(hash, slot), hash);
        self.len += 1;
    }

    fn place(&mut self, entry: u32, hash: u64) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while self.buckets[i] != 0 {
            i = (i + 1) & mask;
        }
        self.buckets[i] = entry;
    }

    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let size = (self.buckets.len() * 2).max(8);
        let old = std::mem::replace(&mut self.buckets, vec![0; size]);
        for e in old.into_iter().filter(|&e| e != 0) {
            self.place(e, hash_of(slot_of(e)));
        }
    }

    /// Removes `slot`, found under `hash`; entries after it in its run move
    /// back so that no lookup passes a hole.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        if self.buckets.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let e = self.buckets[i];
            if e == 0 {
                return;
            }
            if slot_of(e) == slot {
                break;
            }
            i = (i + 1) & mask;
        }
        self.len -= 1;
        // Backward shift: an entry may fill the hole at `i` if its home is
        // not in (i, j], cyclically.
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.buckets[j];
            if e == 0 {
                break;
            }
            let home = hash_of(slot_of(e)) as usize & mask;
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.buckets[i] = e;
                i = j;
            }
        }
        self.buckets[i] = 0;
    }

    /// Bytes the index holds.
    pub(crate) fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Keys are u32s hashed with a deliberately poor hash (many collisions
    /// and equal tags), so runs and backward shifts are exercised.
    fn poor_hash(key: u32) -> u64 {
        u64::from(key % 37).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(key % 5) << 56
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Find(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..300).prop_map(Op::Insert),
            (0u32..300).prop_map(Op::Remove),
            (0u32..300).prop_map(Op::Find),
        ]
    }

    proptest! {
        /// The index agrees with a HashMap under any sequence of inserts,
        /// removals and lookups. Slot k holds key `keys[k]`.
        #[test]
        fn agrees_with_a_hash_map(ops in prop::collection::vec(op(), 0..600)) {
            let mut index = Index::default();
            let mut model: HashMap<u32, u32> = HashMap::new();
            let mut keys: Vec<u32> = Vec::new();
            let mut free: Vec<u32> = Vec::new();
            for op in ops {
                let snapshot = keys.clone();
                let hash_of = |slot: u32| poor_hash(snapshot[slot as usize]);
                match op {
                    Op::Insert(key) if !model.contains_key(&key) => {
                        let slot = match free.pop() {
                            Some(slot) => { keys[slot as usize] = key; slot }
                            None => { keys.push(key); keys.len() as u32 - 1 }
                        };
                        let keys2 = keys.clone();
                        index.insert(poor_hash(key), slot, |s| poor_hash(keys2[s as usize]));
                        model.insert(key, slot);
                    }
                    Op::Insert(_) => {}
                    Op::Remove(key) => {
                        if let Some(slot) = model.remove(&key) {
                            index.remove(poor_hash(key), slot, hash_of);
                            free.push(slot);
                        }
                    }
                    Op::Find(key) => {
                        let found = index.find(poor_hash(key), |s| keys[s as usize] == key);
                        prop_assert_eq!(found, model.get(&key).copied());
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for (key, slot) in &model {
                prop_assert_eq!(index.find(poor_hash(*key), |s| keys[s as usize] == *key), Some(*slot));
            }
        }
    }

    #[test]
    fn the_largest_slot_round_trips_and_zero_stays_empty() {
        assert_eq!(slot_of(entry(u64::MAX, MAX_SLOT)), MAX_SLOT);
        assert_ne!(entry(0, 0), 0);
    }
}
