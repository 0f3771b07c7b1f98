//! Cross-encoder rerankers in candle: the BERT model file, checkpoint reading and writing, and
//! pair tokenization. Training (losses, streaming loader, loop) comes next.

pub mod checkpoint;
mod cross_encoder;
mod error;
pub mod models;

pub use cross_encoder::{CrossEncoder, EncodedPair, LoadOptions, PairBatch, INPUT_TEMPLATE};
pub use error::{ModelError, Result};
