//! The deadline index: a min-heap of `(due time, session slot)`.
//!
//! Each session pushes its deadline when it starts and its purge time when it
//! ends, so a step of the clock costs O(log n) per timer that falls due and
//! nothing for the others — never a scan over all sessions. Entries are
//! deleted lazily: a popped entry acts only if it still matches the slot's
//! session (its deadline or purge time), which also makes slot reuse safe.
//!
//! An entry is 8 bytes: the due time as an offset of 40 bits from a base
//! (2^40 ms is 34 years) above the 24-bit slot, so that comparing the words
//! compares `(due, slot)`. The base is set by the first entry, 17 years
//! before it. A due time outside that range goes to a second heap of plain
//! `(due, slot)` pairs; [`Timers::pop_due`] drains both, and the fold sorts
//! what falls due anyway.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::event::Millis;

const SLOT_BITS: u32 = 24;
const OFFSET_LIMIT: i64 = 1 << 40;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    base: Option<Millis>,
    packed: BinaryHeap<Reverse<u64>>,
    wide: BinaryHeap<Reverse<(Millis, u32)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, due: Millis, slot: u32) {
        let base = *self
            .base
            .get_or_insert_with(|| due.saturating_sub(OFFSET_LIMIT / 2));
        let offset = due
            .checked_sub(base)
            .filter(|o| (0..OFFSET_LIMIT).contains(o));
        match offset {
            Some(offset) if slot < 1 << SLOT_BITS => {
                self.packed
                    .push(Reverse((offset as u64) << SLOT_BITS | u64::from(slot)));
            }
            _ => self.wide.push(Reverse((due, slot))),
        }
    }

    fn unpack(&self, word: u64) -> (Millis, u32) {
        let base = self.base.unwrap_or(0);
        (
            base + (word >> SLOT_BITS) as i64,
            (word & ((1 << SLOT_BITS) - 1)) as u32,
        )
    }

    /// Moves every entry due at or before `until` into `out`.
    pub(crate) fn pop_due(&mut self, until: Millis, out: &mut Vec<(Millis, u32)>) {
        while let Some(&Reverse(word)) = self.packed.peek() {
            let entry = self.unpack(word);
            if entry.0 > until {
                break;
            }
            self.packed.pop();
            out.push(entry);
        }
        while let Some(Reverse((due, _))) = self.wide.peek() {
            if *due > until {
                break;
            }
            if let Some(Reverse(entry)) = self.wide.pop() {
                out.push(entry);
            }
        }
    }

    /// The earliest due time, if any.
    pub(crate) fn next_due(&self) -> Option<Millis> {
        let packed = self.packed.peek().map(|Reverse(w)| self.unpack(*w).0);
        let wide = self.wide.peek().map(|Reverse((due, _))| *due);
        match (packed, wide) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.packed.len() + self.wide.len()
    }

    /// Bytes the entries hold.
    pub(crate) fn bytes(&self) -> usize {
        self.packed.capacity() * 8 + self.wide.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the due times (near the first, decades away, or the
        /// extremes of i64) and slots, the entries come out as a plain heap
        /// of `(due, slot)` would give them.
        #[test]
        fn packed_and_wide_entries_pop_as_one_heap(
            entries in prop::collection::vec(
                (prop_oneof![
                    -10_000_000i64..10_000_000,
                    Just(i64::MIN),
                    Just(i64::MAX),
                    (-(1i64 << 45)..(1i64 << 45)),
                ], prop_oneof![0u32..100, Just(u32::MAX), Just((1 << 24) - 1), Just(1 << 24)]),
                1..60,
            ),
            cuts in prop::collection::vec(any::<i64>(), 1..5),
        ) {
            let mut timers = Timers::default();
            let mut model: Vec<(Millis, u32)> = Vec::new();
            for &(due, slot) in &entries {
                timers.push(due, slot);
                model.push((due, slot));
            }
            prop_assert_eq!(timers.len(), model.len());
            prop_assert_eq!(timers.next_due(), model.iter().map(|e| e.0).min());
            let mut cuts = cuts;
            cuts.sort_unstable();
            cuts.push(i64::MAX);
            for cut in cuts {
                let mut out = Vec::new();
                timers.pop_due(cut, &mut out);
                out.sort_unstable();
                let mut expected: Vec<_> = model.iter().copied().filter(|e| e.0 <= cut).collect();
                model.retain(|e| e.0 > cut);
                expected.sort_unstable();
                prop_assert_eq!(out, expected);
                prop_assert_eq!(timers.next_due(), model.iter().map(|e| e.0).min());
            }
            prop_assert_eq!(timers.len(), 0);
        }
    }
}
