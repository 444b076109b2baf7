//! The HTTP API over a real listener: health and readiness, the status
//! and active endpoints over a running processor, the two writes through
//! the mock cluster, the token, and `/metrics` as Prometheus text holding
//! every metric name (with the projector writing to the real PostgreSQL).

mod http;
mod schemathesis;

use std::time::{Duration, Instant};

use crate::common::kafka::{Kafka, Running, PATIENCE};
use crate::common::postgres::TestDb;
use crate::common::{interaction, posted, stop, MINUTE};
use earlykill::api::Api;
use earlykill::processor::{Sessions, StatusWatch};
use earlykill::projector::{self, ProjectorConfig};
use earlykill::telemetry;
use earlykill::watch::Watch;
use earlykill_core::event::{DecisionKind, InteractionKind};
use serde_json::json;

use http::{now, publisher, with_processor, Http};

#[test]
fn health_needs_nothing_and_unknown_paths_are_404() {
    let http = Http::serve(Api::default());
    assert_eq!(http.get("/healthz"), (200, json!({ "status": "ok" })));
    let (status, body) = http.get("/no/such/thing");
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[test]
fn readiness_fails_while_the_processor_is_not_running_and_says_why() {
    let http = Http::serve(Api {
        processor: Some((StatusWatch::default(), Sessions::default())),
        ..Api::default()
    });
    let (status, body) = http.get("/readyz");
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["processor"]["ok"], false);
    assert_eq!(
        body["checks"]["processor"]["reason"],
        "the processor is not running"
    );
    let (status, body) = http.get("/performance-monitor/status/v-1");
    assert_eq!(status, 503, "not a 404: nobody could look: {body}");
    // Health does not depend on it.
    assert_eq!(http.get("/healthz").0, 200);
}

#[test]
fn status_and_active_answer_from_the_processors_memory() {
    let kafka = Kafka::new(2);
    let running = Running::start(kafka.processor_config("api-status"));
    running.wait_for_partitions(2);
    let t = now();
    for i in 0..5 {
        kafka.post(&posted(&format!("v-{i}"), t, 0.1));
    }
    kafka.interact(&interaction("e-1", "v-1", InteractionKind::View, 40, t + 1));
    kafka.interact(&interaction("e-2", "v-1", InteractionKind::Like, 3, t + 2));
    kafka.flush();
    running.wait_committed(&kafka.input_ends());
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        ..with_processor(&running)
    });

    let (status, body) = http.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["processor"]["ok"], true);
    assert_eq!(body["checks"]["broker"]["ok"], true);

    let (status, body) = http.get("/performance-monitor/status/v-1");
    assert_eq!(status, 200);
    assert_eq!(body["source"], "live");
    assert_eq!(body["status"], "active");
    assert_eq!(body["views"], 40);
    assert_eq!(body["interactions"], 3);
    assert_eq!(body["engagement_rate"], 3.0 / 40.0);
    assert_eq!(body["kill_below_engagement_rate"], 0.05);
    assert_eq!(body["persona_id"], "persona-of-v-1");

    let (status, body) = http.get("/performance-monitor/status/never-posted");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("never-posted"));

    let mut seen = Vec::new();
    let mut path = "/performance-monitor/active?limit=2".to_owned();
    loop {
        let (status, page) = http.get(&path);
        assert_eq!(status, 200);
        assert_eq!(page["total"], 5);
        let ids: Vec<String> = page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["variant_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next"].as_str() {
            Some(next) => path = format!("/performance-monitor/active?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["v-0", "v-1", "v-2", "v-3", "v-4"]);
    // The first service's paths answer the same.
    let (status, page) = http.get("/performance/monitor/active");
    assert_eq!((status, &page["total"]), (200, &json!(5)));
    let (status, body) = http.get("/performance/monitor/v-1/status");
    assert_eq!((status, &body["status"]), (200, &json!("active")));

    for bad in ["limit=0", "limit=1001", "limit=ten"] {
        let (status, body) = http.get(&format!("/performance-monitor/active?{bad}"));
        assert_eq!((status, &body["field"]), (400, &json!("limit")), "{bad}");
    }
    let (status, body) = http.get("/performance-monitor/active?page=2");
    assert_eq!((status, &body["field"]), (400, &json!("page")));
}

#[test]
fn start_monitoring_publishes_a_post_the_processor_starts() {
    let kafka = Kafka::new(2);
    let running = Running::start(kafka.processor_config("api-start"));
    running.wait_for_partitions(2);
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        ..with_processor(&running)
    });
    let (status, body) = http.post(
        "/performance-monitor/start-monitoring",
        &[],
        r#"{"variant_id": "v-api", "persona_id": "persona_abc", "post_id": "thread_456",
            "expected_engagement_rate": 0.06, "min_interactions": 5,
            "metadata": {"campaign": "spring"}}"#,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["topic"], kafka.config.topics.posted);
    assert_eq!(body["variant_id"], "v-api");

    let started = kafka.decisions(1);
    assert_eq!(started[0].kind, DecisionKind::Started);
    assert_eq!(started[0].variant_id, "v-api");
    assert_eq!(started[0].min_interactions, 5);
    assert_eq!(started[0].metadata["campaign"], "spring");
    running.wait_committed(&kafka.input_ends());
    let (status, body) = http.get("/performance-monitor/status/v-api");
    assert_eq!((status, &body["status"]), (200, &json!("active")));

    let cases = [
        (
            r#"{"variant_id": "v", "persona_id": "p", "post_id": "q", "expected_engagement_rate": 2}"#,
            "expected_engagement_rate",
        ),
        (
            r#"{"variant_id": "v", "post_id": "q", "expected_engagement_rate": 0.1}"#,
            "persona_id",
        ),
        (
            r#"{"variant_id": "v", "persona_id": "p", "post_id": "q"}"#,
            "expected_engagement_rate",
        ),
        (
            r#"{"variant_id": "", "persona_id": "p", "post_id": "q", "expected_engagement_rate": 0.1}"#,
            "variant_id",
        ),
        (
            r#"{"variant_id": "v", "persona_id": "p", "post_id": "q", "expected_rate": 0.1}"#,
            "expected_rate",
        ),
        (
            r#"{"variant_id": "v", "persona_id": "p", "post_id": "q", "expected_engagement_rate": 0.1, "min_interactions": "ten"}"#,
            "min_interactions",
        ),
        (
            r#"{"variant_id": "v", "persona_id": "p", "post_id": "q", "expected_engagement_rate": 0.1, "timeout_minutes": 0}"#,
            "timeout_minutes",
        ),
        (
            r#"{"variant_id": "v", "persona_id": "p", "post_id": "q", "expected_engagement_rate": 0.1, "posted_at": "yesterday"}"#,
            "posted_at",
        ),
        (
            r#"{"variant_id": 7, "persona_id": "p", "post_id": "q", "expected_engagement_rate": 0.1}"#,
            "variant_id",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = http.post("/performance-monitor/start-monitoring", &[], body);
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    for body in ["not json", "[1, 2]", ""] {
        let (status, answer) = http.post("/performance-monitor/start-monitoring", &[], body);
        assert_eq!(status, 400, "{body:?}");
        assert!(answer["error"].is_string());
    }
    // Nothing invalid reached the posted topic.
    let posted_records: i64 = kafka
        .input_ends()
        .iter()
        .filter(|(topic, _, _)| *topic == kafka.config.topics.posted)
        .map(|(_, _, end)| end)
        .sum();
    assert_eq!(posted_records, 1);
}

#[test]
fn stop_publishes_a_command_and_the_stopped_decision_follows_through_the_log() {
    let kafka = Kafka::new(2);
    let running = Running::start(kafka.processor_config("api-stop"));
    running.wait_for_partitions(2);
    kafka.post(&posted("v-stop", now(), 0.1));
    kafka.flush();
    running.wait_committed(&kafka.input_ends());
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        ..with_processor(&running)
    });
    let (status, body) = http.post(
        "/performance-monitor/stop/v-stop",
        &[],
        r#"{"reason": "creative pulled", "requested_by": "ops@example.com"}"#,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["topic"], kafka.config.topics.commands);
    let decisions = kafka.decisions(2);
    let stopped = &decisions[1];
    assert_eq!(stopped.kind, DecisionKind::Stopped);
    assert!(
        stopped.reason.contains("creative pulled"),
        "{}",
        stopped.reason
    );
    assert_eq!(stopped.requested_by.as_deref(), Some("ops@example.com"));

    running.wait_committed(&kafka.input_ends());
    // Without a database, the ended session is answered from memory.
    let (status, body) = http.get("/performance-monitor/status/v-stop");
    assert_eq!(status, 200);
    assert_eq!(
        (&body["status"], &body["is_active"]),
        (&json!("stopped"), &json!(false))
    );

    let (status, body) = http.post("/performance-monitor/stop/v-stop", &[], r#"{"why": "x"}"#);
    assert_eq!((status, &body["field"]), (400, &json!("why")));
}

#[test]
fn writes_need_the_configured_token_and_reads_do_not() {
    let kafka = Kafka::new(1);
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        token: Some("s3cret-token".into()),
        ..Api::default()
    });
    let (status, raw) = http.request("POST", "/performance-monitor/stop/v-1", &[], "");
    assert_eq!(status, 401, "{raw}");
    let (status, _) = http.post(
        "/performance-monitor/stop/v-1",
        &["Authorization: Bearer wrong-token"],
        "",
    );
    assert_eq!(status, 401);
    let (status, _) = http.post(
        "/performance-monitor/start-monitoring",
        &["Authorization: s3cret-token"],
        "{}",
    );
    assert_eq!(status, 401, "the scheme is required");
    let (status, body) = http.post(
        "/performance-monitor/stop/v-1",
        &["Authorization: Bearer s3cret-token"],
        "",
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(http.get("/healthz").0, 200);
    assert_eq!(http.get("/performance-monitor/status/v-1").0, 503);
}

/// Checks every line of a Prometheus text exposition; returns the sample
/// names.
fn parse_prometheus(text: &str) -> Vec<String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(matches!(keyword, "HELP" | "TYPE"), "comment: {line}");
            assert!(name_ok(name), "name in: {line}");
            if keyword == "TYPE" {
                let kind = parts.next().unwrap_or("");
                assert!(
                    matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ),
                    "type in: {line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        assert!(
            value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN"),
            "value in: {line}"
        );
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels close");
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(key), "label in: {line}");
                    assert!(!value.contains('\n'));
                }
                name
            }
            None => series,
        };
        assert!(name_ok(name), "name in: {line}");
        names.push(name.to_owned());
    }
    names
}

#[test]
fn metrics_parse_as_prometheus_text_and_hold_every_name() {
    // As `main` does: the recorder first, so no early metric is lost.
    telemetry::prometheus();
    let kafka = Kafka::new(1);
    let db = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = TestDb::create("api_metrics").await;
        let pool = projector::connect(&db.url, 1).unwrap();
        projector::migrate(&pool).await.unwrap();
        db
    });
    let running = Running::start(kafka.processor_config("api-metrics"));
    running.wait_for_partitions(1);
    let mut projector_config = ProjectorConfig::new(&kafka.cluster.bootstrap_servers(), &db.url);
    projector_config
        .kafka
        .insert("session.timeout.ms".into(), "6000".into());
    projector_config.batch_wait = Duration::from_millis(20);
    let projector_status = Watch::default();
    let projector_stop = earlykill::shutdown::Shutdown::new();
    let projector = {
        let (status, stop) = (projector_status.clone(), projector_stop.clone());
        std::thread::spawn(move || projector::run(projector_config, stop, status))
    };

    // A kill, a timeout (posted after its own deadline) and a stop.
    let t = now();
    kafka.post(&posted("v-kill", t, 0.5));
    kafka.interact(&interaction(
        "e-v",
        "v-kill",
        InteractionKind::View,
        100,
        t + 1,
    ));
    kafka.interact(&interaction(
        "e-l",
        "v-kill",
        InteractionKind::Like,
        10,
        t + 2,
    ));
    kafka.post(&posted("v-late", t - 11 * MINUTE, 0.5));
    kafka.post(&posted("v-stop", t, 0.5));
    kafka.flush();
    // Stopped once started, as an operator would: a stop sent right behind
    // its post, on another topic, may be fetched first (records in flight
    // between topics are what merge-wait-ms is for; its default is 0).
    assert_eq!(kafka.decisions(5).len(), 5);
    kafka.stop(&stop("v-stop", t + 3));
    kafka.flush();
    assert_eq!(kafka.decisions(6).len(), 6);
    assert!(
        projector_status.wait_until(PATIENCE, |s: &earlykill::projector::ProjectorStatus| {
            s.applied.started + s.applied.ended >= 6
        })
    );

    let pool = projector::connect(&db.url, 1).unwrap();
    let http = Http::serve(Api {
        database: Some(pool),
        ..with_processor(&running)
    });
    let (status, body) = http.get("/performance-monitor/status/v-kill");
    assert_eq!(status, 200);
    assert_eq!(body["source"], "database");
    assert_eq!(body["status"], "killed");
    assert_eq!(
        (&body["interactions"], &body["views"]),
        (&json!(10), &json!(100))
    );
    // The same words as a live answer, from the table: timed_out, stopped.
    for (variant, word) in [("v-late", "timed_out"), ("v-stop", "stopped")] {
        let (status, body) = http.get(&format!("/performance-monitor/status/{variant}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["source"], "database");
        assert_eq!(body["status"], word, "{body}");
        assert!(body["reason"].is_string(), "{body}");
    }
    // The first service's path answers the same.
    let (status, seeds) = http.get("/performance/monitor/v-kill/status");
    assert_eq!(status, 200);
    assert_eq!(seeds["status"], "killed");
    let (status, body) = http.get("/readyz");
    assert_eq!(
        (status, &body["checks"]["database"]["ok"]),
        (200, &json!(true))
    );

    // The lag gauges appear within a second of the first batch.
    let deadline = Instant::now() + PATIENCE;
    let (names, text) = loop {
        let (status, text) = http.request("GET", "/metrics", &[], "");
        assert_eq!(status, 200);
        let names = parse_prometheus(&text);
        let has = |n: &str| {
            names.iter().any(|s| {
                s == n
                    || s.strip_prefix(n)
                        .is_some_and(|r| ["_bucket", "_sum", "_count"].contains(&r))
            })
        };
        // This processor runs no shadow policy (tests/services/shadow.rs
        // checks those series where it does).
        let expected = || {
            telemetry::ALL
                .iter()
                .filter(|n| !telemetry::WITH_SHADOWS.contains(n))
        };
        if expected().all(|n| has(n)) || Instant::now() > deadline {
            break (names, text);
        }
        // Polling the endpoint: the condition is checked, never assumed.
        std::thread::sleep(Duration::from_millis(100));
    };
    for name in telemetry::ALL
        .iter()
        .filter(|n| !telemetry::WITH_SHADOWS.contains(n))
    {
        assert!(
            names.iter().any(|s| s.starts_with(name)),
            "{name} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains(
        "performance_monitor_evaluation_latency_seconds_bucket{kind=\"killed\",le=\"0.001\"}"
    ));
    assert!(text.contains(
        "performance_monitor_evaluation_latency_seconds_bucket{kind=\"killed\",le=\"10\"}"
    ));
    assert!(text.contains("performance_monitor_variants_killed_total 1"));
    assert!(text.contains("earlykill_decisions_total{kind=\"timed_out\"} 1"));

    drop(http);
    projector_stop.drain();
    projector.join().unwrap().unwrap();
    running.stop().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(db.drop());
}

#[test]
fn writes_take_json_only_so_a_cross_site_form_cannot_send_one() {
    let kafka = Kafka::new(1);
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        ..Api::default()
    });
    for content_type in [
        "Content-Type: text/plain",
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: multipart/form-data; boundary=x",
    ] {
        let (status, body) = http.post(
            "/performance-monitor/stop/v-1",
            &[content_type],
            r#"{"reason": "from a web page"}"#,
        );
        assert_eq!(status, 415, "{content_type}: {body}");
    }
    let (status, raw) = http.request("POST", "/performance-monitor/stop/v-1", &[], "");
    assert_eq!(status, 415, "no content type: {raw}");
    let (status, body) = http.post(
        "/performance-monitor/stop/v-1",
        &["Content-Type: application/json; charset=utf-8"],
        "",
    );
    assert_eq!(status, 202, "{body}");
}

#[test]
fn control_characters_in_a_write_are_refused_with_the_field() {
    let kafka = Kafka::new(1);
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        ..Api::default()
    });
    let (status, body) = http.post(
        "/performance-monitor/stop/v-1",
        &[],
        r#"{"reason": "\u0000"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "reason");
    let (status, body) = http.post(
        "/performance-monitor/start-monitoring",
        &[],
        r#"{"variant_id": "v\u0007", "persona_id": "p", "post_id": "t",
            "expected_engagement_rate": 0.06}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "variant_id");
    let (status, body) = http.post("/performance-monitor/stop/v%00x", &[], "");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "variant_id");
}

/// The API answers from its own view of the sessions: a status request
/// while the processor sits in a slow commit (every broker answer a few
/// seconds late) comes back before that commit ends, and health with it.
#[test]
fn status_and_health_answer_while_the_processor_is_inside_a_slow_commit() {
    let kafka = Kafka::new(1);
    let mut config = kafka.processor_config("api-slow");
    // Heartbeats slowed by the round trip below must not end the session.
    config
        .kafka
        .insert("session.timeout.ms".into(), "30000".into());
    let running = Running::start(config);
    running.wait_for_partitions(1);
    let http = Http::serve(with_processor(&running));
    kafka.post(&posted("v-slow", now(), 0.1));
    kafka.flush();
    kafka.decisions(1);
    let (status, body) = http.get("/performance-monitor/status/v-slow");
    assert_eq!(status, 200, "{body}");
    let commits = running.status.get().commits;
    // Every answer of the broker now takes a second: the next transaction
    // (add partitions, produce, offsets, commit) takes several.
    kafka
        .cluster
        .broker_round_trip_time(1, Duration::from_secs(1))
        .expect("rtt");
    kafka.interact(&interaction(
        "e-1",
        "v-slow",
        InteractionKind::View,
        5,
        now(),
    ));
    assert!(
        running.status.wait_until(PATIENCE, |s| s.committing),
        "the processor never began to commit the interaction"
    );
    assert_eq!(running.status.get().commits, commits, "not committed yet");
    assert_eq!(http.get("/healthz").0, 200);
    let (status, body) = http.get("/performance-monitor/status/v-slow");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "live");
    let (status, body) = http.get("/performance-monitor/active");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    let after = running.status.get();
    assert!(
        after.committing && after.commits == commits,
        "the answers came while the commit was still under way: {after:?}"
    );
    assert_eq!(
        body["sessions"][0]["views"], 0,
        "the view is not committed yet"
    );
    kafka
        .cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    running.stop().expect("clean stop");
}

/// `/openapi.json` documents every route, and the answers of a running
/// server validate against the schemas it gives for them (a JSON Schema
/// validator over the document's own components).
#[test]
fn the_openapi_document_holds_every_route_and_the_answers_match_it() {
    let kafka = Kafka::new(1);
    let running = Running::start(kafka.processor_config("api-openapi"));
    running.wait_for_partitions(1);
    let http = Http::serve(Api {
        publisher: Some(publisher(&kafka)),
        ..with_processor(&running)
    });
    kafka.post(&posted("v-doc", now(), 0.1));
    kafka.flush();
    kafka.decisions(1);

    let (status, doc) = http.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/performance-monitor/status/{variant_id}",
        "/performance-monitor/active",
        "/performance-monitor/start-monitoring",
        "/performance-monitor/stop/{variant_id}",
        "/performance/monitor/{variant_id}/status",
        "/performance/monitor/active",
        "/performance/monitor/start",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }

    // The schema the document gives for one answer, resolvable on its own.
    let schema_of = |path: &str, method: &str, code: u16| -> serde_json::Value {
        let schema = &doc["paths"][path][method]["responses"][code.to_string()]["content"]
            ["application/json"]["schema"];
        assert!(!schema.is_null(), "{method} {path} documents {code}");
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "allOf": [schema],
        })
    };
    let check = |path: &str, method: &str, code: u16, body: &serde_json::Value| {
        let schema = schema_of(path, method, code);
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        if let Err(e) = validator.validate(body) {
            panic!("{method} {path} {code}: {e}\n{body}");
        }
    };

    // The check can fail: a body of the wrong shape is refused.
    let health = jsonschema::validator_for(&schema_of("/healthz", "get", 200)).expect("schema");
    assert!(health.validate(&json!({ "status": 5 })).is_err());
    let session = schema_of("/performance-monitor/status/{variant_id}", "get", 200);
    let session = jsonschema::validator_for(&session).expect("schema");
    assert!(session
        .validate(&json!({ "variant_id": "v", "status": "dormant" }))
        .is_err());
    let (status, body) = http.get("/healthz");
    check("/healthz", "get", status, &body);
    let (status, body) = http.get("/readyz");
    check("/readyz", "get", status, &body);
    let (status, body) = http.get("/performance-monitor/status/v-doc");
    assert_eq!(status, 200);
    check(
        "/performance-monitor/status/{variant_id}",
        "get",
        status,
        &body,
    );
    let (status, body) = http.get("/performance-monitor/status/nobody");
    assert_eq!(status, 404);
    check(
        "/performance-monitor/status/{variant_id}",
        "get",
        status,
        &body,
    );
    let (status, body) = http.get("/performance-monitor/active?limit=5");
    assert_eq!(status, 200);
    check("/performance-monitor/active", "get", status, &body);
    let (status, body) = http.get("/performance-monitor/active?limit=0");
    check("/performance-monitor/active", "get", status, &body);
    let (status, body) = http.post(
        "/performance-monitor/start-monitoring",
        &[],
        r#"{"variant_id": "v-doc-2", "persona_id": "p", "post_id": "t", "expected_engagement_rate": 0.05}"#,
    );
    assert_eq!(status, 202);
    check(
        "/performance-monitor/start-monitoring",
        "post",
        status,
        &body,
    );
    let (status, body) = http.post(
        "/performance-monitor/start-monitoring",
        &[],
        r#"{"variant_id": "v"}"#,
    );
    check(
        "/performance-monitor/start-monitoring",
        "post",
        status,
        &body,
    );
    let (status, body) = http.post(
        "/performance-monitor/stop/v-doc",
        &["Content-Type: text/plain"],
        "stop",
    );
    check(
        "/performance-monitor/stop/{variant_id}",
        "post",
        status,
        &body,
    );
    let (status, body) = http.post("/performance-monitor/stop/v-doc", &[], "");
    check(
        "/performance-monitor/stop/{variant_id}",
        "post",
        status,
        &body,
    );
    running.stop().expect("clean stop");
}
