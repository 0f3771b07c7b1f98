//! Runs, qrels and per-query measures in the store: what `evaluate --run` reads and writes.

use std::collections::HashMap;

use arrow_array::{Array, Float64Array, Int32Array, RecordBatch};
use futures::TryStreamExt;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{quote_literal, string_column, Store, Table, WriteMode};

use crate::error::{EvalError, Result};
use crate::metrics::{Evaluation, Qrels, Run};

/// The table a run was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrigin {
    /// The `runs` table, written by `rankdistill rerank`.
    Reranked,
    /// The `candidates` table: a first-stage run such as BM25, used as it is.
    Candidates,
}

/// Reads run `name` from the `runs` table or, when no reranked run has that name, from the
/// candidates of source `name`. A candidate without a score is scored `-rank`, which keeps its
/// order.
pub async fn load_run(store: &Store, name: &str) -> Result<(Run, RunOrigin)> {
    let filter = format!("run = {}", quote_literal(name));
    let run = read_ranked(store, Table::Runs, &filter).await?;
    if !run.is_empty() {
        return Ok((run, RunOrigin::Reranked));
    }

    let filter = format!("source = {}", quote_literal(name));
    let run = read_ranked(store, Table::Candidates, &filter).await?;
    if !run.is_empty() {
        return Ok((run, RunOrigin::Candidates));
    }
    Err(EvalError::InvalidArgument(format!(
        "run {name:?} is neither in the runs table nor a candidates source; \
         `rankdistill sql \"SELECT DISTINCT run FROM runs\"` lists the reranked runs"
    )))
}

async fn read_ranked(store: &Store, table: Table, filter: &str) -> Result<Run> {
    let mut run = Run::new();
    if store.try_dataset(table).await?.is_none() {
        return Ok(run);
    }
    let columns = ["query_id", "doc_id", "rank", "score"];
    let mut batches = store.scan(table, None, Some(&columns), Some(filter)).await?;
    while let Some(batch) = batches.try_next().await.map_err(|e| store.read_error(table, e))? {
        add_ranked_rows(&batch, &mut run);
    }
    Ok(run)
}

fn add_ranked_rows(batch: &RecordBatch, run: &mut Run) {
    let (query_ids, doc_ids) = (string_column(batch, 0), string_column(batch, 1));
    let ranks = int_column(batch, 2);
    let scores = arrow_array::cast::as_primitive_array::<arrow_array::types::Float64Type>(batch.column(3));
    for row in 0..batch.num_rows() {
        let score = if scores.is_null(row) {
            -f64::from(ranks.value(row))
        } else {
            scores.value(row)
        };
        run.entry(query_ids.value(row).to_string())
            .or_default()
            .push((doc_ids.value(row).to_string(), score));
    }
}

/// Reads the qrels of `split`.
pub async fn load_qrels(store: &Store, split: &str) -> Result<Qrels> {
    let filter = format!("split = {}", quote_literal(split));
    let columns = ["query_id", "doc_id", "relevance"];
    let mut batches = store
        .scan(Table::Qrels, None, Some(&columns), Some(&filter))
        .await?;

    let mut qrels = Qrels::new();
    while let Some(batch) = batches
        .try_next()
        .await
        .map_err(|e| store.read_error(Table::Qrels, e))?
    {
        let (query_ids, doc_ids) = (string_column(&batch, 0), string_column(&batch, 1));
        let grades = int_column(&batch, 2);
        for row in 0..batch.num_rows() {
            qrels
                .entry(query_ids.value(row).to_string())
                .or_insert_with(HashMap::new)
                .insert(doc_ids.value(row).to_string(), grades.value(row));
        }
    }
    if qrels.is_empty() {
        return Err(EvalError::InvalidArgument(format!(
            "the store has no qrels for split {split:?}; `rankdistill store summary` lists the splits"
        )));
    }
    Ok(qrels)
}

/// Replaces the measures of `run` on `split` in the `metrics` table with `evaluation`'s
/// per-query values, in one commit.
pub async fn write_metrics(
    store: &Store,
    run: &str,
    split: &str,
    rel_threshold: i32,
    evaluation: &Evaluation,
) -> Result<u64> {
    let batch = metrics_batch(run, split, rel_threshold, evaluation);
    let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
    let predicate = format!(
        "run = {} AND split = {}",
        quote_literal(run),
        quote_literal(split)
    );
    let staged = store
        .stage(
            Table::Metrics,
            WriteMode::ReplaceWhere(predicate),
            Box::pin(stream),
        )
        .await?;
    let message = format!("evaluate --run {run} --split {split}");
    let versions = store.commit(vec![staged], &message).await?;
    Ok(versions[0])
}

fn metrics_batch(run: &str, split: &str, rel_threshold: i32, evaluation: &Evaluation) -> RecordBatch {
    let rows = evaluation.per_query.len() * evaluation.measures.len();
    let (mut measures, mut query_ids, mut values) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (query_id, query_values) in &evaluation.per_query {
        for (measure, value) in evaluation.measures.iter().zip(query_values) {
            measures.push(measure.to_string());
            query_ids.push(query_id.as_str());
            values.push(*value);
        }
    }

    let repeated = |value: &str| arrow_array::StringArray::from(vec![value; rows]);
    let columns: Vec<std::sync::Arc<dyn Array>> = vec![
        std::sync::Arc::new(repeated(run)),
        std::sync::Arc::new(repeated(split)),
        std::sync::Arc::new(arrow_array::StringArray::from(measures)),
        std::sync::Arc::new(arrow_array::StringArray::from(query_ids)),
        std::sync::Arc::new(Float64Array::from(values)),
        std::sync::Arc::new(Int32Array::from(vec![rel_threshold; rows])),
    ];
    RecordBatch::try_new(Table::Metrics.schema(), columns).expect("columns follow the metrics schema")
}

/// Reads the per-query values of `measure` for `run` on `split` from the `metrics` table.
pub async fn load_measure(
    store: &Store,
    run: &str,
    split: &str,
    measure: &str,
) -> Result<HashMap<String, f64>> {
    let filter = format!(
        "run = {} AND split = {} AND measure = {}",
        quote_literal(run),
        quote_literal(split),
        quote_literal(measure)
    );
    let mut values = HashMap::new();
    if store.try_dataset(Table::Metrics).await?.is_some() {
        let columns = ["query_id", "value"];
        let mut batches = store
            .scan(Table::Metrics, None, Some(&columns), Some(&filter))
            .await?;
        while let Some(batch) = batches
            .try_next()
            .await
            .map_err(|e| store.read_error(Table::Metrics, e))?
        {
            let query_ids = string_column(&batch, 0);
            let column =
                arrow_array::cast::as_primitive_array::<arrow_array::types::Float64Type>(batch.column(1));
            for row in 0..batch.num_rows() {
                values.insert(query_ids.value(row).to_string(), column.value(row));
            }
        }
    }
    if values.is_empty() {
        return Err(EvalError::InvalidArgument(format!(
            "the metrics table has no {measure} values for run {run:?} on split {split:?}; \
             run `rankdistill evaluate --run {run} --split {split} --metrics {measure}` first"
        )));
    }
    Ok(values)
}

fn int_column(batch: &RecordBatch, index: usize) -> &Int32Array {
    arrow_array::cast::as_primitive_array::<arrow_array::types::Int32Type>(batch.column(index))
}
