//! The projector: decisions topic → the `variant_monitoring` table.
//!
//! Exactly once into PostgreSQL: the rows a batch of decisions writes and
//! the next offset of every decisions-topic partition in the batch commit in
//! one database transaction, and decisions below a partition's stored offset
//! are skipped. Whatever happens on the Kafka side, a decision is applied
//! once. Writes are idempotent as well (one row per session, keyed by
//! `session_id`), so replaying the topic into an empty table rebuilds it.
//!
//! - `config.rs` — what it runs with and what it reports.
//! - `live.rs` — `earlykill project`: the consumer group, batches,
//!   outages, a recreated topic.
//! - `replay.rs` — `earlykill replay`: the rebuild from offset 0.
//! - `store.rs` — the database: migrations, batched idempotent writes with
//!   the offsets, the read side.
//! - `decisions.rs` — decoding the decisions topic (both framings).
//! - `error.rs`, `topic.rs` (the topic-id watch), `tls.rs` (sslmode).

mod columns;
pub mod config;
mod decisions;
mod error;
mod live;
mod replay;
mod store;
mod tls;
mod topic;

pub use config::{ProjectorConfig, ProjectorStatus};
pub use error::ProjectorError;
pub use live::run;
pub use replay::{replay, ReplayProgress, ReplaySummary, ReplayTarget};
pub use tls::address;

pub use store::{
    connect, connect_in, create_schema, latest_session, migrate, ping, split_by_partition, Applied,
    Concurrent, Positioned, SessionRow, Store, StoreError, Table,
};
