//! TREC qrels (`qid 0 docid grade`, and BEIR's three-column form) and run files
//! (`qid Q0 docid rank score tag`).

use rankdistill_store::Table;

use crate::batch::Value;
use crate::error::Result;
use crate::ids::{duplicate_pair_message, PairSet, ReferenceCheck};
use crate::input::{LineReader, Position};
use crate::sinks::Sinks;

/// Reads qrels into `qrels`: TREC lines (`qid iteration docid relevance`) or BEIR lines
/// (`query-id corpus-id score`, after an optional header row), separated by tabs or spaces.
pub fn read_qrels(
    lines: &mut LineReader,
    split: &str,
    sinks: &mut Sinks,
    check: &mut ReferenceCheck,
    pairs: &mut PairSet,
) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (query_id, doc_id, relevance) = match fields.as_slice() {
            [] => continue,
            [query_id, _iteration, doc_id, relevance] => (*query_id, *doc_id, *relevance),
            [query_id, doc_id, relevance] => (*query_id, *doc_id, *relevance),
            _ => {
                return Err(at.invalid(format!(
                    "expected 4 fields (query id, iteration, passage id, relevance) or 3 (query id, passage id, relevance), found {}",
                    fields.len()
                )))
            }
        };
        let relevance: i32 = match relevance.parse() {
            Ok(relevance) => relevance,
            Err(_) if at.line == 1 && fields.len() == 3 => continue,
            Err(_) => return Err(at.invalid(format!("relevance {relevance:?} is not an integer"))),
        };

        if let Some(earlier) = pairs.insert(query_id, doc_id, at.line) {
            return Err(at.invalid(duplicate_pair_message("qrels", query_id, doc_id, earlier)));
        }
        if check.admit(at.line, query_id, doc_id) {
            let row = [
                Value::Str(query_id),
                Value::Str(doc_id),
                Value::I32(relevance),
                Value::Str(split),
            ];
            sinks.push(Table::Qrels, &row)?;
        }
    }
    Ok(())
}

/// Reads a six-column TREC run into `candidates` under `source`.
///
/// The rank column is stored as written; scores must be finite. Each (query, passage) pair may
/// appear once.
pub fn read_run(
    lines: &mut LineReader,
    source: &str,
    sinks: &mut Sinks,
    check: &mut ReferenceCheck,
    pairs: &mut PairSet,
) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 6 {
            return Err(at.invalid(format!(
                "expected 6 fields (query id, Q0, passage id, rank, score, tag), found {}",
                fields.len()
            )));
        }
        let (query_id, doc_id) = (fields[0], fields[2]);
        let rank: i32 = fields[3]
            .parse()
            .map_err(|_| at.invalid(format!("rank {:?} is not an integer", fields[3])))?;
        let score = parse_score(&at, fields[4])?;

        if let Some(earlier) = pairs.insert(query_id, doc_id, at.line) {
            return Err(at.invalid(duplicate_pair_message("run", query_id, doc_id, earlier)));
        }
        if check.admit(at.line, query_id, doc_id) {
            let row = [
                Value::Str(query_id),
                Value::Str(doc_id),
                Value::I32(rank),
                Value::OptF64(Some(score)),
                Value::Str(source),
            ];
            sinks.push(Table::Candidates, &row)?;
        }
    }
    Ok(())
}

/// Parses a score, rejecting NaN and infinities.
pub fn parse_score(at: &Position, text: &str) -> Result<f64> {
    let score: f64 = text
        .parse()
        .map_err(|_| at.invalid(format!("score {text:?} is not a number")))?;
    if !score.is_finite() {
        return Err(at.invalid(format!("score {text:?} is not finite")));
    }
    Ok(score)
}
