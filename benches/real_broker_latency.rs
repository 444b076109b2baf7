//! Decision latency on a real broker (tansu 0.6 over TCP on loopback,
//! at-least-once), beside the broker's own floor measured in the same run.
//!
//! Load: waves of 1 000 variants at `RATE` events/s, each variant posted,
//! viewed 100 times in one event, then liked ten times; the tenth like
//! kills it. Events are produced with `linger.ms=1`; what is timed is from
//! the `send` of the tenth like to a `read_committed` consumer
//! (`fetch.wait.max.ms=5`) seeing the result.
//!
//! - **relay** (the floor): a plain librdkafka consumer of the same input
//!   topics with the processor's fetch settings produces each interaction
//!   again at once (`linger.ms=1`) to a relay topic; a watcher reads that.
//!   Nothing but the broker's fetch and produce paths.
//! - **earlykill**: `earlykill run` (one worker) decides; a watcher reads
//!   the kill decisions.
//!
//! Each gets a broker of its own, started empty, and the same load:
//! tansu 0.6 slows its fetches as the logs grow (it lists a partition's
//! batches on each fetch), so a baseline read from longer logs would not
//! be comparable.
//!
//! `cargo bench --bench real_broker_latency`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tansu::Tansu;
use common::{interaction, posted};
use earlykill::kafka::Topics;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{
    Contract, Decoder, Interaction, InteractionKind, MonitoringDecision, VariantPosted,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const RATE: u64 = 5_000;
const SECONDS: u64 = 20;
const RELAY: &str = "bench.relay";

/// Send time of each tenth like (and the wall clock then, in ms), by its
/// event id.
type Sent = Arc<Mutex<HashMap<String, (Instant, i64)>>>;

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, key: &str, value: &[u8]) {
    let mut record = BaseRecord::<str, [u8]>::to(topic).key(key).payload(value);
    loop {
        match p.send(record) {
            Ok(()) => break,
            Err((_, back)) => {
                p.poll(Duration::from_millis(1));
                record = back;
            }
        }
    }
    p.poll(Duration::ZERO);
}

/// A consumer of every partition of `topic` from its end.
fn consumer(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
    fetch_wait_ms: &str,
) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-latency")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", fetch_wait_ms)
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::End)
                .expect("tpl");
        }
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Sends the load for `SECONDS` at `RATE`, wave ids prefixed `run`;
/// returns the send times of the tenth likes.
fn load(bootstrap: &str, topics: &Topics, run: &str) -> Sent {
    let p = producer(bootstrap);
    let sent: Sent = Arc::default();
    let started = Instant::now();
    let duration = Duration::from_secs(SECONDS);
    let mut n: u64 = 0;
    let mut wave = 0;
    'send: loop {
        let t = chrono::Utc::now().timestamp_millis();
        for step in 0..12 {
            for v in 0..1000 {
                if started.elapsed() >= duration {
                    break 'send;
                }
                let due = started + Duration::from_secs_f64(n as f64 / RATE as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let id = format!("{run}-w{wave}-v{v}");
                match step {
                    0 => {
                        let post: VariantPosted = posted(&id, t, 0.5);
                        let value = encode(Contract::VariantPosted, &post).expect("encode");
                        send(&p, &topics.posted, &id, &value);
                    }
                    1 => {
                        let views =
                            interaction(&format!("{id}-views"), &id, InteractionKind::View, 100, t);
                        let value = encode(Contract::Interaction, &views).expect("encode");
                        send(&p, &topics.interactions, &id, &value);
                    }
                    like => {
                        let event_id = format!("{id}-like-{like}");
                        let like = interaction(&event_id, &id, InteractionKind::Like, 1, t);
                        let value = encode(Contract::Interaction, &like).expect("encode");
                        if step == 11 {
                            let wall = chrono::Utc::now().timestamp_millis();
                            sent.lock()
                                .expect("lock")
                                .insert(event_id, (Instant::now(), wall));
                        }
                        send(&p, &topics.interactions, &id, &value);
                    }
                }
                n += 1;
            }
        }
        wave += 1;
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    sent
}

/// One event's latency: in all, and the part until the result was
/// produced (the result record's create time, ms).
struct Latency {
    total: Duration,
    to_produce: Duration,
}

/// What a watcher saw: per event id, when its result arrived and the
/// result record's create time (ms).
type Seen = Arc<Mutex<HashMap<String, (Instant, i64)>>>;

/// Reads `watch` on a thread of its own, from now until `stop`, noting
/// each result `trigger` names an event id for.
fn watcher(
    watch: BaseConsumer,
    trigger: impl Fn(&[u8]) -> Option<String> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> (Seen, std::thread::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = watch.poll(Duration::from_millis(10)) {
                let at = Instant::now();
                if let Some(id) = m.payload().and_then(&trigger) {
                    let produced = m.timestamp().to_millis().unwrap_or(0);
                    out.lock().expect("lock").insert(id, (at, produced));
                }
            }
        }
    });
    (seen, handle)
}

/// The latencies of the sent events, once every one was seen (or 30 s
/// passed).
fn latencies(sent: &Sent, seen: &Seen) -> Vec<Latency> {
    let sent = sent.lock().expect("lock").clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("lock").len() < sent.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = seen.lock().expect("lock");
    sent.iter()
        .filter_map(|(id, &(t, wall))| {
            let &(at, produced) = seen.get(id)?;
            Some(Latency {
                total: at.saturating_duration_since(t),
                to_produce: Duration::from_millis((produced - wall).max(0) as u64),
            })
        })
        .collect()
}

fn report(name: &str, latencies: &[Latency], expected: usize) {
    let quantiles = |mut values: Vec<Duration>| {
        values.sort();
        let at = |q: f64| {
            let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
            values[i].as_secs_f64() * 1000.0
        };
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0)
        )
    };
    if latencies.is_empty() {
        println!("{name}: none of {expected} measured");
        return;
    }
    println!(
        "{name}: {} of {expected} measured\n    sent to seen:     {}\n    sent to produced: {}",
        latencies.len(),
        quantiles(latencies.iter().map(|l| l.total).collect()),
        quantiles(latencies.iter().map(|l| l.to_produce).collect()),
    );
}

fn main() {
    let like_id = |bytes: &[u8]| -> Option<String> {
        Decoder::new(Contract::Interaction)
            .decode::<Interaction>(bytes)
            .ok()
            .map(|i| i.event_id.into_owned())
    };
    let topics = Topics::default();
    // EARLYKILL_BENCH_FETCH_WAIT_MS: `fetch.wait.max.ms` of the relay and
    // the processor (default: the processor's, 100). tansu 0.6 answers a
    // fetch only when that wait is over, even with records to return.
    let fetch_wait = std::env::var("EARLYKILL_BENCH_FETCH_WAIT_MS").unwrap_or("100".into());

    // The floor: a plain consumer of the same input topics with the
    // processor's fetch settings, passing each interaction on at once.
    // Each side gets a broker of its own, started empty: tansu 0.6 lists
    // a partition's stored batches on every fetch, so its fetches slow as
    // the logs grow, and a baseline read from longer logs (or beside the
    // processor, on this machine's two cores) would not be comparable.
    let (relayed, expected) = {
        let tansu = Tansu::start();
        tansu.create_earlykill_topics(&topics, PARTITIONS);
        tansu.create_topics(&[(RELAY, 1, false)]);
        let stop = Arc::new(AtomicBool::new(false));
        let input = [
            topics.posted.as_str(),
            topics.interactions.as_str(),
            topics.commands.as_str(),
        ];
        let relay = {
            let (bootstrap, interactions, stop) = (
                tansu.bootstrap.clone(),
                topics.interactions.clone(),
                stop.clone(),
            );
            let input = consumer(&bootstrap, &input, PARTITIONS, &fetch_wait);
            std::thread::spawn(move || {
                let out = producer(&bootstrap);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = input.poll(Duration::from_millis(10)) {
                        if m.topic() == interactions {
                            send(&out, RELAY, "relay", m.payload().unwrap_or_default());
                        }
                    }
                    out.poll(Duration::ZERO);
                }
            })
        };
        let done = Arc::new(AtomicBool::new(false));
        let (seen, watching) = watcher(
            consumer(&tansu.bootstrap, &[RELAY], 1, "5"),
            like_id,
            done.clone(),
        );
        // The relay's positions are resolved once a warm-up record made
        // it through.
        let warm = producer(&tansu.bootstrap);
        for i in 0.. {
            assert!(i < 120, "the relay never passed a record on");
            let like = interaction(&format!("warm-{i}"), "warm", InteractionKind::Like, 1, 0);
            let value = encode(Contract::Interaction, &like).expect("encode");
            send(&warm, &topics.interactions, "warm", &value);
            warm.flush(Duration::from_secs(5)).expect("flush");
            let until = Instant::now() + Duration::from_secs(1);
            while seen.lock().expect("lock").is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !seen.lock().expect("lock").is_empty() {
                break;
            }
        }
        let sent = load(&tansu.bootstrap, &topics, "relay");
        let relayed = latencies(&sent, &seen);
        stop.store(true, Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        relay.join().expect("relay");
        watching.join().expect("watcher");
        let expected = sent.lock().expect("lock").len();
        (relayed, expected)
    };

    // earlykill, one worker, at-least-once.
    let tansu = Tansu::start();
    tansu.create_earlykill_topics(&topics, PARTITIONS);
    // EARLYKILL_BENCH_LOG=<file>: the processor's debug log goes there
    // (its commits, their durations), to see where the time goes.
    // EARLYKILL_BENCH_LOG_LEVEL: its filter (default `earlykill=debug`).
    let log = std::env::var_os("EARLYKILL_BENCH_LOG");
    let log_level = match (&log, std::env::var("EARLYKILL_BENCH_LOG_LEVEL")) {
        (None, _) => "warn".to_owned(),
        (Some(_), Ok(level)) => level,
        (Some(_), Err(_)) => "earlykill=debug".to_owned(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["run", "--bootstrap-servers", &tansu.bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", "latency"])
        .args(["--http-listen", "off", "--threads", "1"])
        .args(["--log-level", &log_level])
        .args(["--max-future-skew-seconds", "60"])
        .args(["-X", "session.timeout.ms=6000"])
        .args(["-X", &format!("fetch.wait.max.ms={fetch_wait}")])
        // EARLYKILL_BENCH_ARGS: more arguments for `earlykill run`, split
        // on spaces (to try its settings against the same load).
        .args(
            std::env::var("EARLYKILL_BENCH_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdin(Stdio::null())
        .stdout(match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("the log file")),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start earlykill run");
    // Warm up: its assignment, then a first decision.
    let decisions = consumer(&tansu.bootstrap, &[&topics.decisions], 1, "5");
    let warm = load_until_decided(&tansu.bootstrap, &topics, &decisions);
    eprintln!("earlykill deciding after {:.1} s", warm.as_secs_f64());
    let done = Arc::new(AtomicBool::new(false));
    let kill_of = |bytes: &[u8]| {
        Decoder::new(Contract::MonitoringDecision)
            .decode::<MonitoringDecision>(bytes)
            .ok()
            .and_then(|d| d.trigger_event_id)
    };
    let (seen, watching) = watcher(decisions, kill_of, done.clone());
    let sent = load(&tansu.bootstrap, &topics, "earlykill");
    let killed = latencies(&sent, &seen);
    done.store(true, Ordering::Relaxed);
    watching.join().expect("watcher");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "real broker latency at {RATE} events/s for {SECONDS} s, tenth like sent to its \
         result read (read_committed, fetch.wait.max.ms=5); input fetch.wait.max.ms={fetch_wait}:"
    );
    report(
        "  relay (plain consumer of the input topics -> producer, the broker's floor)",
        &relayed,
        expected,
    );
    report(
        "  earlykill (kill decision, at-least-once, 1 worker)",
        &killed,
        sent.lock().expect("lock").len(),
    );
}

/// Posts one variant at a time until a decision comes back: the processor
/// has its partitions and is deciding.
fn load_until_decided(bootstrap: &str, topics: &Topics, decisions: &BaseConsumer) -> Duration {
    let started = Instant::now();
    let p = producer(bootstrap);
    for i in 0.. {
        assert!(started.elapsed() < Duration::from_secs(120), "no decision");
        let id = format!("warm-{i}");
        let post = posted(&id, chrono::Utc::now().timestamp_millis(), 0.5);
        let value = encode(Contract::VariantPosted, &post).expect("encode");
        send(&p, &topics.posted, &id, &value);
        p.flush(Duration::from_secs(5)).expect("flush");
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Some(Ok(_)) = decisions.poll(Duration::from_millis(100)) {
                return started.elapsed();
            }
        }
    }
    unreachable!()
}
