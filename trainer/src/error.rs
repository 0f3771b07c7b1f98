use std::path::PathBuf;

/// Errors from loading, running, training or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{path}: file not found; a model folder needs config.json, model.safetensors and tokenizer.json"
    )]
    MissingFile { path: PathBuf },

    #[error("{path}: invalid config: {message}")]
    InvalidConfig { path: PathBuf, message: String },

    #[error("{path}: unsupported architecture {found}; supported: BERT (model_type \"bert\")")]
    UnsupportedArchitecture { path: PathBuf, found: String },

    #[error("{path}: tensor {tensor}: {message}")]
    InvalidTensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },

    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("reading or writing {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("{tensor} has shape {found:?}, but the student logits have shape {expected:?}")]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("the {loss} loss needs teacher scores, but none were given")]
    MissingTeacher { loss: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Store(#[from] rankdistill_store::StoreError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
