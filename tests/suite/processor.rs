//! `earlykill run` end to end against librdkafka's in-process mock cluster:
//! decisions, exactly-once across a crash, partitions moving with their
//! state, dead letters, start-up checks, and at-least-once.

use std::collections::BTreeMap;

use crate::common::kafka::{Kafka, Running};
use crate::common::{interaction, posted, stop, MINUTE, SECOND};
use earlykill::processor::Guarantee;
use earlykill::processor::ProcessorError;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{Contract, DecisionKind, InteractionKind, Millis, MonitoringDecision};
use rdkafka::types::RDKafkaApiKey;

fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Posts `id` with an expected rate of 0.5, then 100 views and `likes`
/// likes: with the default rule (10 interactions, half the expected rate)
/// the tenth like kills it.
fn feed(kafka: &Kafka, id: &str, t: Millis, likes: std::ops::Range<u32>) {
    if likes.start == 0 {
        kafka.post(&posted(id, t, 0.5));
        kafka.interact(&interaction(
            &format!("{id}-views"),
            id,
            InteractionKind::View,
            100,
            t + SECOND,
        ));
    }
    for n in likes {
        kafka.interact(&interaction(
            &format!("{id}-like-{n}"),
            id,
            InteractionKind::Like,
            1,
            t + 2 * SECOND + Millis::from(n),
        ));
    }
}

fn by_id(decisions: &[MonitoringDecision]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in decisions {
        *counts.entry(d.decision_id.clone()).or_default() += 1;
    }
    counts
}

fn assert_each_once(decisions: &[MonitoringDecision], expected: usize) {
    let counts = by_id(decisions);
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "decisions published twice: {doubled:?}");
    assert_eq!(counts.len(), expected, "decisions: {:#?}", counts.keys());
}

#[test]
fn kill_timeout_and_stop_are_published_end_to_end() {
    let kafka = Kafka::new(2);
    let processor = Running::start(kafka.processor_config("a"));
    let t = now() - MINUTE;
    feed(&kafka, "v-kill", t, 0..10);
    kafka.post(&posted("v-stop", t, 0.5));
    kafka.post(&posted("v-timeout", now() - 20 * MINUTE, 0.5));
    feed(&kafka, "v-good", t, 0..0);
    kafka.flush();
    // Stopped once started, as an operator would: a stop sent right behind
    // its post, on another topic, may be fetched first (records in flight
    // between topics are what merge-wait-ms is for; its default is 0).
    assert_eq!(kafka.decisions(6).len(), 6);
    kafka.stop(&stop("v-stop", t + SECOND));
    kafka.flush();

    let decisions = kafka.decisions(7);
    assert_each_once(&decisions, 7);
    let find = |id: &str, kind: DecisionKind| {
        decisions
            .iter()
            .find(|d| d.variant_id == id && d.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} for {id}: {decisions:#?}"))
    };
    let killed = find("v-kill", DecisionKind::Killed);
    assert_eq!((killed.interactions, killed.views), (10, 100));
    assert_eq!(killed.trigger_event_id.as_deref(), Some("v-kill-like-9"));
    let stopped = find("v-stop", DecisionKind::Stopped);
    assert_eq!(stopped.requested_by.as_deref(), Some("ops@example.com"));
    let timed_out = find("v-timeout", DecisionKind::TimedOut);
    assert_eq!(timed_out.decided_at, timed_out.deadline);
    find("v-good", DecisionKind::Started);
    let watch = processor.status.clone();
    processor.stop().expect("clean stop");
    // Each record names the run and the transaction that published it, and
    // that transaction committed.
    let status = watch.get();
    let raw = kafka.read_until(&kafka.config.topics.decisions, |r| r.len() >= 7);
    for record in &raw {
        let header = &record.headers["earlykill_transaction"];
        let (run, n) = header.rsplit_once('/').expect("<run>/<n>");
        assert_eq!(run, status.incarnation);
        assert!(run.starts_with("a@"), "{run}");
        let n: u64 = n.parse().expect("a transaction number");
        assert!(
            (1..=status.last_committed_transaction).contains(&n),
            "{header}: {status:?}"
        );
    }
    assert!(status.aborted_transactions.is_empty());
}

/// librdkafka 2.12's mock broker writes no abort markers, so its
/// read_committed readers also see aborted records (the mock learned
/// transaction markers in librdkafka 2.14, which no rdkafka-sys bundles
/// yet). The test therefore removes the crashed transaction's decisions
/// itself: the decisions topic has one partition, so the crashed instance's
/// records are a prefix of it, its committed decisions first; what it
/// produced past `committed_decisions` was never committed, and a real
/// broker hides it.
#[test]
fn a_crash_mid_transaction_then_a_restart_publishes_each_decision_once() {
    let kafka = Kafka::new(2);
    let t = now() - MINUTE;
    let mut crashing = kafka.processor_config("a");
    crashing.crash_after_decisions = Some(8);
    crashing.commit_interval = std::time::Duration::from_secs(60);
    let mut first = Running::start(crashing);
    first.wait_for_partitions(2);
    for v in 0..3 {
        feed(&kafka, &format!("v-{v}"), t, 0..10);
    }
    first.wait_committed(&kafka.input_ends());
    for v in 3..5 {
        feed(&kafka, &format!("v-{v}"), t, 0..10);
    }
    let ends = kafka.input_ends();
    match first.join() {
        Err(ProcessorError::InjectedCrash { decisions: 8 }) => {}
        other => panic!("expected the injected crash, got {other:?}"),
    }
    let committed = first.status.get().committed_decisions as usize;
    assert!(
        (6..8).contains(&committed),
        "phase one committed, the crash came mid-transaction: {committed}"
    );

    let restarted = Running::start(kafka.processor_config("a"));
    restarted.wait_for_partitions(2);
    restarted.wait_committed(&ends);
    let mut decisions = kafka.decisions(10 + 8 - committed);
    let aborted: Vec<_> = decisions.drain(committed..8).collect();
    assert_each_once(&decisions, 10);
    let republished = by_id(&decisions[8 - (8 - committed)..]);
    for d in &aborted {
        assert!(
            republished.contains_key(&d.decision_id),
            "{} was aborted and never published again",
            d.decision_id
        );
    }
    restarted.stop().expect("clean stop");
}

/// Feeds the likes 5..10 of `variants` (whose 0..5 are folded) and checks
/// that each is killed once, on all ten likes: the state of the first five
/// carried over to wherever its partition is now.
fn second_half_is_killed_on_all_ten_likes(kafka: &Kafka, variants: &[String], t: Millis) {
    for v in variants {
        feed(kafka, v, t, 5..10);
    }
    let n = 2 * variants.len();
    let decisions = kafka.decisions(n);
    assert_each_once(&decisions, n);
    for d in decisions.iter().filter(|d| d.kind == DecisionKind::Killed) {
        assert_eq!((d.interactions, d.views), (10, 100), "{d:#?}");
    }
}

#[test]
fn partitions_move_with_their_state_when_an_instance_leaves() {
    let kafka = Kafka::new(4);
    let a = Running::start(kafka.processor_config("a"));
    let b = Running::start(kafka.processor_config("b"));
    a.wait_for_partitions(2);
    b.wait_for_partitions(2);
    let t = now() - MINUTE;
    let variants: Vec<String> = (0..20).map(|v| format!("v-{v}")).collect();
    for v in &variants {
        feed(&kafka, v, t, 0..5);
    }
    let ends = kafka.input_ends();
    a.wait_committed(&ends);
    b.wait_committed(&ends);

    b.stop().expect("b leaves cleanly");
    a.wait_for_partitions(4);
    // Five likes folded by b, five by a: b's state moved to a.
    second_half_is_killed_on_all_ten_likes(&kafka, &variants, t);
    a.stop().expect("clean stop");
}

/// An instance with two worker threads keeps its partitions' state in
/// memory across rebalances: when a second instance joins, the partitions
/// it keeps (on whichever of its workers) are handed over, not restored,
/// and the state of every partition carries on wherever it went.
#[test]
fn a_rebalance_hands_partitions_between_workers_without_a_restore() {
    let kafka = Kafka::new(4);
    let mut config = kafka.processor_config("a");
    config.threads = 2;
    let a = Running::start(config);
    a.wait_for_partitions(4);
    let t = now() - MINUTE;
    let variants: Vec<String> = (0..20).map(|v| format!("v-{v}")).collect();
    for v in &variants {
        feed(&kafka, v, t, 0..5);
    }
    let ends = kafka.input_ends();
    a.wait_committed(&ends);
    let before = a.status.get();
    assert_eq!(before.workers.len(), 2, "{before:?}");

    let b = Running::start(kafka.processor_config("b"));
    assert!(
        b.status.wait_until(crate::common::kafka::PATIENCE, |s| {
            !s.partitions.is_empty() && s.restoring.is_empty()
        }),
        "b owns nothing: {:?}",
        b.status.get()
    );
    let b_owns = b.status.get().partitions.len();
    assert!(
        a.status.wait_until(crate::common::kafka::PATIENCE, |s| {
            s.partitions.len() + b_owns == 4 && s.restoring.is_empty()
        }),
        "a did not settle: {:?}",
        a.status.get()
    );
    let after = a.status.get();
    assert_eq!(
        (after.restore_time, after.restored_records),
        (before.restore_time, before.restored_records),
        "a restored during the rebalance"
    );
    assert!(
        after.handed_over >= before.handed_over + after.partitions.len() as u64,
        "every partition a kept was handed over: {before:?} then {after:?}"
    );
    // Five likes folded before the rebalance, five after.
    second_half_is_killed_on_all_ten_likes(&kafka, &variants, t);
    b.stop().expect("b leaves cleanly");
    a.stop().expect("clean stop");
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_with_their_reasons() {
    let kafka = Kafka::new(2);
    let processor = Running::start(kafka.processor_config("a"));
    let topics = kafka.config.topics.clone();
    let t = now() - MINUTE;
    let good = posted("v-1", t, 0.5);
    let good_bytes = encode(Contract::VariantPosted, &good).expect("encode");
    let mut negative = interaction("e-1", "v-1", InteractionKind::Like, 1, t);
    negative.count = -3;
    let wrong_schema = encode(Contract::StopMonitoring, &stop("v-1", t)).expect("encode");
    // (topic, key, value, expected reason)
    type Bad<'a> = (&'a str, Option<&'a [u8]>, Option<Vec<u8>>, &'a str);
    let bad: Vec<Bad> = vec![
        (
            &topics.posted,
            Some(b"v-1"),
            Some(b"not avro".to_vec()),
            "truncated",
        ),
        (
            &topics.posted,
            Some(b"v-1"),
            Some(b"this is not avro at all".to_vec()),
            "bad_marker",
        ),
        (
            &topics.posted,
            Some(b"v-1"),
            Some(good_bytes[..12].to_vec()),
            "malformed",
        ),
        (
            &topics.posted,
            Some(b"v-1"),
            Some(wrong_schema),
            "unknown_schema",
        ),
        (
            &topics.posted,
            Some(b"v-2"),
            Some(good_bytes.clone()),
            "key_mismatch",
        ),
        (
            &topics.posted,
            None,
            Some(good_bytes.clone()),
            "missing_key",
        ),
        (&topics.commands, Some(b"v-1"), None, "empty_value"),
        (
            &topics.interactions,
            Some(b"v-1"),
            Some(encode(Contract::Interaction, &negative).expect("encode")),
            "out_of_range",
        ),
    ];
    for (topic, key, value, _) in &bad {
        kafka.send_raw(topic, *key, value.as_deref(), &[("trace", "abc")]);
    }
    kafka.post(&good);
    kafka.flush();

    let letters = kafka.read_until(&topics.dead_letters, |r| r.len() >= bad.len());
    assert_eq!(letters.len(), bad.len());
    for (topic, key, value, kind) in &bad {
        let letter = letters
            .iter()
            .find(|l| l.headers["earlykill.error.kind"] == *kind)
            .unwrap_or_else(|| panic!("no dead letter of kind {kind}: {letters:#?}"));
        assert_eq!(letter.headers["earlykill.source.topic"], *topic);
        assert_eq!(letter.headers["trace"], "abc", "original headers kept");
        assert!(!letter.headers["earlykill.error.message"].is_empty());
        assert!(letter.headers["earlykill.source.offset"]
            .parse::<i64>()
            .is_ok());
        assert!(letter.headers["earlykill.source.partition"]
            .parse::<i32>()
            .is_ok());
        assert_eq!(letter.key.as_deref(), *key, "{kind}: key unchanged");
        assert_eq!(&letter.value, value, "{kind}: value unchanged");
    }
    let decisions = kafka.decisions(1);
    assert_eq!(decisions.len(), 1, "the good post still starts its session");
    assert_eq!(processor.status.get().dead_letters, bad.len() as u64);
    processor.stop().expect("clean stop");
}

#[test]
fn input_topics_with_different_partition_counts_fail_at_start_up() {
    let kafka = Kafka::new(2);
    let mut config = kafka.processor_config("a");
    config.topics.interactions = "interactions-3".into();
    kafka
        .cluster
        .create_topic("interactions-3", 3, 1)
        .expect("topic");
    let mut processor = Running::start(config);
    match processor.join() {
        Err(e @ ProcessorError::NotCoPartitioned { .. }) => {
            let message = e.to_string();
            assert!(message.contains("interactions-3"), "{message}");
            assert!(message.contains("earlykill.posted"), "{message}");
        }
        other => panic!("expected a co-partitioning error, got {other:?}"),
    }
}

#[test]
fn at_least_once_works_against_a_broker_without_transactions() {
    let kafka = Kafka::new(2);
    for api in [
        RDKafkaApiKey::AddPartitionsToTxn,
        RDKafkaApiKey::AddOffsetsToTxn,
        RDKafkaApiKey::EndTxn,
        RDKafkaApiKey::TxnOffsetCommit,
    ] {
        kafka.cluster.apiversion(api, None, None).expect("disable");
    }
    let t = now() - MINUTE;
    feed(&kafka, "v-1", t, 0..10);
    kafka.flush();
    let mut exactly_once = Running::start(kafka.processor_config("eos"));
    match exactly_once.join() {
        Err(e @ ProcessorError::TransactionsUnsupported { .. }) => {
            assert!(e.to_string().contains("--guarantee at-least-once"), "{e}");
        }
        other => panic!("expected transactions to be unsupported, got {other:?}"),
    }

    let mut config = kafka.processor_config("alo");
    config.guarantee = Guarantee::AtLeastOnce;
    let processor = Running::start(config);
    let decisions = kafka.decisions(2);
    assert_each_once(&decisions, 2);
    processor.stop().expect("clean stop");
}

/// A restore that keeps receiving records goes on as long as it needs:
/// only a changelog that sends nothing for kafka-timeout times out. Here
/// the changelog is 61 small record batches, fetched one or a few at a
/// time with a round trip of 100 ms each: the restore takes several times the
/// timeout while records arrive all along.
#[test]
fn a_slow_restore_that_makes_progress_never_times_out() {
    let kafka = Kafka::new(1);
    let mut config = kafka.processor_config("slow-restore");
    let t = now();
    let mut monitor = earlykill_core::monitor::Monitor::new(config.monitor);
    let mut out = Vec::new();
    for v in 0..60 {
        let mut p = posted(&format!("v-{v:03}"), t, 0.5);
        p.persona_id = format!("persona-{v:03}-{}", "p".repeat(240)).into();
        p.post_id = format!("post-{v:03}-{}", "q".repeat(240)).into();
        monitor.apply(earlykill_core::monitor::Input::Posted(&p), &mut out);
    }
    for record in monitor.snapshot() {
        let value = encode(Contract::ChangelogRecord, &record).expect("encode");
        kafka.send_raw(
            &kafka.config.topics.changelog,
            Some(record.variant_id.as_bytes()),
            Some(&value),
            &[],
        );
        // One record batch each.
        kafka.flush();
    }
    config.kafka_timeout = std::time::Duration::from_secs(2);
    config
        .kafka
        .insert("max.partition.fetch.bytes".into(), "4000".into());
    kafka
        .cluster
        .broker_round_trip_time(1, std::time::Duration::from_millis(100))
        .expect("rtt");
    let running = Running::start(config.clone());
    running.wait_for_partitions(1);
    let status = running.status.get();
    assert_eq!(status.restored_records, 61, "{status:?}");
    assert!(
        status.restore_time > config.kafka_timeout,
        "the restore took longer than the timeout, so the test shows what it claims: {status:?}"
    );
    assert_eq!(running.sessions.active_count(), Ok(60));
    kafka
        .cluster
        .broker_round_trip_time(1, std::time::Duration::ZERO)
        .expect("rtt");
    running.stop().expect("clean stop");
}

/// Producers that compress with zstd (a common choice for cheap storage)
/// are read: librdkafka is built with zstd.
#[test]
fn zstd_compressed_input_is_read() {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let kafka = Kafka::new(1);
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.cluster.bootstrap_servers())
            .set("compression.type", "zstd")
            .create()
            .expect("a zstd producer");
    let value = encode(Contract::VariantPosted, &posted("v-zstd", now(), 0.5)).expect("encode");
    producer
        .send(
            BaseRecord::to(&kafka.config.topics.posted)
                .key("v-zstd")
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer
        .flush(std::time::Duration::from_secs(30))
        .expect("flush");
    let running = Running::start(kafka.processor_config("zstd"));
    let decisions = kafka.decisions(1);
    running.stop().expect("clean stop");
    assert_eq!(decisions[0].variant_id, "v-zstd");
}

/// A producer queue far smaller than a commit's records (decisions and
/// changelog records go through the producer's topic handles) holds the
/// worker back until deliveries make room, and loses nothing: every
/// decision once with its headers, every session's changelog record with
/// the header naming its commit.
#[test]
fn a_producer_queue_smaller_than_a_commit_holds_the_worker_back_and_loses_nothing() {
    let kafka = Kafka::new(2);
    let mut config = kafka.processor_config("small-queue");
    config
        .kafka
        .insert("queue.buffering.max.messages".into(), "3".into());
    let t = now();
    let ids: Vec<String> = (0..40).map(|n| format!("v-queue-{n:02}")).collect();
    for id in &ids {
        feed(&kafka, id, t, 0..10);
    }
    kafka.flush();
    let running = Running::start(config);
    // Each variant started, then killed by its tenth like.
    let decisions = kafka.decisions(2 * ids.len());
    assert_each_once(&decisions, 2 * ids.len());
    for id in &ids {
        let kinds: Vec<_> = (decisions.iter())
            .filter(|d| &d.variant_id == id)
            .map(|d| d.kind)
            .collect();
        assert_eq!(kinds, [DecisionKind::Started, DecisionKind::Killed], "{id}");
    }
    let raw = kafka.read_until(&kafka.config.topics.decisions, |r| r.len() >= 2 * ids.len());
    assert!(raw
        .iter()
        .all(|r| r.headers.contains_key("earlykill_transaction")));
    let changelog = kafka.read_until(&kafka.config.topics.changelog, |records| {
        ids.iter().all(|id| {
            records
                .iter()
                .any(|r| r.key.as_deref() == Some(id.as_bytes()))
        })
    });
    running.stop().expect("clean stop");
    for record in changelog.iter().filter(|r| r.key.as_deref() != Some(b"")) {
        assert!(
            record.headers.contains_key("t"),
            "a session record names its commit: {:?}",
            record.headers
        );
    }
}
