//! End-to-end tests: they run the `rankdistill` binary on real data, on Lance stores in temporary
//! folders and on an S3 emulator (moto) started on 127.0.0.1.

mod support;

mod bad_input;
mod evaluation;
mod import_counts;
mod interrupted_import;
mod pipeline;
mod reranking;
mod retrieval;
mod s3;
mod scoring;
mod sql;
mod training;
mod versions;
