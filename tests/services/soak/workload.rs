//! The soak's workload: generated traffic, the closing posts, the oracle
//! (the pure fold over the same records) and the producer.

use std::collections::BTreeMap;

use crate::common::kafka::{Kafka, PATIENCE};
use earlykill::generate::traffic::{Generated, Traffic, TrafficConfig};
use earlykill::processor::ProcessorConfig;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{Contract, Millis, MonitoringDecision};
use earlykill_core::monitor::{Input, Monitor};
use rdkafka::producer::BaseRecord;
use rdkafka::ClientConfig;

pub(super) fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// The input, in the order it is produced.
pub(super) fn traffic(seed: u64, variants: u64, start: Millis) -> Vec<Generated> {
    Traffic::new(TrafficConfig {
        variants: Some(variants),
        posts_per_second: 5.0,
        views_per_second: (0.2, 1.5),
        timeout_minutes: 10,
        id_prefix: format!("s{seed:x}-"),
        seed,
        start,
        ..TrafficConfig::default()
    })
    .collect()
}

/// The final post of partition `p`: two windows after every event, so its
/// arrival times out every session still open in the partition.
pub(super) fn closer(p: i32, at: Millis) -> earlykill_core::event::VariantPosted<'static> {
    crate::common::posted(&format!("zz-closer-{p}"), at, 0.5)
}

/// The decisions the pure fold makes of `input` then the closers: one
/// monitor sees every variant, which decides the same as one per partition
/// because each variant's events fall within its window and a session's
/// decisions depend only on its own events and its deadline.
pub(super) fn oracle(
    config: &ProcessorConfig,
    input: &[Generated],
    closers: &[earlykill_core::event::VariantPosted<'static>],
) -> (
    BTreeMap<String, MonitoringDecision>,
    Vec<MonitoringDecision>,
) {
    let mut monitor = Monitor::new(config.monitor);
    let mut decisions = Vec::new();
    // The merge's order: event time, then posted, interactions, commands.
    let mut ordered: Vec<&Generated> = input.iter().collect();
    ordered.sort_by_key(|g| {
        let rank = match g {
            Generated::Posted(_) => 0,
            Generated::Interaction(_) => 1,
            Generated::Stop(_) => 2,
        };
        (g.time(), rank)
    });
    for g in ordered {
        let event = match g {
            Generated::Posted(p) => Input::Posted(p),
            Generated::Interaction(i) => Input::Interaction(i),
            Generated::Stop(s) => Input::Stop(s),
        };
        monitor.apply(event, &mut decisions);
    }
    for c in closers {
        monitor.apply(Input::Posted(c), &mut decisions);
    }
    let mut by_id = BTreeMap::new();
    for d in &decisions {
        let id = d.decision_id.clone();
        assert!(
            by_id.insert(id.clone(), d.clone()).is_none(),
            "the oracle decided {id} twice"
        );
    }
    (by_id, decisions)
}

pub(super) fn produce(
    kafka: &Kafka,
    input: &[Generated],
    closers: &[earlykill_core::event::VariantPosted<'static>],
) {
    for g in input {
        match g {
            Generated::Posted(p) => kafka.post(p),
            Generated::Interaction(i) => kafka.interact(i),
            Generated::Stop(s) => kafka.stop(s),
        }
    }
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
        .create()
        .expect("producer");
    for (p, c) in closers.iter().enumerate() {
        let value = encode(Contract::VariantPosted, c).expect("encode");
        producer
            .send(
                BaseRecord::to(&kafka.config.topics.posted)
                    .partition(p as i32)
                    .key(c.variant_id.as_bytes())
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    rdkafka::producer::Producer::flush(&producer, PATIENCE).expect("flush");
    kafka.flush();
}
