use anyhow::Result;
use rankdistill_eval::runs::load_measure;
use rankdistill_eval::significance::{compare, Comparison};
use rankdistill_store::Store;
use serde_json::json;
use tracing::warn;

use crate::cli::{CompareArgs, OutputFormat};

pub async fn run(store: Store, args: CompareArgs) -> Result<()> {
    let a = load_measure(&store, &args.run_a, &args.split, &args.metric).await?;
    let b = load_measure(&store, &args.run_b, &args.split, &args.metric).await?;

    let mut query_ids: Vec<&String> = a.keys().filter(|query_id| b.contains_key(*query_id)).collect();
    query_ids.sort();
    if query_ids.len() < a.len().max(b.len()) {
        warn!(
            run_a_queries = a.len(),
            run_b_queries = b.len(),
            shared = query_ids.len(),
            "the runs were evaluated on different queries; comparing the shared ones"
        );
    }
    if query_ids.is_empty() {
        anyhow::bail!("runs {} and {} share no evaluated query", args.run_a, args.run_b);
    }

    let pairs: Vec<(f64, f64)> = query_ids.iter().map(|id| (a[*id], b[*id])).collect();
    let comparison = compare(&pairs, args.trials, args.seed);
    match args.format {
        OutputFormat::Table => print_table(&args, &comparison),
        OutputFormat::Json => println!("{}", to_json(&args, &comparison)),
    }
    Ok(())
}

fn print_table(args: &CompareArgs, c: &Comparison) {
    println!("{} on {} ({} queries)", args.metric, args.split, c.queries);
    println!("{:<28} {:.4}", format!("mean {}", args.run_a), c.mean_a);
    println!("{:<28} {:.4}", format!("mean {}", args.run_b), c.mean_b);
    println!("{:<28} {:+.4}", "difference A - B", c.mean_a - c.mean_b);
    println!(
        "{:<28} {} / {} / {}",
        "wins / ties / losses of A", c.wins, c.ties, c.losses
    );
    println!("{:<28} t = {:.3}, p = {:.4}", "paired t-test", c.t, c.t_test_p);
    println!(
        "{:<28} p = {:.4} ({} trials, seed {})",
        "paired randomization test", c.randomization_p, c.trials, args.seed
    );
}

fn to_json(args: &CompareArgs, c: &Comparison) -> serde_json::Value {
    json!({
        "metric": args.metric,
        "split": args.split,
        "run_a": args.run_a,
        "run_b": args.run_b,
        "queries": c.queries,
        "mean_a": c.mean_a,
        "mean_b": c.mean_b,
        "wins": c.wins,
        "ties": c.ties,
        "losses": c.losses,
        "t": c.t,
        "t_test_p": c.t_test_p,
        "randomization_p": c.randomization_p,
        "trials": c.trials,
        "seed": args.seed,
    })
}
