//! MS MARCO style files: `collection.tsv`, `queries.tsv` and text triples.

use rankdistill_store::Table;

use super::groups::{Group, GroupWriter, Member};
use super::{register_unique, tab_fields};
use crate::batch::Value;
use crate::error::Result;
use crate::ids::TextIds;
use crate::input::LineReader;
use crate::sinks::Sinks;

/// Reads `id \t text` (or `id \t title \t text`) lines into `passages`.
pub fn read_collection(lines: &mut LineReader, sinks: &mut Sinks, passages: &mut TextIds) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.is_empty() {
            continue;
        }
        let field_count = line.split('\t').count();
        let (doc_id, title, text) = if field_count == 3 {
            let fields = tab_fields(&at, line, 3, "id, title, text")?;
            (fields[0], fields[1], fields[2])
        } else {
            let fields = tab_fields(&at, line, 2, "id, text")?;
            (fields[0], "", fields[1])
        };
        if doc_id.is_empty() {
            return Err(at.invalid("the passage id is empty"));
        }

        register_unique(&at, passages, "passage", doc_id, text)?;
        sinks.push(
            Table::Passages,
            &[Value::Str(doc_id), Value::Str(title), Value::Str(text)],
        )?;
    }
    Ok(())
}

/// Reads `id \t text` lines into `queries`.
pub fn read_queries(lines: &mut LineReader, sinks: &mut Sinks, queries: &mut TextIds) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.is_empty() {
            continue;
        }
        let fields = tab_fields(&at, line, 2, "id, text")?;
        let (query_id, text) = (fields[0], fields[1]);
        if query_id.is_empty() {
            return Err(at.invalid("the query id is empty"));
        }

        register_unique(&at, queries, "query", query_id, text)?;
        sinks.push(Table::Queries, &[Value::Str(query_id), Value::Str(text)])?;
    }
    Ok(())
}

/// Reads `query \t positive \t negative` text triples as one-positive, one-negative groups.
///
/// Triples carry no ids, so ids are derived from the texts (see [`super::groups::text_id`]).
pub fn read_triples(lines: &mut LineReader, sinks: &mut Sinks, writer: &mut GroupWriter) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.is_empty() {
            continue;
        }
        let fields = tab_fields(&at, line, 3, "query, positive passage, negative passage")?;
        let group = Group {
            query_id: super::groups::text_id("q", fields[0]),
            query: fields[0],
            positives: vec![Member::from_text(fields[1], None)],
            negatives: vec![Member::from_text(fields[2], None)],
        };
        writer.write(&at, &group, sinks)?;
    }
    Ok(())
}
