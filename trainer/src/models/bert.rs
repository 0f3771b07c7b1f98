//! BERT with a sequence-classification head, as transformers' `BertForSequenceClassification`.
//!
//! Module and tensor names follow transformers (`bert.encoder.layer.0.attention.self.query`,
//! `bert.pooler.dense`, `classifier`), so checkpoints load in both directions. Supported: the
//! `bert` model type with absolute position embeddings, post-layer-norm blocks, and the `gelu`,
//! `gelu_new`/`gelu_pytorch_tanh` and `relu` activations. Dropout is applied only when `train` is
//! true.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::dropout::{Dropout, DropoutRng};
use super::{fused, grad_ops};

/// The fields of a transformers BERT `config.json` that the model uses. Other fields are kept in
/// `extra` so a saved config keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// Dropout before the classifier; `hidden_dropout_prob` when absent, as in transformers.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_initializer_range() -> f64 {
    0.02
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

/// Activation of the feed-forward block, named as in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// The exact, erf-based GELU.
    Gelu,
    /// The tanh approximation of GELU.
    GeluNew,
    #[serde(rename = "gelu_pytorch_tanh")]
    GeluPytorchTanh,
    Relu,
}

impl HiddenAct {
    pub fn forward(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            HiddenAct::Gelu => super::gelu::gelu_erf(xs),
            HiddenAct::GeluNew | HiddenAct::GeluPytorchTanh => xs.gelu(),
            HiddenAct::Relu => xs.relu(),
        }
    }
}

impl BertConfig {
    /// Returns the dropout probability before the classifier.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

/// Builds a linear layer initialised as transformers does: normal weights, zero bias.
fn linear(in_dim: usize, out_dim: usize, config: &BertConfig, vb: VarBuilder) -> Result<Linear> {
    let init = Init::Randn {
        mean: 0.0,
        stdev: config.initializer_range,
    };
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

fn embedding(count: usize, size: usize, config: &BertConfig, vb: VarBuilder) -> Result<Embedding> {
    let init = Init::Randn {
        mean: 0.0,
        stdev: config.initializer_range,
    };
    let weights = vb.get_with_hints((count, size), "weight", init)?;
    Ok(Embedding::new(weights, size))
}

/// Layer normalisation over the last dimension, differentiable in training.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if xs.dtype() == DType::F32 {
            return if train {
                grad_ops::layer_norm(xs, &self.weight, &self.bias, self.eps as f32)
            } else {
                candle_nn::ops::layer_norm(&xs.contiguous()?, &self.weight, &self.bias, self.eps as f32)
            };
        }
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centered = xs.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: Dropout,
}

impl BertEmbeddings {
    fn load(vb: VarBuilder, config: &BertConfig, rng: &DropoutRng) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            word_embeddings: embedding(config.vocab_size, hidden, config, vb.pp("word_embeddings"))?,
            position_embeddings: embedding(
                config.max_position_embeddings,
                hidden,
                config,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings: embedding(
                config.type_vocab_size,
                hidden,
                config,
                vb.pp("token_type_embeddings"),
            )?,
            layer_norm: LayerNorm::load(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: Dropout::new(config.hidden_dropout_prob as f32, rng.clone()),
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, train: bool) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;

        let words = self.word_embeddings.forward(input_ids)?;
        let types = self.token_type_embeddings.forward(token_type_ids)?;
        let positions = self.position_embeddings.forward(&positions)?;
        let embeddings = (words + types)?.broadcast_add(&positions)?;

        let embeddings = self.layer_norm.forward(&embeddings, train)?;
        self.dropout.forward(&embeddings, train)
    }
}

struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dropout: Dropout,
    num_heads: usize,
    head_size: usize,
}

impl BertSelfAttention {
    fn load(vb: VarBuilder, config: &BertConfig, rng: &DropoutRng) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            query: linear(hidden, hidden, config, vb.pp("query"))?,
            key: linear(hidden, hidden, config, vb.pp("key"))?,
            value: linear(hidden, hidden, config, vb.pp("value"))?,
            dropout: Dropout::new(config.attention_probs_dropout_prob as f32, rng.clone()),
            num_heads: config.num_attention_heads,
            head_size: hidden / config.num_attention_heads,
        })
    }

    /// Returns the query, key and value weights stacked as `[3 · hidden, hidden]`, and their biases.
    fn stacked_parameters(&self) -> Result<(Tensor, Tensor)> {
        let weight = Tensor::cat(&[self.query.weight(), self.key.weight(), self.value.weight()], 0)?;
        let bias = Tensor::cat(
            &[bias_of(&self.query)?, bias_of(&self.key)?, bias_of(&self.value)?],
            0,
        )?;
        Ok((weight, bias))
    }

    /// Projects `hidden` to queries, keys and values, each `[batch, heads, seq, head_size]`, with
    /// one matrix product over the three stacked weight matrices.
    fn project(&self, hidden: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (batch, seq_len, _) = hidden.dims3()?;
        let (weight, bias) = self.stacked_parameters()?;
        let stacked = fused::linear(hidden, &weight, &bias, false)?;

        let heads = stacked
            .reshape((batch, seq_len, 3, self.num_heads, self.head_size))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        Ok((heads.get(0)?, heads.get(1)?, heads.get(2)?))
    }

    fn forward(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        if let Some(lengths) = &mask.lengths {
            return self.forward_fused(hidden, lengths.clone(), train);
        }
        let (query, key, value) = self.project(hidden)?;
        let query = (query * (1.0 / (self.head_size as f64).sqrt()))?;

        let mut scores = query.matmul(&key.t()?)?;
        if let Some(mask_bias) = &mask.bias {
            scores = scores.broadcast_add(mask_bias)?;
        }
        let probs = if train {
            grad_ops::softmax_last_dim(&scores)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let probs = self.dropout.forward(&probs, train)?;

        let context = probs.matmul(&value)?.transpose(1, 2)?.contiguous()?;
        let (batch, seq_len, _, _) = context.dims4()?;
        context.reshape((batch, seq_len, self.num_heads * self.head_size))
    }

    /// Runs attention with the fused kernels for right-padded sequences.
    fn forward_fused(&self, hidden: &Tensor, lengths: Vec<usize>, train: bool) -> Result<Tensor> {
        let (weight, bias) = self.stacked_parameters()?;
        let stacked = fused::linear(hidden, &weight, &bias, false)?;

        let scale = 1.0 / (self.head_size as f32).sqrt();
        if !train {
            return fused::padded_attention(&stacked, lengths, self.num_heads, scale);
        }
        let dropout = self.dropout.draw_seed().map(|seed| fused::AttentionDropout {
            p: self.dropout.probability(),
            seed,
        });
        fused::padded_attention_train(&stacked, lengths, self.num_heads, scale, dropout)
    }
}

fn bias_of(linear: &Linear) -> Result<Tensor> {
    linear
        .bias()
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("BERT attention projections have a bias".into()))
}

/// The dense projection, dropout and residual layer norm that follow attention and feed-forward.
struct BertResidualOutput {
    dense: Linear,
    layer_norm: LayerNorm,
    dropout: Dropout,
}

impl BertResidualOutput {
    fn load(in_dim: usize, vb: VarBuilder, config: &BertConfig, rng: &DropoutRng) -> Result<Self> {
        Ok(Self {
            dense: linear(in_dim, config.hidden_size, config, vb.pp("dense"))?,
            layer_norm: LayerNorm::load(config.hidden_size, config.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: Dropout::new(config.hidden_dropout_prob as f32, rng.clone()),
        })
    }

    fn forward(&self, xs: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        let projected = fused::linear(xs, self.dense.weight(), &bias_of(&self.dense)?, false)?;
        let projected = self.dropout.forward(&projected, train)?;
        self.layer_norm.forward(&(projected + residual)?, train)
    }
}

struct BertLayer {
    attention: BertSelfAttention,
    attention_output: BertResidualOutput,
    intermediate: Linear,
    activation: HiddenAct,
    output: BertResidualOutput,
}

impl BertLayer {
    fn load(vb: VarBuilder, config: &BertConfig, rng: &DropoutRng) -> Result<Self> {
        let attention = vb.pp("attention");
        Ok(Self {
            attention: BertSelfAttention::load(attention.pp("self"), config, rng)?,
            attention_output: BertResidualOutput::load(
                config.hidden_size,
                attention.pp("output"),
                config,
                rng,
            )?,
            intermediate: linear(
                config.hidden_size,
                config.intermediate_size,
                config,
                vb.pp("intermediate").pp("dense"),
            )?,
            activation: config.hidden_act,
            output: BertResidualOutput::load(config.intermediate_size, vb.pp("output"), config, rng)?,
        })
    }

    fn forward(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let attended = self.attention.forward(hidden, mask, train)?;
        let hidden = self.attention_output.forward(&attended, hidden, train)?;

        let (weight, bias) = (self.intermediate.weight(), bias_of(&self.intermediate)?);
        let intermediate = if !train && self.activation == HiddenAct::Gelu {
            fused::linear(&hidden, weight, &bias, true)?
        } else {
            self.activation.forward(&fused::linear(&hidden, weight, &bias, false)?)?
        };
        self.output.forward(&intermediate, &hidden, train)
    }
}

/// The BERT encoder: embeddings, transformer layers and the `[CLS]` pooler.
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Linear,
    dropout_rng: DropoutRng,
}

impl BertModel {
    pub fn load(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        let rng = DropoutRng::new(0);
        let encoder = vb.pp("encoder").pp("layer");
        let layers = (0..config.num_hidden_layers)
            .map(|index| BertLayer::load(encoder.pp(index.to_string()), config, &rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: BertEmbeddings::load(vb.pp("embeddings"), config, &rng)?,
            layers,
            pooler: linear(
                config.hidden_size,
                config.hidden_size,
                config,
                vb.pp("pooler").pp("dense"),
            )?,
            dropout_rng: rng,
        })
    }

    /// Returns the generator of every dropout mask in the model.
    pub fn dropout_rng(&self) -> &DropoutRng {
        &self.dropout_rng
    }

    /// Returns the last hidden states, `[batch, seq, hidden]`. `attention_mask` is 1 for tokens
    /// and 0 for padding.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let mask = AttentionMask::new(attention_mask)?;
        let mut hidden = self.embeddings.forward(input_ids, token_type_ids, train)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &mask, train)?;
        }
        Ok(hidden)
    }

    /// Returns the pooler output: `tanh(dense(hidden[:, 0]))`.
    pub fn pool(&self, hidden: &Tensor) -> Result<Tensor> {
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        self.pooler.forward(&cls)?.tanh()
    }
}

/// The attention mask in the forms the attention implementations use.
struct AttentionMask {
    /// Additive `[batch, 1, 1, seq]` bias: 0 for tokens, the lowest f32 for padding, as
    /// transformers does. `None` when nothing is padding or when `lengths` is used.
    bias: Option<Tensor>,
    /// Real tokens per sequence, for the fused attention kernels; `None` when the padding is not
    /// all on the right.
    // NOTE: batches padded elsewhere (none of this project's tokenizers do so) train through
    // candle's composed attention, which is slower and keeps the [batch, heads, seq, seq] tensors.
    lengths: Option<Vec<usize>>,
}

impl AttentionMask {
    fn new(attention_mask: &Tensor) -> Result<Self> {
        let lengths = fused::right_padded_lengths(attention_mask)?;
        if lengths.is_some() {
            return Ok(Self { bias: None, lengths });
        }

        let (batch, seq_len) = attention_mask.dims2()?;
        let mask = attention_mask.to_dtype(DType::F32)?;
        if mask.min_all()?.to_scalar::<f32>()? > 0.0 {
            return Ok(Self {
                bias: None,
                lengths: None,
            });
        }
        let bias = ((mask - 1.0)? * (-(f32::MIN as f64)))?;
        Ok(Self {
            bias: Some(bias.reshape((batch, 1, 1, seq_len))?),
            lengths: None,
        })
    }
}

/// BERT with a pooler, dropout and a linear classifier over `num_labels` outputs.
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    dropout: Dropout,
    classifier: Linear,
}

impl BertForSequenceClassification {
    pub fn load(vb: VarBuilder, config: &BertConfig, num_labels: usize) -> Result<Self> {
        let bert = BertModel::load(vb.pp("bert"), config)?;
        let dropout = Dropout::new(
            config.classifier_dropout_prob() as f32,
            bert.dropout_rng().clone(),
        );
        Ok(Self {
            bert,
            dropout,
            classifier: linear(config.hidden_size, num_labels, config, vb.pp("classifier"))?,
        })
    }

    /// Restarts the dropout masks from `seed`; the trainer calls this at every step so that the
    /// masks depend only on the seed and the step.
    pub fn reseed_dropout(&self, seed: u64) {
        self.bert.dropout_rng().reseed(seed);
    }

    /// Returns the logits, `[batch, num_labels]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let hidden = self
            .bert
            .forward(input_ids, token_type_ids, attention_mask, train)?;
        let pooled = self.dropout.forward(&self.bert.pool(&hidden)?, train)?;
        self.classifier.forward(&pooled)
    }
}

/// Returns the mean of the hidden states over real tokens, `[batch, hidden]`, as
/// sentence-transformers' mean pooling does.
pub fn mean_pool(hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// Device on which models run: CPU, since CI and the development machines have no GPU.
pub fn default_device() -> Device {
    Device::Cpu
}
