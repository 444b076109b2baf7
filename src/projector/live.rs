//! `earlykill project`: the live projector.
//!
//! A consumer group over the decisions topic (read_committed). On
//! assignment it seeks each partition to the next offset stored in the
//! database, not to Kafka's committed offset; it then applies decisions in
//! batches, each batch's rows and next offsets in one database transaction
//! ([`Store::apply`]). Kafka's committed offsets are written after each
//! batch only so that lag tools see the group's progress.
//!
//! When the database is unavailable the projector keeps the batch, pauses
//! its partitions, reports not ready, and retries with exponential backoff,
//! logging each attempt and its cause; when the database returns it writes
//! the batch and catches up. Nothing is acknowledged anywhere before the
//! database commit, so nothing is lost or written twice.
//!
//! It runs on one thread: librdkafka's calls block, and the database calls
//! are driven by a one-worker tokio runtime from that thread.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr as RespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::{Handle, Runtime};

use super::decisions::{DecisionReader, Unreadable};
use super::store::{connect_in, Positioned, Store, Table};
use super::topic::{self, TopicWatch};
use super::StoreError;
use crate::backoff;
use crate::kafka::{cached_watermarks, topic_id};
use crate::shutdown::{Shutdown, State};
use crate::telemetry;
use crate::watch::Watch;

use super::config::{ProjectorConfig, ProjectorStatus};
use super::error::{kafka, retryable, ProjectorError};

/// Longest single poll, so that shutdown is noticed.
pub(super) const MAX_POLL: Duration = Duration::from_millis(100);
/// First wait after a failed database call; doubled per attempt.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// How often the lag metric is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// A runtime for the database calls of one projector thread.
pub(super) fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("projector-db")
        .enable_all()
        .build()
}

/// State the main loop and the rebalance callback share. The callback runs
/// inside `poll`, on the same thread, so the lock is never contended.
struct Shared {
    store: Store,
    handle: Handle,
    topic: String,
    retry_max: Duration,
    shutdown: Shutdown,
    status: Watch<ProjectorStatus>,
    reader: DecisionReader,
    batch: Vec<Positioned>,
    fatal: Option<ProjectorError>,
    topic_id: TopicWatch,
}

struct Context {
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let mut shared = lock(&self.shared);
        match err {
            RespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => shared.on_assign(consumer, partitions),
            RespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Decisions read but not applied are read again by the next
                // owner, from the offsets in the database.
                let gone: BTreeSet<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                shared.batch.retain(|p| !gone.contains(&p.partition));
                let _ = consumer.unassign();
                shared.status.update(|s| {
                    s.partitions.retain(|p| !gone.contains(p));
                    s.next_offsets.retain(|p, _| !gone.contains(p));
                });
                tracing::info!(partitions = ?gone, "decisions partitions revoked");
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

impl Shared {
    /// Seeks the assigned partitions to the offsets stored in the database,
    /// waiting for the database if it is down.
    fn on_assign(&mut self, consumer: &BaseConsumer<Context>, assigned: &TopicPartitionList) {
        let stored = match self.with_retry("read the stored offsets", |store, topic| {
            let store = store.clone();
            let topic = topic.to_owned();
            async move { store.offsets(&topic).await }
        }) {
            Ok(stored) => stored,
            Err(e) => {
                self.fatal.get_or_insert(e);
                let _ = consumer.assign(assigned);
                return;
            }
        };
        let (start, partitions) = start_positions(assigned, &stored);
        // librdkafka remembers a partition's pause across assignments: one
        // revoked while paused for a database outage would come back paused
        // and never be read again (the fault soak stalled so).
        if let Err(e) = consumer
            .assign(&start)
            .and_then(|()| consumer.resume(&start))
        {
            self.fatal.get_or_insert(ProjectorError::Kafka {
                action: "take the assigned partitions",
                source: e,
            });
        }
        tracing::info!(partitions = ?partitions, stored_offsets = ?stored, "decisions partitions assigned");
        self.status.update(|s| {
            s.partitions.extend(&partitions);
            s.partitions.sort_unstable();
            s.partitions.dedup();
            for p in &partitions {
                if let Some(o) = stored.get(p) {
                    s.next_offsets.insert(*p, *o);
                }
            }
        });
    }

    /// Runs `call` until it succeeds, waiting between attempts (sleeping:
    /// only for the rebalance callback, which must not poll).
    fn with_retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ProjectorError>
    where
        F: FnMut(&Store, &str) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut retry = backoff::policy(FIRST_RETRY, self.retry_max, None);
        for attempt in 1.. {
            match self.handle.block_on(call(&self.store, &self.topic)) {
                Ok(value) => {
                    if attempt > 1 {
                        // Ready again now, not only after the next batch:
                        // with no new decisions that could be never.
                        tracing::info!(attempt, "database available again; could {what}");
                        self.status.update(|s| {
                            s.ready = true;
                            s.last_error = None;
                        });
                    }
                    return Ok(value);
                }
                Err(e) if retryable(&e) && !self.shutdown.is_stopping() => {
                    let (_, backoff) = retry.after_failure().unwrap_or_default();
                    self.failed(attempt, backoff, what, &e);
                    std::thread::sleep(backoff);
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns")
    }

    fn failed(&self, attempt: u64, backoff: Duration, what: &str, error: &StoreError) {
        tracing::warn!(
            attempt,
            retry_in_ms = backoff.as_millis() as u64,
            error = %error,
            "database unavailable: could not {what}; retrying"
        );
        let message = error.to_string();
        telemetry::projector_db_failure();
        self.status.update(|s| {
            s.ready = false;
            s.failed_attempts += 1;
            s.last_error = Some(message);
        });
    }

    /// Takes one record of the decisions topic into the batch. False when
    /// the record could not be read for now (the schema registry is
    /// unavailable): the projector stops with `fatal` set, and reads it
    /// again from the stored offsets when restarted.
    fn accept(&mut self, message: &BorrowedMessage<'_>) -> bool {
        let (partition, offset) = (message.partition(), message.offset());
        match message.payload().map(|bytes| self.reader.read(bytes)) {
            Some(Ok(decision)) => {
                self.batch.push(Positioned {
                    partition,
                    offset,
                    decision,
                });
                self.status.update(|s| s.read += 1);
            }
            Some(Err(Unreadable::Registry(source))) => {
                self.fatal
                    .get_or_insert(ProjectorError::Registry { source });
                return false;
            }
            Some(Err(Unreadable::Skip(why))) => {
                tracing::error!(partition, offset, error = %why, "decision does not decode; skipped");
                self.status.update(|s| s.undecodable += 1);
            }
            None => {
                tracing::error!(partition, offset, "decision record has no value; skipped");
                self.status.update(|s| s.undecodable += 1);
            }
        }
        true
    }
}

/// Where each of `assigned` starts: its stored next offset, or the
/// beginning of the partition when none is stored.
fn start_positions(
    assigned: &TopicPartitionList,
    stored: &BTreeMap<i32, i64>,
) -> (TopicPartitionList, Vec<i32>) {
    let mut start = TopicPartitionList::new();
    let mut partitions = Vec::new();
    for element in assigned.elements() {
        let p = element.partition();
        let offset = stored
            .get(&p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        let _ = start.add_partition_offset(element.topic(), p, offset);
        partitions.push(p);
    }
    (start, partitions)
}

/// Opens the store, waiting for the database while it is unreachable;
/// an un-migrated database is refused at once.
pub(super) fn open_store(
    runtime: &Runtime,
    url: &str,
    pool_size: usize,
    schema: Option<&str>,
    shutdown: &Shutdown,
    retry_max: Duration,
    table: Table,
) -> Result<Store, ProjectorError> {
    let pool = connect_in(url, pool_size, schema)?;
    let mut retry = backoff::policy(FIRST_RETRY, retry_max, None);
    for attempt in 1u64.. {
        match runtime.block_on(Store::open_table(pool.clone(), table)) {
            Ok(store) => return Ok(store),
            Err(e) if retryable(&e) && !shutdown.is_stopping() => {
                let (_, backoff) = retry.after_failure().unwrap_or_default();
                tracing::warn!(
                    attempt,
                    retry_in_ms = backoff.as_millis() as u64,
                    database = %super::tls::address(url),
                    error = %e,
                    "database unavailable at start; retrying"
                );
                std::thread::sleep(backoff);
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
}

/// Runs the projector until `shutdown` asks it to stop.
pub fn run(
    config: ProjectorConfig,
    shutdown: Shutdown,
    status: Watch<ProjectorStatus>,
) -> Result<(), ProjectorError> {
    let runtime = runtime().map_err(|e| StoreError::Url(format!("cannot start a runtime: {e}")))?;
    let store = open_store(
        &runtime,
        &config.database_url,
        config.pool_size,
        None,
        &shutdown,
        config.retry_max,
        config.table,
    )?;
    let shared = Arc::new(Mutex::new(Shared {
        store,
        handle: runtime.handle().clone(),
        topic: config.decisions_topic.clone(),
        retry_max: config.retry_max,
        shutdown: shutdown.clone(),
        status: status.clone(),
        reader: DecisionReader::new(config.registry.clone()),
        batch: Vec::with_capacity(config.batch_size),
        fatal: None,
        topic_id: TopicWatch::start(&config.client(), &config.decisions_topic),
    }));
    let consumer: BaseConsumer<Context> = config
        .consumer(&config.group_id)
        .create_with_context(Context {
            shared: Arc::clone(&shared),
        })
        .map_err(kafka("create the decisions consumer"))?;
    consumer
        .subscribe(&[&config.decisions_topic])
        .map_err(kafka("subscribe to the decisions topic"))?;
    status.update(|s| s.ready = true);
    telemetry::projector_started();
    let topic_name =
        CString::new(config.decisions_topic.as_str()).map_err(|_| ProjectorError::Kafka {
            action: "use the decisions topic name (it contains a NUL byte)",
            source: KafkaError::Subscription(config.decisions_topic.clone()),
        })?;
    let mut last_lag = Instant::now();
    tracing::info!(
        group = %config.group_id,
        topic = %config.decisions_topic,
        batch_size = config.batch_size,
        "projector started"
    );
    let mut oldest: Option<Instant> = None;
    #[cfg(feature = "test-hooks")]
    let mut batches = 0u64;
    let mut checked_id: Option<String> = None;
    loop {
        if shutdown.is_stopping() {
            if shutdown.state() != State::Abandoned {
                apply(&config, &consumer, &shared)?;
            }
            break;
        }
        let timeout = oldest.map_or(MAX_POLL, |t| {
            config.batch_wait.saturating_sub(t.elapsed()).min(MAX_POLL)
        });
        let mut next = consumer.poll(timeout);
        while let Some(result) = next {
            let mut guard = lock(&shared);
            match result {
                Ok(message) => {
                    if !guard.accept(&message) {
                        break;
                    }
                    oldest.get_or_insert_with(Instant::now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "decisions consumer error; librdkafka retries")
                }
            }
            if guard.batch.len() >= config.batch_size {
                break;
            }
            drop(guard);
            next = consumer.poll(Duration::ZERO);
        }
        if let Some(fatal) = lock(&shared).fatal.take() {
            return Err(fatal);
        }
        if last_lag.elapsed() >= LAG_EVERY {
            last_lag = Instant::now();
            for (p, next) in status.get().next_offsets {
                if let Some((_, high)) = cached_watermarks(&consumer, &topic_name, p) {
                    telemetry::projector_lag(p, high - next);
                }
            }
            check_topic_id(&config, &consumer, &shared, &mut checked_id)?;
        }
        let due = {
            let guard = lock(&shared);
            !guard.batch.is_empty()
                && (guard.batch.len() >= config.batch_size
                    || oldest.is_some_and(|t| t.elapsed() >= config.batch_wait))
        };
        if due {
            apply(&config, &consumer, &shared)?;
            oldest = None;
            #[cfg(feature = "test-hooks")]
            {
                batches += 1;
                if config.crash_after_batches == Some(batches) {
                    tracing::warn!("fault injection: stopping as a crash would");
                    return Ok(());
                }
            }
            commit_to_kafka(&consumer, &config.decisions_topic, &status);
        }
    }
    tracing::info!("projector stopped");
    Ok(())
}

/// Writes the batch, retrying while the database is unavailable. While it
/// retries, the partitions are paused and the consumer keeps serving the
/// group (a rebalance drops revoked partitions' decisions from the batch).
fn apply(
    config: &ProjectorConfig,
    consumer: &BaseConsumer<Context>,
    shared: &Mutex<Shared>,
) -> Result<(), ProjectorError> {
    let mut retry = backoff::policy(FIRST_RETRY, config.retry_max, None);
    let mut paused = false;
    for attempt in 1u64.. {
        let mut guard = lock(shared);
        if guard.batch.is_empty() {
            break;
        }
        let topic_id = guard.topic_id.latest();
        let batch = std::mem::take(&mut guard.batch);
        let done = guard.handle.block_on(guard.store.apply_concurrently(
            &config.decisions_topic,
            topic_id.as_deref(),
            batch,
            config.pool_size,
        ));
        guard.batch = done.unwritten;
        if !done.written.is_empty() {
            let a = &done.applied;
            telemetry::projector_batch(a.started, a.ended, a.skipped, a.rejected);
            let (applied, next) = (done.applied, done.written);
            guard.status.update(|s| {
                if topic_id.is_some() {
                    s.topic_id = topic_id.clone();
                }
                s.batches += 1;
                s.applied.started += applied.started;
                s.applied.ended += applied.ended;
                s.applied.skipped += applied.skipped;
                s.applied.rejected += applied.rejected;
                s.next_offsets.extend(next);
            });
        }
        match done.error.map_or(Ok(()), Err) {
            Ok(()) => {
                guard.status.update(|s| {
                    s.ready = true;
                    s.last_error = None;
                });
                if attempt > 1 {
                    tracing::info!(attempt, "database available again; batch written");
                }
                break;
            }
            Err(StoreError::TopicChanged { stored, found, .. }) => {
                guard.batch.clear();
                drop(guard);
                recreated(config, consumer, shared, &stored, &found)?;
                break;
            }
            Err(e) if retryable(&e) => {
                let (_, backoff) = retry.after_failure().unwrap_or_default();
                guard.failed(attempt, backoff, "write a batch", &e);
                let shutdown = guard.shutdown.clone();
                let pending = guard.batch.len();
                drop(guard);
                // Every attempt: a rebalance during the outage assigns
                // partitions unpaused.
                let assignment = consumer
                    .assignment()
                    .map_err(kafka("read the assignment"))?;
                consumer
                    .pause(&assignment)
                    .map_err(kafka("pause the decisions partitions"))?;
                paused = true;
                // Wait for the backoff while serving the group.
                let until = Instant::now() + backoff;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if shutdown.is_stopping() {
                        return Err(ProjectorError::StoppedDuringOutage {
                            pending,
                            cause: e.to_string(),
                        });
                    }
                    if let Some(Ok(message)) = consumer.poll(left.min(MAX_POLL)) {
                        // Fetched before the pause took effect.
                        if !lock(shared).accept(&message) {
                            break;
                        }
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if paused {
        let assignment = consumer
            .assignment()
            .map_err(kafka("read the assignment"))?;
        consumer
            .resume(&assignment)
            .map_err(kafka("resume the decisions partitions"))?;
    }
    Ok(())
}

/// When the broker has given a topic id not checked yet, compares it with
/// the one recorded with the stored offsets, without waiting for a batch:
/// the decisions of a recreated topic that sit below the old offsets are
/// all skipped, so no batch might ever come to be checked.
fn check_topic_id(
    config: &ProjectorConfig,
    consumer: &BaseConsumer<Context>,
    shared: &Mutex<Shared>,
    checked: &mut Option<String>,
) -> Result<(), ProjectorError> {
    let seen = lock(shared).topic_id.latest();
    let Some(seen) = seen.filter(|id| checked.as_ref() != Some(id)) else {
        return Ok(());
    };
    let recorded = lock(shared).with_retry("read the recorded topic id", |store, topic| {
        let (store, topic) = (store.clone(), topic.to_owned());
        async move { store.topic_id(&topic).await }
    })?;
    if let Some(stored) = recorded.filter(|stored| *stored != seen) {
        // Decisions read so far may come from either topic.
        lock(shared).batch.clear();
        recreated(config, consumer, shared, &stored, &seen)?;
    }
    lock(shared)
        .status
        .update(|s| s.topic_id = Some(seen.clone()));
    *checked = Some(seen);
    Ok(())
}

/// A batch was read under another topic id than the one the stored offsets
/// belong to (its decisions are dropped, not applied). Asks the broker
/// again: if the topic's id is the stored one, this projector's view was
/// stale; otherwise the topic was deleted and created again, and the old
/// topic's offsets are forgotten. Either way the assigned partitions are
/// sought to the offsets now stored, so the new topic is read from its
/// beginning and nothing in it is skipped.
fn recreated(
    config: &ProjectorConfig,
    consumer: &BaseConsumer<Context>,
    shared: &Mutex<Shared>,
    stored: &str,
    seen: &str,
) -> Result<(), ProjectorError> {
    let topic = config.decisions_topic.as_str();
    let now = match topic_id(consumer.client(), topic, topic::ASK_TIMEOUT) {
        Ok(Some(id)) => id,
        // Cannot tell now: the batch is read again from the stored
        // offsets, and checked again.
        Ok(None) | Err(_) => seen.to_owned(),
    };
    let guard = lock(shared);
    guard.topic_id.set(now.clone());
    if now != stored {
        let forgot = guard.with_retry("forget the old topic's offsets", |store, topic| {
            let (store, topic) = (store.clone(), topic.to_owned());
            let (stored, now) = (stored.to_owned(), now.clone());
            async move { store.forget_recreated_topic(&topic, &stored, &now).await }
        })?;
        tracing::warn!(
            topic,
            old_id = stored,
            new_id = %now,
            forgot_offsets = forgot,
            "the decisions topic was deleted and created again; its stored offsets belonged to \
             the old topic and are forgotten, and the new topic is read from its beginning"
        );
        telemetry::projector_topic_recreated();
        guard.status.update(|s| {
            s.topic_recreated += 1;
            s.next_offsets.clear();
        });
    }
    let stored_offsets = guard.with_retry("read the stored offsets", |store, topic| {
        let (store, topic) = (store.clone(), topic.to_owned());
        async move { store.offsets(&topic).await }
    })?;
    let assignment = consumer
        .assignment()
        .map_err(kafka("read the assignment"))?;
    if assignment.count() > 0 {
        let (start, _) = start_positions(&assignment, &stored_offsets);
        consumer
            .seek_partitions(start, Duration::from_secs(10))
            .map_err(kafka("seek the decisions partitions"))?;
    }
    guard.status.update(|s| {
        s.topic_id = Some(now.clone());
        s.next_offsets = stored_offsets.clone();
    });
    Ok(())
}

/// Tells Kafka how far the group got, for lag tools only: on assignment
/// the projector seeks to the offsets in the database.
fn commit_to_kafka(consumer: &BaseConsumer<Context>, topic: &str, status: &Watch<ProjectorStatus>) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in status.get().next_offsets {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "could not commit offsets to Kafka (informational only)");
        }
    }
}
