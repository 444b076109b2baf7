//! The deadline index: a min-heap of `(due time, session slot)`.
//!
//! Each session pushes its deadline when it starts and its purge time when it
//! ends, so a step of the clock costs O(log n) per timer that falls due and
//! nothing for the others — never a scan over all sessions. Entries are
//! deleted lazily: a popped entry acts only if it still matches the slot's
//! session (its deadline or purge time), which also makes slot reuse safe.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::event::Millis;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Millis, u32)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, due: Millis, slot: u32) {
        self.heap.push(Reverse((due, slot)));
    }

    /// Moves every entry due at or before `until` into `out`.
    pub(crate) fn pop_due(&mut self, until: Millis, out: &mut Vec<(Millis, u32)>) {
        while let Some(Reverse((due, _))) = self.heap.peek() {
            if *due > until {
                break;
            }
            if let Some(Reverse(entry)) = self.heap.pop() {
                out.push(entry);
            }
        }
    }

    /// The earliest due time, if any.
    pub(crate) fn next_due(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
