//! `--schema-dir` through the binary: a producer on a newer version of the
//! posted schema (an added optional field) is read, not dead-lettered, and
//! a version this build cannot read is refused at start naming the file.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::common::kafka::Kafka;
use earlykill_core::event::codec::{encode_with_schema, fingerprint};
use earlykill_core::event::{Contract, DecisionKind};

/// The bundled VariantPosted schema with `field` appended.
fn posted_schema_with(field: serde_json::Value) -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(Contract::VariantPosted.json()).expect("bundled schema is JSON");
    schema["fields"].as_array_mut().expect("fields").push(field);
    schema.to_string()
}

fn schema_dir(name: &str, schema: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("earlykill-schemas-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the schema dir");
    std::fs::write(dir.join("variant_posted.v2.avsc"), schema).expect("write the schema");
    dir
}

fn earlykill(kafka: &Kafka, dir: &std::path::Path, instance: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_earlykill"));
    command
        .args([
            "run",
            "--bootstrap-servers",
            &kafka.cluster.bootstrap_servers(),
        ])
        .args(["--group-id", "earlykill-test", "--instance-id", instance])
        .args(["--http-listen", "off", "--log-level", "warn"])
        .arg("--schema-dir")
        .arg(dir)
        // The mock cluster's group coordinator rejects shorter sessions.
        .args(["-X", "session.timeout.ms=6000"])
        .env("EARLYKILL_LOG_FORMAT", "text")
        .stdin(Stdio::null());
    command
}

#[derive(serde::Serialize)]
struct PostedV2<'a> {
    variant_id: &'a str,
    persona_id: &'a str,
    post_id: &'a str,
    expected_engagement_rate: f64,
    posted_at: i64,
    kill_threshold: Option<f64>,
    min_interactions: Option<i32>,
    timeout_minutes: Option<i32>,
    metadata: BTreeMap<String, String>,
    campaign_id: Option<&'a str>,
}

#[test]
fn a_record_from_a_newer_schema_with_an_added_optional_field_reaches_the_fold() {
    let kafka = Kafka::new(1);
    let v2 = posted_schema_with(serde_json::json!(
        {"name": "campaign_id", "type": ["null", "string"], "default": null, "doc": "added by v2"}
    ));
    let dir = schema_dir("newer", &v2);
    let schema = apache_avro::Schema::parse_str(&v2).expect("v2 parses");
    let mut value = Vec::new();
    encode_with_schema(
        &schema,
        fingerprint(&v2).expect("fingerprint"),
        &PostedV2 {
            variant_id: "v-newer",
            persona_id: "persona",
            post_id: "post",
            expected_engagement_rate: 0.05,
            posted_at: chrono::Utc::now().timestamp_millis(),
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: None,
            metadata: BTreeMap::new(),
            campaign_id: Some("spring"),
        },
        &mut value,
    )
    .expect("encode with v2");
    kafka.send_raw(
        &kafka.config.topics.posted,
        Some(b"v-newer"),
        Some(&value),
        &[],
    );
    kafka.flush();

    let mut child = earlykill(&kafka, &dir, "schema-dir")
        .stdout(Stdio::null())
        .spawn()
        .expect("start earlykill run");
    let decisions = kafka.decisions(1);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(decisions[0].variant_id, "v-newer");
    assert_eq!(decisions[0].kind, DecisionKind::Started);
    assert_eq!(decisions[0].expected_engagement_rate, 0.05);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_version_this_build_cannot_read_is_refused_at_start_naming_the_file() {
    let kafka = Kafka::new(1);
    // The writer renamed a field this build's reader requires and has no
    // default for: its records cannot be read.
    let mut schema: serde_json::Value =
        serde_json::from_str(Contract::VariantPosted.json()).expect("bundled schema is JSON");
    for field in schema["fields"].as_array_mut().expect("fields") {
        if field["name"] == "expected_engagement_rate" {
            field["name"] = "expected_rate".into();
        }
    }
    let dir = schema_dir("incompatible", &schema.to_string());
    let output = earlykill(&kafka, &dir, "schema-dir-bad")
        .output()
        .expect("run earlykill");
    assert!(!output.status.success(), "refused");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("schema-dir"), "{text}");
    assert!(text.contains("variant_posted.v2.avsc"), "{text}");
    assert!(text.contains("expected_engagement_rate"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
