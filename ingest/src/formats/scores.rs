//! Precomputed teacher scores: TREC run lines (`qid Q0 docid rank score tag`) or JSON lines
//! `{"query_id", "doc_id", "score"}`, recognised line by line.

use rankdistill_store::Table;
use serde_json::Value as Json;

use super::trec::parse_score;
use super::{json_id, parse_json_object};
use crate::batch::Value;
use crate::error::Result;
use crate::ids::{duplicate_pair_message, PairSet, ReferenceCheck};
use crate::input::{LineReader, Position};
use crate::sinks::Sinks;

/// Reads scores into `teacher_scores` under `teacher`.
pub fn read_scores(
    lines: &mut LineReader,
    teacher: &str,
    sinks: &mut Sinks,
    check: &mut ReferenceCheck,
    pairs: &mut PairSet,
) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let (query_id, doc_id, score) = if line.trim_start().starts_with('{') {
            json_score(&at, line)?
        } else {
            run_score(&at, line)?
        };

        if let Some(earlier) = pairs.insert(&query_id, &doc_id, at.line) {
            return Err(at.invalid(duplicate_pair_message("score", &query_id, &doc_id, earlier)));
        }
        if check.admit(at.line, &query_id, &doc_id) {
            let row = [
                Value::Str(&query_id),
                Value::Str(&doc_id),
                Value::Str(teacher),
                Value::F32(score as f32),
            ];
            sinks.push(Table::TeacherScores, &row)?;
        }
    }
    Ok(())
}

fn json_score(at: &Position, line: &str) -> Result<(String, String, f64)> {
    let object = parse_json_object(at, line)?;
    let query_id = json_id(at, &object, "query_id")?;
    let doc_id = json_id(at, &object, "doc_id")?;
    let score = match object.get("score") {
        Some(Json::Number(number)) => number.as_f64().filter(|s| s.is_finite()),
        Some(other) => return Err(at.invalid(format!("score {other} is not a finite number"))),
        None => return Err(at.invalid("field \"score\" is missing")),
    };
    let score = score.ok_or_else(|| at.invalid("the score is not a finite number"))?;
    Ok((query_id, doc_id, score))
}

fn run_score(at: &Position, line: &str) -> Result<(String, String, f64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(at.invalid(format!(
            "expected a JSON object or 6 run fields (query id, Q0, passage id, rank, score, tag), found {} fields",
            fields.len()
        )));
    }
    let score = parse_score(at, fields[4])?;
    Ok((fields[0].to_string(), fields[2].to_string(), score))
}
