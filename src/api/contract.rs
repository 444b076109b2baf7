//! The HTTP API's request and response bodies as types, and the OpenAPI
//! document generated from them (`GET /openapi.json`): the schemas in the
//! document are derived (schemars) from the same structs the handlers
//! serialise, so the two cannot drift apart.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Where a status answer comes from.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// This instance's memory: the session's committed figures.
    Live,
    /// The `variant_monitoring` table.
    Database,
}

/// A session's state, in the same words from memory and from the table.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusWord {
    /// Being monitored.
    Active,
    /// Ended by the kill rule.
    Killed,
    /// Its window ended without a kill.
    TimedOut,
    /// Stopped by a command.
    Stopped,
    /// Ended, how is not recorded (rows written before that was kept).
    Ended,
}

/// `GET /performance-monitor/status/{variant_id}`: one session.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SessionStatus {
    /// The variant.
    pub variant_id: String,
    /// Where the answer comes from.
    pub source: Source,
    /// The session's state.
    pub status: StatusWord,
    /// Whether it is still monitored.
    pub is_active: bool,
    /// `variant_id@posted_at+timeout m` (from the table).
    pub session_id: Option<String>,
    /// Persona it was posted as.
    pub persona_id: String,
    /// The post.
    pub post_id: Option<String>,
    /// Expected engagement rate.
    pub expected_engagement_rate: f64,
    /// Effective kill threshold.
    pub kill_threshold: Option<f64>,
    /// Effective minimum interactions.
    pub min_interactions: Option<i32>,
    /// Effective window, minutes.
    pub timeout_minutes: Option<i32>,
    /// Engagements counted.
    pub interactions: Option<i64>,
    /// Views counted.
    pub views: Option<i64>,
    /// interactions / views; null without views.
    pub engagement_rate: Option<f64>,
    /// The rate below which it is killed once enough interactions are in
    /// (from memory).
    pub kill_below_engagement_rate: Option<f64>,
    /// Why it ended (from the table).
    pub reason: Option<String>,
    /// When it was posted, RFC 3339.
    pub posted_at: Option<String>,
    /// When its window ends, RFC 3339 (from memory).
    pub deadline: Option<String>,
    /// When it ended, RFC 3339.
    pub ended_at: Option<String>,
    /// The instance whose memory answered (a live answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// With several instances: the partitions whose owners could not be
    /// asked, so an answer from the table may be older than the owner's
    /// memory. Absent when every owner answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_partitions: Vec<i32>,
    /// In the hold-out share (`--holdout-share`): watched, never killed
    /// live. Absent when not held out (a live answer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_out: bool,
    /// What each shadow policy (`--shadow-policy`, and `holdout`) has of
    /// this variant, by policy name. Absent without shadow policies (a
    /// live answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowVerdict>,
}

/// A shadow policy's session of a variant: what it would have decided.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShadowVerdict {
    /// The policy.
    pub policy: String,
    /// Its session's state under that policy.
    pub status: StatusWord,
    /// The policy's effective kill threshold.
    pub kill_threshold: f64,
    /// The policy's effective minimum interactions.
    pub min_interactions: i32,
    /// The policy's effective window, minutes.
    pub timeout_minutes: i32,
    /// The rate below which the policy kills, once enough interactions are
    /// in.
    pub kill_below_engagement_rate: f64,
    /// When it ended under the policy, RFC 3339.
    pub ended_at: Option<String>,
}

/// `GET /performance-monitor/active`: a page of active sessions, the
/// whole group's (or, with `scope=local`, this instance's).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ActivePage {
    /// Active sessions in the partitions answered for, in all.
    pub total: usize,
    /// This page, in `variant_id` order.
    pub sessions: Vec<SessionStatus>,
    /// The `after` cursor of the next page; null on the last.
    pub next: Option<String>,
    /// The input partitions whose sessions this answer holds.
    pub partitions: Vec<i32>,
    /// Some partitions could not be asked (an owner unreachable, a
    /// rebalance or a restore under way): the answer lacks their sessions.
    pub partial: bool,
    /// Those partitions.
    pub missing_partitions: Vec<i32>,
    /// The instances that did not answer.
    pub unreachable: Vec<String>,
}

/// `POST` answers: where the command or post was written.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Accepted {
    /// The variant.
    pub variant_id: String,
    /// The topic written to.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
    /// The part of the request at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// One readiness check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Readiness {
    /// Every check passed.
    pub ready: bool,
    /// Each configured check by name (processor, projector, broker,
    /// database).
    pub checks: BTreeMap<String, Check>,
}

/// An identifier as the event contract checks it: 1 to 256 bytes (the
/// schema says characters; the server counts UTF-8 bytes, so a longer
/// id in characters outside ASCII is refused), no control character.
const ID_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";
/// Free text: no control character but tab, line feed and carriage return.
const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

/// `POST /performance-monitor/start-monitoring`: the body, published as a
/// VariantPosted (read field by field, so that an error names its field).
/// Exactly the fields below: another is refused.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StartMonitoring {
    /// 1–256 bytes, no control characters.
    #[schemars(length(min = 1, max = 256), regex(pattern = ID_PATTERN))]
    pub variant_id: String,
    /// 1–256 bytes, no control characters.
    #[schemars(length(min = 1, max = 256), regex(pattern = ID_PATTERN))]
    pub persona_id: String,
    /// 1–256 bytes, no control characters.
    #[schemars(length(min = 1, max = 256), regex(pattern = ID_PATTERN))]
    pub post_id: String,
    /// In (0, 1].
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1))]
    pub expected_engagement_rate: f64,
    /// In (0, 1]; the configured default when absent.
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1))]
    pub kill_threshold: Option<f64>,
    /// 1–1,000,000; the configured default when absent.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_interactions: Option<i32>,
    /// 1–10080; the configured default when absent.
    #[schemars(range(min = 1, max = 10_080))]
    pub timeout_minutes: Option<i32>,
    /// RFC 3339 or milliseconds since the epoch (0 to the end of year
    /// 9999), at most the future skew ahead of the server's clock; now when
    /// absent.
    #[schemars(schema_with = "posted_at_schema")]
    #[serde(default)]
    pub posted_at: Option<Value>,
    /// Strings only; at most 64 entries, keys and values of at most 1 KiB
    /// with no control character but tab and line breaks.
    #[schemars(schema_with = "metadata_schema")]
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

fn posted_at_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            { "type": "string", "format": "date-time" },
            { "type": "integer", "minimum": 0, "maximum": 253_402_300_799_999_i64 },
            { "type": "null" }
        ]
    })
}

fn metadata_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["object", "null"],
        "maxProperties": 64,
        "propertyNames": { "maxLength": 1024, "pattern": TEXT_PATTERN },
        "additionalProperties": { "type": "string", "maxLength": 1024, "pattern": TEXT_PATTERN }
    })
}

/// `POST /performance-monitor/stop/{variant_id}`: the body, `{}` for both
/// defaults. Exactly the fields below.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Stop {
    /// Why (at most 4 KiB, no control character but tab and line breaks);
    /// "stopped through the HTTP API" when absent.
    #[schemars(length(max = 4096), regex(pattern = TEXT_PATTERN))]
    #[serde(default)]
    pub reason: Option<String>,
    /// Who (1–256 bytes, no control characters); "http-api" when absent.
    #[schemars(length(min = 1, max = 256), regex(pattern = ID_PATTERN))]
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// The OpenAPI 3.1 document of the API.
pub fn openapi() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let refs: Vec<(&str, Value)> = vec![
        (
            "SessionStatus",
            generator.subschema_for::<SessionStatus>().to_value(),
        ),
        (
            "ActivePage",
            generator.subschema_for::<ActivePage>().to_value(),
        ),
        ("Accepted", generator.subschema_for::<Accepted>().to_value()),
        (
            "ErrorBody",
            generator.subschema_for::<ErrorBody>().to_value(),
        ),
        ("Health", generator.subschema_for::<Health>().to_value()),
        (
            "Readiness",
            generator.subschema_for::<Readiness>().to_value(),
        ),
        (
            "StartMonitoring",
            generator.subschema_for::<StartMonitoring>().to_value(),
        ),
        ("Stop", generator.subschema_for::<Stop>().to_value()),
    ];
    let r: BTreeMap<&str, Value> = refs.into_iter().collect();
    let components: Map<String, Value> = generator.take_definitions(true);
    let json_body =
        |schema: &Value| json!({ "content": { "application/json": { "schema": schema } } });
    let answer = |description: &str, schema: &Value| {
        let mut body = json_body(schema);
        body["description"] = Value::from(description);
        body
    };
    let error = |description: &str| answer(description, &r["ErrorBody"]);
    let variant = json!({ "name": "variant_id", "in": "path", "required": true,
        "schema": { "type": "string", "minLength": 1, "maxLength": 256, "pattern": ID_PATTERN } });
    let bearer = json!([{ "bearer": [] }]);
    let scope = json!({ "name": "scope", "in": "query", "description": "`local`: this instance's memory only (what instances ask each other); absent: the whole group", "schema": { "type": "string", "enum": ["local"] } });
    let status_op = json!({
        "summary": "One session: live figures from its owner's memory, an ended one from the table",
        "parameters": [variant, scope],
        "responses": {
            "200": answer("The session", &r["SessionStatus"]),
            "400": error("A bad scope or an unknown parameter (named in `field`)"),
            "404": error("No session is known for the variant"),
            "503": error("Neither a processor nor a database to answer from"),
        }
    });
    let active_op = json!({
        "summary": "The group's active sessions, a page at a time",
        "parameters": [
            { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
            { "name": "after", "in": "query", "schema": { "type": "string" } },
            scope
        ],
        "responses": {
            "200": answer("A page", &r["ActivePage"]),
            "400": error("A bad limit or an unknown parameter"),
            "503": error("No processor runs here"),
        }
    });
    let start_op = json!({
        "summary": "Publish a VariantPosted: the processor starts the session",
        "security": bearer,
        "requestBody": { "required": true, "content": { "application/json": { "schema": r["StartMonitoring"] } } },
        "responses": {
            "202": answer("Published", &r["Accepted"]),
            "400": error("A field is missing or invalid (named in `field`)"),
            "401": error("The token is missing or wrong"),
            "415": error("The body is not application/json"),
            "503": error("No producer, or Kafka unavailable"),
        }
    });
    let stop_op = json!({
        "summary": "Publish a StopMonitoring command: the stopped decision follows",
        "security": bearer,
        "parameters": [variant],
        "requestBody": { "required": true, "description": "`{}` takes both defaults. The body (and its `Content-Type: application/json`) is required so that a web page cannot send the command without the browser asking first (CORS)", "content": { "application/json": { "schema": r["Stop"] } } },
        "responses": {
            "202": answer("Published", &r["Accepted"]),
            "400": error("A field is invalid (named in `field`)"),
            "401": error("The token is missing or wrong"),
            "415": error("The body is not application/json"),
            "503": error("No producer, or Kafka unavailable"),
        }
    });
    let mut paths = Map::new();
    paths.insert("/healthz".into(), json!({ "get": { "summary": "The process answers", "responses": { "200": answer("Alive", &r["Health"]) } } }));
    paths.insert("/readyz".into(), json!({ "get": { "summary": "Every configured part is ready", "responses": {
        "200": answer("Ready", &r["Readiness"]), "503": answer("Not ready, with each check's reason", &r["Readiness"]) } } }));
    paths.insert("/metrics".into(), json!({ "get": { "summary": "Prometheus text", "responses": { "200": {
        "description": "Prometheus exposition format 0.0.4", "content": { "text/plain": { "schema": { "type": "string" } } } } } } }));
    paths.insert("/openapi.json".into(), json!({ "get": { "summary": "This document", "responses": { "200": {
        "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } } } }));
    paths.insert(
        "/performance-monitor/status/{variant_id}".into(),
        json!({ "get": status_op }),
    );
    paths.insert(
        "/performance-monitor/active".into(),
        json!({ "get": active_op }),
    );
    paths.insert(
        "/performance-monitor/start-monitoring".into(),
        json!({ "post": start_op }),
    );
    paths.insert(
        "/performance-monitor/stop/{variant_id}".into(),
        json!({ "post": stop_op }),
    );
    // The first service's paths.
    paths.insert(
        "/performance/monitor/{variant_id}/status".into(),
        json!({ "get": status_op }),
    );
    paths.insert(
        "/performance/monitor/active".into(),
        json!({ "get": active_op }),
    );
    paths.insert(
        "/performance/monitor/start".into(),
        json!({ "post": start_op }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "earlykill",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Watches posted variants and kills the ones that engage at less than half the expected rate. Writes publish to Kafka; decisions follow through the log."
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        }
    })
}
