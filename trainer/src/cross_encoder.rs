//! A cross-encoder reranker: a BERT classifier over `[CLS] query [SEP] passage [SEP]`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use tokenizers::Tokenizer;
use tracing::{debug, info};

use crate::checkpoint::{
    copy_tokenizer_files, read_config, required_file, sha256_file, write_config, write_weights,
    CheckpointBackend, TOKENIZER_FILE, WEIGHTS_FILE,
};
use crate::error::{ModelError, Result};
use crate::models::bert::{BertConfig, BertForSequenceClassification};

/// The input layout, recorded as provenance of stored scores.
pub const INPUT_TEMPLATE: &str = "[CLS] query [SEP] passage [SEP]";

/// Options for [`CrossEncoder::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Keep only the first K encoder layers, to build a smaller student.
    pub layers: Option<usize>,
    /// Seed for parameters the checkpoint lacks, such as a new classification head.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            layers: None,
            seed: 42,
        }
    }
}

/// Token ids of a batch of (query, passage) pairs, padded to the longest pair.
pub struct PairBatch {
    pub input_ids: Tensor,
    pub token_type_ids: Tensor,
    pub attention_mask: Tensor,
    /// Tokens that are not padding.
    pub tokens: usize,
}

/// The token ids and token type ids of one pair, before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    pub ids: Vec<u32>,
    pub token_types: Vec<u32>,
}

impl EncodedPair {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A cross-encoder loaded from a Hugging Face model folder.
pub struct CrossEncoder {
    model: BertForSequenceClassification,
    config: BertConfig,
    tokenizer: Tokenizer,
    varmap: VarMap,
    device: Device,
    source: PathBuf,
    weights_sha256: String,
    special: SpecialTokens,
}

#[derive(Debug, Clone, Copy)]
struct SpecialTokens {
    cls: u32,
    sep: u32,
    pad: u32,
}

impl CrossEncoder {
    /// Loads a model folder (`config.json`, `model.safetensors`, `tokenizer.json`).
    ///
    /// Parameters missing from the checkpoint, such as the head of a plain encoder, are
    /// initialised from `options.seed` and listed in the log.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let mut config = read_config(dir)?;
        if let Some(layers) = options.layers {
            config.num_hidden_layers = checked_layers(layers, config.num_hidden_layers)?;
        }
        let tokenizer = load_tokenizer(dir)?;
        let special = special_tokens(&tokenizer, dir)?;
        let weights = required_file(dir, WEIGHTS_FILE)?;
        let weights_sha256 = sha256_file(&weights)?;

        let device = Device::Cpu;
        let varmap = VarMap::new();
        let backend = CheckpointBackend::open(&weights, options.seed, varmap.clone())?;
        let init_state = backend.init_state();
        let checkpoint_names = backend.tensor_names();
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
        let model = BertForSequenceClassification::load(vb, &config, 1)?;

        log_initialised(
            &weights,
            options.seed,
            &init_state.lock().expect("init state lock").initialised,
        );
        log_unused(&weights, &checkpoint_names, &varmap);
        Ok(Self {
            model,
            config,
            tokenizer,
            varmap,
            device,
            source: dir.to_path_buf(),
            weights_sha256,
            special,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Returns the trainable parameters.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    pub fn model(&self) -> &BertForSequenceClassification {
        &self.model
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Returns the folder the model was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Returns the SHA-256 of the loaded `model.safetensors`.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// Returns the number of tokens of `text` without special tokens.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encode_texts(&[text])?.remove(0).len())
    }

    /// Tokenizes pairs as `[CLS] query [SEP] passage [SEP]` and pads them into one batch.
    /// [`CrossEncoder::encode_pairs`] describes the truncation.
    pub fn tokenize(&self, pairs: &[(&str, &str)], max_len: usize) -> Result<PairBatch> {
        let encoded = self.encode_pairs(pairs, max_len)?;
        self.collate(&encoded)
    }

    /// Tokenizes pairs as `[CLS] query [SEP] passage [SEP]` with token type ids, truncating the
    /// passage so each pair has at most `max_len` tokens.
    ///
    /// A query longer than `max_len - 4` tokens is truncated too, keeping one passage token.
    pub fn encode_pairs(&self, pairs: &[(&str, &str)], max_len: usize) -> Result<Vec<EncodedPair>> {
        if max_len < 5 {
            return Err(ModelError::InvalidArgument(format!(
                "max length {max_len} is below 5 tokens"
            )));
        }
        let max_len = max_len.min(self.config.max_position_embeddings);
        let queries: Vec<&str> = pairs.iter().map(|(query, _)| *query).collect();
        let passages: Vec<&str> = pairs.iter().map(|(_, passage)| *passage).collect();
        let query_ids = self.encode_texts(&queries)?;
        let passage_ids = self.encode_texts(&passages)?;

        Ok(query_ids
            .iter()
            .zip(&passage_ids)
            .map(|(query, passage)| self.assemble_pair(query, passage, max_len))
            .collect())
    }

    /// Tokenizes single texts as `[CLS] text [SEP]`, truncated to `max_len` tokens, for encoder
    /// checks such as sentence embeddings.
    pub fn tokenize_texts(&self, texts: &[&str], max_len: usize) -> Result<PairBatch> {
        let rows = self
            .encode_texts(texts)?
            .into_iter()
            .map(|ids| {
                let ids = &ids[..ids.len().min(max_len.saturating_sub(2))];
                let mut row = vec![self.special.cls];
                row.extend_from_slice(ids);
                row.push(self.special.sep);
                let token_types = vec![0u32; row.len()];
                EncodedPair {
                    ids: row,
                    token_types,
                }
            })
            .collect::<Vec<_>>();
        self.collate(&rows)
    }

    fn encode_texts(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings =
            self.tokenizer
                .encode_batch(texts.to_vec(), false)
                .map_err(|e| ModelError::Tokenizer {
                    path: self.source.join(TOKENIZER_FILE),
                    message: format!("tokenization failed: {e}"),
                })?;
        Ok(encodings
            .into_iter()
            .map(|encoding| encoding.get_ids().to_vec())
            .collect())
    }

    /// Builds the ids and token type ids of one pair.
    fn assemble_pair(&self, query: &[u32], passage: &[u32], max_len: usize) -> EncodedPair {
        let query = &query[..query.len().min(max_len - 4)];
        let passage_room = max_len - query.len() - 3;
        let passage = &passage[..passage.len().min(passage_room)];

        let mut ids = Vec::with_capacity(query.len() + passage.len() + 3);
        ids.push(self.special.cls);
        ids.extend_from_slice(query);
        ids.push(self.special.sep);
        let first_segment = ids.len();
        ids.extend_from_slice(passage);
        ids.push(self.special.sep);

        let mut token_types = vec![0u32; first_segment];
        token_types.resize(ids.len(), 1);
        EncodedPair { ids, token_types }
    }

    /// Pads encoded pairs to the longest one and stacks them into tensors.
    pub fn collate(&self, rows: &[EncodedPair]) -> Result<PairBatch> {
        let batch = rows.len();
        let longest = rows.iter().map(EncodedPair::len).max().unwrap_or(0);
        let mut input_ids = vec![self.special.pad; batch * longest];
        let mut token_type_ids = vec![0u32; batch * longest];
        let mut attention_mask = vec![0u32; batch * longest];
        let mut tokens = 0;
        for (row, pair) in rows.iter().enumerate() {
            let (start, len) = (row * longest, pair.len());
            input_ids[start..start + len].copy_from_slice(&pair.ids);
            token_type_ids[start..start + len].copy_from_slice(&pair.token_types);
            attention_mask[start..start + len].fill(1);
            tokens += len;
        }

        let shape = (batch, longest);
        Ok(PairBatch {
            input_ids: Tensor::from_vec(input_ids, shape, &self.device)?,
            token_type_ids: Tensor::from_vec(token_type_ids, shape, &self.device)?,
            attention_mask: Tensor::from_vec(attention_mask, shape, &self.device)?,
            tokens,
        })
    }

    /// Returns one logit per pair, `[batch]`. Dropout is active when `train` is true.
    pub fn logits(&self, batch: &PairBatch, train: bool) -> Result<Tensor> {
        let logits = self.model.forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            train,
        )?;
        Ok(logits.squeeze(1)?)
    }

    /// Scores a tokenized batch in inference mode.
    pub fn score_batch(&self, batch: &PairBatch) -> Result<Vec<f32>> {
        Ok(self.logits(batch, false)?.to_vec1::<f32>()?)
    }

    /// Scores pairs in inference mode.
    pub fn score(&self, pairs: &[(&str, &str)], max_len: usize) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.tokenize(pairs, max_len)?;
        Ok(self.logits(&batch, false)?.to_vec1::<f32>()?)
    }

    /// Scores many pairs in inference mode, in batches of `batch_size` pairs of similar length so
    /// that little compute goes to padding. Scores come back in the order of `pairs`.
    pub fn score_by_length(
        &self,
        pairs: &[(&str, &str)],
        max_len: usize,
        batch_size: usize,
    ) -> Result<Vec<f32>> {
        if batch_size == 0 {
            return Err(ModelError::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        let encoded = self.encode_pairs(pairs, max_len)?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&index| encoded[index].len());

        let mut scores = vec![f32::NAN; encoded.len()];
        for batch_indices in order.chunks(batch_size) {
            let rows: Vec<EncodedPair> = batch_indices
                .iter()
                .map(|&index| encoded[index].clone())
                .collect();
            let logits = self.score_batch(&self.collate(&rows)?)?;
            for (&index, logit) in batch_indices.iter().zip(logits) {
                scores[index] = logit;
            }
        }
        Ok(scores)
    }

    /// Writes the model as a Hugging Face folder that transformers loads as
    /// `BertForSequenceClassification` with one label.
    ///
    /// The files are written to a temporary folder beside `dir` and moved into place, so `dir`
    /// contains either the previous model or the complete new one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let staging = sibling_path(dir, "partial");
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io_error(&staging))?;

        write_weights(&staging, &self.varmap)?;
        write_config(&staging, &self.config)?;
        copy_tokenizer_files(&self.source, &staging)?;

        replace_dir(&staging, dir)
    }
}

fn checked_layers(layers: usize, available: usize) -> Result<usize> {
    if layers == 0 || layers > available {
        return Err(ModelError::InvalidArgument(format!(
            "--layers {layers} is out of range: the checkpoint has {available} layers"
        )));
    }
    Ok(layers)
}

/// Loads `tokenizer.json` with its padding and truncation turned off, since batches are padded to
/// their longest pair and truncation is done per pair.
fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = required_file(dir, TOKENIZER_FILE)?;
    let tokenizer_error = |message: String| ModelError::Tokenizer {
        path: path.clone(),
        message,
    };
    let mut tokenizer =
        Tokenizer::from_file(&path).map_err(|e| tokenizer_error(format!("cannot load: {e}")))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| tokenizer_error(format!("cannot turn off truncation: {e}")))?;
    Ok(tokenizer)
}

fn special_tokens(tokenizer: &Tokenizer, dir: &Path) -> Result<SpecialTokens> {
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| ModelError::Tokenizer {
            path: dir.join(TOKENIZER_FILE),
            message: format!("the vocabulary has no {token} token, which a BERT cross-encoder needs"),
        })
    };
    Ok(SpecialTokens {
        cls: id("[CLS]")?,
        sep: id("[SEP]")?,
        pad: id("[PAD]")?,
    })
}

fn log_initialised(weights: &Path, seed: u64, names: &[String]) {
    if names.is_empty() {
        return;
    }
    info!(
        "{} parameters are not in {}, so they were initialised with seed {seed}: {}",
        names.len(),
        weights.display(),
        names.join(", ")
    );
}

fn log_unused(weights: &Path, checkpoint_names: &[String], varmap: &VarMap) {
    let used: HashSet<String> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .keys()
        .cloned()
        .collect();
    let unused: Vec<&String> = checkpoint_names
        .iter()
        .filter(|name| !used.contains(*name))
        .collect();
    if !unused.is_empty() {
        debug!(
            "{} tensors of {} are not used, for example {}",
            unused.len(),
            weights.display(),
            unused[0]
        );
    }
}

fn sibling_path(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    dir.with_file_name(format!(".{name}.{suffix}-{}", std::process::id()))
}

/// Moves `staging` to `dir`, replacing an existing `dir`.
fn replace_dir(staging: &Path, dir: &Path) -> Result<()> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    if !dir.exists() {
        return std::fs::rename(staging, dir).map_err(io_error(dir));
    }
    // NOTE: two renames, so a crash between them leaves the previous model at the `.old` path.
    let old = sibling_path(dir, "old");
    std::fs::rename(dir, &old).map_err(io_error(dir))?;
    std::fs::rename(staging, dir).map_err(io_error(dir))?;
    std::fs::remove_dir_all(&old).map_err(io_error(&old))
}
