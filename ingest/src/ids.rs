//! Id bookkeeping during an import: duplicate ids, and qrels or run rows that name unknown ids.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use arrow_array::{Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use rankdistill_store::{Store, Table};

use crate::error::{IngestError, Result};

/// Policy for qrels or run rows whose query id or passage id is not in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownIds {
    /// Fail the import, naming how many rows are affected and a few examples.
    #[default]
    Error,
    /// Leave those rows out and report how many were dropped.
    Drop,
    /// Store those rows anyway and report how many there are. Needed for qrels of a partial
    /// collection, such as TREC DL judgments of passages whose text was not kept.
    Keep,
}

impl FromStr for UnknownIds {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "error" => Ok(Self::Error),
            "drop" => Ok(Self::Drop),
            "keep" => Ok(Self::Keep),
            other => Err(format!(
                "invalid unknown-id policy {other:?}: expected error, drop or keep"
            )),
        }
    }
}

impl fmt::Display for UnknownIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Drop => "drop",
            Self::Keep => "keep",
        })
    }
}

/// The outcome of registering an id with its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    New,
    SameText,
    /// The id is known with a different text. The value is the line where it was first seen, or
    /// 0 when it came from the store.
    OtherText(usize),
}

/// Ids of queries or passages, each with a hash of its text and the line that introduced it.
///
/// Ids are kept as 128-bit hashes rather than strings, which cuts the memory of a 1M-passage
/// import by about 90 MB; two different ids share a hash with probability about n²/2¹²⁹.
#[derive(Debug, Default)]
pub struct TextIds {
    entries: HashMap<u128, (u64, usize)>,
}

impl TextIds {
    /// Loads the ids and text hashes already stored in `table` (passages or queries).
    pub async fn load(store: &Store, table: Table) -> Result<Self> {
        let id_column = match table {
            Table::Passages => "doc_id",
            Table::Queries => "query_id",
            other => unreachable!("table {other} has no text ids"),
        };
        let mut ids = Self::default();
        if store.try_dataset(table).await?.is_none() {
            return Ok(ids);
        }

        let mut batches = store.scan(table, None, Some(&[id_column, "text"]), None).await?;
        while let Some(batch) = batches.try_next().await.map_err(store_read_error(table))? {
            let (id_values, texts) = (string_column(&batch, 0), string_column(&batch, 1));
            for row in 0..batch.num_rows() {
                ids.register(id_values.value(row), texts.value(row), 0);
            }
        }
        Ok(ids)
    }

    /// Records `id` with its text, first seen on `line`.
    pub fn register(&mut self, id: &str, text: &str, line: usize) -> Registered {
        let hash = text_hash(text);
        match self.entries.entry(key128(&[id])) {
            Entry::Vacant(slot) => {
                slot.insert((hash, line));
                Registered::New
            }
            Entry::Occupied(entry) if entry.get().0 == hash => Registered::SameText,
            Entry::Occupied(entry) => Registered::OtherText(entry.get().1),
        }
    }

    /// Returns the line where `id` was first seen, 0 when it came from the store.
    pub fn first_line(&self, id: &str) -> Option<usize> {
        self.entries.get(&key128(&[id])).map(|(_, line)| *line)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(&key128(&[id]))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn text_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Hashes a sequence of strings to 128 bits: two SipHash runs that differ in a leading tag.
fn key128(parts: &[&str]) -> u128 {
    let half = |tag: u8| {
        let mut hasher = DefaultHasher::new();
        tag.hash(&mut hasher);
        parts.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Describes where an id was first seen, for duplicate-id messages.
pub fn first_seen(line: usize) -> String {
    if line == 0 {
        "already in the store".to_string()
    } else {
        format!("first seen on line {line}")
    }
}

/// (query id, passage id) pairs already written, with the line that introduced each, kept as
/// 128-bit hashes like [`TextIds`].
#[derive(Debug, Default)]
pub struct PairSet {
    pairs: HashMap<u128, usize>,
}

impl PairSet {
    /// Loads the pairs of `table` rows that match `filter`, such as one qrels split.
    pub async fn load(store: &Store, table: Table, filter: &str) -> Result<Self> {
        let mut pairs = Self::default();
        if store.try_dataset(table).await?.is_none() {
            return Ok(pairs);
        }
        let columns = ["query_id", "doc_id"];
        let mut batches = store.scan(table, None, Some(&columns), Some(filter)).await?;
        while let Some(batch) = batches.try_next().await.map_err(store_read_error(table))? {
            let (query_ids, doc_ids) = (string_column(&batch, 0), string_column(&batch, 1));
            for row in 0..batch.num_rows() {
                pairs.insert(query_ids.value(row), doc_ids.value(row), 0);
            }
        }
        Ok(pairs)
    }

    pub fn contains(&self, query_id: &str, doc_id: &str) -> bool {
        self.pairs.contains_key(&key128(&[query_id, doc_id]))
    }

    /// Records a pair; returns the line of the earlier occurrence when it is already present.
    pub fn insert(&mut self, query_id: &str, doc_id: &str, line: usize) -> Option<usize> {
        match self.pairs.entry(key128(&[query_id, doc_id])) {
            Entry::Vacant(slot) => {
                slot.insert(line);
                None
            }
            Entry::Occupied(entry) => Some(*entry.get()),
        }
    }
}

fn string_column(batch: &RecordBatch, index: usize) -> &StringArray {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("id and text columns are Utf8 in every table schema")
}

fn store_read_error(
    table: Table,
) -> impl Fn(rankdistill_store::deps::datafusion::error::DataFusionError) -> IngestError {
    move |error| IngestError::InvalidArgument(format!("reading table {table} failed: {error}"))
}

/// Checks that qrels or run rows name known queries and passages, applying an [`UnknownIds`] policy.
pub struct ReferenceCheck<'a> {
    file: String,
    policy: UnknownIds,
    queries: &'a TextIds,
    passages: &'a TextIds,
    rows: u64,
    unknown: u64,
    examples: Vec<String>,
}

/// Unknown ids listed in a message.
const MAX_EXAMPLES: usize = 5;

impl<'a> ReferenceCheck<'a> {
    pub fn new(file: &str, policy: UnknownIds, queries: &'a TextIds, passages: &'a TextIds) -> Self {
        Self {
            file: file.to_string(),
            policy,
            queries,
            passages,
            rows: 0,
            unknown: 0,
            examples: Vec::new(),
        }
    }

    /// Returns whether the row should be written.
    pub fn admit(&mut self, line: usize, query_id: &str, doc_id: &str) -> bool {
        self.rows += 1;
        let missing = match (self.queries.contains(query_id), self.passages.contains(doc_id)) {
            (true, true) => return true,
            (false, true) => format!("line {line}: query id {query_id:?}"),
            (true, false) => format!("line {line}: passage id {doc_id:?}"),
            (false, false) => format!("line {line}: query id {query_id:?} and passage id {doc_id:?}"),
        };
        self.unknown += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(missing);
        }
        self.policy == UnknownIds::Keep
    }

    /// Ends the check: an error under [`UnknownIds::Error`], otherwise a summary to log, if any
    /// row named an unknown id.
    pub fn finish(self) -> Result<Option<String>> {
        if self.unknown == 0 {
            return Ok(None);
        }
        let examples = self.examples.join("; ");
        let counted = format!(
            "{} of {} rows name ids that are not in the store's queries or passages (for example {examples})",
            self.unknown, self.rows
        );
        match self.policy {
            UnknownIds::Error => Err(IngestError::Unknown {
                file: self.file,
                message: format!(
                    "{counted}; import the queries and passages first, or pass --unknown drop to leave these rows out, \
                     or --unknown keep to store them (for qrels of a collection that holds only some judged passages)"
                ),
            }),
            UnknownIds::Drop => Ok(Some(format!("{}: dropped {counted}", self.file))),
            UnknownIds::Keep => Ok(Some(format!("{}: kept {counted}", self.file))),
        }
    }
}

/// Builds the message for an id that a file repeats.
pub fn duplicate_id_message(kind: &str, id: &str, earlier_line: usize) -> String {
    format!("duplicate {kind} id {id:?} ({})", first_seen(earlier_line))
}

/// Builds the message for a (query, passage) pair that a qrels or run file repeats.
pub fn duplicate_pair_message(kind: &str, query_id: &str, doc_id: &str, earlier_line: usize) -> String {
    format!(
        "duplicate {kind} pair: query {query_id:?} and passage {doc_id:?} ({})",
        first_seen(earlier_line)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[&str]) -> TextIds {
        let mut ids = TextIds::default();
        for (line, id) in values.iter().enumerate() {
            ids.register(id, "text", line + 1);
        }
        ids
    }

    #[test]
    fn register_tells_new_same_and_other_text() {
        let mut ids = TextIds::default();
        assert_eq!(ids.register("d1", "a", 1), Registered::New);
        assert_eq!(ids.register("d1", "a", 2), Registered::SameText);
        assert_eq!(ids.register("d1", "b", 3), Registered::OtherText(1));
        assert_eq!(ids.first_line("d1"), Some(1));
    }

    #[test]
    fn error_policy_counts_and_lists_examples() {
        let (queries, passages) = (ids(&["q1"]), ids(&["d1"]));
        let mut check = ReferenceCheck::new("qrels.txt", UnknownIds::Error, &queries, &passages);
        assert!(check.admit(1, "q1", "d1"));
        assert!(!check.admit(2, "q9", "d1"));
        assert!(!check.admit(3, "q1", "d9"));
        let error = check.finish().unwrap_err().to_string();
        assert!(error.starts_with("qrels.txt: 2 of 3 rows"), "{error}");
        assert!(error.contains("line 2: query id \"q9\""), "{error}");
        assert!(error.contains("line 3: passage id \"d9\""), "{error}");
        assert!(error.contains("--unknown drop"), "{error}");
    }

    #[test]
    fn drop_and_keep_policies_admit_accordingly() {
        let (queries, passages) = (ids(&["q1"]), ids(&["d1"]));
        let mut dropping = ReferenceCheck::new("run", UnknownIds::Drop, &queries, &passages);
        assert!(!dropping.admit(1, "q2", "d1"));
        assert!(dropping
            .finish()
            .unwrap()
            .unwrap()
            .contains("dropped 1 of 1 rows"));

        let mut keeping = ReferenceCheck::new("run", UnknownIds::Keep, &queries, &passages);
        assert!(keeping.admit(1, "q2", "d1"));
        assert!(keeping.finish().unwrap().unwrap().contains("kept 1 of 1 rows"));
    }

    #[test]
    fn pair_set_reports_earlier_line() {
        let mut pairs = PairSet::default();
        assert_eq!(pairs.insert("q", "d", 4), None);
        assert_eq!(pairs.insert("q", "d", 9), Some(4));
        assert_eq!(pairs.insert("q", "e", 10), None);
    }
}
