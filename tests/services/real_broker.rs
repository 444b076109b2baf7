//! `earlykill run` as a real process against a real Kafka-protocol broker
//! over TCP on loopback (tansu, memory storage; no transactions, so
//! at-least-once): what the mock cluster hides (every topic's fetch
//! arriving at once, listed watermarks that are exact) is here.
//!
//! `EARLYKILL_REAL_BROKER_VIEW_EVENTS` sets the view events per variant of
//! the backlog (default 320: 3 000 variants, about 1 M records);
//! `EARLYKILL_REAL_BROKER_SEED` the crash points of the `kill -9` test.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::common::backlog::{backlog, backlog_start, oracle, produce, sort};
use crate::common::kafka::decisions_with_policy;
use crate::common::postgres::TestDb;
use crate::common::tansu::Tansu;
use earlykill::processor::ProcessorConfig;
use earlykill_core::event::MonitoringDecision;

const PARTITIONS: i32 = 6;
const VARIANTS: u32 = 3_000;

fn view_events() -> u32 {
    std::env::var("EARLYKILL_REAL_BROKER_VIEW_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(320)
}

/// A broker with earlykill's topics.
fn broker(config: &ProcessorConfig) -> Tansu {
    let tansu = Tansu::start();
    let t = &config.topics;
    tansu.create_topics(&[
        (&t.posted, PARTITIONS, false),
        (&t.interactions, PARTITIONS, false),
        (&t.commands, PARTITIONS, false),
        (&t.changelog, PARTITIONS, true),
        (&t.decisions, 1, false),
        (&t.dead_letters, 1, false),
    ]);
    tansu
}

/// `earlykill run` against `bootstrap`, at-least-once, with `threads`
/// worker threads.
fn processor(bootstrap: &str, instance: &str, threads: usize) -> Child {
    command(bootstrap, instance)
        .args(["--threads", &threads.to_string()])
        .spawn()
        .expect("start earlykill run")
}

fn command(bootstrap: &str, instance: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_earlykill"));
    command
        .args(["run", "--bootstrap-servers", bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", instance])
        .args(["--http-listen", "off", "--max-future-skew-seconds", "0"])
        .args(["--log-level", "warn"])
        // tansu holds a group's first join for half the session timeout.
        .args(["-X", "session.timeout.ms=6000"])
        .env("EARLYKILL_LOG_FORMAT", "text")
        .stdin(Stdio::null());
    command
}

/// Decisions by id; a decision published twice (at-least-once) must be
/// the same decision both times.
fn deduplicated(all: Vec<MonitoringDecision>) -> Vec<MonitoringDecision> {
    let mut by_id: BTreeMap<String, MonitoringDecision> = BTreeMap::new();
    for decision in all {
        if let Some(first) = by_id.get(&decision.decision_id) {
            assert_eq!(first, &decision, "one id, two different decisions");
        } else {
            by_id.insert(decision.decision_id.clone(), decision);
        }
    }
    sort(by_id.into_values().collect())
}

/// Every decision in the decisions topic once it holds `n` distinct ids.
fn read_decisions(bootstrap: &str, topic: &str, n: usize) -> Vec<MonitoringDecision> {
    decisions_with_policy(bootstrap, topic, n)
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

/// Fails unless `got` (deduplicated) equals the oracle's decisions.
fn assert_decided_as_the_fold(
    got: &[MonitoringDecision],
    expected: &[MonitoringDecision],
    records: usize,
) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{records} records in the backlog"
    );
    let wrong: Vec<_> = got.iter().zip(expected).filter(|(g, e)| g != e).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} decisions differ from the fold's over {records} records; first: {:#?}",
        wrong.len(),
        expected.len(),
        wrong.first()
    );
}

#[test]
fn a_backlog_written_before_start_is_decided_as_the_pure_fold() {
    backlog_is_decided_as_the_pure_fold(1);
}

/// The same backlog, its six partitions spread over two worker threads.
#[test]
fn a_backlog_is_decided_as_the_pure_fold_by_two_worker_threads() {
    backlog_is_decided_as_the_pure_fold(2);
}

fn backlog_is_decided_as_the_pure_fold(threads: usize) {
    let config = ProcessorConfig::with_bootstrap("unused");
    let tansu = broker(&config);
    let events = backlog(backlog_start(), VARIANTS, view_events());
    produce(&tansu.bootstrap, &config.topics, &events);
    let expected = oracle(&events, &config);
    let mut child = processor(&tansu.bootstrap, "real-0", threads);
    // Every terminal decision, at least once: the count of distinct ids
    // reaches the oracle's.
    let got = read_decisions(&tansu.bootstrap, &config.topics.decisions, expected.len());
    let _ = child.kill();
    let _ = child.wait();
    assert_decided_as_the_fold(&deduplicated(got), &expected, events.len());
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_never_changes_a_decision() {
    kill_9_loses_nothing(1);
}

/// The same crashes with two worker threads: each restart brings both
/// workers back under their static member ids.
#[test]
fn kill_9_with_two_worker_threads_loses_nothing_and_never_changes_a_decision() {
    kill_9_loses_nothing(2);
}

fn kill_9_loses_nothing(threads: usize) {
    let seed: u64 = std::env::var("EARLYKILL_REAL_BROKER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = SmallRng::seed_from_u64(seed);
    let config = ProcessorConfig::with_bootstrap("unused");
    let tansu = broker(&config);
    let events = backlog(backlog_start(), 1_000, 20);
    produce(&tansu.bootstrap, &config.topics, &events);
    let expected = oracle(&events, &config);
    // The projector writes the table throughout, crashes included.
    let db = block_on(TestDb::create(&format!("real_broker_kill_{threads}")));
    let migrated = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["migrate", "--database-url", &db.url])
        .status()
        .expect("run earlykill migrate");
    assert!(migrated.success());
    let mut projector = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["project", "--bootstrap-servers", &tansu.bootstrap])
        .args(["--database-url", &db.url, "--http-listen", "off"])
        .args(["--log-level", "warn", "-X", "session.timeout.ms=6000"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start earlykill project");
    // Crash points by progress: after a share of the decisions drawn from
    // the seed, the processor is killed with SIGKILL and restarted.
    let mut points: Vec<usize> = (0..4)
        .map(|_| rng.random_range(1..expected.len()))
        .collect();
    points.sort_unstable();
    println!(
        "kill -9 seed {seed}, {threads} thread(s): after {points:?} of {} decisions",
        expected.len()
    );
    for point in &points {
        let mut child = processor(&tansu.bootstrap, "real-pod", threads);
        read_decisions(&tansu.bootstrap, &config.topics.decisions, *point);
        child.kill().expect("kill -9");
        let _ = child.wait();
    }
    let mut last = processor(&tansu.bootstrap, "real-pod", threads);
    let got = read_decisions(&tansu.bootstrap, &config.topics.decisions, expected.len());
    let _ = last.kill();
    let _ = last.wait();
    // Nothing lost, nothing different; duplicates (at-least-once) only
    // with identical content, which `deduplicated` checks.
    assert_decided_as_the_fold(&deduplicated(got), &expected, events.len());
    // The table: the projector reaches the one the oracle's decisions make.
    let patience = Instant::now() + Duration::from_secs(120);
    let (table, want) = block_on(async {
        let want = db.table_of("oracle", &expected).await;
        loop {
            let table = db.table(None).await;
            if table == want || Instant::now() > patience {
                break (table, want);
            }
            // Polling the table, as an operator would: the projector has
            // no completion signal of its own.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let _ = projector.kill();
    let _ = projector.wait();
    assert_eq!(table.len(), want.len());
    assert_eq!(table, want);
    block_on(db.drop());
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}
