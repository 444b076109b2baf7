//! `earlykill backtest`'s folding: 10 M recorded events (8 partitions,
//! 100 k variants, interactions over their first 10 minutes) folded once
//! per parameter set, for 1, 9 and 27 sets, on 1 and 2 threads. Reading
//! the topics is not measured here (see the real-broker bench).
//!
//! Run: `cargo bench --bench backtest` (`BACKTEST_EVENTS`, `BACKTEST_RUNS`
//! to change the size and the runs per figure; the median is reported).

use std::borrow::Cow;
use std::time::Instant;

use earlykill::backtest::read::merge;
use earlykill::backtest::{grid, run, Event, Options};
use earlykill_core::event::{Interaction, InteractionKind, Millis, VariantPosted};
use earlykill_core::monitor::MonitorConfig;

const T0: Millis = 1_795_392_000_000;
const PARTITIONS: usize = 8;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn histories(events: usize) -> Vec<earlykill::backtest::History> {
    let variants = (events / 100).max(1);
    let mut rng = Rng(7);
    let mut posts: Vec<Vec<Event>> = vec![Vec::new(); PARTITIONS];
    let mut interactions: Vec<Vec<Event>> = vec![Vec::new(); PARTITIONS];
    // Posts one every 50 ms of event time; each variant's interactions in
    // its first 10 minutes; a third of the variants engage poorly.
    for v in 0..variants {
        let id = format!("variant-{v:08}");
        let posted_at = T0 + v as Millis * 50;
        posts[v % PARTITIONS].push(Event::Posted(VariantPosted {
            variant_id: Cow::Owned(id.clone()),
            persona_id: Cow::Owned(format!("persona-{}", v % 1000)),
            post_id: Cow::Owned(format!("post-{v}")),
            expected_engagement_rate: 0.1,
            posted_at,
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: None,
            metadata: Default::default(),
        }));
        let like_every = if v % 3 == 0 { 40 } else { 8 };
        for n in 0..99u64 {
            let at = posted_at + (rng.next() % 600_000) as Millis;
            let kind = if n % like_every == 0 {
                InteractionKind::Like
            } else {
                InteractionKind::View
            };
            interactions[v % PARTITIONS].push(Event::Interaction(Interaction {
                event_id: Cow::Owned(format!("{id}-{n}")),
                variant_id: Cow::Owned(id.clone()),
                kind,
                count: 1,
                occurred_at: at,
            }));
        }
    }
    posts
        .into_iter()
        .zip(interactions)
        .enumerate()
        .map(|(p, (posted, mut interactions))| {
            interactions.sort_by_key(Event::time);
            merge(p as i32, [posted, interactions, Vec::new()])
        })
        .collect()
}

fn main() {
    let events: usize = std::env::var("BACKTEST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let runs: usize = std::env::var("BACKTEST_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let start = Instant::now();
    let histories = histories(events);
    let total: usize = histories.iter().map(|h| h.events.len()).sum();
    println!(
        "{total} events in {PARTITIONS} partitions, built in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let thresholds = [0.3, 0.4, 0.5];
    let minimums = [5, 10, 20];
    let timeouts = [10, 5, 15];
    for (label, sets) in [
        ("1 set", grid(&[0.5], &[10], &[10])),
        ("9 sets", grid(&thresholds, &minimums, &[10])),
        ("27 sets", grid(&thresholds, &minimums, &timeouts)),
    ] {
        let options = Options {
            sets: sets.clone(),
            base: MonitorConfig::default(),
            close_at: None,
            truth_threshold: 0.5,
        };
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let mut times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    let reports = pool.install(|| run(&histories, &options));
                    std::hint::black_box(reports);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let folded = (total * sets.len()) as f64;
            println!(
                "{label:>8}, {threads} thread(s): median {median:6.2} s of {runs}; \
                 {:6.2} M set-events/s, {:5.2} M per core",
                folded / median / 1e6,
                folded / median / 1e6 / threads as f64
            );
        }
    }
}
