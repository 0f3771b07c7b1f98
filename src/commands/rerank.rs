use anyhow::{Context, Result};
use rankdistill_eval::rerank::{RerankOptions, Reranker};
use rankdistill_eval::trec::write_run;
use rankdistill_store::Store;
use rankdistill_trainer::{CrossEncoder, LoadOptions};

use crate::cli::RerankArgs;
use crate::progress::CounterBar;

pub async fn run(store: Store, args: RerankArgs, quiet: bool) -> Result<()> {
    let load = LoadOptions {
        layers: args.layers,
        seed: args.seed,
    };
    let model = CrossEncoder::load(&args.model, &load)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    let options = RerankOptions {
        run: args.name.clone(),
        source: args.source.clone(),
        top_k: args.top_k,
        split: args.split.clone(),
        max_len: args.max_len,
        batch_size: args.batch,
    };
    let reranker = Reranker::new(&store, &model, options)?;

    let plan = reranker.plan().await.context("planning the rerank failed")?;
    let total = Some(plan.pairs() as u64);
    let bar = CounterBar::start(
        &format!("reranking {}", args.name),
        reranker.progress(),
        total,
        quiet,
    );
    let result = reranker.run(&plan).await;
    drop(bar);
    let (ranked, summary) = result.context("reranking failed; the runs table is unchanged")?;

    if let Some(path) = &args.trec_out {
        write_run(path, &args.name, &ranked).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let rate = summary.pairs as f64 / summary.seconds.max(1e-9);
    println!(
        "reranked {} queries ({} pairs) in {:.1} s ({rate:.1} pairs/s); run {} is version {} of the runs table",
        summary.queries, summary.pairs, summary.seconds, args.name, summary.version
    );
    Ok(())
}
