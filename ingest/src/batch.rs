//! Row-at-a-time builders for the store's tables, and the channels that carry their batches to
//! the Lance writers.

use std::sync::Arc;

use arrow_array::builder::{Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use rankdistill_store::deps::datafusion::error::DataFusionError;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::deps::datafusion::physical_plan::SendableRecordBatchStream;
use rankdistill_store::Table;
use tokio::sync::mpsc;

/// Rows per record batch sent to a writer.
pub const BATCH_ROWS: usize = 8192;

/// Batches in flight per table between the parser and its writer. With [`BATCH_ROWS`], this bounds
/// the rows an import keeps in memory.
const CHANNEL_BATCHES: usize = 4;

/// One cell of a row, in the table's column order.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    I32(i32),
    OptI32(Option<i32>),
    I64(i64),
    F32(f32),
    OptF64(Option<f64>),
}

enum Column {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
}

/// Builds record batches of one table's schema from rows of [`Value`]s.
pub struct BatchBuilder {
    table: Table,
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
}

impl BatchBuilder {
    pub fn new(table: Table) -> Self {
        let schema = table.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Utf8 => Column::Str(StringBuilder::new()),
                DataType::Int32 => Column::I32(Int32Builder::new()),
                DataType::Int64 => Column::I64(Int64Builder::new()),
                DataType::Float32 => Column::F32(Float32Builder::new()),
                DataType::Float64 => Column::F64(Float64Builder::new()),
                other => unreachable!("no builder for column type {other} of table {table}"),
            })
            .collect();
        Self {
            table,
            schema,
            columns,
            rows: 0,
        }
    }

    /// Appends one row; panics when the values do not match the schema, which is a bug in the caller.
    pub fn push(&mut self, row: &[Value]) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "row width for table {}",
            self.table
        );
        for (column, value) in self.columns.iter_mut().zip(row) {
            match (column, *value) {
                (Column::Str(b), Value::Str(v)) => b.append_value(v),
                (Column::Str(b), Value::OptStr(v)) => b.append_option(v),
                (Column::I32(b), Value::I32(v)) => b.append_value(v),
                (Column::I32(b), Value::OptI32(v)) => b.append_option(v),
                (Column::I64(b), Value::I64(v)) => b.append_value(v),
                (Column::F32(b), Value::F32(v)) => b.append_value(v),
                (Column::F64(b), Value::OptF64(v)) => b.append_option(v),
                (_, value) => panic!("value {value:?} does not fit its column in table {}", self.table),
            }
        }
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Returns the rows pushed since the last call as one batch.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|column| match column {
                Column::Str(b) => Arc::new(b.finish()) as ArrayRef,
                Column::I32(b) => Arc::new(b.finish()),
                Column::I64(b) => Arc::new(b.finish()),
                Column::F32(b) => Arc::new(b.finish()),
                Column::F64(b) => Arc::new(b.finish()),
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).expect("builders follow the table schema")
    }

    pub fn table(&self) -> Table {
        self.table
    }
}

type BatchResult = Result<RecordBatch, DataFusionError>;

/// The parser's end of one table's channel: rows go in, full batches go to the writer.
pub struct TableSink {
    builder: BatchBuilder,
    sender: mpsc::Sender<BatchResult>,
    rows: u64,
}

/// Opens a channel for `table`: the sink is fed from a blocking parser thread, and the stream is
/// what the store's writer consumes.
pub fn table_channel(table: Table) -> (TableSink, SendableRecordBatchStream) {
    let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let sink = TableSink {
        builder: BatchBuilder::new(table),
        sender,
        rows: 0,
    };
    let stream = RecordBatchStreamAdapter::new(table.schema(), stream);
    (sink, Box::pin(stream))
}

impl TableSink {
    /// Appends a row, sending a batch to the writer when it is full.
    ///
    /// Blocks while the writer is [`CHANNEL_BATCHES`] batches behind, so call it from a blocking
    /// thread. Returns `false` when the writer has stopped, which happens only after a write error.
    pub fn push(&mut self, row: &[Value]) -> bool {
        self.builder.push(row);
        self.rows += 1;
        if self.builder.len() >= BATCH_ROWS {
            return self.flush();
        }
        true
    }

    /// Sends the rows pushed so far and closes the channel, which ends the writer's stream.
    pub fn finish(mut self) -> bool {
        self.flush()
    }

    /// Aborts the writer: it receives an error in place of the end of its stream.
    pub fn abort(self, reason: &str) {
        let error = ArrowError::ExternalError(reason.to_string().into());
        let _ = self
            .sender
            .blocking_send(Err(DataFusionError::ArrowError(Box::new(error), None)));
    }

    /// Returns the rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn table(&self) -> Table {
        self.builder.table()
    }

    fn flush(&mut self) -> bool {
        if self.builder.is_empty() {
            return true;
        }
        let batch = self.builder.finish();
        self.sender.blocking_send(Ok(batch)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Float64Array, StringArray};

    #[test]
    fn builds_candidate_batch_with_null_score() {
        let mut builder = BatchBuilder::new(Table::Candidates);
        builder.push(&[
            Value::Str("q1"),
            Value::Str("d1"),
            Value::I32(1),
            Value::OptF64(Some(2.5)),
            Value::Str("bm25"),
        ]);
        builder.push(&[
            Value::Str("q1"),
            Value::Str("d2"),
            Value::I32(2),
            Value::OptF64(None),
            Value::Str("bm25"),
        ]);
        let batch = builder.finish();
        assert_eq!(batch.num_rows(), 2);
        assert!(builder.is_empty());

        let doc_ids = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(doc_ids.value(1), "d2");
        let scores = batch.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(scores.value(0), 2.5);
        assert!(scores.is_null(1));
    }

    #[test]
    #[should_panic(expected = "row width")]
    fn rejects_row_of_wrong_width() {
        BatchBuilder::new(Table::Queries).push(&[Value::Str("q1")]);
    }
}
