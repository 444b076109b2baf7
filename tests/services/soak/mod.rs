//! Fault soak: generated traffic through librdkafka's mock cluster into
//! several processor instances while a seeded schedule crashes them (at
//! random moments and in the middle of transactions), starts and stops
//! instances (rebalances), takes the broker down and injects request errors.
//! At the end the decisions topic is compared with an oracle: the pure fold
//! over the same input. Nothing may be lost, doubled or different.
//!
//! `EARLYKILL_SOAK_SEED` replays a run; `EARLYKILL_SOAK_VARIANTS` and
//! `EARLYKILL_SOAK_FAULTS` make it longer (RELIABILITY.md has a long run).
//!
//! The input is produced before the processors start: with every input
//! record already in its topic, each partition's event-time merge is exact,
//! so the processors must decide exactly what the oracle decides, field by
//! field. Event times lie a day ahead of the wall clock, so the idle clock
//! (which follows the wall clock) never fires a timeout the oracle would not;
//! a final post per partition, two windows after the last event, ends every
//! session.
//!
//! librdkafka 2.12's mock broker writes no abort markers, so a
//! read_committed reader also sees records of aborted transactions. Each
//! decision carries an `earlykill_transaction` header (`<run>/<n>`) and each
//! run reports which of its transactions committed; the check drops the
//! others, as a real broker would, and counts them. The same missing
//! markers let a restore after an abort read that transaction's changelog
//! (a real broker hides it), so its decisions are not made again: such a
//! decision is reported apart, as hidden by the mock, and only with the
//! evidence: a restore of its partition from the state an uncommitted
//! transaction wrote (each run lists the writer of every state it
//! restored), whose changelog records include its variant's. Any other
//! missing decision is lost and fails the run.

mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::kafka::{Kafka, Running, PATIENCE};
use crate::common::postgres::TestDb;
use crate::common::projector::{block_on, Projecting};
use crate::common::proxy::Proxy;
use earlykill::generate::traffic::Generated;
use earlykill::processor::{Guarantee, ProcessorConfig};
use earlykill::processor::{ProcessorError, Status};
use earlykill::projector::{self, ProjectorConfig, ProjectorStatus};
use earlykill_core::event::{Contract, DecisionKind, Decoder, Millis, MonitoringDecision};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::bindings::rd_kafka_resp_err_t as RespErr;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaApiKey;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use workload::{closer, env_u64, oracle, produce, traffic};

const MINUTE: Millis = 60_000;
/// How long the whole run may take before it is a failure.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// The schedule CI and the README's test command run.
const DEFAULT_SEED: u64 = 3;

/// What the fault schedule did, by kind.
#[derive(Debug, Default)]
struct Faults(BTreeMap<&'static str, u64>);

impl Faults {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }
}

/// One instance name's processes over the run.
struct Slot {
    name: String,
    running: Option<Running>,
    /// Stopped on purpose (a scale-down), not to be restarted.
    parked: bool,
}

/// The soak's view of every run: its final status and how it ended.
#[derive(Default)]
struct Runs {
    ended: Vec<(Status, String)>,
}

impl Runs {
    fn finish(&mut self, mut running: Running, how: &str) {
        let result = running.join();
        let status = running.status.get();
        let how = match result {
            Ok(()) => how.to_owned(),
            Err(ProcessorError::InjectedCrash { .. }) => "crash mid-transaction".to_owned(),
            Err(e) => format!("exited: {e}"),
        };
        self.ended.push((status, how));
    }

    /// Whether a decision published in `transaction` (`<run>/<n>`) committed.
    fn committed(&self, transaction: &str) -> bool {
        self.ended
            .iter()
            .any(|(s, _)| s.transaction_committed(transaction))
    }
}

/// The projector writing the decisions to a fresh database through a proxy
/// the fault schedule takes down (a database outage: every connection cut,
/// new ones refused).
struct Projection {
    db: TestDb,
    proxy: Proxy,
    running: Option<Projecting>,
    /// The projector's status when it was stopped.
    status: ProjectorStatus,
}

impl Projection {
    fn start(kafka: &Kafka, name: &str) -> Projection {
        let db = block_on(async {
            let db = TestDb::create(name).await;
            projector::migrate(&projector::connect(&db.url, 1).unwrap())
                .await
                .unwrap();
            db
        });
        let (before, after) = db.url.split_once('@').expect("a URL with a host");
        let (server, database) = after.split_once('/').expect("a URL with a database");
        let proxy = Proxy::start(server);
        let via_proxy = format!("{before}@{}/{database}", proxy.addr);
        let mut config = ProjectorConfig::new(&kafka.cluster.bootstrap_servers(), &via_proxy);
        config.decisions_topic = kafka.config.topics.decisions.clone();
        config
            .kafka
            .insert("session.timeout.ms".into(), "6000".into());
        config.batch_wait = Duration::from_millis(20);
        config.retry_max = Duration::from_millis(200);
        Projection {
            db,
            proxy,
            running: Some(Projecting::start(config)),
            status: ProjectorStatus::default(),
        }
    }

    /// Waits until the projector has applied the decisions topic up to
    /// offset `end`, then stops it.
    fn finish(&mut self, end: i64) {
        let running = self.running.take().expect("running");
        running.wait("the projector did not catch up", PATIENCE * 2, |s| {
            s.next_offsets.get(&0).is_some_and(|next| *next >= end) && s.last_error.is_none()
        });
        self.status = running.status.get();
        running.stop().expect("the projector stops cleanly");
    }

    /// The table the projector wrote, and the one the oracle's decisions
    /// make without any fault (schema `oracle` of the same database).
    fn tables(&self, oracle: &[MonitoringDecision]) -> (Vec<String>, Vec<String>) {
        block_on(async {
            let expected = self.db.table_of("oracle", oracle).await;
            (self.db.table(None).await, expected)
        })
    }
}

struct Harness {
    kafka: Kafka,
    guarantee: Guarantee,
    /// Worker threads per instance.
    threads: usize,
    rng: SmallRng,
    slots: Vec<Slot>,
    runs: Runs,
    faults: Faults,
    exits: BTreeMap<String, u64>,
    /// The fault kinds to draw from (0 kill, 1 crash mid-transaction,
    /// 2 scale, 3 broker down, 4 request errors, 5 database outage,
    /// 6 a record refused for good).
    kinds: Vec<u8>,
    projection: Projection,
}

impl Harness {
    fn config(&self, name: &str, crash_after: Option<u64>) -> ProcessorConfig {
        let mut config = self.kafka.processor_config(name);
        config.guarantee = self.guarantee;
        config.threads = self.threads;
        config.limits.max_future_skew_ms = None;
        // Every record is in its topic before the start, and the merge
        // waits for an input that is behind however long a fault delays
        // it (the default), so the merge is exact.
        config.commit_interval = Duration::from_millis(50);
        config.crash_after_decisions = crash_after;
        config.kafka_timeout = Duration::from_secs(20);
        if let Ok(debug) = std::env::var("EARLYKILL_SOAK_RDKAFKA_DEBUG") {
            config.kafka.insert("debug".into(), debug);
        }
        config
    }

    fn start(&mut self, index: usize, crash_after: Option<u64>) {
        let config = self.config(&self.slots[index].name, crash_after);
        self.slots[index].running = Some(Running::start(config));
        self.slots[index].parked = false;
    }

    /// Restarts every instance that ended on its own (a supervisor's job),
    /// recording how it ended.
    fn supervise(&mut self) {
        for i in 0..self.slots.len() {
            let finished = self.slots[i]
                .running
                .as_ref()
                .is_some_and(Running::is_finished);
            if finished {
                let running = self.slots[i].running.take().unwrap();
                self.runs.finish(running, "ended");
                let (status, how) = self.runs.ended.last().unwrap();
                if !how.starts_with("crash") {
                    *self.exits.entry(how.clone()).or_default() += 1;
                }
                let _ = status;
                self.start(i, None);
            }
        }
    }

    /// Input records committed so far, summed over partitions, as the
    /// current owners report them.
    fn progress(&self, ends: &[(String, i32, i64)]) -> (i64, bool) {
        let mut best: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for slot in &self.slots {
            if let Some(r) = &slot.running {
                let s = r.status.get();
                for ((t, p), o) in &s.committed {
                    let e = best.entry((t.clone(), *p)).or_default();
                    *e = (*e).max(*o);
                }
            }
        }
        let done: i64 = ends
            .iter()
            .map(|(t, p, _)| best.get(&(t.clone(), *p)).copied().unwrap_or(0))
            .sum();
        let complete = ends
            .iter()
            .all(|(t, p, end)| best.get(&(t.clone(), *p)).copied().unwrap_or(0) >= *end);
        (done, complete)
    }

    fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].running.is_some())
            .collect()
    }

    fn inject(&mut self) {
        let running = self.running();
        let kind = self.kinds[self.rng.random_range(0..self.kinds.len())];
        match kind {
            0 => {
                // kill -9: stop at once, committing nothing.
                let i = running[self.rng.random_range(0..running.len())];
                let r = self.slots[i].running.take().unwrap();
                r.shutdown.abandon();
                self.runs.finish(r, "killed");
                self.start(i, None);
                self.faults.add("kill");
            }
            1 => {
                // A restart that will crash after producing a few decisions,
                // with its transaction open.
                let i = running[self.rng.random_range(0..running.len())];
                let r = self.slots[i].running.take().unwrap();
                r.shutdown.drain();
                self.runs.finish(r, "restarted");
                let after = self.rng.random_range(1..400);
                self.start(i, Some(after));
                self.faults.add("crash mid-transaction");
            }
            2 => {
                // Scale: start a parked instance or park a running one.
                let parked: Vec<usize> = (0..self.slots.len())
                    .filter(|i| self.slots[*i].parked)
                    .collect();
                if !parked.is_empty() && (running.len() == 1 || self.rng.random_bool(0.5)) {
                    let i = parked[self.rng.random_range(0..parked.len())];
                    self.start(i, None);
                    self.faults.add("instance started");
                } else if running.len() > 1 {
                    let i = running[self.rng.random_range(0..running.len())];
                    let r = self.slots[i].running.take().unwrap();
                    r.shutdown.drain();
                    self.runs.finish(r, "stopped");
                    self.slots[i].parked = true;
                    self.faults.add("instance stopped");
                }
            }
            3 => {
                let down = Duration::from_millis(self.rng.random_range(200..3000));
                self.kafka.cluster.broker_down(1).expect("broker down");
                std::thread::sleep(down);
                self.kafka.cluster.broker_up(1).expect("broker up");
                self.faults.add("broker down");
            }
            6 => {
                // A record the broker refuses for good: the transaction
                // aborts and the processor rewinds. Not in the default
                // schedule while issue 7's defect stands (RELIABILITY.md).
                self.kafka.cluster.request_errors(
                    RDKafkaApiKey::Produce,
                    &[RespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
                );
                self.faults.add("refused record");
            }
            5 => {
                let down = Duration::from_millis(self.rng.random_range(200..3000));
                self.projection.proxy.down();
                std::thread::sleep(down);
                self.projection.proxy.up();
                self.faults.add("database outage");
            }
            _ => {
                let (api, errors): (RDKafkaApiKey, &[RespErr]) = match self.rng.random_range(0..4) {
                    0 => (
                        RDKafkaApiKey::Produce,
                        &[RespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
                    ),
                    1 => (
                        RDKafkaApiKey::EndTxn,
                        &[RespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 2],
                    ),
                    2 => (
                        RDKafkaApiKey::TxnOffsetCommit,
                        &[RespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 2],
                    ),
                    _ => (
                        RDKafkaApiKey::Fetch,
                        &[RespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
                    ),
                };
                self.kafka.cluster.request_errors(api, errors);
                self.faults.add("request errors");
            }
        }
    }
}

/// Reads the whole decisions topic (read_committed), with each record's
/// transaction header, and the offset after the last record.
fn read_decisions(kafka: &Kafka) -> (Vec<(MonitoringDecision, String)>, i64) {
    let topic = &kafka.config.topics.decisions;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
        .set("group.id", "soak-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let (_, end) = consumer
        .fetch_watermarks(topic, 0, PATIENCE)
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let decoder = Decoder::new(Contract::MonitoringDecision);
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut next = 0;
    while next < end {
        assert!(
            Instant::now() < deadline,
            "reading the decisions topic stalled at {next} of {end}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let transaction = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "earlykill_transaction"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let decision = decoder
                    .decode_reference(m.payload().expect("value"))
                    .expect("decision decodes");
                out.push((decision, transaction));
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("reading decisions: {e}"),
        }
    }
    (out, next)
}

fn soak(guarantee: Guarantee, threads: usize) {
    // A fixed seed by default, so the test command runs the same schedule
    // everywhere; `EARLYKILL_SOAK_SEED=random` draws one (printed below).
    let seed = match std::env::var("EARLYKILL_SOAK_SEED").as_deref() {
        Ok("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        _ => env_u64("EARLYKILL_SOAK_SEED").unwrap_or(DEFAULT_SEED),
    };
    let variants = env_u64("EARLYKILL_SOAK_VARIANTS").unwrap_or(600);
    // The mock cluster keeps 5 MB per partition: about 70,000 records, or
    // 120 variants' traffic. More variants need more partitions.
    let partitions = env_u64("EARLYKILL_SOAK_PARTITIONS").unwrap_or(6) as i32;
    let fault_count = env_u64("EARLYKILL_SOAK_FAULTS").unwrap_or(12);
    eprintln!(
        "soak {guarantee:?}, {threads} thread(s): EARLYKILL_SOAK_SEED={seed} EARLYKILL_SOAK_VARIANTS={variants} \
         EARLYKILL_SOAK_PARTITIONS={partitions} EARLYKILL_SOAK_FAULTS={fault_count}"
    );
    let started = Instant::now();

    let kafka = Kafka::new(partitions);
    let start = chrono::Utc::now().timestamp_millis() + 24 * 60 * MINUTE;
    let input = traffic(seed, variants, start);
    let last = input.iter().map(Generated::time).max().unwrap_or(start);
    let closers: Vec<_> = (0..partitions)
        .map(|p| closer(p, last + 20 * MINUTE))
        .collect();
    produce(&kafka, &input, &closers);
    let ends = kafka.input_ends();
    let total: i64 = ends.iter().map(|(_, _, e)| e).sum();

    let projection = Projection::start(
        &kafka,
        &format!("soak_{}_{threads}", format!("{guarantee:?}").to_lowercase()),
    );
    let mut h = Harness {
        kafka,
        guarantee,
        threads,
        rng: SmallRng::seed_from_u64(seed),
        slots: (0..3)
            .map(|i| Slot {
                name: format!("p{i}"),
                running: None,
                parked: false,
            })
            .collect(),
        runs: Runs::default(),
        faults: Faults::default(),
        exits: BTreeMap::new(),
        kinds: std::env::var("EARLYKILL_SOAK_KINDS")
            .map(|v| {
                v.split(',')
                    .map(|k| k.trim().parse().expect("a fault kind 0-6"))
                    .collect()
            })
            .unwrap_or_else(|_| (0..=6).collect()),
        projection,
    };
    let (oracle, oracle_in_order) = oracle(&h.config("oracle", None), &input, &closers);
    h.start(0, None);
    h.start(1, None);
    h.slots[2].parked = true;

    // Faults at random points of progress, so they land while there is
    // work in flight however fast or slow this machine is.
    let mut points: Vec<i64> = (0..fault_count)
        .map(|_| h.rng.random_range(0..total.max(1)))
        .collect();
    points.sort_unstable();
    let mut points = points.into_iter().peekable();
    let mut report = Instant::now();
    loop {
        assert!(
            started.elapsed() < RUN_LIMIT,
            "the soak did not finish in {RUN_LIMIT:?} (seed {seed}); faults {:?}, progress {:?} of {total}",
            h.faults.0,
            h.progress(&ends).0
        );
        h.supervise();
        let (done, complete) = h.progress(&ends);
        if report.elapsed() > Duration::from_secs(10) {
            report = Instant::now();
            let owners: Vec<String> = h
                .slots
                .iter()
                .filter_map(|s| {
                    let st = s.running.as_ref()?.status.get();
                    Some(format!(
                        "{}: {:?} restoring {:?} in {} decisions {} commits {} aborts {}",
                        s.name,
                        st.partitions,
                        st.restoring,
                        st.records_in,
                        st.decisions,
                        st.commits,
                        st.aborts
                    ))
                })
                .collect();
            eprintln!(
                "  {:>4.0} s: committed {done} of {total}, faults {:?}, {owners:?}",
                started.elapsed().as_secs_f64(),
                h.faults.0
            );
        }
        if complete && points.peek().is_none() {
            break;
        }
        if points.peek().is_some_and(|p| done >= *p) {
            points.next();
            h.inject();
            continue;
        }
        // Poll the instances' progress; not a synchronisation (the loop
        // re-reads every status), only a pace.
        std::thread::sleep(Duration::from_millis(20));
    }
    for api in [
        RDKafkaApiKey::Produce,
        RDKafkaApiKey::EndTxn,
        RDKafkaApiKey::TxnOffsetCommit,
        RDKafkaApiKey::Fetch,
    ] {
        h.kafka.cluster.clear_request_errors(api);
    }
    for i in 0..h.slots.len() {
        if let Some(r) = h.slots[i].running.take() {
            r.shutdown.drain();
            h.runs.finish(r, "stopped at the end");
        }
    }

    let (read, end) = read_decisions(&h.kafka);
    // Every decision record, aborted ones included: the mock cluster shows
    // them to the projector too (they repeat committed ones exactly).
    h.projection.finish(end);
    let projector = &h.projection.status;
    let mut found: BTreeMap<String, Vec<&MonitoringDecision>> = BTreeMap::new();
    let mut aborted = 0;
    for (decision, transaction) in &read {
        if guarantee == Guarantee::ExactlyOnce && !h.runs.committed(transaction) {
            aborted += 1;
            continue;
        }
        found
            .entry(decision.decision_id.clone())
            .or_default()
            .push(decision);
    }
    let posted = h.kafka.read_until(&h.kafka.config.topics.posted, |_| true);
    let partition_of: BTreeMap<Vec<u8>, i32> = posted
        .iter()
        .filter_map(|r| Some((r.key.clone()?, r.partition)))
        .collect();
    // The mock cluster writes no transaction markers: its read_committed
    // readers, the processor's restore among them, see aborted records.
    // A restore after an abort whose changelog had landed then starts from
    // the aborted state, and that transaction's decisions are never made
    // again, where a real broker would hide the changelog and have them
    // remade. Such a decision counts as hidden by the mock, not lost, only
    // with the evidence: a restore of its partition from the state an
    // uncommitted transaction wrote (each run lists the writer of every
    // state it restored), and that transaction's changelog records include
    // its variant's. (The decision itself may never have reached the
    // topic: an abort drops what the producer has not sent yet.)
    let restored_aborted: BTreeSet<(i32, &str)> = h
        .runs
        .ended
        .iter()
        .flat_map(|(s, _)| &s.restored_from)
        .filter(|(_, writer)| guarantee == Guarantee::ExactlyOnce && !h.runs.committed(writer))
        .map(|(p, writer)| (*p, writer.as_str()))
        .collect();
    // Which variants each uncommitted transaction wrote to the changelog:
    // a transaction writes a partition's changed variants, then the
    // partition record with its header, so the variant records since the
    // partition's previous partition record are its own.
    let mut written_by: BTreeMap<(i32, String), BTreeSet<Vec<u8>>> = BTreeMap::new();
    if !restored_aborted.is_empty() {
        let mut changelog = h
            .kafka
            .read_until(&h.kafka.config.topics.changelog, |_| true);
        changelog.sort_by_key(|r| (r.partition, r.offset));
        let mut span: BTreeMap<i32, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for record in changelog {
            let key = record.key.unwrap_or_default();
            let keys = span.entry(record.partition).or_default();
            if !key.is_empty() {
                keys.insert(key);
                continue;
            }
            let keys = std::mem::take(keys);
            if let Some(writer) = record.headers.get("earlykill_transaction") {
                if restored_aborted.contains(&(record.partition, writer.as_str())) {
                    written_by.insert((record.partition, writer.clone()), keys);
                }
            }
        }
    }
    let (hidden_by_mock, lost): (Vec<&String>, Vec<&String>) = oracle
        .keys()
        .filter(|id| !found.contains_key(*id))
        .partition(|id| {
            let variant = oracle[*id].variant_id.as_bytes();
            let p = partition_of[variant];
            written_by
                .iter()
                .any(|((q, _), keys)| *q == p && keys.contains(variant))
        });
    // The projector never saw a hidden decision that no copy of reached the
    // topic; its row is compared with the oracle's table without it.
    let in_topic: BTreeSet<&str> = read.iter().map(|(d, _)| d.decision_id.as_str()).collect();
    let projectable: Vec<MonitoringDecision> = oracle_in_order
        .iter()
        .filter(|d| {
            in_topic.contains(d.decision_id.as_str()) || !hidden_by_mock.contains(&&d.decision_id)
        })
        .cloned()
        .collect();
    let (table, expected_table) = h.projection.tables(&projectable);
    let rows_mismatched = {
        let mut expected: BTreeMap<&String, i32> = BTreeMap::new();
        for row in &expected_table {
            *expected.entry(row).or_default() += 1;
        }
        for row in &table {
            *expected.entry(row).or_default() -= 1;
        }
        expected
            .values()
            .map(|n| n.unsigned_abs() as usize)
            .sum::<usize>()
    };
    let unexpected: Vec<&String> = found
        .keys()
        .filter(|id| !oracle.contains_key(*id))
        .collect();
    let doubled: Vec<&String> = found
        .iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(id, _)| id)
        .collect();
    let mismatched: Vec<&String> = found
        .iter()
        .filter(|(id, copies)| {
            oracle
                .get(*id)
                .is_some_and(|expected| copies.iter().any(|c| *c != expected))
        })
        .map(|(id, _)| id)
        .collect();
    let kinds: BTreeMap<&str, usize> = oracle.values().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.kind.as_str()).or_default() += 1;
        m
    });
    let runs = h.runs.ended.len();
    let aborts: u64 = h.runs.ended.iter().map(|(s, _)| s.aborts).sum();
    eprintln!(
        "soak {guarantee:?} seed {seed}: {} events, {variants} variants, {:.1} s\n  \
         faults injected: {:?}\n  processor runs: {runs}, transactions aborted: {aborts}, exits: {:?}\n  \
         decisions expected {} {kinds:?}, found {} ({} records, {aborted} from aborted transactions)\n  \
         lost {}, doubled {}, unexpected {}, mismatched {}; hidden by the mock's missing abort markers {}\n  \
         variant_monitoring: {} rows, expected {}, rows mismatched {rows_mismatched}; \
         projector: {} batches, {} failed database attempts",
        input.len() + closers.len(),
        started.elapsed().as_secs_f64(),
        h.faults.0,
        h.exits,
        oracle.len(),
        found.len(),
        read.len(),
        lost.len(),
        doubled.len(),
        unexpected.len(),
        mismatched.len(),
        hidden_by_mock.len(),
        table.len(),
        expected_table.len(),
        projector.batches,
        projector.failed_attempts,
    );
    if !mismatched.is_empty() || !lost.is_empty() {
        let mut by_partition: BTreeMap<i32, usize> = BTreeMap::new();
        for id in mismatched.iter().chain(&lost) {
            let variant = oracle[*id].variant_id.as_bytes().to_vec();
            *by_partition.entry(partition_of[&variant]).or_default() += 1;
        }
        eprintln!("  wrong decisions by partition: {by_partition:?}");
    }
    fn sample<'a>(ids: &[&'a String]) -> Vec<&'a str> {
        ids.iter().take(5).map(|s| s.as_str()).collect()
    }
    assert!(
        mismatched.is_empty(),
        "seed {seed}: mismatched {:?}: found {:#?} expected {:#?}",
        sample(&mismatched),
        found[mismatched[0]],
        oracle[mismatched[0]]
    );
    assert!(lost.is_empty(), "seed {seed}: lost {:?}", sample(&lost));
    assert!(
        unexpected.is_empty(),
        "seed {seed}: unexpected {:?}",
        sample(&unexpected)
    );
    if guarantee == Guarantee::ExactlyOnce {
        assert!(
            doubled.is_empty(),
            "seed {seed}: doubled {:?}",
            sample(&doubled)
        );
    }
    assert!(oracle.values().any(|d| d.kind == DecisionKind::Killed));
    assert!(oracle.values().any(|d| d.kind == DecisionKind::TimedOut));
    assert_eq!(
        rows_mismatched, 0,
        "seed {seed}: variant_monitoring differs from the oracle's table"
    );
    assert_eq!(table.len(), variants as usize + closers.len());
    block_on(h.projection.db.drop());
}

#[test]
fn exactly_once_survives_crashes_rebalances_and_broker_faults() {
    soak(Guarantee::ExactlyOnce, 1);
}

/// The same soak with two worker threads per instance: six group members
/// at most, partitions moving between the workers of one instance and
/// between instances, a crash in one worker ending its whole instance.
#[test]
fn exactly_once_with_two_worker_threads_survives_the_same_faults() {
    soak(Guarantee::ExactlyOnce, 2);
}

#[test]
fn at_least_once_loses_nothing_under_the_same_faults() {
    soak(Guarantee::AtLeastOnce, 1);
}
