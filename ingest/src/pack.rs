//! Packing training groups: one row per query with its positives, a pool of negatives, their
//! texts, labels and teacher scores, built with one DataFusion query over the store.
//!
//! Members of a group are the query's judged passages in the qrels split (relevant ones are
//! positives, judged non-relevant ones negatives) and its candidates up to `depth` that are not
//! judged (negatives). Positives come first, then negatives by first-stage rank; judged
//! negatives that are not candidates come last.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, ListArray, RecordBatch, StringArray};
use arrow_schema::Field;
use futures::TryStreamExt;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{quote_literal, Store, StoreError, Table, WriteMode};
use tracing::{info, warn};

use crate::error::{IngestError, Result};
use crate::teachers::TeacherRecord;

/// Settings of one group set.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Name of the group set in the `groups` table; packing it again replaces it.
    pub name: String,
    /// Qrels split whose judgments give the positives and the judged negatives.
    pub split: String,
    /// Candidates source of the negatives, such as `bm25`.
    pub source: String,
    /// Candidates up to this rank join the negative pool.
    pub depth: usize,
    /// Lowest relevance grade of a positive.
    pub min_relevance: i32,
    /// Queries with fewer negatives are skipped.
    pub min_negatives: usize,
    /// Teacher whose scores are stored with every member; every member must have one.
    pub teacher: Option<String>,
    /// SQL predicate over the `queries` table (`query_id`, `text`) choosing the queries.
    pub filter: Option<String>,
}

/// Counts of one pack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackSummary {
    pub groups: u64,
    pub members: u64,
    pub skipped_without_positive: u64,
    pub skipped_few_negatives: u64,
    /// Version of the `groups` table that contains the group set.
    pub version: u64,
}

/// Builds the group set and stores it in one commit, replacing a set of the same name. Nothing
/// is written when a needed teacher score is missing.
pub async fn pack(store: &Store, options: &PackOptions) -> Result<PackSummary> {
    if let Some(teacher) = &options.teacher {
        check_teacher_exists(store, teacher).await?;
    }
    let sql = group_query(options);
    let context = store.sql_session().await?;
    let query_error = |error| {
        IngestError::Store(StoreError::Query {
            query: sql.clone(),
            error,
        })
    };
    let frame = context.sql(&sql).await.map_err(query_error)?;
    let mut batches = frame.execute_stream().await.map_err(query_error)?;

    let mut summary = PackSummary::default();
    let mut missing_scores = 0u64;
    let mut groups = Vec::new();
    while let Some(batch) = batches.try_next().await.map_err(query_error)? {
        missing_scores += count_missing(&batch);
        if missing_scores == 0 {
            groups.push(to_groups_batch(&batch, options, &mut summary)?);
        }
    }
    if missing_scores > 0 {
        return Err(missing_scores_error(options, missing_scores));
    }
    log_skipped(&summary, options);
    if summary.groups == 0 {
        return Err(IngestError::InvalidArgument(format!(
            "no group could be packed from split {:?} and source {:?}: {} queries have no positive and {} fewer than {} negatives",
            options.split, options.source, summary.skipped_without_positive, summary.skipped_few_negatives, options.min_negatives
        )));
    }

    summary.version = write_groups(store, options, groups).await?;
    Ok(summary)
}

async fn check_teacher_exists(store: &Store, teacher: &str) -> Result<()> {
    if TeacherRecord::read(store, teacher).await?.is_some() {
        return Ok(());
    }
    Err(IngestError::InvalidArgument(format!(
        "teacher {teacher:?} is not in the store; score pairs with `rankdistill score --teacher DIR --name {teacher}` \
         or import scores with `rankdistill import scores FILE --name {teacher}`"
    )))
}

/// Returns the query that lists each query's members in group order, with texts, labels and
/// teacher scores.
fn group_query(options: &PackOptions) -> String {
    let filter = options.filter.as_deref().unwrap_or("TRUE");
    let (score_join, score_column, missing) = match &options.teacher {
        Some(teacher) => (
            format!(
                "LEFT JOIN (SELECT query_id, doc_id, score FROM teacher_scores WHERE teacher = {}) t \
                 ON t.query_id = m.query_id AND t.doc_id = m.doc_id",
                quote_literal(teacher)
            ),
            "t.score",
            "SUM(CASE WHEN t.score IS NULL THEN 1 ELSE 0 END)",
        ),
        None => (String::new(), "CAST(NULL AS FLOAT)", "0"),
    };
    let order = "ORDER BY m.tier, m.sort_rank, m.doc_id";
    format!(
        "WITH judged AS (
            SELECT query_id, doc_id, relevance FROM qrels WHERE split = {split}
        ),
        selected AS (
            SELECT query_id, text FROM queries
            WHERE query_id IN (SELECT query_id FROM judged) AND ({filter})
        ),
        pool AS (
            SELECT query_id, doc_id, MIN(rank) AS rank FROM candidates
            WHERE source = {source} AND rank <= {depth}
            GROUP BY query_id, doc_id
        ),
        members AS (
            SELECT COALESCE(j.query_id, p.query_id) AS query_id,
                   COALESCE(j.doc_id, p.doc_id) AS doc_id,
                   CAST(COALESCE(j.relevance, 0) AS INT) AS label,
                   CASE WHEN COALESCE(j.relevance, 0) >= {min_relevance} THEN 0 ELSE 1 END AS tier,
                   COALESCE(p.rank, 2147483647) AS sort_rank
            FROM judged j FULL OUTER JOIN pool p ON j.query_id = p.query_id AND j.doc_id = p.doc_id
        )
        SELECT m.query_id AS query_id,
               s.text AS query_text,
               CAST(SUM(CASE WHEN m.tier = 0 THEN 1 ELSE 0 END) AS INT) AS positives,
               array_agg(m.doc_id {order}) AS doc_ids,
               array_agg(p.text {order}) AS texts,
               array_agg(m.label {order}) AS labels,
               array_agg({score_column} {order}) AS teacher_scores,
               CAST({missing} AS BIGINT) AS missing_scores
        FROM members m
        JOIN selected s ON s.query_id = m.query_id
        JOIN passages p ON p.doc_id = m.doc_id
        {score_join}
        GROUP BY m.query_id, s.text
        ORDER BY m.query_id",
        split = quote_literal(&options.split),
        source = quote_literal(&options.source),
        depth = options.depth,
        min_relevance = options.min_relevance,
    )
}

fn count_missing(batch: &RecordBatch) -> u64 {
    let missing = batch.column(7).as_primitive::<Int64Type>();
    missing.iter().flatten().map(|count| count as u64).sum()
}

fn missing_scores_error(options: &PackOptions, missing: u64) -> IngestError {
    let teacher = options.teacher.as_deref().unwrap_or_default();
    IngestError::InvalidArgument(format!(
        "{missing} group members have no score from teacher {teacher:?}; nothing was written. \
         Score them with `rankdistill score --teacher MODEL_DIR --name {teacher}`, which scores only the missing pairs"
    ))
}

/// Keeps the groups with a positive and enough negatives, and converts them to the `groups`
/// schema.
fn to_groups_batch(
    batch: &RecordBatch,
    options: &PackOptions,
    summary: &mut PackSummary,
) -> Result<RecordBatch> {
    let positives = batch.column(2).as_primitive::<Int32Type>();
    let doc_ids = batch.column(3).as_list::<i32>();
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let members = doc_ids.value_length(row) as usize;
            let positive_count = positives.value(row) as usize;
            if positive_count == 0 {
                summary.skipped_without_positive += 1;
                Some(false)
            } else if members - positive_count < options.min_negatives {
                summary.skipped_few_negatives += 1;
                Some(false)
            } else {
                Some(true)
            }
        })
        .collect();
    let kept = arrow_select::filter::filter_record_batch(batch, &keep).map_err(arrow_error)?;
    summary.groups += kept.num_rows() as u64;
    summary.members += kept.column(3).as_list::<i32>().values().len() as u64;

    let rows = kept.num_rows();
    let teacher: ArrayRef = Arc::new(StringArray::from(vec![options.teacher.as_deref(); rows]));
    let scores = match options.teacher {
        Some(_) => non_null_items(kept.column(6))?,
        None => arrow_array::new_null_array(Table::Groups.schema().field(8).data_type(), rows),
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![options.name.as_str(); rows])),
        kept.column(0).clone(),
        kept.column(1).clone(),
        kept.column(2).clone(),
        non_null_items(kept.column(3))?,
        non_null_items(kept.column(4))?,
        non_null_items(kept.column(5))?,
        teacher,
        scores,
    ];
    RecordBatch::try_new(Table::Groups.schema(), columns).map_err(arrow_error)
}

/// Re-types a list column as a list of non-null items, as the `groups` schema declares. The
/// query's aggregates produce nullable items even where no item is null.
fn non_null_items(column: &ArrayRef) -> Result<ArrayRef> {
    let list = column.as_list::<i32>();
    let item = Field::new("item", list.values().data_type().clone(), false);
    let list = ListArray::try_new(
        Arc::new(item),
        list.offsets().clone(),
        list.values().clone(),
        list.nulls().cloned(),
    )
    .map_err(arrow_error)?;
    Ok(Arc::new(list))
}

fn arrow_error(error: arrow_schema::ArrowError) -> IngestError {
    IngestError::InvalidArgument(format!("building training groups failed: {error}"))
}

fn log_skipped(summary: &PackSummary, options: &PackOptions) {
    if summary.skipped_without_positive > 0 {
        warn!(
            queries = summary.skipped_without_positive,
            min_relevance = options.min_relevance,
            "skipped queries without a positive"
        );
    }
    if summary.skipped_few_negatives > 0 {
        warn!(
            queries = summary.skipped_few_negatives,
            min_negatives = options.min_negatives,
            "skipped queries with too few negatives"
        );
    }
    info!(
        groups = summary.groups,
        members = summary.members,
        "packed training groups"
    );
}

async fn write_groups(store: &Store, options: &PackOptions, groups: Vec<RecordBatch>) -> Result<u64> {
    let batches = groups.into_iter().map(Ok);
    let stream = RecordBatchStreamAdapter::new(Table::Groups.schema(), futures::stream::iter(batches));
    let mode = WriteMode::ReplacePartition(vec![options.name.clone()]);
    let staged = store.stage(Table::Groups, mode, Box::pin(stream)).await?;
    let message = format!(
        "pack --name {} --split {} --source {} --depth {} --teacher {}",
        options.name,
        options.split,
        options.source,
        options.depth,
        options.teacher.as_deref().unwrap_or("none")
    );
    Ok(store.commit(vec![staged], &message).await?[0])
}
