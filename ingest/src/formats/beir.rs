//! BEIR files: `corpus.jsonl` and `queries.jsonl`. BEIR's `qrels/<split>.tsv` is read by
//! [`super::trec::read_qrels`].

use rankdistill_store::Table;

use super::{json_id, json_text, parse_json_object, register_unique};
use crate::batch::Value;
use crate::error::Result;
use crate::ids::TextIds;
use crate::input::LineReader;
use crate::sinks::Sinks;

/// Reads `{"_id", "title", "text"}` lines into `passages`; a missing title is stored as "".
pub fn read_corpus(lines: &mut LineReader, sinks: &mut Sinks, passages: &mut TextIds) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let object = parse_json_object(&at, line)?;
        let doc_id = json_id(&at, &object, "_id")?;
        let title = json_text(&at, &object, "title", Some(""))?;
        let text = json_text(&at, &object, "text", None)?;

        register_unique(&at, passages, "passage", &doc_id, text)?;
        sinks.push(
            Table::Passages,
            &[Value::Str(&doc_id), Value::Str(title), Value::Str(text)],
        )?;
    }
    Ok(())
}

/// Reads `{"_id", "text"}` lines into `queries`.
pub fn read_queries(lines: &mut LineReader, sinks: &mut Sinks, queries: &mut TextIds) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let object = parse_json_object(&at, line)?;
        let query_id = json_id(&at, &object, "_id")?;
        let text = json_text(&at, &object, "text", None)?;

        register_unique(&at, queries, "query", &query_id, text)?;
        sinks.push(Table::Queries, &[Value::Str(&query_id), Value::Str(text)])?;
    }
    Ok(())
}
