//! `earlykill project` and `earlykill replay` end to end: decisions in
//! librdkafka's mock cluster, the table in the real PostgreSQL that
//! `.ci/run` starts.

use std::time::Duration;

use crate::common::postgres::TestDb;
use crate::common::projector::{block_on, publish_decisions, Projecting};
use crate::common::proxy::Proxy;
use crate::common::*;
use earlykill::projector::{
    self, ProjectorConfig, ProjectorError, ProjectorStatus, ReplayTarget, StoreError,
};
use earlykill::shutdown::Shutdown;
use earlykill::watch::Watch;
use earlykill_core::event::{DecisionKind, MonitoringDecision};
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "earlykill.decisions";
/// A safety net only: every wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(60);

/// A mock cluster with a two-partition decisions topic and a migrated
/// database.
struct Env {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    db: TestDb,
}

impl Env {
    fn new(test: &str) -> Env {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        let db = block_on(async {
            let db = TestDb::create(test).await;
            let pool = projector::connect(&db.url, 1).unwrap();
            projector::migrate(&pool).await.unwrap();
            db
        });
        Env { cluster, db }
    }

    fn config(&self, database_url: &str) -> ProjectorConfig {
        let mut config = ProjectorConfig::new(&self.cluster.bootstrap_servers(), database_url);
        // The mock cluster's group coordinator rejects shorter sessions.
        config
            .kafka
            .insert("session.timeout.ms".into(), "6000".into());
        config.batch_wait = Duration::from_millis(20);
        config.retry_max = Duration::from_millis(200);
        config
    }

    /// Publishes decisions keyed by variant, as the processor does.
    fn publish(&self, decisions: &[MonitoringDecision]) {
        publish_decisions(
            &self.cluster.bootstrap_servers(),
            TOPIC,
            decisions,
            PATIENCE,
        );
    }

    fn table(&self, schema: Option<&str>) -> Vec<String> {
        block_on(self.db.table(schema))
    }

    fn finish(self) {
        block_on(self.db.drop());
    }
}

/// A projector on its own thread, with this file's waits.
struct Running(Projecting);

impl Running {
    fn start(config: ProjectorConfig) -> Running {
        Running(Projecting::start(config))
    }

    fn wait(&self, what: &str, done: impl FnMut(&ProjectorStatus) -> bool) {
        self.0.wait(what, PATIENCE, done);
    }

    /// Waits until `n` decisions are read and written.
    fn wait_applied(&self, n: u64) {
        self.wait(&format!("{n} decisions applied"), |s| {
            s.read == n && s.applied.started + s.applied.ended + s.applied.skipped == n
        });
    }

    fn status(&self) -> ProjectorStatus {
        self.0.status.get()
    }

    fn stop(self) -> Result<(), ProjectorError> {
        self.0.stop()
    }
}

fn count(env: &Env, condition: &str) -> i64 {
    block_on(async {
        let pool = projector::connect(&env.db.url, 1).unwrap();
        let client = pool.get().await.unwrap();
        client
            .query_one(
                &format!("SELECT COUNT(*) FROM variant_monitoring WHERE {condition}"),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    })
}

#[test]
fn every_lifecycle_reaches_the_table_through_kafka() {
    let env = Env::new("project_lifecycle");
    let decisions = workload(30);
    assert_eq!(decisions.len(), 60);
    env.publish(&decisions[..30]);
    let running = Running::start(env.config(&env.db.url));
    running.wait_applied(30);
    env.publish(&decisions[30..]);
    running.wait_applied(60);
    running.stop().expect("clean stop");

    let ended = |kind: DecisionKind| decisions.iter().filter(|d| d.kind == kind).count() as i64;
    assert_eq!(ended(DecisionKind::Started), 30);
    assert!(ended(DecisionKind::Killed) > 0 && ended(DecisionKind::TimedOut) > 0);
    assert_eq!(count(&env, "TRUE"), 30);
    assert_eq!(count(&env, "is_active"), 0);
    assert_eq!(count(&env, "ended_at IS NOT NULL"), 30);
    assert_eq!(
        count(
            &env,
            "was_killed AND kill_reason IS NOT NULL AND final_engagement_rate IS NOT NULL"
        ),
        ended(DecisionKind::Killed)
    );
    for kind in [
        DecisionKind::Killed,
        DecisionKind::TimedOut,
        DecisionKind::Stopped,
    ] {
        let condition = format!("monitoring_metadata->>'ended_by' = '{}'", kind.as_str());
        assert_eq!(count(&env, &condition), ended(kind), "{kind:?}");
    }
    assert_eq!(
        count(
            &env,
            "final_view_count = 400 AND final_interaction_count IS NOT NULL"
        ),
        30
    );
    env.finish();
}

#[test]
fn the_same_decisions_delivered_twice_are_written_once() {
    let env = Env::new("project_twice");
    let decisions = workload(12);
    env.publish(&decisions);
    let running = Running::start(env.config(&env.db.url));
    running.wait_applied(24);
    let once = env.table(None);
    assert_eq!(once.len(), 12);
    // An at-least-once processor may publish a decision again after a
    // crash: same decision id, later offset.
    env.publish(&decisions);
    running.wait_applied(48);
    assert_eq!(env.table(None), once);
    running.stop().expect("clean stop");
    env.finish();
}

#[test]
fn a_crash_after_the_database_commit_resumes_from_the_database_offsets() {
    let env = Env::new("project_crash");
    let decisions = workload(20);
    let total = decisions.len() as u64;
    env.publish(&decisions);
    let expected = {
        // The same decisions applied by an uninterrupted projector.
        let mut config = env.config(&env.db.url);
        config.group_id = "reference".into();
        let running = Running::start(config);
        running.wait_applied(total);
        running.stop().expect("clean stop");
        let table = env.table(None);
        block_on(async {
            let pool = projector::connect(&env.db.url, 1).unwrap();
            let store = projector::Store::open(pool).await.unwrap();
            store.reset(TOPIC).await.unwrap();
        });
        table
    };

    // The first instance stops as a crash would right after its first
    // database commit: Kafka never hears of it.
    let mut config = env.config(&env.db.url);
    config.batch_size = 7;
    config.batch_wait = Duration::from_secs(5);
    config.crash_after_batches = Some(1);
    let first = Running::start(config.clone());
    first.wait("the first instance stops", |s| s.batches == 1);
    let before = first.status();
    first.0.join().expect("crash is a return");
    let written: i64 = before.next_offsets.values().sum();
    assert_eq!(written, 7, "{before:?}");

    // Kafka has no committed offset for the group, so a restart that
    // trusted Kafka would read everything again; it reads the rest only.
    config.crash_after_batches = None;
    config.batch_wait = Duration::from_millis(20);
    let second = Running::start(config);
    second.wait_applied(total - 7);
    let after = second.status();
    assert_eq!(after.applied.skipped, 0, "{after:?}");
    second.stop().expect("clean stop");
    assert_eq!(env.table(None), expected);
    env.finish();
}

#[test]
fn a_database_outage_pauses_the_projector_until_it_catches_up() {
    let env = Env::new("project_outage");
    let server = env.db.server_addr();
    let proxy = Proxy::start(&server);
    let via_proxy = env.db.url.replace(&server, &proxy.addr.to_string());
    assert_ne!(via_proxy, env.db.url, "the database URL names {server}");
    let decisions = workload(30);
    env.publish(&decisions[..20]);
    let running = Running::start(env.config(&via_proxy));
    running.wait_applied(20);
    assert!(running.status().ready);

    proxy.down();
    env.publish(&decisions[20..]);
    running.wait("not ready while the database is down", |s| {
        !s.ready && s.failed_attempts >= 3 && s.last_error.is_some()
    });
    let during = running.status();
    assert_eq!(
        during.applied.started + during.applied.ended,
        20,
        "{during:?}"
    );

    proxy.up();
    running.wait_applied(60);
    running.wait("ready again", |s| s.ready && s.last_error.is_none());
    let after = running.status();
    assert_eq!(after.applied.skipped, 0, "nothing written twice: {after:?}");
    running.stop().expect("clean stop");
    assert_eq!(count(&env, "TRUE"), 30);
    assert_eq!(count(&env, "is_active"), 0);
    env.finish();
}

#[test]
fn a_replay_rebuilds_the_table_the_live_projector_built() {
    let env = Env::new("project_replay");
    let decisions = workload(30);
    env.publish(&decisions);
    let running = Running::start(env.config(&env.db.url));
    running.wait_applied(60);
    running.stop().expect("clean stop");
    let live = env.table(None);
    assert_eq!(live.len(), 30);

    let config = env.config(&env.db.url);
    let mut seen = Vec::new();
    let summary = projector::replay(&config, &ReplayTarget::schema("analysis"), |p| seen.push(p))
        .expect("replay into a schema");
    assert_eq!(summary.read, 60);
    assert_eq!(summary.rows, (30, 0));
    assert_eq!(seen.last().map(|p| (p.read, p.total)), Some((60, 60)));
    assert_eq!(env.table(Some("analysis")), live);
    assert_eq!(env.table(None), live, "the live table is untouched");

    // Again into the same schema: emptied first, same result.
    let again = projector::replay(&config, &ReplayTarget::schema("analysis"), |_| {})
        .expect("second replay");
    assert_eq!(again.removed, 30);
    assert_eq!(env.table(Some("analysis")), live);

    let refused = projector::replay(&config, &ReplayTarget::Live { confirmed: false }, |_| {});
    assert!(matches!(refused, Err(ProjectorError::LiveNotConfirmed)));
    let bad = projector::replay(&config, &ReplayTarget::schema("x; DROP"), |_| {});
    assert!(matches!(bad, Err(ProjectorError::BadSchema(_))));

    // The live table's schema named as a target needs the confirmation too.
    let named_live = projector::replay(&config, &ReplayTarget::schema("public"), |_| {});
    assert!(
        matches!(&named_live, Err(ProjectorError::SchemaIsLive(s)) if s == "public"),
        "{named_live:?}"
    );
    assert_eq!(env.table(None), live, "refused before anything was deleted");

    let rebuilt = projector::replay(&config, &ReplayTarget::Live { confirmed: true }, |_| {})
        .expect("replay into the live table");
    assert_eq!(rebuilt.removed, 30);
    assert_eq!(env.table(None), live);

    env.finish();
}

#[test]
fn an_unmigrated_database_is_refused_at_start() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let db = block_on(TestDb::create("project_unmigrated"));
    let config = ProjectorConfig::new(&cluster.bootstrap_servers(), &db.url);
    let result = projector::run(config, Shutdown::new(), Watch::default());
    let err = result.expect_err("refused");
    assert!(
        matches!(err, ProjectorError::Store(StoreError::NotMigrated { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("run `earlykill migrate`"), "{err}");
    block_on(db.drop());
}
