//! A decision built from a session's figures, with the reason an
//! operator reads.

use chrono::DateTime;

use super::rule;
use super::sessions::SessionRef;
use crate::event::{decision_id, DecisionKind, Millis, MonitoringDecision};

/// Builds a decision from a session's current figures.
pub(super) fn decision(
    session: &SessionRef<'_>,
    kind: DecisionKind,
    decided_at: Millis,
    reason: String,
) -> MonitoringDecision {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let min_interactions = i32::try_from(session.thresholds().min_interactions).unwrap_or(i32::MAX);
    let timeout_minutes = i32::try_from(session.thresholds().timeout_minutes).unwrap_or(i32::MAX);
    MonitoringDecision {
        decision_id: decision_id(
            session.variant_id(),
            session.posted_at,
            session.thresholds().timeout_minutes,
            kind,
        ),
        kind,
        variant_id: session.variant_id().to_owned(),
        persona_id: session.persona_id().to_owned(),
        post_id: session.post_id().to_owned(),
        expected_engagement_rate: session.expected_engagement_rate,
        kill_threshold: session.thresholds().kill_threshold,
        min_interactions,
        timeout_minutes,
        interactions: clamp(session.interactions),
        views: clamp(session.views),
        engagement_rate: rule::engagement_rate(session.interactions, session.views),
        posted_at: session.posted_at,
        deadline: session.deadline(),
        decided_at,
        reason,
        trigger_event_id: None,
        requested_by: None,
        metadata: Default::default(),
    }
}

pub(super) fn rfc3339(time: Millis) -> String {
    DateTime::from_timestamp_millis(time).map_or_else(
        || format!("{time} ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

pub(super) fn started_reason(session: &SessionRef<'_>) -> String {
    format!(
        "monitoring until {}: kill below {} x expected {} once {} interactions are in",
        rfc3339(session.deadline()),
        session.thresholds().kill_threshold,
        session.expected_engagement_rate,
        session.thresholds().min_interactions,
    )
}

pub(super) fn kill_reason(session: &SessionRef<'_>) -> String {
    let rate = rule::engagement_rate(session.interactions, session.views).unwrap_or(0.0);
    format!(
        "engagement rate {rate:.6} ({} interactions / {} views) is below {} x expected {} = {:.6} with at least {} interactions",
        session.interactions,
        session.views,
        session.thresholds().kill_threshold,
        session.expected_engagement_rate,
        rule::kill_limit(session.expected_engagement_rate, &session.thresholds()),
        session.thresholds().min_interactions,
    )
}

pub(super) fn timeout_reason(session: &SessionRef<'_>) -> String {
    let rate = rule::engagement_rate(session.interactions, session.views).map_or_else(
        || "no rate (no views)".to_owned(),
        |r| format!("engagement rate {r:.6}"),
    );
    format!(
        "{} minute window ended without a kill: {rate} ({} interactions / {} views)",
        session.thresholds().timeout_minutes,
        session.interactions,
        session.views,
    )
}
