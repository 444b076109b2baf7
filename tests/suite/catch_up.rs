//! Catching up: a backlog read by the processor gives the decisions the pure
//! fold gives, however unevenly the brokers deliver the input topics, and an
//! input written by a transactional producer (whose commit markers are never
//! delivered) still counts as read to its end.

use std::time::Duration;

use crate::common::backlog::{backlog, backlog_start, oracle, send_all, sort};
use crate::common::kafka::{Kafka, Running, PATIENCE};
use crate::common::{interaction, posted, MINUTE, SECOND};
use earlykill::processor::Guarantee;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{Contract, InteractionKind};
use rdkafka::mocking::MockCoordinator;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

#[test]
fn a_backlog_whose_interactions_arrive_slowly_decides_as_the_pure_fold() {
    let partitions = 2;
    let kafka = Kafka::with_brokers(partitions, 2);
    let topics = kafka.config.topics.clone();
    // Everything on broker 1 but the interactions, which broker 2 leads; the
    // group and transaction coordinators stay on broker 1.
    for topic in [&topics.posted, &topics.commands, &topics.changelog] {
        for p in 0..partitions {
            kafka
                .cluster
                .partition_leader(topic, p, Some(1))
                .expect("leader");
        }
    }
    for topic in [&topics.decisions, &topics.dead_letters] {
        kafka
            .cluster
            .partition_leader(topic, 0, Some(1))
            .expect("leader");
    }
    for p in 0..partitions {
        kafka
            .cluster
            .partition_leader(&topics.interactions, p, Some(2))
            .expect("leader");
    }
    let mut config = kafka.processor_config("catch-up");
    config.limits.max_future_skew_ms = None;
    for coordinator in [
        MockCoordinator::Group(config.group_id.clone()),
        MockCoordinator::Transaction(config.transactional_id()),
    ] {
        kafka
            .cluster
            .coordinator(coordinator, 1)
            .expect("coordinator");
    }
    let events = backlog(backlog_start(), 60, 1);
    send_all(&kafka, &events);
    let expected = oracle(&events, &config);
    // Broker 2 now answers every request a quarter second late: the posts
    // arrive long before the interactions that fall between them. (The
    // processor used to stop waiting for the interactions after
    // merge-wait, run the clock ahead on the posts alone and time sessions
    // out with part of their counts.)
    kafka
        .cluster
        .broker_round_trip_time(2, Duration::from_millis(250))
        .expect("rtt");
    let running = Running::start(config);
    let got = sort(kafka.decisions(expected.len()));
    running.stop().expect("processor stops cleanly");
    assert_eq!(got.len(), expected.len());
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got, expected);
    }
}

#[test]
fn a_transactional_input_is_caught_up_and_its_idle_sessions_time_out() {
    let kafka = Kafka::new(1);
    let mut config = kafka.processor_config("txn-input");
    config.guarantee = Guarantee::AtLeastOnce;
    // Posted a while ago with a one-minute window: only the idle clock can
    // time it out, and only once every input is known to be read to its end.
    let mut post = posted(
        "v-txn",
        chrono::Utc::now().timestamp_millis() - 5 * MINUTE,
        0.5,
    );
    post.timeout_minutes = Some(1);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
        .set("transactional.id", "an-exactly-once-upstream")
        .create()
        .expect("transactional producer");
    producer.init_transactions(PATIENCE).expect("init");
    let views = interaction(
        "v-txn-views",
        "v-txn",
        InteractionKind::View,
        10,
        post.posted_at + SECOND,
    );
    let records = [
        (
            &config.topics.posted,
            encode(Contract::VariantPosted, &post),
        ),
        (
            &config.topics.interactions,
            encode(Contract::Interaction, &views),
        ),
    ];
    for (topic, bytes) in records {
        let bytes = bytes.expect("encode");
        producer.begin_transaction().expect("begin");
        producer
            .send(BaseRecord::to(topic).key("v-txn").payload(&bytes))
            .map_err(|(e, _)| e)
            .expect("send");
        producer.commit_transaction(PATIENCE).expect("commit");
    }
    let running = Running::start(config);
    let decisions = kafka.decisions(2);
    running.stop().expect("processor stops cleanly");
    let kinds: Vec<_> = decisions.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["started", "timed_out"], "{decisions:#?}");
    assert_eq!(decisions[1].views, 10);
}
