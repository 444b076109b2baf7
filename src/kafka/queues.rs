//! The input's queues, one per topic partition, and the wake-up that lets
//! a worker sleep until any of them has something.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};

/// Wakes a worker's loop when any of its queues receives something.
///
/// librdkafka calls [`Wake::notify`] when a queue goes from empty to
/// non-empty, with that queue locked: it only sets a flag and signals.
#[derive(Default)]
pub struct Wake {
    ready: AtomicBool,
    lock: Mutex<()>,
    signal: Condvar,
}

impl Wake {
    /// Something arrived.
    pub fn notify(&self) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.signal.notify_one();
        }
    }

    /// Forgets earlier notifications: call before looking at the queues,
    /// so that whatever arrives after the look wakes the next wait.
    pub fn clear(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Waits until a notification since the last [`Wake::clear`], or
    /// `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .signal
            .wait_timeout_while(guard, timeout, |_| !self.ready.load(Ordering::Acquire));
    }
}

/// The input consumer's records, by input topic (in the order of
/// `topics`), so that a partition's end (librdkafka's partition EOF, which
/// names the partition but not the topic) is known by the queue it arrives
/// on.
///
/// Every partition's queue of every topic is split from the consumer's
/// queue once, before subscribing, and read directly. Forwarding them into
/// one queue per topic would be cheaper to poll, but stopping a
/// partition's fetch (a revocation, or an assignment that restarts it)
/// clears a forward asynchronously, after the call that stopped it has
/// returned: a forward set again at once could be cleared behind it, and
/// the partition's records would then wait in a queue nobody reads. A
/// split queue has no forward to lose.
pub struct TopicQueues<C: ConsumerContext + 'static> {
    /// Per topic, the queue of each partition.
    queues: Vec<Vec<PartitionQueue<C>>>,
    /// Per topic, the partition read last: polling stays on it while it
    /// has records.
    cursor: [Cell<usize>; 3],
}

impl<C: ConsumerContext + 'static> TopicQueues<C> {
    /// Splits the queues of `topics`, each with `partitions` partitions;
    /// `wake` is notified when any of them receives something.
    pub fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topics: [&str; 3],
        partitions: i32,
        wake: &Arc<Wake>,
    ) -> KafkaResult<TopicQueues<C>> {
        let mut queues = Vec::with_capacity(topics.len());
        for topic in topics {
            let mut of_topic = Vec::with_capacity(partitions.max(0) as usize);
            for p in 0..partitions {
                let mut queue = consumer
                    .split_partition_queue(topic, p)
                    .ok_or_else(|| split_failed(topic))?;
                let wake = wake.clone();
                queue.set_nonempty_callback(move || wake.notify());
                of_topic.push(queue);
            }
            queues.push(of_topic);
        }
        Ok(TopicQueues {
            queues,
            cursor: Default::default(),
        })
    }

    /// The next record, or partition end, of the topic at `index`, if one is
    /// waiting in any of its partitions.
    pub fn poll(&self, index: usize) -> Option<KafkaResult<rdkafka::message::BorrowedMessage<'_>>> {
        let queues = &self.queues[index];
        let start = self.cursor[index].get();
        for i in 0..queues.len() {
            let k = (start + i) % queues.len();
            if let Some(message) = queues[k].poll(Duration::ZERO) {
                self.cursor[index].set(k);
                return Some(message);
            }
        }
        None
    }
}

/// A topic whose partition queues could not be split.
fn split_failed(topic: &str) -> KafkaError {
    KafkaError::Subscription(topic.to_owned())
}
