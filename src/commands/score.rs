use anyhow::{Context, Result};
use rankdistill_ingest::scoring::{ScoreOptions, TeacherScorer};
use rankdistill_store::Store;
use rankdistill_trainer::{CrossEncoder, LoadOptions};

use crate::cli::ScoreArgs;
use crate::progress::CounterBar;

pub async fn run(store: Store, args: ScoreArgs, quiet: bool) -> Result<()> {
    let load = LoadOptions {
        layers: None,
        seed: args.seed,
    };
    let model = CrossEncoder::load(&args.teacher, &load)
        .with_context(|| format!("cannot load teacher model {}", args.teacher.display()))?;
    let options = ScoreOptions {
        teacher: args.name.clone(),
        max_len: args.max_len,
        batch_size: args.batch,
        commit_every: args.commit_every,
        shard: args.shard,
        sources: args.source.clone(),
        splits: args.split.clone(),
    };
    let scorer = TeacherScorer::new(&store, &model, options)?;

    let plan = scorer.plan().await.context("planning the scoring run failed")?;
    let total = Some(plan.pairs.len() as u64);
    let bar = CounterBar::start(&format!("scoring {}", args.name), scorer.progress(), total, quiet);
    let summary = scorer.run(&plan).await;
    drop(bar);
    let summary = summary
        .context("scoring failed; the pairs committed so far are kept and a new run resumes after them")?;

    let rate = summary.scored as f64 / summary.seconds.max(1e-9);
    println!(
        "scored {} pairs in {:.1} s ({rate:.1} pairs/s), {} were already scored, {} left out without passage text; \
         teacher {} has {} scores",
        summary.scored, summary.seconds, summary.already_scored, plan.without_text, args.name, summary.teacher_rows
    );
    Ok(())
}
