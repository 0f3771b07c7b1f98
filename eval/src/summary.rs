//! A summary of a store's collection, computed by scanning its tables: how many queries are
//! judged per split, how deep the candidates of each source go, and how many relevant passages
//! they contain.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use arrow_array::{Array, Float64Array, Int32Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use rankdistill_store::{Store, StoreError, Table};
use serde::Serialize;

/// Counts that describe the collection in a store.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CollectionSummary {
    pub passages: u64,
    /// Mean passage length in whitespace-separated words.
    pub mean_passage_words: f64,
    pub queries: u64,
    pub splits: Vec<SplitSummary>,
    pub sources: Vec<SourceSummary>,
}

/// Judgments of one qrels split.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SplitSummary {
    pub split: String,
    pub queries: u64,
    pub judgments: u64,
    /// Judgments with relevance above 0.
    pub relevant: u64,
    /// Judgments whose passage has text in the store.
    pub judged_with_text: u64,
    /// Judgments per relevance grade.
    pub grades: BTreeMap<i32, u64>,
}

/// Candidates of one first-stage source.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SourceSummary {
    pub source: String,
    pub queries: u64,
    pub candidates: u64,
    pub max_depth: u64,
    /// Candidates judged relevant (above 0) in any split.
    pub relevant_candidates: u64,
    /// Candidates without a score (sources that give only an order).
    pub unscored: u64,
}

/// Errors while summarising a store.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading table {table} failed: {message}")]
    Read { table: Table, message: String },
}

/// Scans the store's passages, queries, qrels and candidates and summarises them.
pub async fn summarize(store: &Store) -> Result<CollectionSummary, SummaryError> {
    let mut summary = CollectionSummary::default();
    let mut passage_ids = HashSet::new();
    let mut words = 0u64;
    for_each_batch(store, Table::Passages, &["doc_id", "text"], |batch| {
        let (ids, texts) = (strings(batch, 0), strings(batch, 1));
        for row in 0..batch.num_rows() {
            passage_ids.insert(ids.value(row).to_string());
            words += texts.value(row).split_whitespace().count() as u64;
        }
    })
    .await?;
    summary.passages = passage_ids.len() as u64;
    summary.mean_passage_words = mean(words, summary.passages);

    for_each_batch(store, Table::Queries, &["query_id"], |batch| {
        summary.queries += batch.num_rows() as u64;
    })
    .await?;

    let relevant_pairs = summarize_qrels(store, &passage_ids, &mut summary).await?;
    summarize_candidates(store, &relevant_pairs, &mut summary).await?;
    Ok(summary)
}

async fn summarize_qrels(
    store: &Store,
    passage_ids: &HashSet<String>,
    summary: &mut CollectionSummary,
) -> Result<HashSet<(String, String)>, SummaryError> {
    let mut splits: BTreeMap<String, (SplitSummary, HashSet<String>)> = BTreeMap::new();
    let mut relevant_pairs = HashSet::new();
    let columns = ["query_id", "doc_id", "relevance", "split"];
    for_each_batch(store, Table::Qrels, &columns, |batch| {
        let (query_ids, doc_ids) = (strings(batch, 0), strings(batch, 1));
        let (relevances, split_names) = (int32s(batch, 2), strings(batch, 3));
        for row in 0..batch.num_rows() {
            let (split, queries) = splits.entry(split_names.value(row).to_string()).or_default();
            let relevance = relevances.value(row);
            queries.insert(query_ids.value(row).to_string());
            split.judgments += 1;
            *split.grades.entry(relevance).or_default() += 1;
            if passage_ids.contains(doc_ids.value(row)) {
                split.judged_with_text += 1;
            }
            if relevance > 0 {
                split.relevant += 1;
                relevant_pairs.insert((query_ids.value(row).to_string(), doc_ids.value(row).to_string()));
            }
        }
    })
    .await?;

    for (name, (mut split, queries)) in splits {
        split.split = name;
        split.queries = queries.len() as u64;
        summary.splits.push(split);
    }
    Ok(relevant_pairs)
}

async fn summarize_candidates(
    store: &Store,
    relevant_pairs: &HashSet<(String, String)>,
    summary: &mut CollectionSummary,
) -> Result<(), SummaryError> {
    let mut sources: BTreeMap<String, (SourceSummary, HashMap<String, u64>)> = BTreeMap::new();
    let columns = ["query_id", "doc_id", "score", "source"];
    for_each_batch(store, Table::Candidates, &columns, |batch| {
        let (query_ids, doc_ids, source_names) = (strings(batch, 0), strings(batch, 1), strings(batch, 3));
        let scores = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("score is Float64");
        for row in 0..batch.num_rows() {
            let (source, depths) = sources.entry(source_names.value(row).to_string()).or_default();
            source.candidates += 1;
            *depths.entry(query_ids.value(row).to_string()).or_default() += 1;
            if scores.is_null(row) {
                source.unscored += 1;
            }
            let pair = (query_ids.value(row).to_string(), doc_ids.value(row).to_string());
            if relevant_pairs.contains(&pair) {
                source.relevant_candidates += 1;
            }
        }
    })
    .await?;

    for (name, (mut source, depths)) in sources {
        source.source = name;
        source.queries = depths.len() as u64;
        source.max_depth = depths.values().copied().max().unwrap_or(0);
        summary.sources.push(source);
    }
    Ok(())
}

/// Calls `visit` on every batch of `columns` of `table`; a table that does not exist has no batches.
async fn for_each_batch(
    store: &Store,
    table: Table,
    columns: &[&str],
    mut visit: impl FnMut(&RecordBatch),
) -> Result<(), SummaryError> {
    if store.try_dataset(table).await?.is_none() {
        return Ok(());
    }
    let mut batches = store.scan(table, None, Some(columns), None).await?;
    let read_error = |e: rankdistill_store::deps::datafusion::error::DataFusionError| SummaryError::Read {
        table,
        message: e.to_string(),
    };
    while let Some(batch) = batches.try_next().await.map_err(read_error)? {
        visit(&batch);
    }
    Ok(())
}

fn strings(batch: &RecordBatch, index: usize) -> &StringArray {
    batch
        .column(index)
        .as_any()
        .downcast_ref()
        .expect("column is Utf8 in the table schema")
}

fn int32s(batch: &RecordBatch, index: usize) -> &Int32Array {
    batch
        .column(index)
        .as_any()
        .downcast_ref()
        .expect("column is Int32 in the table schema")
}

fn mean(total: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}

impl fmt::Display for CollectionSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "passages: {} (mean {:.1} words)",
            self.passages, self.mean_passage_words
        )?;
        writeln!(f, "queries:  {}", self.queries)?;
        for split in &self.splits {
            let grades: Vec<String> = split.grades.iter().map(|(g, n)| format!("{g}:{n}")).collect();
            writeln!(
                f,
                "qrels {}: {} queries, {} judgments ({} relevant, {:.1} relevant per query), {} with passage text, grades {}",
                split.split,
                split.queries,
                split.judgments,
                split.relevant,
                mean(split.relevant, split.queries),
                split.judged_with_text,
                grades.join(" ")
            )?;
        }
        for source in &self.sources {
            writeln!(
                f,
                "candidates {}: {} queries, {} candidates (max depth {}), {} judged relevant, {} without score",
                source.source,
                source.queries,
                source.candidates,
                source.max_depth,
                source.relevant_candidates,
                source.unscored
            )?;
        }
        Ok(())
    }
}
