//! Output location of a training run, for its checkpoints and final model: a local folder or an
//! `s3://bucket/prefix`.
//!
//! A checkpoint is a folder `checkpoint-<step>` with the Hugging Face model files, the optimizer
//! state and `trainer_state.json`. Locally the model files are renamed into place once complete. Both
//! locally and on S3, `trainer_state.json` is written last, and a checkpoint counts only
//! when it is present.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rankdistill_store::{S3Settings, StoreLocation};
use tracing::debug;

use crate::error::{ModelError, Result};

/// The file that marks a checkpoint complete.
pub const STATE_FILE: &str = "trainer_state.json";

/// A run's output location.
pub struct OutputDir {
    location: StoreLocation,
    s3: S3Settings,
    /// Local folder where S3 checkpoints are assembled and downloaded.
    scratch: tempfile::TempDir,
}

impl OutputDir {
    pub fn open(uri: &str, s3: S3Settings) -> Result<Self> {
        let location = StoreLocation::parse(uri).map_err(|e| ModelError::InvalidArgument(e.to_string()))?;
        let scratch = tempfile::tempdir().map_err(|source| ModelError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        Ok(Self {
            location,
            s3,
            scratch,
        })
    }

    pub fn uri(&self) -> String {
        self.location.to_string()
    }

    /// Returns a local folder in which to assemble the folder `name` before [`OutputDir::publish`].
    pub fn staging(&self, name: &str) -> PathBuf {
        match &self.location {
            StoreLocation::Local(root) => root.join(name),
            StoreLocation::S3 { .. } => self.scratch.path().join(name),
        }
    }

    /// Makes the assembled folder `name` visible: nothing to do locally, where the files were
    /// written in place; uploaded on S3, with the state file last.
    pub async fn publish(&self, name: &str) -> Result<()> {
        let StoreLocation::S3 { bucket, prefix } = &self.location else {
            return Ok(());
        };
        let store = self.object_store(bucket)?;
        let local = self.scratch.path().join(name);
        let mut files = list_files(&local)?;
        files.sort_by_key(|path| path.file_name().is_some_and(|file| file == STATE_FILE));
        for file in files {
            let key = object_key(prefix, name, &file, &local);
            let bytes = std::fs::read(&file).map_err(|source| ModelError::Io {
                path: file.clone(),
                source,
            })?;
            debug!(%key, bytes = bytes.len(), "uploading");
            store
                .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                .await
                .map_err(|e| upload_error(&key, e))?;
        }
        Ok(())
    }

    /// Returns the step and local folder of the latest complete checkpoint, downloading it from
    /// S3 when needed.
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>> {
        match &self.location {
            StoreLocation::Local(root) => Ok(latest_local(root)),
            StoreLocation::S3 { bucket, prefix } => self.latest_s3(bucket, prefix).await,
        }
    }

    async fn latest_s3(&self, bucket: &str, prefix: &str) -> Result<Option<(u64, PathBuf)>> {
        let store = self.object_store(bucket)?;
        let root = ObjectPath::from(prefix);
        let objects: Vec<_> = store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(|e| upload_error(prefix, e))?;
        let step = objects
            .iter()
            .filter(|object| object.location.filename() == Some(STATE_FILE))
            .filter_map(|object| checkpoint_step(object.location.parts().nth_back(1)?.as_ref()))
            .max();
        let Some(step) = step else {
            return Ok(None);
        };

        let name = checkpoint_name(step);
        let local = self.scratch.path().join(format!("resume-{name}"));
        std::fs::create_dir_all(&local).map_err(|source| ModelError::Io {
            path: local.clone(),
            source,
        })?;
        let folder = format!("{}/", join_key(prefix, &name));
        for object in objects
            .iter()
            .filter(|o| o.location.as_ref().starts_with(&folder))
        {
            let file_name = object.location.filename().unwrap_or_default().to_string();
            let bytes = store
                .get(&object.location)
                .await
                .map_err(|e| upload_error(object.location.as_ref(), e))?
                .bytes()
                .await
                .map_err(|e| upload_error(object.location.as_ref(), e))?;
            let path = local.join(file_name);
            std::fs::write(&path, &bytes).map_err(|source| ModelError::Io { path, source })?;
        }
        Ok(Some((step, local)))
    }

    fn object_store(&self, bucket: &str) -> Result<std::sync::Arc<dyn ObjectStore>> {
        self.s3
            .object_store(bucket)
            .map_err(|e| ModelError::InvalidArgument(format!("cannot reach bucket {bucket}: {e}")))
    }
}

/// Returns the folder name of the checkpoint after `step` optimizer steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("checkpoint-{step}")
}

fn checkpoint_step(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?.parse().ok()
}

fn latest_local(root: &Path) -> Option<(u64, PathBuf)> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join(STATE_FILE).is_file())
        .filter_map(|entry| Some((checkpoint_step(entry.file_name().to_str()?)?, entry.path())))
        .max_by_key(|(step, _)| *step)
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect())
}

fn join_key(prefix: &str, name: &str) -> String {
    match prefix.is_empty() {
        true => name.to_string(),
        false => format!("{prefix}/{name}"),
    }
}

fn object_key(prefix: &str, name: &str, file: &Path, local: &Path) -> String {
    let relative = file.strip_prefix(local).unwrap_or(file).to_string_lossy();
    format!("{}/{relative}", join_key(prefix, name))
}

fn upload_error(key: &str, error: object_store::Error) -> ModelError {
    ModelError::InvalidArgument(format!("S3 request for {key} failed: {error}"))
}
