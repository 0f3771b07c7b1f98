//! Reading TREC run and qrels files for evaluation without a store.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::metrics::{Qrels, Run};

/// Errors from reading a TREC file, with the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TrecFileError {
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("reading {file} failed: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

fn for_each_line(
    path: &Path,
    mut visit: impl FnMut(usize, &[&str]) -> Result<(), String>,
) -> Result<(), TrecFileError> {
    let file = path.display().to_string();
    let io_error = |source| TrecFileError::Io {
        file: file.clone(),
        source,
    };
    let reader = BufReader::new(std::fs::File::open(path).map_err(io_error)?);
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(io_error)?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        visit(index + 1, &fields).map_err(|message| TrecFileError::Invalid {
            file: file.clone(),
            line: index + 1,
            message,
        })?;
    }
    Ok(())
}

/// Reads a run: `qid Q0 docid rank score tag` lines.
pub fn read_run(path: &Path) -> Result<Run, TrecFileError> {
    let mut run = Run::new();
    for_each_line(path, |_, fields| {
        let [query_id, _, doc_id, _, score, _] = fields else {
            return Err(format!(
                "expected 6 fields (query id, Q0, passage id, rank, score, tag), found {}",
                fields.len()
            ));
        };
        let score: f64 = score
            .parse()
            .map_err(|_| format!("score {score:?} is not a number"))?;
        run.entry(query_id.to_string())
            .or_default()
            .push((doc_id.to_string(), score));
        Ok(())
    })?;
    Ok(run)
}

/// Reads qrels: `qid iteration docid grade` lines.
pub fn read_qrels(path: &Path) -> Result<Qrels, TrecFileError> {
    let mut qrels = Qrels::new();
    for_each_line(path, |_, fields| {
        let [query_id, _, doc_id, grade] = fields else {
            return Err(format!(
                "expected 4 fields (query id, iteration, passage id, relevance), found {}",
                fields.len()
            ));
        };
        let grade: i32 = grade
            .parse()
            .map_err(|_| format!("relevance {grade:?} is not an integer"))?;
        qrels
            .entry(query_id.to_string())
            .or_default()
            .insert(doc_id.to_string(), grade);
        Ok(())
    })?;
    Ok(qrels)
}

/// Writes ranked lists as a TREC run (`qid Q0 docid rank score tag`), through a temporary file
/// beside `path` that is renamed into place once complete.
pub fn write_run<'a>(
    path: &Path,
    tag: &str,
    ranked: impl IntoIterator<Item = (&'a String, &'a Vec<(String, f64)>)>,
) -> Result<(), TrecFileError> {
    let file = path.display().to_string();
    let io_error = |source| TrecFileError::Io {
        file: file.clone(),
        source,
    };
    let partial = path.with_extension("partial");
    let mut writer = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(io_error)?);
    for (query_id, list) in ranked {
        for (index, (doc_id, score)) in list.iter().enumerate() {
            writeln!(writer, "{query_id} Q0 {doc_id} {} {score} {tag}", index + 1).map_err(io_error)?;
        }
    }
    writer.flush().map_err(io_error)?;
    drop(writer);
    std::fs::rename(&partial, path).map_err(io_error)
}
