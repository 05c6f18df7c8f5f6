//! OTLP/HTTP: `POST /v1/{traces,logs,metrics}` with protobuf or JSON bodies, identity/gzip/zstd.
//! Status semantics of OTLP/HTTP, from the one table in [`super::refusal`]: 400 for a malformed
//! body (with what was wrong), 413 too large, 415 unsupported content type or encoding, 503 +
//! `Retry-After` when overloaded. Responses and error bodies (`google.rpc.Status`) use the
//! request's encoding.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use sift_config::{ComponentId, HttpServerConfig};
use sift_proto::{Logs, Metrics, Signal, Traces};
use tokio::net::TcpListener;

use super::decompress::{decompress, DecompressError, Encoding};
use super::refusal::{Cause, Refusal};
use crate::pipeline::{Ingest, Payload, RETRY_AFTER};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone)]
struct Receiver {
    id: ComponentId,
    ingest: Arc<Ingest>,
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

fn format_of(headers: &HeaderMap) -> Result<Format, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        PROTOBUF => Ok(Format::Protobuf),
        JSON => Ok(Format::Json),
        "" => Err(Refusal::new(
            Cause::UnsupportedFormat,
            "missing Content-Type (expected application/x-protobuf or application/json)",
        )),
        other => Err(Refusal::new(
            Cause::UnsupportedFormat,
            format!("unsupported Content-Type {other:?} (expected application/x-protobuf or application/json)"),
        )),
    }
}

fn respond(format: Format, status: StatusCode, protobuf: Vec<u8>, json: serde_json::Value) -> Response {
    let (content_type, body) = match format {
        Format::Protobuf => (PROTOBUF, protobuf),
        Format::Json => (JSON, json.to_string().into_bytes()),
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn error_response(format: Format, refusal: &Refusal) -> Response {
    let code = refusal.grpc_code() as i32;
    let json = serde_json::json!({ "code": code, "message": refusal.message });
    let mut response = respond(
        format,
        refusal.http_status(),
        refusal.rpc_status().encode_to_vec(),
        json,
    );
    if refusal.retryable() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER.as_secs()));
    }
    response
}

/// Reads at most `limit` bytes of body. Past the limit the rest is read and discarded (up to
/// [`DRAIN_LIMIT`]) so that the client receives the 413 instead of a reset connection.
async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let mut buffer = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refusal::new(Cause::Malformed, format!("cannot read request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            buffer.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT.max(limit) {
            break;
        }
    }
    if seen > limit {
        return Err(Refusal::new(
            Cause::TooLarge,
            format!("request body exceeds {limit} bytes"),
        ));
    }
    Ok(buffer.freeze())
}

/// How much of an oversized body is read (and thrown away) before the connection is dropped.
const DRAIN_LIMIT: usize = 64 << 20;

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let encoding_header = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?"));
    let encoding = Encoding::parse(encoding_header).ok_or_else(|| {
        Refusal::new(
            Cause::UnsupportedFormat,
            format!(
                "unsupported Content-Encoding {:?} (expected gzip, zstd, deflate or identity)",
                encoding_header.unwrap_or("")
            ),
        )
    })?;
    let raw = collect_limited(body, limit).await?;
    decompress(encoding, raw, limit).map_err(|e| match e {
        DecompressError::TooLarge { .. } => Refusal::new(Cause::TooLarge, e.to_string()),
        DecompressError::Corrupt { .. } => Refusal::new(Cause::Malformed, e.to_string()),
    })
}

async fn export<S: Signal>(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    let signal = S::KIND.as_str();
    let format = match format_of(&headers) {
        Ok(format) => format,
        Err(refusal) => {
            receiver
                .ingest
                .telemetry()
                .refused(signal, "http", refusal.reason(), 0, true);
            return error_response(Format::Json, &refusal);
        }
    };
    match handle::<S>(&receiver, format, &headers, body).await {
        Ok(response) => response,
        Err(refusal) => {
            // Retryable refusals were counted (with their items) by the pipeline.
            if !refusal.retryable() {
                receiver
                    .ingest
                    .telemetry()
                    .refused(signal, "http", refusal.reason(), 0, true);
            }
            // The message may quote the (unredacted) input: it goes to the client only, never to the log.
            tracing::debug!(signal, status = %refusal.http_status(), reason = refusal.reason(), "refused OTLP/HTTP request");
            error_response(format, &refusal)
        }
    }
}

async fn handle<S: Signal>(
    receiver: &Receiver,
    format: Format,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    if !receiver.ingest.serves(&receiver.id, S::KIND) {
        return Err(Refusal::new(
            Cause::NotServed,
            format!("no {} pipeline uses receiver {}", S::KIND, receiver.id),
        ));
    }
    let body = read_body(headers, body, receiver.limit).await?;
    let payload = match format {
        Format::Protobuf => receiver
            .ingest
            .decode_protobuf::<S>(&receiver.id, body)
            .map_err(|e| Refusal::new(Cause::Malformed, format!("invalid protobuf {} request: {e}", S::KIND)))?,
        Format::Json => {
            let request = S::decode_json(&body)
                .map_err(|e| Refusal::new(Cause::Malformed, format!("invalid OTLP/JSON {} request: {e}", S::KIND)))?;
            Payload::Decoded { request, raw: None }
        }
    };
    let rejected = receiver
        .ingest
        .accept::<S>(&receiver.id, "http", payload)
        .await
        .map_err(Refusal::from)?;
    Ok(respond(
        format,
        StatusCode::OK,
        S::response(&rejected).encode_to_vec(),
        S::response_json(&rejected),
    ))
}

/// Binds the HTTP endpoint; the returned future serves until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn bind(
    id: ComponentId,
    config: &HttpServerConfig,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(config.endpoint.to_bind_string()).await?;
    let address = listener.local_addr()?;
    let limit = usize::try_from(config.max_request_body_size_mib << 20).unwrap_or(usize::MAX);
    let receiver = Receiver { id, ingest, limit };
    let router = Router::new()
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/logs", post(export::<Logs>))
        .route("/v1/metrics", post(export::<Metrics>))
        .with_state(receiver);
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown);
    Ok((address, async move { server.await }))
}
