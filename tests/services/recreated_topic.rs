//! The decisions topic deleted and created again under the same name, on
//! a real Kafka-protocol broker (tansu, which gives every topic an id; the
//! mock cluster has no controller to describe topics and cannot delete
//! them): the projector notices the new topic id, forgets the offsets it
//! stored for the old topic and projects the new topic from its start,
//! instead of skipping its decisions as applied already.

use std::time::Duration;

use crate::common::postgres::TestDb;
use crate::common::projector::{block_on, publish_decisions, Projecting};
use crate::common::tansu::Tansu;
use crate::common::*;
use earlykill::projector::{self, ProjectorConfig};
use earlykill_core::event::MonitoringDecision;

const TOPIC: &str = "earlykill.decisions";
/// A safety net only: every wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(120);

fn publish(bootstrap: &str, decisions: &[MonitoringDecision]) {
    publish_decisions(bootstrap, TOPIC, decisions, PATIENCE);
}

/// `workload(n)` under other variant ids, so its rows are new ones.
fn renamed(n: i64, prefix: &str) -> Vec<MonitoringDecision> {
    workload(n)
        .into_iter()
        .map(|mut d| {
            d.variant_id = format!("{prefix}{}", d.variant_id);
            d.decision_id = format!("{prefix}{}", d.decision_id);
            d
        })
        .collect()
}

#[test]
fn a_recreated_decisions_topic_is_noticed_by_its_id_and_projected_from_its_start() {
    let broker = Tansu::start();
    broker.create_topics(&[(TOPIC, 2, false)]);
    let db = block_on(async {
        let db = TestDb::create("recreated_topic").await;
        let pool = projector::connect(&db.url, 1).unwrap();
        projector::migrate(&pool).await.unwrap();
        db
    });
    let mut config = ProjectorConfig::new(&broker.bootstrap, &db.url);
    config.batch_wait = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);

    let before = workload(30);
    publish(&broker.bootstrap, &before);
    let projecting = Projecting::start(config.clone());
    projecting.wait("the first topic projected, its id known", PATIENCE, |s| {
        s.applied.started + s.applied.ended == before.len() as u64 && s.topic_id.is_some()
    });
    let first_id = projecting.status.get().topic_id.unwrap();
    let stored_before = projecting.status.get().next_offsets;
    // The projector is stopped across the deletion: a consumer reading a
    // topic while tansu deletes it crashes inside librdkafka (tansu then
    // answers its metadata request with a topic that has neither name nor
    // id, which librdkafka does not check). The check is the same either
    // way: the id the broker gives against the one stored with the offsets.
    projecting.stop().expect("projector stops cleanly");

    // Fewer decisions than before, so every one of them sits below an
    // offset stored for the old topic.
    broker.delete_topics(&[TOPIC]);
    broker.create_topics(&[(TOPIC, 2, false)]);
    let after = renamed(4, "new-");
    publish(&broker.bootstrap, &after);

    let projecting = Projecting::start(config);
    projecting.wait("the new topic noticed and projected", PATIENCE, |s| {
        s.topic_recreated == 1
            && s.topic_id.as_deref().is_some_and(|id| id != first_id)
            && s.next_offsets.values().sum::<i64>() == after.len() as i64
    });
    let status = projecting.status.get();
    projecting.stop().expect("projector stops cleanly");
    assert!(
        stored_before.values().sum::<i64>() > after.len() as i64,
        "the test needs the old offsets past the new topic's end: {stored_before:?}"
    );

    let mut all = before.clone();
    all.extend(after.iter().cloned());
    let table = block_on(db.table(None));
    let expected = block_on(db.table_of("expected", &all));
    assert_eq!(table, expected, "status at the end: {status:?}");
    let recorded = block_on(async {
        let store = projector::Store::open(projector::connect(&db.url, 1).unwrap())
            .await
            .unwrap();
        store.topic_id(TOPIC).await.unwrap()
    });
    assert_eq!(recorded, status.topic_id, "the new topic's id is recorded");
    block_on(db.drop());
}
