//! OTLP/gRPC: the three `Export` services over one tonic server. tonic decompresses (gzip, zstd)
//! and enforces the message size limit after decompression; each service delegates to
//! [`Ingest::accept`] and maps refusals to `UNAVAILABLE` with `RetryInfo`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use sift_config::{ComponentId, GrpcServerConfig};
use sift_proto::otlp::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use sift_proto::otlp::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use sift_proto::otlp::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use sift_proto::status::RpcStatus;
use sift_proto::{Logs, Metrics, Signal, Traces};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::pipeline::{Ingest, IngestError, RETRY_AFTER};

#[derive(Clone)]
struct Receiver {
    id: ComponentId,
    ingest: Arc<Ingest>,
}

impl Receiver {
    async fn export<S: Signal>(&self, request: Request<S::Request>) -> Result<Response<S::Response>, Status> {
        if !self.ingest.serves(&self.id, S::KIND) {
            return Err(Status::unimplemented(format!("no {} pipeline uses receiver {}", S::KIND, self.id)));
        }
        match self.ingest.accept::<S>(&self.id, "grpc", request.into_inner(), None).await {
            Ok(rejected) => Ok(Response::new(S::response(&rejected))),
            Err(error) => Err(unavailable(&error)),
        }
    }
}

fn unavailable(error: &IngestError) -> Status {
    let status = RpcStatus::with_retry_delay(tonic::Code::Unavailable as i32, error.to_string(), RETRY_AFTER);
    Status::with_details(tonic::Code::Unavailable, error.to_string(), prost::Message::encode_to_vec(&status).into())
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<<Traces as Signal>::Request>,
    ) -> Result<Response<<Traces as Signal>::Response>, Status> {
        Receiver::export::<Traces>(self, request).await
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: Request<<Logs as Signal>::Request>,
    ) -> Result<Response<<Logs as Signal>::Response>, Status> {
        Receiver::export::<Logs>(self, request).await
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<<Metrics as Signal>::Request>,
    ) -> Result<Response<<Metrics as Signal>::Response>, Status> {
        Receiver::export::<Metrics>(self, request).await
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
    let receiver = Receiver { id, ingest };
    let server = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(receiver.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit),
        )
        .add_service(
            LogsServiceServer::new(receiver.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::new(receiver)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown);
    Ok((address, server))
}
