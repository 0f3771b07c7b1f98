//! Evaluation over a rankdistill store. So far: a summary of the collection a store holds.

pub mod summary;
