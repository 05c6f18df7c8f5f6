//! Sift's HTTP query API (SPEC §4): a trace with its logs and exemplars, trace search, full-text
//! log search, metric series, services, the live tail-sampling rules and decisions, and the
//! operational endpoints `/metrics`, `/healthz`, `/readyz`. Every error goes through [`ApiError`].
#![warn(missing_docs)]

mod error;
mod metrics;
pub mod params;
mod pool;
pub mod render;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sift_storage::{LogSearch, StorageError, Store, Table, TraceFilter};

pub use error::{ApiError, InvalidPolicies, NotReady};
use params::Params;
use pool::QueryPool;
pub use pool::{lower_this_thread, STORE_NICE};

/// What the operational endpoints read from the running service.
pub trait Health: Send + Sync + 'static {
    /// Sift's own metrics in Prometheus text format.
    fn metrics_text(&self) -> String;
    /// `Ok` when Sift accepts data; otherwise why not.
    fn readiness(&self) -> Result<(), NotReady>;
}

/// A tail-sampling decision as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingDecision {
    /// `sampled`, `not_sampled` or `pending`.
    pub decision: &'static str,
    /// The deciding policy (empty if none sampled, or pending).
    pub policy: String,
    /// When it was decided (Unix ns), if decided.
    pub decided_at: Option<u64>,
}

/// The running tail samplers, as the API sees them.
pub trait Sampling: Send + Sync + 'static {
    /// The decision for a recent trace, if any sampler saw it.
    fn decision(&self, trace_id: &[u8; 16]) -> Option<SamplingDecision>;
    /// The live policy list (config shape).
    fn policies(&self) -> Value;
    /// Validates and swaps in a new policy list (YAML or JSON, config shape); on error, the message
    /// names the offending path and nothing changed.
    fn replace_policies(&self, body: &str) -> Result<Value, InvalidPolicies>;
}

/// What the query API serves from.
#[derive(Clone)]
pub struct Backends {
    /// Metrics and readiness.
    pub health: Arc<dyn Health>,
    /// The store (`None` when no `storage` exporter is configured).
    pub store: Option<Arc<dyn Store>>,
    /// The tail samplers (`None` when no pipeline samples).
    pub sampling: Option<Arc<dyn Sampling>>,
}

/// How long a query may run before it is answered with `unavailable`.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Store queries running at once, at most.
const QUERY_THREADS: usize = 2;
/// Store queries waiting for a thread, at most (more are refused with 503).
const QUERY_QUEUE: usize = 64;

/// The router's state: what it serves from, and where store queries run.
#[derive(Clone)]
struct Api {
    backends: Backends,
    queries: Arc<QueryPool>,
}

impl std::ops::Deref for Api {
    type Target = Backends;
    fn deref(&self) -> &Backends {
        &self.backends
    }
}

/// The query API router.
pub fn router(backends: Backends) -> Router {
    let api = Api {
        backends,
        queries: Arc::new(QueryPool::new(QUERY_THREADS, QUERY_QUEUE)),
    };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/traces/{trace_id}", get(trace))
        .route("/api/v1/traces", get(search_traces))
        .route("/api/v1/logs", get(search_logs))
        .route("/api/v1/metrics", get(metric_series))
        .route("/api/v1/services", get(services))
        .route("/api/v1/sampling/policies", get(get_policies).put(put_policies))
        .route("/api/v1/sampling/decisions/{trace_id}", get(decision))
        .fallback(not_found)
        .with_state(api)
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::BadQuery(message) => ApiError::BadRequest(message),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

fn store(backends: &Backends) -> Result<Arc<dyn Store>, ApiError> {
    backends
        .store
        .clone()
        .ok_or_else(|| ApiError::Unavailable("no storage exporter is configured: nothing is stored to query".into()))
}

/// Runs a store query on the query threads (see [`pool`]), bounded by [`QUERY_TIMEOUT`] from
/// the moment it is asked (waiting for a thread included).
async fn run<T: Send + 'static>(
    api: &Api,
    store: Arc<dyn Store>,
    query: impl FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let task = api.queries.run(move || query(store.as_ref()));
    match tokio::time::timeout(QUERY_TIMEOUT, task).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Unavailable(format!(
            "query took longer than {}s; narrow the time range or filters",
            QUERY_TIMEOUT.as_secs()
        ))),
    }
}

async fn metrics_text(State(api): State<Api>) -> Response {
    let text = api.health.metrics_text();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(api): State<Api>) -> Response {
    match api.health.readiness() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Err(reason) => ApiError::from(reason).into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint at {}", uri.path()))
}

fn sampling_json(decision: Option<SamplingDecision>) -> Value {
    match decision {
        Some(d) => json!({
            "decision": d.decision,
            "policy": d.policy,
            "decided_at": d.decided_at.map(|t| t.to_string()),
        }),
        None => Value::Null,
    }
}

async fn trace(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let trace_id = params::trace_id("trace_id", &id)?;
    let params = Params::parse(raw.as_deref(), &["start", "end"])?;
    let range = params.range()?;
    let store = store(&api)?;
    let (spans, logs, exemplars, partial) = run(&api, store, move |s| {
        let spans = s.trace(&trace_id, &range)?;
        let logs = s.logs_by_trace(&trace_id, &range)?;
        let exemplars = s.exemplars_by_trace(&trace_id, &range)?;
        let partial = [Table::Spans, Table::Logs, Table::Exemplars]
            .into_iter()
            .any(|table| s.partial(table, &range, false));
        Ok((spans, logs, exemplars, partial))
    })
    .await?;
    if spans.is_empty() && logs.is_empty() {
        let damaged = if partial {
            " (some stored data is damaged, so it may be missing)"
        } else {
            ""
        };
        return Err(ApiError::NotFound(format!(
            "trace {} not found{damaged}",
            hex::encode(trace_id)
        )));
    }
    let sampling = api.sampling.as_ref().and_then(|s| s.decision(&trace_id));
    let mut summary = render::summary(&render::summary_of(&trace_id, &spans));
    summary.remove("trace_id");
    let mut body = json!({
        "trace_id": hex::encode(trace_id),
        "summary": summary,
        "spans": spans.iter().map(render::span).collect::<Vec<_>>(),
        "logs": logs.iter().map(render::log).collect::<Vec<_>>(),
        "exemplars": exemplars.iter().map(render::exemplar).collect::<Vec<_>>(),
        "sampling": sampling_json(sampling),
    });
    if let Value::Object(map) = &mut body {
        mark_partial(map, partial);
    }
    Ok(Json(body))
}

/// Adds `"partial": true` to an answer that misses data (a budget ran out, or stored files are
/// damaged).
fn mark_partial(body: &mut Map<String, Value>, partial: bool) {
    if partial {
        body.insert("partial".into(), Value::Bool(true));
    }
}

async fn search_traces(State(api): State<Api>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &[
            "q",
            "service",
            "name",
            "status",
            "min_duration",
            "max_duration",
            "attr",
            "start",
            "end",
            "limit",
        ],
    )?;
    let status = match params.one("status")? {
        None => None,
        Some("unset") => Some(0),
        Some("ok") => Some(1),
        Some("error") => Some(2),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status: {other:?} is not ok, error or unset"
            )))
        }
    };
    let min = params
        .one("min_duration")?
        .map(|d| params::duration("min_duration", d))
        .transpose()?;
    let max = params
        .one("max_duration")?
        .map(|d| params::duration("max_duration", d))
        .transpose()?;
    let limit = params::limit(params.one("limit")?, 20, 1000)?;
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let filter = TraceFilter {
        query: params.one("q")?.map(str::to_owned),
        service: params.one("service")?.map(str::to_owned),
        name: params.one("name")?.map(str::to_owned),
        status,
        attributes: params
            .all("attr")
            .map(|a| params::key_value("attr", a))
            .collect::<Result<_, _>>()?,
        min_duration: min.map(nanos),
        max_duration: max.map(nanos),
        range: params.search_range()?,
        limit,
        // Past this the answer is partial rather than the request timing out.
        time_budget: Some(QUERY_TIMEOUT / 2),
    };
    let store = store(&api)?;
    let (traces, partial) = run(&api, store, move |s| {
        let hits = s.search_traces(&filter)?;
        let partial = hits.partial || s.partial(Table::Spans, &filter.range, true);
        let traces: Vec<Value> = hits.traces.iter().map(|t| Value::Object(render::summary(t))).collect();
        Ok((traces, partial))
    })
    .await?;
    let mut body = Map::new();
    body.insert("traces".into(), Value::Array(traces));
    mark_partial(&mut body, partial);
    Ok(Json(Value::Object(body)))
}

async fn search_logs(State(api): State<Api>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &["q", "service", "severity_min", "trace_id", "start", "end", "limit"],
    )?;
    let search = LogSearch {
        query: params.one("q")?.unwrap_or("").to_owned(),
        service: params.one("service")?.map(str::to_owned),
        severity_min: params
            .one("severity_min")?
            .map(|s| params::severity("severity_min", s))
            .transpose()?,
        trace_id: params
            .one("trace_id")?
            .map(|t| params::trace_id("trace_id", t))
            .transpose()?,
        range: params.search_range()?,
        limit: params::limit(params.one("limit")?, 100, 1000)?,
    };
    let query = search.query.clone();
    let store = store(&api)?;
    let (rows, partial) = run(&api, store, move |s| {
        let rows = s.search_logs(&search)?;
        Ok((rows, s.partial(Table::Logs, &search.range, true)))
    })
    .await?;
    let logs: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut log = render::log(row);
            if let (Some(text), Value::Object(map)) = (render::highlight(row, &query), &mut log) {
                map.insert("highlight".into(), Value::String(text));
            }
            log
        })
        .collect();
    let mut body = Map::new();
    body.insert("logs".into(), Value::Array(logs));
    mark_partial(&mut body, partial);
    Ok(Json(Value::Object(body)))
}

async fn metric_series(State(api): State<Api>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["name", "match", "start", "end", "step", "agg"])?;
    let name = params
        .one("name")?
        .ok_or_else(|| ApiError::BadRequest("name: required (the metric's name)".into()))?
        .to_owned();
    let matchers: Vec<(String, String)> = params
        .all("match")
        .map(|m| params::key_value("match", m))
        .collect::<Result<_, _>>()?;
    let range = params.range()?;
    let end = range.end.unwrap_or(params::now_nanos() + 1);
    let start = range.start.unwrap_or(end.saturating_sub(3_600_000_000_000));
    if end <= start {
        return Err(ApiError::BadRequest("end: must be after start".into()));
    }
    let step = match params.one("step")? {
        Some(s) => params::duration("step", s)?.as_nanos() as u64,
        None => metrics::default_step(end - start),
    };
    if step < 1_000_000_000 {
        return Err(ApiError::BadRequest("step: must be at least 1s".into()));
    }
    // Buckets start at multiples of the step, so the same query gives the same buckets.
    let start = start / step * step;
    if (end - start) / step > 11_000 {
        return Err(ApiError::BadRequest(format!(
            "step: {}s gives more than 11000 points over this range; use a larger step",
            step / 1_000_000_000
        )));
    }
    let query = sift_storage::rollup::MetricQuery {
        name,
        matchers,
        start,
        end,
        step,
        agg: metrics::parse_agg(params.one("agg")?.unwrap_or("avg"))?,
    };
    let store = store(&api)?;
    let (series, partial) = run(&api, store, move |s| metrics::series(s, &query)).await?;
    let mut body = Map::new();
    body.insert("series".into(), Value::Array(series));
    mark_partial(&mut body, partial);
    Ok(Json(Value::Object(body)))
}

async fn services(State(api): State<Api>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    Params::parse(raw.as_deref(), &[])?;
    let store = store(&api)?;
    let services = run(&api, store, |s| Ok(s.services()?)).await?;
    Ok(Json(json!({
        "services": services.iter().map(|s| json!({
            "name": s.name,
            "span_count": s.span_count,
            "log_count": s.log_count,
            "first_seen": s.first_seen.to_string(),
            "last_seen": s.last_seen.to_string(),
        })).collect::<Vec<_>>()
    })))
}

fn sampling(api: &Backends) -> Result<Arc<dyn Sampling>, ApiError> {
    api.sampling
        .clone()
        .ok_or_else(|| ApiError::NotFound("no pipeline has a tail_sampling processor".into()))
}

async fn get_policies(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "policies": sampling(&api)?.policies() })))
}

async fn put_policies(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let sampling = sampling(&api)?;
    let _ = headers;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("body: not UTF-8 text (send YAML or JSON)".into()))?
        .to_owned();
    let policies = tokio::task::spawn_blocking(move || sampling.replace_policies(&text))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "policies": policies })))
}

async fn decision(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let trace_id = params::trace_id("trace_id", &id)?;
    match sampling(&api)?.decision(&trace_id) {
        Some(d) => Ok(Json(sampling_json(Some(d)))),
        None => Err(ApiError::NotFound(format!(
            "no recent sampling decision for trace {}",
            hex::encode(trace_id)
        ))),
    }
}
