//! Evaluation over a rankdistill store: reranking with a cross-encoder, trec_eval-compatible
//! measures, paired significance tests, SQL over every table and charts of SQL results.

mod error;
pub mod metrics;
pub mod plot;
pub mod rerank;
pub mod runs;
pub mod significance;
pub mod sql;
pub mod summary;
pub mod trec;

pub use error::{EvalError, Result};
