//! Metric names and log events in one place: each thing that happens is one
//! function here, so its log line and its counter never drift apart.
//!
//! Metrics go through the `metrics` facade; with no recorder installed
//! (tests, benches) they cost next to nothing. [`prometheus`] installs the
//! Prometheus recorder, with histogram buckets suited to each value, and
//! registers every series the processor and the projector can know of in
//! advance at zero, so dashboards and alerts see them before the first event.
//!
//! Hot-path counts (records in and out) are not counted per record: the
//! processor's workers keep them in plain integers and [`add_records`]
//! adds each worker's increase about once a second.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use earlykill_core::event::{DecisionKind, MonitoringDecision};
use earlykill_core::monitor::MonitorStats;

/// Sessions started by a VariantPosted (the seeds' name).
pub const SESSIONS_STARTED: &str = "performance_monitor_sessions_started_total";
/// Active sessions on this instance's partitions.
pub const SESSIONS_ACTIVE: &str = "performance_monitor_sessions_active";
/// Sessions ended by the kill rule.
pub const VARIANTS_KILLED: &str = "performance_monitor_variants_killed_total";
/// Event time from posted_at to the end of a session, by decision kind.
pub const SESSION_DURATION: &str = "performance_monitor_session_duration_seconds";
/// interactions / views at the moment of a kill.
pub const ENGAGEMENT_AT_KILL: &str = "performance_monitor_engagement_rate_at_kill";
/// From the moment a decision was due (its triggering record's append to
/// the broker; a timeout's deadline) to the commit that published it.
pub const EVALUATION_LATENCY: &str = "performance_monitor_evaluation_latency_seconds";
/// Decisions committed, by kind (started, killed, timed_out, stopped).
pub const DECISIONS_TOTAL: &str = "earlykill_decisions_total";
/// Shadow policies' decisions sent, by policy and kind.
pub const SHADOW_DECISIONS_TOTAL: &str = "earlykill_shadow_decisions_total";
/// Input records read, by topic.
pub const RECORDS_IN: &str = "earlykill_records_in_total";
/// Records produced, by topic (decisions, changelog, dead letters).
pub const RECORDS_OUT: &str = "earlykill_records_out_total";
/// Records sent to the dead-letter topic, by source topic and reason kind.
pub const DEAD_LETTERS_TOTAL: &str = "earlykill_dead_letters_total";
/// Transactions (or at-least-once offset commits) completed.
pub const COMMITS_TOTAL: &str = "earlykill_transaction_commits_total";
/// Transactions aborted.
pub const ABORTS_TOTAL: &str = "earlykill_transaction_aborts_total";
/// Records between the processor's position and the end of an input
/// partition.
pub const CONSUMER_LAG: &str = "earlykill_consumer_lag_records";
/// Changelog records read so far by the restore of a partition.
pub const RESTORE_RECORDS: &str = "earlykill_restore_records";
/// Changelog offsets a partition's restore has still to read, to the end
/// the partition had when the restore began.
pub const RESTORE_REMAINING: &str = "earlykill_restore_remaining_records";
/// Partitions being restored right now.
pub const PARTITIONS_RESTORING: &str = "earlykill_partitions_restoring";
/// Partitions assigned to this instance and restored.
pub const PARTITIONS_ASSIGNED: &str = "earlykill_partitions_assigned";
/// Decisions between the projector's stored offset and the end of a
/// partition of the decisions topic.
pub const PROJECTOR_LAG: &str = "earlykill_projector_lag_records";
/// Decisions the projector wrote, by what they did (started, ended,
/// skipped, rejected: refused by the database as data and kept in
/// `projector_rejected`).
pub const PROJECTOR_DECISIONS: &str = "earlykill_projector_decisions_total";
/// Failed database attempts by the projector.
pub const PROJECTOR_DB_FAILURES: &str = "earlykill_projector_database_failures_total";
/// Times the projector found the decisions topic deleted and created again.
pub const PROJECTOR_TOPIC_RECREATED: &str = "earlykill_projector_topic_recreated_total";

/// Input events the fold applied without effect, by reason (late,
/// duplicate_post, unknown_stop, rejected, session_limit).
pub const EVENTS_IGNORED: &str = "earlykill_events_ignored_total";
/// Interactions for variants not posted yet, by what became of them (held,
/// applied, expired, evicted, refused).
pub const HELD_INTERACTIONS: &str = "earlykill_held_interactions_total";

/// Event time a partition has reached (its clock), seconds since the epoch.
pub const PARTITION_CLOCK: &str = "earlykill_partition_clock_seconds";
/// Wall clock minus a partition's clock: how far its decisions trail now.
pub const PARTITION_BEHIND: &str = "earlykill_partition_behind_seconds";
/// Consumer lag in time: while a partition has input unread, how far its
/// clock trails the wall clock (0 when it is caught up).
pub const CONSUMER_LAG_SECONDS: &str = "earlykill_consumer_lag_seconds";
/// 1 while a partition is stalled: input unread and no progress for
/// `stall-seconds`.
pub const PARTITION_STALLED: &str = "earlykill_partition_stalled";

/// Every metric name, for the tests and the deployment checks.
pub const ALL: [&str; 29] = [
    PROJECTOR_TOPIC_RECREATED,
    SHADOW_DECISIONS_TOTAL,
    RESTORE_REMAINING,
    PARTITION_CLOCK,
    PARTITION_BEHIND,
    CONSUMER_LAG_SECONDS,
    PARTITION_STALLED,
    EVENTS_IGNORED,
    HELD_INTERACTIONS,
    SESSIONS_STARTED,
    SESSIONS_ACTIVE,
    VARIANTS_KILLED,
    SESSION_DURATION,
    ENGAGEMENT_AT_KILL,
    EVALUATION_LATENCY,
    DECISIONS_TOTAL,
    RECORDS_IN,
    RECORDS_OUT,
    DEAD_LETTERS_TOTAL,
    COMMITS_TOTAL,
    ABORTS_TOTAL,
    CONSUMER_LAG,
    RESTORE_RECORDS,
    PARTITIONS_RESTORING,
    PARTITIONS_ASSIGNED,
    PROJECTOR_LAG,
    PROJECTOR_DECISIONS,
    PROJECTOR_DB_FAILURES,
    "earlykill_build_info",
];

/// Decision latency, 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Session duration: seconds to an hour (the default window is 10 minutes).
const DURATION_BUCKETS: [f64; 13] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 420.0, 540.0, 600.0, 900.0, 1800.0, 3600.0,
];
/// Engagement rates: a tenth of a percent to all.
const RATE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0,
];

/// The process's Prometheus recorder, installed on first use. Call it
/// before starting the workers: what is recorded before it is lost.
///
/// No series expires: gauges such as `earlykill_build_info` are set once
/// and must stay. A partition that moves to another instance has its gauges
/// set to zero here when it is revoked ([`partition_revoked`]).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = builder(None).build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding
        // application's); then this handle renders nothing of ours, which
        // is the embedder's choice.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        build_info();
        handle
    })
}

/// `earlykill_build_info{version}`: 1 while the process runs.
fn build_info() {
    metrics::gauge!("earlykill_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The recorder's configuration, with histogram buckets suited to each
/// value. `idle` drops counters and histograms not updated for that long;
/// gauges never expire whatever it is.
pub fn builder(idle: Option<Duration>) -> PrometheusBuilder {
    PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::COUNTER | MetricKindMask::HISTOGRAM, idle)
        .set_buckets_for_metric(Matcher::Full(EVALUATION_LATENCY.into()), &LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(SESSION_DURATION.into()), &DURATION_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(ENGAGEMENT_AT_KILL.into()), &RATE_BUCKETS)
        })
        .expect("the bucket lists are not empty")
}

fn describe() {
    describe_counter!(SESSIONS_STARTED, "Sessions started by a VariantPosted.");
    describe_gauge!(
        SESSIONS_ACTIVE,
        "Active sessions on this instance's partitions."
    );
    describe_counter!(VARIANTS_KILLED, "Sessions ended by the kill rule.");
    describe_histogram!(
        SESSION_DURATION,
        Unit::Seconds,
        "Event time from posted_at to the end of a session, by decision kind."
    );
    describe_histogram!(
        ENGAGEMENT_AT_KILL,
        "Engagement rate (interactions / views) when a variant was killed."
    );
    describe_histogram!(
        EVALUATION_LATENCY,
        Unit::Seconds,
        "From when a decision was due (its trigger's append to the broker, or a timeout's \
         deadline) to the commit that published it, by kind."
    );
    describe_counter!(DECISIONS_TOTAL, "Decisions committed, by kind.");
    describe_counter!(
        SHADOW_DECISIONS_TOTAL,
        "Shadow policies' decisions sent (never acted on), by policy and kind; policy holdout is what the live policy would have done to the held-out share."
    );
    describe_counter!(RECORDS_IN, "Input records read, by topic.");
    describe_counter!(RECORDS_OUT, "Records produced, by topic.");
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        "Records sent to the dead-letter topic, by source topic and reason kind."
    );
    describe_counter!(
        COMMITS_TOTAL,
        "Transactions (at-least-once: offset commits) completed."
    );
    describe_counter!(ABORTS_TOTAL, "Transactions aborted and rewound.");
    describe_gauge!(
        CONSUMER_LAG,
        "Records between the processor's position and the end of an input partition."
    );
    describe_gauge!(
        RESTORE_RECORDS,
        "Changelog records read by the last restore of a partition."
    );
    describe_gauge!(PARTITIONS_RESTORING, "Partitions being restored.");
    describe_gauge!(PARTITIONS_ASSIGNED, "Partitions assigned and restored.");
    describe_gauge!(
        PROJECTOR_LAG,
        "Decisions between the projector's stored offset and the end of a partition."
    );
    describe_counter!(
        PROJECTOR_DECISIONS,
        "Decisions the projector wrote, by result (started, ended, skipped, rejected)."
    );
    describe_counter!(
        EVENTS_IGNORED,
        "Input events the fold applied without effect, by reason."
    );
    describe_counter!(
        HELD_INTERACTIONS,
        "Interactions for variants not posted yet, by what became of them."
    );
    describe_counter!(
        PROJECTOR_DB_FAILURES,
        "Failed database attempts by the projector."
    );
    describe_counter!(
        PROJECTOR_TOPIC_RECREATED,
        "Times the projector found the decisions topic deleted and created again."
    );
}

/// Series that exist only when the processor runs shadow policies (or a
/// hold-out share): registered at zero for each configured policy.
pub const WITH_SHADOWS: [&str; 1] = [SHADOW_DECISIONS_TOTAL];

/// Registers at zero the processor's series whose labels are known at
/// start, so that rates and alerts work before the first occurrence.
pub fn processor_started(
    dead_letter_series: &[(&str, &'static str)],
    shadow_policies: &[std::sync::Arc<str>],
) {
    for policy in shadow_policies {
        for kind in ["started", "killed", "timed_out", "stopped"] {
            metrics::counter!(SHADOW_DECISIONS_TOTAL, "policy" => policy.to_string(), "kind" => kind)
                .absolute(0);
        }
    }
    metrics::counter!(SESSIONS_STARTED).absolute(0);
    metrics::counter!(VARIANTS_KILLED).absolute(0);
    metrics::counter!(COMMITS_TOTAL).absolute(0);
    metrics::counter!(ABORTS_TOTAL).absolute(0);
    metrics::gauge!(SESSIONS_ACTIVE).set(0.0);
    metrics::gauge!(PARTITIONS_RESTORING).set(0.0);
    metrics::gauge!(PARTITIONS_ASSIGNED).set(0.0);
    for kind in ["started", "killed", "timed_out", "stopped"] {
        metrics::counter!(DECISIONS_TOTAL, "kind" => kind).absolute(0);
    }
    for reason in IGNORED_REASONS {
        metrics::counter!(EVENTS_IGNORED, "reason" => reason).absolute(0);
    }
    for result in HELD_RESULTS {
        metrics::counter!(HELD_INTERACTIONS, "result" => result).absolute(0);
    }
    for (topic, kind) in dead_letter_series {
        metrics::counter!(DEAD_LETTERS_TOTAL, "topic" => topic.to_string(), "kind" => *kind)
            .absolute(0);
    }
}

/// Registers the projector's series at zero.
pub fn projector_started() {
    for result in ["started", "ended", "skipped", "rejected"] {
        metrics::counter!(PROJECTOR_DECISIONS, "result" => result).absolute(0);
    }
    metrics::counter!(PROJECTOR_DB_FAILURES).absolute(0);
    metrics::counter!(PROJECTOR_TOPIC_RECREATED).absolute(0);
}

/// A shadow policy's decision sent.
pub fn shadow_decision(policy: &str, kind: DecisionKind) {
    metrics::counter!(SHADOW_DECISIONS_TOTAL, "policy" => policy.to_owned(), "kind" => kind.as_str())
        .increment(1);
}

/// A decision was committed: the audit line, with every figure behind it,
/// and its metrics. `latency` runs from when it was due to its commit.
pub fn decision(d: &MonitoringDecision, latency: Duration) {
    let kind = d.kind.as_str();
    metrics::counter!(DECISIONS_TOTAL, "kind" => kind).increment(1);
    metrics::histogram!(EVALUATION_LATENCY, "kind" => kind).record(latency.as_secs_f64());
    match d.kind {
        DecisionKind::Started => metrics::counter!(SESSIONS_STARTED).increment(1),
        end => {
            let duration = (d.decided_at - d.posted_at).max(0) as f64 / 1000.0;
            metrics::histogram!(SESSION_DURATION, "kind" => kind).record(duration);
            if end == DecisionKind::Killed {
                metrics::counter!(VARIANTS_KILLED).increment(1);
                if let Some(rate) = d.engagement_rate {
                    metrics::histogram!(ENGAGEMENT_AT_KILL).record(rate);
                }
            }
        }
    }
    tracing::info!(
        target: AUDIT_TARGET,
        decision_id = %d.decision_id,
        kind,
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
        latency_ms = latency.as_secs_f64() * 1000.0,
        "decision"
    );
}

const IGNORED_REASONS: [&str; 5] = [
    "late",
    "duplicate_post",
    "unknown_stop",
    "rejected",
    "session_limit",
];
const HELD_RESULTS: [&str; 5] = ["held", "applied", "expired", "evicted", "refused"];

/// Adds what a partition's fold counted since `before` to the counters.
pub fn fold_stats(now: &MonitorStats, before: &MonitorStats) {
    let delta = |a: u64, b: u64| a.saturating_sub(b);
    let ignored = [
        delta(now.late, before.late),
        delta(now.duplicate_posts, before.duplicate_posts),
        delta(now.unknown_stops, before.unknown_stops),
        delta(now.rejected, before.rejected),
        delta(now.session_limit, before.session_limit),
    ];
    for (reason, n) in IGNORED_REASONS.into_iter().zip(ignored) {
        if n > 0 {
            metrics::counter!(EVENTS_IGNORED, "reason" => reason).increment(n);
        }
    }
    let held = [
        delta(now.held, before.held),
        delta(now.held_applied, before.held_applied),
        delta(now.held_expired, before.held_expired),
        delta(now.held_evicted, before.held_evicted),
        delta(now.held_refused, before.held_refused),
    ];
    for (result, n) in HELD_RESULTS.into_iter().zip(held) {
        if n > 0 {
            metrics::counter!(HELD_INTERACTIONS, "result" => result).increment(n);
        }
    }
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
pub fn restore_progress(partition: i32, records: u64, remaining: Option<u64>) {
    let p = partition.to_string();
    metrics::gauge!(RESTORE_RECORDS, "partition" => p.clone()).set(records as f64);
    if let Some(remaining) = remaining {
        metrics::gauge!(RESTORE_REMAINING, "partition" => p).set(remaining as f64);
    }
}

/// Partitions being restored, and assigned and restored.
pub fn partitions(restoring: usize, assigned: usize) {
    metrics::gauge!(PARTITIONS_RESTORING).set(restoring as f64);
    metrics::gauge!(PARTITIONS_ASSIGNED).set(assigned as f64);
}

/// Records in and out per topic since a worker's last flush, from its own
/// counts (each worker adds its share).
pub fn add_records(records_in: &[(&str, u64)], records_out: &[(&str, u64)]) {
    for (topic, n) in records_in {
        metrics::counter!(RECORDS_IN, "topic" => topic.to_string()).increment(*n);
    }
    for (topic, n) in records_out {
        metrics::counter!(RECORDS_OUT, "topic" => topic.to_string()).increment(*n);
    }
}

/// Active sessions on this instance.
pub fn sessions_active(active: usize) {
    metrics::gauge!(SESSIONS_ACTIVE).set(active as f64);
}

/// A partition moved away: its gauges read zero here from now on (its new
/// owner reports them).
pub fn partition_revoked(input_topics: [&str; 3], partition: i32) {
    for topic in input_topics {
        consumer_lag(topic, partition, 0);
    }
    restore_progress(partition, 0, Some(0));
    let p = partition.to_string();
    metrics::gauge!(CONSUMER_LAG_SECONDS, "partition" => p.clone()).set(0.0);
    metrics::gauge!(PARTITION_STALLED, "partition" => p).set(0.0);
}

/// Where a partition stands in time: its clock (`None` before any event),
/// the wall clock, whether input is unread, and whether it is stalled.
pub fn partition_time(partition: i32, clock: Option<i64>, wall: i64, behind: bool, stalled: bool) {
    let p = partition.to_string();
    if let Some(clock) = clock {
        metrics::gauge!(PARTITION_CLOCK, "partition" => p.clone()).set(clock as f64 / 1000.0);
        let trailing = (wall - clock).max(0) as f64 / 1000.0;
        metrics::gauge!(PARTITION_BEHIND, "partition" => p.clone()).set(trailing);
        metrics::gauge!(CONSUMER_LAG_SECONDS, "partition" => p.clone()).set(if behind {
            trailing
        } else {
            0.0
        });
    }
    metrics::gauge!(PARTITION_STALLED, "partition" => p).set(if stalled { 1.0 } else { 0.0 });
}

/// Consumer lag of one input partition.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// Projector lag of one partition of the decisions topic.
pub fn projector_lag(partition: i32, lag: i64) {
    metrics::gauge!(PROJECTOR_LAG, "partition" => partition.to_string()).set(lag.max(0) as f64);
}

/// A projector batch committed: how many of its decisions started a row,
/// ended one, were skipped (already applied) or rejected.
pub fn projector_batch(started: u64, ended: u64, skipped: u64, rejected: u64) {
    for (result, n) in [
        ("started", started),
        ("ended", ended),
        ("skipped", skipped),
        ("rejected", rejected),
    ] {
        metrics::counter!(PROJECTOR_DECISIONS, "result" => result).increment(n);
    }
}

/// A projector database attempt failed.
pub fn projector_db_failure() {
    metrics::counter!(PROJECTOR_DB_FAILURES).increment(1);
}

/// The projector found the decisions topic deleted and created again.
pub fn projector_topic_recreated() {
    metrics::counter!(PROJECTOR_TOPIC_RECREATED).increment(1);
}

/// Turns the log level setting into a tracing filter. The seeds' level
/// names are accepted in any case (`WARNING`, `CRITICAL`, `FATAL`); a
/// single word that is no level is refused rather than read as a target
/// name, which would silence every line. A filter with directives
/// (`earlykill=debug,rdkafka=warn`) is taken as it is. Unless it names the
/// audit target, `earlykill::audit=info` is added: the decision audit trail
/// stays on at any level.
pub fn log_filter(setting: &str) -> Result<String, String> {
    let trimmed = setting.trim();
    let filter = if trimmed.contains(['=', ',', ':']) {
        trimmed.to_owned()
    } else {
        let level = match trimmed.to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" | "warning" => "warn",
            "error" | "critical" | "fatal" => "error",
            "off" => "off",
            _ => {
                return Err(format!(
                    "{setting:?} is not a log level or a filter with directives"
                ))
            }
        };
        level.to_owned()
    };
    let parsed = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("{setting:?} is not a log filter: {e}"))?;
    drop(parsed);
    Ok(if filter.contains(AUDIT_TARGET) {
        filter
    } else {
        format!("{filter},{AUDIT_TARGET}=info")
    })
}

/// The tracing target of the decision audit lines.
pub const AUDIT_TARGET: &str = "earlykill::audit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_level_names_map_to_levels_and_keep_the_audit_trail() {
        assert_eq!(log_filter("WARNING").unwrap(), "warn,earlykill::audit=info");
        assert_eq!(
            log_filter("CRITICAL").unwrap(),
            "error,earlykill::audit=info"
        );
        assert_eq!(log_filter("Info").unwrap(), "info,earlykill::audit=info");
        assert_eq!(
            log_filter("earlykill=debug,earlykill::audit=off").unwrap(),
            "earlykill=debug,earlykill::audit=off"
        );
    }

    #[test]
    fn an_unknown_level_word_is_refused() {
        let error = log_filter("VERBOSE").unwrap_err();
        assert!(error.contains("VERBOSE"), "{error}");
    }

    #[test]
    fn gauges_outlive_the_idle_timeout() {
        let recorder = builder(Some(Duration::from_millis(50))).build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            build_info();
            partitions(0, 3);
            commit();
        });
        // The recorder notes when it first renders a series and drops it at
        // a later render once it is idle for longer than the timeout.
        let first = handle.render();
        assert!(
            first.contains("earlykill_transaction_commits_total 1"),
            "{first}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let text = handle.render();
        assert!(text.contains("earlykill_build_info{version="), "{text}");
        assert!(text.contains("earlykill_partitions_assigned 3"), "{text}");
        assert!(
            !text.contains("earlykill_transaction_commits_total"),
            "counters do expire after the idle timeout, so the wait was long enough: {text}"
        );
    }
}
