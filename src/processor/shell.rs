//! The shell: librdkafka's clients around the core. Creates the clients,
//! checks the topics, splits the input into a queue per partition, runs the
//! poll loop, and serves the group's rebalances, each through the core.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::bindings::rd_kafka_resp_err_t as RespErr;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientContext, TopicPartitionList};

use super::broker::librdkafka::{starts_list, Clients};
use super::clients;
use super::core::Core;
use super::handoff::Handoff;
use super::lifecycle::Phase;
use super::status::StatusSink;
use super::{DecisionsFormat, Guarantee, ProcessorConfig};
use super::{ProcessorError, Sessions, StatusWatch};
use crate::kafka::produce::TopicHandles;
use crate::kafka::{self, DeliveryContext, RestoreContext, TopicQueues, Wake};
use crate::shutdown::{Shutdown, State};
use crate::telemetry;
use earlykill_core::event::codec::Framing;
use earlykill_core::event::{Contract, InputTopic, Rejection};
use earlykill_core::merge::rank;

/// Most records taken from one input topic's queue before folding them.
const MAX_BATCH: usize = 2_000;

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

/// The input consumer's context: the core, and the clients it writes and
/// restores with, so that the rebalance callback reaches both.
pub struct Context {
    core: Mutex<Option<Core>>,
    clients: Clients,
}

impl Context {
    fn core(&self) -> MutexGuard<'_, Option<Core>> {
        // The core is only ever used from the processor's thread (the
        // rebalance callback runs inside its poll), so a poisoned lock means
        // a panic there already ended the loop; the state is still
        // consistent enough to abandon.
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `f` on the core, with the [`Broker`](super::broker::Broker) of
/// `consumer`'s clients.
fn with_core<T>(
    consumer: &BaseConsumer<Context>,
    f: impl FnOnce(&mut Core, &super::broker::librdkafka::LibRdKafka<'_, Context>) -> T,
) -> T {
    let context = consumer.context();
    let broker = context.clients.with(consumer);
    let mut core = context.core();
    let core = core
        .as_mut()
        .expect("the core is set before the consumer subscribes");
    f(core, &broker)
}

/// Runs a processor until `shutdown` is triggered or a fatal error. The
/// status is published to `status` as it changes.
///
/// With `threads` above 1 the instance runs that many workers, each on its
/// own thread with its own clients (see `run_worker`); the first to fail
/// stops the others (drained: they commit and leave), and its error is
/// returned.
pub fn run(
    config: ProcessorConfig,
    shutdown: Shutdown,
    status: StatusWatch,
    sessions: Sessions,
) -> Result<(), ProcessorError> {
    let framing = decisions_framing(&config)?;
    // Once for the instance: every series registered at zero before any
    // worker counts.
    let topics = &config.topics;
    let dead_letter_series: Vec<(&str, &'static str)> = InputTopic::ALL
        .into_iter()
        .flat_map(|t| Rejection::kinds_of(t).map(move |kind| (topics.input(t), kind)))
        .collect();
    let shadow_policies: Vec<_> = config
        .policies()
        .shadows
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    telemetry::processor_started(&dead_letter_series, &shadow_policies);
    let sinks = StatusSink::workers(status, config.threads);
    let handoff = Handoff::default();
    if config.threads == 1 {
        let sink = sinks.into_iter().next().expect("one sink per worker");
        return run_worker(
            Arc::new(config),
            framing,
            &shutdown,
            sink,
            sessions,
            handoff,
        );
    }
    let (done, finished) = mpsc::channel();
    let mut handles = Vec::with_capacity(config.threads);
    let mut first = None;
    for (worker, sink) in sinks.into_iter().enumerate() {
        let config = Arc::new(config.worker(worker));
        let (stop, sessions, done) = (shutdown.clone(), sessions.clone(), done.clone());
        let handoff = handoff.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{worker}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    run_worker(config, framing, &stop, sink, sessions, handoff)
                }))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(ProcessorError::WorkerPanicked { worker, message })
                });
                let _ = done.send((worker, result));
            });
        match handle {
            Ok(handle) => handles.push(handle),
            Err(source) => {
                shutdown.drain();
                first = Some(ProcessorError::Spawn { source });
                break;
            }
        }
    }
    drop(done);
    for (worker, result) in finished {
        if let Err(error) = result {
            tracing::error!(worker, %error, "worker failed; stopping the other workers");
            stop_others(&shutdown, &error);
            first.get_or_insert(error);
        }
    }
    for handle in handles {
        let _ = handle.join();
    }
    first.map_or(Ok(()), Err)
}

/// One worker failed: the others commit what they did and leave, or, after
/// an injected crash, stop as the crash would (the whole process dies).
fn stop_others(shutdown: &Shutdown, error: &ProcessorError) {
    #[cfg(feature = "test-hooks")]
    if matches!(error, ProcessorError::InjectedCrash { .. }) {
        shutdown.abandon();
        return;
    }
    let _ = error;
    shutdown.drain();
}

/// Runs one worker: a group member with its own consumer, transactional
/// producer and changelog reader, owning the partitions the group gives
/// it. A worker beyond the input's partition count has nothing to own and
/// stops at once.
fn run_worker(
    config: Arc<ProcessorConfig>,
    framing: Framing,
    shutdown: &Shutdown,
    status: StatusSink,
    sessions: Sessions,
    handoff: Handoff,
) -> Result<(), ProcessorError> {
    let kafka_error = |action| move |source| ProcessorError::Kafka { action, source };
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| ProcessorError::MissingTopics {
            topics: vec![s.to_owned()],
        })
    };
    let topics = &config.topics;
    let wake = Arc::new(Wake::default());
    let mut restorer: BaseConsumer<RestoreContext> = clients::restore_consumer(&config)
        .create_with_context(RestoreContext)
        .map_err(kafka_error("create the changelog reader"))?;
    {
        // A restore runs in the loop: its records wake it like input.
        let wake = wake.clone();
        restorer.set_nonempty_callback(move || wake.notify());
    }
    let producer: ThreadedProducer<DeliveryContext> = clients::producer(&config)
        .create_with_context(DeliveryContext::tracking(&topics.changelog))
        .map_err(kafka_error("create the producer"))?;
    let clients = Clients {
        // Found by name per record: the changelog, most of the records,
        // first.
        out_topics: TopicHandles::new([
            &*topics.changelog,
            &topics.decisions,
            &config.shadow_decisions_topic,
            &topics.dead_letters,
        ]),
        producer,
        restorer,
        topic_names: [
            cstr(&topics.posted)?,
            cstr(&topics.interactions)?,
            cstr(&topics.commands)?,
        ],
        reset: clients::reset_offset(&config),
        config: config.clone(),
    };
    let mut consumer: BaseConsumer<Context> = clients::input_consumer(&config)
        .create_with_context(Context {
            core: Mutex::new(None),
            clients,
        })
        .map_err(kafka_error("create the input consumer"))?;
    {
        let wake = wake.clone();
        consumer.set_nonempty_callback(move || wake.notify());
    }
    let consumer = Arc::new(consumer);
    let partitions = clients::check_topics(&consumer, &config)?;
    let worker = status.worker();
    if worker >= partitions as usize {
        tracing::info!(
            worker,
            partitions,
            "more workers than input partitions: this one has nothing to own"
        );
        return Ok(());
    }
    let queues = TopicQueues::split(
        &consumer,
        InputTopic::ALL.map(|t| config.topics.input(t)),
        partitions,
        &wake,
    )
    .map_err(split_failed)?;
    *consumer.context().core() = Some(Core::new(
        config.clone(),
        framing,
        partitions,
        status,
        sessions,
        handoff,
    ));
    if config.guarantee == Guarantee::ExactlyOnce {
        consumer
            .context()
            .clients
            .producer
            .init_transactions(config.kafka_timeout)
            .map_err(kafka_error(
                "initialise transactions (a broker without transactions needs \
                 --guarantee at-least-once)",
            ))?;
    }
    consumer
        .subscribe(&[&topics.posted, &topics.interactions, &topics.commands])
        .map_err(kafka_error("subscribe to the input topics"))?;
    with_core(&consumer, |core, _| core.become_(Phase::Starting));
    tracing::info!(
        group = %config.group_id,
        transactional_id = %config.transactional_id(),
        guarantee = ?config.guarantee,
        partitions,
        "processor started"
    );
    let result = run_loop(&consumer, &queues, &wake, shutdown);
    match (&result, shutdown.state()) {
        (Ok(()), State::Draining | State::Running) => {
            with_core(&consumer, |core, _| core.become_(Phase::PendingShutdown));
            leave(&consumer, config.kafka_timeout)
        }
        // The loop returned its error: the worker has failed.
        (Err(_), _) => with_core(&consumer, |core, _| core.become_(Phase::Failed)),
        _ => with_core(&consumer, |core, _| core.become_(Phase::Abandoned)),
    }
    drop(queues);
    // The core is taken out before the consumer closes, so that it reports
    // stopped only once the consumer is gone (a revocation the close
    // serves finds no core and gives the partitions up as they are).
    let core = consumer.context().core().take();
    drop(consumer);
    if let Some(mut core) = core {
        core.become_(Phase::Dead);
    }
    result
}

fn run_loop(
    consumer: &BaseConsumer<Context>,
    queues: &TopicQueues<Context>,
    wake: &Wake,
    shutdown: &Shutdown,
) -> Result<(), ProcessorError> {
    let recovering = |failure| with_core(consumer, |core, broker| core.recover(broker, failure));
    loop {
        match shutdown.state() {
            State::Running => {}
            State::Draining => {
                return with_core(consumer, |core, broker| core.commit(broker))
                    .map_err(|f| f.into_fatal("commit the last transaction"))
            }
            State::Abandoned => return Ok(()),
        }
        let timeout = with_core(consumer, |core, broker| core.poll_timeout(broker));
        wake.clear();
        // Rebalances and errors. Input records arrive on the topic queues;
        // one that reached the consumer's own queue all the same is folded
        // like the others (its topic is on the record), never dropped.
        while let Some(result) = consumer.poll(Duration::ZERO) {
            let accepted = match result {
                Ok(message) => with_core(consumer, |core, broker| core.accept(broker, &message)),
                Err(e) => {
                    consumer_error(e)?;
                    Ok(())
                }
            };
            if let Err(failure) = accepted {
                recovering(failure)?;
            }
        }
        let mut taken = 0;
        // Up to `MAX_BATCH` of each topic's records are taken, then
        // accepted together (a run folded at once goes through
        // `apply_batch`); a partition's end or an error is handled in its
        // place, after the records before it.
        'topics: for topic in InputTopic::ALL {
            let mut batch = Vec::new();
            let mut from_topic = 0;
            loop {
                let next = (from_topic < MAX_BATCH)
                    .then(|| queues.poll(rank(topic)))
                    .flatten();
                if next.is_some() {
                    taken += 1;
                    from_topic += 1;
                }
                let next = match next {
                    Some(Ok(message)) => {
                        batch.push(message);
                        continue;
                    }
                    other => other,
                };
                if !batch.is_empty() {
                    let accepted = with_core(consumer, |core, broker| {
                        core.accept_batch(broker, topic, &batch)
                    });
                    batch.clear();
                    if let Err(failure) = accepted {
                        // The rest of the batch is read again after the
                        // rewind.
                        recovering(failure)?;
                        break 'topics;
                    }
                }
                match next {
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        with_core(consumer, |core, _| core.reached_end(topic, p));
                    }
                    Some(Err(e)) => consumer_error(e)?,
                    _ => break,
                }
            }
        }
        if taken == 0 {
            wake.wait(timeout);
        }
        with_core(consumer, |core, broker| match core.take_error() {
            Some(fatal) => Err(fatal),
            None => core.step(broker, taken == 0),
        })?;
    }
}

fn consumer_error(error: KafkaError) -> Result<(), ProcessorError> {
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

/// Commits what is done and unsubscribes. A dynamic member leaves the
/// group, so its partitions move at once; a static one (the default) keeps
/// its place for the session timeout, for a restart to take back.
fn leave(consumer: &BaseConsumer<Context>, timeout: Duration) {
    consumer.unsubscribe();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        let unassigned = consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(true);
        if unassigned && with_core(consumer, |core, _| core.owns_nothing()) {
            break;
        }
    }
    tracing::info!("processor left the group");
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
        if self.core().is_none() {
            // Closing, after the loop returned.
            let _ = consumer.unassign();
            return;
        }
        match err {
            RespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => on_assign(consumer, partitions),
            RespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let gone: BTreeSet<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                with_core(consumer, |core, broker| core.revoked(broker, &gone));
                let _ = consumer.unassign();
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

fn on_assign(consumer: &BaseConsumer<Context>, assigned: &TopicPartitionList) {
    let clients = &consumer.context().clients;
    let mut by_topic: [BTreeSet<i32>; 3] = Default::default();
    with_core(consumer, |core, _| {
        for element in assigned.elements() {
            if let Some(topic) = core.role(element.topic()) {
                by_topic[rank(topic)].insert(element.partition());
            }
        }
    });
    let fatal = match with_core(consumer, |core, broker| core.assigned(broker, &by_topic)) {
        Ok(starts) => {
            // The partitions live now (handed over within the instance);
            // the others join the assignment as each is restored.
            let start = starts_list(&clients.config, clients.reset, &starts);
            // New partitions start unpaused; so must the consumer's.
            consumer
                .assign(&start)
                .and_then(|()| consumer.resume(&start))
                .map_err(|source| ProcessorError::Kafka {
                    action: "take the assigned partitions",
                    source,
                })
                .err()
        }
        Err(e) => {
            let _ = consumer.assign(assigned);
            Some(e)
        }
    };
    if let Some(e) = fatal {
        with_core(consumer, |core, _| core.fail(e));
    }
}

/// An input topic's queues that could not be split.
fn split_failed(source: KafkaError) -> ProcessorError {
    ProcessorError::Kafka {
        action: "split the input consumer's queue by partition",
        source,
    }
}
