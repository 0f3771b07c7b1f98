//! BM25 full-text search over passages, with Lance's inverted index.
//!
//! The index uses Lance's defaults: the `simple` tokenizer (splits on white space and
//! punctuation), lower case, ASCII folding, English stop words removed and English stemming.
//! Lance scores with BM25, k1 = 1.2 and b = 0.75 (lance-index 14.0.2).

use futures::TryStreamExt;
use lance::index::DatasetIndexExt;
use lance::Dataset;
use lance_index::scalar::{FullTextSearchQuery, InvertedIndexParams};
use lance_index::IndexType;

use crate::error::Result;
use crate::schema::Table;
use crate::store::Store;
use crate::texts::string_column;

/// Name of the full-text index on `passages.text`.
pub const PASSAGE_INDEX: &str = "passages_text_bm25";

impl Store {
    /// Builds the BM25 index on the passages' text, replacing an older one, and returns the
    /// passages table at the version that has it.
    pub async fn index_passages(&self) -> Result<Dataset> {
        let mut dataset = self.dataset(Table::Passages, None).await?;
        let params = InvertedIndexParams::default();
        dataset
            .create_index(
                &["text"],
                IndexType::Inverted,
                Some(PASSAGE_INDEX.to_string()),
                &params,
                true,
            )
            .await
            .map_err(|e| self.lance_error(Table::Passages, e))?;
        Ok(dataset)
    }

    /// Returns the `k` passages of `dataset` that score highest by BM25 for `query`, best first,
    /// as (passage id, score).
    pub async fn search_passages(
        &self,
        dataset: &Dataset,
        query: &str,
        k: usize,
    ) -> Result<Vec<(String, f32)>> {
        let lance_error = |e| self.lance_error(Table::Passages, e);
        let search = FullTextSearchQuery::new(query.to_string())
            .with_column("text".to_string())
            .map_err(lance_error)?;
        let mut scanner = dataset.scan();
        scanner.project(&["doc_id", "_score"]).map_err(lance_error)?;
        scanner.full_text_search(search).map_err(lance_error)?;
        scanner.limit(Some(k as i64), None).map_err(lance_error)?;
        let batches: Vec<_> = scanner
            .try_into_stream()
            .await
            .map_err(lance_error)?
            .try_collect()
            .await
            .map_err(lance_error)?;

        let mut hits = Vec::new();
        for batch in &batches {
            let ids = string_column(batch, 0);
            let score_column = batch
                .column_by_name("_score")
                .expect("full-text search returns _score");
            let scores =
                arrow_array::cast::as_primitive_array::<arrow_array::types::Float32Type>(score_column);
            hits.extend((0..batch.num_rows()).map(|row| (ids.value(row).to_string(), scores.value(row))));
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }
}
