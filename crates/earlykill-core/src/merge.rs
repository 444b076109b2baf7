//! The event-time merge of one partition's three input topics.
//!
//! Kafka orders records within a topic partition but not across topics, and
//! a consumer fetches the topics at different paces: replaying a backlog,
//! the interactions could run hours of event time ahead of the posts. So
//! each partition buffers what it has fetched per topic and folds the head
//! with the earliest event time first (ties: posted, interactions,
//! commands), and only while every other topic has a record buffered or is
//! known to have nothing more to give. The same topics therefore fold in the
//! same order however they were fetched, and a replay decides as live did.
//!
//! Records within one topic keep their offset order. A dead letter has no
//! event time: it leaves as soon as it is the head of its topic, so offsets
//! are always committed in order.

use std::collections::VecDeque;

use crate::event::{InputTopic, Millis};

/// One buffered record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// Its offset in its topic partition.
    pub offset: i64,
    /// Its event time; `None` for a dead letter.
    pub time: Option<Millis>,
    /// What the shell keeps of it.
    pub item: T,
}

/// Buffers of one partition, one per input topic.
#[derive(Debug, Clone)]
pub struct Merge<T> {
    queues: [VecDeque<Entry<T>>; 3],
}

impl<T> Default for Merge<T> {
    fn default() -> Self {
        Self {
            queues: Default::default(),
        }
    }
}

/// Index of a topic in the merge order and in per-topic arrays.
pub fn rank(topic: InputTopic) -> usize {
    match topic {
        InputTopic::Posted => 0,
        InputTopic::Interactions => 1,
        InputTopic::Commands => 2,
    }
}

impl<T> Merge<T> {
    /// Buffers a record fetched from `topic`.
    pub fn push(&mut self, topic: InputTopic, entry: Entry<T>) {
        self.queues[rank(topic)].push_back(entry);
    }

    /// The next record to fold, if one may go now. `passable(topic)` says
    /// whether an empty topic may be passed over: it has nothing more to
    /// give now, or it has been waited for long enough.
    pub fn pop(
        &mut self,
        mut passable: impl FnMut(InputTopic) -> bool,
    ) -> Option<(InputTopic, Entry<T>)> {
        let mut best: Option<(Millis, usize)> = None;
        for (i, queue) in self.queues.iter().enumerate() {
            match queue.front() {
                Some(Entry { time: None, .. }) => {
                    return queue_pop(&mut self.queues, i);
                }
                Some(Entry { time: Some(t), .. }) if best.is_none_or(|(bt, _)| *t < bt) => {
                    best = Some((*t, i));
                }
                _ => {}
            }
        }
        let (_, i) = best?;
        let blocked = InputTopic::ALL
            .into_iter()
            .any(|topic| self.queues[rank(topic)].is_empty() && !passable(topic));
        if blocked {
            return None;
        }
        queue_pop(&mut self.queues, i)
    }

    /// Offset of the first record still buffered from `topic`.
    pub fn first_offset(&self, topic: InputTopic) -> Option<i64> {
        self.queues[rank(topic)].front().map(|e| e.offset)
    }

    /// Records buffered from `topic`.
    pub fn len(&self, topic: InputTopic) -> usize {
        self.queues[rank(topic)].len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// True when `topic` has nothing buffered.
    pub fn is_empty_for(&self, topic: InputTopic) -> bool {
        self.queues[rank(topic)].is_empty()
    }
}

fn queue_pop<T>(queues: &mut [VecDeque<Entry<T>>; 3], i: usize) -> Option<(InputTopic, Entry<T>)> {
    queues[i]
        .pop_front()
        .map(|entry| (InputTopic::ALL[i], entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(offset: i64, time: Option<Millis>) -> Entry<()> {
        Entry {
            offset,
            time,
            item: (),
        }
    }

    fn drain(merge: &mut Merge<()>) -> Vec<(InputTopic, i64)> {
        std::iter::from_fn(|| merge.pop(|_| true).map(|(t, e)| (t, e.offset))).collect()
    }

    #[test]
    fn earliest_event_time_goes_first_with_ties_by_topic() {
        let mut merge = Merge::default();
        merge.push(InputTopic::Interactions, entry(0, Some(5)));
        merge.push(InputTopic::Interactions, entry(1, Some(9)));
        merge.push(InputTopic::Posted, entry(0, Some(5)));
        merge.push(InputTopic::Commands, entry(0, Some(7)));
        assert_eq!(
            drain(&mut merge),
            [
                (InputTopic::Posted, 0),
                (InputTopic::Interactions, 0),
                (InputTopic::Commands, 0),
                (InputTopic::Interactions, 1),
            ]
        );
    }

    #[test]
    fn an_empty_topic_that_may_still_give_records_blocks_the_others() {
        let mut merge = Merge::default();
        merge.push(InputTopic::Interactions, entry(0, Some(5)));
        assert!(merge.pop(|t| t != InputTopic::Posted).is_none());
        assert_eq!(merge.len(InputTopic::Interactions), 1);
        assert!(merge.pop(|_| true).is_some());
    }

    #[test]
    fn a_dead_letter_at_a_head_leaves_at_once() {
        let mut merge = Merge::default();
        merge.push(InputTopic::Commands, entry(3, None));
        merge.push(InputTopic::Commands, entry(4, Some(1)));
        let (topic, first) = merge.pop(|_| false).expect("dead letter leaves");
        assert_eq!((topic, first.offset), (InputTopic::Commands, 3));
        assert!(merge.pop(|_| false).is_none());
    }

    fn arrivals() -> impl Strategy<Value = Vec<(usize, Millis)>> {
        prop::collection::vec((0usize..3, 0i64..20), 0..40)
    }

    proptest! {
        /// However the three topics' records are fetched (interleaved in any
        /// way, each topic in its own order), the merge folds them in the
        /// same order, provided it only passes over topics that have nothing
        /// more to give.
        #[test]
        fn the_fold_order_does_not_depend_on_fetch_order(
            records in arrivals(),
            fetch_order in prop::collection::vec(0usize..3, 0..200),
        ) {
            let mut by_topic: [Vec<Entry<()>>; 3] = Default::default();
            for (topic, time) in &records {
                let offset = by_topic[*topic].len() as i64;
                by_topic[*topic].push(entry(offset, Some(*time)));
            }
            // Reference: everything fetched, then merged.
            let mut all = Merge::default();
            for (i, entries) in by_topic.iter().enumerate() {
                for e in entries {
                    all.push(InputTopic::ALL[i], e.clone());
                }
            }
            let expected = drain(&mut all);
            // Incremental: fetch one record at a time from the topics in
            // `fetch_order`, folding whatever may go after each fetch.
            let mut merge = Merge::default();
            let mut next = [0usize; 3];
            let mut got = Vec::new();
            let order = fetch_order.into_iter().chain((0..3).cycle().take(3 * records.len() + 3));
            for topic in order {
                if next[topic] < by_topic[topic].len() {
                    merge.push(InputTopic::ALL[topic], by_topic[topic][next[topic]].clone());
                    next[topic] += 1;
                }
                let ended = |t: InputTopic| next[rank(t)] == by_topic[rank(t)].len();
                while let Some((t, e)) = merge.pop(ended) {
                    got.push((t, e.offset));
                }
            }
            prop_assert_eq!(got, expected);
        }
    }
}
