//! Validation of decoded input records, before they reach the fold.
//!
//! A record that decodes but fails here is a producer bug, not a decision
//! input: the processor sends it to the dead-letter topic with the error's
//! [`ValidationError::kind`] and message. The fold itself never panics on any
//! input, valid or not; validation is what keeps nonsense out of decisions.

use super::{Interaction, Millis, StopMonitoring, VariantPosted};

/// Longest identifier accepted (variant, persona, post, event ids), in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest free text accepted (stop reason, requester), in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Most metadata entries accepted on a VariantPosted.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key or value accepted, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;
/// Longest monitoring window accepted as an override: one week.
pub const MAX_TIMEOUT_MINUTES: i32 = 7 * 24 * 60;
/// Largest `count` one interaction may carry: a billion. Sums of counts
/// saturate at `i64::MAX` in decisions; with this bound no realistic
/// sequence gets there, so live and restored sums always agree.
pub const MAX_COUNT: i64 = 1_000_000_000;
/// Largest `min_interactions` override: a million. More would make a
/// session unkillable, which `timeout_minutes` already expresses.
pub const MAX_MIN_INTERACTIONS: i32 = 1_000_000;
/// Latest event time accepted, whatever the clock: 9999-12-31T23:59:59.999Z.
pub const MAX_EVENT_TIME: Millis = 253_402_300_799_999;

/// Limits that depend on the deployment rather than the contract.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// How far ahead of the wall clock an event time may be before the record
    /// is rejected; `None` accepts any time up to [`MAX_EVENT_TIME`] (for
    /// simulations whose event time runs ahead of the wall clock).
    pub max_future_skew_ms: Option<Millis>,
}

/// The default future skew: a few seconds, room for clocks that disagree
/// by that much. One event moves its partition's clock to its time, so a
/// larger skew would let one record from a skewed producer or an API caller
/// time out every session of the partition early.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: Millis = 5_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future_skew_ms: Some(DEFAULT_MAX_FUTURE_SKEW_MS),
        }
    }
}

/// Why a decoded record is rejected. Every variant names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// A required id or text is empty.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A field is longer than its limit.
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length (bytes, or entries for a map).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number or timestamp outside its range.
    #[error("{field} must be {expected}, got {value}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The accepted range, in words.
        expected: &'static str,
        /// The value found.
        value: String,
    },
    /// A control character (U+0000 to U+001F, U+007F to U+009F) where none
    /// is allowed: anywhere in an id; in free text, anything but tab, line
    /// feed and carriage return. PostgreSQL cannot store U+0000 at all.
    #[error("{field} contains the control character U+{code:04X} at byte {at}")]
    ControlCharacter {
        /// The field.
        field: &'static str,
        /// The character's code point.
        code: u32,
        /// Its byte offset in the field.
        at: usize,
    },
    /// An event time too far ahead of the wall clock.
    #[error("{field} is {ahead_ms} ms ahead of the wall clock, more than the {max_ms} ms allowed")]
    InFuture {
        /// The field.
        field: &'static str,
        /// How far ahead it is.
        ahead_ms: Millis,
        /// The configured limit.
        max_ms: Millis,
    },
}

impl ValidationError {
    /// Short machine-readable reason, used in dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty_field",
            Self::TooLong { .. } => "oversized_field",
            Self::OutOfRange { .. } => "out_of_range",
            Self::InFuture { .. } => "future_timestamp",
            Self::ControlCharacter { .. } => "control_character",
        }
    }

    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::InFuture { field, .. }
            | Self::ControlCharacter { field, .. } => field,
        }
    }
}

/// Checks an identifier: not empty, at most [`MAX_ID_BYTES`], no control
/// character. Public so the HTTP API checks path ids the same way.
pub fn id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    length(field, value, MAX_ID_BYTES)?;
    no_control(field, value, |_| false)
}

/// Checks free text: at most `max` bytes, no control character but tab,
/// line feed and carriage return.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    length(field, value, max)?;
    no_control(field, value, |c| matches!(c, '\t' | '\n' | '\r'))
}

fn length(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn no_control(
    field: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ValidationError> {
    match value
        .char_indices()
        .find(|&(_, c)| c.is_control() && !allowed(c))
    {
        Some((at, c)) => Err(ValidationError::ControlCharacter {
            field,
            code: u32::from(c),
            at,
        }),
        None => Ok(()),
    }
}

fn time(
    field: &'static str,
    value: Millis,
    limits: &Limits,
    now: Millis,
) -> Result<(), ValidationError> {
    if !(0..=MAX_EVENT_TIME).contains(&value) {
        return Err(ValidationError::OutOfRange {
            field,
            expected: "a timestamp between 1970 and 9999 in milliseconds",
            value: value.to_string(),
        });
    }
    if let Some(max_ms) = limits.max_future_skew_ms {
        let ahead_ms = value.saturating_sub(now);
        if ahead_ms > max_ms {
            return Err(ValidationError::InFuture {
                field,
                ahead_ms,
                max_ms,
            });
        }
    }
    Ok(())
}

fn fraction(field: &'static str, value: f64) -> Result<(), ValidationError> {
    // Written so that NaN fails too.
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ValidationError::OutOfRange {
            field,
            expected: "in (0, 1]",
            value: value.to_string(),
        })
    }
}

/// Checks a VariantPosted; `now` is the wall clock, for the future-skew limit.
pub fn posted(
    event: &VariantPosted<'_>,
    limits: &Limits,
    now: Millis,
) -> Result<(), ValidationError> {
    id("variant_id", &event.variant_id)?;
    id("persona_id", &event.persona_id)?;
    id("post_id", &event.post_id)?;
    fraction("expected_engagement_rate", event.expected_engagement_rate)?;
    time("posted_at", event.posted_at, limits, now)?;
    if let Some(threshold) = event.kill_threshold {
        fraction("kill_threshold", threshold)?;
    }
    if let Some(min) = event.min_interactions {
        if !(1..=MAX_MIN_INTERACTIONS).contains(&min) {
            return Err(ValidationError::OutOfRange {
                field: "min_interactions",
                expected: "between 1 and 1000000",
                value: min.to_string(),
            });
        }
    }
    if let Some(minutes) = event.timeout_minutes {
        if !(1..=MAX_TIMEOUT_MINUTES).contains(&minutes) {
            return Err(ValidationError::OutOfRange {
                field: "timeout_minutes",
                expected: "between 1 and 10080 (one week)",
                value: minutes.to_string(),
            });
        }
    }
    if event.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(ValidationError::TooLong {
            field: "metadata",
            len: event.metadata.len(),
            max: MAX_METADATA_ENTRIES,
        });
    }
    for (key, value) in &event.metadata {
        text("metadata key", key, MAX_METADATA_VALUE_BYTES)?;
        text("metadata value", value, MAX_METADATA_VALUE_BYTES)?;
    }
    Ok(())
}

/// Checks an Interaction; `now` is the wall clock, for the future-skew limit.
pub fn interaction(
    event: &Interaction<'_>,
    limits: &Limits,
    now: Millis,
) -> Result<(), ValidationError> {
    id("event_id", &event.event_id)?;
    id("variant_id", &event.variant_id)?;
    if !(0..=MAX_COUNT).contains(&event.count) {
        return Err(ValidationError::OutOfRange {
            field: "count",
            expected: "between 0 and 1000000000",
            value: event.count.to_string(),
        });
    }
    time("occurred_at", event.occurred_at, limits, now)
}

/// Checks a StopMonitoring; `now` is the wall clock, for the future-skew limit.
pub fn stop(
    command: &StopMonitoring<'_>,
    limits: &Limits,
    now: Millis,
) -> Result<(), ValidationError> {
    id("variant_id", &command.variant_id)?;
    text("reason", &command.reason, MAX_TEXT_BYTES)?;
    id("requested_by", &command.requested_by)?;
    time("requested_at", command.requested_at, limits, now)
}
