//! The simulated upstream, as a pure iterator: variants posted over event
//! time, each watched by a stream of views, some of which turn into
//! engagements at the variant's true rate. No clock and no I/O: the same
//! seed gives the same events, in event-time order.
//!
//! A *poor* performer engages at 10–40% of its expected rate, so the rule
//! (below half the expected rate) kills it once it has its minimum
//! interactions; a *good* one engages at 80–160% and normally times out. A
//! small share of variants is stopped by a command partway through.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use earlykill_core::event::{Interaction, InteractionKind, Millis, StopMonitoring, VariantPosted};
use earlykill_core::monitor::rule::MINUTE_MS;

/// The shape of the simulated traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficConfig {
    /// Variants to post; `None` posts until stopped.
    pub variants: Option<u64>,
    /// Variants posted per second of event time.
    pub posts_per_second: f64,
    /// Share of variants that engage at well below their expected rate.
    pub poor_fraction: f64,
    /// Share of variants stopped by a command before their window ends.
    pub stop_fraction: f64,
    /// Views per second of event time for one variant: each variant draws
    /// its own rate uniformly from this range.
    pub views_per_second: (f64, f64),
    /// Expected engagement rates, drawn uniformly from this range.
    pub expected_rate: (f64, f64),
    /// The window each variant is posted with (its traffic stops there).
    pub timeout_minutes: u32,
    /// Prefix of the variant ids, so that runs do not collide.
    pub id_prefix: String,
    /// The seed of every random draw.
    pub seed: u64,
    /// Event time of the first post.
    pub start: Millis,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            variants: Some(1000),
            posts_per_second: 2.0,
            poor_fraction: 0.3,
            stop_fraction: 0.02,
            views_per_second: (1.0, 6.0),
            expected_rate: (0.02, 0.1),
            timeout_minutes: 10,
            id_prefix: "v-".into(),
            seed: 1,
            start: 0,
        }
    }
}

/// One generated input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    /// A variant was posted.
    Posted(VariantPosted<'static>),
    /// A view or an engagement.
    Interaction(Interaction<'static>),
    /// A stop command.
    Stop(StopMonitoring<'static>),
}

impl Generated {
    /// The event's time.
    pub fn time(&self) -> Millis {
        match self {
            Generated::Posted(p) => p.posted_at,
            Generated::Interaction(i) => i.occurred_at,
            Generated::Stop(s) => s.requested_at,
        }
    }

    /// The variant it is about.
    pub fn variant_id(&self) -> &str {
        match self {
            Generated::Posted(p) => &p.variant_id,
            Generated::Interaction(i) => &i.variant_id,
            Generated::Stop(s) => &s.variant_id,
        }
    }
}

/// A variant's hidden truth.
struct Variant {
    id: String,
    /// The rate its views actually turn into engagements.
    true_rate: f64,
    views_per_ms: f64,
    ends_at: Millis,
    events: u64,
}

/// What is due next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Post,
    View(usize),
    Stop(usize),
}

/// The traffic, in event-time order.
pub struct Traffic {
    config: TrafficConfig,
    rng: SmallRng,
    variants: Vec<Option<Variant>>,
    queue: BinaryHeap<Reverse<(Millis, u64, Due)>>,
    ready: VecDeque<Generated>,
    posted: u64,
    seq: u64,
}

const ENGAGEMENTS: [InteractionKind; 5] = [
    InteractionKind::Like,
    InteractionKind::Reply,
    InteractionKind::Repost,
    InteractionKind::Share,
    InteractionKind::Save,
];

impl Traffic {
    /// The traffic `config` describes.
    pub fn new(config: TrafficConfig) -> Traffic {
        let mut traffic = Traffic {
            rng: SmallRng::seed_from_u64(config.seed),
            variants: Vec::new(),
            queue: BinaryHeap::new(),
            ready: VecDeque::new(),
            posted: 0,
            seq: 0,
            config,
        };
        if traffic.config.variants != Some(0) {
            let start = traffic.config.start;
            traffic.schedule(start, Due::Post);
        }
        traffic
    }

    fn schedule(&mut self, at: Millis, due: Due) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, due)));
    }

    /// Exponentially distributed gap for `per_ms` events per millisecond.
    fn gap(&mut self, per_ms: f64) -> Millis {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        ((-u.ln() / per_ms).round() as Millis).max(1)
    }

    fn post(&mut self, at: Millis) {
        let c = &self.config;
        let index = self.variants.len();
        let id = format!("{}{:08}", c.id_prefix, self.posted);
        self.posted += 1;
        let expected = self.rng.random_range(c.expected_rate.0..=c.expected_rate.1);
        let poor = self.rng.random_bool(c.poor_fraction.clamp(0.0, 1.0));
        let factor = if poor {
            self.rng.random_range(0.1..0.4)
        } else {
            self.rng.random_range(0.8..1.6)
        };
        let views_per_ms = self
            .rng
            .random_range(c.views_per_second.0..=c.views_per_second.1)
            / 1000.0;
        let window = Millis::from(c.timeout_minutes) * MINUTE_MS;
        let stop = self.rng.random_bool(c.stop_fraction.clamp(0.0, 1.0));
        self.ready.push_back(Generated::Posted(VariantPosted {
            variant_id: Cow::Owned(id.clone()),
            persona_id: Cow::Owned(format!("persona-{}", self.posted % 97)),
            post_id: Cow::Owned(format!("post-{id}")),
            expected_engagement_rate: expected,
            posted_at: at,
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: Some(c.timeout_minutes as i32),
            metadata: BTreeMap::from([(
                "performer".to_owned(),
                if poor { "poor" } else { "good" }.to_owned(),
            )]),
        }));
        self.variants.push(Some(Variant {
            id,
            true_rate: (expected * factor).min(1.0),
            views_per_ms,
            ends_at: at + window,
            events: 0,
        }));
        let first_view = at + self.gap(views_per_ms);
        self.schedule(first_view, Due::View(index));
        if stop {
            let after = (window as f64 * self.rng.random_range(0.2..0.8)) as Millis;
            self.schedule(at + after, Due::Stop(index));
        }
        if self.config.variants.is_none_or(|n| self.posted < n) {
            let next = at + self.gap(self.config.posts_per_second / 1000.0);
            self.schedule(next, Due::Post);
        }
    }

    fn view(&mut self, at: Millis, index: usize) {
        let Some(variant) = self.variants[index].as_mut() else {
            return;
        };
        if at >= variant.ends_at {
            // The window is over: the variant's traffic stops here.
            self.variants[index] = None;
            return;
        }
        variant.events += 1;
        let (id, n, rate, per_ms) = (
            variant.id.clone(),
            variant.events,
            variant.true_rate,
            variant.views_per_ms,
        );
        self.ready
            .push_back(interaction(&id, n, InteractionKind::View, at));
        if self.rng.random_bool(rate) {
            let kind = ENGAGEMENTS[self.rng.random_range(0..ENGAGEMENTS.len())];
            self.ready.push_back(interaction(&id, n, kind, at));
        }
        let next = at + self.gap(per_ms);
        self.schedule(next, Due::View(index));
    }

    fn stop(&mut self, at: Millis, index: usize) {
        if let Some(variant) = &self.variants[index] {
            self.ready.push_back(Generated::Stop(StopMonitoring {
                variant_id: Cow::Owned(variant.id.clone()),
                reason: Cow::Borrowed("simulated manual stop"),
                requested_by: Cow::Borrowed("earlykill-generate"),
                requested_at: at,
            }));
        }
    }

    /// Variants posted so far.
    pub fn posted(&self) -> u64 {
        self.posted
    }
}

fn interaction(variant_id: &str, n: u64, kind: InteractionKind, at: Millis) -> Generated {
    let tag = if kind.is_view() { "v" } else { "e" };
    Generated::Interaction(Interaction {
        event_id: Cow::Owned(format!("{variant_id}/{tag}{n}")),
        variant_id: Cow::Owned(variant_id.to_owned()),
        kind,
        count: 1,
        occurred_at: at,
    })
}

impl Iterator for Traffic {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let Reverse((at, _, due)) = self.queue.pop()?;
            match due {
                Due::Post => self.post(at),
                Due::View(index) => self.view(at, index),
                Due::Stop(index) => self.stop(at, index),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TrafficConfig {
        TrafficConfig {
            variants: Some(50),
            posts_per_second: 5.0,
            timeout_minutes: 2,
            start: 1_000_000,
            ..TrafficConfig::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let a: Vec<_> = Traffic::new(small()).collect();
        let b: Vec<_> = Traffic::new(small()).collect();
        assert!(!a.is_empty());
        assert_eq!(a, b);
        let c: Vec<_> = Traffic::new(TrafficConfig { seed: 2, ..small() }).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn events_come_in_event_time_order_within_each_variants_window() {
        let mut last = Millis::MIN;
        let mut posted_at = BTreeMap::new();
        for event in Traffic::new(small()) {
            assert!(event.time() >= last, "out of order: {event:?}");
            last = event.time();
            match &event {
                Generated::Posted(p) => {
                    assert!(posted_at
                        .insert(p.variant_id.to_string(), p.posted_at)
                        .is_none());
                }
                other => {
                    let start = posted_at[other.variant_id()];
                    assert!(other.time() >= start);
                    assert!(other.time() < start + 2 * MINUTE_MS);
                }
            }
        }
        assert_eq!(posted_at.len(), 50);
    }

    #[test]
    fn poor_performers_engage_below_half_their_expected_rate() {
        let mut expected = BTreeMap::new();
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for event in Traffic::new(TrafficConfig {
            variants: Some(200),
            ..small()
        }) {
            match event {
                Generated::Posted(p) => {
                    let poor = p.metadata["performer"] == "poor";
                    expected.insert(p.variant_id.to_string(), (poor, p.expected_engagement_rate));
                }
                Generated::Interaction(i) => {
                    let c = counts.entry(i.variant_id.to_string()).or_default();
                    if i.kind.is_view() {
                        c.1 += 1;
                    } else {
                        c.0 += 1;
                    }
                }
                Generated::Stop(_) => {}
            }
        }
        let rate = |poor: bool| {
            let (mut engagements, mut views) = (0.0, 0.0);
            for (id, (p, er)) in &expected {
                if *p == poor {
                    let (e, v) = counts.get(id).copied().unwrap_or_default();
                    engagements += e as f64 / er;
                    views += v as f64;
                }
            }
            engagements / views
        };
        // Engagements per view, in units of each variant's expected rate.
        assert!(rate(true) < 0.5, "poor: {}", rate(true));
        assert!(rate(false) > 0.8, "good: {}", rate(false));
    }
}
