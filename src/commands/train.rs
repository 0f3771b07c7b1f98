use anyhow::{Context, Result};
use rankdistill_store::{S3Settings, Store};
use rankdistill_trainer::loader::LoaderOptions;
use rankdistill_trainer::output::OutputDir;
use rankdistill_trainer::train::{measure_loader as run_loader, train, TrainOptions};
use rankdistill_trainer::{AdamWParams, LoadOptions, Objective};

use crate::cli::TrainArgs;
use crate::progress::CounterBar;

pub async fn run(store: Store, args: TrainArgs, allow_http: bool, quiet: bool) -> Result<()> {
    let options = train_options(&args)?;
    if let Some(batches) = args.loader_only {
        return measure_loader(&store, &options, batches).await;
    }
    let out = OutputDir::open(&args.out, S3Settings::from_env().with_allow_http(allow_http))?;

    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bar = CounterBar::start(
        &format!("training {}", options.run),
        progress.clone(),
        args.max_steps.map(|s| s as u64),
        quiet,
    );
    let result = train(&store, &options, &out, progress).await;
    drop(bar);
    let summary = result.with_context(|| {
        format!(
            "training {} failed; `--resume` continues from the latest checkpoint in {}",
            options.run, args.out
        )
    })?;

    let resumed = summary
        .resumed_from
        .map(|step| format!(", resumed from step {step}"))
        .unwrap_or_default();
    println!(
        "trained {} steps{resumed} in {:.1} s ({:.2} groups/s, {:.0} tokens/s); loss {:.4} -> {:.4}; model in {}",
        summary.steps,
        summary.seconds,
        summary.groups_per_second,
        summary.tokens_per_second,
        summary.first_loss.unwrap_or(f64::NAN),
        summary.last_loss.unwrap_or(f64::NAN),
        summary.model_uri
    );
    Ok(())
}

fn train_options(args: &TrainArgs) -> Result<TrainOptions> {
    let kind = args.loss.parse()?;
    let run = args.run.clone().unwrap_or_else(|| default_run_name(&args.out));
    Ok(TrainOptions {
        run,
        model: args.model.clone(),
        load: LoadOptions {
            layers: args.layers,
            seed: args.seed,
        },
        objective: Objective {
            kind,
            temperature: args.temperature,
            alpha: args.alpha,
        },
        loader: LoaderOptions {
            groups: args.groups.clone(),
            group_size: args.group_size,
            queries_per_batch: args.queries_per_step,
            max_len: args.max_len,
            shuffle_buffer: args.shuffle_buffer,
            seed: args.seed,
            world_size: args.world_size,
            rank: args.rank,
            with_teacher: false,
        },
        optimizer: AdamWParams {
            lr: args.lr,
            weight_decay: args.weight_decay,
            ..AdamWParams::default()
        },
        warmup_ratio: args.warmup_ratio,
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        grad_accumulation: args.grad_accumulation,
        epochs: args.epochs,
        max_steps: args.max_steps,
        checkpoint_every: args.checkpoint_every,
        resume: args.resume,
        prefetch: 4,
    })
}

/// Returns the last path component of the output location, such as `student-distill` for
/// `runs/student-distill`.
fn default_run_name(out: &str) -> String {
    out.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("train")
        .to_string()
}

async fn measure_loader(store: &Store, options: &TrainOptions, batches: usize) -> Result<()> {
    let summary = run_loader(store, options, batches)
        .await
        .context("the loader failed")?;
    let seconds = summary.seconds.max(1e-9);
    println!(
        "loaded {} batches ({} groups, {} tokens) in {:.2} s: {:.1} groups/s, {:.0} tokens/s",
        summary.batches,
        summary.groups,
        summary.tokens,
        summary.seconds,
        summary.groups as f64 / seconds,
        summary.tokens as f64 / seconds
    );
    Ok(())
}
