//! The projector: decisions topic → the `variant_monitoring` table.
//!
//! Exactly once into PostgreSQL: the rows a batch of decisions writes and
//! the next offset of every decisions-topic partition in the batch commit in
//! one database transaction, and decisions below a partition's stored offset
//! are skipped. Whatever happens on the Kafka side, a decision is applied
//! once. Writes are idempotent as well (one row per session, keyed by
//! `session_id`), so replaying the topic into an empty table rebuilds it.

mod decisions;
mod run;
mod store;
mod tls;
mod topic;

pub use run::{
    replay, run, ProjectorConfig, ProjectorError, ProjectorStatus, ReplayProgress, ReplaySummary,
    ReplayTarget,
};

pub use store::{
    connect, connect_in, create_schema, latest_session, migrate, ping, Applied, Positioned,
    SessionRow, Store, StoreError,
};
