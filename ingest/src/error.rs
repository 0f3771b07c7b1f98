use rankdistill_store::StoreError;

/// Errors from reading, validating or writing imported data.
///
/// Errors about file contents name the file and the 1-based line number.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },

    #[error("{file}:{line}: invalid UTF-8 at byte {byte} of the line")]
    InvalidUtf8 { file: String, line: usize, byte: usize },

    #[error("{file}: reading failed after line {line}: {message}")]
    Read {
        file: String,
        line: usize,
        message: String,
    },

    #[error("{file}: file not found")]
    NotFound { file: String },

    #[error("{file}: {message}")]
    Unknown { file: String, message: String },

    #[error("fetching {uri} failed: {message}")]
    Fetch { uri: String, message: String },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("the writer of table {0} stopped before the input ended")]
    WriterStopped(rankdistill_store::Table),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Model(#[from] rankdistill_trainer::ModelError),
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
