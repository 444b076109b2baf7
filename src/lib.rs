//! earlykill watches each posted content variant for its first minutes and
//! kills the ones that engage at less than half the rate expected.
//!
//! The data flow, in order:
//!
//! - [`event`] — the contract: one Rust type per Avro schema in `schemas/`,
//!   the single-object wire codec (a fast serde decoder for the hot path,
//!   apache-avro for writing and as the reference), input validation, and
//!   the classification of each input record into a fold input or a
//!   dead-letter reason.
//! - [`monitor`] — the pure fold: `(state, event) -> (state, decisions)` for
//!   one partition, with its event-time clock, deadline index, held
//!   interactions and changelog snapshot/restore. No clock, I/O or randomness.
//!
//! The Kafka processor, the PostgreSQL projector and the HTTP surface wrap
//! this core; they arrive with their own modules.

#![warn(missing_docs)]

pub mod event;
pub mod monitor;
