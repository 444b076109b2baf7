//! `earlykill run` as a real process against a real Kafka-protocol broker
//! over TCP on loopback (tansu, memory storage; no transactions, so
//! at-least-once): what the mock cluster hides (every topic's fetch
//! arriving at once, listed watermarks that are exact) is here.
//!
//! `EARLYKILL_REAL_BROKER_VIEW_EVENTS` sets the view events per variant of
//! the backlog (default 320: 3 000 variants, about 1 M records).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};

use common::backlog::{backlog, backlog_start, oracle, produce, sort};
use common::kafka::read_until;
use common::tansu::Tansu;
use earlykill::config::ProcessorConfig;
use earlykill::event::{Contract, Decoder, MonitoringDecision};

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

/// `earlykill run` against `bootstrap`, at-least-once.
fn processor(bootstrap: &str, instance: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["run", "--bootstrap-servers", bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", instance])
        .args(["--http-listen", "off", "--max-future-skew-seconds", "0"])
        .args(["--log-level", "warn"])
        .env("EARLYKILL_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .spawn()
        .expect("start earlykill run")
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

#[test]
fn a_backlog_written_before_start_is_decided_as_the_pure_fold() {
    let config = ProcessorConfig::with_bootstrap("unused");
    let tansu = broker(&config);
    let events = backlog(backlog_start(), VARIANTS, view_events());
    produce(&tansu.bootstrap, &config.topics, &events);
    let expected = oracle(&events, &config);
    let mut child = processor(&tansu.bootstrap, "real-0");
    // Every terminal decision, at least once: the count of distinct ids
    // reaches the oracle's.
    let records = read_until(&tansu.bootstrap, &config.topics.decisions, |read| {
        let ids: BTreeSet<&str> = read.iter().map(|r| &*r.headers["decision_id"]).collect();
        ids.len() >= expected.len()
    });
    let decoder = Decoder::new(Contract::MonitoringDecision);
    let got: Vec<MonitoringDecision> = records
        .iter()
        .map(|r| {
            decoder
                .decode_reference(r.value.as_deref().expect("value"))
                .expect("decodes")
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let got = deduplicated(got);
    assert_eq!(
        got.len(),
        expected.len(),
        "{} records in the backlog",
        events.len()
    );
    let wrong: Vec<_> = got.iter().zip(&expected).filter(|(g, e)| g != e).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} decisions differ from the fold's over {} records; first: {:#?}",
        wrong.len(),
        expected.len(),
        events.len(),
        wrong.first()
    );
}
