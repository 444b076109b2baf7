//! A stand-in Confluent Schema Registry: an axum server answering the two
//! calls of Confluent's documented REST API that earlykill and Confluent's
//! clients make, `GET /schemas/ids/{id}` and
//! `POST /subjects/{subject}/versions` (no registry server can be
//! installed on these machines).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use earlykill_core::event::Contract;
use serde_json::json;

/// First id given to a registered schema.
pub const FIRST_REGISTERED_ID: u32 = 100;

#[derive(Default)]
pub struct Stand {
    /// Requests per id.
    pub hits: Mutex<HashMap<u32, usize>>,
    /// Requests answered 503 before the registry comes back.
    pub down_for: AtomicUsize,
    /// Registered schemas: (subject, schema, id).
    pub registered: Mutex<Vec<(String, String, u32)>>,
    /// Registration requests received.
    pub registrations: AtomicUsize,
    /// Refuse registrations as incompatible (HTTP 409).
    pub incompatible: AtomicBool,
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
    if let Some((_, schema, _)) = stand
        .registered
        .lock()
        .unwrap()
        .iter()
        .find(|(_, _, i)| *i == id)
    {
        return (StatusCode::OK, Json(json!({ "schema": schema })));
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

async fn register(
    State(stand): State<Arc<Stand>>,
    Path(subject): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    stand.registrations.fetch_add(1, Ordering::SeqCst);
    if stand.incompatible.load(Ordering::SeqCst) {
        return (
            StatusCode::CONFLICT,
            Json(
                json!({"error_code": 409, "message": "Schema being registered is incompatible with an earlier schema for subject"}),
            ),
        );
    }
    let Some(schema) = body["schema"].as_str() else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error_code": 42201, "message": "Invalid schema"})),
        );
    };
    let mut registered = stand.registered.lock().unwrap();
    let id = match registered.iter().find(|(_, s, _)| s == schema) {
        Some((_, _, id)) => *id,
        None => FIRST_REGISTERED_ID + registered.len() as u32,
    };
    if !registered.iter().any(|(s, _, i)| *s == subject && *i == id) {
        registered.push((subject, schema.to_owned(), id));
    }
    (StatusCode::OK, Json(json!({ "id": id })))
}

/// The stand-in registry on an ephemeral port; its URL.
pub fn serve(stand: Arc<Stand>) -> String {
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
                .route("/subjects/{subject}/versions", post(register))
                .with_state(stand);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    url
}
