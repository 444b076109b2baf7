//! The columns every `variant_monitoring` row has, as parameter arrays
//! for the write statements' UNNEST.

use chrono::{DateTime, Utc};

use earlykill_core::event::{Millis, MonitoringDecision};

pub(super) fn timestamp(millis: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(super) fn clamp_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The columns every row has, one array per column, for UNNEST: the first
/// nine parameters of both write statements.
pub(super) struct CommonColumns<'a> {
    session_ids: Vec<&'a str>,
    variant_ids: Vec<&'a str>,
    persona_ids: Vec<&'a str>,
    post_ids: Vec<&'a str>,
    expected: Vec<f64>,
    thresholds: Vec<f64>,
    mins: Vec<i32>,
    started_at: Vec<DateTime<Utc>>,
    timeouts: Vec<i32>,
}

pub(super) type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);

impl<'a> CommonColumns<'a> {
    pub(super) fn of(rows: &[(&'a String, &&'a MonitoringDecision)]) -> Self {
        Self {
            session_ids: rows.iter().map(|(k, _)| k.as_str()).collect(),
            variant_ids: rows.iter().map(|(_, d)| d.variant_id.as_str()).collect(),
            persona_ids: rows.iter().map(|(_, d)| d.persona_id.as_str()).collect(),
            post_ids: rows.iter().map(|(_, d)| d.post_id.as_str()).collect(),
            expected: rows
                .iter()
                .map(|(_, d)| d.expected_engagement_rate)
                .collect(),
            thresholds: rows.iter().map(|(_, d)| d.kill_threshold).collect(),
            mins: rows.iter().map(|(_, d)| d.min_interactions).collect(),
            started_at: rows.iter().map(|(_, d)| timestamp(d.posted_at)).collect(),
            timeouts: rows.iter().map(|(_, d)| d.timeout_minutes).collect(),
        }
    }

    /// These nine parameters followed by `more`.
    pub(super) fn params_with<'p>(&'p self, more: &[Param<'p>]) -> Vec<Param<'p>> {
        let mut params: Vec<Param<'p>> = vec![
            &self.session_ids,
            &self.variant_ids,
            &self.persona_ids,
            &self.post_ids,
            &self.expected,
            &self.thresholds,
            &self.mins,
            &self.started_at,
            &self.timeouts,
        ];
        params.extend_from_slice(more);
        params
    }
}
