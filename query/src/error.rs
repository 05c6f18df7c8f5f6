//! The one mapping from query errors to HTTP: every error is
//! `{"error": {"code": "bad_request"|"not_found"|"unavailable"|"internal", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered by the query API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong (bad id, bad time, unknown parameter value).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// Sift cannot answer now (starting, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an I/O failure.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}

/// Why Sift does not accept data now: `/readyz` answers 503 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Before the receivers are up, or once shutdown began.
    #[error("sift is starting or shutting down")]
    NotRunning,
    /// Appends are refused because the WAL reached its size limit.
    #[error("the write-ahead log is full: exporters are behind")]
    WalFull,
    /// The last WAL write failed (a full disk, an I/O error).
    #[error("the write-ahead log cannot write: {0}")]
    WalCannotWrite(String),
}

/// A tail-sampling policy list that was refused (nothing changed); the message names the
/// offending path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPolicies(pub String);

impl From<NotReady> for ApiError {
    fn from(e: NotReady) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<InvalidPolicies> for ApiError {
    fn from(e: InvalidPolicies) -> Self {
        ApiError::BadRequest(e.0)
    }
}
