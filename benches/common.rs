//! Workload shared by the benches: a partition with `n` active sessions and
//! a pool of pre-encoded interactions spread uniformly over them.

use std::borrow::Cow;

use earlykill::event::{codec, Contract, Interaction, InteractionKind, Millis, VariantPosted};
use earlykill::monitor::{Input, Monitor, MonitorConfig};

/// 2026-11-23T00:00:00Z.
pub const T0: Millis = 1_795_392_000_000;

/// splitmix64: a deterministic stream of bench data, no dependency needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

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

/// `count` encoded interactions over `n` variants, uniformly at random:
/// 90% views, 10% likes (a healthy 11% rate: nobody is killed, so every
/// event takes the full path), event times within the first minute.
pub fn encoded_interactions(n: usize, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(42);
    (0..count)
        .map(|i| {
            let variant = variant_id((rng.next() % n as u64) as usize);
            let kind = if rng.next() % 10 == 0 {
                InteractionKind::Like
            } else {
                InteractionKind::View
            };
            let interaction = Interaction {
                event_id: Cow::Owned(format!("evt-{i:010}")),
                variant_id: Cow::Owned(variant),
                kind,
                count: 1,
                occurred_at: T0 + (i as Millis * 60_000) / count as Millis,
            };
            codec::encode(Contract::Interaction, &interaction).expect("bench data encodes")
        })
        .collect()
}
