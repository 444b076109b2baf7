//! `earlykill run` through librdkafka's in-process mock cluster, each figure
//! next to a baseline measured in the same run:
//!
//! - throughput: the processor folding and committing a backlog, against a
//!   plain consumer that only reads the same records;
//! - decision latency, from sending the interaction that kills to the kill
//!   being visible to a read_committed consumer, at 10k and 50k events/s,
//!   exactly-once and at-least-once;
//! - timeout lateness: a timeout's visibility past its deadline, for
//!   variants with no traffic;
//! - restore: 1M active variants from the changelog, against a plain
//!   consumer reading the same records.
//!
//! `cargo bench --bench pipeline` runs them all; `cargo bench --bench
//! pipeline -- latency` (or throughput, timeouts, restore) runs one.

#[allow(dead_code)]
#[path = "../tests/common/kafka.rs"]
mod kafka;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earlykill::processor::Guarantee;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{
    ChangelogRecord, Contract, DecisionKind, Decoder, Interaction, InteractionKind, Millis,
    MonitoringDecision, SessionState, SessionStatus, VariantPosted,
};
use kafka::{Kafka, Running, PATIENCE};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;
const RUNS: usize = 3;

#[path = "support/selection.rs"]
mod selection;
use selection::wanted;

fn main() {
    if wanted("throughput") {
        throughput();
    }
    if wanted("latency") {
        for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
            for rate in [10_000, 50_000] {
                latency(guarantee, rate);
            }
        }
    }
    if wanted("timeouts") {
        timeouts();
    }
    if wanted("restore") {
        restore();
    }
}

fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

fn producer(kafka: &Kafka) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, value: &[u8]) {
    send_record(p, BaseRecord::to(topic).key(key).payload(value));
}

/// Sends `record`, waiting while the producer's queue is full.
fn send_record(
    p: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, str, [u8]>,
) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                let _ = p.flush(Duration::from_millis(10));
            }
        }
    }
}

fn post(id: &str, posted_at: Millis, timeout_minutes: Option<i32>) -> Vec<u8> {
    let event = VariantPosted {
        variant_id: Cow::Borrowed(id),
        persona_id: Cow::Borrowed("persona"),
        post_id: Cow::Borrowed("post"),
        expected_engagement_rate: 0.5,
        posted_at,
        kill_threshold: None,
        min_interactions: None,
        timeout_minutes,
        metadata: Default::default(),
    };
    encode(Contract::VariantPosted, &event).expect("encode")
}

fn interaction(event_id: &str, id: &str, kind: InteractionKind, count: i64, at: Millis) -> Vec<u8> {
    let event = Interaction {
        event_id: Cow::Borrowed(event_id),
        variant_id: Cow::Borrowed(id),
        kind,
        count,
        occurred_at: at,
    };
    encode(Contract::Interaction, &event).expect("encode")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The number of variants a bench uses: `BENCH_VARIANTS`, else `default`.
fn bench_variants(default: i32) -> i32 {
    std::env::var("BENCH_VARIANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A backlog of `variants` × (1 post + 20 interactions), then the time for
/// a plain consumer to read it and for the processor to fold and commit it.
fn throughput() {
    let kafka = Kafka::new(PARTITIONS);
    let variants = i64::from(bench_variants(10_000));
    let p = producer(&kafka);
    let t = now() - 60_000;
    let topics = kafka.config.topics.clone();
    for v in 0..variants {
        let id = format!("v-{v}");
        send(&p, &topics.posted, &id, &post(&id, t, None));
        for i in 0..20 {
            let kind = if i % 4 == 0 {
                InteractionKind::Like
            } else {
                InteractionKind::View
            };
            let value = interaction(&format!("{id}-{i}"), &id, kind, 1, t + 1 + i);
            send(&p, &topics.interactions, &id, &value);
        }
    }
    p.flush(PATIENCE).expect("flush");
    let records = variants * 21;
    eprintln!("throughput: {records} records produced");
    let ends = kafka.input_ends();
    let mut plain = Vec::new();
    let mut processor: [Vec<f64>; 2] = Default::default();
    for run in 0..RUNS {
        // Baseline: read every input record, nothing else. Both clocks
        // start when the partitions are assigned (for the processor: once
        // they are restored), so both include the first fetch.
        let consumer: BaseConsumer<Assigned> = ClientConfig::new()
            .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
            .set("group.id", format!("plain-{run}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create_with_context(Assigned::default())
            .expect("consumer");
        consumer
            .subscribe(&[&topics.posted, &topics.interactions, &topics.commands])
            .expect("subscribe");
        let mut read = 0;
        while read < records {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
            }
        }
        let started = consumer
            .context()
            .0
            .lock()
            .expect("lock")
            .expect("assigned");
        let elapsed = started.elapsed();
        plain.push(records as f64 / elapsed.as_secs_f64());
        eprintln!("throughput run {run}: plain consumer {elapsed:?}");
        drop(consumer);

        // The processor with one worker thread and with two, each from a
        // fresh group and changelog.
        for (i, threads) in [1, 2].into_iter().enumerate() {
            let mut config = kafka.processor_config(&format!("bench-{run}-{threads}"));
            config.group_id = format!("processor-{run}-{threads}");
            config.topics.changelog = format!("changelog-{run}-{threads}");
            config.threads = threads;
            kafka
                .cluster
                .create_topic(&config.topics.changelog, PARTITIONS, 1)
                .expect("topic");
            let running = Running::start(config);
            running.wait_for_partitions(PARTITIONS as usize);
            let started = Instant::now();
            running.wait_committed(&ends);
            let elapsed = started.elapsed();
            processor[i].push(records as f64 / elapsed.as_secs_f64());
            eprintln!("throughput run {run}: processor, {threads} thread(s) {elapsed:?}");
            running.stop().expect("stop");
        }
    }
    let plain = median(plain);
    let [one, two] = processor.map(median);
    println!(
        "throughput: {records} input records, {PARTITIONS} partitions, median of {RUNS}: \
         plain consumer {plain:.0} records/s, processor (fold + exactly-once commit) \
         1 thread {one:.0} records/s = {:.0}%, 2 threads {two:.0} records/s = {:.0}% \
         of the plain consumer ({:.2}x one thread)",
        100.0 * one / plain,
        100.0 * two / plain,
        two / one
    );
}

/// Notes when a plain consumer's partitions were assigned.
#[derive(Default)]
struct Assigned(Mutex<Option<Instant>>);

impl ClientContext for Assigned {}

impl ConsumerContext for Assigned {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0
                .lock()
                .expect("lock")
                .get_or_insert_with(Instant::now);
        }
    }
}

/// Reads the decisions topic (read_committed) from its end on a thread,
/// noting when each decision of `kind` became visible.
fn watch_decisions(kafka: &Kafka, kind: DecisionKind) -> Watcher {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
        .set("group.id", "watcher")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("watcher");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&kafka.config.topics.decisions, 0, Offset::End)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let handle = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            let decoder = Decoder::new(Contract::MonitoringDecision);
            let mut seen = Vec::new();
            while !stop.load(Ordering::Acquire) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    let at = Instant::now();
                    let d: MonitoringDecision = decoder
                        .decode_reference(m.payload().expect("value"))
                        .expect("decision");
                    if d.kind == kind {
                        seen.push((d, at));
                        count.fetch_add(1, Ordering::Release);
                    }
                }
            }
            seen
        })
    };
    Watcher {
        stop,
        count,
        handle,
    }
}

struct Watcher {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    handle: std::thread::JoinHandle<Vec<(MonitoringDecision, Instant)>>,
}

impl Watcher {
    /// Stops once `n` decisions were seen (or after the patience), and
    /// returns them.
    fn collect(self, n: usize) -> Vec<(MonitoringDecision, Instant)> {
        let deadline = Instant::now() + PATIENCE;
        while self.count.load(Ordering::Acquire) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Release);
        self.handle.join().expect("watcher")
    }
}

/// Interactions at `rate` events/s for 10 s, in waves of 1000 variants: each
/// posted, given 100 views, then ten likes; the tenth like kills.
fn latency(guarantee: Guarantee, rate: u64) {
    let kafka = Kafka::new(PARTITIONS);
    let mut config = kafka.processor_config("latency");
    config.guarantee = guarantee;
    // librdkafka's mock broker answers a fetch with no data only after
    // fetch.wait.max.ms (default 500 ms) even when records arrive in the
    // meantime; a real broker answers as soon as they arrive. 5 ms keeps
    // the mock's artefact out of the figures (the watcher uses the same).
    config.kafka.insert("fetch.wait.max.ms".into(), "5".into());
    let running = Running::start(config);
    running.wait_for_partitions(PARTITIONS as usize);
    let watcher = watch_decisions(&kafka, DecisionKind::Killed);
    let p = producer(&kafka);
    let topics = kafka.config.topics.clone();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut n: u64 = 0;
    let mut wave = 0;
    'send: loop {
        let t = now();
        for step in 0..12 {
            for v in 0..1000 {
                if started.elapsed() >= duration {
                    break 'send;
                }
                // Pace: event n goes out at n / rate seconds.
                let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let id = format!("w{wave}-v{v}");
                match step {
                    0 => send(&p, &topics.posted, &id, &post(&id, t, None)),
                    1 => {
                        let value =
                            interaction(&format!("{id}-views"), &id, InteractionKind::View, 100, t);
                        send(&p, &topics.interactions, &id, &value);
                    }
                    like => {
                        let event_id = format!("{id}-like-{like}");
                        let value = interaction(&event_id, &id, InteractionKind::Like, 1, t);
                        if like == 11 {
                            sent.lock().expect("lock").insert(event_id, Instant::now());
                        }
                        send(&p, &topics.interactions, &id, &value);
                    }
                }
                n += 1;
            }
        }
        wave += 1;
    }
    let achieved = n as f64 / started.elapsed().as_secs_f64();
    p.flush(PATIENCE).expect("flush");
    let expected = sent.lock().expect("lock").len();
    let seen = watcher.collect(expected);
    let sent = sent.lock().expect("lock");
    let mut latencies: Vec<Duration> = seen
        .iter()
        .filter_map(|(d, at)| {
            let trigger = d.trigger_event_id.as_deref()?;
            Some(at.duration_since(*sent.get(trigger)?))
        })
        .collect();
    latencies.sort();
    println!(
        "latency {guarantee:?} at {rate} events/s (achieved {achieved:.0}/s): {} kills of {expected} \
         measured; send to read_committed visibility p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, \
         max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(*latencies.last().expect("some kills")),
    );
    running.stop().expect("stop");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// 2000 variants whose one-minute windows end 2 to 4 s from now, with no
/// traffic after their posts: how long after its deadline each timeout is
/// visible.
fn timeouts() {
    let kafka = Kafka::new(PARTITIONS);
    let running = Running::start(kafka.processor_config("timeouts"));
    running.wait_for_partitions(PARTITIONS as usize);
    let watcher = watch_decisions(&kafka, DecisionKind::TimedOut);
    let p = producer(&kafka);
    let count = 2000;
    let base = now() - 60_000 + 2_000;
    for v in 0..count {
        let id = format!("v-{v}");
        send(
            &p,
            &kafka.config.topics.posted,
            &id,
            &post(&id, base + v, Some(1)),
        );
    }
    p.flush(PATIENCE).expect("flush");
    let seen = watcher.collect(count as usize);
    // The watcher notes an Instant; convert to wall time through one
    // reference point taken now.
    let (wall, instant) = (now(), Instant::now());
    let mut lateness: Vec<Duration> = seen
        .iter()
        .map(|(d, at)| {
            let visible = wall - instant.duration_since(*at).as_millis() as Millis;
            Duration::from_millis((visible - d.deadline).max(0) as u64)
        })
        .collect();
    lateness.sort();
    println!(
        "timeouts: {} of {count} visible; lateness past deadline p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lateness.len(),
        ms(percentile(&lateness, 0.50)),
        ms(percentile(&lateness, 0.99)),
        ms(*lateness.last().expect("some timeouts")),
    );
    running.stop().expect("stop");
}

/// 1M (or `BENCH_VARIANTS`) active sessions in the changelog: the processor's restore time
/// against a plain consumer reading the same records.
fn restore() {
    let kafka = Kafka::new(PARTITIONS);
    let variants = bench_variants(1_000_000);
    let p = producer(&kafka);
    let topic = kafka.config.topics.changelog.clone();
    let t = now();
    let written = Instant::now();
    for v in 0..variants {
        let id = format!("variant-{v:07}");
        let record = ChangelogRecord {
            variant_id: id.clone(),
            partition_clock: None,
            input_offsets: None,
            session: Some(SessionState {
                persona_id: format!("persona-{}", v % 1000),
                post_id: format!("post-{v}"),
                expected_engagement_rate: 0.05,
                kill_threshold: 0.5,
                min_interactions: 10,
                timeout_minutes: 10,
                posted_at: t,
                interactions: 3,
                views: 70,
                status: SessionStatus::Active,
                ended_at: None,
                forget_at: None,
            }),
            held: Vec::new(),
        };
        let value = encode(Contract::ChangelogRecord, &record).expect("encode");
        send_record(
            &p,
            BaseRecord::to(topic.as_str())
                .key(id.as_str())
                .payload(value.as_slice())
                .partition(v % PARTITIONS),
        );
    }
    p.flush(PATIENCE).expect("flush");
    println!(
        "restore: wrote {variants} changelog records in {:.1} s",
        written.elapsed().as_secs_f64()
    );
    let mut plain = Vec::new();
    let mut restores = Vec::new();
    for run in 0..RUNS {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
            .set("group.id", "plain-restore")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .expect("tpl");
        }
        let started = Instant::now();
        consumer.assign(&tpl).expect("assign");
        let mut read = 0;
        while read < variants {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
            }
        }
        plain.push(started.elapsed().as_secs_f64());
        drop(consumer);

        let mut config = kafka.processor_config(&format!("restore-{run}"));
        config.group_id = format!("restore-{run}");
        let running = Running::start(config);
        running.wait_for_partitions(PARTITIONS as usize);
        let status = running.status.get();
        assert_eq!(status.restored_records, variants as u64);
        restores.push(status.restore_time.as_secs_f64());
        running.stop().expect("stop");
    }
    println!(
        "restore: {variants} active variants over {PARTITIONS} partitions, median of {RUNS}: \
         plain consumer reads them in {:.2} s; the processor restores them in {:.2} s",
        median(plain),
        median(restores)
    );
}
