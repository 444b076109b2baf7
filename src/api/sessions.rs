//! The seeds' endpoints, over the processor's live state, the
//! variant_monitoring table and the input topics.
//!
//! - `GET /performance-monitor/status/{variant_id}`: an active session's
//!   live figures from its owner's memory (`"source": "live"`), this
//!   instance's or, asked through [`crate::cluster`], another's; an ended
//!   session's final row from PostgreSQL when a database is configured
//!   (`"source": "database"`); 404 for a variant nobody knows.
//! - `GET /performance-monitor/active?limit=100&after=<variant_id>`: the
//!   group's active sessions in `variant_id` order, a page at a time,
//!   merged from every instance's own (`group.rs`); partial answers say so.
//!   `scope=local` on both: this instance's memory only.
//! - `POST /performance-monitor/start-monitoring`: validates the body as a
//!   VariantPosted and publishes it; 202 with where it was written.
//! - `POST /performance-monitor/stop/{variant_id}`: publishes a
//!   StopMonitoring command (optional body: `reason`, `requested_by`); the
//!   stopped decision follows through the log.
//!
//! The first service's paths (`/performance/monitor/start`,
//! `/performance/monitor/{variant_id}/status`, `/performance/monitor/active`)
//! route to the same handlers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::contract::{self, Source, StatusWord};
use super::{error, group, Shared};
use crate::projector::SessionRow;
use crate::upstream::{Delivered, PublishError};
use earlykill_core::event::validate;
use earlykill_core::event::{Millis, SessionStatus, StopMonitoring, VariantPosted};
use earlykill_core::monitor::{rule, SessionView};

/// Sessions per page of `active` unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// Most sessions per page.
const MAX_PAGE: usize = 1000;

/// `scope=local`: this instance's memory only, as another instance asks.
fn local_scope(query: &HashMap<String, String>) -> Result<bool, BadRequest> {
    match query.get("scope").map(String::as_str) {
        None => Ok(false),
        Some("local") => Ok(true),
        Some(other) => Err(BadRequest::new(
            format!("scope {other:?} is not a scope; use scope=local, or leave it out for the whole group"),
            Some("scope"),
        )),
    }
}

/// The instance id this process announces, for live answers.
fn me(api: &Shared) -> Option<String> {
    api.cluster.as_ref().map(|c| c.instance().to_owned())
}

pub(super) async fn status(
    State(api): State<Shared>,
    Path(variant_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let local = match local_scope(&query) {
        Ok(local) => local,
        Err(refused) => return refused.into_response(),
    };
    if let Some(unknown) = query.keys().find(|k| *k != "scope") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {unknown:?}; the only parameter is scope"),
            Some(unknown),
        );
    }
    let (live, running) = match &api.processor {
        Some((status, sessions)) => match sessions.get_in(&variant_id, &status.get().partitions) {
            Ok(live) => (live, true),
            Err(_) => (None, false),
        },
        None => (None, false),
    };
    let live_answer = |view: &SessionView, api: &Shared| {
        let mut answer = live_json(view);
        answer.instance = me(api);
        if let Some((status, sessions)) = &api.processor {
            answer.held_out = sessions.held_out(&view.variant_id);
            answer.shadow = sessions
                .shadows_in(&view.variant_id, &status.get().partitions)
                .unwrap_or_default()
                .iter()
                .map(|(policy, view)| shadow_json(policy, view))
                .collect();
        }
        answer
    };
    if local {
        return match &live {
            Some(view) => Json(live_answer(view, &api)).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                format!("variant {variant_id:?} is not in this instance's memory"),
                None,
            ),
        };
    }
    if let Some(view) = &live {
        if view.state.status == SessionStatus::Active {
            return Json(live_answer(view, &api)).into_response();
        }
    }
    // Another instance may own it: its memory has the live figures.
    let mut missing = Vec::new();
    let mut ended_elsewhere: Option<Value> = None;
    if let Some(cluster) = &api.cluster {
        let path = format!(
            "/performance-monitor/status/{}?scope=local",
            percent_encode(&variant_id)
        );
        // The partitions someone answered for: this instance's, and those
        // the instances that answered announced.
        let mut covered: Vec<i32> = match &api.processor {
            Some((status, _)) => status.get().partitions,
            None => Vec::new(),
        };
        for (member, answer) in group::ask_all::<Value>(cluster, &path).await {
            match answer {
                group::Answer::Found(found) if found["status"] == "active" => {
                    return Json(found).into_response()
                }
                group::Answer::Found(found) => {
                    ended_elsewhere = Some(found);
                    covered.extend(member.partitions);
                }
                group::Answer::NotFound => covered.extend(member.partitions),
                group::Answer::Unreachable(_) => missing.extend(member.partitions),
            }
        }
        // A partition nobody answered for (restoring, or between owners)
        // may hold the variant too.
        let input_partitions = match &api.processor {
            Some((status, _)) => status.get().input_partitions,
            None => 0,
        }
        .max(cluster.input_partitions());
        missing.extend(group::missing(input_partitions, &covered));
        missing.sort_unstable();
        missing.dedup();
    }
    if let Some(pool) = &api.database {
        match crate::projector::latest_session(pool, &variant_id).await {
            Ok(Some(row)) => {
                let mut answer = row_json(&row);
                answer.missing_partitions = missing;
                return Json(answer).into_response();
            }
            Ok(None) => {}
            Err(e) if live.is_none() && ended_elsewhere.is_none() => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the variant is not in this instance's memory and {e}"),
                    None,
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "status: database unavailable; answering from memory")
            }
        }
    }
    match (live, ended_elsewhere) {
        (Some(view), _) => Json(live_answer(&view, &api)).into_response(),
        (None, Some(found)) => Json(found).into_response(),
        (None, None) if !running && api.database.is_none() && api.cluster.is_none() => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process has no running processor and no database to answer from",
            None,
        ),
        (None, None) if !missing.is_empty() => error(
            StatusCode::NOT_FOUND,
            format!(
                "no session is known for variant {variant_id:?} here; the owners of partitions {missing:?} did not answer, and may hold it"
            ),
            None,
        ),
        (None, None) => error(
            StatusCode::NOT_FOUND,
            format!("no session is known for variant {variant_id:?}"),
            None,
        ),
    }
}

/// `variant_id` as one path segment.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

pub(super) async fn active(
    State(api): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_PAGE,
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                Some("limit"),
            )
        }
    };
    if let Some(unknown) = query
        .keys()
        .find(|k| !["limit", "after", "scope"].contains(&k.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown query parameter {unknown:?}; the parameters are limit, after and scope"
            ),
            Some(unknown),
        );
    }
    let local = match local_scope(&query) {
        Ok(local) => local,
        Err(refused) => return refused.into_response(),
    };
    let Some((status, sessions)) = &api.processor else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process runs no processor",
            None,
        );
    };
    let after = query.get("after").map(String::as_str);
    let status = status.get();
    let own = match sessions.active(after, limit, &status.partitions) {
        Ok(page) => page,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    };
    let own = contract::ActivePage {
        total: own.total,
        sessions: own
            .sessions
            .iter()
            .map(|view| {
                let mut answer = live_json(view);
                answer.instance = me(&api);
                answer
            })
            .collect(),
        next: own.next,
        partitions: status.partitions.clone(),
        partial: false,
        missing_partitions: Vec::new(),
        unreachable: Vec::new(),
    };
    let cluster = match &api.cluster {
        Some(cluster) if !local => cluster,
        _ => return Json(own).into_response(),
    };
    let mut query = format!("/performance-monitor/active?scope=local&limit={limit}");
    if let Some(after) = after {
        query.push_str(&format!("&after={}", percent_encode(after)));
    }
    let mut pages = vec![group::LocalPage {
        total: own.total,
        sessions: own
            .sessions
            .iter()
            .map(|s| serde_json::to_value(s).expect("a session serialises"))
            .collect(),
        next: own.next,
        partitions: own.partitions,
    }];
    let mut unreachable = Vec::new();
    for (_, answer) in group::ask_all::<group::LocalPage>(cluster, &query).await {
        match answer {
            group::Answer::Found(page) => pages.push(page),
            group::Answer::NotFound => {}
            group::Answer::Unreachable(instance) => unreachable.push(instance),
        }
    }
    let merged = group::merge(pages, limit);
    let input_partitions = status.input_partitions.max(cluster.input_partitions());
    let missing = group::missing(input_partitions, &merged.partitions);
    Json(serde_json::json!({
        "total": merged.total,
        "sessions": merged.sessions,
        "next": merged.next,
        "partitions": merged.partitions,
        "partial": !missing.is_empty(),
        "missing_partitions": missing,
        "unreachable": unreachable,
    }))
    .into_response()
}

pub(super) async fn start_monitoring(State(api): State<Shared>, body: Bytes) -> Response {
    let now = Utc::now().timestamp_millis();
    let event = match Body::parse(&body).and_then(|b| b.variant_posted(now)) {
        Ok(event) => event,
        Err(rejected) => return rejected.into_response(),
    };
    if let Err(e) = validate::posted(&event, &api.limits, now) {
        return error(StatusCode::BAD_REQUEST, e.to_string(), Some(e.field()));
    }
    let Some(publisher) = &api.publisher else {
        return no_publisher();
    };
    accepted(&event.variant_id, publisher.post(&event).await)
}

pub(super) async fn stop(
    State(api): State<Shared>,
    Path(variant_id): Path<String>,
    body: Bytes,
) -> Response {
    let now = Utc::now().timestamp_millis();
    let command = match Body::parse_optional(&body).and_then(|b| b.stop(variant_id, now)) {
        Ok(command) => command,
        Err(rejected) => return rejected.into_response(),
    };
    if let Err(e) = validate::stop(&command, &api.limits, now) {
        return error(StatusCode::BAD_REQUEST, e.to_string(), Some(e.field()));
    }
    let Some(publisher) = &api.publisher else {
        return no_publisher();
    };
    accepted(&command.variant_id, publisher.stop(&command).await)
}

fn no_publisher() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "this process has no Kafka producer to publish with",
        None,
    )
}

fn accepted(variant_id: &str, result: Result<Delivered, PublishError>) -> Response {
    match result {
        Ok(delivered) => (
            StatusCode::ACCEPTED,
            Json(contract::Accepted {
                variant_id: variant_id.to_owned(),
                topic: delivered.topic,
                partition: delivered.partition,
                offset: delivered.offset,
            }),
        )
            .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}

/// A JSON object body, read field by field so that every error names its
/// field.
struct Body(Map<String, Value>);

/// A 400 answer: what is wrong, and the field at fault.
struct BadRequest {
    message: String,
    field: Option<String>,
}

impl BadRequest {
    fn new(message: impl Into<String>, field: Option<&str>) -> BadRequest {
        BadRequest {
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.message, self.field.as_deref())
    }
}

type Rejected = BadRequest;

impl Body {
    fn parse(bytes: &[u8]) -> Result<Body, Rejected> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(BadRequest::new("the body must be a JSON object", None)),
            Err(e) => Err(BadRequest::new(format!("the body is not JSON: {e}"), None)),
        }
    }

    /// An empty body is an empty object.
    fn parse_optional(bytes: &[u8]) -> Result<Body, Rejected> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Body(Map::new()))
        } else {
            Body::parse(bytes)
        }
    }

    fn only(&self, known: &[&str]) -> Result<(), Rejected> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(BadRequest::new(
                format!(
                    "unknown field {unknown:?}; the fields are {}",
                    known.join(", ")
                ),
                Some(unknown),
            )),
            None => Ok(()),
        }
    }

    fn wrong(field: &str, expected: &str) -> Rejected {
        BadRequest::new(format!("{field} must be {expected}"), Some(field))
    }

    fn string(&self, field: &str) -> Result<Option<String>, Rejected> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Self::wrong(field, "a string")),
        }
    }

    fn required(&self, field: &str) -> Result<String, Rejected> {
        self.string(field)?
            .ok_or_else(|| BadRequest::new(format!("{field} is required"), Some(field)))
    }

    fn number(&self, field: &str) -> Result<Option<f64>, Rejected> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(Self::wrong(field, "a number")),
        }
    }

    fn integer(&self, field: &str) -> Result<Option<i32>, Rejected> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| Self::wrong(field, "a whole number")),
            Some(_) => Err(Self::wrong(field, "a whole number")),
        }
    }

    /// An RFC 3339 string or milliseconds since the epoch.
    fn time(&self, field: &str) -> Result<Option<Millis>, Rejected> {
        let expected = "an RFC 3339 time (2026-11-23T10:00:00Z) or milliseconds since the epoch";
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::wrong(field, expected)),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|_| Self::wrong(field, expected)),
            Some(_) => Err(Self::wrong(field, expected)),
        }
    }

    fn metadata(&self, field: &str) -> Result<BTreeMap<String, String>, Rejected> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok((k.clone(), v.clone())),
                    _ => Err(Self::wrong(field, "an object of strings")),
                })
                .collect(),
            Some(_) => Err(Self::wrong(field, "an object of strings")),
        }
    }

    fn variant_posted(&self, now: Millis) -> Result<VariantPosted<'static>, Rejected> {
        self.only(&[
            "variant_id",
            "persona_id",
            "post_id",
            "expected_engagement_rate",
            "posted_at",
            "kill_threshold",
            "min_interactions",
            "timeout_minutes",
            "metadata",
        ])?;
        Ok(VariantPosted {
            variant_id: Cow::Owned(self.required("variant_id")?),
            persona_id: Cow::Owned(self.required("persona_id")?),
            post_id: Cow::Owned(self.required("post_id")?),
            expected_engagement_rate: self.number("expected_engagement_rate")?.ok_or_else(
                || {
                    BadRequest::new(
                        "expected_engagement_rate is required",
                        Some("expected_engagement_rate"),
                    )
                },
            )?,
            posted_at: self.time("posted_at")?.unwrap_or(now),
            kill_threshold: self.number("kill_threshold")?,
            min_interactions: self.integer("min_interactions")?,
            timeout_minutes: self.integer("timeout_minutes")?,
            metadata: self.metadata("metadata")?,
        })
    }

    fn stop(&self, variant_id: String, now: Millis) -> Result<StopMonitoring<'static>, Rejected> {
        self.only(&["reason", "requested_by"])?;
        Ok(StopMonitoring {
            variant_id: Cow::Owned(variant_id),
            reason: Cow::Owned(
                self.string("reason")?
                    .unwrap_or_else(|| "stopped through the HTTP API".into()),
            ),
            requested_by: Cow::Owned(
                self.string("requested_by")?
                    .unwrap_or_else(|| "http-api".into()),
            ),
            requested_at: now,
        })
    }
}

fn time(millis: Millis) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn status_word(status: SessionStatus) -> StatusWord {
    match status {
        SessionStatus::Active => StatusWord::Active,
        SessionStatus::Killed => StatusWord::Killed,
        SessionStatus::TimedOut => StatusWord::TimedOut,
        SessionStatus::Stopped => StatusWord::Stopped,
    }
}

fn live_json(view: &SessionView) -> contract::SessionStatus {
    let s = &view.state;
    let thresholds = rule::Thresholds {
        kill_threshold: s.kill_threshold,
        min_interactions: u32::try_from(s.min_interactions).unwrap_or(0),
        timeout_minutes: u32::try_from(s.timeout_minutes).unwrap_or(0),
    };
    contract::SessionStatus {
        variant_id: view.variant_id.clone(),
        source: Source::Live,
        status: status_word(s.status),
        is_active: s.status == SessionStatus::Active,
        session_id: None,
        persona_id: s.persona_id.clone(),
        post_id: Some(s.post_id.clone()),
        expected_engagement_rate: s.expected_engagement_rate,
        kill_threshold: Some(s.kill_threshold),
        min_interactions: Some(s.min_interactions),
        timeout_minutes: Some(s.timeout_minutes),
        interactions: Some(s.interactions),
        views: Some(s.views),
        engagement_rate: view.engagement_rate,
        kill_below_engagement_rate: Some(rule::kill_limit(s.expected_engagement_rate, &thresholds)),
        reason: None,
        posted_at: time(s.posted_at),
        deadline: time(view.deadline),
        ended_at: s.ended_at.and_then(time),
        instance: None,
        missing_partitions: Vec::new(),
        held_out: false,
        shadow: Vec::new(),
    }
}

fn shadow_json(policy: &str, view: &SessionView) -> contract::ShadowVerdict {
    let live = live_json(view);
    contract::ShadowVerdict {
        policy: policy.to_owned(),
        status: live.status,
        kill_threshold: view.state.kill_threshold,
        min_interactions: view.state.min_interactions,
        timeout_minutes: view.state.timeout_minutes,
        kill_below_engagement_rate: live.kill_below_engagement_rate.unwrap_or_default(),
        ended_at: live.ended_at,
    }
}

fn row_json(row: &SessionRow) -> contract::SessionStatus {
    let active = row.is_active.unwrap_or(false);
    // The same words as a live answer: the kind of the decision that ended
    // the session, kept in the row's metadata.
    let status = match (active, row.ended_by.as_deref()) {
        (true, _) => StatusWord::Active,
        (false, Some("killed")) => StatusWord::Killed,
        (false, Some("timed_out")) => StatusWord::TimedOut,
        (false, Some("stopped")) => StatusWord::Stopped,
        (false, _) if row.was_killed.unwrap_or(false) => StatusWord::Killed,
        (false, _) => StatusWord::Ended,
    };
    let rfc3339 = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    contract::SessionStatus {
        variant_id: row.variant_id.clone(),
        source: Source::Database,
        status,
        is_active: active,
        session_id: Some(row.session_id.clone()),
        persona_id: row.persona_id.clone(),
        post_id: row.post_id.clone(),
        expected_engagement_rate: row.expected_engagement_rate,
        kill_threshold: row.kill_threshold,
        min_interactions: row.min_interactions,
        timeout_minutes: row.timeout_minutes,
        interactions: row.final_interaction_count.map(i64::from),
        views: row.final_view_count.map(i64::from),
        engagement_rate: row.final_engagement_rate,
        kill_below_engagement_rate: None,
        reason: row.end_reason.clone().or_else(|| row.kill_reason.clone()),
        posted_at: Some(rfc3339(&row.started_at)),
        deadline: None,
        ended_at: row.ended_at.as_ref().map(rfc3339),
        instance: None,
        missing_partitions: Vec::new(),
        held_out: false,
        shadow: Vec::new(),
    }
}
