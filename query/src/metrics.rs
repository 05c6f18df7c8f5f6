//! Metric series: points grouped by series (service and point attributes), bucketed by `step`,
//! each bucket reduced by one aggregation. Hand-written over the store's rollups and points — the
//! reductions are `sift_storage::rollup` — rather than DataFusion, which would add ~27 minutes to
//! a release build for a handful of reductions.
//!
//! A query whose step is a whole number of minutes reads the store's per-minute rollups (a row per
//! series and minute, whatever the point rate); if they cannot answer exactly (see
//! [`sift_storage::rollup`]) or the step is not whole minutes, it reads the points.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sift_storage::rollup::{reduce_steps, Agg, Inexact, Labels, Rollup, Series, Steps, MINUTE};
use sift_storage::{Store, Table, TimeRange};

use crate::ApiError;

/// Points a metric query reads at most (rollups count as one each).
const POINT_BUDGET: usize = 2_000_000;

/// Parses `agg`.
pub fn parse_agg(text: &str) -> Result<Agg, ApiError> {
    Agg::parse(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "agg: unknown aggregation {text:?} (sum, avg, min, max, rate, p50, p90, p95, p99)"
        ))
    })
}

/// A metric query: one metric's series matching `matchers`, over `[start, end)` in steps of `step`
/// from `start` (a multiple of `step`), each step reduced by `agg`.
pub struct Query {
    /// The metric's name.
    pub name: String,
    /// `key=value` pairs every series' labels must hold.
    pub matchers: Vec<(String, String)>,
    /// Nanoseconds.
    pub start: u64,
    /// Nanoseconds.
    pub end: u64,
    /// Nanoseconds.
    pub step: u64,
    /// The reduction.
    pub agg: Agg,
}

/// What a query found: its series as the API shows them, and whether data was missing.
pub struct Answer {
    /// The series, JSON.
    pub series: Vec<Value>,
    /// The budget cut the read short, or files are damaged.
    pub partial: bool,
    /// Read from rollups (false: from points).
    pub from_rollups: bool,
}

impl Query {
    /// Runs the query on `store`.
    pub fn run(&self, store: &dyn Store) -> Result<Answer, ApiError> {
        let range = TimeRange {
            start: Some(self.start),
            end: Some(self.end),
        };
        let whole_minutes = self.step.is_multiple_of(MINUTE) && self.start.is_multiple_of(MINUTE);
        if whole_minutes {
            let mut series = Series::new(&self.matchers, self.start, self.end, self.step, Some(self.agg));
            let read = store
                .for_each_metric_rollup(&self.name, &range, POINT_BUDGET, &mut |labels, minute, rollup| {
                    series.add_rollup(labels, minute, rollup)
                })
                .map_err(ApiError::from)?;
            if let Some(cut) = read {
                if let Ok(found) = series.finish().and_then(|s| self.render(s)) {
                    let partial = cut
                        || store.partial(Table::Metrics, &range, false)
                        || store.partial(Table::Rollups, &range, false);
                    return Ok(Answer {
                        series: found?,
                        partial,
                        from_rollups: true,
                    });
                }
            }
        }
        let mut series = Series::new(&self.matchers, self.start, self.end, self.step, Some(self.agg));
        let cut = store
            .for_each_metric_point(&self.name, &range, POINT_BUDGET, &mut |row| series.add(&row))
            .map_err(ApiError::from)?;
        let found = series
            .finish()
            .and_then(|s| self.render(s))
            .map_err(|Inexact| ApiError::Internal("points always answer a metric query".into()))??;
        Ok(Answer {
            series: found,
            partial: cut || store.partial(Table::Metrics, &range, false),
            from_rollups: false,
        })
    }

    /// The series, as the API shows them; `Err(Inexact)` if a rollup cannot answer (the outer
    /// result), a bad request (the inner).
    fn render(&self, by_series: BTreeMap<Labels, Steps>) -> Result<Result<Vec<Value>, ApiError>, Inexact> {
        if self.agg == Agg::Rate && by_series.values().flat_map(|s| s.values()).any(Rollup::has_gauge) {
            return Ok(Err(ApiError::BadRequest(
                "agg: rate needs a counter (sum) or histogram; this metric is a gauge".into(),
            )));
        }
        let mut out = Vec::new();
        for (labels, steps) in by_series {
            let points: Vec<Value> = reduce_steps(steps, self.agg, self.step)?
                .into_iter()
                .map(|(n, v)| json!([(self.start + n * self.step) / 1_000_000_000, v]))
                .collect();
            if !points.is_empty() {
                out.push(json!({ "labels": labels, "points": points }));
            }
        }
        Ok(Ok(out))
    }
}
