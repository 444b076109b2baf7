//! A fresh PostgreSQL database per test. The server is
//! `EARLYKILL_TEST_DATABASE_URL` (a role that may create databases) when it
//! is set, else a throwaway server this test process starts and stops by
//! itself (`pg_server.rs`). Tests fail, not skip, when neither can be had,
//! with one message saying what to install. Shared with
//! `benches/projector.rs`.

use earlykill::projector;
use earlykill_core::event::MonitoringDecision;

#[path = "pg_server.rs"]
pub mod pg_server;
#[path = "tied.rs"]
pub mod tied;

pub struct TestDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

fn admin_url() -> String {
    if let Ok(url) = std::env::var("EARLYKILL_TEST_DATABASE_URL") {
        return url;
    }
    match pg_server::url() {
        Ok(url) => url,
        Err(why) => panic!("no PostgreSQL for the database tests: {why}"),
    }
}

impl TestDb {
    /// Creates an empty database named after the test.
    pub async fn create(test: &str) -> Self {
        let admin_url = admin_url();
        let name = format!("ek_{test}_{}", std::process::id());
        let pool = projector::connect(&admin_url, 1).unwrap();
        drop_database(&pool, &name).await;
        let client = pool.get().await.unwrap();
        client
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .unwrap();
        let base = admin_url.rsplit_once('/').map(|(base, _)| base).unwrap();
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// The server's `host:port`, as the URL names it.
    #[allow(dead_code)]
    pub fn server_addr(&self) -> String {
        let after_scheme = self.url.split_once("://").map_or(&*self.url, |(_, r)| r);
        let host_and_rest = after_scheme
            .rsplit_once('@')
            .map_or(after_scheme, |(_, r)| r);
        host_and_rest
            .split_once('/')
            .map_or(host_and_rest, |(h, _)| h)
            .to_owned()
    }

    /// Every column of `variant_monitoring` (in `schema`, or the default
    /// one) that a decision determines (not the generated id or the write
    /// times), one text row per session, in a stable order.
    #[allow(dead_code)]
    pub async fn table(&self, schema: Option<&str>) -> Vec<String> {
        let pool = projector::connect_in(&self.url, 1, schema).unwrap();
        let client = pool.get().await.unwrap();
        client
            .query(
                "SELECT row(session_id, variant_id, persona_id, post_id, expected_engagement_rate,
                            kill_threshold, min_interactions, started_at, ended_at, timeout_minutes,
                            is_active, was_killed, kill_reason, final_engagement_rate,
                            final_interaction_count, final_view_count, monitoring_metadata)::text
                 FROM variant_monitoring ORDER BY session_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The table that `decisions`, applied in order without any fault,
    /// make in schema `schema` of this database (created and migrated
    /// here), in [`TestDb::table`]'s form: what a projector must have
    /// written.
    #[allow(dead_code)]
    pub async fn table_of(&self, schema: &str, decisions: &[MonitoringDecision]) -> Vec<String> {
        let admin = projector::connect(&self.url, 1).unwrap();
        projector::create_schema(&admin, schema).await.unwrap();
        let pool = projector::connect_in(&self.url, 1, Some(schema)).unwrap();
        projector::migrate(&pool).await.unwrap();
        let store = projector::Store::open(pool).await.unwrap();
        let positioned: Vec<projector::Positioned> = decisions
            .iter()
            .enumerate()
            .map(|(offset, decision)| projector::Positioned {
                partition: 0,
                offset: offset as i64,
                decision: decision.clone(),
            })
            .collect();
        for batch in positioned.chunks(500) {
            store.apply(schema, batch).await.unwrap();
        }
        self.table(Some(schema)).await
    }

    /// Drops the database (call at the end of a test).
    pub async fn drop(self) {
        let pool = projector::connect(&self.admin_url, 1).unwrap();
        drop_database(&pool, &self.name).await;
    }
}

/// Drops a database, ending its sessions. An autovacuum worker belongs to
/// the superuser, and `WITH (FORCE)` may not end it for our role: it
/// finishes within moments, so that one error is retried (for up to 30 s).
async fn drop_database(pool: &deadpool_postgres::Pool, name: &str) {
    let client = pool.get().await.unwrap();
    let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    for attempt in 0.. {
        match client.execute(&statement, &[]).await {
            Ok(_) => return,
            Err(e)
                if attempt < 300
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot drop database {name}: {e}"),
        }
    }
}
