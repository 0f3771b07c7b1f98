//! First-stage retrieval: BM25 over the passages' text, each query's top k stored as candidates.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{quote_literal, string_column, Store, Table, WriteMode};
use tracing::info;

use crate::batch::{BatchBuilder, Value};
use crate::error::{IngestError, Result};

/// Settings of a retrieval run.
#[derive(Debug, Clone)]
pub struct RetrieveOptions {
    /// Candidates source name; retrieving under the same name again replaces those candidates.
    pub source: String,
    /// Passages per query.
    pub k: usize,
    /// Retrieve only for the queries judged in these qrels splits; all queries when empty.
    pub splits: Vec<String>,
}

/// Counts and timing of one retrieval run.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrieveSummary {
    pub queries: usize,
    pub candidates: usize,
    pub index_seconds: f64,
    pub search_seconds: f64,
}

/// Searches running at once; each is short, so a few keep both cores busy.
const CONCURRENT_SEARCHES: usize = 4;

/// Indexes the passages, searches every selected query and commits the candidates in one commit.
/// `progress` counts the queries searched.
pub async fn retrieve(
    store: &Store,
    options: &RetrieveOptions,
    progress: Arc<AtomicU64>,
) -> Result<RetrieveSummary> {
    if options.k == 0 {
        return Err(IngestError::InvalidArgument("--k must be at least 1".into()));
    }
    let queries = selected_queries(store, &options.splits).await?;

    let started = Instant::now();
    let passages = store.index_passages().await?;
    let index_seconds = started.elapsed().as_secs_f64();
    info!(seconds = index_seconds, "built the BM25 index on passages.text");

    let started = Instant::now();
    let results: BTreeMap<String, Vec<(String, f32)>> = futures::stream::iter(queries.into_iter())
        .map(|(query_id, text)| {
            let (passages, progress) = (&passages, progress.clone());
            async move {
                let hits = store.search_passages(passages, &text, options.k).await?;
                progress.fetch_add(1, Ordering::Relaxed);
                Ok::<_, IngestError>((query_id, hits))
            }
        })
        .buffer_unordered(CONCURRENT_SEARCHES)
        .try_collect()
        .await?;
    let search_seconds = started.elapsed().as_secs_f64();

    let candidates = write_candidates(store, options, &results).await?;
    Ok(RetrieveSummary {
        queries: results.len(),
        candidates,
        index_seconds,
        search_seconds,
    })
}

/// Returns (query id, text) of the queries judged in `splits`, or of every query.
async fn selected_queries(store: &Store, splits: &[String]) -> Result<Vec<(String, String)>> {
    let texts = store.query_texts().await?;
    if splits.is_empty() {
        return Ok(texts.into_iter().collect());
    }

    let quoted: Vec<String> = splits.iter().map(|split| quote_literal(split)).collect();
    let filter = format!("split IN ({})", quoted.join(", "));
    let mut batches = store
        .scan(Table::Qrels, None, Some(&["query_id"]), Some(&filter))
        .await?;
    let mut judged = HashSet::new();
    while let Some(batch) = batches
        .try_next()
        .await
        .map_err(|e| store.read_error(Table::Qrels, e))?
    {
        let ids = string_column(&batch, 0);
        judged.extend((0..batch.num_rows()).map(|row| ids.value(row).to_string()));
    }
    if judged.is_empty() {
        return Err(IngestError::InvalidArgument(format!(
            "the store has no qrels for split(s) {}; `rankdistill store summary` lists the splits",
            splits.join(", ")
        )));
    }
    Ok(texts
        .into_iter()
        .filter(|(query_id, _)| judged.contains(query_id))
        .collect())
}

async fn write_candidates(
    store: &Store,
    options: &RetrieveOptions,
    results: &BTreeMap<String, Vec<(String, f32)>>,
) -> Result<usize> {
    let mut builder = BatchBuilder::new(Table::Candidates);
    for (query_id, hits) in results {
        for (rank, (doc_id, score)) in hits.iter().enumerate() {
            builder.push(&[
                Value::Str(query_id),
                Value::Str(doc_id),
                Value::I32(rank as i32 + 1),
                Value::OptF64(Some(f64::from(*score))),
                Value::Str(&options.source),
            ]);
        }
    }
    let batch = builder.finish();
    let rows = batch.num_rows();
    let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
    let mode = WriteMode::ReplacePartition(vec![options.source.clone()]);
    let staged = store.stage(Table::Candidates, mode, Box::pin(stream)).await?;
    let message = format!("retrieve --name {} --k {}", options.source, options.k);
    store.commit(vec![staged], &message).await?;
    Ok(rows)
}
