//! One queue per input topic, and the wake-up that lets a worker sleep
//! until any of them has something: librdkafka's queue forwarding, with
//! its `unsafe` calls.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
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

/// The input consumer's records, one queue per input topic (in the order
/// of `topics`), so that a partition's end (librdkafka's partition EOF,
/// which names the partition but not the topic) is known by the queue it
/// arrives on.
///
/// Each topic's partition 0 queue is split from the consumer's queue, and
/// the topic's other partitions are forwarded into it ([`forward`]). A
/// forward set by the application makes librdkafka never forward the
/// partition to the consumer's queue itself, but stopping a partition's
/// fetch (on revocation) clears it: so every partition is forwarded once at
/// start, before subscribing, and the assigned ones again after each
/// assignment (records fetched in between wait in the partition's own queue
/// and move along when the forward is set).
pub struct TopicQueues<C: ConsumerContext + 'static> {
    queues: Vec<PartitionQueue<C>>,
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
            let mut queue = consumer
                .split_partition_queue(topic, 0)
                .ok_or_else(|| split_failed(topic))?;
            let wake = wake.clone();
            queue.set_nonempty_callback(move || wake.notify());
            queues.push(queue);
        }
        forward(consumer, topics, 1..partitions)?;
        Ok(TopicQueues { queues })
    }

    /// The next record, or partition end, of the topic at `index`, if one is
    /// waiting.
    pub fn poll(&self, index: usize) -> Option<KafkaResult<rdkafka::message::BorrowedMessage<'_>>> {
        self.queues[index].poll(Duration::ZERO)
    }
}

/// Forwards `partitions` of each of `topics` into the topic's partition 0
/// queue (see [`TopicQueues`]); partition 0 is that queue.
pub fn forward<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: [&str; 3],
    partitions: impl IntoIterator<Item = i32> + Clone,
) -> KafkaResult<()> {
    let rk = consumer.client().native_ptr();
    for topic in topics {
        let name = CString::new(topic).map_err(|_| split_failed(topic))?;
        for p in partitions.clone().into_iter().filter(|&p| p > 0) {
            // SAFETY: the client outlives this call; each queue handle is
            // destroyed once used, which keeps the forward (the partitions'
            // queues are owned by the client).
            let forwarded = unsafe {
                let from = rdkafka::bindings::rd_kafka_queue_get_partition(rk, name.as_ptr(), p);
                let to = rdkafka::bindings::rd_kafka_queue_get_partition(rk, name.as_ptr(), 0);
                let ok = !from.is_null() && !to.is_null();
                if ok {
                    rdkafka::bindings::rd_kafka_queue_forward(from, to);
                }
                for q in [from, to] {
                    if !q.is_null() {
                        rdkafka::bindings::rd_kafka_queue_destroy(q);
                    }
                }
                ok
            };
            if !forwarded {
                return Err(split_failed(topic));
            }
        }
    }
    Ok(())
}

/// A topic whose queues could not be split or forwarded.
fn split_failed(topic: &str) -> KafkaError {
    KafkaError::Subscription(topic.to_owned())
}
