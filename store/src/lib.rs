//! The rankdistill store: one Lance dataset per table under a root URI.
//!
//! A store root is a local folder or an `s3://bucket/prefix` URI. Each table in [`Table`] lives in
//! `<root>/<table>.lance` and has one fixed Arrow schema, defined in [`schema`] and checked every
//! time the table is opened. Every write goes through [`Store::stage`] and [`Store::commit`]. The
//! data files are written first and become visible in one Lance commit. A reader never sees a
//! partial write, and a writer killed before its commit leaves the previous version in place.

mod error;
mod location;
mod s3;
pub mod schema;
mod search;
mod sql;
mod store;
mod texts;
mod write;

pub use error::{Result, StoreError};
pub use location::StoreLocation;
pub use s3::S3Settings;
pub use schema::Table;
pub use search::PASSAGE_INDEX;
pub use store::{Store, TableInfo, VersionInfo};
pub use texts::string_column;
pub use write::{quote_literal, StagedWrite, WriteMode};

/// Re-exports of the Lance and DataFusion versions this crate is built against, so callers pass
/// streams and batches of the same types.
pub mod deps {
    pub use lance;
    pub use lance::deps::datafusion;
}
