//! Source files on a local disk or in S3, read line by line, gzip or plain.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use rankdistill_store::S3Settings;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use crate::error::{IngestError, Result};

/// A source file or folder: a local path or an `s3://bucket/key` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

impl InputPath {
    pub fn parse(uri: &str) -> Result<Self> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(IngestError::InvalidArgument(format!(
                    "invalid S3 URI {uri:?}: the bucket name is missing"
                )));
            }
            let key = key.trim_end_matches('/').to_string();
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                key,
            });
        }
        Ok(Self::Local(PathBuf::from(uri)))
    }

    /// Returns the path of `name` inside this folder.
    pub fn join(&self, name: &str) -> Self {
        match self {
            Self::Local(path) => Self::Local(path.join(name)),
            Self::S3 { bucket, key } if key.is_empty() => Self::S3 {
                bucket: bucket.clone(),
                key: name.to_string(),
            },
            Self::S3 { bucket, key } => Self::S3 {
                bucket: bucket.clone(),
                key: format!("{key}/{name}"),
            },
        }
    }

    /// Returns the last path component, such as `bm25.trec`.
    pub fn file_name(&self) -> String {
        match self {
            Self::Local(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Self::S3 { key, .. } => key.rsplit('/').next().unwrap_or_default().to_string(),
        }
    }

    /// Returns the file name without `.gz` and without its last extension: `bm25.trec.gz` gives `bm25`.
    pub fn stem(&self) -> String {
        let name = self.file_name();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => name.to_string(),
        }
    }

    /// Reports whether a file exists at this path.
    pub async fn exists(&self, s3: &S3Settings) -> Result<bool> {
        match self {
            Self::Local(path) => Ok(path.is_file()),
            Self::S3 { bucket, key } => {
                let store = s3.object_store(bucket).map_err(|e| self.fetch_error(e))?;
                match store.head(&ObjectPath::from(key.as_str())).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(error) => Err(self.fetch_error(error)),
                }
            }
        }
    }

    /// Lists the files directly inside this folder, sorted by name.
    pub async fn list_files(&self, s3: &S3Settings) -> Result<Vec<InputPath>> {
        let mut files = match self {
            Self::Local(path) => list_local(path)?,
            Self::S3 { bucket, key } => {
                let store = s3.object_store(bucket).map_err(|e| self.fetch_error(e))?;
                let prefix = ObjectPath::from(key.as_str());
                let listing = store
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| self.fetch_error(e))?;
                listing
                    .objects
                    .into_iter()
                    .map(|object| Self::S3 {
                        bucket: bucket.clone(),
                        key: object.location.to_string(),
                    })
                    .collect()
            }
        };
        files.sort_by_key(|file| file.to_string());
        Ok(files)
    }

    /// Makes the file readable from local disk: a local path is used as it is, an S3 object is
    /// streamed into a temporary file that lives as long as the returned value.
    pub async fn fetch(&self, s3: &S3Settings) -> Result<LocalInput> {
        match self {
            Self::Local(path) if path.is_file() => Ok(LocalInput {
                display: path.display().to_string(),
                path: path.clone(),
                _temp: None,
            }),
            Self::Local(path) => Err(IngestError::NotFound {
                file: path.display().to_string(),
            }),
            Self::S3 { bucket, key } => self.download(s3, bucket, key).await,
        }
    }

    async fn download(&self, s3: &S3Settings, bucket: &str, key: &str) -> Result<LocalInput> {
        let store = s3.object_store(bucket).map_err(|e| self.fetch_error(e))?;
        let object = match store.get(&ObjectPath::from(key)).await {
            Ok(object) => object,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(IngestError::NotFound {
                    file: self.to_string(),
                })
            }
            Err(error) => return Err(self.fetch_error(error)),
        };

        let temp = NamedTempFile::new().map_err(|e| self.fetch_error(e))?;
        let mut file = tokio::fs::File::create(temp.path())
            .await
            .map_err(|e| self.fetch_error(e))?;
        let mut chunks = object.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.fetch_error(e))?;
            file.write_all(&chunk).await.map_err(|e| self.fetch_error(e))?;
        }
        file.flush().await.map_err(|e| self.fetch_error(e))?;

        Ok(LocalInput {
            display: self.to_string(),
            path: temp.path().to_path_buf(),
            _temp: Some(temp),
        })
    }

    fn fetch_error(&self, error: impl fmt::Display) -> IngestError {
        IngestError::Fetch {
            uri: self.to_string(),
            message: error.to_string(),
        }
    }
}

fn list_local(path: &Path) -> Result<Vec<InputPath>> {
    let entries = std::fs::read_dir(path).map_err(|_| IngestError::NotFound {
        file: path.display().to_string(),
    })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        if entry.path().is_file() {
            files.push(InputPath::Local(entry.path()));
        }
    }
    Ok(files)
}

impl fmt::Display for InputPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// A source file on local disk, with the name used in error messages.
pub struct LocalInput {
    display: String,
    path: PathBuf,
    _temp: Option<NamedTempFile>,
}

impl LocalInput {
    /// Opens the file for reading lines; gzip input, recognised by its magic bytes, is decompressed.
    pub fn lines(&self) -> Result<LineReader> {
        let open_error = |e: std::io::Error| IngestError::Read {
            file: self.display.clone(),
            line: 0,
            message: e.to_string(),
        };
        let mut file = BufReader::new(File::open(&self.path).map_err(open_error)?);
        let is_gzip = file.fill_buf().map_err(open_error)?.starts_with(&[0x1f, 0x8b]);

        let reader: Box<dyn BufRead + Send> = if is_gzip {
            Box::new(BufReader::with_capacity(
                1 << 16,
                flate2::bufread::MultiGzDecoder::new(file),
            ))
        } else {
            Box::new(file)
        };
        Ok(LineReader {
            file: self.display.as_str().into(),
            reader,
            is_gzip,
            line_number: 0,
            buffer: Vec::new(),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }
}

/// A line of a source file, for error messages.
#[derive(Debug, Clone)]
pub struct Position {
    file: Arc<str>,
    /// 1-based line number.
    pub line: usize,
}

impl Position {
    /// Builds an error about this line.
    pub fn invalid(&self, message: impl Into<String>) -> IngestError {
        IngestError::Invalid {
            file: self.file.to_string(),
            line: self.line,
            message: message.into(),
        }
    }
}

/// Reads a text file line by line, checking UTF-8 and naming the file and line in every error.
pub struct LineReader {
    file: Arc<str>,
    reader: Box<dyn BufRead + Send>,
    is_gzip: bool,
    line_number: usize,
    buffer: Vec<u8>,
}

impl LineReader {
    /// Returns the next line without its line ending, with its position.
    pub fn next_line(&mut self) -> Result<Option<(Position, &str)>> {
        self.buffer.clear();
        let read = self.reader.read_until(b'\n', &mut self.buffer);
        let bytes = read.map_err(|e| self.read_error(e))?;
        if bytes == 0 {
            return Ok(None);
        }
        self.line_number += 1;

        while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
            self.buffer.pop();
        }
        let position = Position {
            file: self.file.clone(),
            line: self.line_number,
        };
        match std::str::from_utf8(&self.buffer) {
            Ok(line) => Ok(Some((position, line))),
            Err(error) => Err(IngestError::InvalidUtf8 {
                file: self.file.to_string(),
                line: self.line_number,
                byte: error.valid_up_to() + 1,
            }),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    fn read_error(&self, error: std::io::Error) -> IngestError {
        let message = if self.is_gzip
            && matches!(
                error.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::InvalidInput | ErrorKind::InvalidData
            ) {
            format!("the gzip stream is truncated or corrupt ({error}); download the file again")
        } else {
            error.to_string()
        };
        IngestError::Read {
            file: self.file.to_string(),
            line: self.line_number,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn local(path: &Path) -> LocalInput {
        LocalInput {
            display: path.display().to_string(),
            path: path.to_path_buf(),
            _temp: None,
        }
    }

    #[test]
    fn reads_plain_and_gzip_lines() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.tsv");
        std::fs::write(&plain, "one\r\ntwo\n\nthree").unwrap();
        let gz = dir.path().join("a.tsv.gz");
        let mut encoder = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        encoder.write_all(b"one\r\ntwo\n\nthree").unwrap();
        encoder.finish().unwrap();

        for path in [plain, gz] {
            let input = local(&path);
            let mut lines = input.lines().unwrap();
            let mut seen = Vec::new();
            while let Some((at, line)) = lines.next_line().unwrap() {
                seen.push((at.line, line.to_string()));
            }
            assert_eq!(
                seen,
                vec![
                    (1, "one".into()),
                    (2, "two".into()),
                    (3, "".into()),
                    (4, "three".into())
                ]
            );
        }
    }

    #[test]
    fn names_line_of_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tsv");
        std::fs::write(&path, b"ok\nab\xffcd\n").unwrap();
        let input = local(&path);
        let mut lines = input.lines().unwrap();
        lines.next_line().unwrap();
        let error = lines.next_line().unwrap_err().to_string();
        assert!(
            error.ends_with("bad.tsv:2: invalid UTF-8 at byte 3 of the line"),
            "{error}"
        );
    }

    #[test]
    fn reports_truncated_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.jsonl.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        for i in 0..2000 {
            writeln!(encoder, "line {i} with some text to compress").unwrap();
        }
        let bytes = encoder.finish().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

        let input = local(&path);
        let mut lines = input.lines().unwrap();
        let error = loop {
            match lines.next_line() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a truncated file was read to the end without an error"),
                Err(error) => break error.to_string(),
            }
        };
        assert!(error.contains("cut.jsonl.gz"), "{error}");
        assert!(error.contains("truncated or corrupt"), "{error}");
    }

    #[test]
    fn stems_and_joins() {
        let path = InputPath::parse("s3://bucket/runs/").unwrap();
        assert_eq!(
            path.join("bm25.trec.gz").to_string(),
            "s3://bucket/runs/bm25.trec.gz"
        );
        assert_eq!(path.join("bm25.trec.gz").stem(), "bm25");
        assert_eq!(InputPath::parse("a/b/qrels.txt").unwrap().stem(), "qrels");
    }
}
