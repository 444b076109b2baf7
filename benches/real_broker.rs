//! `earlykill run` as a real process against a real Kafka-protocol broker
//! over TCP on loopback (tansu, memory storage, at-least-once), each figure
//! next to a baseline measured in the same run:
//!
//! - throughput: the processor folding a backlog of about 1 M records
//!   written before it started, from partition assignment to the last
//!   decision, against a plain librdkafka consumer reading the same topics
//!   from the same broker;
//! - restore: 1 M active variants rebuilt from the changelog after
//!   `kill -9`, against a plain consumer reading the same changelog;
//! - rejoin: from restarting a `kill -9`ed instance to its first decision,
//!   with static group membership (the default) and without;
//! - fold rate: one worker holding 1 M active variants folding 2 M views
//!   written before it started, from its last post's decision to its
//!   committed offsets reaching the ends, against `Monitor::apply_batch`
//!   decoding and folding the same views in process.
//!
//! `cargo bench --bench real_broker` runs them all; `-- throughput` (or
//! `restore`, `rejoin`, `fold_rate`) runs one.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::backlog::{backlog, backlog_start, produce, Event};
use common::tansu::Tansu;
use common::{interaction, posted, MINUTE};
use earlykill::kafka::Topics;
use earlykill::processor::ProcessorConfig;
use earlykill_core::event::{Contract, Decoder, Interaction, InteractionKind, Millis};
use earlykill_core::monitor::Input;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const RUNS: usize = 3;

/// The baselines run in this process with the allocator the processor has:
/// mimalloc, in place of malloc for librdkafka too (its `override`
/// feature), so a plain consumer is measured like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/selection.rs"]
mod selection;
use selection::wanted;

#[path = "real_broker/peer.rs"]
mod peer;

fn main() {
    if wanted("throughput") {
        throughput();
    }
    if wanted("restore") {
        restore();
    }
    if wanted("rejoin") {
        rejoin();
    }
    if wanted("fold_rate") {
        fold_rate();
    }
    if wanted("peer") {
        peer::peer();
    }
}

/// Topic names of one run: shared inputs, its own changelog and decisions.
fn topics(run: &str) -> Topics {
    let mut topics = ProcessorConfig::with_bootstrap("unused").topics;
    topics.changelog = format!("{}.{run}", topics.changelog);
    topics.decisions = format!("{}.{run}", topics.decisions);
    topics.dead_letters = format!("{}.{run}", topics.dead_letters);
    topics
}

fn create(tansu: &Tansu, topics: &Topics, inputs: bool) {
    let mut all = vec![
        (topics.changelog.as_str(), PARTITIONS, true),
        (topics.decisions.as_str(), 1, false),
        (topics.dead_letters.as_str(), 1, false),
    ];
    if inputs {
        all.extend([
            (topics.posted.as_str(), PARTITIONS, false),
            (topics.interactions.as_str(), PARTITIONS, false),
            (topics.commands.as_str(), PARTITIONS, false),
        ]);
    }
    tansu.create_topics(&all);
}

/// A running `earlykill run`, its JSON log lines sent to a channel.
struct Processor {
    child: Child,
    started: Instant,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Processor {
    fn start(bootstrap: &str, topics: &Topics, group: &str, extra: &[&str]) -> Processor {
        // EARLYKILL_BIN runs another build (an earlier release, for a
        // before/after figure) against the same bench.
        let bin = std::env::var("EARLYKILL_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_earlykill").to_owned());
        // EARLYKILL_BENCH_PERF=<file>: the process runs under `perf record`
        // (call graphs) into <file>.<n>, for where its time goes.
        let mut command = match std::env::var("EARLYKILL_BENCH_PERF") {
            Ok(file) => {
                static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut perf = Command::new("perf");
                perf.args([
                    "record",
                    "-F",
                    "999",
                    "-g",
                    "-o",
                    &format!("{file}.{n}"),
                    "--",
                ]);
                perf.arg(bin);
                perf
            }
            Err(_) => Command::new(bin),
        };
        let mut child = command
            .args(["run", "--bootstrap-servers", bootstrap])
            .args(["--guarantee", "at-least-once", "--instance-id", "bench-0"])
            .args(["--group-id", group, "--http-listen", "off"])
            .args(["--max-future-skew-seconds", "0"])
            .args(["--changelog-topic", &topics.changelog])
            .args(["--decisions-topic", &topics.decisions])
            .args(["--dead-letter-topic", &topics.dead_letters])
            .args(["--kafka-timeout-seconds", "120"])
            // tansu holds a group's first join for half the session timeout
            // (23 s at librdkafka's 45 s default; Kafka has
            // group.initial.rebalance.delay.ms, 3 s, instead).
            .args(["-X", "session.timeout.ms=10000"])
            .args(extra)
            .env("EARLYKILL_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start earlykill run");
        let started = Instant::now();
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        // EARLYKILL_BENCH_LOG=<file>: the processor's log lines are copied
        // there too (appended), to see what it said.
        let mut copy = std::env::var_os("EARLYKILL_BENCH_LOG").map(|file| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .expect("the log copy")
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(file) = copy.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if send.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Processor {
            child,
            started,
            lines,
        }
    }

    /// Waits for a log line containing `text`; returns when it came and the
    /// line.
    fn wait_for(&self, text: &str) -> (Instant, String) {
        self.wait_for_any(&[text])
    }

    /// Waits for a log line containing one of `texts`.
    fn wait_for_any(&self, texts: &[&str]) -> (Instant, String) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if texts.iter().any(|t| line.contains(t)) => return (at, line),
                Ok(_) => {}
                Err(e) => panic!("no log line with {texts:?}: {e}"),
            }
        }
    }

    /// The process's peak resident memory so far, in MB (Linux).
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb / 1024.0
    }

    fn kill(mut self) {
        if std::env::var_os("EARLYKILL_BENCH_PERF").is_some() {
            // perf writes its file on SIGINT, and stops the process.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads `topic` until it holds `n` distinct decision ids; returns when the
/// last arrived.
fn wait_decisions(bootstrap: &str, topic: &str, n: usize) -> Instant {
    wait_decisions_settled(bootstrap, topic, n, Duration::ZERO).seen
}

/// What [`wait_decisions_settled`] read.
struct Settled {
    /// When the reader received the last new decision.
    seen: Instant,
    /// Distinct decisions.
    count: usize,
    /// The latest create time (the processor's wall clock when it sent the
    /// decision, in ms since the epoch) of the distinct decisions.
    made: i64,
}

/// Reads `topic` until it holds at least `n` distinct decision ids and no
/// new one came for `quiet`; returns when the last arrived and how many.
/// (tansu 0.6's memory storage has been seen to lose a few thousand of a
/// million input records under this load, acknowledged and gone, so a
/// bench that needs only "about a million" waits for the fold to settle.)
fn wait_decisions_settled(bootstrap: &str, topic: &str, n: usize, quiet: Duration) -> Settled {
    let consumer = reader(bootstrap, &[(topic, 1)]);
    let mut ids = HashSet::new();
    let mut last = Instant::now();
    let mut made = i64::MIN;
    let deadline = Instant::now() + Duration::from_secs(600);
    while ids.len() < n || last.elapsed() < quiet {
        assert!(Instant::now() < deadline, "{} of {n} decisions", ids.len());
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "decision_id"))
                .and_then(|h| h.value)
                .map(<[u8]>::to_vec);
            if let Some(id) = id {
                if ids.insert(id) {
                    last = Instant::now();
                    made = made.max(m.timestamp().to_millis().unwrap_or(i64::MIN));
                }
            }
        }
    }
    Settled {
        seen: last,
        count: ids.len(),
        made,
    }
}

/// Reads `topic` until a decision for `variant` arrives; returns when.
fn wait_decision_of(bootstrap: &str, topic: &str, variant: &str) -> Instant {
    let consumer = reader(bootstrap, &[(topic, 1)]);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "no decision for {variant}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if m.key() == Some(variant.as_bytes()) {
                return Instant::now();
            }
        }
    }
}

/// A group-less consumer of every partition of `topics`, from the start.
fn reader(bootstrap: &str, topics: &[(&str, i32)]) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    assign(&consumer, topics);
    consumer
}

fn assign(consumer: &BaseConsumer, topics: &[(&str, i32)]) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("tpl");
        }
    }
    consumer.assign(&tpl).expect("assign");
}

/// The baseline: reads every record of `topics` once, to each partition's
/// end (one partition end per topic partition: nothing is written while it
/// reads); returns the records and the time from the assignment.
fn plain_read(bootstrap: &str, topics: &[(&str, i32)]) -> (u64, Duration) {
    let (records, _, took) = plain_read_bytes(bootstrap, topics);
    (records, took)
}

/// [`plain_read`], also counting the bytes of the keys and values read.
fn plain_read_bytes(bootstrap: &str, topics: &[(&str, i32)]) -> (u64, u64, Duration) {
    // The fetch settings the processor's input consumer uses, so the
    // baseline is not held back by librdkafka's 1 s queue backoff.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("reader");
    // Timed from the assignment, as the processor's figure is.
    let started = Instant::now();
    assign(&consumer, topics);
    let partitions: usize = topics.iter().map(|(_, n)| *n as usize).sum();
    let (mut records, mut bytes, mut ends) = (0, 0, 0);
    while ends < partitions {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.key_len() + m.payload_len()) as u64;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => ends += 1,
            _ => {}
        }
    }
    (records, bytes, started.elapsed())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn throughput() {
    let tansu = Tansu::start();
    let base = topics("t0");
    create(&tansu, &base, true);
    let events = backlog(backlog_start(), 3_000, 320);
    produce(&tansu.bootstrap, &base, &events);
    let decisions = 2 * 3_000;
    let inputs = [
        (base.posted.as_str(), PARTITIONS),
        (base.interactions.as_str(), PARTITIONS),
        (base.commands.as_str(), PARTITIONS),
    ];
    // Per run: the plain consumer, then the processor with one worker
    // thread and with two, each from a fresh group and changelog. The
    // processor is timed to its last decision twice: as the processor made
    // it (the record's create time, the processor's clock) and as a reader
    // saw it. tansu answers a fetch only once `fetch.wait.max.ms` (the
    // reader's 500 ms) is half over, even with records to return, so the
    // second adds a quarter to half a second of the reader's own.
    let mut plain = Vec::new();
    let mut made: [Vec<f64>; 2] = Default::default();
    let mut seen: [Vec<f64>; 2] = Default::default();
    for run in 0..RUNS {
        let (records, took) = plain_read(&tansu.bootstrap, &inputs);
        assert_eq!(records as usize, events.len());
        plain.push(records as f64 / took.as_secs_f64());
        for (i, threads) in ["1", "2"].into_iter().enumerate() {
            let name = format!("t{run}-{threads}");
            let own = topics(&name);
            create(&tansu, &own, false);
            let processor =
                Processor::start(&tansu.bootstrap, &own, &name, &["--threads", threads]);
            // From the first worker's assignment: the others' come with it
            // or later, so a slower start counts against the threads.
            let (assigned, line) = processor.wait_for("partitions assigned");
            let settled =
                wait_decisions_settled(&tansu.bootstrap, &own.decisions, decisions, Duration::ZERO);
            let to_made = (settled.made - logged_at(&line)) as f64 / 1000.0;
            let to_seen = (settled.seen - assigned).as_secs_f64();
            made[i].push(events.len() as f64 / to_made);
            seen[i].push(events.len() as f64 / to_seen);
            eprintln!(
                "run {run}, {threads} thread(s): plain {:.0} records/s; processor {:.0} records/s \
                 to the last decision made ({to_made:.2} s from assignment), {:.0} records/s to \
                 the last decision seen ({to_seen:.2} s; {:.2} s from start)",
                plain[run],
                made[i][run],
                seen[i][run],
                (settled.seen - processor.started).as_secs_f64()
            );
            processor.kill();
        }
    }
    let plain = median(plain);
    let [one, two] = made.map(median);
    let [one_seen, two_seen] = seen.map(median);
    println!(
        "real broker throughput: {} records; plain consumer {plain:.0} records/s; processor, \
         to the last decision made: 1 thread {one:.0} records/s = {:.0} %, 2 threads {two:.0} \
         records/s = {:.0} % ({:.2}x one thread); to the last decision seen by a reader: \
         1 thread {one_seen:.0} = {:.0} %, 2 threads {two_seen:.0} = {:.0} % (medians of {RUNS})",
        events.len(),
        100.0 * one / plain,
        100.0 * two / plain,
        two / one,
        100.0 * one_seen / plain,
        100.0 * two_seen / plain,
    );
}

/// The wall-clock time of a JSON log line, in ms since the epoch.
fn logged_at(line: &str) -> i64 {
    let field = "\"timestamp\":\"";
    let start = line.find(field).expect("a timestamp in the log line") + field.len();
    let end = start + line[start..].find('"').expect("the timestamp's end");
    chrono::DateTime::parse_from_rfc3339(&line[start..end])
        .expect("an RFC 3339 timestamp")
        .timestamp_millis()
}

fn restore() {
    const VARIANTS: u32 = 1_000_000;
    let tansu = Tansu::start();
    let own = topics("r");
    create(&tansu, &own, true);
    // A week-long window each: all of them stay active for the bench.
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<(Millis, usize, Event)> = (0..VARIANTS)
        .map(|i| {
            let mut post = posted(&format!("v-{i:07}"), now - MINUTE, 0.5);
            post.timeout_minutes = Some(10_080);
            (post.posted_at, 0, Event::Posted(post))
        })
        .collect();
    produce(&tansu.bootstrap, &own, &events);
    let first = Processor::start(&tansu.bootstrap, &own, "restore", &[]);
    let at_least = VARIANTS as usize * 99 / 100;
    let quiet = Duration::from_secs(5);
    let decided = wait_decisions_settled(&tansu.bootstrap, &own.decisions, at_least, quiet).count;
    eprintln!("{decided} variants posted and started");
    // The state is in the changelog once its decisions are: wait for the
    // commit after the last one, then crash.
    std::thread::sleep(Duration::from_secs(2));
    first.kill();
    let changelog = [(own.changelog.as_str(), PARTITIONS)];
    let (mut plain, mut restored, mut first, mut rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut size = (0, 0);
    for run in 0..RUNS {
        let (records, bytes, took) = plain_read_bytes(&tansu.bootstrap, &changelog);
        plain.push(took.as_secs_f64());
        size = (records, bytes);
        let processor = Processor::start(&tansu.bootstrap, &own, "restore", &["--threads", "2"]);
        let (began, _) = processor.wait_for("restoring partitions from the changelog");
        // The first partition live (a release that restored a worker's
        // assignment whole has no such line: its first is its last), then
        // both workers' restores finished.
        let (live, line) = processor.wait_for_any(&["partitions live", "restore finished"]);
        // Every worker's restore finished: together they cover the
        // partitions.
        let mut finished: Vec<String> = vec![line];
        finished.retain(|l| l.contains("restore finished"));
        let covered = |lines: &[String]| -> usize {
            let mut all = HashSet::new();
            for line in lines {
                // `[0, 1]`, or `{0, 1}` from releases that logged a set.
                let list = line.split("\"partitions\":\"").nth(1).unwrap_or("");
                let list = list.trim_start_matches(['[', '{']);
                let list = list.split([']', '}']).next().unwrap_or("");
                all.extend(
                    list.split(", ")
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                );
            }
            all.len()
        };
        while covered(&finished) < PARTITIONS as usize {
            finished.push(processor.wait_for("restore finished").1);
        }
        let mut elapsed_ms: f64 = 0.0;
        for line in finished {
            let ms: f64 = line
                .split("\"elapsed_ms\":")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .expect("elapsed_ms in the restore line");
            elapsed_ms = elapsed_ms.max(ms);
        }
        restored.push(elapsed_ms / 1000.0);
        first.push((live - began).as_secs_f64());
        rss.push(processor.peak_rss_mb());
        eprintln!(
            "run {run}: plain read of {records} changelog records {:.2} s; restore {:.2} s (first partition live after {:.2} s); peak RSS {:.0} MB",
            plain[run], restored[run], first[run], rss[run]
        );
        processor.kill();
    }
    let (records, bytes) = size;
    let (restored, plain) = (median(restored), median(plain));
    // Two workers restore side by side: per core, half of the whole.
    let per_core = |seconds: f64| {
        (
            records as f64 / seconds / 2.0 / 1e3,
            bytes as f64 / seconds / 2.0 / 1e6,
        )
    };
    let (k_records, mb) = per_core(restored);
    println!(
        "real broker restore of {VARIANTS} active variants ({records} records, {:.0} MB): {restored:.2} s (plain read of the changelog {plain:.2} s; {:.2}x), {k_records:.0} k records/s and {mb:.1} MB/s per core, first partition live after {:.2} s, peak RSS {:.0} MB (medians of {RUNS})",
        bytes as f64 / 1e6,
        restored / plain,
        median(first),
        median(rss)
    );
}

fn rejoin() {
    let tansu = Tansu::start();
    for (name, flags) in [
        ("static", &[][..]),
        ("dynamic", &["--static-membership", "false"][..]),
    ] {
        let own = topics(name);
        create(&tansu, &own, false);
        let base = topics("in");
        let (mut samples, mut own_part) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            if run == 0 && name == "static" {
                create(&tansu, &base, true);
            }
            let first = Processor::start(&tansu.bootstrap, &own, name, flags);
            first.wait_for("partitions assigned");
            first.kill();
            // A post nobody has decided yet, then the restart.
            let post = posted(
                &format!("v-{name}-{run}"),
                chrono::Utc::now().timestamp_millis(),
                0.5,
            );
            produce(
                &tansu.bootstrap,
                &base,
                &[(post.posted_at, 0, Event::Posted(post))],
            );
            let restarted = Processor::start(&tansu.bootstrap, &own, name, flags);
            // Its own post's decision: a fresh group also decides the
            // posts of the other mode's runs (the input is shared).
            let variant = format!("v-{name}-{run}");
            let last = wait_decision_of(&tansu.bootstrap, &own.decisions, &variant);
            let took = last.saturating_duration_since(restarted.started);
            samples.push(took.as_secs_f64());
            // The group's part (restart to assignment: the broker's join and
            // session handling) and ours (assignment to decision: restore,
            // fetch, fold, commit).
            let (assigned, _) = restarted.wait_for("partitions assigned");
            let ours = last.saturating_duration_since(assigned);
            own_part.push(ours.as_secs_f64());
            eprintln!(
                "{name} run {run}: restart to first decision {:.2} s, of which assignment to decision {:.2} s",
                took.as_secs_f64(),
                ours.as_secs_f64()
            );
            restarted.kill();
        }
        println!(
            "real broker rejoin after kill -9, {name} membership: restart to first decision {:.2} s, of which assignment to decision {:.2} s (medians of {RUNS})",
            median(samples),
            median(own_part)
        );
    }
}

/// The processor's fold rate at a large state, beside the fold's own.
fn fold_rate() {
    const VARIANTS: usize = 1_000_000;
    const VIEWS: usize = 2_000_000;
    let tansu = Tansu::start();
    let base = topics("f");
    create(&tansu, &base, true);
    // A week-long window each, posted two minutes ago; then the views, a
    // minute ago onwards, each for a variant spread over all of them.
    let now = chrono::Utc::now().timestamp_millis();
    let id = earlykill_core::fixtures::variant_id;
    let mut events: Vec<(Millis, usize, Event)> = (0..VARIANTS)
        .map(|i| {
            let mut post = posted(&id(i), now - 2 * MINUTE, 0.5);
            post.timeout_minutes = Some(10_080);
            (post.posted_at, 0, Event::Posted(post))
        })
        .collect();
    let which = |e: usize| (e * 7919) % VARIANTS;
    let views: Vec<Interaction<'static>> = (0..VIEWS)
        .map(|e| {
            interaction(
                &format!("view-{e}"),
                &id(which(e)),
                InteractionKind::View,
                1,
                now - MINUTE + (e / 1000) as Millis,
            )
        })
        .collect();
    events.extend(
        views
            .iter()
            .map(|v| (v.occurred_at, 0, Event::Interaction(v.clone()))),
    );
    produce(&tansu.bootstrap, &base, &events);
    drop(events);
    // Offsets start at 0 with no gaps (no transactions upstream), so the
    // views are all folded when the committed offsets add up to their
    // number. (tansu's listed end offsets lag: they are not asked.)
    let ends = VIEWS as i64;
    let (mut processor, mut fold) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let name = format!("f{run}");
        let own = topics(&name);
        create(&tansu, &own, false);
        let group = format!("fold-{run}");
        let worker = Processor::start(&tansu.bootstrap, &own, &group, &["--threads", "1"]);
        // The posts come first in event time: their last decision marks the
        // state built; the views follow at once.
        let built = wait_decisions(&tansu.bootstrap, &own.decisions, VARIANTS);
        // EARLYKILL_BENCH_PERF_WINDOW=<file>: `perf record` of the process
        // while it folds the views only, into <file>.<run>.
        let window = std::env::var("EARLYKILL_BENCH_PERF_WINDOW")
            .ok()
            .map(|file| {
                Command::new("perf")
                    .args(["record", "-F", "999", "-o", &format!("{file}.{run}")])
                    .args(["-p", &worker.child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("perf record")
            });
        let committed: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &tansu.bootstrap)
            .set("group.id", &group)
            .create()
            .expect("offsets reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&base.interactions, p);
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        let done = loop {
            let offsets = committed
                .committed_offsets(tpl.clone(), Duration::from_secs(10))
                .expect("committed offsets");
            let sum: i64 = offsets
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum();
            if sum >= ends {
                break Instant::now();
            }
            assert!(Instant::now() < deadline, "the views were never all folded");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(mut perf) = window {
            // SAFETY: kill(2) on our own child's pid; perf writes its file
            // on SIGINT.
            unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
            let _ = perf.wait();
        }
        worker.kill();
        processor.push(VIEWS as f64 / (done - built).as_secs_f64());

        // The fold alone: the same views decoded and folded in runs of
        // 256 into one monitor of the same sessions.
        let encoded: Vec<Vec<u8>> = views
            .iter()
            .map(|v| {
                earlykill_core::event::codec::encode(Contract::Interaction, v).expect("encode")
            })
            .collect();
        let mut monitor = earlykill_core::fixtures::monitor_with(VARIANTS);
        let decoder = Decoder::new(Contract::Interaction);
        let mut decisions = Vec::new();
        let started = Instant::now();
        for chunk in encoded.chunks(256) {
            let decoded: Vec<Interaction<'_>> = chunk
                .iter()
                .map(|b| decoder.decode(b).expect("decodes"))
                .collect();
            let inputs: Vec<Input<'_, '_>> = decoded.iter().map(Input::Interaction).collect();
            monitor.apply_batch(&inputs, &mut decisions, |_, _, _| {});
            decisions.clear();
        }
        fold.push(VIEWS as f64 / started.elapsed().as_secs_f64());
        eprintln!(
            "fold_rate run {run}: processor {:.0} views/s ({:.2} s), apply_batch {:.0} views/s",
            processor[run],
            (done - built).as_secs_f64(),
            fold[run]
        );
    }
    let (processor, fold) = (median(processor), median(fold));
    println!(
        "real broker fold rate: {VIEWS} views over {VARIANTS} active variants, {PARTITIONS} partitions: \
         processor, 1 worker (fold, decisions, changelog, at-least-once commits) {processor:.0} views/s; \
         Monitor::apply_batch (decode + fold, one monitor, in process) {fold:.0} views/s; \
         processor at {:.0} % of the fold (medians of {RUNS})",
        100.0 * processor / fold
    );
}
