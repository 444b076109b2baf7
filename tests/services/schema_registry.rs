//! Confluent Schema Registry framing (a zero byte, the schema id, the
//! datum) against a stand-in registry: an axum server answering
//! `GET /schemas/ids/{id}` as Confluent's REST API documents it (no
//! registry server can be installed on these machines). Records framed with
//! a known id are decided, each id is fetched once, an id the registry does
//! not know is a dead letter, and a registry outage loses nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::common::kafka::{Kafka, Running, PATIENCE};
use crate::common::posted;
use crate::common::postgres::TestDb;
use crate::common::projector::{block_on, Projecting};
use crate::common::registry::{serve, Stand};
use earlykill::processor::DecisionsFormat;
use earlykill::projector::{self, ProjectorConfig};
use earlykill::registry::Registry;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{Contract, DecisionKind, Decoder, MonitoringDecision};

/// `earlykill tail ARGS --from beginning` with the registry, as JSON lines.
fn tail(kafka: &Kafka, url: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .arg("tail")
        .args(args)
        .args(["--from", "beginning"])
        .args(["--bootstrap-servers", &kafka.cluster.bootstrap_servers()])
        .args(["--schema-registry-url", url])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run earlykill tail");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

/// A VariantPosted as Confluent's serializer frames it with schema `id`.
fn framed(id: u32, variant: &str, t: i64) -> Vec<u8> {
    let single_object = encode(Contract::VariantPosted, &posted(variant, t, 0.5)).expect("encode");
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&single_object[10..]);
    framed
}

#[test]
fn registry_framed_records_are_decided_and_unknown_ids_are_dead_letters() {
    let stand = Arc::new(Stand::default());
    // The registry is down for the first two requests: the processor
    // aborts, rewinds and asks again; nothing is dead-lettered for that.
    stand.down_for.store(2, Ordering::SeqCst);
    let url = serve(stand.clone());
    let kafka = Kafka::new(1);
    let topics = kafka.config.topics.clone();
    let t = chrono::Utc::now().timestamp_millis();
    for (id, variant) in [(7, "v-a"), (7, "v-b"), (8, "v-unknown"), (9, "v-c")] {
        kafka.send_raw(
            &topics.posted,
            Some(variant.as_bytes()),
            Some(&framed(id, variant, t)),
            &[],
        );
    }
    kafka.flush();
    let mut config = kafka.processor_config("registry");
    config.schema_registry =
        Some(Registry::new(&url, None, None, std::time::Duration::from_secs(5)).expect("registry"));
    let running = Running::start(config);
    let decisions = kafka.decisions(3);
    let letters = kafka.read_until(&topics.dead_letters, |r| !r.is_empty());
    running.stop().expect("clean stop");

    let mut started: Vec<&str> = decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Started)
        .map(|d| d.variant_id.as_str())
        .collect();
    started.sort_unstable();
    assert_eq!(started, ["v-a", "v-b", "v-c"]);
    assert_eq!(letters.len(), 1, "only the unknown id is a dead letter");
    assert_eq!(letters[0].key.as_deref(), Some(&b"v-unknown"[..]));
    assert_eq!(
        letters[0].headers["earlykill.error.kind"],
        "unknown_schema_id"
    );
    assert!(letters[0].headers["earlykill.error.message"].contains("id 8"));
    let hits = stand.hits.lock().unwrap().clone();
    assert_eq!(
        hits.get(&7),
        Some(&3),
        "id 7: two requests while down, then fetched once for both records"
    );
    assert_eq!(hits.get(&9), Some(&1), "{hits:?}");

    // `earlykill tail` reads the framed records with the registry too.
    let lines = tail(&kafka, &url, &[&topics.posted]);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["type"], "VariantPosted");
    assert_eq!(lines[0]["value"]["variant_id"], "v-a");
    assert!(
        lines[2]["value_error"].as_str().unwrap().contains("id 8"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["value"]["variant_id"], "v-c");
}

#[test]
fn without_a_registry_a_framed_record_is_a_dead_letter_saying_what_to_set() {
    let kafka = Kafka::new(1);
    let topics = kafka.config.topics.clone();
    let t = chrono::Utc::now().timestamp_millis();
    kafka.send_raw(
        &topics.posted,
        Some(b"v-x"),
        Some(&framed(7, "v-x", t)),
        &[],
    );
    kafka.flush();
    let running = Running::start(kafka.processor_config("no-registry"));
    let letters = kafka.read_until(&topics.dead_letters, |r| !r.is_empty());
    running.stop().expect("clean stop");
    assert_eq!(
        letters[0].headers["earlykill.error.kind"],
        "unknown_schema_id"
    );
    assert!(letters[0].headers["earlykill.error.message"].contains("--schema-registry-url"));
}

/// Two variants posted and one stopped: three decisions.
fn three_decisions(kafka: &Kafka) {
    let t = chrono::Utc::now().timestamp_millis();
    kafka.post(&posted("v-a", t, 0.5));
    kafka.post(&posted("v-b", t, 0.5));
    kafka.stop(&crate::common::stop("v-b", t + 1));
    kafka.flush();
}

#[test]
fn decisions_framed_for_the_registry_are_registered_under_the_topic_subject_and_read_back() {
    let stand = Arc::new(Stand::default());
    let url = serve(stand.clone());
    let registry = || Registry::new(&url, None, None, std::time::Duration::from_secs(5)).unwrap();
    let kafka = Kafka::new(1);
    let topics = kafka.config.topics.clone();
    three_decisions(&kafka);
    let mut config = kafka.processor_config("framed-decisions");
    config.schema_registry = Some(registry());
    config.decisions_format = DecisionsFormat::Registry;
    let running = Running::start(config.clone());
    let records = kafka.read_until(&topics.decisions, |r| r.len() >= 3);
    running.stop().expect("clean stop");
    // A restart registers the same schema again and is given the same id.
    Running::start(config).stop().expect("clean stop");

    let subject = format!("{}-value", topics.decisions);
    let registered = stand.registered.lock().unwrap().clone();
    assert_eq!(registered.len(), 1, "{registered:?}");
    let (ref name, ref schema, id) = registered[0];
    assert_eq!(name, &subject);
    assert_eq!(schema, Contract::MonitoringDecision.json());
    assert_eq!(stand.registrations.load(Ordering::SeqCst), 2);

    // Confluent framing: a zero byte, the id, the datum; and the datum is
    // the one single-object encoding would carry.
    let mut decoder = Decoder::new(Contract::MonitoringDecision);
    decoder
        .register_registry_schema(id, schema)
        .expect("the registered schema is the decision schema");
    let mut kinds = Vec::new();
    for record in &records {
        let value = record.value.as_deref().expect("value");
        assert_eq!(value[0], 0, "Confluent framing starts with a zero byte");
        assert_eq!(u32::from_be_bytes(value[1..5].try_into().unwrap()), id);
        let decision: MonitoringDecision = decoder.decode(value).expect("decodes");
        let single = encode(Contract::MonitoringDecision, &decision).unwrap();
        assert_eq!(&value[5..], &single[10..], "the same Avro datum");
        kinds.push(decision.kind);
    }
    assert_eq!(
        kinds,
        [
            DecisionKind::Started,
            DecisionKind::Started,
            DecisionKind::Stopped
        ]
    );

    // `earlykill tail` decodes them with the registry.
    let lines = tail(&kafka, &url, &[&topics.decisions, "-n", "3"]);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["type"], "MonitoringDecision");
    assert_eq!(lines[2]["value"]["kind"], "STOPPED");

    // The projector reads them with the registry (fetching the schema
    // once), and without one skips them saying why.
    let db = block_on(async {
        let db = TestDb::create("framed_decisions").await;
        projector::migrate(&projector::connect(&db.url, 1).unwrap())
            .await
            .unwrap();
        db
    });
    let mut projector_config = ProjectorConfig::new(&kafka.cluster.bootstrap_servers(), &db.url);
    projector_config.decisions_topic = topics.decisions.clone();
    projector_config
        .kafka
        .insert("session.timeout.ms".into(), "6000".into());
    projector_config.batch_wait = std::time::Duration::from_millis(20);
    projector_config.registry = Some(registry());
    let projecting = Projecting::start(projector_config.clone());
    projecting.wait("three decisions applied", PATIENCE, |s| {
        s.applied.started == 2 && s.applied.ended == 1
    });
    projecting.stop().expect("projector stops");
    assert_eq!(block_on(db.table(None)).len(), 2);
    assert_eq!(
        stand.hits.lock().unwrap().get(&id),
        Some(&2),
        "tail and projector once each"
    );

    projector_config.registry = None;
    projector_config.group_id = "without-registry".into();
    let summary = projector::replay(
        &projector_config,
        &projector::ReplayTarget::Live { confirmed: true },
        |_| {},
    )
    .expect("replay");
    assert_eq!(summary.undecodable, 3, "{summary:?}");
    block_on(db.drop());
}

#[test]
fn a_registry_refusing_the_decision_schema_stops_the_start_naming_the_subject() {
    let stand = Arc::new(Stand::default());
    stand.incompatible.store(true, Ordering::SeqCst);
    let url = serve(stand.clone());
    let kafka = Kafka::new(1);
    let mut config = kafka.processor_config("refused");
    config.schema_registry =
        Some(Registry::new(&url, None, None, std::time::Duration::from_secs(5)).unwrap());
    config.decisions_format = DecisionsFormat::Registry;
    let error = earlykill::processor::run(
        config,
        earlykill::shutdown::Shutdown::new(),
        Default::default(),
        Default::default(),
    )
    .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("earlykill.decisions-value") && message.contains("HTTP 409"),
        "{message}"
    );
    assert!(kafka
        .read_until(&kafka.config.topics.decisions, |_| true)
        .is_empty());
}
