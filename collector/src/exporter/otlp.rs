//! `otlp/<name>`: forwards to a downstream OTLP backend over gRPC, HTTP/protobuf or HTTP/JSON,
//! behaving like the Collector's `otlp`/`otlphttp` exporters.
//!
//! Consecutive WAL entries of one signal are sent as one request (protobuf messages whose fields
//! are all repeated concatenate into their merge, so the WAL's bytes go out without re-encoding),
//! split at `max_request_size_mib`. Status handling follows the OTLP specification: retryable
//! codes (gRPC `UNAVAILABLE`, …, HTTP 429/502/503/504, connection errors) come back as
//! [`ExportError::Retryable`] with the server's `RetryInfo`/`Retry-After`; anything else drops the
//! request it concerns (counted) and the rest of the batch goes on. Progress inside a batch is kept
//! across retries, so a retry resends only what was not yet accepted.

use std::io::Write;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use sift_config::{Compression, FullPolicy, OtlpExporterConfig, OtlpProtocol};
use sift_proto::status::RpcStatus;
use sift_proto::{with_signal, Rejected, Signal, SignalKind};
use sift_wal::WalEntry;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::{Delivery, ExportError, ExportFuture, Exporter, RetryPolicy};
use sift_proto::RawCodec;

enum Transport {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        base: String,
        json: bool,
        headers: reqwest::header::HeaderMap,
    },
}

/// The OTLP exporter.
pub struct OtlpExporter {
    name: String,
    transport: Transport,
    compression: Compression,
    timeout: Duration,
    max_request: usize,
    retry: RetryPolicy,
    queue: (u64, FullPolicy),
    batching: Option<(usize, Duration)>,
    /// (identity of the batch, entries of it already handled, what happened to them).
    progress: Option<(usize, usize, Delivery)>,
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

impl OtlpExporter {
    /// Builds the exporter; connections are made lazily, so a downstream that is down at
    /// start-up is not an error.
    pub fn new(name: String, config: &OtlpExporterConfig) -> anyhow::Result<OtlpExporter> {
        let transport = match config.protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())?
                    .tcp_nodelay(true)
                    .timeout(config.timeout.0)
                    .initial_stream_window_size(Some(4 << 20))
                    .initial_connection_window_size(Some(16 << 20));
                if config.endpoint.starts_with("https://") {
                    let mut tls = ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &config.tls.ca_file {
                        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
                    }
                    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
                        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
                    }
                    endpoint = endpoint.tls_config(tls)?;
                }
                let mut metadata = MetadataMap::new();
                for (key, value) in &config.headers {
                    let key = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
                        .map_err(|_| anyhow::anyhow!("invalid header name {key:?}"))?;
                    let value = MetadataValue::try_from(value.as_str())
                        .map_err(|_| anyhow::anyhow!("invalid value for header {key}"))?;
                    metadata.insert(key, value);
                }
                Transport::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                }
            }
            OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                let mut builder = reqwest::Client::builder()
                    .use_rustls_tls()
                    .timeout(config.timeout.0)
                    .tcp_nodelay(true);
                if let Some(ca) = &config.tls.ca_file {
                    builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&read(ca)?)?);
                }
                if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
                    let mut pem = read(cert)?;
                    pem.extend(read(key)?);
                    builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
                }
                let mut headers = reqwest::header::HeaderMap::new();
                for (key, value) in &config.headers {
                    headers.insert(
                        reqwest::header::HeaderName::from_bytes(key.as_bytes())?,
                        reqwest::header::HeaderValue::from_str(value)?,
                    );
                }
                Transport::Http {
                    client: builder.build()?,
                    base: config.endpoint.trim_end_matches('/').to_owned(),
                    json: config.protocol == OtlpProtocol::HttpJson,
                    headers,
                }
            }
        };
        let retry = &config.retry_on_failure;
        Ok(OtlpExporter {
            name,
            transport,
            compression: config.compression,
            timeout: config.timeout.0,
            max_request: usize::try_from(config.max_request_size_mib << 20).unwrap_or(usize::MAX),
            retry: RetryPolicy {
                enabled: retry.enabled,
                initial: retry.initial_interval.0,
                max: retry.max_interval.0,
                max_elapsed: (!retry.max_elapsed_time.0.is_zero()).then_some(retry.max_elapsed_time.0),
            },
            queue: (
                config.sending_queue.queue_size_mib << 20,
                config.sending_queue.full_policy,
            ),
            batching: (!config.batch.flush_timeout.0.is_zero()).then(|| {
                (
                    usize::try_from(config.batch.min_size_kib << 10).unwrap_or(usize::MAX),
                    config.batch.flush_timeout.0,
                )
            }),
            progress: None,
        })
    }

    async fn send_all(&mut self, batch: &[WalEntry]) -> Result<Delivery, ExportError> {
        let identity = batch.as_ptr() as usize ^ batch.len();
        let (mut done, mut delivery) = match self.progress.take() {
            Some((id, done, delivery)) if id == identity => (done, delivery),
            _ => (0, Delivery::default()),
        };
        while done < batch.len() {
            let group = group_len(&batch[done..], self.max_request);
            let entries = &batch[done..done + group];
            let signal = entries[0].signal;
            match self.send(signal, entries).await {
                Ok(rejected) => {
                    if rejected.count > 0 {
                        tracing::warn!(exporter = %self.name, signal = %signal, rejected = rejected.count, message = %rejected.message, "downstream rejected part of a request");
                        *delivery.rejected.entry(signal).or_default() += rejected.count;
                    }
                }
                Err(ExportError::Permanent(message)) => {
                    let items: u64 = entries.iter().map(|e| e.items).sum();
                    tracing::error!(exporter = %self.name, signal = %signal, items, error = %message, "downstream refused a request for good; dropping it");
                    *delivery.dropped.entry(signal).or_default() += items;
                }
                Err(retryable) => {
                    self.progress = Some((identity, done, delivery));
                    return Err(retryable);
                }
            }
            done += group;
        }
        Ok(delivery)
    }

    async fn send(&self, signal: SignalKind, entries: &[WalEntry]) -> Result<Rejected, ExportError> {
        match &self.transport {
            Transport::Grpc { channel, metadata } => {
                self.send_grpc(channel.clone(), metadata, signal, protobuf_body(entries))
                    .await
            }
            Transport::Http {
                client,
                base,
                json,
                headers,
            } => {
                let (body, content_type) = if *json {
                    (json_body(signal, entries)?, "application/json")
                } else {
                    (protobuf_body(entries), "application/x-protobuf")
                };
                self.send_http(client, base, headers, signal, body, content_type, *json)
                    .await
            }
        }
    }

    async fn send_grpc(
        &self,
        channel: Channel,
        metadata: &MetadataMap,
        signal: SignalKind,
        body: Bytes,
    ) -> Result<Rejected, ExportError> {
        let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
        grpc = match self.compression {
            Compression::Gzip => grpc.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => grpc.send_compressed(CompressionEncoding::Zstd),
            Compression::None => grpc,
        };
        grpc.ready()
            .await
            .map_err(|e| ExportError::retryable(format!("cannot connect: {e}")))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = metadata.clone();
        request.set_timeout(self.timeout);
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(with_signal!(signal, S => S::GRPC_EXPORT_PATH));
        match grpc.unary(request, path, RawCodec).await {
            Ok(response) => Ok(rejected_protobuf(signal, response.into_inner())),
            Err(status) => Err(classify_grpc(&status)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_http(
        &self,
        client: &reqwest::Client,
        base: &str,
        headers: &reqwest::header::HeaderMap,
        signal: SignalKind,
        body: Bytes,
        content_type: &str,
        json: bool,
    ) -> Result<Rejected, ExportError> {
        let url = format!("{base}/v1/{signal}");
        let mut request = client
            .post(&url)
            .headers(headers.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => {
                request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
                gzip(&body)
            }
            Compression::Zstd => {
                request = request.header(reqwest::header::CONTENT_ENCODING, "zstd");
                zstd::encode_all(&body[..], 3)
                    .map(Bytes::from)
                    .map_err(|e| ExportError::Permanent(e.to_string()))?
            }
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::retryable(format!("POST {url}: {e}")))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(if json {
                rejected_json(signal, &bytes)
            } else {
                rejected_protobuf(signal, bytes)
            });
        }
        let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        let message = format!("POST {url}: HTTP {status}: {detail}");
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(ExportError::Retryable {
                message,
                after: retry_after,
            }),
            _ => Err(ExportError::Permanent(message)),
        }
    }
}

/// How many entries from the start of `entries` go into one request: same signal, at most
/// `max_bytes` (at least one entry).
fn group_len(entries: &[WalEntry], max_bytes: usize) -> usize {
    let signal = entries[0].signal;
    let mut bytes = 0;
    let mut n = 0;
    for entry in entries {
        if entry.signal != signal || (n > 0 && bytes + entry.body.len() > max_bytes) {
            break;
        }
        bytes += entry.body.len();
        n += 1;
    }
    n
}

/// The entries' requests merged into one: concatenated protobuf (every top-level field repeats).
fn protobuf_body(entries: &[WalEntry]) -> Bytes {
    if let [single] = entries {
        return single.body.clone();
    }
    let mut out = BytesMut::with_capacity(entries.iter().map(|e| e.body.len()).sum());
    for entry in entries {
        out.extend_from_slice(&entry.body);
    }
    out.freeze()
}

fn json_body(signal: SignalKind, entries: &[WalEntry]) -> Result<Bytes, ExportError> {
    with_signal!(signal, S => {
        let mut merged = <S as Signal>::Request::default();
        for entry in entries {
            merged
                .merge(entry.body.clone())
                .map_err(|e| ExportError::Permanent(format!("undecodable {signal} entry: {e}")))?;
        }
        let mut text = String::with_capacity(entries.iter().map(|e| e.body.len() * 2).sum());
        S::write_json(&merged, &mut text);
        Ok(Bytes::from(text))
    })
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

fn rejected_protobuf(signal: SignalKind, body: Bytes) -> Rejected {
    with_signal!(signal, S => <S as Signal>::Response::decode(body).map(|r| S::rejected_in(&r)).unwrap_or_default())
}

fn rejected_json(signal: SignalKind, body: &[u8]) -> Rejected {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Rejected::default();
    };
    let partial = &value["partialSuccess"];
    let field = with_signal!(signal, S => S::REJECTED_FIELD);
    let count = match &partial[field] {
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    };
    Rejected {
        count,
        message: partial["errorMessage"].as_str().unwrap_or_default().to_owned(),
    }
}

/// OTLP/gRPC: which codes are worth retrying, and the server's retry advice.
fn classify_grpc(status: &tonic::Status) -> ExportError {
    use tonic::Code;
    let after = RpcStatus::decode(status.details()).ok().and_then(|s| s.retry_delay());
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
    // A status carrying a source error was not sent by the server: the transport failed (a reset
    // or dropped connection, an HTTP/2 error mapped to INTERNAL or UNKNOWN). The request may or
    // may not have arrived, so it is sent again.
    if std::error::Error::source(status).is_some() {
        return ExportError::Retryable { message, after };
    }
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable { message, after },
        // Only retryable when the server says when (OTLP spec).
        Code::ResourceExhausted if after.is_some() => ExportError::Retryable { message, after },
        _ => ExportError::Permanent(message),
    }
}

impl Exporter for OtlpExporter {
    fn export<'a>(&'a mut self, batch: &'a [WalEntry]) -> ExportFuture<'a> {
        Box::pin(self.send_all(batch))
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    fn queue_limit(&self) -> Option<(u64, FullPolicy)> {
        Some(self.queue)
    }

    fn batching(&self) -> Option<(usize, Duration)> {
        self.batching
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(signal: SignalKind, len: usize) -> WalEntry {
        WalEntry {
            kind: sift_wal::EntryKind::Received,
            signal,
            pipeline: "p".into(),
            items: 1,
            body: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn groups_are_one_signal_and_bounded_in_size() {
        let batch = [
            entry(SignalKind::Traces, 10),
            entry(SignalKind::Traces, 10),
            entry(SignalKind::Logs, 5),
        ];
        assert_eq!(group_len(&batch, 100), 2);
        assert_eq!(group_len(&batch, 15), 1);
        assert_eq!(group_len(&batch[2..], 1), 1, "one entry even if larger than the bound");
    }

    #[test]
    fn concatenated_requests_decode_as_their_merge() {
        use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
        let one = sift_proto::json::decode_traces(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#,
        )
        .unwrap();
        let body = Bytes::from(one.encode_to_vec());
        let merged = protobuf_body(&[
            WalEntry {
                kind: sift_wal::EntryKind::Received,
                signal: SignalKind::Traces,
                pipeline: "t".into(),
                items: 1,
                body: body.clone(),
            },
            WalEntry {
                kind: sift_wal::EntryKind::Received,
                signal: SignalKind::Traces,
                pipeline: "t".into(),
                items: 1,
                body,
            },
        ]);
        let decoded = ExportTraceServiceRequest::decode(merged).unwrap();
        assert_eq!(decoded.resource_spans.len(), 2);
    }

    #[test]
    fn grpc_codes_follow_the_otlp_retry_table() {
        let retryable = |s: tonic::Status| matches!(classify_grpc(&s), ExportError::Retryable { .. });
        assert!(retryable(tonic::Status::unavailable("down")));
        assert!(retryable(tonic::Status::deadline_exceeded("slow")));
        assert!(!retryable(tonic::Status::invalid_argument("bad")));
        assert!(!retryable(tonic::Status::resource_exhausted("no retry info")));
        assert!(!retryable(tonic::Status::unknown("the server said so")));
        assert!(!retryable(tonic::Status::internal("the server said so")));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(retryable(tonic::Status::from_error(Box::new(reset))));
        let mut h2_internal = tonic::Status::internal("h2 protocol error");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "aborted");
        h2_internal.set_source(std::sync::Arc::new(reset));
        assert!(
            retryable(h2_internal),
            "an HTTP/2 error mapped to INTERNAL is a transport failure"
        );
        let status = RpcStatus::with_retry_delay(8, "later".into(), Duration::from_secs(3));
        let exhausted =
            tonic::Status::with_details(tonic::Code::ResourceExhausted, "later", status.encode_to_vec().into());
        match classify_grpc(&exhausted) {
            ExportError::Retryable { after, .. } => assert_eq!(after, Some(Duration::from_secs(3))),
            other => panic!("{other:?}"),
        }
    }
}
