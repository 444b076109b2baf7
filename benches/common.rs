//! Workload shared by the benches: a partition with `n` active sessions.

use std::borrow::Cow;

use earlykill::event::{Millis, VariantPosted};
use earlykill::monitor::{Input, Monitor, MonitorConfig};

/// 2026-11-23T00:00:00Z.
pub const T0: Millis = 1_795_392_000_000;

/// Ids as an upstream might name them: `variant-00000042` and so on.
pub fn variant_id(i: usize) -> String {
    format!("variant-{i:08}")
}

/// A monitor with `n` active sessions posted at T0 (10-minute windows).
pub fn monitor_with(n: usize) -> Monitor {
    let mut monitor = Monitor::new(MonitorConfig::default());
    let mut decisions = Vec::new();
    for i in 0..n {
        let id = variant_id(i);
        let posted = VariantPosted {
            variant_id: Cow::Borrowed(&id),
            persona_id: Cow::Owned(format!("persona-{:05}", i % 10_000)),
            post_id: Cow::Owned(format!("post-{i:08}")),
            expected_engagement_rate: 0.05,
            posted_at: T0,
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: None,
            metadata: Default::default(),
        };
        monitor.apply(Input::Posted(&posted), &mut decisions);
        decisions.clear();
        // The processor drains the changelog once per transaction.
        if i % 10_000 == 0 {
            monitor.drain_changes();
        }
    }
    monitor.drain_changes();
    monitor
}
