//! Mutation fuzzing of every decoder earlykill runs on bytes it did not
//! write itself: the three input topics (with validation), the decisions
//! topic the projector reads and the changelog a restore reads.
//!
//! The corpus is valid records (generated, so every field and every
//! interaction kind is covered); each case applies a few random mutations
//! (bit flips, byte overwrites, truncation, insertion, duplication and
//! splicing with another record) and checks that decoding returns instead
//! of panicking, and that an input record either reaches the fold keyed by
//! its variant or is rejected with one of the dead-letter reasons.
//! `PROPTEST_CASES` makes a run longer; RELIABILITY.md reports a long one.

use earlykill_core::event::codec::{self, Decoder};
use earlykill_core::event::validate::{self, Limits};
use earlykill_core::event::{
    ChangelogRecord, Contract, Decoded, InputDecoders, InputOffsets, InputTopic, InteractionKind,
    MonitoringDecision, Rejection,
};
use earlykill_core::monitor::{Input, Monitor, MonitorConfig};
use proptest::prelude::*;

use earlykill_core::fixtures::*;

/// One valid record of `topic`, keyed by its variant.
fn valid_input() -> impl Strategy<Value = (InputTopic, Vec<u8>, Vec<u8>)> {
    let id = || "[a-z0-9-]{1,24}".prop_map(String::from);
    // Valid at T0: up to the default future skew ahead.
    let time = T0 - 60 * MINUTE..=T0 + validate::DEFAULT_MAX_FUTURE_SKEW_MS;
    prop_oneof![
        (
            id(),
            time.clone(),
            0.0001f64..=1.0,
            proptest::option::of(0.01f64..=0.99)
        )
            .prop_map(|(v, at, rate, threshold)| {
                let mut p = posted(&v, at, rate);
                p.kill_threshold = threshold;
                p.min_interactions = Some(3);
                p.metadata.insert("campaign".into(), "c-1".into());
                let bytes = codec::encode(Contract::VariantPosted, &p).unwrap();
                (InputTopic::Posted, v.into_bytes(), bytes)
            }),
        (
            id(),
            id(),
            proptest::sample::select(InteractionKind::ALL.to_vec()),
            0i64..10_000,
            time.clone()
        )
            .prop_map(|(e, v, kind, count, at)| {
                let i = interaction(&e, &v, kind, count, at);
                let bytes = codec::encode(Contract::Interaction, &i).unwrap();
                (InputTopic::Interactions, v.into_bytes(), bytes)
            }),
        (id(), time).prop_map(|(v, at)| {
            let bytes = codec::encode(Contract::StopMonitoring, &stop(&v, at)).unwrap();
            (InputTopic::Commands, v.into_bytes(), bytes)
        }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Repeats `len` bytes from `at` (a length prefix now points elsewhere).
    Duplicate(usize, usize),
    /// Replaces the tail from `at` with the other record's tail from `from`.
    Splice(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (at, any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        at.prop_map(Mutation::Truncate),
        (
            at,
            proptest::collection::vec(
                prop_oneof![
                    Just(0x00u8),
                    Just(0x7f),
                    Just(0x80),
                    Just(0xff),
                    any::<u8>()
                ],
                1..12
            )
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (at, 1usize..16).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (at, at).prop_map(|(i, j)| Mutation::Splice(i, j)),
    ]
}

fn mutate(mut bytes: Vec<u8>, other: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::FlipBit(i, b) if len > 0 => bytes[i % len] ^= 1 << b,
            Mutation::Set(i, v) if len > 0 => bytes[i % len] = *v,
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            Mutation::Insert(i, v) => {
                let at = i % (len + 1);
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let at = i % len;
                let copy: Vec<u8> = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, copy);
            }
            Mutation::Splice(i, j) if !other.is_empty() => {
                bytes.truncate(i % (len + 1));
                bytes.extend_from_slice(&other[j % other.len()..]);
            }
            _ => {}
        }
    }
    bytes
}

fn check(
    topic: InputTopic,
    key: &[u8],
    result: Result<Decoded<'_>, Rejection>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(decoded) => {
            prop_assert_eq!(decoded.variant_id().as_bytes(), key);
            // Nothing that reaches the fold (and so the decisions and the
            // table) carries a control character: PostgreSQL refuses U+0000
            // in text and jsonb.
            let texts: Vec<&str> = match &decoded {
                Decoded::Posted(p) => [&*p.variant_id, &*p.persona_id, &*p.post_id]
                    .into_iter()
                    .chain(
                        p.metadata
                            .iter()
                            .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
                    )
                    .collect(),
                Decoded::Interaction(i) => vec![&*i.variant_id, &*i.event_id],
                Decoded::Stop(c) => vec![&*c.variant_id, &*c.reason, &*c.requested_by],
            };
            for text in texts {
                prop_assert!(
                    !text.contains(|c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
                    "{:?} reached the fold",
                    text
                );
            }
        }
        Err(rejection) => {
            prop_assert!(
                Rejection::KINDS.contains(&rejection.kind),
                "{:?}: unknown reason {}",
                topic,
                rejection
            );
            prop_assert!(!rejection.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(3000)))]

    #[test]
    fn mutated_input_records_decode_or_get_a_dead_letter_reason(
        (topic, key, bytes) in valid_input(),
        (_, _, other) in valid_input(),
        mutations in proptest::collection::vec(mutation(), 1..5),
        as_topic in proptest::sample::select(InputTopic::ALL.to_vec()),
    ) {
        let decoders = InputDecoders::default();
        let limits = Limits::default();
        // The unmutated record is valid: the corpus is what it claims.
        let valid = decoders.decode(topic, Some(&key), Some(&bytes), &limits, T0);
        prop_assert!(valid.is_ok(), "corpus record rejected: {:?}", valid.err());
        let mutated = mutate(bytes, &other, &mutations);
        check(topic, &key, decoders.decode(topic, Some(&key), Some(&mutated), &limits, T0))?;
        // The same bytes on a topic they do not belong to.
        check(as_topic, &key, decoders.decode(as_topic, Some(&key), Some(&mutated), &limits, T0))?;
    }

    #[test]
    fn mutated_decisions_and_changelog_records_never_panic(
        pick in 0usize..9,
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let decisions = workload(3);
        let decision = codec::encode(Contract::MonitoringDecision, &decisions[pick % decisions.len()]).unwrap();
        let other = codec::encode(Contract::MonitoringDecision, &decisions[(pick + 1) % decisions.len()]).unwrap();
        let mutated = mutate(decision, &other, &mutations);
        let decoder = Decoder::new(Contract::MonitoringDecision);
        if let Err(e) = decoder.decode::<MonitoringDecision>(&mutated) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mutated_changelog_records_never_panic(
        pick in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let corpus = changelog_corpus();
        let record = &corpus[pick % corpus.len()];
        let other = &corpus[(pick + 1) % corpus.len()];
        let decoder = Decoder::new(Contract::ChangelogRecord);
        prop_assert!(decoder.decode::<ChangelogRecord>(record).is_ok());
        let mutated = mutate(record.clone(), other, &mutations);
        if let Err(e) = decoder.decode::<ChangelogRecord>(&mutated) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// Changelog records as a partition writes them: the partition record and
/// sessions with counts.
fn changelog_corpus() -> Vec<Vec<u8>> {
    let mut monitor = Monitor::new(MonitorConfig::default());
    let mut decisions = Vec::new();
    for i in 0..4 {
        let v = format!("v{i}");
        monitor.apply(
            Input::Posted(&posted(&v, T0 + i * SECOND, 0.1)),
            &mut decisions,
        );
        let views = interaction(
            &format!("e{i}"),
            &v,
            InteractionKind::View,
            40 + i,
            T0 + MINUTE,
        );
        monitor.apply(Input::Interaction(&views), &mut decisions);
    }
    let mut corpus: Vec<Vec<u8>> = monitor
        .drain_changes()
        .into_iter()
        .filter_map(|change| change.record)
        .map(|record| codec::encode(Contract::ChangelogRecord, &record).unwrap())
        .collect();
    let partition = ChangelogRecord {
        variant_id: ChangelogRecord::PARTITION_KEY.to_owned(),
        partition_clock: Some(T0),
        input_offsets: Some(InputOffsets {
            posted: Some(4),
            interactions: Some(4),
            commands: None,
        }),
        session: None,
        held: Vec::new(),
    };
    corpus.push(codec::encode(Contract::ChangelogRecord, &partition).unwrap());
    corpus
}

#[test]
fn the_changelog_corpus_has_sessions_and_the_partition_record() {
    let decoder = Decoder::new(Contract::ChangelogRecord);
    let records: Vec<ChangelogRecord> = changelog_corpus()
        .iter()
        .map(|bytes| decoder.decode(bytes).unwrap())
        .collect();
    assert_eq!(records.iter().filter(|r| r.session.is_some()).count(), 4);
    assert!(records.iter().any(|r| r.input_offsets.is_some()));
}

#[test]
fn the_mutations_change_records() {
    // Guards the fuzzer itself: every mutation kind alters a record.
    let bytes = codec::encode(Contract::StopMonitoring, &stop("v", T0)).unwrap();
    let other = codec::encode(Contract::StopMonitoring, &stop("w-other", T0 + 1)).unwrap();
    for m in [
        Mutation::FlipBit(3, 1),
        Mutation::Set(12, 0xff),
        Mutation::Truncate(5),
        Mutation::Insert(11, vec![0x80]),
        Mutation::Duplicate(10, 4),
        Mutation::Splice(10, 10),
    ] {
        assert_ne!(
            mutate(bytes.clone(), &other, std::slice::from_ref(&m)),
            bytes,
            "{m:?}"
        );
    }
}
