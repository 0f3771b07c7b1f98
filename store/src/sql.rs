//! DataFusion sessions over a store's tables.

use std::sync::Arc;

use lance::datafusion::LanceTableProvider;
use lance::deps::datafusion::prelude::SessionContext;

use crate::error::{Result, StoreError};
use crate::schema::Table;
use crate::store::Store;

impl Store {
    /// Opens a DataFusion session in which every existing table of the store is registered under
    /// its name, at its latest version.
    pub async fn sql_session(&self) -> Result<SessionContext> {
        let context = SessionContext::new();
        for table in Table::ALL {
            let Some(dataset) = self.try_dataset(table).await? else {
                continue;
            };
            let provider = LanceTableProvider::new(Arc::new(dataset), false, false);
            context
                .register_table(table.name(), Arc::new(provider))
                .map_err(|error| StoreError::Query {
                    query: format!("register table {table}"),
                    error,
                })?;
        }
        Ok(context)
    }
}
