//! The reference cleanup service (`examples/cleanup_service.py`, Python with
//! confluent-kafka and fastavro) against a real processor on the mock
//! cluster: it acts once per killed variant, a redelivered decision
//! included, and acts on nothing again when restarted; and decisions
//! written framed for the schema registry, read with Confluent's own
//! AvroDeserializer against the stand-in registry.

use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::common::kafka::{Kafka, Running};
use crate::common::registry::{serve, Stand};
use crate::common::{interaction, posted};
use earlykill_core::event::codec::encode;
use earlykill_core::event::{Contract, DecisionKind, InteractionKind};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// What the example needs, pinned as `.ci/run` installs them.
const PACKAGES: [&str; 2] = [
    "confluent-kafka[schemaregistry,avro]==2.16.1",
    "fastavro==1.13.1",
];

/// Where Python finds the example's packages: nothing to add when they are
/// installed; else a directory they are installed into once with pip
/// (shared by test runs, behind a lock), so the test command needs nothing
/// done by hand.
fn python_path() -> Option<std::path::PathBuf> {
    let installed = Command::new("python3")
        .args([
            "-c",
            "import confluent_kafka.schema_registry.avro, fastavro",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return None;
    }
    let site = crate::common::pip::install("python", &PACKAGES);
    Some(site)
}

fn cleanup(kafka: &Kafka, dir: &std::path::Path) -> Value {
    cleanup_with(kafka, dir, &[])
}

fn cleanup_with(kafka: &Kafka, dir: &std::path::Path, extra: &[&str]) -> Value {
    let mut python = Command::new("python3");
    if let Some(site) = python_path() {
        python.env("PYTHONPATH", site);
    }
    let output = python
        .arg(format!("{ROOT}/examples/cleanup_service.py"))
        .args(["--bootstrap-servers", &kafka.cluster.bootstrap_servers()])
        .args(["--topic", &kafka.config.topics.decisions])
        .arg("--schema")
        .arg(format!("{ROOT}/schemas/monitoring_decision.avsc"))
        .arg("--actions")
        .arg(dir.join("actions.jsonl"))
        .arg("--state")
        .arg(dir.join("state.sqlite"))
        .args(["--exit-when-idle", "8"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs (the example needs Python 3 with confluent-kafka and fastavro: pip install confluent-kafka fastavro)");
    assert!(
        output.status.success(),
        "the example failed (pip install confluent-kafka fastavro if they are missing): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("JSON counts")
}

/// The variants the service acted on (its actions file), sorted.
fn acted_on(dir: &std::path::Path) -> Vec<String> {
    let actions = std::fs::read_to_string(dir.join("actions.jsonl")).expect("actions");
    let mut acted: Vec<String> = actions
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["variant_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    acted.sort();
    acted
}

/// Posts `variants` variants at 50% expected engagement, each with 100
/// views; the first `poor` get 10 likes (killed), the others 60.
fn seed(kafka: &Kafka, variants: usize, poor: usize) {
    let t = chrono::Utc::now().timestamp_millis();
    for v in 0..variants {
        let id = format!("v-{v}");
        kafka.post(&posted(&id, t, 0.5));
        let views = interaction(
            &format!("{id}-views"),
            &id,
            InteractionKind::View,
            100,
            t + 1,
        );
        kafka.interact(&views);
        let likes = if v < poor { 10 } else { 60 };
        let likes = interaction(
            &format!("{id}-likes"),
            &id,
            InteractionKind::Like,
            likes,
            t + 2,
        );
        kafka.interact(&likes);
    }
    kafka.flush();
}

#[test]
fn the_python_cleanup_service_acts_once_per_killed_variant() {
    let kafka = Kafka::new(2);
    // v-0, v-1 and v-2 engage at 10% of 50% expected: killed; v-3 at 60%.
    seed(&kafka, 4, 3);
    let running = Running::start(kafka.processor_config("cleanup"));
    let decisions = kafka.decisions(7);
    running.stop().expect("clean stop");
    let killed: Vec<_> = decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Killed)
        .collect();
    assert_eq!(killed.len(), 3);
    // At-least-once redelivery of one kill, as a crash could cause.
    let again = encode(Contract::MonitoringDecision, killed[0]).expect("encode");
    kafka.send_raw(
        &kafka.config.topics.decisions,
        Some(killed[0].variant_id.as_bytes()),
        Some(&again),
        &[],
    );
    kafka.flush();

    let dir = std::env::temp_dir().join(format!("earlykill-cleanup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let first = cleanup(&kafka, &dir);
    assert_eq!(first["read"], 8, "{first}");
    assert_eq!(first["acted"], 3, "{first}");
    assert_eq!(first["duplicates"], 1, "{first}");
    let acted = acted_on(&dir);
    assert_eq!(acted, ["v-0", "v-1", "v-2"]);

    // Restarted: its offsets are committed, nothing is acted on again.
    let second = cleanup(&kafka, &dir);
    assert_eq!(second["acted"], 0, "{second}");
    assert_eq!(
        std::fs::read_to_string(dir.join("actions.jsonl"))
            .expect("actions")
            .lines()
            .count(),
        3
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn decisions_framed_for_the_registry_are_read_with_confluents_own_deserializer() {
    let stand = Arc::new(Stand::default());
    let url = serve(stand.clone());
    let kafka = Kafka::new(1);
    // v-0 and v-1 engage at 10% of 50% expected: killed; v-2 at 60%.
    seed(&kafka, 3, 2);
    let mut config = kafka.processor_config("cleanup-registry");
    config.schema_registry = Some(
        earlykill::registry::Registry::new(&url, None, None, std::time::Duration::from_secs(5))
            .expect("registry"),
    );
    config.decisions_format = earlykill::processor::DecisionsFormat::Registry;
    let running = Running::start(config);
    let records = kafka.read_until(&kafka.config.topics.decisions, |r| r.len() >= 5);
    running.stop().expect("clean stop");
    assert!(records
        .iter()
        .all(|r| r.value.as_deref().is_some_and(|v| v[0] == 0)));

    let dir =
        std::env::temp_dir().join(format!("earlykill-cleanup-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let counts = cleanup_with(&kafka, &dir, &["--schema-registry-url", &url]);
    assert_eq!(counts["read"], 5, "{counts}");
    assert_eq!(counts["undecodable"], 0, "{counts}");
    assert_eq!(counts["acted"], 2, "{counts}");
    let acted = acted_on(&dir);
    assert_eq!(acted, ["v-0", "v-1"]);

    // Without the registry, the same service says what to give.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let blind = cleanup_with(&kafka, &dir, &["--group-id", "blind"]);
    assert_eq!(blind["undecodable"], 5, "{blind}");
    let _ = std::fs::remove_dir_all(dir);
}
