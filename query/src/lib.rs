//! Sift's HTTP query API (SPEC §4). So far: the operational endpoints `/metrics`, `/healthz` and
//! `/readyz`, and the JSON error shape every endpoint uses ([`ApiError`]). Trace, log and metric
//! queries arrive with the storage engine.
#![warn(missing_docs)]

mod error;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub use error::ApiError;

/// What the operational endpoints read from the running service.
pub trait Health: Send + Sync + 'static {
    /// Sift's own metrics in Prometheus text format.
    fn metrics_text(&self) -> String;
    /// `Ok` when Sift accepts data; otherwise why not (starting, shutting down, refusing data).
    fn readiness(&self) -> Result<(), String>;
}

/// The query API router.
pub fn router(health: Arc<dyn Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(health)
}

async fn metrics(State(health): State<Arc<dyn Health>>) -> Response {
    let text = health.metrics_text();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(health): State<Arc<dyn Health>>) -> Response {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))).into_response(),
        Err(reason) => ApiError::Unavailable(reason).into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint at {}", uri.path()))
}
