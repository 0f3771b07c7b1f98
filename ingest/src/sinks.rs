use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rankdistill_store::Table;

use crate::batch::{TableSink, Value};
use crate::error::{IngestError, Result};

/// The tables one import writes, fed row by row from the parser thread.
pub struct Sinks {
    sinks: BTreeMap<Table, TableSink>,
    notes: Vec<String>,
    rows_read: Arc<AtomicU64>,
}

impl Sinks {
    pub(crate) fn new(sinks: impl IntoIterator<Item = TableSink>, rows_read: Arc<AtomicU64>) -> Self {
        Self {
            sinks: sinks.into_iter().map(|sink| (sink.table(), sink)).collect(),
            notes: Vec::new(),
            rows_read,
        }
    }

    /// Appends a row to `table`, which must be one of the tables this import writes.
    pub fn push(&mut self, table: Table, row: &[Value]) -> Result<()> {
        let sink = self
            .sinks
            .get_mut(&table)
            .unwrap_or_else(|| panic!("table {table} is not written by this import"));
        self.rows_read.fetch_add(1, Ordering::Relaxed);
        if sink.push(row) {
            Ok(())
        } else {
            Err(writer_stopped(table))
        }
    }

    /// Returns the rows pushed to `table` so far.
    pub fn rows(&self, table: Table) -> u64 {
        self.sinks.get(&table).map(TableSink::rows).unwrap_or(0)
    }

    /// Records a line for the import summary, such as how many rows were dropped.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub(crate) fn finish(self) -> Result<Vec<String>> {
        for (table, sink) in self.sinks {
            if !sink.finish() {
                return Err(writer_stopped(table));
            }
        }
        Ok(self.notes)
    }

    pub(crate) fn abort(self, reason: &str) {
        for sink in self.sinks.into_values() {
            sink.abort(reason);
        }
    }
}

fn writer_stopped(table: Table) -> IngestError {
    IngestError::WriterStopped(table)
}
