//! Builders for tests and benches (feature `fixtures`): events with
//! sensible defaults, so each test states only what it is about, and a
//! partition with `n` active sessions, the benches' workload. Used by this
//! crate's tests and benches and by the binary crate's suites.

#![allow(missing_docs)]

use std::borrow::Cow;

use crate::event::{
    Interaction, InteractionKind, Millis, MonitoringDecision, StopMonitoring, VariantPosted,
};
use crate::monitor::{Input, Monitor, MonitorConfig, Outcome};

/// 2026-11-23T00:00:00Z, a plausible event time.
pub const T0: Millis = 1_795_392_000_000;
pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60_000;

pub fn posted(variant_id: &str, posted_at: Millis, expected: f64) -> VariantPosted<'static> {
    VariantPosted {
        variant_id: Cow::Owned(variant_id.to_owned()),
        persona_id: Cow::Owned(format!("persona-of-{variant_id}")),
        post_id: Cow::Owned(format!("post-of-{variant_id}")),
        expected_engagement_rate: expected,
        posted_at,
        kill_threshold: None,
        min_interactions: None,
        timeout_minutes: None,
        metadata: Default::default(),
    }
}

pub fn interaction(
    event_id: &str,
    variant_id: &str,
    kind: InteractionKind,
    count: i64,
    occurred_at: Millis,
) -> Interaction<'static> {
    Interaction {
        event_id: Cow::Owned(event_id.to_owned()),
        variant_id: Cow::Owned(variant_id.to_owned()),
        kind,
        count,
        occurred_at,
    }
}

pub fn stop(variant_id: &str, requested_at: Millis) -> StopMonitoring<'static> {
    StopMonitoring {
        variant_id: Cow::Owned(variant_id.to_owned()),
        reason: Cow::Borrowed("campaign paused"),
        requested_by: Cow::Borrowed("ops@example.com"),
        requested_at,
    }
}

/// Applies one event and returns its outcome and the decisions it made.
pub fn apply(monitor: &mut Monitor, input: Input<'_, '_>) -> (Outcome, Vec<MonitoringDecision>) {
    let mut decisions = Vec::new();
    let outcome = monitor.apply(input, &mut decisions);
    (outcome, decisions)
}

/// Advances the clock and returns the decisions it made.
pub fn advance(monitor: &mut Monitor, to: Millis) -> Vec<MonitoringDecision> {
    let mut decisions = Vec::new();
    monitor.advance_to(to, &mut decisions);
    decisions
}

/// Cases per property: `default`, or `PROPTEST_CASES` for a longer run.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` sessions from the fold itself, ending every way: a third killed (10
/// likes in 400 views, against 10% expected), a third stopped, a third timed
/// out; a started and an end decision each.
pub fn workload(n: i64) -> Vec<MonitoringDecision> {
    let mut m = Monitor::new(MonitorConfig::default());
    let mut out = Vec::new();
    for i in 0..n {
        let v = format!("v{i:02}");
        m.apply(Input::Posted(&posted(&v, T0 + i * SECOND, 0.1)), &mut out);
        let views = interaction(
            &format!("views-{i}"),
            &v,
            InteractionKind::View,
            400,
            T0 + i * SECOND,
        );
        m.apply(Input::Interaction(&views), &mut out);
        match i % 3 {
            0 => {
                let likes = interaction(
                    &format!("likes-{i}"),
                    &v,
                    InteractionKind::Like,
                    10,
                    T0 + MINUTE,
                );
                m.apply(Input::Interaction(&likes), &mut out);
            }
            1 => {
                m.apply(Input::Stop(&stop(&v, T0 + 2 * MINUTE)), &mut out);
            }
            _ => {}
        }
    }
    m.advance_to(T0 + 30 * MINUTE + n * SECOND, &mut out);
    out
}

/// Ids as an upstream might name them: `variant-00000042` and so on.
pub fn variant_id(i: usize) -> String {
    format!("variant-{i:08}")
}

/// Personas of the fixtures' variants: a hundred variants each at a
/// million.
pub const PERSONAS: usize = 10_000;

/// A monitor with `n` active sessions posted at T0 (10-minute windows),
/// their variants spread over [`PERSONAS`] personas.
pub fn monitor_with(n: usize) -> Monitor {
    monitor_with_personas(n, PERSONAS)
}

/// [`monitor_with`], the variants spread over `personas` personas.
pub fn monitor_with_personas(n: usize, personas: usize) -> Monitor {
    let mut monitor = Monitor::new(MonitorConfig::default());
    let mut decisions = Vec::new();
    posts(n, personas, |posted| {
        monitor.apply(Input::Posted(posted), &mut decisions);
        decisions.clear();
    });
    monitor.drain_changes();
    monitor
}

/// Shadow policies of `policies` beside a default live policy, with the
/// `n` sessions of [`monitor_with`] each.
pub fn shadows_with(n: usize, policies: &[crate::shadow::ShadowPolicy]) -> crate::shadow::Shadows {
    let configs = crate::shadow::shadow_configs(&MonitorConfig::default(), policies);
    let mut shadows = crate::shadow::Shadows::new(configs);
    let mut decisions = Vec::new();
    posts(n, PERSONAS, |posted| {
        shadows.apply_batch(&[Input::Posted(posted)], &mut decisions);
        decisions.clear();
    });
    shadows.drain_changes();
    shadows
}

/// The posts of [`monitor_with_personas`], each handed to `post`.
fn posts(n: usize, personas: usize, mut post: impl FnMut(&VariantPosted<'_>)) {
    for i in 0..n {
        let id = variant_id(i);
        let posted = VariantPosted {
            variant_id: Cow::Borrowed(&id),
            persona_id: Cow::Owned(format!("persona-{:05}", i % personas.max(1))),
            post_id: Cow::Owned(format!("post-{i:08}")),
            expected_engagement_rate: 0.05,
            posted_at: T0,
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: None,
            metadata: Default::default(),
        };
        post(&posted);
    }
}
