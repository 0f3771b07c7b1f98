//! The Arrow schema of every table, defined once.
//!
//! Column names use the field's terms: a `query_id` names a query, a `doc_id` names a passage, a
//! `source` names the first-stage run that produced a candidate, and a `teacher` names the model
//! whose scores (logits) are stored.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// A table of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `doc_id`, `title`, `text`: the passage collection.
    Passages,
    /// `query_id`, `text`.
    Queries,
    /// `query_id`, `doc_id`, `relevance`, `split`: relevance judgments, one split per import.
    Qrels,
    /// `query_id`, `doc_id`, `rank`, `score`, `source`: first-stage candidates, one run per source.
    Candidates,
    /// `query_id`, `doc_id`, `teacher`, `score`: one teacher logit per pair and teacher.
    TeacherScores,
    /// One row of provenance per teacher name.
    Teachers,
    /// `run`, `query_id`, `doc_id`, `rank`, `score`: reranked lists, one per run name.
    Runs,
    /// `run`, `split`, `measure`, `query_id`, `value`, `rel_threshold`: per-query measures.
    Metrics,
    /// One training group per query and group set: the query, its positives and negatives with
    /// texts, labels and teacher scores, as `rankdistill pack` writes them.
    Groups,
    /// `run`, `step` and the loss, learning rate and throughput of each training step.
    TrainLog,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Passages,
        Table::Queries,
        Table::Qrels,
        Table::Candidates,
        Table::TeacherScores,
        Table::Teachers,
        Table::Groups,
        Table::TrainLog,
        Table::Runs,
        Table::Metrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Passages => "passages",
            Table::Queries => "queries",
            Table::Qrels => "qrels",
            Table::Candidates => "candidates",
            Table::TeacherScores => "teacher_scores",
            Table::Teachers => "teachers",
            Table::Runs => "runs",
            Table::Metrics => "metrics",
            Table::Groups => "groups",
            Table::TrainLog => "train_log",
        }
    }

    /// Returns the name of the Lance dataset folder under the store root.
    pub fn dataset_name(self) -> String {
        format!("{}.lance", self.name())
    }

    pub fn schema(self) -> SchemaRef {
        let fields = match self {
            Table::Passages => vec![utf8("doc_id"), utf8("title"), utf8("text")],
            Table::Queries => vec![utf8("query_id"), utf8("text")],
            Table::Qrels => vec![
                utf8("query_id"),
                utf8("doc_id"),
                Field::new("relevance", DataType::Int32, false),
                utf8("split"),
            ],
            Table::Candidates => vec![
                utf8("query_id"),
                utf8("doc_id"),
                Field::new("rank", DataType::Int32, false),
                // Null where the source gives an order but no score (text triples, training groups).
                Field::new("score", DataType::Float64, true),
                utf8("source"),
            ],
            Table::TeacherScores => vec![
                utf8("query_id"),
                utf8("doc_id"),
                utf8("teacher"),
                Field::new("score", DataType::Float32, false),
            ],
            Table::Teachers => vec![
                utf8("teacher"),
                utf8("model"),
                nullable_utf8("weights_sha256"),
                Field::new("max_len", DataType::Int32, true),
                nullable_utf8("template"),
                nullable_utf8("dtype"),
                Field::new("pairs", DataType::Int64, false),
                Field::new("wall_seconds", DataType::Float64, true),
                utf8("created_at"),
            ],
            Table::Runs => vec![
                utf8("run"),
                utf8("query_id"),
                utf8("doc_id"),
                Field::new("rank", DataType::Int32, false),
                Field::new("score", DataType::Float64, false),
            ],
            Table::Metrics => vec![
                utf8("run"),
                utf8("split"),
                utf8("measure"),
                utf8("query_id"),
                Field::new("value", DataType::Float64, false),
                Field::new("rel_threshold", DataType::Int32, false),
            ],
            Table::Groups => vec![
                utf8("name"),
                utf8("query_id"),
                utf8("query_text"),
                // Members in order: the `positives` positives first, then the negatives by rank.
                Field::new("positives", DataType::Int32, false),
                list("doc_ids", DataType::Utf8),
                list("texts", DataType::Utf8),
                list("labels", DataType::Int32),
                // Null when the group set was packed without a teacher.
                nullable_utf8("teacher"),
                Field::new(
                    "teacher_scores",
                    DataType::new_list(DataType::Float32, false),
                    true,
                ),
            ],
            Table::TrainLog => vec![
                utf8("run"),
                Field::new("step", DataType::Int64, false),
                Field::new("epoch", DataType::Int32, false),
                Field::new("loss", DataType::Float64, false),
                Field::new("learning_rate", DataType::Float64, false),
                Field::new("grad_norm", DataType::Float64, false),
                Field::new("groups_per_second", DataType::Float64, false),
                Field::new("tokens_per_second", DataType::Float64, false),
                Field::new("elapsed_seconds", DataType::Float64, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    /// Returns the columns that identify a row; an import never writes two rows with equal keys.
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            Table::Passages => &["doc_id"],
            Table::Queries => &["query_id"],
            Table::Qrels => &["query_id", "doc_id", "split"],
            Table::Candidates => &["query_id", "doc_id", "source"],
            Table::TeacherScores => &["query_id", "doc_id", "teacher"],
            Table::Teachers => &["teacher"],
            Table::Runs => &["run", "query_id", "doc_id"],
            Table::Metrics => &["run", "split", "measure", "query_id"],
            Table::Groups => &["name", "query_id"],
            Table::TrainLog => &["run", "step"],
        }
    }

    /// Returns the column whose value names one import (a qrels split, a run, a teacher):
    /// importing the same value again replaces those rows.
    pub fn partition_column(self) -> Option<&'static str> {
        match self {
            Table::Passages | Table::Queries => None,
            Table::Qrels => Some("split"),
            Table::Candidates => Some("source"),
            Table::TeacherScores | Table::Teachers => Some("teacher"),
            Table::Runs | Table::Metrics | Table::TrainLog => Some("run"),
            Table::Groups => Some("name"),
        }
    }

    /// Checks a dataset's schema against this table's: same column names and types.
    pub fn check_schema(self, actual: &Schema) -> Result<(), String> {
        let expected = self.schema();
        let mut problems = Vec::new();

        for field in expected.fields() {
            match actual.field_with_name(field.name()) {
                Err(_) => problems.push(format!("column {} is missing", field.name())),
                Ok(found) if found.data_type() != field.data_type() => problems.push(format!(
                    "column {} is {} (expected {})",
                    field.name(),
                    found.data_type(),
                    field.data_type()
                )),
                Ok(_) => {}
            }
        }
        for field in actual.fields() {
            if expected.field_with_name(field.name()).is_err() {
                problems.push(format!("column {} is not part of the schema", field.name()));
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn nullable_utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

/// Returns a non-null list column of non-null items.
fn list(name: &str, item: DataType) -> Field {
    Field::new(name, DataType::new_list(item, false), false)
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Table {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Table::ALL
            .into_iter()
            .find(|table| table.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
                format!("unknown table {name:?}; the tables are {}", known.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_round_trip() {
        for table in Table::ALL {
            assert_eq!(table.name().parse::<Table>().unwrap(), table);
        }
        assert!("passage".parse::<Table>().is_err());
    }

    #[test]
    fn key_and_partition_columns_exist() {
        for table in Table::ALL {
            let schema = table.schema();
            for column in table.key_columns() {
                assert!(schema.field_with_name(column).is_ok(), "{table}.{column}");
            }
            if let Some(column) = table.partition_column() {
                assert!(table.key_columns().contains(&column), "{table}.{column}");
            }
        }
    }

    #[test]
    fn schema_check_names_the_wrong_column() {
        let schema = Schema::new(vec![
            Field::new("doc_id", DataType::Int64, false),
            Field::new("title", DataType::Utf8, false),
            Field::new("body", DataType::Utf8, false),
        ]);
        let problems = Table::Passages.check_schema(&schema).unwrap_err();
        assert!(problems.contains("column doc_id is Int64"), "{problems}");
        assert!(problems.contains("column text is missing"), "{problems}");
        assert!(problems.contains("column body is not part"), "{problems}");
        assert!(Table::Passages.check_schema(&Table::Passages.schema()).is_ok());
    }
}
