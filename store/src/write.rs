use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use lance::dataset::transaction::Transaction;
use lance::dataset::{
    CommitBuilder, InsertBuilder, MergeInsertBuilder, WhenMatched, WhenNotMatched, WhenNotMatchedBySource,
    WriteMode as LanceWriteMode, WriteParams,
};
use lance::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use lance::deps::datafusion::physical_plan::SendableRecordBatchStream;
use lance::Dataset;
use tracing::{debug, info};

use crate::error::{Result, StoreError};
use crate::schema::Table;
use crate::store::{Store, MESSAGE_PROPERTY};

/// The change a staged write makes to its table when committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// Replaces every row of the table.
    Overwrite,
    /// Adds rows; the caller checks that no key is already present.
    Append,
    /// Replaces the rows whose partition column (see [`Table::partition_column`]) is one of the
    /// values, keeping every other row.
    ReplacePartition(Vec<String>),
    /// Replaces the rows that match a SQL predicate, such as `run = 'a' AND split = 'test'`,
    /// keeping every other row. Staged rows with the key of a kept row update that row.
    ReplaceWhere(String),
}

/// Data files written for one table but not yet visible to readers.
///
/// Nothing changes in the table until [`Store::commit`] is called. Dropping a staged write leaves
/// its files unreferenced, and Lance's cleanup removes them.
pub struct StagedWrite {
    table: Table,
    base: Option<Arc<Dataset>>,
    transaction: Transaction,
    rows: u64,
}

impl StagedWrite {
    pub fn table(&self) -> Table {
        self.table
    }

    /// Returns the number of rows the write adds.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

impl Store {
    /// Writes `batches` as data files of `table` without committing them.
    ///
    /// The stream must have exactly the table's schema. When the table does not exist yet, every
    /// mode creates it. An error from the stream aborts the write and leaves the table unchanged.
    pub async fn stage(
        &self,
        table: Table,
        mode: WriteMode,
        batches: SendableRecordBatchStream,
    ) -> Result<StagedWrite> {
        check_stream_schema(table, &batches)?;
        let (batches, row_counter) = count_rows(batches);
        let base = self.try_dataset(table).await?.map(Arc::new);

        let transaction = match (&mode, &base) {
            (WriteMode::ReplacePartition(values), Some(dataset)) => {
                let predicate = partition_predicate(table, values)?;
                self.stage_replace(table, dataset.clone(), &predicate, batches)
                    .await?
            }
            (WriteMode::ReplaceWhere(predicate), Some(dataset)) => {
                self.stage_replace(table, dataset.clone(), predicate, batches)
                    .await?
            }
            _ => self.stage_insert(table, &mode, base.clone(), batches).await?,
        };

        let rows = row_counter.load(Ordering::Relaxed);
        debug!(table = %table, rows, ?mode, "staged write");
        Ok(StagedWrite {
            table,
            base,
            transaction,
            rows,
        })
    }

    async fn stage_insert(
        &self,
        table: Table,
        mode: &WriteMode,
        base: Option<Arc<Dataset>>,
        batches: SendableRecordBatchStream,
    ) -> Result<Transaction> {
        let lance_mode = match (mode, &base) {
            (_, None) => LanceWriteMode::Create,
            (WriteMode::Overwrite, Some(_)) => LanceWriteMode::Overwrite,
            _ => LanceWriteMode::Append,
        };
        let params = WriteParams {
            mode: lance_mode,
            store_params: Some(self.object_store_params()),
            ..Default::default()
        };

        let uri = self.table_uri(table);
        let builder = match base {
            Some(dataset) => InsertBuilder::new(dataset),
            None => InsertBuilder::new(uri.as_str()),
        };
        builder
            .with_params(&params)
            .execute_uncommitted_stream(batches)
            .await
            .map_err(|e| self.lance_error(table, e))
    }

    /// Stages one merge-insert that deletes the rows matching `predicate` and inserts `batches`.
    async fn stage_replace(
        &self,
        table: Table,
        dataset: Arc<Dataset>,
        predicate: &str,
        batches: SendableRecordBatchStream,
    ) -> Result<Transaction> {
        let keys = table.key_columns().iter().map(|c| c.to_string()).collect();
        let lance_error = |e| self.lance_error(table, e);

        let delete_rule = WhenNotMatchedBySource::delete_if(&dataset, predicate).map_err(lance_error)?;
        let job = MergeInsertBuilder::try_new(dataset, keys)
            .map_err(lance_error)?
            .when_matched(WhenMatched::UpdateAll)
            .when_not_matched(WhenNotMatched::InsertAll)
            .when_not_matched_by_source(delete_rule)
            .try_build()
            .map_err(lance_error)?;

        let merge = job.execute_uncommitted(batches).await.map_err(lance_error)?;
        Ok(merge.transaction)
    }

    /// Creates `table` with no rows when it does not exist yet, so that concurrent writers can all
    /// append to it. Another writer creating it first is not an error.
    pub async fn ensure_table(&self, table: Table) -> Result<()> {
        if self.try_dataset(table).await?.is_some() {
            return Ok(());
        }
        let schema = table.schema();
        let empty = RecordBatchStreamAdapter::new(schema, futures::stream::empty());
        let created = match self.stage(table, WriteMode::Append, Box::pin(empty)).await {
            Ok(staged) => self.commit(vec![staged], "create empty table").await.map(|_| ()),
            Err(error) => Err(error),
        };
        match created {
            Ok(()) => Ok(()),
            // Lance reports a concurrent creation at staging or at commit time.
            Err(error) if self.try_dataset(table).await?.is_some() => {
                debug!(table = %table, %error, "another writer created the table first");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Commits staged writes one table at a time, in the given order, and returns the new
    /// version of each table.
    ///
    /// Each table changes in one Lance commit. NOTE: Lance has no commit across datasets, so a
    /// process killed between two of these commits leaves the earlier tables at their new
    /// version and the later ones at their old version.
    pub async fn commit(&self, staged: Vec<StagedWrite>, message: &str) -> Result<Vec<u64>> {
        let mut versions = Vec::with_capacity(staged.len());
        for write in staged {
            let table = write.table;
            let rows = write.rows;
            let version = self.commit_one(write, message).await?;
            info!(table = %table, rows, version, "committed");
            versions.push(version);
        }
        Ok(versions)
    }

    async fn commit_one(&self, write: StagedWrite, message: &str) -> Result<u64> {
        let mut transaction = write.transaction;
        let properties = HashMap::from([(MESSAGE_PROPERTY.to_string(), message.to_string())]);
        transaction.transaction_properties = Some(Arc::new(properties));

        let uri = self.table_uri(write.table);
        let builder = match write.base {
            Some(dataset) => CommitBuilder::new(dataset),
            None => CommitBuilder::new(uri.as_str()),
        };
        let dataset = builder
            .with_store_params(self.object_store_params())
            .execute(transaction)
            .await
            .map_err(|e| self.lance_error(write.table, e))?;
        Ok(dataset.version().version)
    }
}

/// Returns the SQL predicate that selects the rows of a partition replace.
fn partition_predicate(table: Table, values: &[String]) -> Result<String> {
    let column = table.partition_column().ok_or_else(|| StoreError::InvalidWrite {
        table,
        reason: "the table has no partition column, so it can only be overwritten or appended to".into(),
    })?;
    if values.is_empty() {
        return Ok("false".to_string());
    }
    let quoted: Vec<String> = values.iter().map(|value| quote_literal(value)).collect();
    Ok(format!("{column} IN ({})", quoted.join(", ")))
}

/// Quotes a string as a SQL literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn check_stream_schema(table: Table, batches: &SendableRecordBatchStream) -> Result<()> {
    let expected = table.schema();
    let actual = batches.schema();
    if actual.fields() == expected.fields() {
        return Ok(());
    }
    Err(StoreError::InvalidWrite {
        table,
        reason: format!("the batches have schema {actual:?}, expected {expected:?}"),
    })
}

/// Wraps a stream so that the rows passing through it are counted.
fn count_rows(batches: SendableRecordBatchStream) -> (SendableRecordBatchStream, Arc<AtomicU64>) {
    let counter = Arc::new(AtomicU64::new(0));
    let schema = batches.schema();
    let counted = {
        let counter = counter.clone();
        batches.map(move |batch| {
            if let Ok(batch) = &batch {
                counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            batch
        })
    };
    let stream = RecordBatchStreamAdapter::new(schema, counted);
    (Box::pin(stream), counter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::S3Settings;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_ensure_table_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), S3Settings::default()).unwrap();

        let attempts = (0..4).map(|_| store.ensure_table(Table::TeacherScores));
        let results = futures::future::join_all(attempts).await;
        for result in results {
            assert!(result.is_ok(), "{:?}", result.err());
        }
        let dataset = store.try_dataset(Table::TeacherScores).await.unwrap();
        assert!(dataset.is_some(), "the table exists");
        assert_eq!(store.count_rows(Table::TeacherScores, None).await.unwrap(), 0);
    }
}
