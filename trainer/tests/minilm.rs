//! Tests of the BERT cross-encoder on the real all-MiniLM-L6-v2 weights (`make model` fetches
//! them; `RANKDISTILL_MINILM` names another folder).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use candle_core::{DType, Tensor, D};
use rankdistill_trainer::models::bert::mean_pool;
use rankdistill_trainer::{CrossEncoder, LoadOptions, ModelError};
use tempfile::TempDir;

fn minilm_dir() -> PathBuf {
    let dir = std::env::var("RANKDISTILL_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/rankdistill/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not found in {}: run `make model` or set RANKDISTILL_MINILM",
        dir.display()
    );
    dir
}

fn load(layers: Option<usize>) -> CrossEncoder {
    CrossEncoder::load(&minilm_dir(), &LoadOptions { layers, seed: 7 }).expect("MiniLM loads")
}

/// Runs the encoder in inference mode on single texts; returns the last hidden states and the
/// attention mask.
fn encoder_hidden_states(model: &CrossEncoder, texts: &[&str], max_len: usize) -> (Tensor, Tensor) {
    let batch = model.tokenize_texts(texts, max_len).unwrap();
    let bert = &model.model().bert;
    let hidden = bert
        .forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            false,
        )
        .unwrap();
    (hidden, batch.attention_mask)
}

/// Returns L2-normalised mean-pooled sentence embeddings.
fn sentence_embeddings(model: &CrossEncoder, texts: &[&str]) -> Tensor {
    let (hidden, attention_mask) = encoder_hidden_states(model, texts, 128);
    let pooled = mean_pool(&hidden, &attention_mask).unwrap();
    let norms = pooled
        .sqr()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap()
        .sqrt()
        .unwrap();
    pooled.broadcast_div(&norms).unwrap()
}

#[test]
fn sentence_similarities_match_model_card() {
    let model = load(None);
    let sentences = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ];
    let embeddings = sentence_embeddings(&model, &sentences);
    let similarities: Vec<Vec<f32>> = embeddings
        .matmul(&embeddings.t().unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();

    // Published on the sentence-transformers/all-MiniLM-L6-v2 model card, rounded to 4 decimals.
    let expected = [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)];
    for (i, j, value) in expected {
        let actual = similarities[i][j];
        assert!(
            (actual - value).abs() < 1e-4,
            "similarity ({i}, {j}) is {actual}, expected {value}"
        );
    }
}

#[test]
fn plain_encoder_gets_seeded_head() {
    let first = load(None);
    let second = load(None);
    let pairs = [(
        "what is a cross-encoder",
        "A cross-encoder reads the query and the passage together.",
    )];
    let first_scores = first.score(&pairs, 64).unwrap();
    assert_eq!(
        first_scores,
        second.score(&pairs, 64).unwrap(),
        "the same seed gives the same head"
    );

    let other = CrossEncoder::load(
        &minilm_dir(),
        &LoadOptions {
            layers: None,
            seed: 8,
        },
    )
    .unwrap();
    assert_ne!(
        first_scores,
        other.score(&pairs, 64).unwrap(),
        "another seed gives another head"
    );
}

#[test]
fn pairs_truncate_passage_and_pad_to_longest() {
    let model = load(Some(2));
    let long_passage = "word ".repeat(300);
    let pairs = [
        ("short query", long_passage.as_str()),
        ("another query here", "tiny"),
    ];
    let batch = model.tokenize(&pairs, 32).unwrap();

    assert_eq!(batch.input_ids.dims(), &[2, 32]);
    let mask: Vec<Vec<u32>> = batch.attention_mask.to_vec2().unwrap();
    assert_eq!(mask[0].iter().sum::<u32>(), 32, "the long pair fills max length");
    assert!(mask[1].iter().sum::<u32>() < 32, "the short pair is padded");
    let types: Vec<Vec<u32>> = batch.token_type_ids.to_vec2().unwrap();
    assert_eq!(types[0][0], 0);
    assert_eq!(types[0][31], 1, "the passage segment has token type 1");
    let ids: Vec<Vec<u32>> = batch.input_ids.to_vec2().unwrap();
    assert_eq!(ids[0][31], 102, "the pair ends with [SEP]");
}

#[test]
fn layers_option_builds_smaller_student() {
    let student = load(Some(2));
    assert_eq!(student.config().num_hidden_layers, 2);
    let names = student
        .varmap()
        .data()
        .lock()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert!(names.iter().any(|n| n.starts_with("bert.encoder.layer.1.")));
    assert!(!names.iter().any(|n| n.starts_with("bert.encoder.layer.2.")));

    let error = CrossEncoder::load(
        &minilm_dir(),
        &LoadOptions {
            layers: Some(9),
            seed: 1,
        },
    )
    .err()
    .unwrap();
    assert!(
        error.to_string().contains("--layers 9 is out of range"),
        "{error}"
    );
}

/// Copies the MiniLM folder into `dir`, then applies `change` to it.
fn broken_copy(dir: &Path, change: impl Fn(&Path)) -> PathBuf {
    let copy = dir.join("model");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(minilm_dir().join(name), copy.join(name)).unwrap();
    }
    change(&copy);
    copy
}

#[test]
fn missing_tokenizer_names_file() {
    let dir = TempDir::new().unwrap();
    let model = broken_copy(dir.path(), |m| {
        std::fs::remove_file(m.join("tokenizer.json")).unwrap()
    });
    let error = CrossEncoder::load(&model, &LoadOptions::default()).err().unwrap();
    assert!(matches!(error, ModelError::MissingFile { .. }), "{error}");
    assert!(
        error.to_string().contains("tokenizer.json: file not found"),
        "{error}"
    );
}

#[test]
fn unsupported_architecture_names_config() {
    let dir = TempDir::new().unwrap();
    let model = broken_copy(dir.path(), |m| {
        let config = std::fs::read_to_string(m.join("config.json")).unwrap();
        std::fs::write(
            m.join("config.json"),
            config.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\""),
        )
        .unwrap();
    });
    let error = CrossEncoder::load(&model, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("config.json: unsupported architecture model_type \"gpt2\""),
        "{error}"
    );
}

/// Rewrites the checkpoint with one tensor replaced.
fn replace_tensor(model: &Path, name: &str, tensor: Tensor) {
    let path = model.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    tensors.insert(name.to_string(), tensor);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn wrong_shape_names_tensor() {
    let dir = TempDir::new().unwrap();
    let model = broken_copy(dir.path(), |m| {
        let wrong = Tensor::zeros((384, 100), DType::F32, &candle_core::Device::Cpu).unwrap();
        replace_tensor(m, "encoder.layer.3.attention.self.key.weight", wrong);
    });
    let error = CrossEncoder::load(&model, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("model.safetensors"), "{error}");
    assert!(
        error.contains("tensor bert.encoder.layer.3.attention.self.key.weight"),
        "{error}"
    );
    assert!(
        error.contains("shape [384, 100] does not match the expected [384, 384]"),
        "{error}"
    );
}

#[test]
fn wrong_dtype_names_tensor() {
    let dir = TempDir::new().unwrap();
    let model = broken_copy(dir.path(), |m| {
        let wrong = Tensor::zeros(384, DType::I64, &candle_core::Device::Cpu).unwrap();
        replace_tensor(m, "embeddings.LayerNorm.bias", wrong);
    });
    let error = CrossEncoder::load(&model, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("tensor bert.embeddings.LayerNorm.bias: dtype I64 is not a float type"),
        "{error}"
    );
}

/// Returns whether Python transformers can be imported. In CI (`CI=true`) it must be.
fn python_transformers_available() -> bool {
    let available = Command::new("python3")
        .args(["-c", "import torch, transformers, sentence_transformers"])
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    if !available && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI must have Python torch, transformers and sentence-transformers installed (.ci/run installs them)");
    }
    if !available {
        eprintln!("skipping: Python torch, transformers and sentence-transformers are not installed");
    }
    available
}

fn python_reference(mode: &str, model: &Path, request: serde_json::Value) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(mode)
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "reference.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Real (query, passage) pairs: TREC DL 2019 queries with passages from its collection.
fn real_pairs() -> Vec<(String, String)> {
    let data = std::env::var("RANKDISTILL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let queries = std::fs::read_to_string(data.join("trec-dl-2019/queries.tsv")).unwrap();
    let collection = std::fs::File::open(data.join("trec-dl-2019/collection.tsv.gz")).unwrap();
    let mut passages = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(collection), &mut passages).unwrap();

    let queries: Vec<&str> = queries
        .lines()
        .take(6)
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    let passages: Vec<&str> = passages
        .lines()
        .take(6)
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    queries
        .iter()
        .zip(passages.iter().rev())
        .map(|(q, p)| (q.to_string(), p.to_string()))
        .collect()
}

#[test]
fn saved_checkpoint_matches_transformers() {
    if !python_transformers_available() {
        return;
    }
    for layers in [None, Some(2)] {
        let model = load(layers);
        let dir = TempDir::new().unwrap();
        let saved = dir.path().join("cross-encoder");
        model.save(&saved).unwrap();

        let pairs = real_pairs();
        let pair_refs: Vec<(&str, &str)> = pairs.iter().map(|(q, p)| (q.as_str(), p.as_str())).collect();
        let ours = CrossEncoder::load(&saved, &LoadOptions::default())
            .unwrap()
            .score(&pair_refs, 64)
            .unwrap();
        assert_eq!(
            ours,
            model.score(&pair_refs, 64).unwrap(),
            "reloading the saved model changes scores"
        );

        let request = serde_json::json!({ "pairs": pairs, "max_len": 64 });
        let reference: Vec<f32> =
            serde_json::from_value(python_reference("logits", &saved, request)).unwrap();
        assert_eq!(reference.len(), ours.len());
        for (index, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() < 1e-4,
                "layers {layers:?}, pair {index}: rankdistill {a}, transformers {b}"
            );
        }
    }
}

#[test]
fn hidden_states_match_transformers() {
    if !python_transformers_available() {
        return;
    }
    let model = load(None);
    let texts: Vec<String> = real_pairs()
        .into_iter()
        .map(|(_, passage)| passage)
        .take(3)
        .collect();
    let reference: Vec<Vec<Vec<f32>>> = serde_json::from_value(python_reference(
        "hidden",
        &minilm_dir(),
        serde_json::json!({ "texts": texts }),
    ))
    .unwrap();

    for (text, expected) in texts.iter().zip(&reference) {
        let (hidden, _) = encoder_hidden_states(&model, &[text.as_str()], 512);
        let hidden: Vec<Vec<f32>> = hidden.squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(hidden.len(), expected.len(), "token count differs for {text:?}");
        let max_difference = hidden
            .iter()
            .flatten()
            .zip(expected.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_difference < 1e-4,
            "hidden states differ by {max_difference} for {text:?}"
        );
    }
}

#[test]
fn padding_does_not_change_scores() {
    let model = load(Some(3));
    let long_passage = "The passage is long enough to set the padded length of the batch. ".repeat(6);
    let pairs = [
        ("short query", "tiny passage"),
        ("another query about something", long_passage.as_str()),
        ("third", "a passage of medium length with several words in it"),
    ];
    let batched = model.score(&pairs, 128).unwrap();
    for (index, pair) in pairs.iter().enumerate() {
        let alone = model.score(&[*pair], 128).unwrap()[0];
        assert!(
            (alone - batched[index]).abs() < 1e-5,
            "pair {index}: {alone} alone, {} in a batch",
            batched[index]
        );
    }
}

/// Sets every dropout probability in a saved model's `config.json` to zero.
fn switch_off_dropout(model: &Path) {
    let path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"] {
        config[key] = serde_json::json!(0.0);
    }
    std::fs::write(&path, config.to_string()).unwrap();
}

/// The training path (fused kernels with their own backward passes) gives transformers'
/// gradients, with padding in the batch and dropout off.
#[test]
fn training_gradients_match_transformers() {
    if !python_transformers_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let saved = dir.path().join("cross-encoder");
    load(Some(2)).save(&saved).unwrap();
    switch_off_dropout(&saved);
    let model = CrossEncoder::load(&saved, &LoadOptions::default()).unwrap();

    let pairs = real_pairs();
    let pair_refs: Vec<(&str, &str)> = pairs.iter().map(|(q, p)| (q.as_str(), p.as_str())).collect();
    let batch = model.tokenize(&pair_refs, 128).unwrap();
    let mask: Vec<Vec<u32>> = batch.attention_mask.to_vec2().unwrap();
    assert!(mask.iter().flatten().any(|&m| m == 0), "the batch has padding");

    let weights: Vec<f32> = (0..pairs.len()).map(|i| if i % 2 == 0 { 1.0 } else { -0.5 } * (i as f32 + 1.0)).collect();
    let logits = model.logits(&batch, true).unwrap();
    let objective = (logits * Tensor::new(weights.as_slice(), model.device()).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = objective.backward().unwrap();

    let parameters = [
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.attention.self.value.bias",
        "bert.encoder.layer.0.attention.output.LayerNorm.bias",
        "bert.encoder.layer.1.intermediate.dense.weight",
        "bert.encoder.layer.1.output.dense.bias",
        "classifier.weight",
    ];
    let request = serde_json::json!({
        "pairs": pairs, "max_len": 128, "weights": weights, "parameters": parameters,
    });
    let reference = python_reference("gradients", &saved, request);
    let vars = model.varmap().data().lock().unwrap();
    for name in parameters {
        let ours: Vec<f32> = grads
            .get(vars[name].as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let theirs: Vec<f32> = serde_json::from_value(reference[name].clone()).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let difference = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            scale > 0.0 && difference <= 1e-3 * scale,
            "{name}: gradients differ by {difference} (largest reference value {scale})"
        );
    }
}
