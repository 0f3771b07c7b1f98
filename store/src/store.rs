use std::collections::HashMap;
use std::sync::Arc;

use lance::dataset::builder::DatasetBuilder;
use lance::deps::datafusion::physical_plan::SendableRecordBatchStream;
use lance::io::{ObjectStoreParams, StorageOptionsAccessor};
use lance::Dataset;

use crate::error::{Result, StoreError};
use crate::location::StoreLocation;
use crate::s3::S3Settings;
use crate::schema::Table;

/// Transaction property under which a commit records what wrote it.
pub(crate) const MESSAGE_PROPERTY: &str = "rankdistill.message";

/// A store: the Lance datasets of every [`Table`] under one root.
///
/// Opening a store does no I/O; each table is opened, and its schema checked, when it is used.
#[derive(Debug, Clone)]
pub struct Store {
    location: StoreLocation,
    s3: S3Settings,
}

/// Size and version of one table, as `rankdistill store info` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub table: Table,
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub fragments: usize,
}

/// One version of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: u64,
    /// Commit time in RFC 3339 form, UTC.
    pub timestamp: String,
    pub rows: u64,
    /// Lance operation name, such as `Append`, `Overwrite` or `Merge`.
    pub operation: String,
    /// The writer's note about the commit, such as the command and the imported file.
    pub message: Option<String>,
}

impl Store {
    /// Opens the store at `uri` (a local path or `s3://bucket/prefix`).
    pub fn open(uri: &str, s3: S3Settings) -> Result<Self> {
        let location = StoreLocation::parse(uri)?;
        Ok(Self { location, s3 })
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    pub fn s3_settings(&self) -> &S3Settings {
        &self.s3
    }

    /// Returns the URI of the Lance dataset that stores `table`.
    pub fn table_uri(&self, table: Table) -> String {
        self.location.child_uri(&table.dataset_name())
    }

    pub(crate) fn storage_options(&self) -> HashMap<String, String> {
        if self.location.is_s3() {
            self.s3.storage_options()
        } else {
            HashMap::new()
        }
    }

    pub(crate) fn object_store_params(&self) -> ObjectStoreParams {
        ObjectStoreParams {
            storage_options_accessor: Some(Arc::new(StorageOptionsAccessor::with_static_options(
                self.storage_options(),
            ))),
            ..Default::default()
        }
    }

    pub(crate) fn lance_error(&self, table: Table, source: lance::Error) -> StoreError {
        StoreError::Lance {
            table,
            uri: self.table_uri(table),
            source,
        }
    }

    /// Opens the latest version of `table`, or `None` when the table has not been written yet.
    pub async fn try_dataset(&self, table: Table) -> Result<Option<Dataset>> {
        match self.load(table, None).await {
            Ok(dataset) => Ok(Some(dataset)),
            Err(StoreError::TableNotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Opens `table` at version `as_of`, or at its latest version.
    pub async fn dataset(&self, table: Table, as_of: Option<u64>) -> Result<Dataset> {
        self.load(table, as_of).await
    }

    async fn load(&self, table: Table, as_of: Option<u64>) -> Result<Dataset> {
        let uri = self.table_uri(table);
        let mut builder = DatasetBuilder::from_uri(&uri).with_storage_options(self.storage_options());
        if let Some(version) = as_of {
            builder = builder.with_version(version);
        }

        let dataset = match builder.load().await {
            Ok(dataset) => dataset,
            Err(source) => return Err(self.load_error(table, as_of, source).await),
        };

        let schema = arrow_schema::Schema::from(dataset.schema());
        table
            .check_schema(&schema)
            .map_err(|reason| StoreError::SchemaMismatch { table, uri, reason })?;
        Ok(dataset)
    }

    /// Explains a failed load: a missing table, a missing version of an existing table, or a
    /// Lance error.
    async fn load_error(&self, table: Table, as_of: Option<u64>, source: lance::Error) -> StoreError {
        let root = self.location.to_string();
        let not_found = matches!(
            source,
            lance::Error::DatasetNotFound { .. }
                | lance::Error::VersionNotFound { .. }
                | lance::Error::NotFound { .. }
        );
        match as_of {
            Some(version) if not_found && Box::pin(self.load(table, None)).await.is_ok() => {
                StoreError::VersionNotFound { table, version, root }
            }
            _ if matches!(source, lance::Error::DatasetNotFound { .. }) => {
                StoreError::TableNotFound { table, root }
            }
            _ => self.lance_error(table, source),
        }
    }

    /// Returns the size and version of every table that exists, in [`Table::ALL`] order.
    pub async fn info(&self) -> Result<Vec<TableInfo>> {
        let mut infos = Vec::new();
        for table in Table::ALL {
            let Some(dataset) = self.try_dataset(table).await? else {
                continue;
            };
            let summary = dataset.manifest().summary();
            infos.push(TableInfo {
                table,
                version: dataset.version().version,
                rows: summary.total_rows,
                bytes: summary.total_files_size,
                fragments: dataset.count_fragments(),
            });
        }
        Ok(infos)
    }

    /// Lists the versions of `table`, oldest first.
    pub async fn versions(&self, table: Table) -> Result<Vec<VersionInfo>> {
        let dataset = self.dataset(table, None).await?;
        let versions = dataset.versions().await.map_err(|e| self.lance_error(table, e))?;

        let mut infos = Vec::with_capacity(versions.len());
        for version in versions {
            let transaction = dataset
                .read_version_transaction(version.version)
                .await
                .map_err(|e| self.lance_error(table, e))?
                .transaction;
            let operation = transaction
                .as_ref()
                .map(|t| t.operation.name().to_string())
                .unwrap_or_default();
            let message = transaction
                .and_then(|t| t.transaction_properties)
                .and_then(|properties| properties.get(MESSAGE_PROPERTY).cloned());
            let rows = version
                .metadata
                .get("total_rows")
                .and_then(|rows| rows.parse().ok())
                .unwrap_or_default();

            infos.push(VersionInfo {
                version: version.version,
                timestamp: version.timestamp.to_rfc3339(),
                rows,
                operation,
                message,
            });
        }
        Ok(infos)
    }

    /// Counts the rows of `table` that match a SQL predicate, or all rows.
    pub async fn count_rows(&self, table: Table, filter: Option<&str>) -> Result<u64> {
        let dataset = self.dataset(table, None).await?;
        let rows = dataset
            .count_rows(filter.map(str::to_string))
            .await
            .map_err(|e| self.lance_error(table, e))?;
        Ok(rows as u64)
    }

    /// Streams `columns` of `table` (all columns when `None`), filtered by a SQL predicate.
    pub async fn scan(
        &self,
        table: Table,
        as_of: Option<u64>,
        columns: Option<&[&str]>,
        filter: Option<&str>,
    ) -> Result<SendableRecordBatchStream> {
        self.scan_fragments(table, as_of, columns, filter, None).await
    }

    /// Like [`Store::scan`], reading the table's fragments in the order given by
    /// `fragment_order`, which receives the fragment count and returns a permutation of
    /// `0..count`. Rows within a fragment keep their order.
    pub async fn scan_fragments(
        &self,
        table: Table,
        as_of: Option<u64>,
        columns: Option<&[&str]>,
        filter: Option<&str>,
        fragment_order: Option<&(dyn Fn(usize) -> Vec<usize> + Send + Sync)>,
    ) -> Result<SendableRecordBatchStream> {
        let dataset = self.dataset(table, as_of).await?;
        let mut scanner = dataset.scan();
        if let Some(order) = fragment_order {
            let fragments = dataset.manifest().fragments.clone();
            let ordered = order(fragments.len())
                .into_iter()
                .map(|index| fragments[index].clone())
                .collect();
            scanner.with_fragments(ordered);
        }
        if let Some(columns) = columns {
            scanner.project(columns).map_err(|e| self.lance_error(table, e))?;
        }
        if let Some(filter) = filter {
            scanner.filter(filter).map_err(|e| self.lance_error(table, e))?;
        }
        let stream = scanner
            .try_into_stream()
            .await
            .map_err(|e| self.lance_error(table, e))?;
        Ok(stream.into())
    }
}
