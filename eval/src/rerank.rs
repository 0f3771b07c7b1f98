//! Reranking: a cross-encoder scores each query's first-stage candidates and the new order is
//! stored as a run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Float64Array, Int32Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{quote_literal, string_column, Store, Table, WriteMode};
use rankdistill_trainer::CrossEncoder;
use tracing::{info, warn};

use crate::error::{EvalError, Result};

/// Settings of a rerank.
#[derive(Debug, Clone)]
pub struct RerankOptions {
    /// Name of the run written to the `runs` table.
    pub run: String,
    /// Candidates source to rerank, such as `bm25`.
    pub source: String,
    /// Candidates per query, taken by first-stage rank.
    pub top_k: usize,
    /// Rerank only the queries judged in this qrels split.
    pub split: Option<String>,
    /// Maximum tokens per pair.
    pub max_len: usize,
    /// Pairs per forward pass.
    pub batch_size: usize,
}

/// The pairs a rerank scores, with their texts.
pub struct RerankPlan {
    /// Query id → candidate passage ids with text, in first-stage order.
    pub candidates: BTreeMap<String, Vec<String>>,
    /// Candidates left out because the passage has no text.
    pub without_text: u64,
    queries: HashMap<String, String>,
    passages: HashMap<String, String>,
}

impl RerankPlan {
    pub fn pairs(&self) -> usize {
        self.candidates.values().map(Vec::len).sum()
    }
}

/// One query's reranked list: (passage id, score), best first.
pub type RankedList = Vec<(String, f64)>;

/// Counts and timing of one rerank.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankSummary {
    pub queries: usize,
    pub pairs: usize,
    pub seconds: f64,
    /// Version of the `runs` table that contains the run.
    pub version: u64,
}

/// Reranks a store's candidates with one cross-encoder.
pub struct Reranker<'a> {
    store: &'a Store,
    model: &'a CrossEncoder,
    options: RerankOptions,
    scored: Arc<AtomicU64>,
}

/// Pairs scored between two updates of the progress counter.
const PROGRESS_CHUNK: usize = 512;

impl<'a> Reranker<'a> {
    pub fn new(store: &'a Store, model: &'a CrossEncoder, options: RerankOptions) -> Result<Self> {
        if options.top_k == 0 || options.batch_size == 0 {
            return Err(EvalError::InvalidArgument(
                "--top-k and --batch must be at least 1".into(),
            ));
        }
        Ok(Self {
            store,
            model,
            options,
            scored: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Returns a counter of the pairs scored so far, for progress display.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.scored.clone()
    }

    /// Reads the top-k candidates of each query, restricted to the split's queries when a split
    /// is set, and the texts they need.
    pub async fn plan(&self) -> Result<RerankPlan> {
        let queries = self.store.query_texts().await?;
        let judged = match &self.options.split {
            Some(split) => Some(self.split_queries(split).await?),
            None => None,
        };
        let mut candidates = self.read_candidates(&queries, judged.as_ref()).await?;
        if candidates.is_empty() {
            return Err(EvalError::InvalidArgument(format!(
                "no candidates of source {:?} for the selected queries; `rankdistill store summary` lists the sources",
                self.options.source
            )));
        }

        let needed: HashSet<&str> = candidates.values().flatten().map(String::as_str).collect();
        let passages = self.store.passage_texts(&needed).await?;
        let before: usize = candidates.values().map(Vec::len).sum();
        for doc_ids in candidates.values_mut() {
            doc_ids.retain(|doc_id| passages.contains_key(doc_id));
        }
        let after: usize = candidates.values().map(Vec::len).sum();

        Ok(RerankPlan {
            candidates,
            without_text: (before - after) as u64,
            queries,
            passages,
        })
    }

    async fn split_queries(&self, split: &str) -> Result<HashSet<String>> {
        let filter = format!("split = {}", quote_literal(split));
        let mut batches = self
            .store
            .scan(Table::Qrels, None, Some(&["query_id"]), Some(&filter))
            .await?;
        let mut queries = HashSet::new();
        while let Some(batch) = batches
            .try_next()
            .await
            .map_err(|e| self.store.read_error(Table::Qrels, e))?
        {
            let ids = string_column(&batch, 0);
            queries.extend((0..batch.num_rows()).map(|row| ids.value(row).to_string()));
        }
        if queries.is_empty() {
            return Err(EvalError::InvalidArgument(format!(
                "the store has no qrels for split {split:?}"
            )));
        }
        Ok(queries)
    }

    async fn read_candidates(
        &self,
        queries: &HashMap<String, String>,
        judged: Option<&HashSet<String>>,
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let filter = format!(
            "source = {} AND rank <= {}",
            quote_literal(&self.options.source),
            self.options.top_k
        );
        let columns = ["query_id", "doc_id", "rank"];
        let mut batches = self
            .store
            .scan(Table::Candidates, None, Some(&columns), Some(&filter))
            .await?;

        let mut ranked: BTreeMap<String, Vec<(i32, String)>> = BTreeMap::new();
        while let Some(batch) = batches
            .try_next()
            .await
            .map_err(|e| self.store.read_error(Table::Candidates, e))?
        {
            let (query_ids, doc_ids) = (string_column(&batch, 0), string_column(&batch, 1));
            let ranks =
                arrow_array::cast::as_primitive_array::<arrow_array::types::Int32Type>(batch.column(2));
            for row in 0..batch.num_rows() {
                let query_id = query_ids.value(row);
                let selected = judged.is_none_or(|judged| judged.contains(query_id));
                if selected && queries.contains_key(query_id) {
                    let entry = ranked.entry(query_id.to_string()).or_default();
                    entry.push((ranks.value(row), doc_ids.value(row).to_string()));
                }
            }
        }
        Ok(ranked
            .into_iter()
            .map(|(query_id, mut docs)| {
                docs.sort();
                (query_id, docs.into_iter().map(|(_, doc_id)| doc_id).collect())
            })
            .collect())
    }

    /// Scores the planned pairs and stores the run in the `runs` table in one commit, replacing a
    /// run of the same name. Returns the ranked lists with the summary.
    pub async fn run(&self, plan: &RerankPlan) -> Result<(BTreeMap<String, RankedList>, RerankSummary)> {
        let started = Instant::now();
        info!(run = %self.options.run, queries = plan.candidates.len(), pairs = plan.pairs(), without_text = plan.without_text, "reranking started");
        if plan.without_text > 0 {
            warn!(
                pairs = plan.without_text,
                "candidates without passage text are left out of the run"
            );
        }

        let pairs: Vec<(&str, &str)> = plan
            .candidates
            .iter()
            .flat_map(|(query_id, doc_ids)| {
                doc_ids
                    .iter()
                    .map(move |doc_id| (query_id.as_str(), doc_id.as_str()))
            })
            .collect();
        let scores = tokio::task::block_in_place(|| self.score_pairs(plan, &pairs))?;
        let ranked = rank_by_score(&pairs, &scores);

        let version = self.write_run(&ranked).await?;
        let summary = RerankSummary {
            queries: ranked.len(),
            pairs: pairs.len(),
            seconds: started.elapsed().as_secs_f64(),
            version,
        };
        Ok((ranked, summary))
    }

    fn score_pairs(&self, plan: &RerankPlan, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(PROGRESS_CHUNK) {
            let texts: Vec<(&str, &str)> = chunk
                .iter()
                .map(|(query_id, doc_id)| (plan.queries[*query_id].as_str(), plan.passages[*doc_id].as_str()))
                .collect();
            let chunk_scores =
                self.model
                    .score_by_length(&texts, self.options.max_len, self.options.batch_size)?;
            if let Some(index) = chunk_scores.iter().position(|score| !score.is_finite()) {
                let (query_id, doc_id) = chunk[index];
                return Err(EvalError::InvalidArgument(format!(
                    "the model gave a non-finite score for query {query_id:?} and passage {doc_id:?}"
                )));
            }
            scores.extend(chunk_scores);
            self.scored.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(scores)
    }

    async fn write_run(&self, ranked: &BTreeMap<String, RankedList>) -> Result<u64> {
        let batch = run_batch(&self.options.run, ranked);
        let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
        let mode = WriteMode::ReplacePartition(vec![self.options.run.clone()]);
        let staged = self.store.stage(Table::Runs, mode, Box::pin(stream)).await?;
        let message = format!(
            "rerank --name {} --source {} --top-k {}",
            self.options.run, self.options.source, self.options.top_k
        );
        Ok(self.store.commit(vec![staged], &message).await?[0])
    }
}

/// Sorts each query's pairs by score, best first; equal scores are ordered by passage id,
/// descending, as trec_eval orders them.
fn rank_by_score(pairs: &[(&str, &str)], scores: &[f32]) -> BTreeMap<String, RankedList> {
    let mut ranked: BTreeMap<String, RankedList> = BTreeMap::new();
    for ((query_id, doc_id), score) in pairs.iter().zip(scores) {
        ranked
            .entry(query_id.to_string())
            .or_default()
            .push((doc_id.to_string(), f64::from(*score)));
    }
    for list in ranked.values_mut() {
        list.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    }
    ranked
}

fn run_batch(run: &str, ranked: &BTreeMap<String, RankedList>) -> RecordBatch {
    let rows: usize = ranked.values().map(Vec::len).sum();
    let (mut query_ids, mut doc_ids, mut ranks, mut scores) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (query_id, list) in ranked {
        for (index, (doc_id, score)) in list.iter().enumerate() {
            query_ids.push(query_id.as_str());
            doc_ids.push(doc_id.as_str());
            ranks.push(index as i32 + 1);
            scores.push(*score);
        }
    }
    let columns: Vec<Arc<dyn arrow_array::Array>> = vec![
        Arc::new(StringArray::from(vec![run; rows])),
        Arc::new(StringArray::from(query_ids)),
        Arc::new(StringArray::from(doc_ids)),
        Arc::new(Int32Array::from(ranks)),
        Arc::new(Float64Array::from(scores)),
    ];
    RecordBatch::try_new(Table::Runs.schema(), columns).expect("columns follow the runs schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_ordered_by_doc_id_descending() {
        let pairs = [("q1", "d1"), ("q1", "d3"), ("q1", "d2"), ("q2", "d9")];
        let scores = [0.5, 0.5, 0.9, 0.1];
        let ranked = rank_by_score(&pairs, &scores);
        let q1: Vec<&str> = ranked["q1"].iter().map(|(doc_id, _)| doc_id.as_str()).collect();
        assert_eq!(q1, ["d2", "d3", "d1"]);
        assert_eq!(ranked["q2"].len(), 1);
    }
}
