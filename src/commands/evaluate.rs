use anyhow::{Context, Result};
use rankdistill_eval::metrics::{evaluate, Evaluation, Measure, Qrels, Run};
use rankdistill_eval::runs::{load_qrels, load_run, write_metrics, RunOrigin};
use rankdistill_eval::trec::{read_qrels, read_run};
use rankdistill_store::Store;
use serde_json::json;
use tracing::info;

use crate::cli::{EvaluateArgs, OutputFormat};

pub async fn run(store: Store, args: EvaluateArgs) -> Result<()> {
    let measures = args
        .metrics
        .iter()
        .map(|name| name.parse::<Measure>().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let run = read_run_input(&store, &args).await?;
    let qrels = read_qrels_input(&store, &args).await?;

    let evaluation = evaluate(&run, &qrels, &measures, args.rel_threshold);
    if evaluation.per_query.is_empty() {
        anyhow::bail!("no query of the run has qrels: check that the run and the qrels belong together");
    }
    if let (Some(name), Some(split)) = (&args.run, &args.split) {
        let version = write_metrics(&store, name, split, args.rel_threshold, &evaluation)
            .await
            .context("cannot store the per-query values in the metrics table")?;
        info!(run = %name, split = %split, version, "stored per-query values in the metrics table");
    }

    match args.format {
        OutputFormat::Json => println!("{}", to_json(&evaluation, args.per_query)),
        OutputFormat::Table => print_table(&evaluation, args.per_query),
    }
    Ok(())
}

async fn read_run_input(store: &Store, args: &EvaluateArgs) -> Result<Run> {
    if let Some(path) = &args.run_file {
        return read_run(path).context("cannot read the run");
    }
    let name = args.run.as_deref().expect("clap requires --run or --run-file");
    let (run, origin) = load_run(store, name).await?;
    if origin == RunOrigin::Candidates {
        info!(run = %name, "evaluating the candidates source {name:?}: no reranked run has this name");
    }
    Ok(run)
}

async fn read_qrels_input(store: &Store, args: &EvaluateArgs) -> Result<Qrels> {
    if let Some(path) = &args.qrels_file {
        return read_qrels(path).context("cannot read the qrels");
    }
    let split = args
        .split
        .as_deref()
        .expect("clap requires --split or --qrels-file");
    Ok(load_qrels(store, split).await?)
}

fn to_json(evaluation: &Evaluation, per_query: bool) -> serde_json::Value {
    let names: Vec<String> = evaluation.measures.iter().map(Measure::to_string).collect();
    let means: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .cloned()
        .zip(evaluation.means().into_iter().map(|v| json!(v)))
        .collect();
    let mut output = json!({ "queries": evaluation.per_query.len(), "mean": means });
    if per_query {
        let queries: serde_json::Map<String, serde_json::Value> = evaluation
            .per_query
            .iter()
            .map(|(query_id, values)| {
                let values: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .cloned()
                    .zip(values.iter().map(|v| json!(v)))
                    .collect();
                (query_id.clone(), values.into())
            })
            .collect();
        output["per_query"] = queries.into();
    }
    output
}

fn print_table(evaluation: &Evaluation, per_query: bool) {
    if per_query {
        for (query_id, values) in &evaluation.per_query {
            for (measure, value) in evaluation.measures.iter().zip(values) {
                println!("{:<10} {query_id:<12} {value:.4}", measure.to_string());
            }
        }
    }
    for (measure, value) in evaluation.measures.iter().zip(evaluation.means()) {
        println!("{:<10} {:<12} {value:.4}", measure.to_string(), "all");
    }
    println!("{:<10} {:<12} {}", "queries", "all", evaluation.per_query.len());
}
