use crate::schema::Table;

/// Errors from opening, reading or writing a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    #[error("table {table} not found in store {root}; import data into it first")]
    TableNotFound { table: Table, root: String },

    #[error("version {version} of table {table} not found in store {root}; `rankdistill store versions {table}` lists the versions")]
    VersionNotFound {
        table: Table,
        version: u64,
        root: String,
    },

    #[error("table {table} at {uri} has an unexpected schema: {reason}")]
    SchemaMismatch {
        table: Table,
        uri: String,
        reason: String,
    },

    #[error("invalid write to table {table}: {reason}")]
    InvalidWrite { table: Table, reason: String },

    #[error("Lance failed on table {table} at {uri}: {source}")]
    Lance {
        table: Table,
        uri: String,
        #[source]
        source: lance::Error,
    },

    /// DataFusion's message is shown as it phrases it; it is not exposed as a source, so that
    /// error chains do not print it twice.
    #[error("query failed: {error}\nquery: {query}")]
    Query {
        query: String,
        error: lance::deps::datafusion::error::DataFusionError,
    },

    #[error("S3 client setup failed: {0}")]
    ObjectStore(#[from] object_store::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
