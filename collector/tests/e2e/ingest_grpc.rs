//! OTLP/gRPC with a tonic client: compression, partial success, malformed and oversized messages.

use std::time::Duration;

use bytes::Bytes;
use sift_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sift_proto::RawCodec;
use tonic::codec::CompressionEncoding;

use crate::common::{count_items, eventually, file_config, Sift};

pub fn spans(n: usize, seed: u8, pad: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![seed.max(1); 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("span {i}"),
            attributes: vec![KeyValue {
                key: "pad".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("p".repeat(pad))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn compressed_requests_and_partial_success() {
    let sift = Sift::start(&file_config());
    runtime().block_on(async {
        for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
            let mut client = TraceServiceClient::connect(sift.grpc_url())
                .await
                .unwrap()
                .send_compressed(encoding);
            let response = client.export(spans(10, 7, 10)).await.unwrap().into_inner();
            assert_eq!(response.partial_success, None);
        }
        let mut request = spans(3, 9, 0);
        request.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
        let mut client = TraceServiceClient::connect(sift.grpc_url()).await.unwrap();
        let partial = client
            .export(request)
            .await
            .unwrap()
            .into_inner()
            .partial_success
            .unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(partial.error_message.contains("trace id"), "{}", partial.error_message);
    });
    assert!(eventually(Duration::from_secs(10), || count_items(
        &sift.exported("traces"),
        "traces"
    ) == 22));
    assert_eq!(
        sift.metric("sift_receiver_accepted_total{signal=\"traces\",protocol=\"grpc\"}"),
        22.0
    );
}

async fn raw_export(url: &str, path: &'static str, body: Vec<u8>) -> Result<Bytes, tonic::Status> {
    let body = Bytes::from(body);
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

#[test]
fn malformed_and_oversized_messages_get_otlp_status_codes() {
    let sift = Sift::start(&file_config().replace(
        "grpc: { endpoint: 127.0.0.1:0 }",
        "grpc: { endpoint: 127.0.0.1:0, max_recv_msg_size_mib: 1 }",
    ));
    runtime().block_on(async {
        let path = <sift_proto::Traces as sift_proto::Signal>::GRPC_EXPORT_PATH;
        let status = raw_export(&sift.grpc_url(), path, vec![0x0a, 0xff, 0xff, 0xff, 0x0f])
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("invalid protobuf traces request"),
            "{}",
            status.message()
        );

        let big = prost::Message::encode_to_vec(&spans(1, 3, 1_500_000));
        let status = raw_export(&sift.grpc_url(), path, big).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

        // Still serving.
        let ok = prost::Message::encode_to_vec(&spans(2, 4, 1));
        raw_export(&sift.grpc_url(), path, ok).await.unwrap();
    });
    assert!(eventually(Duration::from_secs(10), || count_items(
        &sift.exported("traces"),
        "traces"
    ) == 2));
}
