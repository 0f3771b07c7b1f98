//! SQL over a store: every table is registered with DataFusion under its name.

use std::sync::Arc;

use arrow_array::RecordBatch;
use rankdistill_store::deps::datafusion::error::DataFusionError;
use rankdistill_store::deps::datafusion::prelude::SessionContext;
use rankdistill_store::deps::lance::datafusion::LanceTableProvider;
use rankdistill_store::{Store, StoreError, Table};

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

/// Opens a DataFusion session in which every existing table of `store` is registered.
pub async fn session(store: &Store) -> Result<SessionContext, SqlError> {
    let context = SessionContext::new();
    for table in Table::ALL {
        let Some(dataset) = store.try_dataset(table).await? else {
            continue;
        };
        let provider = LanceTableProvider::new(Arc::new(dataset), false, false);
        context
            .register_table(table.name(), Arc::new(provider))
            .map_err(|error| SqlError::Query {
                query: format!("register table {table}"),
                error,
            })?;
    }
    Ok(context)
}

/// Runs one SQL statement over the store's tables and returns its result.
pub async fn query(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    let context = session(store).await?;
    let query_error = |error| SqlError::Query {
        query: sql.to_string(),
        error,
    };
    let frame = context.sql(sql).await.map_err(query_error)?;
    frame.collect().await.map_err(query_error)
}
