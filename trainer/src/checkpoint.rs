//! Reading and writing Hugging Face model folders: `config.json`, `model.safetensors` and the
//! tokenizer files.
//!
//! Parameters are looked up under transformers' `BertForSequenceClassification` names. A
//! checkpoint of a plain encoder (`BertModel`, whose names lack the `bert.` prefix) is read too,
//! and parameters it lacks, such as the classifier, are initialised from a seeded generator as
//! transformers initialises them.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::models::bert::BertConfig;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Tokenizer files copied along with a saved model when the source folder has them.
const TOKENIZER_EXTRA_FILES: [&str; 4] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentence_bert_config.json",
];

/// Returns `dir/name`, or an error naming the missing file.
pub fn required_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile { path })
    }
}

/// Reads `config.json` and checks that it describes a supported BERT model.
pub fn read_config(dir: &Path) -> Result<BertConfig> {
    let path = required_file(dir, CONFIG_FILE)?;
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
        path: path.clone(),
        message: e.to_string(),
    })?;

    let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("bert");
    if model_type != "bert" {
        return Err(ModelError::UnsupportedArchitecture {
            path,
            found: format!("model_type {model_type:?}"),
        });
    }
    let config: BertConfig = serde_json::from_value(raw).map_err(|e| ModelError::InvalidConfig {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if config.position_embedding_type != "absolute" {
        let found = format!("position_embedding_type {:?}", config.position_embedding_type);
        return Err(ModelError::UnsupportedArchitecture { path, found });
    }
    if config.hidden_size % config.num_attention_heads != 0 {
        let message = "hidden_size must be a multiple of num_attention_heads".to_string();
        return Err(ModelError::InvalidConfig { path, message });
    }
    Ok(config)
}

/// Returns the hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io_error = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// A candle variable source backed by a checkpoint file.
///
/// Each parameter the model requests is taken from the checkpoint when present, after checking
/// its shape and dtype, and otherwise drawn from a seeded generator following the requested
/// initialisation. Every parameter becomes a trainable variable in `varmap`.
pub struct CheckpointBackend {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    varmap: VarMap,
    state: Arc<Mutex<InitState>>,
}

/// The seeded generator and the names of the parameters it initialised.
pub struct InitState {
    rng: StdRng,
    pub initialised: Vec<String>,
}

impl CheckpointBackend {
    /// Reads every tensor of `path`, renaming plain-encoder names into the `bert.` namespace.
    pub fn open(path: &Path, seed: u64, varmap: VarMap) -> Result<Self> {
        let tensors =
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| ModelError::InvalidTensor {
                path: path.to_path_buf(),
                tensor: "(file)".into(),
                message: format!("cannot read the safetensors file: {e}"),
            })?;
        let has_prefix = tensors.keys().any(|name| name.starts_with("bert."));
        let tensors = tensors
            .into_iter()
            .map(|(name, tensor)| {
                let is_head = name.starts_with("classifier.");
                let name = if has_prefix || is_head {
                    name
                } else {
                    format!("bert.{name}")
                };
                (name, tensor)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            varmap,
            state: Arc::new(Mutex::new(InitState {
                rng: StdRng::seed_from_u64(seed),
                initialised: Vec::new(),
            })),
        })
    }

    /// Returns a handle on the initialisation state, which lists the parameters that were
    /// missing from the checkpoint once the model is built.
    pub fn init_state(&self) -> Arc<Mutex<InitState>> {
        self.state.clone()
    }

    /// Returns the names of the checkpoint's tensors.
    pub fn tensor_names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn invalid(&self, tensor: &str, message: String) -> candle_core::Error {
        let error = ModelError::InvalidTensor {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            message,
        };
        candle_core::Error::Msg(error.to_string())
    }

    fn checkpoint_tensor(&self, name: &str, shape: &Shape) -> candle_core::Result<Tensor> {
        let tensor = &self.tensors[name];
        if !matches!(tensor.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            return Err(self.invalid(name, format!("dtype {:?} is not a float type", tensor.dtype())));
        }
        if tensor.shape() != shape {
            return Err(self.invalid(
                name,
                format!(
                    "shape {:?} does not match the expected {:?}",
                    tensor.dims(),
                    shape.dims()
                ),
            ));
        }
        tensor.to_dtype(DType::F32)
    }

    fn initial_tensor(&self, name: &str, shape: &Shape, init: Init) -> candle_core::Result<Tensor> {
        let mut state = self.state.lock().expect("init state lock");
        state.initialised.push(name.to_string());
        let count = shape.elem_count();
        let values: Vec<f32> = match init {
            Init::Const(value) => vec![value as f32; count],
            Init::Randn { mean, stdev } => {
                let normal = Normal::new(mean, stdev).map_err(|e| self.invalid(name, e.to_string()))?;
                (0..count).map(|_| normal.sample(&mut state.rng) as f32).collect()
            }
            Init::Uniform { lo, up } => (0..count)
                .map(|_| state.rng.random_range(lo..up) as f32)
                .collect(),
            Init::Kaiming { .. } => {
                return Err(self.invalid(name, "Kaiming initialisation is not used by BERT".into()))
            }
        };
        Tensor::from_vec(values, shape, &Device::Cpu)
    }
}

impl SimpleBackend for CheckpointBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = if self.tensors.contains_key(name) {
            self.checkpoint_tensor(name, &shape)?
        } else {
            self.initial_tensor(name, &shape, init)?
        };
        let var = Var::from_tensor(&tensor.to_dtype(dtype)?.to_device(device)?)?;
        let value = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name.to_string(), var);
        Ok(value)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        match self.tensors.get(name) {
            Some(tensor) => tensor.to_dtype(dtype)?.to_device(device),
            None => Err(self.invalid(name, "not found in the checkpoint".into())),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Writes `config.json` for a one-label `BertForSequenceClassification`.
pub fn write_config(dir: &Path, config: &BertConfig) -> Result<()> {
    let mut value = serde_json::to_value(config).expect("the config serialises");
    let object = value.as_object_mut().expect("the config is an object");
    object.insert("model_type".into(), "bert".into());
    object.insert(
        "architectures".into(),
        serde_json::json!(["BertForSequenceClassification"]),
    );
    object.insert("num_labels".into(), 1.into());
    object.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
    object.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));

    let path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&value).expect("the config serialises");
    std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
}

/// Writes every variable of `varmap` to `model.safetensors` under its transformers name.
pub fn write_weights(dir: &Path, varmap: &VarMap) -> Result<()> {
    let vars = varmap.data().lock().expect("varmap lock");
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    let path = dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &path).map_err(|e| ModelError::InvalidTensor {
        path: path.clone(),
        tensor: "(file)".into(),
        message: format!("writing failed: {e}"),
    })
}

/// Copies the tokenizer files of `source` into `dir`.
pub fn copy_tokenizer_files(source: &Path, dir: &Path) -> Result<()> {
    let names = std::iter::once(TOKENIZER_FILE).chain(TOKENIZER_EXTRA_FILES);
    for name in names {
        let from = source.join(name);
        if !from.is_file() {
            continue;
        }
        let to = dir.join(name);
        std::fs::copy(&from, &to).map_err(|source| ModelError::Io { path: to, source })?;
    }
    Ok(())
}
