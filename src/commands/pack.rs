use anyhow::{Context, Result};
use rankdistill_ingest::pack::{pack, PackOptions};
use rankdistill_store::Store;

use crate::cli::PackArgs;

pub async fn run(store: Store, args: PackArgs) -> Result<()> {
    let options = PackOptions {
        name: args.name.clone(),
        split: args.split,
        source: args.source,
        depth: args.depth,
        min_relevance: args.min_relevance,
        min_negatives: args.min_negatives,
        teacher: args.teacher,
        filter: args.filter,
    };
    let summary = pack(&store, &options).await.with_context(|| {
        format!(
            "packing group set {} failed; the groups table is unchanged",
            args.name
        )
    })?;
    println!(
        "packed {} groups ({} members) as {} (version {} of the groups table); skipped {} queries without a positive \
         and {} with fewer than {} negatives",
        summary.groups,
        summary.members,
        args.name,
        summary.version,
        summary.skipped_without_positive,
        summary.skipped_few_negatives,
        options.min_negatives
    );
    Ok(())
}
