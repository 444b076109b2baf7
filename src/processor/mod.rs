//! `earlykill run`: consume the input topics, fold each partition's events,
//! and publish the decisions, exactly once.
//!
//! One consumer group reads the posted, interactions and commands topics,
//! which are co-partitioned: partition N of each holds the same variants,
//! the range assignor gives all three to the same instance, and the state
//! of partition N lives in partition N of the compacted changelog topic.
//!
//! An instance runs `threads` workers (`shell.rs`), each a member of the
//! group with its own clients, owning the partitions the group gives it;
//! nothing is shared on the per-record path. Each worker's loop, on its
//! own thread (librdkafka's calls block, and the fold is faster than any
//! hand-off between threads):
//!
//! 1. Poll a batch of input records. Each is decoded and validated at once:
//!    a bad one becomes a dead letter, a good one is buffered in its
//!    partition's event-time merge (`merge.rs`).
//! 2. Fold what the merge releases, earliest event time first; an idle
//!    partition's clock is advanced from the wall clock, so timeouts fire
//!    without traffic.
//! 3. Produce decisions and dead letters in the open transaction; at the
//!    commit, the changed changelog keys and each partition's record (clock
//!    and input offsets), then the consumer offsets, then commit. A
//!    transaction is committed at least every `commit-interval-ms`, and at
//!    once when it holds a decision and no input is waiting.
//!
//! On an abortable error the transaction is aborted and every partition
//! rewinds to its last committed state (restored from the changelog) and
//! offsets. On assignment a partition's state is restored from the
//! changelog before any of its input is read; on revocation the open
//! transaction is committed first. A fenced producer is fatal: another
//! instance with the same transactional id took over.

//! The code, one part per file:
//!
//! - `shell.rs` — librdkafka's clients, the poll loop, the rebalance
//!   callback; everything else is reached through the core.
//! - `core.rs` — the parts wired together: accept a record, step (fold,
//!   idle clocks, backpressure, commit when due), recover, assign, revoke.
//! - `lifecycle.rs` — the worker's [`Phase`] (created, starting,
//!   restoring, running, pending shutdown, failed, abandoned, dead), one
//!   enum with checked transitions that the status and readiness read.
//! - `intake.rs` — one record decoded and validated, or a dead letter.
//! - `partition.rs` — one partition: fold, merge release, progress of each
//!   input topic, idle clock, backpressure; no Kafka types. The
//!   event-time merge it uses is the core crate's `earlykill_core::merge`.
//! - `output.rs` — decision, dead-letter and changelog records, built and
//!   sent.
//! - `committer.rs` — the open unit of work and the two commit protocols
//!   (one enum, one variant per guarantee), error classification, retries.
//! - `restorer.rs` — partitions rebuilt from the changelog, start
//!   positions.
//! - `handoff.rs` — revoked partitions' committed state, kept for their
//!   next owner among the instance's workers (no restore when nobody else
//!   wrote their changelog since).
//! - `broker/` — the narrow `Broker` trait the parts use, its
//!   librdkafka implementation, and the in-memory fake the unit tests use.
//! - `clients.rs` — each client's settings, the co-partitioning check
//!   (the plumbing shared with other components is in [`crate::kafka`]).
//! - `config.rs` — [`ProcessorConfig`], what a worker runs with, and the
//!   defaults of `earlykill run`'s settings.
//! - `status.rs`, `read_model.rs`, `error.rs` — what the processor shows.

pub(crate) mod broker;
mod clients;
mod committer;
pub mod config;
mod core;
mod error;
mod handoff;
mod intake;
mod lifecycle;
mod output;
mod partition;
mod read_model;
mod restorer;
mod shell;
mod status;

pub use config::{
    dead_letter_value_max, defaults, DecisionsFormat, Guarantee, ProcessorConfig,
    DEFAULT_MESSAGE_MAX_BYTES, MAX_THREADS,
};
pub use error::ProcessorError;
pub use lifecycle::Phase;
pub use read_model::{ActivePage, NotRunning, Sessions};
pub use shell::run;
pub use status::{LatencyHistogram, Status, StatusWatch, MAX_ABORTED_LISTED};
