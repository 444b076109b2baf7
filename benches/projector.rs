//! Decisions applied per second by the batched projector (UNNEST arrays, one
//! transaction per batch, offsets in it), next to a baseline that writes the
//! same decisions one row per statement in the same transactions. Needs
//! PostgreSQL: a throwaway server the bench starts itself, or
//! `EARLYKILL_TEST_DATABASE_URL=postgresql://... cargo bench --bench projector`
//! (a role that may create databases; `bash .ci/run` sets one up).

use std::time::{Duration, Instant};

use chrono::DateTime;
use earlykill::projector::{self, Positioned, Store};
use earlykill_core::event::{session_id, DecisionKind, MonitoringDecision};

#[path = "../tests/common/postgres.rs"]
mod postgres;
use postgres::TestDb;

const SESSIONS: usize = 20_000;
const BATCH: usize = 1_000;
const RUNS: usize = 3;
const TOPIC: &str = "earlykill.decisions";
/// Partitions of the decisions topic, as in a deployment; a session's
/// decisions are in one of them, chosen by its variant.
const PARTITIONS: usize = 12;

/// A started and a killed decision per session, in topic order.
fn decisions() -> Vec<Positioned> {
    let t0 = 1_795_392_000_000;
    let mut out = Vec::with_capacity(2 * SESSIONS);
    for i in 0..SESSIONS {
        let variant_id = format!("variant-{i:08}");
        let base = MonitoringDecision {
            decision_id: String::new(),
            kind: DecisionKind::Started,
            persona_id: format!("persona-{:05}", i % 10_000),
            post_id: format!("post-{i:08}"),
            variant_id,
            expected_engagement_rate: 0.06,
            kill_threshold: 0.5,
            min_interactions: 10,
            timeout_minutes: 10,
            interactions: 0,
            views: 0,
            engagement_rate: None,
            posted_at: t0 + i as i64,
            deadline: t0 + i as i64 + 600_000,
            decided_at: t0 + i as i64,
            reason: "monitoring started".into(),
            trigger_event_id: None,
            requested_by: None,
            metadata: [("campaign".to_owned(), "bench".to_owned())].into(),
        };
        let killed = MonitoringDecision {
            kind: DecisionKind::Killed,
            interactions: 12,
            views: 1000,
            engagement_rate: Some(0.012),
            decided_at: base.posted_at + 60_000,
            reason: "engagement rate 0.012 below 0.5 x 0.06".into(),
            trigger_event_id: Some(format!("evt-{i}")),
            metadata: Default::default(),
            ..base.clone()
        };
        out.push(base);
        out.push(killed);
    }
    positioned(out)
}

/// Places decisions, in topic order, in their variant's partition, each
/// partition's offsets counting from 0.
fn positioned(decisions: Vec<MonitoringDecision>) -> Vec<Positioned> {
    let mut next = [0i64; PARTITIONS];
    decisions
        .into_iter()
        .map(|decision| {
            let number: usize = decision.variant_id["variant-".len()..].parse().unwrap();
            let partition = number % PARTITIONS;
            next[partition] += 1;
            Positioned {
                partition: partition as i32,
                offset: next[partition] - 1,
                decision,
            }
        })
        .collect()
}

/// A freshly migrated database; dropped again at the end of `main`.
async fn fresh_database(
    name: &str,
    connections: usize,
    databases: &mut Vec<TestDb>,
) -> deadpool_postgres::Pool {
    let db = TestDb::create(name).await;
    let pool = projector::connect(&db.url, connections).unwrap();
    projector::migrate(&pool).await.unwrap();
    databases.push(db);
    pool
}

async fn batched(pool: deadpool_postgres::Pool, all: &[Positioned]) -> Duration {
    let store = Store::open(pool).await.unwrap();
    let start = Instant::now();
    for batch in all.chunks(BATCH) {
        store.apply(TOPIC, batch).await.unwrap();
    }
    start.elapsed()
}

/// As `earlykill project` writes: each batch as up to `ways` transactions
/// at once, split by partition.
async fn concurrent(pool: deadpool_postgres::Pool, all: &[Positioned], ways: usize) -> Duration {
    let store = Store::open(pool).await.unwrap();
    let start = Instant::now();
    for batch in all.chunks(BATCH) {
        let done = store
            .apply_concurrently(TOPIC, None, batch.to_vec(), ways)
            .await;
        assert!(done.error.is_none(), "{:?}", done.error);
    }
    start.elapsed()
}

/// An experiment, not what `earlykill project` does: each of `ways` lanes
/// owns the partitions `p % ways == lane` and writes its own decisions,
/// 1 000 per transaction, without waiting for the other lanes between
/// transactions (`Store::apply_concurrently` waits for all of a batch's
/// transactions before the next batch). It measures what independent
/// per-partition writers would give.
async fn lanes(pool: deadpool_postgres::Pool, all: &[Positioned], ways: usize) -> Duration {
    let store = Store::open(pool).await.unwrap();
    let lanes: Vec<Vec<Positioned>> = (0..ways)
        .map(|lane| {
            all.iter()
                .filter(|p| p.partition as usize % ways == lane)
                .cloned()
                .collect()
        })
        .collect();
    let start = Instant::now();
    futures_util::future::join_all(lanes.iter().map(|lane| {
        let store = store.clone();
        async move {
            for batch in lane.chunks(BATCH) {
                store.apply(TOPIC, batch).await.unwrap();
            }
        }
    }))
    .await;
    start.elapsed()
}

const ONE_STARTED: &str = "INSERT INTO variant_monitoring (session_id, variant_id, persona_id, post_id,
    expected_engagement_rate, kill_threshold, min_interactions, started_at, timeout_minutes, monitoring_metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (session_id) DO NOTHING";
const ONE_ENDED: &str = "INSERT INTO variant_monitoring (session_id, variant_id, persona_id, post_id,
    expected_engagement_rate, kill_threshold, min_interactions, started_at, timeout_minutes, ended_at,
    is_active, was_killed, kill_reason, final_engagement_rate, final_interaction_count, final_view_count)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, FALSE, $11, $12, $13, $14, $15)
    ON CONFLICT (session_id) DO UPDATE SET ended_at = EXCLUDED.ended_at, is_active = FALSE,
    was_killed = EXCLUDED.was_killed, kill_reason = EXCLUDED.kill_reason,
    final_engagement_rate = EXCLUDED.final_engagement_rate,
    final_interaction_count = EXCLUDED.final_interaction_count,
    final_view_count = EXCLUDED.final_view_count, updated_at = NOW()";
const ONE_OFFSET: &str =
    "INSERT INTO projector_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset";

/// The same decisions, the same transactions, one statement per row
/// (prepared once): what a straightforward per-event projector does.
async fn row_by_row(
    pool: deadpool_postgres::Pool,
    all: &[Positioned],
    per_transaction: usize,
) -> Duration {
    let mut client = pool.get().await.unwrap();
    let started = client.prepare(ONE_STARTED).await.unwrap();
    let ended = client.prepare(ONE_ENDED).await.unwrap();
    let offset = client.prepare(ONE_OFFSET).await.unwrap();
    let start = Instant::now();
    for batch in all.chunks(per_transaction) {
        let tx = client.transaction().await.unwrap();
        for p in batch {
            let d = &p.decision;
            let sid = session_id(&d.variant_id, d.posted_at, d.timeout_minutes as u32);
            let posted = DateTime::from_timestamp_millis(d.posted_at).unwrap();
            if d.kind == DecisionKind::Started {
                let metadata = serde_json::json!(d.metadata);
                tx.execute(
                    &started,
                    &[
                        &sid,
                        &d.variant_id,
                        &d.persona_id,
                        &d.post_id,
                        &d.expected_engagement_rate,
                        &d.kill_threshold,
                        &d.min_interactions,
                        &posted,
                        &d.timeout_minutes,
                        &metadata,
                    ],
                )
                .await
                .unwrap();
            } else {
                let decided = DateTime::from_timestamp_millis(d.decided_at).unwrap();
                let killed = d.kind == DecisionKind::Killed;
                let (i, v) = (d.interactions as i32, d.views as i32);
                tx.execute(
                    &ended,
                    &[
                        &sid,
                        &d.variant_id,
                        &d.persona_id,
                        &d.post_id,
                        &d.expected_engagement_rate,
                        &d.kill_threshold,
                        &d.min_interactions,
                        &posted,
                        &d.timeout_minutes,
                        &decided,
                        &killed,
                        &d.reason,
                        &d.engagement_rate,
                        &i,
                        &v,
                    ],
                )
                .await
                .unwrap();
            }
        }
        let mut next = std::collections::BTreeMap::new();
        for p in batch {
            next.insert(p.partition, p.offset + 1);
        }
        for (partition, next) in next {
            tx.execute(&offset, &[&TOPIC, &partition, &next])
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut databases = Vec::new();
    let all = decisions();
    // Live order: all starts, then all ends, so no batch holds both halves
    // of a session (in live traffic they are minutes apart).
    let live: Vec<Positioned> = {
        let (starts, ends): (Vec<_>, Vec<_>) = all
            .iter()
            .map(|p| p.decision.clone())
            .partition(|d| d.kind == DecisionKind::Started);
        positioned(starts.into_iter().chain(ends).collect())
    };
    let mut separate = Vec::new();
    // A commit per decision is slow: measured on the first few thousand.
    let per_event = &all[..4_000];
    let (mut fast, mut slow, mut slowest) = (Vec::new(), Vec::new(), Vec::new());
    let (mut two, mut four, mut lanes2) = (Vec::new(), Vec::new(), Vec::new());
    // Alternate the modes so all see the same machine conditions.
    for run in 0..RUNS {
        let pool = fresh_database(&format!("bench_replay_{run}"), 2, &mut databases).await;
        let t = batched(pool, &all).await;
        fast.push(all.len() as f64 / t.as_secs_f64());
        let pool = fresh_database(&format!("bench_live_{run}"), 2, &mut databases).await;
        let t = batched(pool, &live).await;
        separate.push(live.len() as f64 / t.as_secs_f64());
        let pool = fresh_database(&format!("bench_live2_{run}"), 2, &mut databases).await;
        let t = concurrent(pool, &live, 2).await;
        two.push(live.len() as f64 / t.as_secs_f64());
        let pool = fresh_database(&format!("bench_live4_{run}"), 4, &mut databases).await;
        let t = concurrent(pool, &live, 4).await;
        four.push(live.len() as f64 / t.as_secs_f64());
        let pool = fresh_database(&format!("bench_lanes_{run}"), 2, &mut databases).await;
        let t = lanes(pool, &live, 2).await;
        lanes2.push(live.len() as f64 / t.as_secs_f64());
        let pool = fresh_database(&format!("bench_rows_{run}"), 2, &mut databases).await;
        let t = row_by_row(pool, &all, BATCH).await;
        slow.push(all.len() as f64 / t.as_secs_f64());
        let pool = fresh_database(&format!("bench_each_{run}"), 2, &mut databases).await;
        let t = row_by_row(pool, per_event, 1).await;
        slowest.push(per_event.len() as f64 / t.as_secs_f64());
        println!(
            "run {run}: batched (replay order) {:.0}/s | batched (live order) {:.0}/s | \
             live order, 2 transactions at once {:.0}/s | live order, 4 at once {:.0}/s | \
             experiment: 2 independent lanes {:.0}/s | \
             row by row, {BATCH} per transaction {:.0}/s | row by row, commit each {:.0}/s",
            fast[run], separate[run], two[run], four[run], lanes2[run], slow[run], slowest[run]
        );
    }
    let (fast, separate, slow, slowest) = (
        median(fast),
        median(separate),
        median(slow),
        median(slowest),
    );
    let (two, four, lanes2) = (median(two), median(four), median(lanes2));
    println!(
        "median of {RUNS}: batched, live order {separate:.0} decisions/s ({:.1}x row by row in the same transactions); \
         2 transactions at once {two:.0}/s ({:.1}x); 4 at once {four:.0}/s ({:.1}x)",
        separate / slow,
        two / slow,
        four / slow
    );
    println!(
        "median of {RUNS}: experiment, 2 independent lanes, live order {lanes2:.0}/s ({:.1}x)",
        lanes2 / slow
    );
    println!(
        "median of {RUNS}: batched, replay order {fast:.0} decisions/s; row by row in the same transactions \
         {slow:.0}/s ({:.1}x); row by row with a commit each {slowest:.0}/s ({:.1}x)",
        fast / slow,
        fast / slowest
    );
    for db in databases {
        db.drop().await;
    }
}
