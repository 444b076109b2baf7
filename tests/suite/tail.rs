//! `earlykill tail` through the binary: every record type of a topic as
//! JSON lines, dead letters with their headers and undecodable values,
//! from the beginning or the last N, stopping at the end.

use std::process::{Command, Stdio};

use crate::common::kafka::{Kafka, Running};
use crate::common::{interaction, posted, stop};
use earlykill_core::event::codec::encode;
use earlykill_core::event::{Contract, InteractionKind};
use serde_json::Value;

fn tail(kafka: &Kafka, topic: &str, args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args([
            "tail",
            topic,
            "--bootstrap-servers",
            &kafka.cluster.bootstrap_servers(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run earlykill tail");
    assert!(
        output.status.success(),
        "tail failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn tail_prints_every_record_type_and_dead_letters_as_json_lines() {
    let kafka = Kafka::new(1);
    let topics = kafka.config.topics.clone();
    let t = chrono::Utc::now().timestamp_millis();
    kafka.post(&posted("v-1", t, 0.5));
    kafka.interact(&interaction("e-1", "v-1", InteractionKind::View, 3, t + 1));
    kafka.stop(&stop("v-1", t + 2));
    // Two bad records: not Avro at all, and a key that is not UTF-8.
    kafka.send_raw(
        &topics.posted,
        Some(b"v-bad"),
        Some(b"{\"json\": true}"),
        &[("trace", "t-1")],
    );
    let good = encode(Contract::VariantPosted, &posted("v-2", t, 0.5)).unwrap();
    kafka.send_raw(&topics.posted, Some(&[0xff, 0xfe]), Some(&good), &[]);
    kafka.flush();
    let running = Running::start(kafka.processor_config("tail"));
    running.wait_committed(&kafka.input_ends());
    running.stop().expect("clean stop");

    let posted_lines = tail(&kafka, &topics.posted, &["--from", "beginning"]);
    assert_eq!(posted_lines.len(), 3);
    assert_eq!(posted_lines[0]["type"], "VariantPosted");
    assert_eq!(posted_lines[0]["key"], "v-1");
    assert_eq!(posted_lines[0]["value"]["variant_id"], "v-1");
    assert_eq!(posted_lines[0]["offset"], 0);
    assert!(posted_lines[1]["value_error"]
        .as_str()
        .unwrap()
        .contains("marker"));
    assert!(posted_lines[1]["value_base64"].is_string());
    assert_eq!(posted_lines[2]["key_base64"], "//4=");

    let interactions = tail(&kafka, &topics.interactions, &["--from", "beginning"]);
    assert_eq!(interactions[0]["type"], "Interaction");
    assert_eq!(interactions[0]["value"]["count"], 3);
    let commands = tail(&kafka, &topics.commands, &["--from", "beginning"]);
    assert_eq!(commands[0]["type"], "StopMonitoring");

    let decisions = tail(&kafka, &topics.decisions, &["--from", "beginning"]);
    let kinds: Vec<&str> = decisions
        .iter()
        .map(|d| d["value"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["STARTED", "STOPPED"]);
    assert_eq!(decisions[0]["type"], "MonitoringDecision");
    assert_eq!(decisions[0]["headers"]["decision_kind"], "started");

    let changelog = tail(&kafka, &topics.changelog, &["--from", "beginning"]);
    assert!(changelog.iter().all(|c| c["type"] == "ChangelogRecord"));
    assert!(changelog
        .iter()
        .any(|c| c["key"] == "" && c["value"]["partition_clock"].is_i64()));

    let letters = tail(&kafka, &topics.dead_letters, &["--from", "beginning"]);
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["headers"]["earlykill.error.kind"], "bad_marker");
    assert_eq!(letters[0]["headers"]["trace"], "t-1");
    assert!(letters[0]["value_error"].is_string());
    assert_eq!(
        letters[1]["headers"]["earlykill.error.kind"],
        "key_mismatch"
    );
    assert_eq!(
        letters[1]["type"], "VariantPosted",
        "the rejected record decodes"
    );

    // The last record only, and nothing from the end.
    let last = tail(&kafka, &topics.decisions, &["--from", "last:1"]);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["value"]["kind"], "STOPPED");
    assert!(tail(&kafka, &topics.decisions, &[]).is_empty());
}

#[test]
fn tail_names_a_topic_that_does_not_exist() {
    let kafka = Kafka::new(1);
    let output = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args([
            "tail",
            "no.such.topic",
            "--bootstrap-servers",
            &kafka.cluster.bootstrap_servers(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run earlykill tail");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no.such.topic"), "{stderr}");
}
