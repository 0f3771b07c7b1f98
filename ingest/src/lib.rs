//! Readers for the field's file formats, validated and written to a rankdistill store.
//!
//! Supported sources: BEIR folders, MS MARCO style folders and files, TREC qrels and runs, text
//! triples, and Tevatron or FlagEmbedding JSONL training groups, each from a local path or an
//! `s3://` URI, plain or gzipped. An import reads its files once, streaming rows into staged Lance
//! writes, and commits only when every file was valid: an error names the file, the line and the
//! value, and leaves the store as it was.
//!
//! [`retrieve`] finds BM25 candidates with Lance's full-text index. [`pack`] builds training groups from the stored tables. [`scoring`] runs a teacher cross-encoder over the stored pairs and stores its scores.

mod batch;
mod error;
pub mod formats;
mod ids;
mod import;
mod input;
pub mod pack;
pub mod retrieve;
pub mod scoring;
mod sinks;
pub mod teachers;

pub use batch::{BatchBuilder, Value, BATCH_ROWS};
pub use error::{IngestError, Result};
pub use ids::UnknownIds;
pub use import::{ImportOptions, ImportSummary, Importer};
pub use input::{InputPath, LineReader, LocalInput, Position};
pub use sinks::Sinks;
