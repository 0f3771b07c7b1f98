//! One module per command group.

pub mod compare;
pub mod evaluate;
pub mod import;
pub mod pack;
pub mod pipeline;
pub mod plot;
pub mod rerank;
pub mod retrieve;
pub mod score;
pub mod sql;
pub mod store;
pub mod train;

use anyhow::{Context, Result};
use rankdistill_store::{S3Settings, Store};

use crate::cli::Cli;

/// Opens the store named by `--store`, with S3 settings from the environment.
pub fn open_store(cli: &Cli) -> Result<Store> {
    let s3 = S3Settings::from_env().with_allow_http(cli.allow_http);
    let uri = match &cli.command {
        crate::cli::Command::Pipeline { config } => crate::pipeline::PipelineConfig::load(config)?.store,
        _ => cli.store.clone(),
    };
    Store::open(&uri, s3).with_context(|| format!("cannot open store {uri}"))
}
