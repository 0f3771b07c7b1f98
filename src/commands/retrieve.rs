use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{Context, Result};
use rankdistill_ingest::retrieve::{retrieve, RetrieveOptions};
use rankdistill_store::Store;

use crate::cli::RetrieveArgs;
use crate::progress::CounterBar;

pub async fn run(store: Store, args: RetrieveArgs, quiet: bool) -> Result<()> {
    let options = RetrieveOptions {
        source: args.name.clone(),
        k: args.k,
        splits: args.split,
    };
    let progress = Arc::new(AtomicU64::new(0));
    let bar = CounterBar::start(
        &format!("retrieving {}", args.name),
        progress.clone(),
        None,
        quiet,
    );
    let result = retrieve(&store, &options, progress).await;
    drop(bar);
    let summary = result.context("retrieval failed; the candidates table is unchanged")?;

    println!(
        "retrieved {} candidates for {} queries as source {} (index built in {:.1} s, searched in {:.1} s)",
        summary.candidates, summary.queries, args.name, summary.index_seconds, summary.search_seconds
    );
    Ok(())
}
