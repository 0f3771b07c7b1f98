//! Rows of the `teachers` table: where a teacher's scores came from.

use arrow_array::{Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{Store, StoreError, Table, WriteMode};
use tracing::debug;

use crate::batch::{BatchBuilder, Value};
use crate::error::{IngestError, Result};

/// Provenance of one teacher's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherRecord {
    pub teacher: String,
    /// Model folder, or `imported from FILE` for precomputed scores.
    pub model: String,
    pub weights_sha256: Option<String>,
    pub max_len: Option<i32>,
    pub template: Option<String>,
    pub dtype: Option<String>,
    /// Scores stored for this teacher.
    pub pairs: i64,
    /// Seconds spent scoring, summed over runs.
    pub wall_seconds: Option<f64>,
    /// RFC 3339 time of the last write.
    pub created_at: String,
}

/// Times a teacher row write is retried after a conflicting commit by another writer.
const WRITE_ATTEMPTS: usize = 5;

impl TeacherRecord {
    pub fn row(&self) -> [Value<'_>; 9] {
        [
            Value::Str(&self.teacher),
            Value::Str(&self.model),
            Value::OptStr(self.weights_sha256.as_deref()),
            Value::OptI32(self.max_len),
            Value::OptStr(self.template.as_deref()),
            Value::OptStr(self.dtype.as_deref()),
            Value::I64(self.pairs),
            Value::OptF64(self.wall_seconds),
            Value::Str(&self.created_at),
        ]
    }

    /// Reads the row of `teacher`, if the store has one.
    pub async fn read(store: &Store, teacher: &str) -> Result<Option<Self>> {
        if store.try_dataset(Table::Teachers).await?.is_none() {
            return Ok(None);
        }
        let filter = format!("teacher = {}", rankdistill_store::quote_literal(teacher));
        let mut batches = store.scan(Table::Teachers, None, None, Some(&filter)).await?;
        let batch = batches
            .try_next()
            .await
            .map_err(|e| IngestError::InvalidArgument(format!("reading table teachers failed: {e}")))?;
        Ok(batch
            .filter(|b| b.num_rows() > 0)
            .map(|b| record_from_batch(&b, 0)))
    }

    /// Writes this row, replacing the teacher's previous row. A commit that conflicts with another
    /// writer's is retried.
    pub async fn write(&self, store: &Store) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.try_write(store).await {
                Err(IngestError::Store(StoreError::Lance { source, .. })) if attempt < WRITE_ATTEMPTS => {
                    debug!(teacher = %self.teacher, attempt, error = %source, "retrying the teachers row write");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_write(&self, store: &Store) -> Result<()> {
        let mut builder = BatchBuilder::new(Table::Teachers);
        builder.push(&self.row());
        let batch = builder.finish();
        let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
        let mode = WriteMode::ReplacePartition(vec![self.teacher.clone()]);
        let staged = store.stage(Table::Teachers, mode, Box::pin(stream)).await?;
        store
            .commit(vec![staged], &format!("teacher {}", self.teacher))
            .await?;
        Ok(())
    }
}

fn record_from_batch(batch: &RecordBatch, row: usize) -> TeacherRecord {
    let text = |name: &str| {
        let column = batch.column_by_name(name).expect("teachers schema column");
        let column = column
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("Utf8 column");
        (!column.is_null(row)).then(|| column.value(row).to_string())
    };
    let max_len = batch
        .column_by_name("max_len")
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned());
    let pairs = batch
        .column_by_name("pairs")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
    let seconds = batch
        .column_by_name("wall_seconds")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());

    TeacherRecord {
        teacher: text("teacher").unwrap_or_default(),
        model: text("model").unwrap_or_default(),
        weights_sha256: text("weights_sha256"),
        max_len: max_len.filter(|c| !c.is_null(row)).map(|c| c.value(row)),
        template: text("template"),
        dtype: text("dtype"),
        pairs: pairs.map(|c| c.value(row)).unwrap_or_default(),
        wall_seconds: seconds.filter(|c| !c.is_null(row)).map(|c| c.value(row)),
        created_at: text("created_at").unwrap_or_default(),
    }
}
