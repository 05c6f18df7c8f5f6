//! Why a receiver refuses a request, and the one table that turns the cause into OTLP status for
//! both protocols (OTLP/HTTP and OTLP/gRPC semantics), the `reason` label of
//! `sift_receiver_refused_*` and retry advice:
//!
//! | cause | HTTP | gRPC | reason | client retries |
//! |---|---|---|---|---|
//! | [`Cause::Malformed`]: undecodable body | 400 | `INVALID_ARGUMENT` | `malformed` | no |
//! | [`Cause::TooLarge`]: over the size limit | 413 | `RESOURCE_EXHAUSTED` | `too_large` | no |
//! | [`Cause::UnsupportedFormat`]: content type or encoding | 415 | `INVALID_ARGUMENT` | `unsupported` | no |
//! | [`Cause::NotServed`]: no pipeline of the signal uses the receiver | 404 | `UNIMPLEMENTED` | `unsupported` | no |
//! | [`Cause::Overloaded`]: WAL full or busy, too many bytes in flight | 503 + `Retry-After` | `UNAVAILABLE` + `RetryInfo` | `overloaded` | yes |
//! | [`Cause::Unavailable`]: shutting down, the disk failed | 503 + `Retry-After` | `UNAVAILABLE` + `RetryInfo` | `unavailable` | yes |
//!
//! Items dropped individually (invalid ids and the like) are not a refusal: the request succeeds
//! with a partial-success response, counted under `invalid`.

use axum::http::StatusCode;
use prost::Message;
use sift_proto::status::RpcStatus;

use crate::pipeline::{IngestError, RETRY_AFTER};

/// What was wrong with a request, or with Sift at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The body does not decode.
    Malformed,
    /// The body is over the receiver's limit.
    TooLarge,
    /// Content type or content encoding not supported (HTTP only).
    UnsupportedFormat,
    /// No pipeline of the request's signal uses this receiver.
    NotServed,
    /// Sift is behind: retry later.
    Overloaded,
    /// Sift cannot accept data now: retry later.
    Unavailable,
}

/// A refused request: the cause and a message for the client.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Why.
    pub cause: Cause,
    /// What was wrong, for the client (it may quote the unredacted input: never logged).
    pub message: String,
}

impl Refusal {
    /// A refusal for `cause`.
    pub fn new(cause: Cause, message: impl Into<String>) -> Refusal {
        Refusal {
            cause,
            message: message.into(),
        }
    }

    /// The OTLP/HTTP status.
    pub fn http_status(&self) -> StatusCode {
        match self.cause {
            Cause::Malformed => StatusCode::BAD_REQUEST,
            Cause::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Cause::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Cause::NotServed => StatusCode::NOT_FOUND,
            Cause::Overloaded | Cause::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OTLP/gRPC status code (also the `code` of an HTTP error body).
    pub fn grpc_code(&self) -> tonic::Code {
        match self.cause {
            Cause::Malformed | Cause::UnsupportedFormat => tonic::Code::InvalidArgument,
            Cause::TooLarge => tonic::Code::ResourceExhausted,
            Cause::NotServed => tonic::Code::Unimplemented,
            Cause::Overloaded | Cause::Unavailable => tonic::Code::Unavailable,
        }
    }

    /// The `reason` label of the refused-items metrics.
    pub fn reason(&self) -> &'static str {
        match self.cause {
            Cause::Malformed => "malformed",
            Cause::TooLarge => "too_large",
            Cause::UnsupportedFormat | Cause::NotServed => "unsupported",
            Cause::Overloaded => "overloaded",
            Cause::Unavailable => "unavailable",
        }
    }

    /// Whether the client is told to retry (and when: [`RETRY_AFTER`]). Such refusals come from
    /// the pipeline, which has counted them with their items already.
    pub fn retryable(&self) -> bool {
        matches!(self.cause, Cause::Overloaded | Cause::Unavailable)
    }

    /// The `google.rpc.Status` body, with `RetryInfo` when retryable.
    pub fn rpc_status(&self) -> RpcStatus {
        let code = self.grpc_code() as i32;
        if self.retryable() {
            RpcStatus::with_retry_delay(code, self.message.clone(), RETRY_AFTER)
        } else {
            RpcStatus {
                code,
                message: self.message.clone(),
                details: Vec::new(),
            }
        }
    }

    /// The gRPC status (details carry the `RetryInfo`).
    pub fn grpc_status(&self) -> tonic::Status {
        if self.retryable() {
            tonic::Status::with_details(
                self.grpc_code(),
                self.message.clone(),
                self.rpc_status().encode_to_vec().into(),
            )
        } else {
            tonic::Status::new(self.grpc_code(), self.message.clone())
        }
    }
}

impl From<IngestError> for Refusal {
    fn from(error: IngestError) -> Refusal {
        let cause = match error {
            IngestError::Overloaded(_) => Cause::Overloaded,
            IngestError::Unavailable(_) => Cause::Unavailable,
        };
        Refusal::new(cause, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sift_side_causes_are_retryable_and_both_protocols_agree() {
        let all = [
            Cause::Malformed,
            Cause::TooLarge,
            Cause::UnsupportedFormat,
            Cause::NotServed,
            Cause::Overloaded,
            Cause::Unavailable,
        ];
        for cause in all {
            let refusal = Refusal::new(cause, "x");
            let server_side = refusal.http_status().is_server_error();
            assert_eq!(refusal.retryable(), server_side, "{cause:?}");
            assert_eq!(
                refusal.grpc_code() == tonic::Code::Unavailable,
                server_side,
                "{cause:?}"
            );
            assert_eq!(refusal.rpc_status().details.is_empty(), !server_side, "{cause:?}");
        }
        let overloaded: Refusal = IngestError::Overloaded("full".into()).into();
        assert_eq!(
            (overloaded.http_status(), overloaded.reason()),
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
        );
    }
}
