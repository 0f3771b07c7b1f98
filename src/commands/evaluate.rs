use anyhow::{Context, Result};
use rankdistill_eval::metrics::{evaluate, Evaluation, Measure};
use rankdistill_eval::trec::{read_qrels, read_run};
use serde_json::json;

use crate::cli::{EvaluateArgs, OutputFormat};

pub fn run(args: EvaluateArgs) -> Result<()> {
    let measures = args
        .metrics
        .iter()
        .map(|name| name.parse::<Measure>().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let run = read_run(&args.run_file).context("cannot read the run")?;
    let qrels = read_qrels(&args.qrels_file).context("cannot read the qrels")?;

    let evaluation = evaluate(&run, &qrels, &measures, args.rel_threshold);
    if evaluation.per_query.is_empty() {
        anyhow::bail!(
            "no query of {} is in {}: check that the files belong together",
            args.run_file.display(),
            args.qrels_file.display()
        );
    }
    match args.format {
        OutputFormat::Json => println!("{}", to_json(&evaluation, args.per_query)),
        OutputFormat::Table => print_table(&evaluation, args.per_query),
    }
    Ok(())
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
