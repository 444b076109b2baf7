//! HTTP: health, readiness, `/metrics`, and the seeds' endpoints for one
//! variant's status, the active sessions, starting monitoring and stopping
//! it. One axum listener per process.
//!
//! The API never changes state itself: start-monitoring publishes a
//! VariantPosted and stop publishes a StopMonitoring command, and the
//! decision arrives through the log like any other, so replaying the topics
//! reproduces it.
//!
//! - `GET /healthz` — the process answers; no dependency is checked, so a
//!   broker or database outage never gets a healthy process restarted.
//! - `GET /readyz` — 200 when every configured part is ready (the processor
//!   has joined its group and restored its partitions, a broker answers,
//!   the projector's last database write succeeded, the database answers);
//!   503 otherwise, with each check's result in the body.
//! - `GET /metrics` — Prometheus text.
//! - `GET /performance-monitor/status/{variant_id}`,
//!   `GET /performance-monitor/active`,
//!   `POST /performance-monitor/start-monitoring`,
//!   `POST /performance-monitor/stop/{variant_id}` — see `sessions.rs`.

pub mod contract;
mod group;
mod sessions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde_json::Value;

use crate::processor::{Phase, Sessions, StatusWatch};
use crate::projector::ProjectorStatus;
use crate::upstream::Publisher;
use crate::watch::Watch;

/// How long a readiness check waits for the broker or the database.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the API serves from; every part is optional, and an endpoint whose
/// part is missing answers 503 (or, for readiness, skips that check).
#[derive(Default)]
pub struct Api {
    /// The processor's status and sessions (`earlykill run`, the demo).
    pub processor: Option<(StatusWatch, Sessions)>,
    /// The projector's status (`earlykill project`, the demo).
    pub projector: Option<Watch<ProjectorStatus>>,
    /// Publishes start-monitoring and stop requests; also the broker check.
    pub publisher: Option<Publisher>,
    /// The database with the variant_monitoring table: ended sessions'
    /// final rows, and a readiness check.
    pub database: Option<Pool>,
    /// Bearer token the two POST endpoints require, when set.
    pub token: Option<String>,
    /// The other instances of the group, asked for what this one does not
    /// hold (`earlykill run`); without it the API answers for this
    /// instance alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Validation limits for start-monitoring and stop requests (the
    /// processor's, so that what the API accepts the processor accepts).
    pub limits: earlykill_core::event::validate::Limits,
}

type Shared = Arc<Api>;

/// The routes, for [`serve`] and for tests.
pub fn router(api: Api) -> Router {
    let api: Shared = Arc::new(api);
    let writes = Router::new()
        .route(
            "/performance-monitor/start-monitoring",
            post(sessions::start_monitoring),
        )
        // The first service's path, for callers that still use it.
        .route(
            "/performance/monitor/start",
            post(sessions::start_monitoring),
        )
        .route(
            "/performance-monitor/stop/{variant_id}",
            post(sessions::stop),
        )
        .route_layer(axum::middleware::from_fn(require_json))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route(
            "/performance-monitor/status/{variant_id}",
            get(sessions::status),
        )
        .route("/performance-monitor/active", get(sessions::active))
        // The first service's paths, for callers that still use them.
        .route(
            "/performance/monitor/{variant_id}/status",
            get(sessions::status),
        )
        .route("/performance/monitor/active", get(sessions::active))
        .merge(writes)
        .fallback(not_found)
        .with_state(api)
}

/// The API served in the background by [`spawn`]: it stops when this is
/// dropped.
pub struct Serving {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `api` on `listener` on `runtime` until the returned [`Serving`]
/// is dropped; errors are logged. What `run`, `project` and the demo share.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    listener: tokio::net::TcpListener,
    api: Api,
) -> Serving {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = serve(listener, api, stopped).await {
            tracing::error!(error = %e, "the HTTP API stopped");
        }
    });
    Serving { _stop: stop }
}

/// Serves `api` on `listener` until `shutdown` resolves. Warns when the
/// listener is reachable from other machines and the writes have no token.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() && api.token.is_none() && api.publisher.is_some() {
        tracing::warn!(
            %address,
            "the HTTP API listens beyond loopback with no token: anyone who can reach it can \
             start and stop monitoring; set --http-token (EARLYKILL_HTTP_TOKEN)"
        );
    }
    tracing::info!(%address, "HTTP API listening");
    tokio::spawn(async {
        // Histograms and idle gauges need regular upkeep between scrapes.
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            crate::telemetry::prometheus().run_upkeep();
        }
    });
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error body: `{"error": message}` plus `field` when one field is at
/// fault.
pub(crate) fn error(
    status: StatusCode,
    message: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let body = contract::ErrorBody {
        error: message.into(),
        field: field.map(str::to_owned),
    };
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint", None)
}

async fn require_token(State(api): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>` with the configured token",
                None,
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Writes take `Content-Type: application/json` only (an empty stop body
/// included). A browser sends a cross-site `text/plain` or form POST
/// without asking first; a JSON one it must ask about (CORS preflight),
/// which this API never allows. So a web page cannot steer the API of a
/// machine it runs on.
async fn require_json(request: Request, next: Next) -> Response {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this endpoint takes `Content-Type: application/json`",
            None,
        );
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> Json<contract::Health> {
    Json(contract::Health {
        status: "ok".to_owned(),
    })
}

/// The OpenAPI document, generated once.
async fn openapi() -> Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(contract::openapi).clone())
}

async fn readyz(State(api): State<Shared>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let mut ready = true;
    let mut check = |name: &str, result: Result<(), String>| {
        ready &= result.is_ok();
        checks.insert(
            name.to_owned(),
            contract::Check {
                ok: result.is_ok(),
                reason: result.err(),
            },
        );
    };
    if let Some((status, _)) = &api.processor {
        let status = status.get();
        check(
            "processor",
            match status.phase {
                Phase::Created | Phase::Dead => Err("the processor is not running".into()),
                Phase::Starting => {
                    Err("waiting for the consumer group to assign partitions".into())
                }
                Phase::Failed => Err("a worker failed and the processor is stopping".into()),
                Phase::Abandoned => Err("the processor is stopping".into()),
                _ if !status.restoring.is_empty() => Err(format!(
                    "restoring partitions {:?} from the changelog",
                    status.restoring
                )),
                Phase::Restoring | Phase::Running | Phase::PendingShutdown => Ok(()),
            },
        );
    }
    if let Some((status, _)) = &api.processor {
        let stalled = status.get().stalled;
        check(
            "partitions",
            if stalled.is_empty() {
                Ok(())
            } else {
                Err(stalled.join("; "))
            },
        );
    }
    if let Some(projector) = &api.projector {
        let status = projector.get();
        check(
            "projector",
            if status.ready {
                Ok(())
            } else {
                Err(status
                    .last_error
                    .unwrap_or_else(|| "the projector is not running".into()))
            },
        );
    }
    if api.publisher.is_some() {
        let api = api.clone();
        let result = tokio::task::spawn_blocking(move || {
            api.publisher
                .as_ref()
                .map_or(Ok(()), |p| p.reachable(CHECK_TIMEOUT))
        })
        .await;
        check(
            "broker",
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("no broker answered: {e}")),
                Err(e) => Err(format!("the check failed: {e}")),
            },
        );
    }
    if let Some(pool) = &api.database {
        let result = tokio::time::timeout(CHECK_TIMEOUT, crate::projector::ping(pool)).await;
        check(
            "database",
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            },
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(contract::Readiness { ready, checks })).into_response()
}

async fn metrics() -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    (headers, crate::telemetry::prometheus().render())
}
