//! Metric series: points grouped by series (service and point attributes), bucketed by `step`,
//! each bucket reduced by one aggregation. Hand-written over the store's rollups and points — the
//! reductions are [`sift_storage::rollup`] — rather than DataFusion, which would add ~27 minutes
//! to a release build for a handful of reductions.
//!
//! A query whose step is a whole number of minutes reads the store's per-minute rollups (a row per
//! series and minute, whatever the point rate); the steps they cannot answer exactly (see
//! [`sift_storage::rollup`]), and queries whose step is not whole minutes, read the points.

use serde_json::{json, Value};
use sift_storage::rollup::{Agg, MetricQuery};
use sift_storage::{Store, Table, TimeRange};

use crate::ApiError;

/// Points (and rollups) a metric query reads at most.
const POINT_BUDGET: usize = 2_000_000;

/// The step of a query that names none, for a range of `range` nanoseconds: about 60 points, at
/// least a second apart; from a minute up, rounded to the nearest whole minutes, which the
/// per-minute rollups answer (a range of 90 minutes: 2-minute steps, 45 points).
pub fn default_step(range: u64) -> u64 {
    const MINUTE: u64 = 60_000_000_000;
    let step = (range / 60).max(1_000_000_000);
    if step < MINUTE {
        return step;
    }
    (step + MINUTE / 2) / MINUTE * MINUTE
}

/// Parses `agg`.
pub fn parse_agg(text: &str) -> Result<Agg, ApiError> {
    Agg::parse(text)
        .ok_or_else(|| ApiError::BadRequest(format!("agg: unknown aggregation {text:?} ({})", Agg::NAMES.join(", "))))
}

/// Runs `query` on `store`: the series as the API shows them, and whether the answer is partial
/// (the budget cut a read short, or files are damaged).
pub fn series(store: &dyn Store, query: &MetricQuery) -> Result<(Vec<Value>, bool), ApiError> {
    let started = std::time::Instant::now();
    let found = query.run(store, POINT_BUDGET, true)?;
    tracing::debug!(
        name = %query.name,
        from_rollups = found.from_rollups,
        steps_from_points = found.steps_from_points,
        series = found.series.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "metric query"
    );
    let range = TimeRange {
        start: Some(query.start),
        end: Some(query.end),
    };
    let partial = found.cut || store.partial(Table::Metrics, &range, false);
    let series = found
        .series
        .into_iter()
        .map(|(labels, points)| {
            let points: Vec<Value> = points
                .into_iter()
                .map(|(n, v)| json!([(query.start + n * query.step) / 1_000_000_000, v]))
                .collect();
            json!({ "labels": labels, "points": points })
        })
        .collect();
    Ok((series, partial))
}

#[cfg(test)]
mod tests {
    use super::default_step;

    #[test]
    fn default_steps_are_whole_minutes_from_a_minute_up() {
        let (second, minute) = (1_000_000_000u64, 60_000_000_000u64);
        for (range, step) in [
            (10 * second, second),
            (30 * minute, 30 * second),
            (59 * minute, 59 * second),
            (60 * minute, minute),
            (60 * minute + second, minute),
            (89 * minute, minute),
            (90 * minute, 2 * minute),
            (24 * 60 * minute, 24 * minute),
            (7 * 24 * 60 * minute + 123, 168 * minute),
        ] {
            assert_eq!(default_step(range), step, "range {range}");
        }
    }
}
