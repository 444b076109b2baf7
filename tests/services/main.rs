//! The suite that needs services: the real PostgreSQL server (started by
//! the tests themselves, `tests/common/pg_server.rs`), a real
//! Kafka-protocol broker over TCP (tansu, `tests/common/tansu.rs`), or
//! Python with the reference cleanup service. One test crate, one link; a
//! module per subject:
//!
//! - `api` — the HTTP API over a real listener and a running processor.
//! - `cluster` — three `earlykill run` processes on tansu answering as one
//!   service, and what they say when one is killed.
//! - `projector`, `projector_store`, `pg_tls` — `earlykill project` and
//!   `replay`, the PostgreSQL side, TLS to the database.
//! - `real_broker` — `earlykill run` as a real process on tansu: backlogs,
//!   `kill -9`, several instances.
//! - `recreated_topic` — the decisions topic deleted and created again.
//! - `schema_registry` — Confluent framing against a stand-in registry.
//! - `cleanup_example` — `examples/cleanup_service.py` against a real
//!   processor.
//! - `demo` — the generator and the embedded demo.
//! - `merge_wait` — a worker waiting on the merge uses no CPU, and the
//!   merge still releases on time.
//! - `restore` — a restore reads its partitions smallest first, streaming.
//! - `soak` — generated traffic, seeded crashes, the fold as the judge.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cleanup_example;
mod cluster;
mod demo;
mod merge_wait;
mod pg_tls;
mod projector;
mod projector_store;
mod real_broker;
mod recreated_topic;
mod restore;
mod schema_registry;
mod shadow;
mod soak;
