//! Reading query and passage texts by id.

use std::collections::{HashMap, HashSet};

use arrow_array::{Array, RecordBatch, StringArray};
use futures::TryStreamExt;

use crate::error::{Result, StoreError};
use crate::schema::Table;
use crate::store::Store;

impl Store {
    /// Returns the text of every query, by query id.
    pub async fn query_texts(&self) -> Result<HashMap<String, String>> {
        self.texts(Table::Queries, "query_id", None).await
    }

    /// Returns the texts of the `needed` passages, by passage id. The collection can be much larger
    /// than the passages a job needs, so only those are kept.
    pub async fn passage_texts(&self, needed: &HashSet<&str>) -> Result<HashMap<String, String>> {
        self.texts(Table::Passages, "doc_id", Some(needed)).await
    }

    async fn texts(
        &self,
        table: Table,
        id_column: &str,
        needed: Option<&HashSet<&str>>,
    ) -> Result<HashMap<String, String>> {
        let mut texts = HashMap::new();
        let mut batches = self.scan(table, None, Some(&[id_column, "text"]), None).await?;
        while let Some(batch) = batches.try_next().await.map_err(|e| self.read_error(table, e))? {
            let (ids, values) = (string_column(&batch, 0), string_column(&batch, 1));
            for row in 0..batch.num_rows() {
                let id = ids.value(row);
                if needed.is_none_or(|needed| needed.contains(id)) {
                    texts.insert(id.to_string(), values.value(row).to_string());
                }
            }
        }
        Ok(texts)
    }

    /// Wraps an error met while streaming the rows of `table`.
    pub fn read_error(
        &self,
        table: Table,
        error: lance::deps::datafusion::error::DataFusionError,
    ) -> StoreError {
        self.lance_error(table, lance::Error::from(error))
    }
}

/// Returns column `index` of a batch whose schema makes it a Utf8 column.
///
/// # Panics
/// When the column is not Utf8; the store's schemas fix the type of every column.
pub fn string_column(batch: &RecordBatch, index: usize) -> &StringArray {
    let column = batch.column(index);
    column
        .as_any()
        .downcast_ref()
        .unwrap_or_else(|| panic!("column {index} is {}, not Utf8", column.data_type()))
}
