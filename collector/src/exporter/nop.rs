//! `nop`: accepts and discards every batch (for benchmarks and tests).

use sift_wal::WalEntry;

use super::{Delivery, ExportFuture, Exporter};

pub(super) struct NopExporter;

impl Exporter for NopExporter {
    fn export<'a>(&'a mut self, _batch: &'a [WalEntry]) -> ExportFuture<'a> {
        Box::pin(async { Ok(Delivery::default()) })
    }
}
