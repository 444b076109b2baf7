//! Throughput of the hot path: decode an interaction from its Avro bytes,
//! fold it into a partition with N active sessions, collect decisions.
//! Run: `cargo bench -p earlykill-core --bench fold`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use earlykill_core::shadow::ShadowPolicy;
use std::borrow::Cow;

use earlykill_core::event::{codec, Contract, Decoder, Interaction, InteractionKind, Millis};
use earlykill_core::monitor::Input;

use earlykill_core::fixtures::*;

/// splitmix64: a deterministic stream of bench data, no dependency needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `count` encoded interactions over `n` variants, uniformly at random:
/// 90% views, 10% likes (a healthy 11% rate: nobody is killed, so every
/// event takes the full path), event times within the first minute.
pub fn encoded_interactions(n: usize, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(42);
    (0..count)
        .map(|i| {
            let variant = variant_id((rng.next_u64() % n as u64) as usize);
            let kind = if rng.next_u64() % 10 == 0 {
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

/// Events folded per measured iteration.
const BATCH: usize = 10_000;
/// Distinct pre-encoded events cycled through (each a random variant).
const POOL: usize = 1 << 20;

fn decode(c: &mut Criterion) {
    let bytes = encoded_interactions(1000, 1).remove(0);
    let decoder = Decoder::new(Contract::Interaction);
    let mut group = c.benchmark_group("decode_interaction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("apache_avro_reference", |b| {
        b.iter(|| {
            let value = decoder.decode_reference_value(&bytes).unwrap();
            let event: Interaction = apache_avro::from_value(&value).unwrap();
            std::hint::black_box(event.count)
        })
    });
    group.bench_function("serde_avro_fast", |b| {
        b.iter(|| std::hint::black_box(decoder.decode::<Interaction>(&bytes).unwrap().count))
    });
    group.finish();
}

/// The start of the next batch in the pool, moving on by one batch and
/// back to the start before the pool runs out.
fn rotate(next: &mut usize) -> usize {
    let start = *next;
    *next = if *next + 2 * BATCH > POOL {
        0
    } else {
        *next + BATCH
    };
    start
}

/// How the bench feeds the monitor.
#[derive(Clone, Copy)]
enum Feed {
    /// Decode an event, `Monitor::apply` it, next: the baseline.
    PerEvent,
    /// Decode a group, then `Monitor::apply_batch` it (prefetching).
    Batched,
}

/// Events decoded before each `apply_batch` call.
const DECODE_GROUP: usize = 256;

fn decode_fold_decide(c: &mut Criterion) {
    let decoder = Decoder::new(Contract::Interaction);
    let mut group = c.benchmark_group("decode_fold_decide");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for n in [1_000usize, 100_000, 1_000_000] {
        let pool = encoded_interactions(n, POOL);
        let mut monitor = monitor_with(n);
        let mut decisions = Vec::new();
        let mut events: Vec<Interaction<'_>> = Vec::with_capacity(DECODE_GROUP);
        let mut next = 0usize;
        for (name, feed) in [("per_event", Feed::PerEvent), ("batched", Feed::Batched)] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_batched(
                    || rotate(&mut next),
                    |start| {
                        let records = &pool[start..start + BATCH];
                        match feed {
                            Feed::PerEvent => {
                                for bytes in records {
                                    let event: Interaction = decoder.decode(bytes).unwrap();
                                    monitor.apply(Input::Interaction(&event), &mut decisions);
                                }
                            }
                            Feed::Batched => {
                                for chunk in records.chunks(DECODE_GROUP) {
                                    events.clear();
                                    events.extend(chunk.iter().map(|b| decoder.decode(b).unwrap()));
                                    let inputs: Vec<Input> =
                                        events.iter().map(Input::Interaction).collect();
                                    monitor.apply_batch(&inputs, &mut decisions, |_, _, _| {});
                                }
                            }
                        }
                        decisions.clear();
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        assert_eq!(monitor.active_sessions(), n, "the workload kills nobody");
    }
    group.finish();
}

/// What shadow policies cost the fold (issue 36): one decode per event,
/// shared, then the live `apply_batch` and each policy's, against the live
/// fold alone in the same run.
fn shadow_cost(c: &mut Criterion) {
    let decoder = Decoder::new(Contract::Interaction);
    let mut group = c.benchmark_group("shadow_cost");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let candidate: ShadowPolicy = "candidate:kill-threshold=0.4".parse().expect("a policy");
    for n in [100_000usize, 1_000_000] {
        let pool = encoded_interactions(n, POOL);
        for policies in [0usize, 1, 2] {
            let set: Vec<ShadowPolicy> = (0..policies)
                .map(|i| ShadowPolicy {
                    name: format!("p{i}"),
                    ..candidate.clone()
                })
                .collect();
            let mut monitor = monitor_with(n);
            let mut shadows = shadows_with(n, &set);
            let (mut decisions, mut shadow_decisions) = (Vec::new(), Vec::new());
            let mut events: Vec<Interaction<'_>> = Vec::with_capacity(DECODE_GROUP);
            let mut next = 0usize;
            group.bench_with_input(
                BenchmarkId::new(format!("shadows_{policies}"), n),
                &n,
                |b, _| {
                    b.iter_batched(
                        || rotate(&mut next),
                        |start| {
                            for chunk in pool[start..start + BATCH].chunks(DECODE_GROUP) {
                                events.clear();
                                events.extend(chunk.iter().map(|b| decoder.decode(b).unwrap()));
                                let inputs: Vec<Input> =
                                    events.iter().map(Input::Interaction).collect();
                                monitor.apply_batch(&inputs, &mut decisions, |_, _, _| {});
                                shadows.apply_batch(&inputs, &mut shadow_decisions);
                            }
                            decisions.clear();
                            shadow_decisions.clear();
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, decode, decode_fold_decide, shadow_cost);
criterion_main!(benches);
