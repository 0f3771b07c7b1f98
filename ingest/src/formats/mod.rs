//! One parser per source format. Each reads a [`LineReader`] and pushes rows into [`Sinks`].
//!
//! [`LineReader`]: crate::input::LineReader
//! [`Sinks`]: crate::sinks::Sinks

pub mod beir;
pub mod groups;
pub mod msmarco;
pub mod scores;
pub mod trec;

use serde_json::Value as Json;

use crate::error::Result;
use crate::ids::{duplicate_id_message, Registered, TextIds};
use crate::input::Position;

/// Parses the current line as a JSON object.
fn parse_json_object(at: &Position, line: &str) -> Result<serde_json::Map<String, Json>> {
    match serde_json::from_str::<Json>(line) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => Err(at.invalid("expected a JSON object")),
        Err(error) if line.contains("NaN") || line.contains("Infinity") => Err(at.invalid(format!(
            "invalid JSON: {error}; NaN and infinite scores are not valid"
        ))),
        Err(error) => Err(at.invalid(format!("invalid JSON: {error}"))),
    }
}

/// Reads an id field that a JSON file may write as a string or as an integer.
fn json_id(at: &Position, object: &serde_json::Map<String, Json>, field: &str) -> Result<String> {
    match object.get(field) {
        Some(Json::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Json::Number(id)) if id.is_u64() || id.is_i64() => Ok(id.to_string()),
        Some(other) => Err(at.invalid(format!(
            "field {field:?} must be a non-empty string or an integer, found {other}"
        ))),
        None => Err(at.invalid(format!("field {field:?} is missing"))),
    }
}

/// Reads a text field; `default` is used when the field is absent or null.
fn json_text<'a>(
    at: &Position,
    object: &'a serde_json::Map<String, Json>,
    field: &str,
    default: Option<&'a str>,
) -> Result<&'a str> {
    match (object.get(field), default) {
        (Some(Json::String(text)), _) => Ok(text),
        (None | Some(Json::Null), Some(default)) => Ok(default),
        (None, None) => Err(at.invalid(format!("field {field:?} is missing"))),
        (Some(other), _) => Err(at.invalid(format!("field {field:?} must be a string, found {other}"))),
    }
}

/// Splits a tab-separated line into exactly `expected` fields.
fn tab_fields<'a>(at: &Position, line: &'a str, expected: usize, layout: &str) -> Result<Vec<&'a str>> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != expected {
        return Err(at.invalid(format!(
            "expected {expected} tab-separated fields ({layout}), found {}",
            fields.len()
        )));
    }
    Ok(fields)
}

/// Registers the id of a corpus or queries file row, where any repeated id is an error.
fn register_unique(at: &Position, ids: &mut TextIds, kind: &str, id: &str, text: &str) -> Result<()> {
    match ids.register(id, text, at.line) {
        Registered::New => Ok(()),
        Registered::SameText | Registered::OtherText(_) => {
            let earlier = ids.first_line(id).unwrap_or_default();
            Err(at.invalid(duplicate_id_message(kind, id, earlier)))
        }
    }
}
