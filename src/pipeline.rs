//! The pipeline configuration: one TOML file describes a whole experiment.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One experiment: a collection, BM25 candidates, a teacher and its students.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Store root for every table of the experiment.
    pub store: String,
    /// Folder for models, the results table and charts.
    pub report: PathBuf,
    /// Model to start every model from; RANKDISTILL_MINILM or `make model`'s folder when absent.
    pub model: Option<PathBuf>,
    pub collection: CollectionConfig,
    pub retrieval: RetrievalConfig,
    pub training: TrainingConfig,
    pub teacher: LayersConfig,
    pub student: LayersConfig,
    pub rerank: RerankConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// BEIR folder: absolute, or relative to the data folder.
    pub beir: PathBuf,
    pub train_split: String,
    pub test_split: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalConfig {
    /// BM25 candidates per training query, the negative pool.
    pub train_k: usize,
    /// BM25 candidates per test query.
    pub test_k: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    pub max_len: usize,
    pub group_size: usize,
    pub queries_per_step: usize,
    pub steps: usize,
    pub lr: f64,
    pub temperature: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayersConfig {
    pub layers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankConfig {
    pub top_k: usize,
    pub max_len: usize,
}

impl PipelineConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid pipeline config {}", path.display()))
    }

    /// Returns the BEIR folder, resolving a relative path against the data folder.
    pub fn beir_folder(&self) -> PathBuf {
        if self.collection.beir.is_absolute() {
            return self.collection.beir.clone();
        }
        data_dir().join(&self.collection.beir)
    }

    /// Returns the starting model folder.
    pub fn model_dir(&self) -> PathBuf {
        if let Some(model) = &self.model {
            return model.clone();
        }
        if let Some(model) = std::env::var_os("RANKDISTILL_MINILM") {
            return PathBuf::from(model);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/rankdistill/all-MiniLM-L6-v2")
    }
}

/// Returns RANKDISTILL_DATA, or `../shared/data` as `scripts/data-dir.sh` resolves it.
fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RANKDISTILL_DATA") {
        return PathBuf::from(dir);
    }
    ["../shared/data", "shared/data"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}
