//! The pipeline configuration: one TOML file describes a whole experiment.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One experiment: a training collection, BM25 candidates, a teacher and its students, and the
/// collections the models are evaluated on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Store root for every table of the experiment on the training collection. Each evaluation
    /// collection gets its own store beside it, `<store>-<name>`.
    pub store: String,
    /// Folder for models, the results table and charts.
    pub report: PathBuf,
    /// Model to start every model from; RANKDISTILL_MINILM or `make model`'s folder when absent.
    pub model: Option<PathBuf>,
    pub collection: CollectionConfig,
    /// Other collections the trained models are evaluated on (out of domain).
    #[serde(default)]
    pub evaluation: Vec<CollectionConfig>,
    pub retrieval: RetrievalConfig,
    pub training: TrainingConfig,
    pub teacher: LayersConfig,
    pub student: LayersConfig,
    pub rerank: RerankConfig,
}

/// A collection in one of the two layouts the data folder uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Short name, used in the report and in the names of evaluation stores.
    pub name: String,
    /// BEIR folder (corpus.jsonl, queries.jsonl, qrels/): BM25 candidates are retrieved from
    /// its passages. Absolute, or relative to the data folder.
    pub beir: Option<PathBuf>,
    /// MS MARCO style folder (collection.tsv, queries.tsv, qrels.txt, runs/): its shipped
    /// runs/bm25.trec gives the BM25 candidates, because its collection file holds only the
    /// passages of the shipped runs.
    pub msmarco: Option<PathBuf>,
    /// Qrels split that gives training groups; only the training collection has one.
    pub train_split: Option<String>,
    /// Qrels split whose queries are reranked and evaluated; none means the collection is only
    /// trained on.
    pub test_split: Option<String>,
    /// Lowest relevance grade of a positive, and of a relevant passage for RR@10.
    #[serde(default = "default_relevant_grade")]
    pub relevant_grade: i32,
}

fn default_relevant_grade() -> i32 {
    1
}

/// The folder of a collection, by layout: the layout decides how its first stage is found.
pub enum CollectionFolder {
    Beir(PathBuf),
    Msmarco(PathBuf),
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
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let config: Self =
            toml::from_str(&text).with_context(|| format!("invalid pipeline config {}", path.display()))?;
        config
            .check()
            .with_context(|| format!("invalid pipeline config {}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        let training = &self.collection;
        training.folder()?;
        let Some(train_split) = &training.train_split else {
            bail!("[collection] {} is missing train_split, the qrels split to train on (such as train_split = \"train\")", training.name);
        };
        if training.msmarco.is_some() && training.test_split.is_some() {
            bail!(
                "[collection] {}: an MS MARCO folder has one qrels file, so it cannot give both \
                 train_split {train_split:?} and a test_split; evaluate on another collection instead",
                training.name
            );
        }
        for collection in &self.evaluation {
            collection.folder()?;
            if collection.test_split.is_none() || collection.train_split.is_some() {
                bail!(
                    "[[evaluation]] {} needs a test_split and no train_split",
                    collection.name
                );
            }
            if collection.name == training.name {
                bail!(
                    "[[evaluation]] {} has the training collection's name",
                    collection.name
                );
            }
        }
        Ok(())
    }

    /// Returns the training collection's qrels split, which `load` checks is set.
    pub fn train_split(&self) -> &str {
        self.collection.train_split.as_deref().unwrap_or("train")
    }

    /// Returns the store URI of an evaluation collection.
    pub fn evaluation_store(&self, collection: &CollectionConfig) -> String {
        format!("{}-{}", self.store.trim_end_matches('/'), collection.name)
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

impl CollectionConfig {
    /// Returns the collection's folder, resolving a relative path against the data folder.
    pub fn folder(&self) -> Result<CollectionFolder> {
        let resolve = |path: &PathBuf| match path.is_absolute() {
            true => path.clone(),
            false => data_dir().join(path),
        };
        match (&self.beir, &self.msmarco) {
            (Some(beir), None) => Ok(CollectionFolder::Beir(resolve(beir))),
            (None, Some(msmarco)) => Ok(CollectionFolder::Msmarco(resolve(msmarco))),
            _ => bail!(
                "collection {} needs exactly one of beir = ... or msmarco = ...",
                self.name
            ),
        }
    }

    /// Returns the candidates source that gives the training negatives.
    pub fn train_source(&self) -> &'static str {
        match self.msmarco {
            Some(_) => "bm25",
            None => "bm25-train",
        }
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
