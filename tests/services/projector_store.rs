//! The projector's PostgreSQL side against a real server: migrations, the
//! lifecycle of a row, idempotence, and offsets stored with the rows.

use crate::common::postgres::TestDb;
use crate::common::*;
use earlykill::projector::{self, Applied, Positioned, Store, StoreError, Table};
use earlykill_core::event::{DecisionKind, InteractionKind, MonitoringDecision};
use earlykill_core::monitor::{Input, Monitor, MonitorConfig};

const TOPIC: &str = "earlykill.decisions";

/// Real decisions from the fold: v1 killed, v2 timed out, v3 stopped.
fn lifecycle() -> Vec<MonitoringDecision> {
    let mut m = Monitor::new(MonitorConfig::default());
    let mut out = Vec::new();
    let mut p = posted("v1", T0, 0.1);
    p.metadata.insert("campaign".into(), "spring".into());
    m.apply(Input::Posted(&p), &mut out);
    m.apply(Input::Posted(&posted("v2", T0, 0.1)), &mut out);
    m.apply(Input::Posted(&posted("v3", T0, 0.1)), &mut out);
    m.apply(
        Input::Interaction(&interaction(
            "views",
            "v1",
            InteractionKind::View,
            1000,
            T0 + SECOND,
        )),
        &mut out,
    );
    m.apply(
        Input::Interaction(&interaction(
            "likes",
            "v1",
            InteractionKind::Like,
            12,
            T0 + SECOND,
        )),
        &mut out,
    );
    m.apply(Input::Stop(&stop("v3", T0 + MINUTE)), &mut out);
    m.advance_to(T0 + 10 * MINUTE, &mut out);
    out
}

fn positioned(decisions: &[MonitoringDecision], first_offset: i64) -> Vec<Positioned> {
    decisions
        .iter()
        .enumerate()
        .map(|(i, d)| Positioned {
            partition: 0,
            offset: first_offset + i as i64,
            decision: d.clone(),
        })
        .collect()
}

async fn migrated(test: &str) -> (TestDb, Store) {
    let db = TestDb::create(test).await;
    let pool = projector::connect(&db.url, 4).unwrap();
    assert_eq!(projector::migrate(&pool).await.unwrap(), vec![1, 2, 3, 4]);
    let store = Store::open(pool).await.unwrap();
    (db, store)
}

#[derive(Debug, PartialEq)]
struct Row {
    variant_id: String,
    is_active: bool,
    was_killed: bool,
    kill_reason: Option<String>,
    ended: bool,
    final_interaction_count: Option<i32>,
    final_view_count: Option<i32>,
    final_engagement_rate: Option<f64>,
    metadata: serde_json::Value,
}

async fn rows(db: &TestDb) -> Vec<Row> {
    let pool = projector::connect(&db.url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT variant_id, is_active, was_killed, kill_reason, ended_at IS NOT NULL,
                    final_interaction_count, final_view_count, final_engagement_rate,
                    monitoring_metadata
             FROM variant_monitoring ORDER BY variant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Row {
            variant_id: r.get(0),
            is_active: r.get(1),
            was_killed: r.get(2),
            kill_reason: r.get(3),
            ended: r.get(4),
            final_interaction_count: r.get(5),
            final_view_count: r.get(6),
            final_engagement_rate: r.get(7),
            metadata: r.get(8),
        })
        .collect()
}

#[tokio::test]
async fn migrating_twice_is_a_no_op_and_creates_the_partial_index() {
    let (db, store) = migrated("migrate_twice").await;
    let pool = projector::connect(&db.url, 1).unwrap();
    assert_eq!(projector::migrate(&pool).await.unwrap(), Vec::<u32>::new());
    let client = pool.get().await.unwrap();
    let index: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_variant_monitoring_variant_active'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(index.contains("WHERE (is_active = true)"), "{index}");
    assert!(store.offsets(TOPIC).await.unwrap().is_empty());
    db.drop().await;
}

#[tokio::test]
async fn an_unmigrated_database_is_refused_with_the_command_to_run() {
    let db = TestDb::create("unmigrated").await;
    let pool = projector::connect(&db.url, 1).unwrap();
    let err = Store::open(pool)
        .await
        .err()
        .expect("an empty database is refused");
    assert!(matches!(err, StoreError::NotMigrated { .. }), "{err}");
    assert!(err.to_string().contains("run `earlykill migrate`"), "{err}");
    db.drop().await;
}

#[tokio::test]
async fn a_started_decision_opens_an_active_row_and_its_end_closes_it() {
    let (db, store) = migrated("lifecycle").await;
    let decisions = lifecycle();
    let starts: Vec<_> = decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Started)
        .cloned()
        .collect();
    assert_eq!(starts.len(), 3);
    store.apply(TOPIC, &positioned(&starts, 0)).await.unwrap();
    let opened = rows(&db).await;
    assert!(opened.iter().all(|r| r.is_active && !r.ended));
    assert_eq!(opened[0].metadata["campaign"], "spring");

    let ends: Vec<_> = decisions
        .iter()
        .filter(|d| d.kind != DecisionKind::Started)
        .cloned()
        .collect();
    let applied = store.apply(TOPIC, &positioned(&ends, 3)).await.unwrap();
    assert_eq!(
        applied,
        Applied {
            started: 0,
            ended: 3,
            skipped: 0,
            rejected: 0,
        }
    );
    let closed = rows(&db).await;
    let v1 = &closed[0];
    assert!(!v1.is_active && v1.was_killed && v1.ended);
    assert!(v1
        .kill_reason
        .as_deref()
        .unwrap()
        .contains("12 interactions / 1000 views"));
    assert_eq!(
        (v1.final_interaction_count, v1.final_view_count),
        (Some(12), Some(1000))
    );
    assert_eq!(v1.final_engagement_rate, Some(0.012));
    assert_eq!(
        v1.metadata["campaign"], "spring",
        "the start's metadata is kept"
    );
    assert_eq!(v1.metadata["ended_by"], "killed");
    assert_eq!(v1.metadata["trigger_event_id"], "likes");
    let (v2, v3) = (&closed[1], &closed[2]);
    assert!(!v2.is_active && !v2.was_killed && v2.kill_reason.is_none());
    assert_eq!(v2.metadata["ended_by"], "timed_out");
    assert_eq!(v2.final_engagement_rate, None, "no views, no rate");
    assert_eq!(v3.metadata["ended_by"], "stopped");
    assert_eq!(v3.metadata["requested_by"], "ops@example.com");
    assert_eq!(store.offsets(TOPIC).await.unwrap().get(&0), Some(&6));
    db.drop().await;
}

#[tokio::test]
async fn a_batch_holding_a_start_and_its_end_leaves_the_row_closed() {
    let (db, store) = migrated("start_and_end").await;
    store
        .apply(TOPIC, &positioned(&lifecycle(), 0))
        .await
        .unwrap();
    assert!(rows(&db).await.iter().all(|r| !r.is_active && r.ended));
    db.drop().await;
}

#[tokio::test]
async fn a_redelivered_batch_is_skipped_by_offset_and_changes_nothing() {
    // The projector committed to PostgreSQL, then crashed before anything
    // on the Kafka side: the same batch arrives again.
    let (db, store) = migrated("redelivered").await;
    let batch = positioned(&lifecycle(), 100);
    store.apply(TOPIC, &batch).await.unwrap();
    let before = rows(&db).await;
    let again = store.apply(TOPIC, &batch).await.unwrap();
    assert_eq!(
        again,
        Applied {
            started: 0,
            ended: 0,
            skipped: 6,
            rejected: 0,
        }
    );
    assert_eq!(rows(&db).await, before);
    assert_eq!(store.offsets(TOPIC).await.unwrap().get(&0), Some(&106));
    db.drop().await;
}

#[tokio::test]
async fn the_same_decision_at_another_offset_writes_the_same_row() {
    // At-least-once upstream: a duplicate decision with the same id at a
    // later offset. Rows are keyed by session, so nothing doubles.
    let (db, store) = migrated("duplicate").await;
    let decisions = lifecycle();
    store
        .apply(TOPIC, &positioned(&decisions, 0))
        .await
        .unwrap();
    let before = rows(&db).await;
    store
        .apply(TOPIC, &positioned(&decisions, 6))
        .await
        .unwrap();
    assert_eq!(rows(&db).await, before);
    let count: i64 = projector::connect(&db.url, 1)
        .unwrap()
        .get()
        .await
        .unwrap()
        .query_one("SELECT COUNT(*) FROM variant_monitoring", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
    db.drop().await;
}

#[tokio::test]
async fn an_end_whose_start_was_never_applied_still_writes_a_closed_row() {
    let (db, store) = migrated("end_only").await;
    let ends: Vec<_> = lifecycle()
        .into_iter()
        .filter(|d| d.kind == DecisionKind::Killed)
        .collect();
    store.apply(TOPIC, &positioned(&ends, 0)).await.unwrap();
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].was_killed && !rows[0].is_active);
    db.drop().await;
}

#[tokio::test]
async fn the_table_does_not_depend_on_batching_or_redelivery() {
    let all = positioned(&workload(60), 0);
    assert_eq!(all.len(), 120, "60 starts and 60 ends");
    let (once, store) = migrated("batching_once").await;
    store.apply(TOPIC, &all).await.unwrap();
    let expected = once.table(None).await;
    assert_eq!(expected.len(), 60);

    let mut seed = 7u64;
    let mut random = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    for attempt in 0..3 {
        let (live, store) = migrated(&format!("batching_{attempt}")).await;
        let mut at = 0;
        while at < all.len() {
            let end = (at + 1 + random(20)).min(all.len());
            store.apply(TOPIC, &all[at..end]).await.unwrap();
            // Sometimes the same batch again, as after a crash before the
            // Kafka side learned of the commit.
            if random(3) == 0 {
                let again = store.apply(TOPIC, &all[at..end]).await.unwrap();
                assert_eq!(again.started + again.ended, 0);
            }
            at = end;
        }
        assert_eq!(live.table(None).await, expected, "attempt {attempt}");
        live.drop().await;
    }
    once.drop().await;
}

/// A decision PostgreSQL cannot store (U+0000 in a text, as a stop reason
/// written before validation refused them) is set aside with its offset,
/// and the rest of its batch is written: the projector goes on.
#[tokio::test]
async fn a_decision_the_database_refuses_as_data_is_set_aside_and_the_batch_goes_on() {
    let (db, store) = migrated("rejected").await;
    let mut decisions = lifecycle();
    let stopped = decisions
        .iter_mut()
        .find(|d| d.kind == DecisionKind::Stopped)
        .expect("v3 was stopped");
    stopped.reason = "stopped by ops: \u{0}".into();
    let batch = positioned(&decisions, 0);
    let error = store.apply(TOPIC, &batch).await.unwrap_err();
    assert_eq!(error.data_error(), Some("22P05"), "{error}");
    let applied = store.apply_or_reject(TOPIC, None, &batch).await.unwrap();
    assert_eq!(
        applied,
        Applied {
            started: 3,
            ended: 2,
            skipped: 0,
            rejected: 1,
        }
    );
    let rows = rows(&db).await;
    let v3 = rows.iter().find(|r| r.variant_id == "v3").unwrap();
    assert!(v3.is_active, "v3's stop is the one set aside: {v3:?}");
    assert!(rows
        .iter()
        .filter(|r| r.variant_id != "v3")
        .all(|r| r.ended));
    let client = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (client, connection) = client;
    tokio::spawn(connection);
    let kept = client
        .query(
            "SELECT \"offset\", sqlstate, decision FROM projector_rejected",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    let offset = batch
        .iter()
        .find(|p| p.decision.kind == DecisionKind::Stopped)
        .unwrap()
        .offset;
    assert_eq!(kept[0].get::<_, i64>(0), offset);
    assert_eq!(kept[0].get::<_, &str>(1), "22P05");
    assert!(kept[0]
        .get::<_, &str>(2)
        .contains("stopped by ops: \\u0000"));
    // Written once: the same batch again is skipped whole.
    let again = store.apply_or_reject(TOPIC, None, &batch).await.unwrap();
    assert_eq!(again.skipped, batch.len() as u64);
    assert_eq!(store.offsets(TOPIC).await.unwrap()[&0], batch.len() as i64);
    db.drop().await;
}

#[tokio::test]
async fn a_batch_from_a_recreated_topic_is_refused_until_the_old_offsets_are_forgotten() {
    let (db, store) = migrated("topic_id").await;
    let decisions = lifecycle();
    let (first, second) = decisions.split_at(3);
    store
        .apply_from(TOPIC, Some("old-id"), &positioned(first, 0))
        .await
        .unwrap();
    assert_eq!(
        store.topic_id(TOPIC).await.unwrap().as_deref(),
        Some("old-id")
    );
    assert_eq!(store.offsets(TOPIC).await.unwrap().get(&0), Some(&3));

    // The same topic name under a new id: nothing is written.
    let refused = store
        .apply_from(TOPIC, Some("new-id"), &positioned(second, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::TopicChanged { stored, found, .. }
            if stored == "old-id" && found == "new-id"),
        "{refused}"
    );
    assert_eq!(rows(&db).await.len(), 3);

    // A projector whose view is stale cannot undo it; the one that
    // noticed forgets the old offsets once.
    assert!(!store
        .forget_recreated_topic(TOPIC, "other-id", "new-id")
        .await
        .unwrap());
    assert!(store
        .forget_recreated_topic(TOPIC, "old-id", "new-id")
        .await
        .unwrap());
    assert!(!store
        .forget_recreated_topic(TOPIC, "old-id", "new-id")
        .await
        .unwrap());
    assert!(store.offsets(TOPIC).await.unwrap().is_empty());

    // The new topic's decisions at offsets the old one had used are applied.
    let applied = store
        .apply_from(TOPIC, Some("new-id"), &positioned(second, 0))
        .await
        .unwrap();
    assert_eq!(applied.ended, 3);
    assert!(rows(&db).await.iter().all(|r| r.ended));
    // A batch whose id is not known is applied unchecked.
    store
        .apply_from(TOPIC, None, &positioned(second, 0))
        .await
        .unwrap();
    db.drop().await;
}

/// The live projector writes a batch as several transactions at once, one
/// set of partitions each: the table and the stored offsets come out as
/// one transaction would leave them, and a redelivery is skipped.
#[tokio::test]
async fn a_batch_written_as_concurrent_transactions_by_partition_is_the_same_as_one() {
    // 60 sessions over 5 partitions, each partition's offsets from 0.
    let mut next = [0i64; 5];
    let all: Vec<Positioned> = workload(60)
        .into_iter()
        .map(|decision| {
            let partition = decision.variant_id.bytes().map(usize::from).sum::<usize>() % 5;
            next[partition] += 1;
            Positioned {
                partition: partition as i32,
                offset: next[partition] - 1,
                decision,
            }
        })
        .collect();
    let (once, store) = migrated("concurrent_once").await;
    store.apply(TOPIC, &all).await.unwrap();
    let expected = once.table(None).await;

    let (db, store) = migrated("concurrent").await;
    for batch in all.chunks(37) {
        let done = store
            .apply_concurrently(TOPIC, None, batch.to_vec(), 3)
            .await;
        assert!(done.error.is_none(), "{:?}", done.error);
        assert!(done.unwritten.is_empty());
        let mut expected_next = std::collections::BTreeMap::new();
        for p in batch {
            expected_next.insert(p.partition, p.offset + 1);
        }
        assert_eq!(done.written, expected_next, "every partition's next offset");
        assert_eq!(
            done.applied.started + done.applied.ended,
            batch.len() as u64
        );
    }
    assert_eq!(db.table(None).await, expected);
    let again = store.apply_concurrently(TOPIC, None, all.clone(), 3).await;
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!(
        again.applied.skipped,
        all.len() as u64,
        "redelivery skipped"
    );
    assert_eq!(db.table(None).await, expected);
    once.drop().await;
    db.drop().await;
}

#[test]
fn a_batch_is_split_by_partition_in_order_into_balanced_parts() {
    use earlykill::projector::split_by_partition;
    let decision = lifecycle().remove(0);
    // Partition p holds p + 1 decisions, interleaved.
    let mut batch = Vec::new();
    let mut offsets = [0i64; 6];
    for round in 0..6 {
        for (partition, next) in offsets.iter_mut().enumerate() {
            if round <= partition {
                batch.push(Positioned {
                    partition: partition as i32,
                    offset: *next,
                    decision: decision.clone(),
                });
                *next += 1;
            }
        }
    }
    let parts = split_by_partition(batch.clone(), 3);
    assert_eq!(parts.len(), 3);
    let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), batch.len());
    assert_eq!(sizes, vec![7, 7, 7], "21 decisions in three equal parts");
    let mut seen = std::collections::BTreeSet::new();
    for part in &parts {
        let partitions: std::collections::BTreeSet<i32> =
            part.iter().map(|p| p.partition).collect();
        for partition in &partitions {
            assert!(
                seen.insert(*partition),
                "partition {partition} in two parts"
            );
            let offsets: Vec<i64> = part
                .iter()
                .filter(|p| p.partition == *partition)
                .map(|p| p.offset)
                .collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "in order");
        }
    }
    assert_eq!(split_by_partition(batch.clone(), 1).len(), 1);
    assert_eq!(split_by_partition(batch[..1].to_vec(), 4).len(), 1);
    assert!(split_by_partition(Vec::new(), 4).is_empty());
}

/// The lifecycle's inputs folded by two shadow policies: their decisions,
/// as the processor publishes them on the shadow decisions topic.
fn shadow_lifecycle() -> Vec<MonitoringDecision> {
    use earlykill_core::shadow::{shadow_configs, ShadowPolicy, Shadows};
    let policies: Vec<ShadowPolicy> = ["lenient:kill-threshold=0.1", "strict:"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let mut shadows = Shadows::new(shadow_configs(&MonitorConfig::default(), &policies));
    let mut out = Vec::new();
    let posts = [posted("v1", T0, 0.1), posted("v2", T0, 0.1)];
    let views = interaction("views", "v1", InteractionKind::View, 1000, T0 + SECOND);
    let likes = interaction("likes", "v1", InteractionKind::Like, 12, T0 + SECOND);
    shadows.apply_batch(
        &[
            Input::Posted(&posts[0]),
            Input::Posted(&posts[1]),
            Input::Interaction(&views),
            Input::Interaction(&likes),
        ],
        &mut out,
    );
    shadows.advance_to(T0 + 10 * MINUTE, &mut out);
    out.into_iter().map(|d| d.decision).collect()
}

#[tokio::test]
async fn shadow_decisions_go_to_the_shadow_table_a_row_per_policy_and_session() {
    let (db, live) = migrated("shadow_table").await;
    let pool = projector::connect(&db.url, 2).unwrap();
    let store = Store::open_table(pool.clone(), Table::Shadow)
        .await
        .unwrap();
    let decisions = shadow_lifecycle();
    let topic = "earlykill.shadow-decisions";
    let batch = positioned(&decisions, 0);
    let applied = store.apply(topic, &batch).await.unwrap();
    assert_eq!((applied.started, applied.ended), (4, 4));
    // Again: skipped by offset, and at other offsets the same rows.
    assert_eq!(store.apply(topic, &batch).await.unwrap().skipped, 8);
    store
        .apply(topic, &positioned(&decisions, 100))
        .await
        .unwrap();
    let client = pool.get().await.unwrap();
    let got: Vec<(String, String, bool, bool)> = client
        .query(
            "SELECT policy, variant_id, is_active, was_killed FROM variant_monitoring_shadow \
             ORDER BY policy, variant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let row = |p: &str, v: &str, killed| (p.to_owned(), v.to_owned(), false, killed);
    // 12 likes in 1000 views: 1.2% against 10% expected is below half
    // (strict, the live default) but not below a tenth (lenient).
    assert_eq!(
        got,
        [
            row("lenient", "v1", false),
            row("lenient", "v2", false),
            row("strict", "v1", true),
            row("strict", "v2", false),
        ]
    );
    assert_eq!(
        live.counts().await.unwrap(),
        (0, 0),
        "the live table is untouched"
    );
    assert_eq!(store.counts().await.unwrap(), (4, 0));
    db.drop().await;
}
