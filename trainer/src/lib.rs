//! Cross-encoder rerankers in candle: the BERT model file, checkpoint reading and writing, pair
//! tokenization, and the building blocks of training:
//!
//! - [`loss`]: contrastive, distillation, Margin-MSE and ListNet losses over groups of passages.
//! - [`optim`]: AdamW with saved and restored state, gradient accumulation and clipping.
//! - [`schedule`]: the linear warmup and decay learning-rate schedule.
//! - [`loader`]: the streaming loader of training groups from the store, local or S3.
//! - [`train`]: the training loop, its checkpoints and its `train_log` rows.

pub mod checkpoint;
mod cross_encoder;
mod error;
pub mod loader;
pub mod loss;
pub mod models;
pub mod optim;
mod optim_kernels;
pub mod output;
pub mod schedule;
pub mod train;

pub use cross_encoder::{CrossEncoder, EncodedPair, LoadOptions, PairBatch, INPUT_TEMPLATE};
pub use error::{ModelError, Result};
pub use loss::{LossKind, Objective};
pub use optim::{clip_grad_norm, AdamW, AdamWParams, GradAccumulator};
pub use schedule::LinearSchedule;
