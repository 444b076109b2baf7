//! Confluent Schema Registry framing (a zero byte, the schema id, the
//! datum) against a stand-in registry: an axum server answering
//! `GET /schemas/ids/{id}` as Confluent's REST API documents it (no
//! registry server can be installed on these machines). Records framed with
//! a known id are decided, each id is fetched once, an id the registry does
//! not know is a dead letter, and a registry outage loses nothing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::kafka::{Kafka, Running};
use common::posted;
use earlykill::event::codec::encode;
use earlykill::event::{Contract, DecisionKind};
use earlykill::registry::Registry;
use serde_json::json;

#[derive(Default)]
struct Stand {
    /// Requests per id.
    hits: Mutex<HashMap<u32, usize>>,
    /// Requests answered 503 before the registry comes back.
    down_for: AtomicUsize,
}

async fn schema_by_id(
    State(stand): State<Arc<Stand>>,
    Path(id): Path<u32>,
) -> (StatusCode, Json<serde_json::Value>) {
    *stand.hits.lock().unwrap().entry(id).or_default() += 1;
    if stand
        .down_for
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error_code": 50003, "message": "try again"})),
        );
    }
    match id {
        7 | 9 => (
            StatusCode::OK,
            Json(json!({ "schema": Contract::VariantPosted.json() })),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error_code": 40403, "message": "Schema not found"})),
        ),
    }
}

/// The stand-in registry on an ephemeral port; its URL.
fn serve(stand: Arc<Stand>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = Router::new()
                .route("/schemas/ids/{id}", get(schema_by_id))
                .with_state(stand);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    url
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
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["tail", &topics.posted, "--from", "beginning"])
        .args(["--bootstrap-servers", &kafka.cluster.bootstrap_servers()])
        .args(["--schema-registry-url", &url])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run earlykill tail");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
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
