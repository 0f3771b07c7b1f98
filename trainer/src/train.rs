//! The training loop: batches from the streaming loader, a contrastive or distillation
//! objective, AdamW with linear warmup and decay, checkpoints that a killed run resumes from,
//! and one `train_log` row per optimizer step.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use candle_core::Tensor;
use rankdistill_store::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use rankdistill_store::{quote_literal, Store, Table, WriteMode};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::cross_encoder::{CrossEncoder, LoadOptions};
use crate::error::{ModelError, Result};
use crate::loader::{spawn_loader, validate_groups, GroupSetInfo, LoaderOptions, TrainBatch};
use crate::loss::Objective;
use crate::optim::{clip_grad_norm, AdamW, AdamWParams, GradAccumulator};
use crate::output::{checkpoint_name, OutputDir, STATE_FILE};
use crate::schedule::LinearSchedule;

/// File of the optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Folder of the final model under the output location.
pub const FINAL_MODEL: &str = "model";

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run name in the `train_log` table.
    pub run: String,
    /// Model folder to start from, and how to load it (first K layers, head seed).
    pub model: PathBuf,
    pub load: LoadOptions,
    pub objective: Objective,
    pub loader: LoaderOptions,
    /// Peak learning rate and AdamW settings.
    pub optimizer: AdamWParams,
    /// Fraction of the optimizer steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// Largest global gradient L2 norm; larger gradients are scaled down to it.
    pub max_grad_norm: Option<f64>,
    /// Batches whose gradients are summed before each optimizer step.
    pub grad_accumulation: usize,
    pub epochs: usize,
    /// Stop after this many optimizer steps, even within an epoch.
    pub max_steps: Option<usize>,
    /// Optimizer steps between checkpoints; 0 keeps only the final model.
    pub checkpoint_every: usize,
    /// Continue from the latest checkpoint in the output location.
    pub resume: bool,
    /// Batches the loader prepares ahead of the model.
    pub prefetch: usize,
}

/// Position of a run, recorded in each checkpoint beside the model and optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub run: String,
    /// Optimizer steps taken.
    pub step: u64,
    pub total_steps: u64,
    pub seed: u64,
    pub groups: String,
    pub loss: String,
    /// Training time of the run so far, over all its resumed segments.
    pub elapsed_seconds: f64,
}

/// The result of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub seconds: f64,
    pub groups_per_second: f64,
    pub tokens_per_second: f64,
    /// Location of the final model.
    pub model_uri: String,
}

/// One optimizer step's row of the `train_log` table.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLog {
    pub step: u64,
    pub epoch: usize,
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub groups_per_second: f64,
    pub tokens_per_second: f64,
    pub elapsed_seconds: f64,
}

/// Trains a cross-encoder from a group set in `store`, writing checkpoints and the final model
/// to `out`. `progress` counts optimizer steps for display.
pub async fn train(
    store: &Store,
    options: &TrainOptions,
    out: &OutputDir,
    progress: Arc<AtomicU64>,
) -> Result<TrainSummary> {
    options.objective.validate()?;
    let mut loader_options = options.loader.clone();
    loader_options.with_teacher = options.objective.needs_teacher();
    let info = validate_groups(store, &loader_options).await?;
    if loader_options.with_teacher {
        check_teacher(store, &info, &loader_options.groups).await?;
    }
    let total_steps = total_steps(options, &info)?;

    let resume = match options.resume {
        true => out.latest_checkpoint().await?,
        false => None,
    };
    let mut session = Session::start(options, total_steps, resume)?;
    progress.store(session.step, Ordering::Relaxed);
    info!(
        run = %options.run, groups = info.groups, batches_per_epoch = info.batches_per_epoch,
        total_steps, resumed_from = ?session.resumed_from, "training started"
    );

    let consumed = session.step as usize * options.grad_accumulation;
    let remaining = (total_steps - session.step) as usize * options.grad_accumulation;
    let mut batches = spawn_loader(
        store.clone(),
        session.model.clone(),
        loader_options,
        info.clone(),
        consumed / info.batches_per_epoch,
        consumed % info.batches_per_epoch,
        remaining,
        options.prefetch,
    );

    let mut logs = Vec::new();
    let mut logged_through = session.step;
    while session.step < total_steps {
        let log = session.train_step(&mut batches).await?;
        progress.store(log.step, Ordering::Relaxed);
        logs.push(log);

        let last = session.step == total_steps;
        let checkpoint = options.checkpoint_every > 0 && session.step % options.checkpoint_every as u64 == 0;
        if checkpoint && !last {
            write_log(store, &options.run, logged_through, &logs).await?;
            logged_through = session.step;
            logs.clear();
            session.save_checkpoint(out).await?;
        }
    }
    write_log(store, &options.run, logged_through, &logs).await?;
    if options.checkpoint_every > 0 {
        session.save_checkpoint(out).await?;
    }
    session.save_final(out).await?;
    Ok(session.summary(out))
}

async fn check_teacher(store: &Store, info: &GroupSetInfo, groups: &str) -> Result<()> {
    let teacher = info.teacher.as_deref().unwrap_or_default();
    let known = match store.try_dataset(Table::Teachers).await? {
        Some(_) => {
            let filter = format!("teacher = {}", quote_literal(teacher));
            store.count_rows(Table::Teachers, Some(&filter)).await? > 0
        }
        None => false,
    };
    if known {
        return Ok(());
    }
    Err(ModelError::InvalidArgument(format!(
        "group set {groups:?} was packed with teacher {teacher:?}, which is not in the store's teachers table; \
         score with `rankdistill score --name {teacher}` and pack again"
    )))
}

fn total_steps(options: &TrainOptions, info: &GroupSetInfo) -> Result<u64> {
    if options.grad_accumulation == 0 {
        return Err(ModelError::InvalidArgument(
            "gradient accumulation must be at least 1".into(),
        ));
    }
    let per_epoch = info.batches_per_epoch / options.grad_accumulation;
    let steps = match options.max_steps {
        Some(max_steps) => max_steps,
        None => options.epochs * per_epoch,
    };
    if steps == 0 {
        return Err(ModelError::InvalidArgument(format!(
            "the run would take no optimizer step: {} batches per epoch, gradient accumulation {}, {} epochs",
            info.batches_per_epoch, options.grad_accumulation, options.epochs
        )));
    }
    Ok(steps as u64)
}

/// The model, optimizer and position of a run in progress.
struct Session<'a> {
    options: &'a TrainOptions,
    model: Arc<CrossEncoder>,
    optimizer: AdamW,
    schedule: LinearSchedule,
    step: u64,
    total_steps: u64,
    resumed_from: Option<u64>,
    elapsed_before: f64,
    started: Instant,
    groups_seen: u64,
    tokens_seen: u64,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
}

impl<'a> Session<'a> {
    fn start(options: &'a TrainOptions, total_steps: u64, resume: Option<(u64, PathBuf)>) -> Result<Self> {
        let schedule =
            LinearSchedule::from_ratio(options.optimizer.lr, options.warmup_ratio, total_steps as usize)?;
        let (model, optimizer, state) = match &resume {
            Some((_, dir)) => load_checkpoint(dir, options)?,
            None => {
                let model = CrossEncoder::load(&options.model, &options.load)?;
                let optimizer = AdamW::from_varmap(model.varmap(), options.optimizer)?;
                (model, optimizer, None)
            }
        };
        Ok(Self {
            options,
            model: Arc::new(model),
            optimizer,
            schedule,
            step: state.as_ref().map_or(0, |state| state.step),
            total_steps,
            resumed_from: state.as_ref().map(|state| state.step),
            elapsed_before: state.as_ref().map_or(0.0, |state| state.elapsed_seconds),
            started: Instant::now(),
            groups_seen: 0,
            tokens_seen: 0,
            first_loss: None,
            last_loss: None,
        })
    }

    /// Takes one optimizer step over `grad_accumulation` batches.
    async fn train_step(
        &mut self,
        batches: &mut tokio::sync::mpsc::Receiver<Result<(usize, TrainBatch)>>,
    ) -> Result<StepLog> {
        let step_started = Instant::now();
        let accumulation = self.options.grad_accumulation;
        let vars = self.optimizer.vars();
        let mut accumulator = GradAccumulator::new();
        let (mut loss_sum, mut groups, mut tokens, mut epoch) = (0.0, 0usize, 0usize, 0usize);

        for micro in 0..accumulation {
            let (batch_epoch, batch) = batches.recv().await.ok_or_else(|| {
                ModelError::InvalidArgument("the group stream ended before the last step".into())
            })??;
            let seed = dropout_seed(self.options.loader.seed, self.step, micro);
            let loss = tokio::task::block_in_place(|| -> Result<f64> {
                self.model.model().reseed_dropout(seed);
                let loss = self.batch_loss(&batch)?;
                let grads = (loss.clone() / accumulation as f64)?.backward()?;
                accumulator.add(grads, &vars)?;
                Ok(f64::from(loss.to_scalar::<f32>()?))
            })?;
            loss_sum += loss;
            groups += batch.query_ids.len();
            tokens += batch.pairs.tokens;
            epoch = batch_epoch;
        }

        let learning_rate = self.schedule.learning_rate(self.step as usize);
        let grad_norm = tokio::task::block_in_place(|| -> Result<f64> {
            let mut grads = accumulator.finish();
            let max_norm = self.options.max_grad_norm.unwrap_or(f64::INFINITY);
            let norm = clip_grad_norm(&mut grads, &vars, max_norm)?;
            self.optimizer.step(&grads, learning_rate)?;
            Ok(norm)
        })?;
        self.step += 1;

        let seconds = step_started.elapsed().as_secs_f64().max(1e-9);
        let loss = loss_sum / accumulation as f64;
        self.first_loss.get_or_insert(loss);
        self.last_loss = Some(loss);
        self.groups_seen += groups as u64;
        self.tokens_seen += tokens as u64;
        let log = StepLog {
            step: self.step,
            epoch,
            loss,
            learning_rate,
            grad_norm,
            groups_per_second: groups as f64 / seconds,
            tokens_per_second: tokens as f64 / seconds,
            elapsed_seconds: self.elapsed(),
        };
        debug!(
            step = log.step,
            loss = log.loss,
            lr = log.learning_rate,
            grad_norm = log.grad_norm,
            "step"
        );
        Ok(log)
    }

    fn batch_loss(&self, batch: &TrainBatch) -> Result<Tensor> {
        let logits = self.model.logits(&batch.pairs, true)?;
        let student = logits.reshape(batch.labels.shape())?;
        self.options
            .objective
            .loss(&student, &batch.labels, batch.teacher.as_ref())
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn state(&self) -> TrainerState {
        TrainerState {
            run: self.options.run.clone(),
            step: self.step,
            total_steps: self.total_steps,
            seed: self.options.loader.seed,
            groups: self.options.loader.groups.clone(),
            loss: self.options.objective.kind.name().to_string(),
            elapsed_seconds: self.elapsed(),
        }
    }

    /// Writes `checkpoint-<step>`: model files, optimizer state, then the state file that marks
    /// it complete.
    async fn save_checkpoint(&self, out: &OutputDir) -> Result<()> {
        let name = checkpoint_name(self.step);
        let dir = out.staging(&name);
        tokio::task::block_in_place(|| -> Result<()> {
            self.model.save(&dir)?;
            self.optimizer.save(&dir.join(OPTIMIZER_FILE))?;
            write_state(&dir, &self.state())
        })?;
        out.publish(&name).await?;
        info!(step = self.step, checkpoint = %name, "saved checkpoint");
        Ok(())
    }

    async fn save_final(&self, out: &OutputDir) -> Result<()> {
        let dir = out.staging(FINAL_MODEL);
        tokio::task::block_in_place(|| self.model.save(&dir))?;
        out.publish(FINAL_MODEL).await
    }

    fn summary(&self, out: &OutputDir) -> TrainSummary {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        TrainSummary {
            steps: self.step,
            resumed_from: self.resumed_from,
            first_loss: self.first_loss,
            last_loss: self.last_loss,
            seconds,
            groups_per_second: self.groups_seen as f64 / seconds,
            tokens_per_second: self.tokens_seen as f64 / seconds,
            model_uri: format!("{}/{FINAL_MODEL}", out.uri()),
        }
    }
}

fn dropout_seed(seed: u64, step: u64, micro: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step << 16) ^ micro as u64
}

fn load_checkpoint(
    dir: &Path,
    options: &TrainOptions,
) -> Result<(CrossEncoder, AdamW, Option<TrainerState>)> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|source| ModelError::Io {
        path: state_path.clone(),
        source,
    })?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    if state.groups != options.loader.groups || state.seed != options.loader.seed {
        return Err(ModelError::InvalidArgument(format!(
            "checkpoint {} was trained on group set {:?} with seed {}; this run uses {:?} with seed {}",
            dir.display(),
            state.groups,
            state.seed,
            options.loader.groups,
            options.loader.seed
        )));
    }

    // The checkpoint already has the student's layers and head.
    let load = LoadOptions {
        layers: None,
        seed: options.load.seed,
    };
    let model = CrossEncoder::load(dir, &load)?;
    let mut optimizer = AdamW::from_varmap(model.varmap(), options.optimizer)?;
    optimizer.load_state(&dir.join(OPTIMIZER_FILE))?;
    info!(step = state.step, checkpoint = %dir.display(), "resuming");
    Ok((model, optimizer, Some(state)))
}

fn write_state(dir: &Path, state: &TrainerState) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let text = serde_json::to_string_pretty(state).expect("the state serializes");
    std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
}

/// Stores the rows of steps after `logged_through`, replacing rows a killed run left for those
/// steps, in one commit.
async fn write_log(store: &Store, run: &str, logged_through: u64, logs: &[StepLog]) -> Result<()> {
    if logs.is_empty() {
        return Ok(());
    }
    let batch = log_batch(run, logs);
    let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
    let predicate = format!("run = {} AND step > {logged_through}", quote_literal(run));
    let staged = store
        .stage(
            Table::TrainLog,
            WriteMode::ReplaceWhere(predicate),
            Box::pin(stream),
        )
        .await?;
    store.commit(vec![staged], &format!("train --run {run}")).await?;
    Ok(())
}

fn log_batch(run: &str, logs: &[StepLog]) -> RecordBatch {
    let floats = |value: fn(&StepLog) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(logs.iter().map(value)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run; logs.len()])),
        Arc::new(Int64Array::from_iter_values(
            logs.iter().map(|log| log.step as i64),
        )),
        Arc::new(Int32Array::from_iter_values(
            logs.iter().map(|log| log.epoch as i32),
        )),
        floats(|log| log.loss),
        floats(|log| log.learning_rate),
        floats(|log| log.grad_norm),
        floats(|log| log.groups_per_second),
        floats(|log| log.tokens_per_second),
        floats(|log| log.elapsed_seconds),
    ];
    RecordBatch::try_new(Table::TrainLog.schema(), columns).expect("columns follow the train_log schema")
}

/// Throughput of the loader alone.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderSummary {
    pub batches: usize,
    pub groups: usize,
    pub tokens: usize,
    pub seconds: f64,
}

/// Runs only the streaming loader for `batches` batches (reading, shuffling, sampling and
/// tokenizing, no model step), to check that it outpaces training.
pub async fn measure_loader(store: &Store, options: &TrainOptions, batches: usize) -> Result<LoaderSummary> {
    let mut loader_options = options.loader.clone();
    loader_options.with_teacher = options.objective.needs_teacher();
    let info = validate_groups(store, &loader_options).await?;
    let model = Arc::new(CrossEncoder::load(&options.model, &options.load)?);

    let started = Instant::now();
    let mut receiver = spawn_loader(
        store.clone(),
        model,
        loader_options,
        info,
        0,
        0,
        batches,
        options.prefetch,
    );
    let mut summary = LoaderSummary {
        batches: 0,
        groups: 0,
        tokens: 0,
        seconds: 0.0,
    };
    while let Some(batch) = receiver.recv().await {
        let (_, batch) = batch?;
        summary.batches += 1;
        summary.groups += batch.query_ids.len();
        summary.tokens += batch.pairs.tokens;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
