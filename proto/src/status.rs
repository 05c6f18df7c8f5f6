//! The `google.rpc` messages OTLP uses for errors and retry advice, defined by hand so that no
//! extra proto crate is needed: `Status` (HTTP error bodies, gRPC `grpc-status-details-bin`) and
//! `RetryInfo` (how long a client should wait before retrying).

use std::time::Duration;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// Type URL of the packed message.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The packed message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Fraction of a second in nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    /// How long to wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Details such as [`RetryInfo`].
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// Type URL of `google.rpc.RetryInfo` inside an `Any`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// A status whose details carry a `RetryInfo` with `delay`.
    pub fn with_retry_delay(code: i32, message: String, delay: Duration) -> Self {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
            }),
        };
        RpcStatus {
            code,
            message,
            details: vec![Any {
                type_url: RETRY_INFO_TYPE_URL.to_owned(),
                value: prost::Message::encode_to_vec(&info),
            }],
        }
    }

    /// The retry delay, if the details carry a `RetryInfo`.
    pub fn retry_delay(&self) -> Option<Duration> {
        let any = self.details.iter().find(|d| d.type_url == RETRY_INFO_TYPE_URL)?;
        let info: RetryInfo = prost::Message::decode(any.value.as_slice()).ok()?;
        let delay = info.retry_delay?;
        Some(Duration::new(
            u64::try_from(delay.seconds).ok()?,
            u32::try_from(delay.nanos).ok()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_round_trips() {
        let status = RpcStatus::with_retry_delay(14, "busy".into(), Duration::from_millis(1500));
        let bytes = prost::Message::encode_to_vec(&status);
        let back: RpcStatus = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.retry_delay(), Some(Duration::from_millis(1500)));
        assert_eq!(back.message, "busy");
    }
}
