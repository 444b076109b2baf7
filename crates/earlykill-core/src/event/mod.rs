//! The event contract in code: one Rust type per Avro record in `schemas/`,
//! the schema table, the wire codec and input validation.
//!
//! Invariants:
//! - The `.avsc` files are the source of truth. Each type here mirrors its
//!   schema field by field; `tests/core/contract.rs` round-trips every type through
//!   apache-avro and checks the fast decoder against it.
//! - Strings are `Cow<'a, str>` so the hot path borrows from the record bytes
//!   and tests and producers can own their data.
//! - Timestamps are `i64` milliseconds since the Unix epoch (Avro
//!   `timestamp-millis`), the unit the fold computes in.

pub mod codec;
pub mod datum;
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
    /// Variant to monitor; the Kafka key and the session key.
    #[serde(borrow)]
    pub variant_id: Cow<'a, str>,
    /// Persona the variant was posted as.
    #[serde(borrow)]
    pub persona_id: Cow<'a, str>,
    /// Post to delete or cancel if the variant is killed.
    #[serde(borrow)]
    pub post_id: Cow<'a, str>,
    /// Rate the variant is expected to reach, in (0, 1].
    pub expected_engagement_rate: f64,
    /// When the variant was posted: the start of its window.
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

impl VariantPosted<'_> {
    /// The same post, owning its strings.
    pub fn into_owned(self) -> VariantPosted<'static> {
        VariantPosted {
            variant_id: Cow::Owned(self.variant_id.into_owned()),
            persona_id: Cow::Owned(self.persona_id.into_owned()),
            post_id: Cow::Owned(self.post_id.into_owned()),
            expected_engagement_rate: self.expected_engagement_rate,
            posted_at: self.posted_at,
            kill_threshold: self.kill_threshold,
            min_interactions: self.min_interactions,
            timeout_minutes: self.timeout_minutes,
            metadata: self.metadata,
        }
    }
}

/// What an [`Interaction`] records. `View` counts towards views, every other
/// kind towards interactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InteractionKind {
    /// An impression: counts towards views.
    View,
    /// An engagement: counts towards interactions.
    Like,
    /// An engagement.
    Reply,
    /// An engagement.
    Repost,
    /// An engagement.
    Quote,
    /// An engagement.
    Share,
    /// An engagement.
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

    /// Its position among the schema's symbols: its index in [`Self::ALL`],
    /// which lists the kinds in the order they are declared.
    pub const fn symbol_index(self) -> u32 {
        self as u32
    }

    /// True for impressions, which count towards views rather than interactions.
    pub fn is_view(self) -> bool {
        matches!(self, Self::View)
    }
}

/// Views or engagements on a posted variant (`schemas/interaction.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction<'a> {
    /// Producer's unique id of the event; named as a kill's trigger.
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    /// Variant the interaction belongs to; the Kafka key.
    #[serde(borrow)]
    pub variant_id: Cow<'a, str>,
    /// What happened.
    pub kind: InteractionKind,
    /// How many events this record stands for (aggregating upstreams).
    #[serde(default = "one")]
    pub count: i64,
    /// When it happened (event time).
    pub occurred_at: Millis,
}

impl Interaction<'_> {
    /// The same interaction, owning its strings.
    pub fn into_owned(self) -> Interaction<'static> {
        Interaction {
            event_id: Cow::Owned(self.event_id.into_owned()),
            variant_id: Cow::Owned(self.variant_id.into_owned()),
            kind: self.kind,
            count: self.count,
            occurred_at: self.occurred_at,
        }
    }
}

fn one() -> i64 {
    1
}

/// An operator's request to end a session (`schemas/stop_monitoring.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopMonitoring<'a> {
    /// Variant whose session should end; the Kafka key.
    #[serde(borrow)]
    pub variant_id: Cow<'a, str>,
    /// Why, copied into the stopped decision.
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    /// Who asked, copied into the stopped decision.
    #[serde(borrow)]
    pub requested_by: Cow<'a, str>,
    /// When the stop was requested (event time).
    pub requested_at: Millis,
}

impl StopMonitoring<'_> {
    /// The same command, owning its strings.
    pub fn into_owned(self) -> StopMonitoring<'static> {
        StopMonitoring {
            variant_id: Cow::Owned(self.variant_id.into_owned()),
            reason: Cow::Owned(self.reason.into_owned()),
            requested_by: Cow::Owned(self.requested_by.into_owned()),
            requested_at: self.requested_at,
        }
    }
}

/// Lifecycle step of a monitoring session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionKind {
    /// The session began.
    Started,
    /// The rule fired: the variant engages too little.
    Killed,
    /// The window ended without a kill.
    TimedOut,
    /// An operator ended the session.
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
    /// Deterministic id (see `monitor::decision_id`).
    pub decision_id: String,
    /// Which lifecycle step this is.
    pub kind: DecisionKind,
    /// Variant the session monitors; the Kafka key.
    pub variant_id: String,
    /// Persona the variant was posted as.
    pub persona_id: String,
    /// Post to delete or cancel when the variant is killed.
    pub post_id: String,
    /// The variant's expected engagement rate.
    pub expected_engagement_rate: f64,
    /// Effective kill threshold (override or default).
    pub kill_threshold: f64,
    /// Effective minimum interactions before a kill.
    pub min_interactions: i32,
    /// Effective window in minutes.
    pub timeout_minutes: i32,
    /// Engagements counted when the decision was taken.
    pub interactions: i64,
    /// Views counted when the decision was taken.
    pub views: i64,
    /// interactions / views; `None` while there are no views.
    #[serde(default)]
    pub engagement_rate: Option<f64>,
    /// When the variant was posted.
    pub posted_at: Millis,
    /// posted_at + timeout_minutes.
    pub deadline: Millis,
    /// Partition clock at the decision; a timeout carries its deadline.
    pub decided_at: Millis,
    /// The figures behind the decision, for people.
    pub reason: String,
    /// For a kill, the event_id of the interaction that crossed the threshold.
    #[serde(default)]
    pub trigger_event_id: Option<String>,
    /// For a stop, who asked.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// For a start, the VariantPosted's metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Where a session is in its lifecycle (changelog `SessionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    /// Started and not ended.
    Active,
    /// Ended by the rule.
    Killed,
    /// Ended by its deadline.
    TimedOut,
    /// Ended by an operator.
    Stopped,
}

impl SessionStatus {
    /// Its position among the schema's symbols (`ACTIVE`, `KILLED`,
    /// `TIMED_OUT`, `STOPPED`).
    pub const fn symbol_index(self) -> u32 {
        match self {
            Self::Active => 0,
            Self::Killed => 1,
            Self::TimedOut => 2,
            Self::Stopped => 3,
        }
    }
}

/// A session as stored in the changelog (`SessionState` in
/// `schemas/changelog_record.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Persona the variant was posted as.
    pub persona_id: String,
    /// Post identifier.
    pub post_id: String,
    /// Expected engagement rate.
    pub expected_engagement_rate: f64,
    /// Effective kill threshold.
    pub kill_threshold: f64,
    /// Effective minimum interactions.
    pub min_interactions: i32,
    /// Effective window in minutes.
    pub timeout_minutes: i32,
    /// When the variant was posted.
    pub posted_at: Millis,
    /// Engagements counted so far.
    pub interactions: i64,
    /// Views counted so far.
    pub views: i64,
    /// Where the session is in its lifecycle.
    pub status: SessionStatus,
    /// When it ended; `None` while active.
    #[serde(default)]
    pub ended_at: Option<Millis>,
    /// When an ended session is forgotten, if events for it pushed that
    /// past `deadline + retention`; `None` otherwise.
    #[serde(default)]
    pub forget_at: Option<Millis>,
}

/// An interaction held until its variant is posted (`HeldInteraction`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldInteraction {
    /// event_id of the interaction.
    pub event_id: String,
    /// Kind of the interaction.
    pub kind: InteractionKind,
    /// Count of the interaction.
    pub count: i64,
    /// Event time of the interaction.
    pub occurred_at: Millis,
    /// Partition clock when it was held; dropped at held_at + grace.
    pub held_at: Millis,
    /// Arrival order in the partition, so the order survives a restore.
    pub seq: i64,
}

/// Latest state of one changelog key (`schemas/changelog_record.avsc`).
/// The empty `variant_id` is the partition record carrying the clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangelogRecord {
    /// The key: a variant, or empty for the partition record.
    pub variant_id: String,
    /// On the partition record only: the clock.
    #[serde(default)]
    pub partition_clock: Option<Millis>,
    /// On the partition record only, written by the processor: the input
    /// offsets the state includes.
    #[serde(default)]
    pub input_offsets: Option<InputOffsets>,
    /// The variant's session, if it has one.
    #[serde(default)]
    pub session: Option<SessionState>,
    /// Interactions held for a variant not posted yet.
    #[serde(default)]
    pub held: Vec<HeldInteraction>,
}

/// For each input topic, the offset of the next record to fold in one
/// partition (`InputOffsets` in `schemas/changelog_record.avsc`). `None`
/// for a topic nothing has been read from yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputOffsets {
    /// Next offset in the posted topic.
    #[serde(default)]
    pub posted: Option<i64>,
    /// Next offset in the interactions topic.
    #[serde(default)]
    pub interactions: Option<i64>,
    /// Next offset in the commands topic.
    #[serde(default)]
    pub commands: Option<i64>,
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

/// The identity of a monitoring session, e.g. `v-1@1795392000000+10m`: its
/// variant, posting time and window. A partition never starts the same
/// session twice (a repeated post is ignored while the session is remembered
/// and late once it is forgotten), so this is unique per session and is the
/// key of its `variant_monitoring` row.
pub fn session_id(variant_id: &str, posted_at: Millis, timeout_minutes: u32) -> String {
    format!("{variant_id}@{posted_at}+{timeout_minutes}m")
}

/// The deterministic id of a decision, e.g. `v-1@1795392000000+10m/killed`:
/// its session's id and its kind (a session has at most one decision of
/// each kind).
pub fn decision_id(
    variant_id: &str,
    posted_at: Millis,
    timeout_minutes: u32,
    kind: DecisionKind,
) -> String {
    format!(
        "{}/{}",
        session_id(variant_id, posted_at, timeout_minutes),
        kind.as_str()
    )
}
