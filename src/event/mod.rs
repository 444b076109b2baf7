//! The event contract in code: one Rust type per Avro record in `schemas/`,
//! the schema table, the wire codec and input validation.
//!
//! Invariants:
//! - The `.avsc` files are the source of truth. Each type here mirrors its
//!   schema field by field; `tests/contract.rs` round-trips every type through
//!   apache-avro and checks the fast decoder against it.
//! - Strings are `Cow<'a, str>` so the hot path borrows from the record bytes
//!   and tests and producers can own their data.
//! - Timestamps are `i64` milliseconds since the Unix epoch (Avro
//!   `timestamp-millis`), the unit the fold computes in.

pub mod codec;
pub mod input;
pub mod schema;
pub mod validate;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use codec::{CodecError, Decoder};
pub use input::{Decoded, InputDecoders, InputTopic, Rejection};
pub use schema::Contract;
pub use validate::{ValidationError, MAX_ID_BYTES};

/// Event time: milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A variant was posted and should be monitored (`schemas/variant_posted.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantPosted<'a> {
    #[serde(borrow)]
    pub variant_id: Cow<'a, str>,
    #[serde(borrow)]
    pub persona_id: Cow<'a, str>,
    #[serde(borrow)]
    pub post_id: Cow<'a, str>,
    pub expected_engagement_rate: f64,
    pub posted_at: Millis,
    /// Override of the configured kill threshold for this variant.
    #[serde(default)]
    pub kill_threshold: Option<f64>,
    /// Override of the configured minimum interactions for this variant.
    #[serde(default)]
    pub min_interactions: Option<i32>,
    /// Override of the configured window for this variant.
    #[serde(default)]
    pub timeout_minutes: Option<i32>,
    /// Labels carried into the started decision; never read by the rule.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What an [`Interaction`] records. `View` counts towards views, every other
/// kind towards interactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InteractionKind {
    View,
    Like,
    Reply,
    Repost,
    Quote,
    Share,
    Save,
    /// Any engagement kind this build does not know yet (the schema's enum
    /// default), so upstreams can add kinds without breaking us.
    #[serde(other)]
    Other,
}

impl InteractionKind {
    /// Every kind, in schema symbol order.
    pub const ALL: [InteractionKind; 8] = [
        Self::View,
        Self::Like,
        Self::Reply,
        Self::Repost,
        Self::Quote,
        Self::Share,
        Self::Save,
        Self::Other,
    ];

    /// True for impressions, which count towards views rather than interactions.
    pub fn is_view(self) -> bool {
        matches!(self, Self::View)
    }
}

/// Views or engagements on a posted variant (`schemas/interaction.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub variant_id: Cow<'a, str>,
    pub kind: InteractionKind,
    /// How many events this record stands for (aggregating upstreams).
    #[serde(default = "one")]
    pub count: i64,
    pub occurred_at: Millis,
}

fn one() -> i64 {
    1
}

/// An operator's request to end a session (`schemas/stop_monitoring.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopMonitoring<'a> {
    #[serde(borrow)]
    pub variant_id: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    #[serde(borrow)]
    pub requested_by: Cow<'a, str>,
    pub requested_at: Millis,
}

/// Lifecycle step of a monitoring session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionKind {
    Started,
    Killed,
    TimedOut,
    Stopped,
}

impl DecisionKind {
    /// Lower-case name used in decision ids, Kafka headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Killed => "killed",
            Self::TimedOut => "timed_out",
            Self::Stopped => "stopped",
        }
    }
}

/// One step of a variant's monitoring lifecycle
/// (`schemas/monitoring_decision.avsc`). Owned: decisions are rare next to
/// interactions and outlive the input record they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoringDecision {
    pub decision_id: String,
    pub kind: DecisionKind,
    pub variant_id: String,
    pub persona_id: String,
    pub post_id: String,
    pub expected_engagement_rate: f64,
    pub kill_threshold: f64,
    pub min_interactions: i32,
    pub timeout_minutes: i32,
    pub interactions: i64,
    pub views: i64,
    #[serde(default)]
    pub engagement_rate: Option<f64>,
    pub posted_at: Millis,
    pub deadline: Millis,
    pub decided_at: Millis,
    pub reason: String,
    #[serde(default)]
    pub trigger_event_id: Option<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Where a session is in its lifecycle (changelog `SessionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    Active,
    Killed,
    TimedOut,
    Stopped,
}

/// A session as stored in the changelog (`SessionState` in
/// `schemas/changelog_record.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub persona_id: String,
    pub post_id: String,
    pub expected_engagement_rate: f64,
    pub kill_threshold: f64,
    pub min_interactions: i32,
    pub timeout_minutes: i32,
    pub posted_at: Millis,
    pub interactions: i64,
    pub views: i64,
    pub status: SessionStatus,
    #[serde(default)]
    pub ended_at: Option<Millis>,
}

/// An interaction held until its variant is posted (`HeldInteraction`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldInteraction {
    pub event_id: String,
    pub kind: InteractionKind,
    pub count: i64,
    pub occurred_at: Millis,
    pub held_at: Millis,
    pub seq: i64,
}

/// Latest state of one changelog key (`schemas/changelog_record.avsc`).
/// The empty `variant_id` is the partition record carrying the clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangelogRecord {
    pub variant_id: String,
    #[serde(default)]
    pub partition_clock: Option<Millis>,
    #[serde(default)]
    pub session: Option<SessionState>,
    #[serde(default)]
    pub held: Vec<HeldInteraction>,
}

impl ChangelogRecord {
    /// Key of the partition record, which no variant can have (ids are
    /// validated non-empty).
    pub const PARTITION_KEY: &'static str = "";

    /// True for the record that carries the partition clock.
    pub fn is_partition_record(&self) -> bool {
        self.variant_id == Self::PARTITION_KEY
    }
}
