//! The event contract: every schema parses in both Avro implementations,
//! every type round-trips, the fast decoder agrees with apache-avro, and
//! schemas can evolve without breaking a running consumer.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use earlykill_core::event::codec::{self, CodecError, Decoder};
use earlykill_core::event::{
    ChangelogRecord, Contract, DecisionKind, HeldInteraction, InputOffsets, Interaction,
    InteractionKind, MonitoringDecision, SessionState, SessionStatus, StopMonitoring,
    VariantPosted,
};
use proptest::prelude::*;

use earlykill_core::fixtures::*;

/// Decodes with the reference decoder into a (possibly borrowing) type and
/// returns its `Debug` form, which outlives the bytes and compares NaN equal
/// to itself.
macro_rules! reference {
    ($decoder:expr, $bytes:expr, $ty:ident) => {{
        let value = $decoder.decode_reference_value($bytes).unwrap();
        let decoded: $ty = apache_avro::from_value(&value).unwrap();
        format!("{decoded:?}")
    }};
}

fn debug<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}")
}

/// Fingerprints of `schemas/*.avsc` as computed by another implementation,
/// Python's fastavro (`fingerprint(to_parsing_canonical_form(schema),
/// "CRC-64-AVRO")`), so a producer in another language frames records
/// exactly as we expect. Changing a schema changes its fingerprint: update
/// the constant with that command and keep the old schema registered.
const FINGERPRINTS_BY_FASTAVRO: [(Contract, &str); 5] = [
    (Contract::VariantPosted, "5ad329398cf223ec"),
    (Contract::Interaction, "1d47303b4474424d"),
    (Contract::StopMonitoring, "e3b37b0ae053ffa7"),
    (Contract::MonitoringDecision, "0e908c80f23d92b2"),
    (Contract::ChangelogRecord, "86f9c434d2a575ab"),
];

/// Earlier versions in `schemas/history/`, fingerprinted the same way.
const HISTORY_BY_FASTAVRO: [(Contract, &str); 1] =
    [(Contract::ChangelogRecord, "b75f7ebc43596297")];

#[test]
fn every_schema_parses_and_its_fingerprint_matches_another_implementation() {
    for (contract, expected) in FINGERPRINTS_BY_FASTAVRO {
        // Touching both parsed forms parses the schema in both implementations.
        assert!(contract.reference().name().is_some(), "{contract:?}");
        let hex: String = contract
            .fingerprint()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected, "{contract:?}");
    }
}

#[test]
fn every_schema_is_namespaced_and_every_field_documented() {
    fn walk(value: &serde_json::Value, path: &str) {
        if let Some(fields) = value.get("fields").and_then(|f| f.as_array()) {
            assert!(value.get("doc").is_some(), "{path} record has no doc");
            for field in fields {
                let name = field["name"].as_str().unwrap_or("?");
                assert!(field.get("doc").is_some(), "{path}.{name} has no doc");
                walk(&field["type"], &format!("{path}.{name}"));
            }
        }
        if let Some(items) = value.as_array() {
            items.iter().for_each(|v| walk(v, path));
        }
        for key in ["items", "values"] {
            if let Some(inner) = value.get(key) {
                walk(inner, path);
            }
        }
    }
    for contract in Contract::ALL {
        let json: serde_json::Value = serde_json::from_str(contract.json()).unwrap();
        assert!(
            json.get("namespace").is_some(),
            "{contract:?} is namespaced"
        );
        walk(&json, contract.file_name());
    }
}

#[test]
fn the_interaction_kind_enum_is_the_same_in_every_schema_that_uses_it() {
    let symbols = |contract: Contract| -> Vec<String> {
        let json = contract.json();
        let start = json.find("\"InteractionKind\"").unwrap();
        let rest = &json[start..];
        let open = rest.find('[').unwrap();
        let close = rest.find(']').unwrap();
        serde_json::from_str(&rest[open..=close]).unwrap()
    };
    let expected: Vec<String> = InteractionKind::ALL
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(symbols(Contract::Interaction), expected);
    assert_eq!(symbols(Contract::ChangelogRecord), expected);
}

fn sample_posted() -> VariantPosted<'static> {
    let mut p = posted("variant-1", T0, 0.06);
    p.kill_threshold = Some(0.4);
    p.min_interactions = Some(20);
    p.timeout_minutes = None;
    p.metadata = BTreeMap::from([("campaign".into(), "spring".into())]);
    p
}

fn sample_decision() -> MonitoringDecision {
    MonitoringDecision {
        decision_id: "variant-1/1/killed".into(),
        kind: DecisionKind::Killed,
        variant_id: "variant-1".into(),
        persona_id: "persona-1".into(),
        post_id: "post-1".into(),
        expected_engagement_rate: 0.06,
        kill_threshold: 0.5,
        min_interactions: 10,
        timeout_minutes: 10,
        interactions: 12,
        views: 1000,
        engagement_rate: Some(0.012),
        posted_at: T0,
        deadline: T0 + 10 * MINUTE,
        decided_at: T0 + MINUTE,
        reason: "below".into(),
        trigger_event_id: Some("e-12".into()),
        requested_by: None,
        metadata: BTreeMap::new(),
    }
}

fn sample_changelog() -> ChangelogRecord {
    ChangelogRecord {
        variant_id: "variant-1".into(),
        partition_clock: None,
        input_offsets: None,
        session: Some(SessionState {
            persona_id: "persona-1".into(),
            post_id: "post-1".into(),
            expected_engagement_rate: 0.06,
            kill_threshold: 0.5,
            min_interactions: 10,
            timeout_minutes: 10,
            posted_at: T0,
            interactions: 3,
            views: 70,
            status: SessionStatus::TimedOut,
            ended_at: Some(T0 + 10 * MINUTE),
            forget_at: Some(T0 + 75 * MINUTE),
        }),
        held: vec![HeldInteraction {
            event_id: "e-1".into(),
            kind: InteractionKind::Share,
            count: 2,
            occurred_at: T0 - 5,
            held_at: T0,
            seq: 7,
        }],
    }
}

/// Encodes with both encoders (which must agree byte for byte), then decodes
/// with both decoders and with an independent reader of the framing.
macro_rules! round_trip {
    ($contract:expr, $value:expr, $ty:ident) => {{
        let contract = $contract;
        let value = $value;
        let bytes = codec::encode(contract, &value).unwrap();
        assert_eq!(
            bytes,
            codec::encode_reference(contract, &value).unwrap(),
            "the fast encoder writes what apache-avro writes"
        );
        assert_eq!(bytes[..2], codec::MARKER);
        assert_eq!(bytes[2..10], contract.fingerprint());
        let decoder = Decoder::new(contract);
        assert_eq!(
            decoder.decode::<$ty>(&bytes).unwrap(),
            value,
            "fast decoder"
        );
        assert_eq!(
            reference!(decoder, &bytes, $ty),
            debug(&value),
            "apache-avro"
        );
        let independent: $ty =
            serde_avro_fast::from_single_object_slice(&bytes, contract.fast()).unwrap();
        assert_eq!(independent, value);
    }};
}

#[test]
fn every_type_round_trips_through_both_avro_implementations() {
    round_trip!(Contract::VariantPosted, sample_posted(), VariantPosted);
    round_trip!(
        Contract::Interaction,
        interaction("e-1", "variant-1", InteractionKind::Quote, 3, T0),
        Interaction
    );
    round_trip!(
        Contract::StopMonitoring,
        stop("variant-1", T0),
        StopMonitoring
    );
    round_trip!(
        Contract::MonitoringDecision,
        sample_decision(),
        MonitoringDecision
    );
    round_trip!(
        Contract::ChangelogRecord,
        sample_changelog(),
        ChangelogRecord
    );
    round_trip!(
        Contract::ChangelogRecord,
        ChangelogRecord {
            variant_id: String::new(),
            partition_clock: Some(T0),
            input_offsets: Some(InputOffsets {
                posted: Some(42),
                interactions: None,
                commands: Some(0),
            }),
            session: None,
            held: vec![],
        },
        ChangelogRecord
    );
}

/// The Interaction schema as it would have been before `count` was added.
const INTERACTION_WITHOUT_COUNT: &str = r#"{
  "type": "record", "name": "Interaction", "namespace": "io.earlykill.events",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "variant_id", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "InteractionKind",
      "symbols": ["VIEW", "LIKE", "REPLY", "REPOST", "QUOTE", "SHARE", "SAVE", "OTHER"], "default": "OTHER"}},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
  ]
}"#;

/// A later Interaction schema: one more engagement kind and one more
/// optional field.
const INTERACTION_FROM_THE_FUTURE: &str = r#"{
  "type": "record", "name": "Interaction", "namespace": "io.earlykill.events",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "variant_id", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "InteractionKind",
      "symbols": ["VIEW", "LIKE", "REPLY", "REPOST", "QUOTE", "SHARE", "SAVE", "OTHER", "BOOKMARK"], "default": "OTHER"}},
    {"name": "count", "type": "long", "default": 1},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "client", "type": ["null", "string"], "default": null}
  ]
}"#;

fn encode_value(schema_json: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
    let record = Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    let datum = apache_avro::to_avro_datum(&schema, record).unwrap();
    let fingerprint = codec::fingerprint(schema_json).unwrap();
    [codec::MARKER.as_slice(), &fingerprint, &datum].concat()
}

#[test]
fn data_written_before_an_optional_field_was_added_is_still_readable() {
    let bytes = encode_value(
        INTERACTION_WITHOUT_COUNT,
        vec![
            ("event_id", Value::String("e-1".into())),
            ("variant_id", Value::String("v-1".into())),
            ("kind", Value::Enum(1, "LIKE".into())),
            ("occurred_at", Value::TimestampMillis(T0)),
        ],
    );
    let mut decoder = Decoder::new(Contract::Interaction);
    assert!(matches!(
        decoder.decode::<Interaction>(&bytes),
        Err(CodecError::UnknownSchema { .. })
    ));
    decoder
        .register_writer_schema(INTERACTION_WITHOUT_COUNT)
        .unwrap();
    let expected = interaction("e-1", "v-1", InteractionKind::Like, 1, T0);
    assert_eq!(decoder.decode::<Interaction>(&bytes).unwrap(), expected);
    assert_eq!(reference!(decoder, &bytes, Interaction), debug(&expected));
}

#[test]
fn data_from_a_newer_writer_is_readable_and_unknown_kinds_become_other() {
    let bytes = encode_value(
        INTERACTION_FROM_THE_FUTURE,
        vec![
            ("event_id", Value::String("e-2".into())),
            ("variant_id", Value::String("v-1".into())),
            ("kind", Value::Enum(8, "BOOKMARK".into())),
            ("count", Value::Long(4)),
            ("occurred_at", Value::TimestampMillis(T0)),
            (
                "client",
                Value::Union(1, Box::new(Value::String("ios".into()))),
            ),
        ],
    );
    let mut decoder = Decoder::new(Contract::Interaction);
    decoder
        .register_writer_schema(INTERACTION_FROM_THE_FUTURE)
        .unwrap();
    let expected = interaction("e-2", "v-1", InteractionKind::Other, 4, T0);
    assert_eq!(decoder.decode::<Interaction>(&bytes).unwrap(), expected);
    assert_eq!(reference!(decoder, &bytes, Interaction), debug(&expected));
}

#[test]
fn a_schema_of_another_record_cannot_be_registered() {
    let mut decoder = Decoder::new(Contract::Interaction);
    let err = decoder
        .register_writer_schema(Contract::StopMonitoring.json())
        .unwrap_err();
    assert_eq!(err.kind(), "bad_schema");
    assert!(err.to_string().contains("StopMonitoring"), "{err}");
}

#[test]
fn undecodable_bytes_get_a_reason_not_a_panic() {
    let decoder = Decoder::new(Contract::Interaction);
    let good = codec::encode(
        Contract::Interaction,
        &interaction("e-1", "v-1", InteractionKind::View, 1, T0),
    )
    .unwrap();
    let kind = |bytes: &[u8]| decoder.decode::<Interaction>(bytes).unwrap_err().kind();
    assert_eq!(kind(&good[..5]), "truncated");
    assert_eq!(
        kind(&[&[0x7Bu8, 0x22][..], &good[2..]].concat()),
        "bad_marker"
    );
    // A zero first byte is Confluent Schema Registry framing: an id this
    // decoder was not given.
    assert_eq!(
        kind(&[&[0u8, 0][..], &good[2..]].concat()),
        "unknown_schema_id"
    );
    let posted_bytes = codec::encode(Contract::VariantPosted, &posted("v", T0, 0.1)).unwrap();
    assert_eq!(kind(&posted_bytes), "unknown_schema");
    assert_eq!(kind(&good[..good.len() - 3]), "malformed");
}

fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-é✓]{0,40}"
}

fn arb_kind() -> impl Strategy<Value = InteractionKind> {
    proptest::sample::select(InteractionKind::ALL.to_vec())
}

fn arb_interaction() -> impl Strategy<Value = Interaction<'static>> {
    (
        arb_text(),
        arb_text(),
        arb_kind(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(e, v, k, c, t)| interaction(&e, &v, k, c, t))
}

fn arb_posted() -> impl Strategy<Value = VariantPosted<'static>> {
    (
        (
            arb_text(),
            arb_text(),
            arb_text(),
            any::<f64>(),
            any::<i64>(),
        ),
        (
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
            proptest::collection::btree_map(arb_text(), arb_text(), 0..4),
        ),
    )
        .prop_map(|((v, p, post, er, at), (thr, min, timeout, metadata))| {
            let mut event = posted(&v, at, er);
            event.persona_id = p.into();
            event.post_id = post.into();
            event.kill_threshold = thr;
            event.min_interactions = min;
            event.timeout_minutes = timeout;
            event.metadata = metadata;
            event
        })
}

fn arb_stop() -> impl Strategy<Value = StopMonitoring<'static>> {
    (arb_text(), arb_text(), arb_text(), any::<i64>()).prop_map(|(v, r, by, at)| StopMonitoring {
        variant_id: v.into(),
        reason: r.into(),
        requested_by: by.into(),
        requested_at: at,
    })
}

fn arb_status() -> impl Strategy<Value = SessionStatus> {
    proptest::sample::select(vec![
        SessionStatus::Active,
        SessionStatus::Killed,
        SessionStatus::TimedOut,
        SessionStatus::Stopped,
    ])
}

fn arb_session() -> impl Strategy<Value = SessionState> {
    (
        (arb_text(), arb_text(), any::<f64>(), any::<f64>()),
        (
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        ),
        (arb_status(), any::<Option<i64>>(), any::<Option<i64>>()),
    )
        .prop_map(
            |(
                (persona_id, post_id, rate, threshold),
                (min, timeout, at, interactions, views),
                (status, ended_at, forget_at),
            )| {
                SessionState {
                    persona_id,
                    post_id,
                    expected_engagement_rate: rate,
                    kill_threshold: threshold,
                    min_interactions: min,
                    timeout_minutes: timeout,
                    posted_at: at,
                    interactions,
                    views,
                    status,
                    ended_at,
                    forget_at,
                }
            },
        )
}

fn arb_held() -> impl Strategy<Value = HeldInteraction> {
    (
        arb_text(),
        arb_kind(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(event_id, kind, count, occurred_at, held_at, seq)| HeldInteraction {
                event_id,
                kind,
                count,
                occurred_at,
                held_at,
                seq,
            },
        )
}

fn arb_changelog() -> impl Strategy<Value = ChangelogRecord> {
    let offsets = (
        any::<Option<i64>>(),
        any::<Option<i64>>(),
        any::<Option<i64>>(),
    )
        .prop_map(|(posted, interactions, commands)| InputOffsets {
            posted,
            interactions,
            commands,
        });
    (
        arb_text(),
        any::<Option<i64>>(),
        proptest::option::of(offsets),
        proptest::option::of(arb_session()),
        proptest::collection::vec(arb_held(), 0..4),
    )
        .prop_map(
            |(variant_id, partition_clock, input_offsets, session, held)| ChangelogRecord {
                variant_id,
                partition_clock,
                input_offsets,
                session,
                held,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(512)))]

    #[test]
    fn the_fast_codec_agrees_with_apache_avro(
        i in arb_interaction(), p in arb_posted(), s in arb_stop()
    ) {
        let bytes = codec::encode(Contract::Interaction, &i).unwrap();
        prop_assert_eq!(&bytes, &codec::encode_reference(Contract::Interaction, &i).unwrap());
        let d = Decoder::new(Contract::Interaction);
        prop_assert_eq!(debug(&d.decode::<Interaction>(&bytes).unwrap()), reference!(d, &bytes, Interaction));

        let bytes = codec::encode(Contract::VariantPosted, &p).unwrap();
        let d = Decoder::new(Contract::VariantPosted);
        // apache-avro writes map entries in HashMap order, so compare what
        // the bytes hold rather than the bytes.
        let reference_bytes = codec::encode_reference(Contract::VariantPosted, &p).unwrap();
        prop_assert_eq!(bytes.len(), reference_bytes.len());
        prop_assert_eq!(debug(&d.decode::<VariantPosted>(&reference_bytes).unwrap()), debug(&p));
        let fast: VariantPosted = d.decode(&bytes).unwrap();
        prop_assert_eq!(debug(&fast), reference!(d, &bytes, VariantPosted));
        prop_assert_eq!(debug(&fast), debug(&p));

        let bytes = codec::encode(Contract::StopMonitoring, &s).unwrap();
        prop_assert_eq!(&bytes, &codec::encode_reference(Contract::StopMonitoring, &s).unwrap());
        let d = Decoder::new(Contract::StopMonitoring);
        prop_assert_eq!(debug(&d.decode::<StopMonitoring>(&bytes).unwrap()), reference!(d, &bytes, StopMonitoring));
    }

    #[test]
    fn the_changelog_encoder_writes_what_the_serde_encoder_and_apache_avro_write(
        record in arb_changelog()
    ) {
        let mut bytes = Vec::new();
        earlykill_core::event::datum::encode_changelog_into(&record, &mut bytes);
        prop_assert_eq!(&bytes, &codec::encode(Contract::ChangelogRecord, &record).unwrap());
        prop_assert_eq!(&bytes, &codec::encode_reference(Contract::ChangelogRecord, &record).unwrap());
        let decoded: ChangelogRecord = Decoder::new(Contract::ChangelogRecord).decode(&bytes).unwrap();
        // NaN is not equal to itself: compare what Debug shows.
        prop_assert_eq!(debug(&decoded), debug(&record));
    }

    #[test]
    fn no_byte_sequence_makes_a_decoder_panic(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        contract in proptest::sample::select(Contract::ALL.to_vec()),
    ) {
        let bytes = [codec::MARKER.as_slice(), &contract.fingerprint(), &body].concat();
        let d = Decoder::new(contract);
        let fast = match contract {
            Contract::VariantPosted => d.decode::<VariantPosted>(&bytes).map(|_| ()),
            Contract::Interaction => d.decode::<Interaction>(&bytes).map(|_| ()),
            Contract::StopMonitoring => d.decode::<StopMonitoring>(&bytes).map(|_| ()),
            Contract::MonitoringDecision => d.decode::<MonitoringDecision>(&bytes).map(|_| ()),
            Contract::ChangelogRecord => d.decode::<ChangelogRecord>(&bytes).map(|_| ()),
        };
        if let Err(e) = fast {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn changelog_records_of_the_earlier_schema_version_still_decode() {
    for (contract, expected) in HISTORY_BY_FASTAVRO {
        let history = contract.history();
        assert_eq!(history.len(), 1);
        let fingerprint = codec::fingerprint(history[0]).expect("history schema parses");
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected, "{contract:?} history fingerprint");
        let schema = apache_avro::Schema::parse_str(history[0]).expect("parses");
        // A v1 record: the same session without forget_at.
        let mut record = sample_changelog();
        if let Some(session) = &mut record.session {
            session.forget_at = None;
        }
        let mut bytes = Vec::new();
        #[derive(serde::Serialize)]
        struct V1Session<'a> {
            persona_id: &'a str,
            post_id: &'a str,
            expected_engagement_rate: f64,
            kill_threshold: f64,
            min_interactions: i32,
            timeout_minutes: i32,
            posted_at: i64,
            interactions: i64,
            views: i64,
            status: SessionStatus,
            ended_at: Option<i64>,
        }
        #[derive(serde::Serialize)]
        struct V1<'a> {
            variant_id: &'a str,
            partition_clock: Option<i64>,
            input_offsets: Option<earlykill_core::event::InputOffsets>,
            session: Option<V1Session<'a>>,
            held: &'a [HeldInteraction],
        }
        let s = record.session.as_ref().expect("session");
        let v1 = V1 {
            variant_id: &record.variant_id,
            partition_clock: None,
            input_offsets: None,
            session: Some(V1Session {
                persona_id: &s.persona_id,
                post_id: &s.post_id,
                expected_engagement_rate: s.expected_engagement_rate,
                kill_threshold: s.kill_threshold,
                min_interactions: s.min_interactions,
                timeout_minutes: s.timeout_minutes,
                posted_at: s.posted_at,
                interactions: s.interactions,
                views: s.views,
                status: s.status,
                ended_at: s.ended_at,
            }),
            held: &record.held,
        };
        codec::encode_with_schema(&schema, fingerprint, &v1, &mut bytes).expect("encodes as v1");
        let decoder = Decoder::new(contract);
        let fast: ChangelogRecord = decoder.decode(&bytes).expect("fast decoder reads v1");
        assert_eq!(fast, record);
        let reference: ChangelogRecord = decoder
            .decode_reference(&bytes)
            .expect("reference reads v1");
        assert_eq!(reference, record);
    }
}
