//! PostgreSQL side of the projector: migrations, the migrated-schema check,
//! and the batched, offset-tracking write.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::{json, Value};

use super::columns::{clamp_i32, timestamp, CommonColumns};
use earlykill_core::event::session_id;
use earlykill_core::event::{DecisionKind, MonitoringDecision};

refinery::embed_migrations!("migrations");

/// What can go wrong talking to the database; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error("invalid database URL (expected postgresql://user:password@host:port/database): {0}")]
    Url(String),
    /// The schema is missing or older than this build.
    #[error("the database is not migrated ({detail}); run `earlykill migrate` first")]
    NotMigrated {
        /// What was found.
        detail: String,
    },
    /// A statement failed.
    #[error("database error: {}", database_detail(.0))]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("cannot get a database connection: {}", with_causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// The batch was read from a topic whose id is not the one the stored
    /// offsets belong to: the topic was deleted and created again (or the
    /// reader's view of it is stale). Nothing was written.
    #[error(
        "decisions topic {topic:?} has id {found}, but the stored offsets belong to id {stored}: \
         the topic was deleted and created again"
    )]
    TopicChanged {
        /// The topic.
        topic: String,
        /// The id recorded with the stored offsets.
        stored: String,
        /// The id the batch was read under.
        found: String,
    },
}

/// A connection pool for `url` with at most `max_size` connections.
pub fn connect(url: &str, max_size: usize) -> Result<Pool, StoreError> {
    connect_in(url, max_size, None)
}

/// A connection pool whose sessions find tables in `schema` (their
/// `search_path`) instead of the URL's default: how `earlykill replay`
/// builds a copy of the table next to the live one.
///
/// TLS follows the URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
/// as libpq reads them (see `tls.rs`).
pub fn connect_in(url: &str, max_size: usize, schema: Option<&str>) -> Result<Pool, StoreError> {
    let (url, tls) = super::tls::split(url)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Url(e.to_string()))?;
    config.ssl_mode(tls.ssl_mode());
    if let Some(schema) = schema {
        config.options(format!("-c search_path={schema}"));
    }
    let manager = Manager::from_config(
        config,
        tls.connector()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .map_err(|e| StoreError::Url(e.to_string()))
}

/// One row of `variant_monitoring`, as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// `variant_id@posted_at+timeout m`.
    pub session_id: String,
    /// The variant.
    pub variant_id: String,
    /// Persona it was posted as.
    pub persona_id: String,
    /// The post.
    pub post_id: Option<String>,
    /// Expected engagement rate.
    pub expected_engagement_rate: f64,
    /// Effective kill threshold.
    pub kill_threshold: Option<f64>,
    /// Effective minimum interactions.
    pub min_interactions: Option<i32>,
    /// Effective window.
    pub timeout_minutes: Option<i32>,
    /// posted_at.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When it ended.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Still active.
    pub is_active: Option<bool>,
    /// Ended by the rule.
    pub was_killed: Option<bool>,
    /// The decision's reason.
    pub kill_reason: Option<String>,
    /// interactions / views at the end.
    pub final_engagement_rate: Option<f64>,
    /// Interactions at the end.
    pub final_interaction_count: Option<i32>,
    /// Views at the end.
    pub final_view_count: Option<i32>,
    /// The kind of the decision that ended it (`killed`, `timed_out`,
    /// `stopped`), from its metadata.
    pub ended_by: Option<String>,
    /// That decision's reason, whatever its kind.
    pub end_reason: Option<String>,
}

/// The latest session row of `variant_id`, if the table has one.
pub async fn latest_session(
    pool: &Pool,
    variant_id: &str,
) -> Result<Option<SessionRow>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(include_str!("sql/latest_session.sql"), &[&variant_id])
        .await?;
    Ok(row.map(|r| SessionRow {
        session_id: r.get(0),
        variant_id: r.get(1),
        persona_id: r.get(2),
        post_id: r.get(3),
        expected_engagement_rate: r.get(4),
        kill_threshold: r.get(5),
        min_interactions: r.get(6),
        timeout_minutes: r.get(7),
        started_at: r.get(8),
        ended_at: r.get(9),
        is_active: r.get(10),
        was_killed: r.get(11),
        kill_reason: r.get(12),
        final_engagement_rate: r.get(13),
        final_interaction_count: r.get(14),
        final_view_count: r.get(15),
        ended_by: r.get(16),
        end_reason: r.get(17),
    }))
}

/// True when a connection can be had and answers a query (readiness).
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    pool.get().await?.simple_query("SELECT 1").await?;
    Ok(())
}

/// Creates `schema` if it does not exist (for a replay into a copy).
pub async fn create_schema(pool: &Pool, schema: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await?;
    Ok(())
}

/// Applies every migration in `migrations/` not applied yet; returns the
/// versions applied now (empty when the schema was already current).
pub async fn migrate(pool: &Pool) -> Result<Vec<u32>, StoreError> {
    let mut client = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut client;
    let report = migrations::runner().run_async(client).await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect())
}

/// The newest migration this build ships.
fn latest_version() -> u32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// One decision with its place in the decisions topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Positioned {
    /// Partition of the decisions topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// The decision.
    pub decision: MonitoringDecision,
}

/// What [`Store::apply_concurrently`] did: the partitions whose
/// transaction committed, what they applied, and the first error of the
/// others with their decisions.
#[derive(Debug, Default)]
pub struct Concurrent {
    /// What the committed transactions applied.
    pub applied: Applied,
    /// Partitions written, with their next offsets.
    pub written: BTreeMap<i32, i64>,
    /// Why a transaction failed, if one did.
    pub error: Option<StoreError>,
    /// The decisions of the failed transactions, each partition's in order.
    pub unwritten: Vec<Positioned>,
}

/// The batch cut into at most `ways` parts by partition, each part keeping
/// its decisions in batch order, the parts about equal in size (each
/// partition, largest first, goes to the smallest part so far).
pub fn split_by_partition(batch: Vec<Positioned>, ways: usize) -> Vec<Vec<Positioned>> {
    let mut by_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for p in &batch {
        *by_partition.entry(p.partition).or_default() += 1;
    }
    let mut sizes: Vec<(i32, usize)> = by_partition.into_iter().collect();
    sizes.sort_by_key(|&(partition, n)| (std::cmp::Reverse(n), partition));
    let ways = ways.clamp(1, sizes.len().max(1));
    let mut load = vec![0usize; ways];
    let mut part_of: BTreeMap<i32, usize> = BTreeMap::new();
    for (partition, n) in sizes {
        let (smallest, _) = load
            .iter()
            .enumerate()
            .min_by_key(|&(i, &l)| (l, i))
            .unwrap_or((0, &0));
        load[smallest] += n;
        part_of.insert(partition, smallest);
    }
    let mut parts = vec![Vec::new(); ways];
    for p in batch {
        parts[part_of[&p.partition]].push(p);
    }
    parts.retain(|part| !part.is_empty());
    parts
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Started decisions written (new rows, or rows already there).
    pub started: u64,
    /// Terminal decisions written (rows closed).
    pub ended: u64,
    /// Decisions below their partition's stored offset: applied before.
    pub skipped: u64,
    /// Decisions the database refused as data, kept in
    /// `projector_rejected` instead.
    pub rejected: u64,
}

impl StoreError {
    /// The SQLSTATE of a database error in classes 22 (data exception: a
    /// value it cannot store, such as U+0000 in text) and 23 (integrity
    /// constraint violation): the same rows fail the same way however
    /// often they are written, so they are set aside, not retried.
    pub fn data_error(&self) -> Option<&str> {
        match self {
            StoreError::Database(e) => e
                .code()
                .map(tokio_postgres::error::SqlState::code)
                .filter(|code| code.starts_with("22") || code.starts_with("23")),
            _ => None,
        }
    }
}

/// The schema unqualified table names resolve to for `pool`'s sessions:
/// where the live table is.
pub async fn current_schema(pool: &Pool) -> Result<Option<String>, StoreError> {
    let client = pool.get().await?;
    let row = client.query_one("SELECT current_schema()", &[]).await?;
    Ok(row.get(0))
}

/// An error with its causes, `a: b: c`: a TLS handshake failure says why
/// (an unknown CA, a name mismatch) only in its source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The server's message and SQLSTATE when it sent one (tokio-postgres
/// shows only "db error" for those), else the client's error.
fn database_detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "{} (SQLSTATE {}{})",
            db.message(),
            db.code().code(),
            db.detail().map_or_else(String::new, |d| format!("; {d}"))
        ),
        None => error.to_string(),
    }
}

/// Text as PostgreSQL can store it: U+0000 written as `\u0000`.
fn storable(text: &str) -> String {
    text.replace('\0', "\\u0000")
}

/// The projector's view of the database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The table written.
    table: Table,
}

/// Which decisions a projector writes, and where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Table {
    /// The live decisions, into `variant_monitoring`.
    #[default]
    Live,
    /// The shadow policies' decisions, into `variant_monitoring_shadow`
    /// (a row per policy and session; its `policy` column is derived from
    /// the `session_id`, `<session>~<policy>`).
    Shadow,
}

impl Table {
    /// `sql` written for `variant_monitoring`, for this table.
    fn sql(self, sql: &'static str) -> std::borrow::Cow<'static, str> {
        match self {
            Table::Live => sql.into(),
            Table::Shadow => sql
                .replace("variant_monitoring", "variant_monitoring_shadow")
                .into(),
        }
    }

    /// The row key of decision `d`: its session, and in the shadow table
    /// its policy (from the decision id's `~<policy>` suffix) too.
    fn key(self, d: &MonitoringDecision) -> String {
        let session = session_id(&d.variant_id, d.posted_at, d.timeout_minutes.max(0) as u32);
        match self {
            Table::Live => session,
            Table::Shadow => {
                let policy = d
                    .decision_id
                    .rsplit_once('/')
                    .and_then(|(_, kind)| kind.split_once('~'))
                    .map_or("", |(_, policy)| policy);
                format!("{session}~{policy}")
            }
        }
    }
}

const INSERT_STARTED: &str = include_str!("sql/insert_started.sql");
const UPSERT_ENDED: &str = include_str!("sql/upsert_ended.sql");
const STORE_OFFSETS: &str = include_str!("sql/store_offsets.sql");

impl Store {
    /// [`Store::open`] writing `table`.
    pub async fn open_table(pool: Pool, table: Table) -> Result<Self, StoreError> {
        let mut store = Store::open(pool).await?;
        store.table = table;
        Ok(store)
    }

    /// A store over `pool` that refuses to work on a database that is not
    /// migrated to this build's schema.
    pub async fn open(pool: Pool) -> Result<Self, StoreError> {
        let client = pool.get().await?;
        let found: Option<i32> = match client
            .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Err(StoreError::NotMigrated {
                    detail: "no migration has been applied".to_owned(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let (found, latest) = (found.unwrap_or(0), latest_version());
        if i64::from(found) < i64::from(latest) {
            return Err(StoreError::NotMigrated {
                detail: format!("schema version {found}, this build needs {latest}"),
            });
        }
        Ok(Self {
            pool,
            table: Table::Live,
        })
    }

    /// Empties the table and forgets the stored offsets of `topic`, in one
    /// transaction, so that a replay from offset 0 rebuilds it. Returns the
    /// rows removed.
    pub async fn reset(&self, topic: &str) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let removed = tx
            .execute(&*self.table.sql("DELETE FROM variant_monitoring"), &[])
            .await?;
        tx.execute("DELETE FROM projector_offsets WHERE topic = $1", &[&topic])
            .await?;
        tx.execute("DELETE FROM projector_topics WHERE topic = $1", &[&topic])
            .await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Rows in the table, and how many of them are active.
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &*self.table.sql(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE is_active) FROM variant_monitoring",
                ),
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// The next offset to apply for each partition of `topic`.
    pub async fn offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT partition, next_offset FROM projector_offsets WHERE topic = $1",
                &[&topic],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The topic id recorded for `topic`'s stored offsets, if any.
    pub async fn topic_id(&self, topic: &str) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT topic_id FROM projector_topics WHERE topic = $1",
                &[&topic],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// `topic` was deleted and created again: forgets the offsets stored for
    /// the old topic and records `found` as its id, in one transaction, if
    /// the recorded id is still `stored` (another projector of the group may
    /// have done it first). Returns whether this call did it.
    pub async fn forget_recreated_topic(
        &self,
        topic: &str,
        stored: &str,
        found: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE projector_topics SET topic_id = $3, recorded_at = now() \
                 WHERE topic = $1 AND topic_id = $2",
                &[&topic, &stored, &found],
            )
            .await?;
        if changed == 1 {
            tx.execute("DELETE FROM projector_offsets WHERE topic = $1", &[&topic])
                .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// [`Store::apply`], and when the database refuses the batch as data
    /// ([`StoreError::data_error`]), the batch again one decision at a
    /// time, setting each refused one aside in `projector_rejected` with
    /// its offset stored in the same transaction. Any other error is
    /// returned: the caller retries the whole batch, whose decisions
    /// written meanwhile are then skipped by offset.
    pub async fn apply_or_reject(
        &self,
        topic: &str,
        topic_id: Option<&str>,
        batch: &[Positioned],
    ) -> Result<Applied, StoreError> {
        match self.apply_from(topic, topic_id, batch).await {
            Err(e) if e.data_error().is_some() => {}
            other => return other,
        }
        let mut total = Applied::default();
        for one in batch {
            match self
                .apply_from(topic, topic_id, std::slice::from_ref(one))
                .await
            {
                Ok(applied) => {
                    total.started += applied.started;
                    total.ended += applied.ended;
                    total.skipped += applied.skipped;
                }
                Err(e) => {
                    let Some(sqlstate) = e.data_error() else {
                        return Err(e);
                    };
                    let d = &one.decision;
                    tracing::error!(
                        partition = one.partition,
                        offset = one.offset,
                        decision_id = %d.decision_id.escape_debug(),
                        sqlstate,
                        error = %e,
                        "the database refused a decision as data; kept in projector_rejected, going on"
                    );
                    self.reject(topic, one, sqlstate, &e.to_string()).await?;
                    total.rejected += 1;
                }
            }
        }
        Ok(total)
    }

    /// [`Store::apply_or_reject`] as up to `ways` transactions at once, each
    /// on its own pooled connection and holding a disjoint set of the
    /// batch's partitions with their next offsets. A session's decisions
    /// are all in one partition, so the transactions touch different rows,
    /// and each partition's decisions stay in order in one of them.
    ///
    /// Each transaction commits or fails on its own: the result says which
    /// partitions are written and hands back the decisions of the others,
    /// for the caller to retry.
    pub async fn apply_concurrently(
        &self,
        topic: &str,
        topic_id: Option<&str>,
        batch: Vec<Positioned>,
        ways: usize,
    ) -> Concurrent {
        let groups = split_by_partition(batch, ways);
        let results = futures_util::future::join_all(
            groups
                .iter()
                .map(|group| self.apply_or_reject(topic, topic_id, group)),
        )
        .await;
        let mut done = Concurrent::default();
        for (group, result) in groups.into_iter().zip(results) {
            match result {
                Ok(applied) => {
                    done.applied.started += applied.started;
                    done.applied.ended += applied.ended;
                    done.applied.skipped += applied.skipped;
                    done.applied.rejected += applied.rejected;
                    for p in group {
                        let next = done.written.entry(p.partition).or_insert(p.offset + 1);
                        *next = (*next).max(p.offset + 1);
                    }
                }
                Err(e) => {
                    done.error.get_or_insert(e);
                    done.unwritten.extend(group);
                }
            }
        }
        done
    }

    /// Sets one decision aside in `projector_rejected` and stores its
    /// partition's next offset, in one transaction.
    async fn reject(
        &self,
        topic: &str,
        one: &Positioned,
        sqlstate: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let d = &one.decision;
        let decision =
            serde_json::to_string(d).unwrap_or_else(|e| format!("{{\"unserialisable\": \"{e}\"}}"));
        tx.execute(
            "INSERT INTO projector_rejected \
             (topic, partition, \"offset\", decision_id, variant_id, sqlstate, error, decision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &topic,
                &one.partition,
                &one.offset,
                &storable(&d.decision_id),
                &storable(&d.variant_id),
                &sqlstate,
                &storable(error),
                &storable(&decision),
            ],
        )
        .await?;
        tx.execute(
            STORE_OFFSETS,
            &[&topic, &vec![one.partition], &vec![one.offset + 1]],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a batch of decisions read from `topic`, and the partitions'
    /// next offsets, in one transaction. Decisions below their partition's
    /// stored offset were applied before and are skipped.
    pub async fn apply(&self, topic: &str, batch: &[Positioned]) -> Result<Applied, StoreError> {
        self.apply_from(topic, None, batch).await
    }

    /// [`Store::apply`] for a batch read while `topic` had the id
    /// `topic_id` (`None`: the broker reports none, or it is not known yet).
    /// The first id seen is recorded; a batch read under another id than
    /// the recorded one is refused with [`StoreError::TopicChanged`] and
    /// nothing is written.
    pub async fn apply_from(
        &self,
        topic: &str,
        topic_id: Option<&str>,
        batch: &[Positioned],
    ) -> Result<Applied, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(found) = topic_id {
            const RECORDED: &str =
                "SELECT topic_id FROM projector_topics WHERE topic = $1 FOR SHARE";
            let mut recorded: Option<String> =
                tx.query_opt(RECORDED, &[&topic]).await?.map(|r| r.get(0));
            if recorded.is_none() {
                // Another projector of the group may record it at the same
                // moment: the first wins, and the check below sees its id.
                tx.execute(
                    "INSERT INTO projector_topics (topic, topic_id) VALUES ($1, $2) \
                     ON CONFLICT (topic) DO NOTHING",
                    &[&topic, &found],
                )
                .await?;
                recorded = tx.query_opt(RECORDED, &[&topic]).await?.map(|r| r.get(0));
            }
            if let Some(stored) = recorded.filter(|stored| stored != found) {
                return Err(StoreError::TopicChanged {
                    topic: topic.to_owned(),
                    stored,
                    found: found.to_owned(),
                });
            }
        }
        // Only this batch's partitions are locked: batches of other
        // partitions commit alongside (`apply_concurrently`).
        let partitions: Vec<i32> = batch
            .iter()
            .map(|p| p.partition)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let stored: BTreeMap<i32, i64> = tx
            .query(
                "SELECT partition, next_offset FROM projector_offsets \
                 WHERE topic = $1 AND partition = ANY($2) ORDER BY partition FOR UPDATE",
                &[&topic, &partitions],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut applied = Applied::default();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut started: BTreeMap<String, &MonitoringDecision> = BTreeMap::new();
        let mut ended: BTreeMap<String, &MonitoringDecision> = BTreeMap::new();
        for p in batch {
            if p.offset < stored.get(&p.partition).copied().unwrap_or(0) {
                applied.skipped += 1;
                continue;
            }
            let entry = next.entry(p.partition).or_insert(p.offset + 1);
            *entry = (*entry).max(p.offset + 1);
            let d = &p.decision;
            let key = self.table.key(d);
            match d.kind {
                DecisionKind::Started => {
                    started.insert(key, d);
                    applied.started += 1;
                }
                _ => {
                    ended.insert(key, d);
                    applied.ended += 1;
                }
            }
        }
        // A session that starts and ends in the same batch (typical while
        // catching up or replaying) is written once, as its final row: an
        // insert followed by an update would rewrite every index twice.
        let mut start_metadata: BTreeMap<&str, &MonitoringDecision> = BTreeMap::new();
        for key in ended.keys() {
            if let Some(start) = started.remove(key) {
                start_metadata.insert(key.as_str(), start);
            }
        }
        if !started.is_empty() {
            let rows: Vec<_> = started.iter().collect();
            let common = CommonColumns::of(&rows);
            let metadata: Vec<Value> = rows.iter().map(|(_, d)| json!(d.metadata)).collect();
            tx.execute(
                &*self.table.sql(INSERT_STARTED),
                &common.params_with(&[&metadata]),
            )
            .await?;
        }
        if !ended.is_empty() {
            let rows: Vec<_> = ended.iter().collect();
            let common = CommonColumns::of(&rows);
            let ended_at: Vec<DateTime<Utc>> =
                rows.iter().map(|(_, d)| timestamp(d.decided_at)).collect();
            let killed: Vec<bool> = rows
                .iter()
                .map(|(_, d)| d.kind == DecisionKind::Killed)
                .collect();
            let kill_reasons: Vec<Option<&str>> = rows
                .iter()
                .map(|(_, d)| (d.kind == DecisionKind::Killed).then_some(d.reason.as_str()))
                .collect();
            let rates: Vec<Option<f64>> = rows.iter().map(|(_, d)| d.engagement_rate).collect();
            let interactions: Vec<i32> = rows
                .iter()
                .map(|(_, d)| clamp_i32(d.interactions))
                .collect();
            let views: Vec<i32> = rows.iter().map(|(_, d)| clamp_i32(d.views)).collect();
            let metadata: Vec<Value> = rows
                .iter()
                .map(|(key, d)| {
                    let mut metadata = start_metadata
                        .get(key.as_str())
                        .map_or_else(|| json!({}), |start| json!(start.metadata));
                    if let Value::Object(map) = &mut metadata {
                        map.insert("ended_by".into(), json!(d.kind.as_str()));
                        map.insert("end_reason".into(), json!(d.reason));
                        map.insert("end_decision_id".into(), json!(d.decision_id));
                        map.insert("trigger_event_id".into(), json!(d.trigger_event_id));
                        map.insert("requested_by".into(), json!(d.requested_by));
                    }
                    metadata
                })
                .collect();
            tx.execute(
                &*self.table.sql(UPSERT_ENDED),
                &common.params_with(&[
                    &ended_at,
                    &killed,
                    &kill_reasons,
                    &rates,
                    &interactions,
                    &views,
                    &metadata,
                ]),
            )
            .await?;
        }
        if !next.is_empty() {
            let partitions: Vec<i32> = next.keys().copied().collect();
            let offsets: Vec<i64> = next.values().copied().collect();
            tx.execute(STORE_OFFSETS, &[&topic, &partitions, &offsets])
                .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}
