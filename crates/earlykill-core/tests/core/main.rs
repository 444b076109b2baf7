//! The core's integration suite, one test crate (one link) with a module
//! per subject:
//!
//! - `monitor` — the rule, session by session: kills, timeouts, stops,
//!   late and held events, the changelog round trip.
//! - `monitor_properties` — the fold against an independent oracle, batches
//!   against one-by-one, restore equivalence (proptest).
//! - `shadow_properties` — shadow policies and the hold-out share against
//!   plain folds (proptest).
//! - `input` — each input record classified into a fold input or a
//!   dead-letter reason.
//! - `validation` — field checks and limits.
//! - `contract` — the codec against apache-avro, the reference
//!   implementation, and schema evolution.
//! - `fuzz` — arbitrary bytes never panic the decoder or the fold.

mod contract;
mod fuzz;
mod input;
mod monitor;
mod monitor_properties;
mod shadow_properties;
mod validation;
