//! Evaluation over a rankdistill store: trec_eval-compatible measures and a summary of the
//! collection a store holds.

pub mod metrics;
pub mod sql;
pub mod summary;
pub mod trec;
