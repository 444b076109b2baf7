//! The processor's loop and the state it keeps per partition. See the
//! module documentation of [`crate::processor`] for the flow.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::bindings::rd_kafka_resp_err_t as RespErr;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::kafka::{self, DeliveryContext, RestoreContext, TopicQueues, Wake};
use super::merge::{rank, Entry, Merge};
use super::{
    ProcessorError, Sessions, Shutdown, Status, StatusWatch, ABANDON, DRAIN, MAX_ABORTED_LISTED,
};
use crate::config::{DecisionsFormat, Guarantee, ProcessorConfig};
use crate::event::codec::{encode_framed_into, encode_into, Framing};
use crate::event::{
    ChangelogRecord, Contract, DecisionKind, InputDecoders, InputOffsets, InputTopic, Millis,
    MonitoringDecision, Rejection,
};
use crate::monitor::{ChangelogChange, Input, Monitor, MonitorStats, Outcome};
use crate::registry::{Registry, RegistryError};
use crate::telemetry;

/// Most records taken from one input topic's queue before folding them.
const MAX_BATCH: usize = 2_000;
/// Longest the loop sleeps in a poll when nothing is due.
const MAX_POLL: Duration = Duration::from_millis(100);
/// Failed transactions in a row before the processor gives up (and exits
/// non-zero, for the orchestrator to restart it).
const MAX_FAILURES_IN_A_ROW: u32 = 6;
/// First backoff after a failed transaction, doubled on each failure in a
/// row (100 ms to 3.2 s).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Longest key a dead letter copies; a longer one is cut and its size
/// given in `earlykill.source.key_size`.
const DEAD_LETTER_KEY_MAX: usize = 4096;
/// Longest reason text in a dead letter's `earlykill.error.message`.
const DEAD_LETTER_MESSAGE_MAX: usize = 1024;

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The framing of the decisions: with `decisions-format = registry`, the
/// decision schema is registered under `<decisions topic>-value` (the
/// registry answers the id it already has when registered before), so
/// that nothing is written until Confluent's tools can read it.
fn decisions_framing(config: &ProcessorConfig) -> Result<Framing, ProcessorError> {
    match (config.decisions_format, &config.schema_registry) {
        (DecisionsFormat::Registry, Some(registry)) => {
            let subject = format!("{}-value", config.topics.decisions);
            let id = registry
                .register(&subject, Contract::MonitoringDecision.json())
                .map_err(|source| ProcessorError::RegisterSchema {
                    subject: subject.clone(),
                    source,
                })?;
            tracing::info!(%subject, id, "decisions are written framed for the schema registry");
            Ok(Framing::Registry(id))
        }
        // The configuration refuses registry framing without a registry.
        _ => Ok(Framing::SingleObject),
    }
}

/// How often the metrics kept as plain counters are copied out.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Runs a processor until `shutdown` is triggered or a fatal error. The
/// status is published to `status` as it changes.
pub fn run(
    config: ProcessorConfig,
    shutdown: Shutdown,
    status: StatusWatch,
    sessions: Sessions,
) -> Result<(), ProcessorError> {
    let config = Arc::new(config);
    let framing = decisions_framing(&config)?;
    let kafka_error = |action| move |source| ProcessorError::Kafka { action, source };
    let producer: ThreadedProducer<DeliveryContext> = kafka::producer(&config)
        .create_with_context(DeliveryContext::default())
        .map_err(kafka_error("create the producer"))?;
    let restorer: BaseConsumer<RestoreContext> = kafka::restore_consumer(&config)
        .create_with_context(RestoreContext)
        .map_err(kafka_error("create the changelog reader"))?;
    let core = Arc::new(Mutex::new(Core::new(
        config.clone(),
        producer,
        restorer,
        status,
        framing,
    )?));
    lock(&core).read = sessions.clone();
    let mut consumer: BaseConsumer<Context> = kafka::input_consumer(&config)
        .create_with_context(Context { core: core.clone() })
        .map_err(kafka_error("create the input consumer"))?;
    let wake = Arc::new(Wake::default());
    {
        let wake = wake.clone();
        consumer.set_nonempty_callback(move || wake.notify());
    }
    let consumer = Arc::new(consumer);
    let partitions = kafka::check_topics(&consumer, &config)?;
    let queues = TopicQueues::split(
        &consumer,
        InputTopic::ALL.map(|t| config.topics.input(t)),
        partitions,
        &wake,
    )?;
    lock(&core).input_partitions = partitions;
    if config.guarantee == Guarantee::ExactlyOnce {
        lock(&core)
            .out
            .producer
            .init_transactions(config.kafka_timeout)
            .map_err(|source| ProcessorError::Kafka {
                action: "initialise transactions (a broker without transactions needs \
                         --guarantee at-least-once)",
                source,
            })?;
    }
    let topics = &config.topics;
    consumer
        .subscribe(&[&topics.posted, &topics.interactions, &topics.commands])
        .map_err(kafka_error("subscribe to the input topics"))?;
    telemetry::processor_started(
        InputTopic::ALL.map(|t| config.topics.input(t)),
        &Rejection::KINDS,
    );
    {
        let mut core = lock(&core);
        core.out.counters.running = true;
        core.read.set_running(true);
        core.publish();
    }
    tracing::info!(
        group = %config.group_id,
        transactional_id = %config.transactional_id(),
        guarantee = ?config.guarantee,
        partitions,
        "processor started"
    );
    let result = run_loop(&consumer, &queues, &wake, &core, &shutdown);
    match (&result, shutdown.state()) {
        (_, ABANDON) => lock(&core).abandoned = true,
        (Ok(()), _) => leave(&consumer, &core, config.kafka_timeout),
        (Err(_), _) => lock(&core).abandoned = true,
    }
    drop(queues);
    drop(consumer);
    let mut core = lock(&core);
    core.out.counters.running = false;
    core.read.set_running(false);
    core.publish();
    result
}

fn run_loop(
    consumer: &BaseConsumer<Context>,
    queues: &TopicQueues<Context>,
    wake: &Wake,
    core: &Mutex<Core>,
    shutdown: &Shutdown,
) -> Result<(), ProcessorError> {
    loop {
        match shutdown.state() {
            DRAIN => return lock(core).commit(consumer).or_else(|f| f.into_fatal()),
            ABANDON => return Ok(()),
            _ => {}
        }
        let timeout = lock(core).poll_timeout(consumer);
        wake.clear();
        // Rebalances and errors. Input records arrive on the topic queues;
        // one that reached the consumer's own queue all the same is folded
        // like the others (its topic is on the record), never dropped.
        while let Some(result) = consumer.poll(Duration::ZERO) {
            let mut core = lock(core);
            let accepted = match result {
                Ok(message) => core.accept(consumer, &message),
                Err(e) => {
                    core.consumer_error(e)?;
                    Ok(())
                }
            };
            if let Err(failure) = accepted {
                core.recover(consumer, failure)?;
            }
        }
        let mut taken = 0;
        'topics: for topic in InputTopic::ALL {
            let mut from_topic = 0;
            while let Some(result) = queues.poll(rank(topic)) {
                let mut core = lock(core);
                let accepted = match result {
                    Ok(message) => core.accept(consumer, &message),
                    Err(KafkaError::PartitionEOF(p)) => {
                        core.reached_end(topic, p);
                        Ok(())
                    }
                    Err(e) => {
                        core.consumer_error(e)?;
                        Ok(())
                    }
                };
                taken += 1;
                from_topic += 1;
                if let Err(failure) = accepted {
                    core.recover(consumer, failure)?;
                    break 'topics;
                }
                if from_topic == MAX_BATCH {
                    break;
                }
            }
        }
        if taken == 0 {
            wake.wait(timeout);
        }
        let mut core = lock(core);
        if let Some(fatal) = core.fatal.take() {
            return Err(fatal);
        }
        core.step(consumer, taken == 0)?;
    }
}

/// Commits what is done and unsubscribes. A dynamic member leaves the
/// group, so its partitions move at once; a static one (the default) keeps
/// its place for the session timeout, for a restart to take back.
fn leave(consumer: &BaseConsumer<Context>, core: &Mutex<Core>, timeout: Duration) {
    consumer.unsubscribe();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(true)
            && lock(core).partitions.is_empty()
        {
            break;
        }
    }
    tracing::info!("processor left the group");
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // The core is only ever used from the processor's thread (the
    // rebalance callback runs inside its poll), so a poisoned lock means a
    // panic there already ended the loop; the state is still consistent
    // enough to abandon.
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The consumer's context: runs rebalances against the core.
pub struct Context {
    core: Arc<Mutex<Core>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        kafka::log_client_error(&error, reason, "input consumer");
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let mut core = lock(&self.core);
        match err {
            RespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => core.on_assign(consumer, partitions),
            RespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => core.on_revoke(consumer, partitions),
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

/// The offsets of `tpl` as `Status::committed` lists them.
fn listed(tpl: &TopicPartitionList) -> Vec<((String, i32), i64)> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// One buffered input record.
enum Record {
    /// A record that decoded and validated; decoded again when folded (a
    /// decode costs less than keeping an owned copy of the event).
    /// `appended` is its broker timestamp: when its decisions were due.
    Event {
        key: Vec<u8>,
        value: Vec<u8>,
        appended: Millis,
    },
    /// A record for the dead-letter topic.
    Dead(Box<DeadLetter>),
}

impl Record {
    /// Bytes the record holds, for the merge's byte bound.
    fn size(&self) -> usize {
        match self {
            Record::Event { key, value, .. } => key.len() + value.len(),
            Record::Dead(dead) => {
                dead.key.as_ref().map_or(0, Vec::len) + dead.value.as_ref().map_or(0, Vec::len)
            }
        }
    }
}

/// Fetches the writer schema of registry id `id` for `topic`'s decoder.
/// `Ok(Some(rejection))` when the registry does not have it or it is not a
/// version of the topic's record type (the record is a dead letter);
/// `Err` when the registry cannot be asked (the record is read again after
/// a rewind, never dead-lettered for an outage).
fn schema_by_id(
    registry: &Registry,
    decoders: &mut InputDecoders,
    topic: InputTopic,
    id: u32,
) -> Result<Option<Rejection>, Failure> {
    let why = match registry.schema(id) {
        Ok(json) => match decoders
            .decoder_mut(topic)
            .register_registry_schema(id, &json)
        {
            Ok(()) => {
                tracing::info!(id, ?topic, "writer schema fetched from the schema registry");
                return Ok(None);
            }
            Err(e) => format!("schema registry id {id}: {e}"),
        },
        Err(
            e @ (RegistryError::NotFound { .. }
            | RegistryError::NotAvro { .. }
            | RegistryError::Refused { .. }),
        ) => e.to_string(),
        Err(e @ RegistryError::Unavailable { .. }) => return Err(Failure::Registry(e)),
    };
    tracing::warn!(id, ?topic, reason = %why, "schema registry id refused; its records are dead letters");
    decoders.refuse(topic, id, why.clone());
    Ok(Some(Rejection {
        kind: "unknown_schema_id",
        message: why,
    }))
}

/// What the shell does with an event the fold applied: a post refused for
/// the session limit becomes a dead letter (its rejection is returned); a
/// stop for a variant with no active session is logged.
fn after_fold(outcome: Outcome, input: Input<'_, '_>, max_sessions: usize) -> Option<Rejection> {
    match (outcome, input) {
        (Outcome::SessionLimit, _) => Some(Rejection::session_limit(max_sessions)),
        (Outcome::UnknownVariant | Outcome::Late, Input::Stop(stop)) => {
            tracing::warn!(
                variant_id = %stop.variant_id,
                requested_by = %stop.requested_by,
                known = outcome == Outcome::Late,
                "stop for a variant with no active session: nothing to stop"
            );
            None
        }
        _ => None,
    }
}

struct DeadLetter {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    rejection: Rejection,
    partition: i32,
    offset: i64,
}

/// How far the consumer has read one input topic partition, as its own
/// fetches tell it: never from listed watermarks, which lag on real brokers
/// and which a transactional producer's commit markers (never delivered)
/// keep out of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Nothing heard since the partition was assigned or rewound: only its
    /// end (EOF) can say it is caught up (librdkafka's cached high
    /// watermark may date from an earlier assignment).
    Assigned,
    /// Records arrived: caught up once the position reaches the high
    /// watermark of the consumer's own last fetch response (the one that
    /// brought them), or at the partition's end.
    Reading,
    /// The consumer's fetch reached the end of the partition (librdkafka's
    /// partition EOF, emitted at the last stable offset, past control
    /// markers) and nothing has arrived since: whatever comes next is still
    /// in flight.
    AtEnd,
}

/// One partition's state.
struct Partition {
    monitor: Monitor,
    merge: Merge<Record>,
    /// Per input topic, the offset after the last record read (or the
    /// restored offset).
    next: [Option<i64>; 3],
    /// Per input topic, how far it has been read.
    progress: [Progress; 3],
    /// Since when the merge has held records back waiting for a caught-up
    /// topic that may still have records in flight.
    blocked_since: Option<Instant>,
    paused: [bool; 3],
    /// Bytes (keys and values) buffered in the merge, per input topic.
    buffered_bytes: [usize; 3],
    /// The fold's counts last copied to the metrics.
    exported: MonitorStats,
    /// Changed since the last commit.
    dirty: bool,
    /// Restored and not settled yet: what its recorded clock has made due
    /// is still to be decided (see [`Monitor::settle`]).
    unsettled: bool,
}

impl Partition {
    fn new(monitor: Monitor, offsets: InputOffsets) -> Partition {
        Partition {
            monitor,
            merge: Merge::default(),
            next: [offsets.posted, offsets.interactions, offsets.commands],
            progress: [Progress::Assigned; 3],
            blocked_since: None,
            paused: [false; 3],
            buffered_bytes: [0; 3],
            exported: MonitorStats::default(),
            dirty: false,
            unsettled: true,
        }
    }

    /// The partition's own changelog record: its clock (`clock`, which may
    /// run ahead of the monitor's when an advance is recorded before it is
    /// made) and its input positions.
    fn record(&self, clock: Millis) -> ChangelogChange {
        ChangelogChange {
            key: ChangelogRecord::PARTITION_KEY.to_owned(),
            record: Some(ChangelogRecord {
                variant_id: ChangelogRecord::PARTITION_KEY.to_owned(),
                partition_clock: (clock != Millis::MIN).then_some(clock),
                input_offsets: Some(self.offsets()),
                session: None,
                held: Vec::new(),
            }),
        }
    }

    /// Whether `topic` has nothing more to give the merge for now: the
    /// consumer read it to its end. `fetched_end` is the high watermark
    /// librdkafka cached from its last fetch response for the partition.
    fn caught_up(&self, topic: InputTopic, fetched_end: impl FnOnce() -> Option<i64>) -> bool {
        let i = rank(topic);
        match self.progress[i] {
            Progress::AtEnd => true,
            Progress::Assigned => false,
            Progress::Reading => self.next[i]
                .zip(fetched_end())
                .is_some_and(|(n, end)| n >= end),
        }
    }

    /// The offset to resume `topic` from: the first record not folded yet.
    fn position(&self, topic: InputTopic) -> Option<i64> {
        self.merge.first_offset(topic).or(self.next[rank(topic)])
    }

    fn offsets(&self) -> InputOffsets {
        InputOffsets {
            posted: self.position(InputTopic::Posted),
            interactions: self.position(InputTopic::Interactions),
            commands: self.position(InputTopic::Commands),
        }
    }
}

/// A commit or produce that failed.
enum Failure {
    /// Abort the transaction and rewind to the last commit.
    Abortable(KafkaError),
    /// The schema registry could not be asked: abort and rewind as for
    /// `Abortable`, so that the record is read again.
    Registry(RegistryError),
    /// Stop the processor.
    Fatal(ProcessorError),
}

impl Failure {
    fn into_fatal(self) -> Result<(), ProcessorError> {
        match self {
            Failure::Fatal(e) => Err(e),
            Failure::Abortable(source) => Err(ProcessorError::Kafka {
                action: "commit the last transaction",
                source,
            }),
            Failure::Registry(source) => Err(ProcessorError::Registry { source }),
        }
    }
}

impl From<ProcessorError> for Failure {
    fn from(e: ProcessorError) -> Self {
        Failure::Fatal(e)
    }
}

/// The output side: the producer and the open transaction.
struct Output {
    config: Arc<ProcessorConfig>,
    /// How decisions are framed.
    framing: Framing,
    producer: ThreadedProducer<DeliveryContext>,
    /// When the open transaction (or, at-least-once, the uncommitted work)
    /// began.
    open_since: Option<Instant>,
    /// Decisions in the open transaction, with when each was due: logged
    /// and counted once their transaction commits.
    open_decisions: Vec<(MonitoringDecision, Millis)>,
    /// Input records read, per input topic (in `rank` order).
    records_in: [u64; 3],
    /// Changelog records produced.
    changelog_out: u64,
    /// Delivery failures already handled (at-least-once).
    failures_seen: u64,
    /// The number of the open (or last) transaction of this run.
    transaction: u64,
    /// `<incarnation>/<transaction>`, the header of the open transaction's
    /// decisions.
    transaction_label: String,
    buf: Vec<u8>,
    counters: Status,
    /// The topic of the record whose send or delivery failed last, for
    /// errors.
    sending: String,
}

/// Produce errors that the same record will meet again however often it is
/// sent: retrying them (abort, rewind, fold again) would loop forever.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::InvalidRequiredAcks
            | RDKafkaErrorCode::TopicAuthorizationFailed
    )
}

impl Output {
    fn classify(&self, source: KafkaError) -> Failure {
        let code = match &source {
            KafkaError::Transaction(e) => Some(e.code()),
            other => other.rdkafka_error_code(),
        };
        if code == Some(RDKafkaErrorCode::UnsupportedFeature) {
            return Failure::Fatal(ProcessorError::TransactionsUnsupported { source });
        }
        if code.is_some_and(refused_for_good) {
            return Failure::Fatal(ProcessorError::RecordRefused {
                topic: self.sending.clone(),
                source,
            });
        }
        // A transaction that fails to commit because the broker refused one
        // of its records says so only in that record's delivery report.
        if let (failed, Some((refused, topic))) = self.producer.context().failures() {
            if failed > self.failures_seen
                && refused.rdkafka_error_code().is_some_and(refused_for_good)
            {
                return Failure::Fatal(ProcessorError::RecordRefused {
                    topic,
                    source: refused,
                });
            }
        }
        let fatal = match &source {
            KafkaError::Transaction(e) => e.is_fatal(),
            _ => matches!(
                code,
                Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
            ),
        };
        if fatal {
            Failure::Fatal(ProcessorError::Fenced {
                transactional_id: self.config.transactional_id(),
                source,
            })
        } else {
            Failure::Abortable(source)
        }
    }

    fn begin(&mut self) -> Result<(), Failure> {
        if self.open_since.is_some() {
            return Ok(());
        }
        if self.config.guarantee == Guarantee::ExactlyOnce {
            self.producer
                .begin_transaction()
                .map_err(|e| self.classify(e))?;
        }
        self.open_since = Some(Instant::now());
        self.transaction += 1;
        self.transaction_label.clear();
        let _ = write!(
            self.transaction_label,
            "{}/{}",
            self.counters.incarnation, self.transaction
        );
        Ok(())
    }

    fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) -> Result<(), Failure> {
        self.begin()?;
        let mut record = record;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer's queue is the backpressure: wait for
                    // deliveries to make room.
                    let _ = kafka::flush(&self.producer, Duration::from_millis(10));
                    record = back;
                }
                Err((e, refused)) => {
                    // Named only on failure: nothing per record on the way.
                    self.sending.clear();
                    self.sending.push_str(refused.topic);
                    return Err(self.classify(e));
                }
            }
        }
    }

    fn decision(&mut self, decision: MonitoringDecision, due: Millis) -> Result<(), Failure> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_framed_into(
            Contract::MonitoringDecision,
            self.framing,
            &decision,
            &mut buf,
        )
        .map_err(|e| ProcessorError::Encode {
            what: "decision",
            reason: e.to_string(),
        })?;
        self.begin()?;
        let kind = decision.kind.as_str();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "decision_kind",
                value: Some(kind),
            })
            .insert(Header {
                key: "decision_id",
                value: Some(decision.decision_id.as_str()),
            })
            .insert(Header {
                key: "earlykill_transaction",
                value: Some(self.transaction_label.as_str()),
            });
        let topic = self.config.topics.decisions.clone();
        let result = self.send(
            BaseRecord::to(&topic)
                .key(decision.variant_id.as_bytes())
                .payload(&buf[..])
                .headers(headers),
        );
        self.buf = buf;
        result?;
        self.open_decisions.push((decision, due));
        self.counters.decisions += 1;
        match self.config.crash_after_decisions {
            Some(n) if self.counters.decisions >= n => {
                Err(Failure::Fatal(ProcessorError::InjectedCrash {
                    decisions: self.counters.decisions,
                }))
            }
            _ => Ok(()),
        }
    }

    /// Publishes the decisions a fold made, emptying `decisions`;
    /// `appended` is when the record that made them was appended (none for
    /// a timeout).
    fn decisions(
        &mut self,
        decisions: &mut Vec<MonitoringDecision>,
        appended: Option<Millis>,
    ) -> Result<(), Failure> {
        for decision in decisions.drain(..) {
            let due = due(&decision, appended);
            self.decision(decision, due)?;
        }
        Ok(())
    }

    /// Sends a rejected record to the dead-letter topic: its key, value
    /// and headers, each cut to a bound so that the dead letter always fits
    /// the producer's message size (the full sizes go in headers), and the
    /// reason.
    fn dead_letter(&mut self, topic: InputTopic, dead: &DeadLetter) -> Result<(), Failure> {
        let source = self.config.topics.input(topic).to_owned();
        let value_max = crate::config::dead_letter_value_max(self.config.message_max_bytes);
        let headers_max = self.config.message_max_bytes / 16;
        let mut headers = OwnedHeaders::new_with_capacity(dead.headers.len() + 9);
        let (mut header_bytes, mut headers_dropped) = (0usize, 0usize);
        for (key, value) in &dead.headers {
            let size = key.len() + value.as_ref().map_or(0, Vec::len);
            if header_bytes + size > headers_max {
                headers_dropped += 1;
                continue;
            }
            header_bytes += size;
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let partition = dead.partition.to_string();
        let offset = dead.offset.to_string();
        let message = bounded_text(&dead.rejection.message, DEAD_LETTER_MESSAGE_MAX);
        let key = dead
            .key
            .as_deref()
            .map(|k| &k[..k.len().min(DEAD_LETTER_KEY_MAX)]);
        let value = dead.value.as_deref().map(|v| &v[..v.len().min(value_max)]);
        let mut sizes = Vec::new();
        if let Some(k) = dead
            .key
            .as_deref()
            .filter(|k| k.len() > DEAD_LETTER_KEY_MAX)
        {
            sizes.push(("earlykill.source.key_size", k.len().to_string()));
        }
        if let Some(v) = dead.value.as_deref().filter(|v| v.len() > value_max) {
            sizes.push(("earlykill.source.value_size", v.len().to_string()));
        }
        if headers_dropped > 0 {
            sizes.push((
                "earlykill.source.headers_dropped",
                headers_dropped.to_string(),
            ));
        }
        for (name, size) in &sizes {
            headers = headers.insert(Header {
                key: name,
                value: Some(size),
            });
        }
        let headers = headers
            .insert(Header {
                key: "earlykill.error.kind",
                value: Some(dead.rejection.kind),
            })
            .insert(Header {
                key: "earlykill.error.message",
                value: Some(message),
            })
            .insert(Header {
                key: "earlykill.source.topic",
                value: Some(&source),
            })
            .insert(Header {
                key: "earlykill.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "earlykill.source.offset",
                value: Some(&offset),
            });
        let dlq = self.config.topics.dead_letters.clone();
        let mut record = BaseRecord::<[u8], [u8]>::to(&dlq).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.send(record)?;
        self.counters.dead_letters += 1;
        telemetry::dead_letter(&source, dead.rejection.kind);
        tracing::warn!(
            topic = %source,
            partition = dead.partition,
            offset = dead.offset,
            kind = dead.rejection.kind,
            message = %message,
            cut = !sizes.is_empty(),
            "dead letter"
        );
        Ok(())
    }

    fn changelog(
        &mut self,
        partition: i32,
        key: &str,
        record: Option<&ChangelogRecord>,
    ) -> Result<(), Failure> {
        let topic = self.config.topics.changelog.clone();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if let Some(record) = record {
            encode_into(Contract::ChangelogRecord, record, &mut buf).map_err(|e| {
                ProcessorError::Encode {
                    what: "changelog record",
                    reason: e.to_string(),
                }
            })?;
        }
        let mut base = BaseRecord::to(&topic)
            .key(key.as_bytes())
            .partition(partition);
        if key == ChangelogRecord::PARTITION_KEY {
            // Which transaction wrote this state: one header per partition
            // and commit, for tracing a restore back to its writer.
            base = base.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: "earlykill_transaction",
                value: Some(self.transaction_label.as_str()),
            }));
        }
        let result = self.send(match record {
            Some(_) => base.payload(&buf[..]),
            None => base,
        });
        self.buf = buf;
        self.changelog_out += 1;
        result
    }

    /// Sends changelog records.
    fn write(&mut self, changes: &[(i32, ChangelogChange)]) -> Result<(), Failure> {
        changes
            .iter()
            .try_for_each(|(p, change)| self.changelog(*p, &change.key, change.record.as_ref()))
    }

    /// At-least-once: waits for everything sent so far and fails if any of
    /// it was not delivered.
    fn delivered(&mut self) -> Result<(), Failure> {
        kafka::flush(&self.producer, self.config.kafka_timeout).map_err(|e| self.classify(e))?;
        let (failed, last) = self.producer.context().failures();
        if failed > self.failures_seen {
            self.failures_seen = failed;
            let (error, topic) = last.unwrap_or((
                KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
                String::new(),
            ));
            tracing::warn!(%error, %topic, "deliveries failed");
            self.sending = topic;
            return Err(self.classify(error));
        }
        Ok(())
    }
}

/// Everything the loop and the rebalance callback share.
pub struct Core {
    config: Arc<ProcessorConfig>,
    out: Output,
    restorer: BaseConsumer<RestoreContext>,
    decoders: InputDecoders,
    topic_names: [CString; 3],
    partitions: BTreeMap<i32, Partition>,
    decisions: Vec<MonitoringDecision>,
    status: StatusWatch,
    /// Partitions of each input topic, checked at start: the topic queues
    /// cover exactly these.
    input_partitions: i32,
    /// The API's view of the sessions, updated after each commit.
    read: Sessions,
    /// Set by the rebalance callback; the loop returns it.
    fatal: Option<ProcessorError>,
    /// Stopping as a crash would: commit nothing more.
    abandoned: bool,
    /// Transactions that failed since the last one that committed.
    failed_in_a_row: u32,
    /// Where a partition with nothing in the changelog starts: the input
    /// consumer's `auto.offset.reset`.
    reset: Offset,
    /// When the metrics that are not counted as they happen were last
    /// copied out.
    last_flush: Instant,
}

impl Core {
    fn new(
        config: Arc<ProcessorConfig>,
        producer: ThreadedProducer<DeliveryContext>,
        restorer: BaseConsumer<RestoreContext>,
        status: StatusWatch,
        framing: Framing,
    ) -> Result<Core, ProcessorError> {
        let cstr = |s: &str| {
            CString::new(s).map_err(|_| ProcessorError::MissingTopics {
                topics: vec![s.to_owned()],
            })
        };
        let topics = &config.topics;
        let decoders = InputDecoders::with(&config.writer_schemas);
        Ok(Core {
            topic_names: [
                cstr(&topics.posted)?,
                cstr(&topics.interactions)?,
                cstr(&topics.commands)?,
            ],
            out: Output {
                config: config.clone(),
                framing,
                producer,
                open_since: None,
                open_decisions: Vec::new(),
                records_in: [0; 3],
                changelog_out: 0,
                failures_seen: 0,
                transaction: 0,
                transaction_label: String::new(),
                buf: Vec::with_capacity(512),
                sending: String::new(),
                counters: Status {
                    incarnation: incarnation(&config.instance_id),
                    ..Status::default()
                },
            },
            reset: kafka::reset_offset(&config),
            config,
            restorer,
            decoders,
            partitions: BTreeMap::new(),
            decisions: Vec::new(),
            status,
            input_partitions: 0,
            read: Sessions::default(),
            fatal: None,
            abandoned: false,
            failed_in_a_row: 0,
            last_flush: Instant::now(),
        })
    }

    fn role(&self, topic: &str) -> Option<InputTopic> {
        let topics = &self.config.topics;
        if topic == topics.interactions {
            Some(InputTopic::Interactions)
        } else if topic == topics.posted {
            Some(InputTopic::Posted)
        } else if topic == topics.commands {
            Some(InputTopic::Commands)
        } else {
            None
        }
    }

    /// Decodes and validates one input record, and folds it at once if the
    /// merge would release it at once; else puts it in its partition's
    /// merge.
    fn accept(
        &mut self,
        consumer: &BaseConsumer<Context>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), Failure> {
        let Some(topic) = self.role(message.topic()) else {
            return Ok(());
        };
        let Core {
            config,
            out,
            decoders,
            topic_names,
            partitions,
            decisions,
            ..
        } = self;
        let p = message.partition();
        let Some(part) = partitions.get_mut(&p) else {
            // Fetched before a revocation; its new owner reads it again.
            return Ok(());
        };
        let offset = message.offset();
        part.next[rank(topic)] = Some(offset + 1);
        part.progress[rank(topic)] = Progress::Reading;
        out.counters.records_in += 1;
        out.records_in[rank(topic)] += 1;
        let (key, value) = (message.key(), message.payload());
        let now = wall_millis();
        let refused = match decoders.refusal(topic, value) {
            Some(why) => Some(Rejection {
                kind: "unknown_schema_id",
                message: why.to_owned(),
            }),
            None => match (
                &config.schema_registry,
                decoders.unknown_registry_id(topic, value),
            ) {
                (Some(registry), Some(id)) => schema_by_id(registry, decoders, topic, id)?,
                _ => None,
            },
        };
        let decoded = match refused {
            Some(rejection) => Err(rejection),
            None => decoders.decode(topic, key, value, &config.limits, now),
        };
        let entry = match decoded {
            Ok(decoded)
                if part.merge.is_empty()
                    && config.merge_wait.is_zero()
                    && InputTopic::ALL.into_iter().all(|t| {
                        t == topic || part.caught_up(t, || fetched_end(consumer, topic_names, t, p))
                    }) =>
            {
                // Nothing is buffered and no other topic can still give an
                // earlier record: the merge would release this one first,
                // so it is folded here, without a copy or a second decode.
                out.begin()?;
                part.dirty = true;
                let input = Input::from(&decoded);
                let outcome = part.monitor.apply(input, decisions);
                if let Some(rejection) = after_fold(outcome, input, config.monitor.max_sessions) {
                    out.dead_letter(
                        topic,
                        &DeadLetter {
                            key: key.map(<[u8]>::to_vec),
                            value: value.map(<[u8]>::to_vec),
                            headers: Vec::new(),
                            rejection,
                            partition: p,
                            offset,
                        },
                    )?;
                }
                let appended = message.timestamp().to_millis().unwrap_or(now);
                out.decisions(decisions, Some(appended))?;
                return Ok(());
            }
            Ok(decoded) => Entry {
                offset,
                time: Some(Input::from(&decoded).event_time()),
                item: Record::Event {
                    key: key.unwrap_or_default().to_vec(),
                    value: value.unwrap_or_default().to_vec(),
                    appended: message.timestamp().to_millis().unwrap_or(now),
                },
            },
            Err(rejection) => Entry {
                offset,
                time: None,
                item: Record::Dead(Box::new(DeadLetter {
                    key: key.map(<[u8]>::to_vec),
                    value: value.map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    rejection,
                    partition: p,
                    offset,
                })),
            },
        };
        part.buffered_bytes[rank(topic)] += entry.item.size();
        part.merge.push(topic, entry);
        Ok(())
    }

    /// The consumer read `topic` of partition `p` to its end.
    fn reached_end(&mut self, topic: InputTopic, p: i32) {
        if let Some(part) = self.partitions.get_mut(&p) {
            part.progress[rank(topic)] = Progress::AtEnd;
        }
    }

    fn consumer_error(&mut self, error: KafkaError) -> Result<(), ProcessorError> {
        match error {
            KafkaError::MessageConsumptionFatal(_) => Err(ProcessorError::Kafka {
                action: "consume the input topics",
                source: error,
            }),
            other => {
                tracing::warn!(error = %other, "input consumer error; librdkafka retries");
                Ok(())
            }
        }
    }

    /// How long the next poll may block: until the next commit, timeout or
    /// merge wait falls due.
    fn poll_timeout(&self, consumer: &BaseConsumer<Context>) -> Duration {
        let mut timeout = MAX_POLL;
        if let Some(since) = self.out.open_since {
            timeout = timeout.min(self.config.commit_interval.saturating_sub(since.elapsed()));
        }
        let now = wall_millis();
        let lag = self.config.idle_lag.as_millis() as Millis;
        for (&p, part) in &self.partitions {
            if let Some(due) = part.monitor.next_due() {
                let wait = due.saturating_add(lag).saturating_sub(now).max(0);
                timeout = timeout.min(Duration::from_millis(wait as u64));
            }
            // Waking for the merge wait helps only when every topic it waits
            // for is caught up: a topic that is behind wakes the loop itself,
            // with its records or its end.
            let Some(since) = part.blocked_since else {
                continue;
            };
            if self.config.merge_wait.is_zero() {
                continue;
            }
            let waits_for_in_flight = InputTopic::ALL.into_iter().all(|t| {
                !part.merge.is_empty_for(t)
                    || part.caught_up(t, || fetched_end(consumer, &self.topic_names, t, p))
            });
            if waits_for_in_flight {
                timeout = timeout.min(self.config.merge_wait.saturating_sub(since.elapsed()));
            }
        }
        timeout
    }

    /// Folds what every partition's merge releases, advances idle clocks,
    /// applies backpressure, and commits when due.
    fn step(
        &mut self,
        consumer: &BaseConsumer<Context>,
        input_idle: bool,
    ) -> Result<(), ProcessorError> {
        if let Err(failure) = self.fold(consumer) {
            return self.recover(consumer, failure);
        }
        let due = self.out.open_since.is_some_and(|since| {
            since.elapsed() >= self.config.commit_interval
                || (input_idle && !self.out.open_decisions.is_empty())
        });
        if due {
            if let Err(failure) = self.commit(consumer) {
                return self.recover(consumer, failure);
            }
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush_metrics(consumer);
        }
        Ok(())
    }

    /// Copies out the totals kept in plain counters, the active sessions
    /// and the consumer lag.
    fn flush_metrics(&mut self, consumer: &BaseConsumer<Context>) {
        self.last_flush = Instant::now();
        let topics = &self.config.topics;
        let records_in = InputTopic::ALL.map(|t| (topics.input(t), self.out.records_in[rank(t)]));
        let counters = &self.out.counters;
        telemetry::flush_records(
            &records_in,
            &[
                (&topics.decisions, counters.decisions),
                (&topics.changelog, self.out.changelog_out),
                (&topics.dead_letters, counters.dead_letters),
            ],
        );
        let mut active = 0;
        for (&p, part) in self.partitions.iter_mut() {
            active += part.monitor.active_sessions();
            let stats = *part.monitor.stats();
            telemetry::fold_stats(&stats, &part.exported);
            part.exported = stats;
            for topic in InputTopic::ALL {
                let name = &self.topic_names[rank(topic)];
                if let Some((low, high)) = kafka::cached_watermarks(consumer, name, p) {
                    let position = part.position(topic).unwrap_or(low);
                    telemetry::consumer_lag(topics.input(topic), p, high - position);
                }
            }
        }
        telemetry::sessions_active(active);
    }

    fn fold(&mut self, consumer: &BaseConsumer<Context>) -> Result<(), Failure> {
        let Core {
            config,
            out,
            decoders,
            topic_names,
            partitions,
            decisions,
            ..
        } = self;
        let now = Instant::now();
        let now_millis = wall_millis();
        let mut idle = Vec::new();
        for (&p, part) in partitions.iter_mut() {
            if std::mem::take(&mut part.unsettled) {
                part.monitor.settle(decisions);
                if !decisions.is_empty() {
                    out.begin()?;
                    part.dirty = true;
                    out.decisions(decisions, None)?;
                }
            }
            let caught = InputTopic::ALL
                .map(|t| part.caught_up(t, || fetched_end(consumer, topic_names, t, p)));
            let Partition {
                monitor,
                merge,
                next,
                blocked_since,
                paused,
                buffered_bytes,
                dirty,
                ..
            } = part;
            // The merge rule: a topic with nothing buffered is passed over
            // only once the consumer has read it to its end, and then only
            // after `merge-wait` (for records still in flight). A topic that
            // is behind is waited for however long it takes: folding past
            // it would run the clock ahead of records known to exist.
            let waited = config.merge_wait.is_zero()
                || blocked_since.is_some_and(|s| now - s >= config.merge_wait);
            let mut released = false;
            while let Some((topic, entry)) = merge.pop(|t| waited && caught[rank(t)]) {
                if !released {
                    // Folding moves offsets and state even when it decides
                    // nothing: that needs a commit too.
                    out.begin()?;
                    released = true;
                }
                *dirty = true;
                buffered_bytes[rank(topic)] -= entry.item.size();
                let appended = match &entry.item {
                    Record::Event { appended, .. } => Some(*appended),
                    Record::Dead(_) => None,
                };
                match entry.item {
                    Record::Event { key, value, .. } => {
                        match decoders.decode(
                            topic,
                            Some(&key),
                            Some(&value),
                            &config.limits,
                            now_millis,
                        ) {
                            Ok(decoded) => {
                                let input = Input::from(&decoded);
                                let outcome = monitor.apply(input, decisions);
                                let limit = config.monitor.max_sessions;
                                if let Some(rejection) = after_fold(outcome, input, limit) {
                                    out.dead_letter(
                                        topic,
                                        &DeadLetter {
                                            key: Some(key.clone()),
                                            value: Some(value.clone()),
                                            headers: Vec::new(),
                                            rejection,
                                            partition: p,
                                            offset: entry.offset,
                                        },
                                    )?;
                                }
                            }
                            Err(rejection) => out.dead_letter(
                                topic,
                                &DeadLetter {
                                    key: Some(key),
                                    value: Some(value),
                                    headers: Vec::new(),
                                    rejection,
                                    partition: p,
                                    offset: entry.offset,
                                },
                            )?,
                        }
                    }
                    Record::Dead(dead) => out.dead_letter(topic, &dead)?,
                }
                out.decisions(decisions, appended)?;
            }
            if released || merge.is_empty() {
                *blocked_since = None;
            }
            if !merge.is_empty() && blocked_since.is_none() {
                *blocked_since = Some(now);
                tracing::trace!(
                    partition = p,
                    buffered = ?InputTopic::ALL.map(|t| merge.len(t)),
                    caught_up = ?caught,
                    next = ?next,
                    "merge waits for a topic"
                );
            }
            if merge.is_empty() && caught.iter().all(|c| *c) {
                // Idle: let the wall clock move event time, but only when
                // that fires something, so an idle partition writes nothing.
                let target = now_millis - config.idle_lag.as_millis() as Millis;
                let timeout_due = monitor.next_due().is_some_and(|d| d <= target);
                if (timeout_due || monitor.held_interactions() > 0) && target > monitor.clock() {
                    idle.push((p, target));
                }
            }
            for topic in InputTopic::ALL {
                let len = merge.len(topic);
                let i = rank(topic);
                let bytes = buffered_bytes[i];
                let pause = len >= config.max_buffered || bytes >= config.max_buffered_bytes;
                let resume = paused[i]
                    && len <= config.max_buffered / 2
                    && bytes <= config.max_buffered_bytes / 2;
                if pause && !paused[i] || resume {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(config.topics.input(topic), p);
                    let result = if pause {
                        consumer.pause(&tpl)
                    } else {
                        consumer.resume(&tpl)
                    };
                    tracing::debug!(partition = p, ?topic, len, bytes, pause, "backpressure");
                    match result {
                        Ok(()) => paused[i] = pause,
                        Err(e) => tracing::warn!(error = %e, partition = p, "pause/resume failed"),
                    }
                }
            }
        }
        self.advance_idle(consumer, idle)
    }

    /// Advances idle partitions' clocks from the wall clock, publishing what
    /// that decides.
    ///
    /// The wall clock is not in the input, so a re-fold after a crash would
    /// not make the same advance at the same point: under at-least-once it
    /// could publish a kill where a timeout was already published. So the
    /// advance is recorded before it is made: the open work is committed,
    /// then each partition's record carrying the clock it advances to, and
    /// only then the decisions; a restore from that record settles the
    /// clock and makes the same decisions again (exactly-once needs none of
    /// this: the advance commits atomically with its decisions or not at
    /// all).
    fn advance_idle(
        &mut self,
        consumer: &BaseConsumer<Context>,
        idle: Vec<(i32, Millis)>,
    ) -> Result<(), Failure> {
        if idle.is_empty() {
            return Ok(());
        }
        if self.config.guarantee == Guarantee::AtLeastOnce {
            self.commit(consumer)?;
            let records: Vec<(i32, ChangelogChange)> = idle
                .iter()
                .filter_map(|&(p, target)| Some((p, self.partitions.get(&p)?.record(target))))
                .collect();
            self.write_changelog_until_delivered(&records)?;
        }
        for (p, target) in idle {
            let Some(part) = self.partitions.get_mut(&p) else {
                continue;
            };
            part.monitor.advance_to(target, &mut self.decisions);
            part.dirty = true;
            self.out.begin()?;
            self.out.decisions(&mut self.decisions, None)?;
        }
        Ok(())
    }

    /// Commits the open work: in exactly-once mode the changelog of every
    /// changed partition, the decisions and the input offsets in one
    /// transaction; in at-least-once mode the decisions first, then the
    /// changelog, then the offsets, each only once the one before is
    /// acknowledged.
    fn commit(&mut self, consumer: &BaseConsumer<Context>) -> Result<(), Failure> {
        if self.out.open_since.is_none() {
            return Ok(());
        }
        let timeout = self.config.kafka_timeout;
        let started = Instant::now();
        self.status.update(|status| status.committing = true);
        let changes = self.changes();
        let offsets = match self.config.guarantee {
            Guarantee::ExactlyOnce => {
                self.out.write(&changes)?;
                let offsets = self.input_offsets();
                let out = &mut self.out;
                let metadata = consumer.group_metadata().ok_or(Failure::Abortable(
                    KafkaError::ConsumerCommit(RDKafkaErrorCode::State),
                ))?;
                out.producer
                    .send_offsets_to_transaction(&offsets, &metadata, timeout)
                    .and_then(|()| kafka::flush(&out.producer, timeout))
                    .and_then(|()| out.producer.commit_transaction(timeout))
                    .map_err(|e| out.classify(e))?;
                offsets
            }
            Guarantee::AtLeastOnce => {
                // Without a transaction nothing can be taken back, so the
                // state may only move once its decisions are acknowledged:
                // a decision refused here is remade after the rewind, from
                // a changelog that never saw this batch.
                self.out.delivered()?;
                self.write_changelog_until_delivered(&changes)?;
                let offsets = self.input_offsets();
                if offsets.count() > 0 {
                    // The positions are safe in the changelog, which is what
                    // a restore resumes from: the group's offsets only show
                    // lag to tools. A failed commit (a rebalance in
                    // progress) is retried with the next one, not rewound.
                    if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                        tracing::warn!(%error, "committing the group's offsets failed; the changelog holds the positions");
                    }
                }
                offsets
            }
        };
        let out = &mut self.out;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            open_ms = out.open_since.map(|s| s.elapsed().as_millis() as u64),
            decisions = out.open_decisions.len(),
            "committed"
        );
        out.open_since = None;
        out.counters.last_committed_transaction = out.transaction;
        out.counters.committed_decisions += out.open_decisions.len() as u64;
        let now = wall_millis();
        for (decision, due) in out.open_decisions.drain(..) {
            let latency = Duration::from_millis((now - due).max(0) as u64);
            if decision.kind != DecisionKind::TimedOut {
                out.counters.latency.record(latency);
            }
            telemetry::decision(&decision, latency);
        }
        out.counters.commits += 1;
        self.failed_in_a_row = 0;
        telemetry::commit();
        out.counters.committed = listed(&offsets);
        self.read.committed(&changes);
        self.publish();
        Ok(())
    }

    /// The changelog records of every changed partition, each partition's
    /// record (its clock and input positions) after its variants'.
    fn changes(&mut self) -> Vec<(i32, ChangelogChange)> {
        let mut changes = Vec::new();
        for (&p, part) in self.partitions.iter_mut().filter(|(_, part)| part.dirty) {
            for change in part.monitor.drain_changes() {
                if change.key != ChangelogRecord::PARTITION_KEY {
                    changes.push((p, change));
                }
            }
            changes.push((p, part.record(part.monitor.clock())));
            part.dirty = false;
        }
        changes
    }

    /// At-least-once: writes `changes` until every record is acknowledged.
    /// The decisions they follow from are already out, so a failure here
    /// must not rewind (the decisions would not be made again from a state
    /// that may be partly written); the records are written again whole,
    /// which a compacted topic absorbs, until they land or the attempts
    /// run out (then the processor exits; see the README's guarantees).
    fn write_changelog_until_delivered(
        &mut self,
        changes: &[(i32, ChangelogChange)],
    ) -> Result<(), Failure> {
        let mut attempt = 0;
        loop {
            let result = self.out.write(changes).and_then(|()| self.out.delivered());
            let error = match result {
                Ok(()) => return Ok(()),
                Err(Failure::Abortable(e)) => e,
                Err(other) => return Err(other),
            };
            attempt += 1;
            if attempt > MAX_FAILURES_IN_A_ROW {
                return Err(Failure::Fatal(ProcessorError::Kafka {
                    action: "write the changelog (gave up after repeated failures)",
                    source: error,
                }));
            }
            let backoff = RETRY_BACKOFF * 2u32.pow(attempt - 1);
            tracing::warn!(
                %error,
                attempt,
                backoff_ms = backoff.as_millis() as u64,
                records = changes.len(),
                "changelog write failed; writing it again"
            );
            // Backing off before the retry, not waiting for anything.
            std::thread::sleep(backoff);
        }
    }

    /// Right after a restore every owned position is a committed one.
    fn restored_positions_are_committed(&mut self) {
        self.out.counters.committed = listed(&self.input_offsets());
    }

    /// The next offset to read of every owned input topic partition.
    fn input_offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (&p, part) in &self.partitions {
            for topic in InputTopic::ALL {
                if let Some(offset) = part.position(topic) {
                    let _ = tpl.add_partition_offset(
                        self.config.topics.input(topic),
                        p,
                        Offset::Offset(offset),
                    );
                }
            }
        }
        tpl
    }

    /// After a failed commit or produce: abort, and rewind every partition
    /// to its last committed state and offsets. Fatal errors end the loop.
    fn recover(
        &mut self,
        consumer: &BaseConsumer<Context>,
        failure: Failure,
    ) -> Result<(), ProcessorError> {
        self.failed_in_a_row += 1;
        let error = match failure {
            Failure::Fatal(e) => return Err(e),
            Failure::Abortable(e) if self.failed_in_a_row > MAX_FAILURES_IN_A_ROW => {
                return Err(ProcessorError::Kafka {
                    action: "commit a transaction (gave up after repeated failures)",
                    source: e,
                })
            }
            Failure::Registry(source) if self.failed_in_a_row > MAX_FAILURES_IN_A_ROW => {
                return Err(ProcessorError::Registry { source })
            }
            Failure::Abortable(e) => e.to_string(),
            Failure::Registry(e) => e.to_string(),
        };
        let backoff = RETRY_BACKOFF * 2u32.pow(self.failed_in_a_row - 1);
        tracing::warn!(
            %error,
            attempt = self.failed_in_a_row,
            backoff_ms = backoff.as_millis() as u64,
            "transaction failed; aborting and rewinding to the last commit"
        );
        self.abort()?;
        // Backing off before the retry, not waiting for anything: the
        // broker needs time to recover from whatever failed.
        std::thread::sleep(backoff);
        let owned: BTreeSet<i32> = self.partitions.keys().copied().collect();
        self.partitions.clear();
        let restored = self.restore(&owned)?;
        let seek = self.start_positions(&restored);
        self.partitions = restored;
        self.restored_positions_are_committed();
        if seek.count() > 0 {
            // The rebuilt partitions start unpaused and empty, so the
            // consumer must not keep a topic paused for backpressure that
            // no longer exists: it would never be resumed (the fault soak
            // found this stall).
            consumer
                .resume(&seek)
                .map_err(|source| ProcessorError::Kafka {
                    action: "resume the input after a rewind",
                    source,
                })?;
            consumer
                .seek_partitions(seek, self.config.kafka_timeout)
                .map_err(|source| ProcessorError::Kafka {
                    action: "rewind the input to the last commit",
                    source,
                })?;
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<(), ProcessorError> {
        let out = &mut self.out;
        let open = out.open_since.take().is_some();
        if open {
            let aborted = &mut out.counters.aborted_transactions;
            if aborted.len() == MAX_ABORTED_LISTED {
                aborted.remove(0);
            }
            aborted.push(out.transaction);
        }
        if open && self.config.guarantee == Guarantee::ExactlyOnce {
            out.producer
                .abort_transaction(self.config.kafka_timeout)
                .map_err(|source| match out.classify(source) {
                    Failure::Fatal(e) => e,
                    Failure::Abortable(source) => ProcessorError::Kafka {
                        action: "abort the transaction",
                        source,
                    },
                    Failure::Registry(source) => ProcessorError::Registry { source },
                })?;
        }
        out.open_decisions.clear();
        out.counters.aborts += 1;
        telemetry::abort();
        Ok(())
    }

    /// Rebuilds `partitions` from the changelog.
    fn restore(
        &mut self,
        partitions: &BTreeSet<i32>,
    ) -> Result<BTreeMap<i32, Partition>, ProcessorError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let started = Instant::now();
        tracing::info!(?partitions, "restoring partitions from the changelog");
        let state = kafka::read_changelog(&self.restorer, &self.config, partitions, |p, n| {
            telemetry::restore_progress(p, n);
            tracing::info!(partition = p, records = n, "restoring");
        })?;
        let mut restored = BTreeMap::new();
        for (p, kafka::Restored { records, writer }) in state {
            self.out.counters.restored_records += records.len() as u64;
            let offsets = records
                .iter()
                .find(|r| r.is_partition_record())
                .and_then(|r| r.input_offsets)
                .unwrap_or_default();
            self.read.restored(p, &records);
            let monitor = Monitor::restore(self.config.monitor, records).map_err(|e| {
                ProcessorError::CorruptChangelog {
                    partition: p,
                    offset: -1,
                    reason: e.to_string(),
                }
            })?;
            tracing::info!(
                partition = p,
                active_sessions = monitor.active_sessions(),
                held = monitor.held_interactions(),
                clock = monitor.clock(),
                ?offsets,
                writer = writer.as_deref().unwrap_or("-"),
                "partition restored"
            );
            if let Some(writer) = writer {
                let from = &mut self.out.counters.restored_from;
                if from.len() == MAX_ABORTED_LISTED {
                    from.remove(0);
                }
                from.push((p, writer));
            }
            restored.insert(p, Partition::new(monitor, offsets));
        }
        self.out.counters.restore_time += started.elapsed();
        tracing::info!(
            ?partitions,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restore finished"
        );
        Ok(restored)
    }

    /// Where to read each input topic of `restored` partitions from.
    fn start_positions(&self, restored: &BTreeMap<i32, Partition>) -> TopicPartitionList {
        let mut start = TopicPartitionList::new();
        for (&p, part) in restored {
            // The changelog holds the partition's positions with its
            // state, written in the same transaction. A topic it records
            // no offset for has had nothing read: start it at the
            // beginning. A partition it records nothing for has no state
            // either, so it starts where the consumer's `auto.offset.reset`
            // says, never at the group's committed offsets: those could
            // only run ahead of an empty state (a lost changelog), and
            // fetching them waits behind a crashed transaction's pending
            // offsets, forever on a broker that never resolves them (the
            // fault soak stalled so on the mock cluster).
            let fallback = if part.next.iter().any(Option::is_some) {
                Offset::Beginning
            } else {
                self.reset
            };
            for topic in InputTopic::ALL {
                let offset = part.next[rank(topic)].map_or(fallback, Offset::Offset);
                let _ = start.add_partition_offset(self.config.topics.input(topic), p, offset);
            }
        }
        start
    }

    fn on_assign(&mut self, consumer: &BaseConsumer<Context>, assigned: &TopicPartitionList) {
        let mut by_topic: [BTreeSet<i32>; 3] = Default::default();
        for element in assigned.elements() {
            if let Some(topic) = self.role(element.topic()) {
                by_topic[rank(topic)].insert(element.partition());
            }
        }
        if let Some(&p) = by_topic[0].iter().find(|&&p| p >= self.input_partitions) {
            // The topic queues cover the partitions counted at start-up; a
            // topic that grew also moved keys to other partitions, away
            // from their state.
            self.fatal = Some(ProcessorError::PartitionsAdded {
                partition: p,
                counted: self.input_partitions,
            });
            let _ = consumer.assign(assigned);
            return;
        }
        if by_topic.iter().any(|set| *set != by_topic[0]) {
            self.fatal = Some(ProcessorError::MisalignedAssignment {
                assignment: format!("{by_topic:?}"),
            });
            let _ = consumer.assign(assigned);
            return;
        }
        self.out.counters.joined = true;
        self.out.counters.restoring = by_topic[0].iter().copied().collect();
        self.publish();
        let restore = self.restore(&by_topic[0]);
        self.out.counters.restoring.clear();
        match restore {
            Ok(restored) => {
                let start = self.start_positions(&restored);
                self.partitions.extend(restored);
                self.restored_positions_are_committed();
                // New partitions start unpaused; so must the consumer's.
                if let Err(e) = consumer
                    .assign(&start)
                    .and_then(|()| consumer.resume(&start))
                {
                    self.fatal = Some(ProcessorError::Kafka {
                        action: "take the assigned partitions",
                        source: e,
                    });
                }
                // Stopping a partition's fetch (at the last revocation)
                // cleared its forward to its topic's queue.
                let topics = InputTopic::ALL.map(|t| self.config.topics.input(t));
                if let Err(e) = kafka::forward(consumer, topics, by_topic[0].iter().copied()) {
                    self.fatal = Some(e);
                }
                tracing::info!(partitions = ?by_topic[0], "partitions assigned");
            }
            Err(e) => {
                self.fatal = Some(e);
                let _ = consumer.assign(assigned);
            }
        }
        self.publish();
    }

    fn on_revoke(&mut self, consumer: &BaseConsumer<Context>, revoked: &TopicPartitionList) {
        if !self.abandoned && self.fatal.is_none() {
            if let Err(failure) = self.commit(consumer) {
                if let Failure::Abortable(e) = &failure {
                    tracing::warn!(error = %e, "commit on revocation failed; aborting");
                }
                if let Err(e) = self.abort() {
                    self.fatal.get_or_insert(e);
                }
                if let Failure::Fatal(e) = failure {
                    self.fatal.get_or_insert(e);
                }
            }
        }
        let gone: BTreeSet<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
        self.partitions.retain(|p, _| !gone.contains(p));
        self.out
            .counters
            .committed
            .retain(|((_, p), _)| !gone.contains(p));
        let _ = consumer.unassign();
        self.read.revoked(&gone);
        let topics = InputTopic::ALL.map(|t| self.config.topics.input(t));
        for &p in &gone {
            telemetry::partition_revoked(topics, p);
        }
        tracing::info!(partitions = ?gone, "partitions revoked");
        self.publish();
    }

    fn publish(&self) {
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        let counters = &self.out.counters;
        telemetry::partitions(counters.restoring.len(), partitions.len());
        self.status.update(|status| {
            *status = Status {
                partitions,
                ..counters.clone()
            }
        });
    }
}

/// The high watermark of partition `p` of `topic` that librdkafka cached
/// from its last fetch response: what the broker had when it answered the
/// consumer's own fetch (no request is made).
fn fetched_end(
    consumer: &BaseConsumer<Context>,
    topic_names: &[CString; 3],
    topic: InputTopic,
    p: i32,
) -> Option<i64> {
    kafka::cached_watermarks(consumer, &topic_names[rank(topic)], p).map(|(_, high)| high)
}

/// When `decision` was due, for its latency: a timeout at its deadline,
/// anything else when the record that triggered it was appended.
fn due(decision: &MonitoringDecision, appended: Option<Millis>) -> Millis {
    match (decision.kind, appended) {
        (DecisionKind::TimedOut, _) | (_, None) => decision.deadline,
        (_, Some(appended)) => appended,
    }
}

/// A name for this run of instance `instance`, unique in this process and
/// across restarts.
fn incarnation(instance: &str) -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{instance}@{}.{n}", wall_millis())
}

fn wall_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
