//! SQL over a store: every table is registered with DataFusion under its name.

use arrow_array::RecordBatch;
use rankdistill_store::deps::datafusion::error::DataFusionError;
use rankdistill_store::{Store, StoreError};

/// Errors from a SQL query over a store.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// DataFusion's message is shown as it phrases it; it is not exposed as a source, so that
    /// error chains do not print it twice.
    #[error("query failed: {error}\nquery: {query}")]
    Query { query: String, error: DataFusionError },
}

/// Runs one SQL statement over the store's tables and returns its result.
pub async fn query(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    let context = store.sql_session().await?;
    let query_error = |error| SqlError::Query {
        query: sql.to_string(),
        error,
    };
    let frame = context.sql(sql).await.map_err(query_error)?;
    frame.collect().await.map_err(query_error)
}
