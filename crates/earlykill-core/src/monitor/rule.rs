//! The kill rule and the parameters a session is judged by. This is the one
//! place where "should this variant die" is decided.

use crate::event::Millis;

/// One minute of event time.
pub const MINUTE_MS: Millis = 60_000;

/// The parameters of the rule for one session: the configured defaults,
/// possibly overridden per variant by its VariantPosted event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Kill when the engagement rate falls below this fraction of the
    /// expected rate.
    pub kill_threshold: f64,
    /// No kill before this many interactions: a handful of early views with
    /// no engagement is noise, not evidence.
    pub min_interactions: u32,
    /// Length of the monitoring window from posted_at.
    pub timeout_minutes: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            kill_threshold: 0.5,
            min_interactions: 10,
            timeout_minutes: 10,
        }
    }
}

impl Thresholds {
    /// These thresholds with a VariantPosted's overrides applied. An
    /// out-of-range override (which validation rejects before the fold)
    /// falls back to the default rather than producing a nonsense session.
    pub fn with_overrides(
        self,
        kill_threshold: Option<f64>,
        min_interactions: Option<i32>,
        timeout_minutes: Option<i32>,
    ) -> Self {
        Self {
            kill_threshold: kill_threshold
                .filter(|t| *t > 0.0 && *t <= 1.0)
                .unwrap_or(self.kill_threshold),
            min_interactions: min_interactions
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m >= 1)
                .unwrap_or(self.min_interactions),
            timeout_minutes: timeout_minutes
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m >= 1)
                .unwrap_or(self.timeout_minutes),
        }
    }
}

/// interactions / views, or `None` when there are no views (no rate, so no
/// kill).
pub fn engagement_rate(interactions: u64, views: u64) -> Option<f64> {
    (views > 0).then(|| interactions as f64 / views as f64)
}

/// The rule: a session is killed as soon as it has at least
/// `min_interactions` interactions and its engagement rate is below
/// `kill_threshold × expected_engagement_rate`.
pub fn should_kill(
    interactions: u64,
    views: u64,
    expected_engagement_rate: f64,
    thresholds: &Thresholds,
) -> bool {
    interactions >= u64::from(thresholds.min_interactions)
        && engagement_rate(interactions, views)
            .is_some_and(|rate| rate < kill_limit(expected_engagement_rate, thresholds))
}

/// The engagement rate below which a session is killed.
pub fn kill_limit(expected_engagement_rate: f64, thresholds: &Thresholds) -> f64 {
    thresholds.kill_threshold * expected_engagement_rate
}

/// When a session posted at `posted_at` times out.
pub fn deadline(posted_at: Millis, timeout_minutes: u32) -> Millis {
    posted_at.saturating_add(i64::from(timeout_minutes) * MINUTE_MS)
}
