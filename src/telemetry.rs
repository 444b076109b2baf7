//! Metric names and log events in one place: each thing that happens is one
//! function here, so its log line and its counter never drift apart.
//!
//! Metrics go through the `metrics` facade; with no recorder installed
//! (tests, benches) they cost next to nothing.

use crate::event::MonitoringDecision;

/// Decisions published, by kind.
pub const DECISIONS_TOTAL: &str = "earlykill_decisions_total";
/// Records sent to the dead-letter topic, by source topic and reason kind.
pub const DEAD_LETTERS_TOTAL: &str = "earlykill_dead_letters_total";
/// Transactions (or at-least-once offset commits) completed.
pub const COMMITS_TOTAL: &str = "earlykill_transaction_commits_total";
/// Transactions aborted.
pub const ABORTS_TOTAL: &str = "earlykill_transaction_aborts_total";
/// Changelog records read so far by the restore of a partition.
pub const RESTORE_RECORDS: &str = "earlykill_restore_records";

/// A decision was published: the audit line, with every figure behind it.
pub fn decision(d: &MonitoringDecision) {
    metrics::counter!(DECISIONS_TOTAL, "kind" => d.kind.as_str()).increment(1);
    tracing::info!(
        target: "earlykill::audit",
        decision_id = %d.decision_id,
        kind = d.kind.as_str(),
        variant_id = %d.variant_id,
        persona_id = %d.persona_id,
        post_id = %d.post_id,
        interactions = d.interactions,
        views = d.views,
        engagement_rate = d.engagement_rate,
        expected_engagement_rate = d.expected_engagement_rate,
        kill_threshold = d.kill_threshold,
        min_interactions = d.min_interactions,
        timeout_minutes = d.timeout_minutes,
        posted_at = d.posted_at,
        deadline = d.deadline,
        decided_at = d.decided_at,
        reason = %d.reason,
        trigger_event_id = d.trigger_event_id.as_deref(),
        requested_by = d.requested_by.as_deref(),
        "decision"
    );
}

/// A record went to the dead-letter topic.
pub fn dead_letter(topic: &str, kind: &'static str) {
    metrics::counter!(DEAD_LETTERS_TOTAL, "topic" => topic.to_owned(), "kind" => kind).increment(1);
}

/// A transaction committed.
pub fn commit() {
    metrics::counter!(COMMITS_TOTAL).increment(1);
}

/// A transaction was aborted.
pub fn abort() {
    metrics::counter!(ABORTS_TOTAL).increment(1);
}

/// Restore of `partition` has read `records` changelog records.
pub fn restore_progress(partition: i32, records: u64) {
    metrics::gauge!(RESTORE_RECORDS, "partition" => partition.to_string()).set(records as f64);
}
