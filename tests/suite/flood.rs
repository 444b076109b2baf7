//! A flood of bad input between valid records: thousands of malformed
//! records of every dead-letter kind, interleaved with the events of
//! variants that must still be killed or stopped. Every valid decision is
//! made once, every bad record reaches the dead-letter topic unchanged with
//! its reason, and the dead-letter metric counts exactly those records.

use std::collections::BTreeMap;

use crate::common::kafka::{Kafka, Running};
use crate::common::{interaction, posted, stop, MINUTE, SECOND};
use earlykill_core::event::codec::{encode, MARKER};
use earlykill_core::event::{
    Contract, Interaction, InteractionKind, Millis, Rejection, StopMonitoring, VariantPosted,
};
use earlykill_core::monitor::{Input, Monitor};

const VARIANTS: usize = 40;

/// Every rejection kind of a record on its own; `session_limit` depends on
/// the partition's state and has its own test below.
const INPUT_KINDS: [&str; 13] = [
    "empty_value",
    "truncated",
    "bad_marker",
    "unknown_schema",
    "unknown_schema_id",
    "malformed",
    "empty_field",
    "oversized_field",
    "out_of_range",
    "future_timestamp",
    "control_character",
    "key_mismatch",
    "missing_key",
];
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
    let kind = INPUT_KINDS[n % INPUT_KINDS.len()];
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
        "unknown_schema_id" => (
            &topics.interactions,
            key,
            // Schema Registry framing, and no registry configured.
            Some([&[0u8][..], &(n as u32).to_be_bytes(), &good_post[10..]].concat()),
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
        "control_character" => {
            let mut s = stop(&id, t);
            s.reason = format!("{}\u{0}{}", "r".repeat(n % 5), n).into();
            (
                &topics.commands,
                key,
                Some(encode(Contract::StopMonitoring, &s).unwrap()),
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
    assert_eq!(per_kind.len(), INPUT_KINDS.len(), "every kind flooded");
    let mut all: Vec<&str> = INPUT_KINDS.to_vec();
    all.push("session_limit");
    all.sort_unstable();
    let mut kinds = Rejection::KINDS.to_vec();
    kinds.sort_unstable();
    assert_eq!(
        all, kinds,
        "every rejection kind is flooded or tested below"
    );

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

/// Records at the limits: a value near the broker's message size, a huge
/// key, a flood of interactions held for one variant with the longest event
/// ids, posts beyond the partition's session limit. None of them may stop
/// the processor; each dead letter fits, cut where it must be and saying
/// the full size.
#[test]
fn records_at_the_limits_never_stop_the_processor_and_every_dead_letter_fits() {
    let kafka = Kafka::new(1);
    let mut config = kafka.processor_config("limits");
    config.limits.max_future_skew_ms = Some(2 * 24 * 60 * MINUTE);
    config.monitor.max_sessions = 3;
    let t = chrono::Utc::now().timestamp_millis() + 24 * 60 * MINUTE;
    let topics = kafka.config.topics.clone();

    // 4,000 interactions with 256-byte event ids for a variant posted
    // later, committed before the post arrives: held all in one changelog
    // record they would be 1.1 MB, over the producer's 1 MB limit.
    let flood = "held-flood";
    for n in 0..4_000 {
        let id = format!("{n:06}{}", "e".repeat(250));
        kafka.interact(&interaction(&id, flood, InteractionKind::View, 1, t));
    }
    kafka.flush();
    let processor = Running::start(config.clone());
    processor.wait_committed(&kafka.input_ends());
    assert!(
        processor.status.get().phase.is_running(),
        "the held flood is committed"
    );
    kafka.post(&posted(flood, t + SECOND, 0.5));
    // Four more posts: two start (three sessions in all), two are refused.
    for v in 0..4 {
        kafka.post(&posted(&format!("v-{v}"), t + 2 * SECOND + v, 0.5));
    }
    // A value of 900,000 bytes (not Avro), and a post keyed by a
    // 600,000-byte non-UTF-8 key.
    let huge_value = vec![0xAB; 900_000];
    kafka.send_raw(&topics.posted, Some(b"huge-value"), Some(&huge_value), &[]);
    let huge_key = vec![0xFF; 600_000];
    let keyed = encode(
        Contract::VariantPosted,
        &posted("v-key", t + 3 * SECOND, 0.5),
    )
    .unwrap();
    kafka.send_raw(&topics.posted, Some(&huge_key), Some(&keyed), &[]);
    kafka.flush();
    processor.wait_committed(&kafka.input_ends());
    let decisions = kafka.decisions(3);
    let started: Vec<&str> = decisions
        .iter()
        .filter(|d| d.kind == earlykill_core::event::DecisionKind::Started)
        .map(|d| d.variant_id.as_str())
        .collect();
    assert_eq!(started, [flood, "v-0", "v-1"]);
    let status = processor.status.get();
    assert!(status.phase.is_running(), "the processor is still running");

    let letters = kafka.read_until(&topics.dead_letters, |r| r.len() >= 4);
    assert_eq!(letters.len(), 4);
    let kinds: Vec<&str> = letters
        .iter()
        .map(|l| l.headers["earlykill.error.kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "session_limit",
            "session_limit",
            "bad_marker",
            "key_mismatch"
        ]
    );
    let value_max = earlykill::processor::dead_letter_value_max(config.message_max_bytes);
    let cut_value = &letters[2];
    assert_eq!(cut_value.value.as_deref(), Some(&huge_value[..value_max]));
    assert_eq!(cut_value.headers["earlykill.source.value_size"], "900000");
    let cut_key = &letters[3];
    assert_eq!(cut_key.key.as_deref().map(<[u8]>::len), Some(4096));
    assert_eq!(cut_key.headers["earlykill.source.key_size"], "600000");
    assert!(cut_key.headers["earlykill.error.message"].len() <= 1024);
    assert_eq!(cut_key.value.as_deref(), Some(&keyed[..]));
    processor.stop().expect("clean stop");

    // The held flood: one variant held at most hold-per-variant of them,
    // applied when its post came.
    let restarted = Running::start(config.clone());
    restarted.wait_for_partitions(1);
    let live = restarted
        .sessions
        .get(flood)
        .expect("lookup")
        .expect("live session");
    assert_eq!(live.state.views, config.monitor.hold_per_variant as i64);
    restarted.stop().expect("clean stop");
}
