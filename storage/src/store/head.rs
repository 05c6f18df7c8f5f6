//! The in-memory head: per (table, hour), the record batches appended since the last flush.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;

use super::manifest::ServiceRows;
use crate::columnar::{rollups, Table};
use crate::rollup::Rollup;

/// The rollups of a metrics head's points, updated as they arrive (shared with the snapshots
/// that queries read: a query sees points appended after its snapshot's batches too).
pub(crate) type HeadRollups = Arc<Mutex<BTreeMap<rollups::Key, Rollup>>>;

/// Rows of one table and hour waiting for the next flush. `id` is the part they will become.
#[derive(Debug, Clone)]
pub(crate) struct HeadPartition {
    pub table: Table,
    pub hour: u64,
    pub id: u64,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub bytes: usize,
    pub min_time: u64,
    pub max_time: u64,
    pub services: BTreeMap<String, ServiceRows>,
    /// Metrics: the rollups of the rows (as added: not collapsed).
    pub rollups: HeadRollups,
}

impl HeadPartition {
    pub(crate) fn new(table: Table, hour: u64, id: u64) -> Self {
        HeadPartition {
            table,
            hour,
            id,
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            min_time: u64::MAX,
            max_time: 0,
            services: BTreeMap::new(),
            rollups: HeadRollups::default(),
        }
    }

    /// Adds a batch with the times and services of its rows.
    pub(crate) fn push(&mut self, batch: RecordBatch, stats: &BatchStats) {
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.min_time = self.min_time.min(stats.min_time);
        self.max_time = self.max_time.max(stats.max_time);
        for (service, rows) in &stats.services {
            self.services.entry(service.clone()).or_default().merge(rows);
        }
        self.batches.push(batch);
    }

    pub(crate) fn overlaps(&self, range: &crate::TimeRange) -> bool {
        self.rows > 0 && range.overlaps(self.min_time, self.max_time)
    }
}

/// What the store tracks about the rows of a batch being built.
#[derive(Debug, Clone)]
pub(crate) struct BatchStats {
    pub min_time: u64,
    pub max_time: u64,
    pub services: BTreeMap<String, ServiceRows>,
}

impl Default for BatchStats {
    fn default() -> Self {
        BatchStats {
            min_time: u64::MAX,
            max_time: 0,
            services: BTreeMap::new(),
        }
    }
}

impl BatchStats {
    pub(crate) fn add(&mut self, service: &str, time: u64) {
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        match self.services.get_mut(service) {
            Some(rows) => rows.add(time),
            None => {
                let mut rows = ServiceRows::default();
                rows.add(time);
                self.services.insert(service.to_owned(), rows);
            }
        }
    }
}
