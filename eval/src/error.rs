use std::path::PathBuf;

use rankdistill_store::StoreError;
use rankdistill_trainer::ModelError;

use crate::sql::SqlError;

/// Errors from reranking, evaluating from the store, comparing runs and plotting.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    Sql(#[from] SqlError),

    #[error("{0}")]
    InvalidArgument(String),

    #[error("writing {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("drawing {path} failed: {message}")]
    Plot { path: PathBuf, message: String },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
