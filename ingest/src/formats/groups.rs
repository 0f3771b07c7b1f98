//! JSONL training groups, as Tevatron and FlagEmbedding write them.
//!
//! A group is a query with positive and negative passages. Positives become `qrels` rows
//! (relevance 1), negatives become `candidates` rows of the import's source in file order, and
//! scores given with the passages become `teacher_scores` rows.

use std::collections::HashMap;

use rankdistill_store::Table;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::{json_id, json_text, parse_json_object};
use crate::batch::Value;
use crate::error::Result;
use crate::ids::{first_seen, PairSet, Registered, TextIds};
use crate::input::{LineReader, Position};
use crate::sinks::Sinks;

/// A query with its positive and negative passages.
pub struct Group<'a> {
    pub query_id: String,
    pub query: &'a str,
    pub positives: Vec<Member<'a>>,
    pub negatives: Vec<Member<'a>>,
}

/// A passage of a group, with an optional teacher score.
pub struct Member<'a> {
    pub doc_id: String,
    pub title: &'a str,
    pub text: &'a str,
    pub score: Option<f32>,
}

impl<'a> Member<'a> {
    /// Builds a member whose id is derived from its text.
    pub fn from_text(text: &'a str, score: Option<f32>) -> Self {
        Self {
            doc_id: text_id("p", text),
            title: "",
            text,
            score,
        }
    }
}

/// Derives a stable id for a text that came without one: `prefix-` and the first 16 hex digits
/// of the text's SHA-256.
pub fn text_id(prefix: &str, text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Writes groups into the store's tables, skipping queries, passages and pairs seen before.
pub struct GroupWriter<'a> {
    source: String,
    split: String,
    teacher: Option<String>,
    queries: &'a mut TextIds,
    passages: &'a mut TextIds,
    qrels: PairSet,
    candidates: PairSet,
    scored: PairSet,
    next_rank: HashMap<String, i32>,
    repeated_pairs: u64,
}

impl<'a> GroupWriter<'a> {
    /// `teacher` names the scores; when `None`, a group that carries scores is an error.
    pub fn new(
        source: &str,
        split: &str,
        teacher: Option<&str>,
        queries: &'a mut TextIds,
        passages: &'a mut TextIds,
    ) -> Self {
        Self {
            source: source.to_string(),
            split: split.to_string(),
            teacher: teacher.map(str::to_string),
            queries,
            passages,
            qrels: PairSet::default(),
            candidates: PairSet::default(),
            scored: PairSet::default(),
            next_rank: HashMap::new(),
            repeated_pairs: 0,
        }
    }

    /// Returns how many (query, passage) pairs repeated an earlier group's pair and were skipped.
    pub fn repeated_pairs(&self) -> u64 {
        self.repeated_pairs
    }

    pub fn write(&mut self, at: &Position, group: &Group, sinks: &mut Sinks) -> Result<()> {
        let line = at.line;
        if group.positives.is_empty() {
            return Err(at.invalid(format!(
                "the group of query {:?} has no positive passage",
                group.query_id
            )));
        }
        self.write_query(at, line, group, sinks)?;

        for member in &group.positives {
            self.write_passage(at, line, member, sinks)?;
            if self.qrels.insert(&group.query_id, &member.doc_id, line).is_some() {
                self.repeated_pairs += 1;
            } else {
                let row = [
                    Value::Str(&group.query_id),
                    Value::Str(&member.doc_id),
                    Value::I32(1),
                    Value::Str(&self.split),
                ];
                sinks.push(Table::Qrels, &row)?;
            }
            self.write_score(at, line, &group.query_id, member, sinks)?;
        }

        for member in &group.negatives {
            self.write_passage(at, line, member, sinks)?;
            self.write_candidate(line, &group.query_id, member, sinks)?;
            self.write_score(at, line, &group.query_id, member, sinks)?;
        }
        Ok(())
    }

    fn write_query(&mut self, at: &Position, line: usize, group: &Group, sinks: &mut Sinks) -> Result<()> {
        match self.queries.register(&group.query_id, group.query, line) {
            Registered::New => sinks.push(
                Table::Queries,
                &[Value::Str(&group.query_id), Value::Str(group.query)],
            ),
            Registered::SameText => Ok(()),
            Registered::OtherText(earlier) => Err(at.invalid(format!(
                "query id {:?} has a different text than the query {}",
                group.query_id,
                first_seen(earlier)
            ))),
        }
    }

    fn write_passage(
        &mut self,
        at: &Position,
        line: usize,
        member: &Member,
        sinks: &mut Sinks,
    ) -> Result<()> {
        match self.passages.register(&member.doc_id, member.text, line) {
            Registered::New => {
                let row = [
                    Value::Str(&member.doc_id),
                    Value::Str(member.title),
                    Value::Str(member.text),
                ];
                sinks.push(Table::Passages, &row)
            }
            Registered::SameText => Ok(()),
            Registered::OtherText(earlier) => Err(at.invalid(format!(
                "passage id {:?} has a different text than the passage {}",
                member.doc_id,
                first_seen(earlier)
            ))),
        }
    }

    fn write_candidate(
        &mut self,
        line: usize,
        query_id: &str,
        member: &Member,
        sinks: &mut Sinks,
    ) -> Result<()> {
        if self.candidates.insert(query_id, &member.doc_id, line).is_some() {
            self.repeated_pairs += 1;
            return Ok(());
        }
        let rank = self.next_rank.entry(query_id.to_string()).or_insert(0);
        *rank += 1;
        let row = [
            Value::Str(query_id),
            Value::Str(&member.doc_id),
            Value::I32(*rank),
            Value::OptF64(None),
            Value::Str(&self.source),
        ];
        sinks.push(Table::Candidates, &row)
    }

    fn write_score(
        &mut self,
        at: &Position,
        line: usize,
        query_id: &str,
        member: &Member,
        sinks: &mut Sinks,
    ) -> Result<()> {
        let Some(score) = member.score else {
            return Ok(());
        };
        let Some(teacher) = &self.teacher else {
            return Err(at.invalid("the group carries scores but no teacher name was given for them"));
        };
        if self.scored.insert(query_id, &member.doc_id, line).is_some() {
            return Ok(());
        }
        let row = [
            Value::Str(query_id),
            Value::Str(&member.doc_id),
            Value::Str(teacher),
            Value::F32(score),
        ];
        sinks.push(Table::TeacherScores, &row)
    }
}

/// Reads JSONL groups in Tevatron or FlagEmbedding form, recognised line by line.
pub fn read_groups(lines: &mut LineReader, sinks: &mut Sinks, writer: &mut GroupWriter) -> Result<()> {
    while let Some((at, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let object = parse_json_object(&at, line)?;
        let group = if object.contains_key("positive_passages") {
            tevatron_group(&at, &object)?
        } else if object.contains_key("pos") {
            flagembedding_group(&at, &object)?
        } else {
            return Err(at.invalid(
                "expected a Tevatron group (query_id, query, positive_passages, negative_passages) \
                 or a FlagEmbedding group (query, pos, neg)",
            ));
        };
        writer.write(&at, &group, sinks)?;
    }
    Ok(())
}

fn tevatron_group<'a>(at: &Position, object: &'a Map<String, Json>) -> Result<Group<'a>> {
    let query = json_text(at, object, "query", None)?;
    let query_id = match object.get("query_id") {
        Some(_) => json_id(at, object, "query_id")?,
        None => text_id("q", query),
    };
    Ok(Group {
        query_id,
        query,
        positives: tevatron_passages(at, object, "positive_passages")?,
        negatives: tevatron_passages(at, object, "negative_passages")?,
    })
}

fn tevatron_passages<'a>(
    at: &Position,
    object: &'a Map<String, Json>,
    field: &str,
) -> Result<Vec<Member<'a>>> {
    let items = json_array(at, object, field)?;
    let mut members = Vec::with_capacity(items.len());
    for item in items {
        let Json::Object(passage) = item else {
            return Err(at.invalid(format!(
                "every entry of {field:?} must be an object with docid, title and text"
            )));
        };
        let text = json_text(at, passage, "text", None)?;
        let doc_id = match passage.get("docid") {
            Some(_) => json_id(at, passage, "docid")?,
            None => text_id("p", text),
        };
        let title = json_text(at, passage, "title", Some(""))?;
        let score = optional_score(at, passage.get("score"), field)?;
        members.push(Member {
            doc_id,
            title,
            text,
            score,
        });
    }
    Ok(members)
}

fn flagembedding_group<'a>(at: &Position, object: &'a Map<String, Json>) -> Result<Group<'a>> {
    let query = json_text(at, object, "query", None)?;
    Ok(Group {
        query_id: text_id("q", query),
        query,
        positives: flagembedding_passages(at, object, "pos", "pos_scores")?,
        negatives: flagembedding_passages(at, object, "neg", "neg_scores")?,
    })
}

fn flagembedding_passages<'a>(
    at: &Position,
    object: &'a Map<String, Json>,
    field: &str,
    score_field: &str,
) -> Result<Vec<Member<'a>>> {
    let texts = json_array(at, object, field)?;
    let scores = match object.get(score_field) {
        None | Some(Json::Null) => None,
        Some(_) => Some(json_array(at, object, score_field)?),
    };
    if let Some(scores) = scores {
        if scores.len() != texts.len() {
            return Err(at.invalid(format!(
                "{score_field:?} has {} scores for {} passages in {field:?}",
                scores.len(),
                texts.len()
            )));
        }
    }

    let mut members = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let Json::String(text) = text else {
            return Err(at.invalid(format!("every entry of {field:?} must be a string")));
        };
        let score = optional_score(at, scores.map(|s| &s[index]), score_field)?;
        members.push(Member::from_text(text, score));
    }
    Ok(members)
}

fn json_array<'a>(at: &Position, object: &'a Map<String, Json>, field: &str) -> Result<&'a Vec<Json>> {
    match object.get(field) {
        Some(Json::Array(items)) => Ok(items),
        Some(other) => Err(at.invalid(format!("field {field:?} must be an array, found {other}"))),
        None => Err(at.invalid(format!("field {field:?} is missing"))),
    }
}

/// Reads a score that must be a finite number when present. JSON has no NaN, so a NaN arrives
/// as a string or null, and both are rejected here.
fn optional_score(at: &Position, value: Option<&Json>, field: &str) -> Result<Option<f32>> {
    match value {
        None => Ok(None),
        Some(Json::Number(number)) => match number.as_f64() {
            Some(score) if score.is_finite() => Ok(Some(score as f32)),
            _ => Err(at.invalid(format!("score {number} in {field:?} is not finite"))),
        },
        Some(other) => Err(at.invalid(format!("score {other} in {field:?} is not a finite number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_are_stable_and_prefixed() {
        let id = text_id("q", "what is a cross-encoder");
        assert_eq!(id.len(), 2 + 16);
        assert!(id.starts_with("q-"));
        assert_eq!(id, text_id("q", "what is a cross-encoder"));
        assert_ne!(id, text_id("q", "what is a bi-encoder"));
    }
}
