//! `earlykill demo`: the whole flow in one process, with nothing to
//! install. librdkafka's mock cluster (a real Kafka-protocol broker inside
//! the process) with every topic created, the simulated upstream, the
//! processor (exactly once), the HTTP API, and the projector when a
//! database URL is given. It reports progress while it runs and a summary
//! at the end, whose decision counts are read back from the decisions
//! topic with `read_committed`.

mod settings;

pub use settings::{Demo, DemoSettings};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::api::{self, Api};
use crate::generate::{self, GenerateConfig, GenerateStatus, TrafficConfig};
use crate::processor::ProcessorConfig;
use crate::processor::{self, LatencyHistogram, Sessions, StatusWatch};
use crate::projector::{self, ProjectorConfig, ProjectorStatus};
use crate::shutdown::Shutdown;
use crate::upstream::Publisher;
use crate::watch::Watch;
use earlykill_core::event::validate::Limits;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Partitions of the input topics and the changelog.
    pub partitions: i32,
    /// The simulated traffic (`start` is set to the wall clock at start).
    pub traffic: TrafficConfig,
    /// Seconds of event time per wall second.
    pub speedup: f64,
    /// Most events per second.
    pub rate: Option<f64>,
    /// Stop after this long; `None` runs until the shutdown handle fires.
    pub duration: Option<Duration>,
    /// Run the projector into this database too.
    pub database_url: Option<String>,
    /// Where the HTTP API listens; `None` for no API.
    pub http: Option<SocketAddr>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            partitions: 4,
            traffic: TrafficConfig {
                variants: None,
                ..TrafficConfig::default()
            },
            speedup: 10.0,
            rate: None,
            duration: None,
            database_url: None,
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
        }
    }
}

/// A snapshot of the running demo.
#[derive(Debug, Clone, Default)]
pub struct DemoProgress {
    /// Wall time since start.
    pub elapsed: Duration,
    /// Active sessions in the processor.
    pub active: usize,
    /// Committed decisions seen on the decisions topic, by kind.
    pub decisions: BTreeMap<String, u64>,
    /// Events the generator published.
    pub events: u64,
    /// Events per second over the last interval.
    pub events_per_second: f64,
    /// p99 of decision latency (trigger's append to commit) over the last
    /// interval, when there were decisions.
    pub latency_p99: Option<Duration>,
    /// Where the HTTP API listens.
    pub http: Option<SocketAddr>,
    /// The in-process Kafka cluster's bootstrap servers, for `earlykill
    /// tail` and other clients while the demo runs.
    pub bootstrap: String,
}

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    /// Wall time it ran.
    pub elapsed: Duration,
    /// What the generator published.
    pub generated: GenerateStatus,
    /// Decisions on the decisions topic (read_committed), by kind.
    pub decisions: BTreeMap<String, u64>,
    /// Decisions in transactions the processor committed, by its count.
    pub committed_decisions: u64,
    /// Records the processor sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Latency of triggered decisions over the whole run.
    pub latency: LatencyHistogram,
    /// Rows and active rows in variant_monitoring, with a database.
    pub rows: Option<(i64, i64)>,
}

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The mock cluster or a client could not be set up.
    #[error("could not {action}: {source}")]
    Kafka {
        /// What.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The HTTP port is taken or not allowed.
    #[error("cannot listen on {address}: {source}; choose another address with --http-listen")]
    Http {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A component failed.
    #[error("the {component} stopped: {reason}")]
    Component {
        /// Which.
        component: &'static str,
        /// Its error.
        reason: String,
    },
    /// The database could not be prepared.
    #[error(transparent)]
    Database(#[from] projector::StoreError),
    /// A thread or runtime could not start.
    #[error("could not start a thread: {0}")]
    Io(#[from] std::io::Error),
}

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Longest wait for the processor to join its group.
const JOIN: Duration = Duration::from_secs(60);
/// Longest wait for the projector to catch up at the end.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Runs the demo until `config.duration` passes or `shutdown` fires,
/// calling `progress` every half second, then stops everything in order
/// and summarises.
pub fn run(
    mut config: DemoConfig,
    shutdown: &Shutdown,
    mut progress: impl FnMut(&DemoProgress),
) -> Result<DemoSummary, DemoError> {
    let kafka = |action| move |source| DemoError::Kafka { action, source };
    crate::telemetry::prometheus();
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(1).map_err(kafka("start the mock cluster"))?;
    let bootstrap = cluster.bootstrap_servers();
    let mut processor_config = ProcessorConfig::with_bootstrap(&bootstrap);
    processor_config.instance_id = "demo".into();
    // Event time runs `speedup` times faster than the wall clock.
    processor_config.limits = Limits {
        max_future_skew_ms: None,
    };
    // The mock broker answers a fetch only after fetch.wait.max.ms even
    // when records arrive meanwhile (real brokers answer at once), so the
    // processor's 100 ms would show as decision latency here.
    processor_config
        .kafka
        .insert("fetch.wait.max.ms".into(), "5".into());
    let topics = processor_config.topics.clone();
    for topic in [
        &topics.posted,
        &topics.interactions,
        &topics.commands,
        &topics.changelog,
    ] {
        cluster
            .create_topic(topic, config.partitions, 1)
            .map_err(kafka("create the topics"))?;
    }
    for topic in [&topics.decisions, &topics.dead_letters] {
        cluster
            .create_topic(topic, config.partitions, 1)
            .map_err(kafka("create the topics"))?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    let database = match &config.database_url {
        Some(url) => {
            let pool = projector::connect(url, 2)?;
            runtime.block_on(projector::migrate(&pool))?;
            Some(pool)
        }
        None => None,
    };

    // Before any worker starts, so that a taken port leaves nothing running.
    let listener = match config.http {
        Some(address) => Some(
            runtime
                .block_on(tokio::net::TcpListener::bind(address))
                .map_err(|source| DemoError::Http { address, source })?,
        ),
        None => None,
    };

    let status = StatusWatch::default();
    let sessions = Sessions::default();
    let processor_stop = Shutdown::new();
    let processor = spawn("processor", {
        let (config, stop, status, sessions) = (
            processor_config.clone(),
            processor_stop.clone(),
            status.clone(),
            sessions.clone(),
        );
        move || processor::run(config, stop, status, sessions)
    })?;

    let projector_status: Watch<ProjectorStatus> = Watch::default();
    let projector_stop = Shutdown::new();
    let projector = match &config.database_url {
        Some(url) => Some(spawn("projector", {
            let config = ProjectorConfig::new(&bootstrap, url);
            let (stop, status) = (projector_stop.clone(), projector_status.clone());
            move || projector::run(config, stop, status)
        })?),
        None => None,
    };

    let http = match listener {
        Some(listener) => {
            let address = listener.local_addr()?;
            let api = Api {
                processor: Some((status.clone(), sessions.clone())),
                projector: config
                    .database_url
                    .is_some()
                    .then(|| projector_status.clone()),
                publisher: Some(
                    Publisher::new(
                        &bootstrap,
                        &BTreeMap::new(),
                        topics.clone(),
                        Duration::from_secs(10),
                    )
                    .map_err(kafka("create the API's producer"))?,
                ),
                database: database.clone(),
                // One process owns every partition: nobody else to ask.
                cluster: None,
                token: None,
                limits: processor_config.limits,
            };
            Some((address, api::spawn(runtime.handle(), listener, api)))
        }
        None => None,
    };

    // The upstream starts once the processor has its partitions, so the
    // first events do not wait for the group to form.
    let joined = status.wait_until(JOIN, |s| {
        (s.phase.has_joined() && s.restoring.is_empty() && !s.partitions.is_empty())
            || processor.is_finished()
    });
    if !joined || processor.is_finished() {
        processor_stop.drain();
        join(processor, "processor")?;
        return Err(DemoError::Component {
            component: "processor",
            reason: format!("it did not get its partitions within {JOIN:?}"),
        });
    }
    config.traffic.start = chrono::Utc::now().timestamp_millis();
    let generator_status: Watch<GenerateStatus> = Watch::default();
    let generator_stop = Shutdown::new();
    let generator = spawn("generator", {
        let config = GenerateConfig {
            bootstrap_servers: bootstrap.clone(),
            // Latency over batching: the demo shows decision latency.
            kafka: BTreeMap::from([("linger.ms".to_owned(), "5".to_owned())]),
            topics: topics.clone(),
            traffic: config.traffic.clone(),
            speedup: config.speedup,
            rate: config.rate,
        };
        let (stop, status) = (generator_stop.clone(), generator_status.clone());
        move || generate::run(&config, &stop, &status).map(|_| ())
    })?;

    let mut watcher = DecisionWatcher::new(&bootstrap, &topics.decisions, config.partitions)?;
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64, LatencyHistogram::default());
    let mut failure = None;
    loop {
        let tick = Instant::now();
        while tick.elapsed() < PROGRESS_EVERY {
            watcher.poll(PROGRESS_EVERY.saturating_sub(tick.elapsed()));
        }
        let generated = generator_status.get();
        let processed = status.get();
        let now = Instant::now();
        let seconds = now.duration_since(last.0).as_secs_f64().max(1e-3);
        progress(&DemoProgress {
            elapsed: started.elapsed(),
            active: sessions.active_count().unwrap_or(0),
            decisions: watcher.by_kind.clone(),
            events: generated.events(),
            events_per_second: generated.events().saturating_sub(last.1) as f64 / seconds,
            latency_p99: processed.latency.since(&last.2).quantile(0.99),
            http: http.as_ref().map(|(address, _)| *address),
            bootstrap: bootstrap.clone(),
        });
        last = (now, generated.events(), processed.latency);
        // The generator may end on its own (a set number of variants);
        // the processor and the projector only stop when asked.
        failure = failure
            .or_else(|| finished(&processor, "processor"))
            .or_else(|| projector.as_ref().and_then(|p| finished(p, "projector")));
        let out_of_time = config.duration.is_some_and(|d| started.elapsed() >= d);
        if shutdown.is_stopping() || out_of_time || failure.is_some() {
            break;
        }
    }

    // Stop in data-flow order: the upstream, then the processor (which
    // commits what it folded), then the projector once it has caught up.
    generator_stop.drain();
    join(generator, "generator")?;
    processor_stop.drain();
    join(processor, "processor")?;
    let ends = watcher.ends()?;
    let mut rows = None;
    if let Some(projector) = projector {
        let caught_up = projector_status.wait_until(CATCH_UP, |s| {
            ends.iter()
                .all(|(p, end)| *end == 0 || s.next_offsets.get(p).is_some_and(|n| n >= end))
        });
        if !caught_up {
            tracing::warn!(
                "the projector did not catch up within {CATCH_UP:?}; stopping it anyway"
            );
        }
        projector_stop.drain();
        join(projector, "projector")?;
        if let Some(pool) = &database {
            let store = runtime.block_on(projector::Store::open(pool.clone()))?;
            rows = Some(runtime.block_on(store.counts())?);
        }
    }
    watcher.read_to(&ends)?;
    drop(http);
    if let Some(failure) = failure {
        return Err(failure);
    }
    let processed = status.get();
    Ok(DemoSummary {
        elapsed: started.elapsed(),
        generated: generator_status.get(),
        decisions: watcher.by_kind,
        committed_decisions: processed.committed_decisions,
        dead_letters: processed.dead_letters,
        latency: processed.latency,
        rows,
    })
}

type Worker = JoinHandle<Result<(), String>>;

fn spawn<E: std::fmt::Display>(
    name: &'static str,
    work: impl FnOnce() -> Result<(), E> + Send + 'static,
) -> std::io::Result<Worker> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || work().map_err(|e| e.to_string()))
}

/// The failure of a worker that ended on its own.
fn finished(worker: &Worker, component: &'static str) -> Option<DemoError> {
    worker.is_finished().then(|| DemoError::Component {
        component,
        reason: "it ended before the demo did".into(),
    })
}

fn join(worker: Worker, component: &'static str) -> Result<(), DemoError> {
    worker
        .join()
        .map_err(|_| DemoError::Component {
            component,
            reason: "it panicked".into(),
        })?
        .map_err(|reason| DemoError::Component { component, reason })
}

/// Reads the decisions topic as a downstream service would
/// (`read_committed`), counting decisions by kind from their header.
struct DecisionWatcher {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
    by_kind: BTreeMap<String, u64>,
    next: BTreeMap<i32, i64>,
}

impl DecisionWatcher {
    fn new(bootstrap: &str, topic: &str, partitions: i32) -> Result<Self, DemoError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "earlykill-demo-watcher")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|source| DemoError::Kafka {
                action: "create the decisions reader",
                source,
            })?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        }
        consumer.assign(&tpl).map_err(|source| DemoError::Kafka {
            action: "read the decisions topic",
            source,
        })?;
        Ok(DecisionWatcher {
            consumer,
            topic: topic.to_owned(),
            partitions,
            by_kind: BTreeMap::new(),
            next: BTreeMap::new(),
        })
    }

    fn poll(&mut self, timeout: Duration) {
        let Some(Ok(message)) = self.consumer.poll(timeout) else {
            return;
        };
        self.next.insert(message.partition(), message.offset() + 1);
        let kind = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "decision_kind"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "unknown".into());
        *self.by_kind.entry(kind).or_default() += 1;
    }

    /// The end offset of every partition (after the last committed
    /// transaction).
    fn ends(&self) -> Result<BTreeMap<i32, i64>, DemoError> {
        (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .map(|(_, high)| (p, high))
                    .map_err(|source| DemoError::Kafka {
                        action: "read the decisions topic's end",
                        source,
                    })
            })
            .collect()
    }

    /// Reads until every partition's position reaches `ends`. The high
    /// watermark counts transaction markers too, so the position is the
    /// consumer's, not the last message's.
    fn read_to(&mut self, ends: &BTreeMap<i32, i64>) -> Result<(), DemoError> {
        let deadline = Instant::now() + CATCH_UP;
        while Instant::now() < deadline {
            let positions = self
                .consumer
                .position()
                .map_err(|source| DemoError::Kafka {
                    action: "read the decisions topic",
                    source,
                })?;
            let done = ends.iter().all(|(p, end)| {
                *end == 0
                    || positions
                        .find_partition(&self.topic, *p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *end))
            });
            if done {
                return Ok(());
            }
            self.poll(Duration::from_millis(100));
        }
        Err(DemoError::Component {
            component: "decisions reader",
            reason: format!("did not reach the end of the decisions topic in {CATCH_UP:?}"),
        })
    }
}
