//! OTLP/gRPC: the three `Export` services, served by one generic tower service over a raw-bytes
//! codec. Owning the decode (instead of tonic's prost codec) gives OTLP's status semantics —
//! `INVALID_ARGUMENT` for a malformed message (tonic says `INTERNAL`), `RESOURCE_EXHAUSTED` for an
//! oversized one (tonic says `OUT_OF_RANGE`) — and keeps the received bytes, which are written to
//! the WAL as they are when nothing in the request had to change. tonic still decompresses
//! (gzip, zstd) and bounds the decompressed size.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message;
use sift_config::{ComponentId, GrpcServerConfig};
use sift_proto::{Logs, Metrics, Signal, Traces};
use tokio::net::TcpListener;
use tonic::codec::{CompressionEncoding, EnabledCompressionEncodings};
use tonic::codegen::{http, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::refusal::{Cause, Refusal};
use crate::pipeline::Ingest;
use sift_proto::RawCodec;

struct Shared {
    id: ComponentId,
    ingest: Arc<Ingest>,
    limit: usize,
}

/// The `Export` service of one signal.
struct ExportService<S> {
    shared: Arc<Shared>,
    signal: PhantomData<fn() -> S>,
}

impl<S> Clone for ExportService<S> {
    fn clone(&self) -> Self {
        ExportService {
            shared: self.shared.clone(),
            signal: PhantomData,
        }
    }
}

impl<S: Signal> NamedService for ExportService<S> {
    const NAME: &'static str = S::GRPC_SERVICE;
}

async fn handle<S: Signal>(shared: Arc<Shared>, request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    match accept::<S>(&shared, request.into_inner()).await {
        Ok(response) => Ok(response),
        Err(refusal) => {
            // Retryable refusals were counted (with their items) by the pipeline.
            if !refusal.retryable() {
                let telemetry = shared.ingest.telemetry();
                telemetry.refused(S::KIND.as_str(), "grpc", refusal.reason(), 0, true);
            }
            Err(refusal.grpc_status())
        }
    }
}

async fn accept<S: Signal>(shared: &Shared, body: Bytes) -> Result<Response<Bytes>, Refusal> {
    if !shared.ingest.serves(&shared.id, S::KIND) {
        return Err(Refusal::new(
            Cause::NotServed,
            format!("no {} pipeline uses receiver {}", S::KIND, shared.id),
        ));
    }
    if body.len() > shared.limit {
        return Err(Refusal::new(
            Cause::TooLarge,
            format!(
                "{} request of {} bytes exceeds the limit of {} bytes",
                S::KIND,
                body.len(),
                shared.limit
            ),
        ));
    }
    let payload = shared
        .ingest
        .decode_protobuf::<S>(&shared.id, body)
        .map_err(|e| Refusal::new(Cause::Malformed, format!("invalid protobuf {} request: {e}", S::KIND)))?;
    let rejected = shared.ingest.accept::<S>(&shared.id, "grpc", payload).await?;
    Ok(Response::new(S::response(&rejected).encode_to_vec().into()))
}

struct Unary<S> {
    shared: Arc<Shared>,
    signal: PhantomData<fn() -> S>,
}

impl<S: Signal> UnaryService<Bytes> for Unary<S> {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        Box::pin(handle::<S>(self.shared.clone(), request))
    }
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for ExportService<S>
where
    S: Signal,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != S::GRPC_EXPORT_PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            // tonic refuses beyond twice the limit while buffering (OUT_OF_RANGE, or
            // RESOURCE_EXHAUSTED while decompressing); `handle` refuses from the limit on with
            // RESOURCE_EXHAUSTED. Memory stays bounded either way.
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(shared.limit.saturating_mul(2)), None);
            Ok(grpc
                .unary(
                    Unary::<S> {
                        shared,
                        signal: PhantomData,
                    },
                    request,
                )
                .await)
        })
    }
}

/// Binds the gRPC endpoint; the returned future serves until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn bind(
    id: ComponentId,
    config: &GrpcServerConfig,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = Result<(), tonic::transport::Error>>)> {
    let listener = TcpListener::bind(config.endpoint.to_bind_string()).await?;
    let address = listener.local_addr()?;
    let limit = usize::try_from(config.max_recv_msg_size_mib << 20).unwrap_or(usize::MAX);
    let shared = Arc::new(Shared { id, ingest, limit });
    // Requests are large (hundreds of KiB): with HTTP/2's default 64 KiB windows a client stalls
    // on window updates, so let a whole request be in flight per stream.
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(ExportService::<Traces> {
            shared: shared.clone(),
            signal: PhantomData,
        })
        .add_service(ExportService::<Logs> {
            shared: shared.clone(),
            signal: PhantomData,
        })
        .add_service(ExportService::<Metrics> {
            shared,
            signal: PhantomData,
        })
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown);
    Ok((address, server))
}
