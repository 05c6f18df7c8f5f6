//! The ingest side of the pipeline graph, written once for all signals: a receiver hands a decoded
//! request to [`Ingest::accept`], which refuses invalid items (partial success), runs the
//! pipeline's processors and appends the result to the WAL as a `received` entry, once per
//! pipeline the receiver feeds (the plan's [`crate::plan::Route`]s).
//! The request is acknowledged only after every append is durable.
//!
//! Bounded: requests in flight are limited by bytes; beyond it, and when the WAL is full or
//! busy, `accept` fails with a retryable [`IngestError`] that receivers turn into 503/UNAVAILABLE.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use sift_config::{ComponentId, Config};
use sift_proto::wire::{self, Scan};
use sift_proto::{Rejected, Signal, SignalKind};
use sift_wal::{AppendError, EntryKind, WalAppender, WalEntry};
use tokio::sync::Semaphore;

use crate::plan::Plan;
use crate::processor::ProcessorHandle;
use crate::telemetry::Telemetry;

/// How long a refused client is told to wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request was not accepted. Every variant is retryable: the data was fine, Sift was not.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Too many bytes in flight, or the WAL is full or busy.
    #[error("sift is overloaded, retry later: {0}")]
    Overloaded(String),
    /// Sift is shutting down or the disk failed.
    #[error("sift cannot accept data now: {0}")]
    Unavailable(String),
}

impl IngestError {
    /// A short label for the refused-items metric.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Overloaded(_) => "overloaded",
            IngestError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<AppendError> for IngestError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Full | AppendError::Busy => IngestError::Overloaded(error.to_string()),
            AppendError::TooLarge | AppendError::Closed | AppendError::Io(_) => {
                IngestError::Unavailable(error.to_string())
            }
        }
    }
}

/// One pipeline a receiver feeds: its name (the WAL entry's tag) and its processors, in order.
struct Route {
    pipeline: String,
    processors: Vec<ProcessorHandle>,
}

/// Where one receiver's data of one signal goes.
type Routes = HashMap<(ComponentId, SignalKind), Vec<Route>>;

/// A received request, decoded only as far as its pipelines need.
pub enum Payload<R> {
    /// Decoded: JSON, or protobuf that a processor must see or whose invalid items must be
    /// dropped. `raw` is the protobuf it came from, reused when nothing in it changes.
    Decoded {
        /// The decoded request.
        request: R,
        /// The protobuf it was decoded from, if any.
        raw: Option<Bytes>,
    },
    /// Protobuf that was only scanned (well-formed, every item valid): written as received.
    Encoded {
        /// The request as received.
        body: Bytes,
        /// Its spans, log records or data points.
        items: u64,
    },
}

/// The shared entry point of every receiver.
pub struct Ingest {
    routes: Routes,
    processors: BTreeMap<ComponentId, ProcessorHandle>,
    appender: WalAppender,
    in_flight: Semaphore,
    in_flight_limit: usize,
    refusing: AtomicBool,
    telemetry: Arc<Telemetry>,
}

/// Bytes of decoded requests that may be in flight at once (memory bound of the receive path).
const IN_FLIGHT_BYTES: usize = 512 << 20;

impl Ingest {
    /// Builds the routing table from the plan's routes and the configured processors.
    pub fn new(plan: &Plan, config: &Config, appender: WalAppender, telemetry: Arc<Telemetry>) -> Ingest {
        let processors: BTreeMap<ComponentId, ProcessorHandle> = config
            .processors
            .iter()
            .filter_map(|(id, p)| Some((id.clone(), ProcessorHandle::build(id, p)?)))
            .collect();
        let mut routes: Routes = HashMap::new();
        for route in &plan.routes {
            routes
                .entry((route.receiver.clone(), route.signal))
                .or_default()
                .push(Route {
                    pipeline: route.pipeline.clone(),
                    processors: route
                        .processors
                        .iter()
                        .filter_map(|p| processors.get(p).cloned())
                        .collect(),
                });
        }
        Ingest {
            routes,
            processors,
            appender,
            in_flight: Semaphore::new(IN_FLIGHT_BYTES),
            in_flight_limit: IN_FLIGHT_BYTES,
            refusing: AtomicBool::new(false),
            telemetry,
        }
    }

    /// Whether `receiver` feeds any pipeline of `signal`.
    pub fn serves(&self, receiver: &ComponentId, signal: SignalKind) -> bool {
        self.routes.contains_key(&(receiver.clone(), signal))
    }

    /// True while the last append was refused for lack of room (drives `/readyz`).
    pub fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// The configured processors by id (their rules can be reloaded in place).
    pub fn processors(&self) -> &BTreeMap<ComponentId, ProcessorHandle> {
        &self.processors
    }

    /// The telemetry registry.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Decodes a protobuf request only as far as `receiver`'s pipelines need: when none of them
    /// has a processor, a well-formed request whose items are all valid is only scanned (no
    /// allocation) and goes to the WAL as received; otherwise it is decoded with prost.
    pub fn decode_protobuf<S: Signal>(
        &self,
        receiver: &ComponentId,
        body: Bytes,
    ) -> Result<Payload<S::Request>, prost::DecodeError> {
        let untouched = self
            .routes
            .get(&(receiver.clone(), S::KIND))
            .is_some_and(|routes| routes.iter().all(|route| route.processors.is_empty()));
        if untouched {
            // A malformed or partly invalid request takes prost's path, for its error message
            // or for the partial success.
            if let Ok(Scan { items, valid: true }) = wire::scan(S::KIND, &body) {
                return Ok(Payload::Encoded { body, items });
            }
        }
        let request = S::Request::decode(body.clone())?;
        Ok(Payload::Decoded {
            request,
            raw: Some(body),
        })
    }

    /// Accepts a request from `receiver`: drops invalid items, writes the rest ahead durably for
    /// each pipeline, and returns what was rejected.
    pub async fn accept<S: Signal>(
        &self,
        receiver: &ComponentId,
        protocol: &str,
        payload: Payload<S::Request>,
    ) -> Result<Rejected, IngestError> {
        let signal = S::KIND.as_str();
        let size = match &payload {
            Payload::Encoded { body, .. } | Payload::Decoded { raw: Some(body), .. } => body.len(),
            Payload::Decoded { request, raw: None } => request.encoded_len(),
        };
        let permits = u32::try_from(size.clamp(1, self.in_flight_limit)).unwrap_or(u32::MAX);
        let Ok(_permit) = self.in_flight.try_acquire_many(permits) else {
            let items = match &payload {
                Payload::Encoded { items, .. } => *items,
                Payload::Decoded { request, .. } => S::item_count(request),
            };
            self.telemetry.refused(signal, protocol, "overloaded", items, true);
            return Err(IngestError::Overloaded("too many bytes in flight".into()));
        };
        let (mut request, raw, items, rejected) = match payload {
            Payload::Encoded { body, items } => (None, Some(body), items, Rejected::default()),
            Payload::Decoded { mut request, raw } => {
                let rejected = S::reject_invalid(&mut request);
                if rejected.count > 0 {
                    self.telemetry
                        .refused(signal, protocol, "invalid", rejected.count, false);
                }
                // Bytes that no longer match the request are of no use.
                let raw = raw.filter(|_| rejected.count == 0);
                let items = S::item_count(&request);
                (Some(request), raw, items, rejected)
            }
        };
        if items == 0 {
            return Ok(rejected);
        }
        let routes = self
            .routes
            .get(&(receiver.clone(), S::KIND))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, route) in routes.iter().enumerate() {
            let body = match request.as_mut() {
                None => raw.clone().unwrap_or_default(),
                Some(decoded) => {
                    // The last pipeline takes the request; earlier ones (rare) work on a copy.
                    let mut copy = (i + 1 < routes.len()).then(|| decoded.clone());
                    let own = copy.as_mut().unwrap_or(decoded);
                    let mut changed = false;
                    for processor in &route.processors {
                        changed |= processor.process::<S>(own, &self.telemetry);
                    }
                    match &raw {
                        Some(raw) if !changed => raw.clone(),
                        _ => Bytes::from(own.encode_to_vec()),
                    }
                }
            };
            let entry = WalEntry::encode(EntryKind::Received, S::KIND, &route.pipeline, items, &body);
            if let Err(error) = self.appender.append(entry).await {
                if matches!(error, AppendError::Full) {
                    self.refusing.store(true, Ordering::Relaxed);
                }
                self.telemetry
                    .refused(signal, protocol, IngestError::from(error.clone()).reason(), items, true);
                return Err(error.into());
            }
        }
        self.refusing.store(false, Ordering::Relaxed);
        self.telemetry.accepted(signal, protocol, items);
        Ok(rejected)
    }
}
