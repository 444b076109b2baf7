//! A flood of bad input between valid records: thousands of malformed
//! records of every dead-letter kind, interleaved with the events of
//! variants that must still be killed or stopped. Every valid decision is
//! made once, every bad record reaches the dead-letter topic unchanged with
//! its reason, and the dead-letter metric counts exactly those records.

mod common;

use std::collections::BTreeMap;

use common::kafka::{Kafka, Running};
use common::{interaction, posted, stop, MINUTE, SECOND};
use earlykill::event::codec::{encode, MARKER};
use earlykill::event::{
    Contract, Interaction, InteractionKind, Millis, Rejection, StopMonitoring, VariantPosted,
};
use earlykill::monitor::{Input, Monitor};

const VARIANTS: usize = 40;
const BAD_PER_VALID_VARIANT: usize = 75;

/// One valid event.
enum Valid {
    Posted(VariantPosted<'static>),
    Interaction(Interaction<'static>),
    Stop(StopMonitoring<'static>),
}

/// Where a record came from and what it held: topic, key, value.
type Source = (String, Option<Vec<u8>>, Option<Vec<u8>>);

/// One bad record: topic, key, value, and the reason it must get.
struct Bad {
    topic: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    kind: &'static str,
}

/// The `n`th bad record, cycling through every rejection kind with varied
/// contents; `t` is a valid event time.
fn bad(kafka: &Kafka, n: usize, t: Millis) -> Bad {
    let topics = &kafka.config.topics;
    let id = format!("bad-{n}");
    let key = Some(id.clone().into_bytes());
    let good_post = encode(Contract::VariantPosted, &posted(&id, t, 0.5)).unwrap();
    let kind = Rejection::KINDS[n % Rejection::KINDS.len()];
    let (topic, key, value) = match kind {
        "empty_value" => (&topics.commands, key, None),
        "truncated" => (&topics.posted, key, Some(good_post[..1 + n % 9].to_vec())),
        "bad_marker" => (
            &topics.interactions,
            key,
            Some(format!("{{\"variant_id\": \"{id}\", \"n\": {n}}}").into_bytes()),
        ),
        "unknown_schema" => (
            &topics.commands,
            key,
            Some(
                [
                    MARKER.as_slice(),
                    &(n as u64).to_le_bytes(),
                    &good_post[10..],
                ]
                .concat(),
            ),
        ),
        "malformed" => (
            &topics.posted,
            key,
            Some(good_post[..good_post.len() - 1 - n % 8].to_vec()),
        ),
        "empty_field" => {
            let mut p = posted(&id, t, 0.5);
            p.persona_id = "".into();
            (
                &topics.posted,
                key,
                Some(encode(Contract::VariantPosted, &p).unwrap()),
            )
        }
        "oversized_field" => {
            let mut s = stop(&id, t);
            s.reason = "x".repeat(5000 + n).into();
            (
                &topics.commands,
                key,
                Some(encode(Contract::StopMonitoring, &s).unwrap()),
            )
        }
        "out_of_range" => {
            let i = interaction(&id, &id, InteractionKind::Like, -(n as i64) - 1, t);
            (
                &topics.interactions,
                key,
                Some(encode(Contract::Interaction, &i).unwrap()),
            )
        }
        "future_timestamp" => {
            let i = interaction(
                &id,
                &id,
                InteractionKind::View,
                1,
                t + 30 * 24 * 60 * MINUTE,
            );
            (
                &topics.interactions,
                key,
                Some(encode(Contract::Interaction, &i).unwrap()),
            )
        }
        "key_mismatch" => (
            &topics.posted,
            Some(b"someone-else".to_vec()),
            Some(good_post),
        ),
        "missing_key" => (&topics.posted, None, Some(good_post)),
        other => panic!("no bad record for kind {other}: add one"),
    };
    Bad {
        topic: topic.clone(),
        key,
        value,
        kind,
    }
}

#[test]
fn a_flood_of_bad_records_loses_no_decision_and_dead_letters_each_one() {
    let prometheus = earlykill::telemetry::prometheus();
    let kafka = Kafka::new(3);
    // Event times a day ahead, so no window closes on the wall clock while
    // the flood is read; the future-timestamp records are a month ahead.
    let mut config = kafka.processor_config("flood");
    config.limits.max_future_skew_ms = Some(2 * 24 * 60 * MINUTE);
    let t = chrono::Utc::now().timestamp_millis() + 24 * 60 * MINUTE;

    let mut valid = Vec::new();
    let mut bads = Vec::new();
    for v in 0..VARIANTS {
        let id = format!("v-{v}");
        let at = t + v as Millis * SECOND;
        let p = posted(&id, at, 0.5);
        let views = interaction(
            &format!("{id}-views"),
            &id,
            InteractionKind::View,
            100,
            at + SECOND,
        );
        kafka.post(&p);
        kafka.interact(&views);
        valid.push((at, 0, Valid::Posted(p)));
        valid.push((at + SECOND, 1, Valid::Interaction(views)));
        for b in 0..BAD_PER_VALID_VARIANT {
            let record = bad(&kafka, v * BAD_PER_VALID_VARIANT + b, at);
            kafka.send_raw(
                &record.topic,
                record.key.as_deref(),
                record.value.as_deref(),
                &[],
            );
            bads.push(record);
            if b % 15 == 0 && v % 2 == 0 {
                // Even variants get liked to death between the bad records.
                for n in 0..2 {
                    let like = interaction(
                        &format!("{id}-like-{b}-{n}"),
                        &id,
                        InteractionKind::Like,
                        1,
                        at + 2 * SECOND + b as Millis,
                    );
                    kafka.interact(&like);
                    valid.push((like.occurred_at, 1, Valid::Interaction(like)));
                }
            }
        }
        if v % 2 == 1 {
            let s = stop(&id, at + 3 * SECOND);
            kafka.stop(&s);
            valid.push((s.requested_at, 2, Valid::Stop(s)));
        }
    }
    kafka.flush();
    // The oracle: the pure fold in the merge's order (event time, then
    // posted, interactions, commands). One monitor decides as one per
    // partition would: a session's decisions depend on its own events only.
    valid.sort_by_key(|(time, rank, _)| (*time, *rank));
    let mut oracle = Monitor::new(config.monitor);
    let mut expected = Vec::new();
    for (_, _, event) in &valid {
        let input = match event {
            Valid::Posted(p) => Input::Posted(p),
            Valid::Interaction(i) => Input::Interaction(i),
            Valid::Stop(s) => Input::Stop(s),
        };
        oracle.apply(input, &mut expected);
    }
    let by_kind = expected.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.kind.as_str()).or_insert(0) += 1;
        m
    });
    assert_eq!(
        by_kind,
        BTreeMap::from([
            ("killed", VARIANTS / 2),
            ("started", VARIANTS),
            ("stopped", VARIANTS / 2)
        ]),
        "the valid traffic kills half the variants and stops the rest"
    );

    let processor = Running::start(config);
    processor.wait_committed(&kafka.input_ends());

    // Every valid decision, once, as the fold makes it.
    let decisions = kafka.decisions(expected.len());
    assert_eq!(decisions.len(), expected.len());
    let mut found: BTreeMap<&str, _> = decisions
        .iter()
        .map(|d| (d.decision_id.as_str(), d))
        .collect();
    for e in &expected {
        let d = found
            .remove(e.decision_id.as_str())
            .unwrap_or_else(|| panic!("decision {} missing", e.decision_id));
        assert_eq!(d, e);
    }

    // Every bad record dead-lettered unchanged, with its reason.
    let letters = kafka.read_until(&kafka.config.topics.dead_letters, |r| r.len() >= bads.len());
    assert_eq!(letters.len(), bads.len());
    let mut letters_by_source: BTreeMap<Source, Vec<&str>> = BTreeMap::new();
    for l in &letters {
        letters_by_source
            .entry((
                l.headers["earlykill.source.topic"].clone(),
                l.key.clone(),
                l.value.clone(),
            ))
            .or_default()
            .push(l.headers["earlykill.error.kind"].as_str());
        assert!(!l.headers["earlykill.error.message"].is_empty());
    }
    let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for b in &bads {
        let kinds = letters_by_source
            .get_mut(&(b.topic.clone(), b.key.clone(), b.value.clone()))
            .unwrap_or_else(|| panic!("a {} record on {} was not dead-lettered", b.kind, b.topic));
        let at = kinds
            .iter()
            .position(|k| *k == b.kind)
            .unwrap_or_else(|| panic!("a {} record was dead-lettered as {kinds:?}", b.kind));
        kinds.swap_remove(at);
        *per_kind.entry(b.kind).or_default() += 1;
    }
    assert_eq!(per_kind.len(), Rejection::KINDS.len(), "every kind flooded");

    // The status and the metric count exactly these records.
    assert_eq!(processor.status.get().dead_letters, bads.len() as u64);
    let metrics = prometheus.render();
    for (kind, count) in &per_kind {
        let counted: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with(earlykill::telemetry::DEAD_LETTERS_TOTAL)
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(counted, *count as f64, "{kind} in the metric:\n{metrics}");
    }
    processor.stop().expect("clean stop");
}
