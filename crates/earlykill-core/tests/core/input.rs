//! Classifying input records: a valid record becomes a fold input; anything
//! else gets a dead-letter reason, and no byte sequence panics.

use earlykill_core::event::codec;
use earlykill_core::event::validate::Limits;
use earlykill_core::event::{
    Contract, Decoded, InputDecoders, InputTopic, InteractionKind, Rejection,
};
use earlykill_core::monitor::{Input, Monitor, MonitorConfig, Outcome};
use proptest::prelude::*;

use earlykill_core::fixtures::*;

const NOW: i64 = T0;

fn decode<'a>(
    topic: InputTopic,
    key: Option<&[u8]>,
    value: Option<&'a [u8]>,
) -> Result<Decoded<'a>, Rejection> {
    InputDecoders::default().decode(topic, key, value, &Limits::default(), NOW)
}

fn kind(result: Result<Decoded<'_>, Rejection>) -> &'static str {
    result.unwrap_err().kind
}

#[test]
fn a_valid_record_of_each_topic_reaches_the_fold() {
    let posted_bytes = codec::encode(Contract::VariantPosted, &posted("v", T0, 0.1)).unwrap();
    let like = interaction("e", "v", InteractionKind::Like, 1, T0);
    let like_bytes = codec::encode(Contract::Interaction, &like).unwrap();
    let stop_bytes = codec::encode(Contract::StopMonitoring, &stop("v", T0)).unwrap();
    let mut monitor = Monitor::new(MonitorConfig::default());
    let mut decisions = Vec::new();
    let outcomes: Vec<Outcome> = [
        (InputTopic::Posted, &posted_bytes),
        (InputTopic::Interactions, &like_bytes),
        (InputTopic::Commands, &stop_bytes),
    ]
    .into_iter()
    .map(|(topic, bytes)| {
        let decoded = decode(topic, Some(b"v"), Some(bytes)).unwrap();
        monitor.apply(Input::from(&decoded), &mut decisions)
    })
    .collect();
    assert_eq!(
        outcomes,
        [Outcome::Started, Outcome::Counted, Outcome::Stopped]
    );
}

#[test]
fn records_not_keyed_by_their_variant_are_rejected() {
    let bytes = codec::encode(Contract::VariantPosted, &posted("v", T0, 0.1)).unwrap();
    assert_eq!(
        kind(decode(InputTopic::Posted, Some(b"w"), Some(&bytes))),
        "key_mismatch"
    );
    assert_eq!(
        kind(decode(InputTopic::Posted, None, Some(&bytes))),
        "missing_key"
    );
}

#[test]
fn tombstones_and_records_of_another_topic_are_rejected() {
    assert_eq!(
        kind(decode(InputTopic::Interactions, Some(b"v"), None)),
        "empty_value"
    );
    let posted_bytes = codec::encode(Contract::VariantPosted, &posted("v", T0, 0.1)).unwrap();
    assert_eq!(
        kind(decode(
            InputTopic::Interactions,
            Some(b"v"),
            Some(&posted_bytes)
        )),
        "unknown_schema"
    );
}

#[test]
fn records_that_decode_but_break_the_contract_are_rejected_with_the_field() {
    let bad = interaction("e", "v", InteractionKind::View, -3, T0);
    let bytes = codec::encode(Contract::Interaction, &bad).unwrap();
    let rejection = decode(InputTopic::Interactions, Some(b"v"), Some(&bytes)).unwrap_err();
    assert_eq!(rejection.kind, "out_of_range");
    assert!(rejection.message.contains("count"), "{rejection}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(2000)))]

    #[test]
    fn any_bytes_on_any_topic_decode_or_get_a_known_reason(
        topic in proptest::sample::select(InputTopic::ALL.to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..96),
        with_header in any::<bool>(),
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    ) {
        let bytes = if with_header {
            [codec::MARKER.as_slice(), &topic.contract().fingerprint(), &body].concat()
        } else {
            body
        };
        match decode(topic, key.as_deref(), Some(&bytes)) {
            Ok(decoded) => prop_assert_eq!(Some(decoded.variant_id().as_bytes()), key.as_deref()),
            Err(rejection) => {
                prop_assert!(Rejection::KINDS.contains(&rejection.kind), "{}", rejection);
                prop_assert!(!rejection.message.is_empty());
            }
        }
    }
}

#[test]
fn only_a_post_can_meet_the_session_limit() {
    use earlykill_core::event::{InputTopic, Rejection};
    let kinds = |t| Rejection::kinds_of(t).collect::<Vec<_>>();
    assert_eq!(kinds(InputTopic::Posted).len(), Rejection::KINDS.len());
    for topic in [InputTopic::Interactions, InputTopic::Commands] {
        assert_eq!(kinds(topic).len(), Rejection::KINDS.len() - 1);
        assert!(!kinds(topic).contains(&"session_limit"));
    }
}
