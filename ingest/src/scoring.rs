//! The teacher-scoring job: scores every candidate pair, and every judged pair whose passage has
//! text, with a cross-encoder, once, and stores the logits in `teacher_scores`.
//!
//! Scores are committed every `commit_every` pairs. A run skips the pairs already scored for the
//! teacher, so a killed job resumes where it stopped and never scores a pair twice.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{quote_literal, string_column, Store, Table, WriteMode};
use rankdistill_trainer::{CrossEncoder, INPUT_TEMPLATE};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::batch::{BatchBuilder, Value};
use crate::error::{IngestError, Result};
use crate::ids::PairSet;
use crate::teachers::TeacherRecord;

/// One of `count` disjoint parts of the queries, chosen by a hash of the query id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn contains(&self, query_id: &str) -> bool {
        let digest = Sha256::digest(query_id.as_bytes());
        let bucket = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        bucket % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `I/N`, with `0 <= I < N`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid shard {value:?}: expected I/N with 0 <= I < N, such as 0/2");
        let (index, count) = value.split_once('/').ok_or_else(invalid)?;
        let index: u64 = index.trim().parse().map_err(|_| invalid())?;
        let count: u64 = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 || index >= count {
            return Err(invalid());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Settings of a scoring run.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Teacher name under which scores are stored.
    pub teacher: String,
    /// Maximum tokens per pair; the passage is truncated to fit.
    pub max_len: usize,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Pairs per commit to `teacher_scores`.
    pub commit_every: usize,
    pub shard: Shard,
    /// Score only the candidates of these sources; all candidates when empty.
    pub sources: Vec<String>,
    /// Score only the judged pairs of these qrels splits; all judged pairs when empty.
    pub splits: Vec<String>,
}

impl ScoreOptions {
    /// Returns the SQL predicate that selects the pairs of `table` this run scores, if any.
    fn filter(&self, table: Table) -> Option<String> {
        let (column, values) = match table {
            Table::Candidates => ("source", &self.sources),
            _ => ("split", &self.splits),
        };
        if values.is_empty() {
            return None;
        }
        let quoted: Vec<String> = values.iter().map(|value| quote_literal(value)).collect();
        Some(format!("{column} IN ({})", quoted.join(", ")))
    }
}

/// The pairs a run will score, with their texts.
pub struct ScoringPlan {
    /// (query id, passage id), grouped by query.
    pub pairs: Vec<(String, String)>,
    /// Pairs of this shard already scored for the teacher.
    pub already_scored: u64,
    /// Pairs of this shard left out because the passage has no text.
    pub without_text: u64,
    queries: HashMap<String, String>,
    passages: HashMap<String, String>,
}

/// Counts and timing of one scoring run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringSummary {
    pub scored: u64,
    pub already_scored: u64,
    pub seconds: f64,
    /// Scores stored for the teacher after the run, across all shards.
    pub teacher_rows: u64,
}

/// Scores a store's pairs with one cross-encoder.
pub struct TeacherScorer<'a> {
    store: &'a Store,
    model: &'a CrossEncoder,
    options: ScoreOptions,
    scored: Arc<AtomicU64>,
}

impl<'a> TeacherScorer<'a> {
    pub fn new(store: &'a Store, model: &'a CrossEncoder, options: ScoreOptions) -> Result<Self> {
        if options.batch_size == 0 || options.commit_every == 0 {
            return Err(IngestError::InvalidArgument(
                "--batch and --commit-every must be at least 1".into(),
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

    /// Finds the pairs this run scores: candidates and judged pairs of this shard, with passage
    /// text, not yet scored for the teacher.
    pub async fn plan(&self) -> Result<ScoringPlan> {
        self.check_provenance().await?;
        let queries = self.store.query_texts().await?;
        let mut pairs = BTreeSet::new();
        for table in [Table::Candidates, Table::Qrels] {
            self.collect_pairs(table, &queries, &mut pairs).await?;
        }

        let needed: HashSet<&str> = pairs.iter().map(|(_, doc_id)| doc_id.as_str()).collect();
        let passages = self.store.passage_texts(&needed).await?;
        let total = pairs.len() as u64;
        pairs.retain(|(_, doc_id)| passages.contains_key(doc_id));
        let without_text = total - pairs.len() as u64;

        let filter = format!("teacher = {}", quote_literal(&self.options.teacher));
        let scored = PairSet::load(self.store, Table::TeacherScores, &filter).await?;
        let before = pairs.len() as u64;
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(q, d)| !scored.contains(q, d))
            .collect();
        let already_scored = before - pairs.len() as u64;

        Ok(ScoringPlan {
            pairs,
            already_scored,
            without_text,
            queries,
            passages,
        })
    }

    /// Refuses to mix scores of different models or settings under one teacher name.
    async fn check_provenance(&self) -> Result<()> {
        let Some(existing) = TeacherRecord::read(self.store, &self.options.teacher).await? else {
            return Ok(());
        };
        let same_weights = existing.weights_sha256.as_deref() == Some(self.model.weights_sha256());
        let same_len = existing.max_len == Some(self.options.max_len as i32);
        if same_weights && same_len {
            return Ok(());
        }
        Err(IngestError::InvalidArgument(format!(
            "teacher {:?} already has scores from {} (weights SHA-256 {}, max length {}); this run uses {} \
             (weights SHA-256 {}, max length {}). Choose another --name to keep both",
            self.options.teacher,
            existing.model,
            existing.weights_sha256.as_deref().unwrap_or("unknown"),
            existing
                .max_len
                .map(|l| l.to_string())
                .unwrap_or_else(|| "unknown".into()),
            self.model.source().display(),
            self.model.weights_sha256(),
            self.options.max_len
        )))
    }

    async fn collect_pairs(
        &self,
        table: Table,
        queries: &HashMap<String, String>,
        pairs: &mut BTreeSet<(String, String)>,
    ) -> Result<()> {
        if self.store.try_dataset(table).await?.is_none() {
            return Ok(());
        }
        let mut batches = self
            .store
            .scan(
                table,
                None,
                Some(&["query_id", "doc_id"]),
                self.options.filter(table).as_deref(),
            )
            .await?;
        while let Some(batch) = batches.try_next().await.map_err(read_error(table))? {
            let (query_ids, doc_ids) = (string_column(&batch, 0), string_column(&batch, 1));
            for row in 0..batch.num_rows() {
                let query_id = query_ids.value(row);
                if self.options.shard.contains(query_id) && queries.contains_key(query_id) {
                    pairs.insert((query_id.to_string(), doc_ids.value(row).to_string()));
                }
            }
        }
        Ok(())
    }

    /// Scores the planned pairs, committing every `commit_every` pairs. The teacher's provenance
    /// row is written before the first commit, so a resumed run is checked against it, and
    /// updated at the end.
    pub async fn run(&self, plan: &ScoringPlan) -> Result<ScoringSummary> {
        let started = Instant::now();
        self.store.ensure_table(Table::TeacherScores).await?;
        self.write_provenance(0.0).await?;
        info!(
            teacher = %self.options.teacher,
            shard = %self.options.shard,
            pairs = plan.pairs.len(),
            already_scored = plan.already_scored,
            without_text = plan.without_text,
            "scoring started"
        );

        for chunk in plan.pairs.chunks(self.options.commit_every) {
            let scores = tokio::task::block_in_place(|| self.score_chunk(plan, chunk))?;
            self.commit_scores(chunk, &scores).await?;
            self.scored.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }

        let seconds = started.elapsed().as_secs_f64();
        let teacher_rows = self.write_provenance(seconds).await?;
        Ok(ScoringSummary {
            scored: plan.pairs.len() as u64,
            already_scored: plan.already_scored,
            seconds,
            teacher_rows,
        })
    }

    /// Scores one chunk; the model batches pairs of similar length.
    fn score_chunk(&self, plan: &ScoringPlan, chunk: &[(String, String)]) -> Result<Vec<f32>> {
        let texts: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(query_id, doc_id)| (plan.queries[query_id].as_str(), plan.passages[doc_id].as_str()))
            .collect();
        let scores = self
            .model
            .score_by_length(&texts, self.options.max_len, self.options.batch_size)?;

        if let Some(index) = scores.iter().position(|score| !score.is_finite()) {
            let (query_id, doc_id) = &chunk[index];
            return Err(IngestError::InvalidArgument(format!(
                "the model gave a non-finite score for query {query_id:?} and passage {doc_id:?}"
            )));
        }
        Ok(scores)
    }

    async fn commit_scores(&self, chunk: &[(String, String)], scores: &[f32]) -> Result<()> {
        let mut builder = BatchBuilder::new(Table::TeacherScores);
        for ((query_id, doc_id), score) in chunk.iter().zip(scores) {
            builder.push(&[
                Value::Str(query_id),
                Value::Str(doc_id),
                Value::Str(&self.options.teacher),
                Value::F32(*score),
            ]);
        }
        let batch = builder.finish();
        let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
        let staged = self
            .store
            .stage(Table::TeacherScores, WriteMode::Append, Box::pin(stream))
            .await?;
        let message = format!(
            "score --name {} --shard {}",
            self.options.teacher, self.options.shard
        );
        self.store.commit(vec![staged], &message).await?;
        Ok(())
    }

    /// Writes the teacher's row: model, weights, settings, total scores and summed wall time.
    async fn write_provenance(&self, seconds: f64) -> Result<u64> {
        let filter = format!("teacher = {}", quote_literal(&self.options.teacher));
        let rows = self.store.count_rows(Table::TeacherScores, Some(&filter)).await?;
        let previous_seconds = TeacherRecord::read(self.store, &self.options.teacher)
            .await?
            .and_then(|record| record.wall_seconds)
            .unwrap_or(0.0);

        let record = TeacherRecord {
            teacher: self.options.teacher.clone(),
            model: self.model.source().display().to_string(),
            weights_sha256: Some(self.model.weights_sha256().to_string()),
            max_len: Some(self.options.max_len as i32),
            template: Some(INPUT_TEMPLATE.to_string()),
            dtype: Some("f32".to_string()),
            pairs: rows as i64,
            wall_seconds: Some(previous_seconds + seconds),
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        record.write(self.store).await?;
        // The row written before the first commit has no scores yet; only an empty result warns.
        if rows == 0 && seconds > 0.0 {
            warn!(teacher = %self.options.teacher, "no pair was scored: the store has no candidates or qrels with text");
        }
        Ok(rows)
    }
}

fn read_error(
    table: Table,
) -> impl Fn(rankdistill_store::deps::datafusion::error::DataFusionError) -> IngestError {
    move |error| IngestError::InvalidArgument(format!("reading table {table} failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_queries() {
        let shards = [
            Shard { index: 0, count: 3 },
            Shard { index: 1, count: 3 },
            Shard { index: 2, count: 3 },
        ];
        for query in (0..200).map(|i| format!("q{i}")) {
            let owners = shards.iter().filter(|shard| shard.contains(&query)).count();
            assert_eq!(owners, 1, "query {query} belongs to {owners} shards");
        }
        assert!((0..200).any(|i| shards[0].contains(&format!("q{i}"))));
    }

    #[test]
    fn shard_parsing() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
    }
}
