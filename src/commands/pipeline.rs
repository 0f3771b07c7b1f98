//! `rankdistill pipeline CONFIG.toml`: the whole experiment, one step after the other, each run
//! as a `rankdistill` subcommand whose command line is printed. Steps whose output the store or
//! the report folder already has are skipped, so an interrupted pipeline resumes.
//!
//! The models are trained on one collection and evaluated on its test split (in domain) and on
//! every `[[evaluation]]` collection (out of domain), each in its own store.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rankdistill_store::{quote_literal, Store, Table};
use serde_json::Value;

use crate::pipeline::{CollectionConfig, CollectionFolder, PipelineConfig};

/// A model the pipeline trains, and the model its nDCG@10 is compared with.
struct ModelSpec {
    name: &'static str,
    layers: usize,
    strategy: &'static str,
    groups: &'static str,
    /// Contrastive model of the same size, for the p-value.
    baseline: &'static str,
}

/// A collection whose test queries every model reranks, and the store that contains it.
struct Target {
    collection: CollectionConfig,
    uri: String,
    store: Store,
    split: String,
    in_domain: bool,
}

/// One model's means on one collection.
struct Scores {
    ndcg: f64,
    rr: f64,
    /// Randomization-test p-value of nDCG@10 against the baseline; none for a baseline.
    p: Option<f64>,
}

const TEACHER: &str = "teacher";
const CONTRASTIVE_GROUPS: &str = "contrastive";
const DISTILL_GROUPS: &str = "distill";
const FIRST_STAGE: &str = "bm25";

pub async fn run(config_path: &Path, store: Store) -> Result<()> {
    let config = PipelineConfig::load(config_path)?;
    let runner = Runner {
        exe: std::env::current_exe().context("cannot find the rankdistill executable")?,
        config,
        store,
    };
    let models = runner.models();

    runner.prepare_training().await?;
    runner.train(&models[0]).await?;
    runner.score_and_pack().await?;
    for model in &models[1..] {
        runner.train(model).await?;
    }

    let targets = runner.targets()?;
    for target in &targets {
        runner.prepare_target(target).await?;
        for model in &models {
            runner.rerank(target, model.name).await?;
        }
    }
    runner.report(&models, &targets).await
}

struct Runner {
    exe: PathBuf,
    config: PipelineConfig,
    store: Store,
}

impl Runner {
    fn models(&self) -> Vec<ModelSpec> {
        let (teacher, student) = (self.config.teacher.layers, self.config.student.layers);
        vec![
            ModelSpec {
                name: TEACHER,
                layers: teacher,
                strategy: "contrastive",
                groups: CONTRASTIVE_GROUPS,
                baseline: TEACHER,
            },
            ModelSpec {
                name: "student-contrastive",
                layers: student,
                strategy: "contrastive",
                groups: CONTRASTIVE_GROUPS,
                baseline: "student-contrastive",
            },
            ModelSpec {
                name: "student-distill",
                layers: student,
                strategy: "distill",
                groups: DISTILL_GROUPS,
                baseline: "student-contrastive",
            },
            ModelSpec {
                name: "peer-distill",
                layers: teacher,
                strategy: "distill",
                groups: DISTILL_GROUPS,
                baseline: TEACHER,
            },
        ]
    }

    /// Runs `rankdistill --store STORE ARGS...`, printing the command line first.
    fn step(&self, store: &str, title: &str, args: &[String]) -> Result<String> {
        println!("== {title}: rankdistill --store {store} {}", args.join(" "));
        let output = Command::new(&self.exe)
            .arg("--store")
            .arg(store)
            .args(args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot start step {title}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{stdout}");
        if !output.status.success() {
            bail!(
                "step {title} failed ({}); run the pipeline again to resume after the steps already done",
                output.status
            );
        }
        Ok(stdout)
    }

    /// Runs a step in the training collection's store.
    fn train_step(&self, title: &str, args: &[String]) -> Result<String> {
        self.step(&self.config.store, title, args)
    }

    fn skip(&self, title: &str) {
        println!("== {title}: already done");
    }

    fn model_dir(&self, name: &str) -> PathBuf {
        self.config.report.join("models").join(name)
    }

    /// Imports the training collection, finds its BM25 candidates and packs the contrastive
    /// groups.
    async fn prepare_training(&self) -> Result<()> {
        let collection = &self.config.collection;
        let train_split = self.config.train_split();
        self.import(&self.store, &self.config.store, collection, train_split)
            .await?;

        let retrieval = &self.config.retrieval;
        if matches!(collection.folder()?, CollectionFolder::Beir(_)) {
            let (train, test) = ("bm25-train", FIRST_STAGE);
            self.retrieve(
                &self.store,
                &self.config.store,
                train,
                train_split,
                retrieval.train_k,
            )
            .await?;
            if let Some(test_split) = &collection.test_split {
                self.retrieve(
                    &self.store,
                    &self.config.store,
                    test,
                    test_split,
                    retrieval.test_k,
                )
                .await?;
            }
        }
        self.pack(CONTRASTIVE_GROUPS, None).await
    }

    async fn pack(&self, name: &str, teacher: Option<&str>) -> Result<()> {
        if has_rows(
            &self.store,
            Table::Groups,
            &format!("name = {}", quote_literal(name)),
        )
        .await?
        {
            self.skip(&format!("pack {name}"));
            return Ok(());
        }
        let collection = &self.config.collection;
        let depth = self.config.retrieval.train_k.to_string();
        let min_negatives = (self.config.training.group_size - 1).to_string();
        let min_relevance = collection.relevant_grade.to_string();
        let mut args = strings(&[
            "pack",
            "--name",
            name,
            "--split",
            self.config.train_split(),
            "--source",
            collection.train_source(),
            "--depth",
            &depth,
            "--min-relevance",
            &min_relevance,
            "--min-negatives",
            &min_negatives,
        ]);
        if let Some(teacher) = teacher {
            args.extend(strings(&["--teacher", teacher]));
        }
        self.train_step(&format!("pack {name}"), &args).map(|_| ())
    }

    /// Scores the training pairs with the teacher once, then packs the distillation groups.
    async fn score_and_pack(&self) -> Result<()> {
        let collection = &self.config.collection;
        let teacher_dir = self.model_dir(TEACHER).join("model").display().to_string();
        let max_len = self.config.training.max_len.to_string();
        let args = [
            "score",
            "--teacher",
            &teacher_dir,
            "--name",
            TEACHER,
            "--max-len",
            &max_len,
            "--source",
            collection.train_source(),
            "--split",
            self.config.train_split(),
        ];
        self.train_step("score training pairs with the teacher", &strings(&args))?;
        self.pack(DISTILL_GROUPS, Some(TEACHER)).await
    }

    async fn train(&self, model: &ModelSpec) -> Result<()> {
        let out = self.model_dir(model.name);
        if out.join("model/model.safetensors").is_file() {
            self.skip(&format!("train {}", model.name));
            return Ok(());
        }
        let training = &self.config.training;
        let base = self.config.model_dir().display().to_string();
        let numbers = [
            training.max_len.to_string(),
            training.group_size.to_string(),
            training.queries_per_step.to_string(),
            training.steps.to_string(),
            training.lr.to_string(),
            training.temperature.to_string(),
            training.seed.to_string(),
            model.layers.to_string(),
        ];
        let mut args = strings(&[
            "train",
            "--groups",
            model.groups,
            "--model",
            &base,
            "--out",
            &out.display().to_string(),
        ]);
        let flags = [
            "--max-len",
            "--group-size",
            "--queries-per-step",
            "--max-steps",
            "--lr",
            "--temperature",
            "--seed",
            "--layers",
        ];
        for (flag, value) in flags.iter().zip(&numbers) {
            args.extend(strings(&[flag, value]));
        }
        args.extend(strings(&[
            "--loss",
            model.strategy,
            "--run",
            model.name,
            "--checkpoint-every",
            "20",
            "--resume",
        ]));
        self.train_step(&format!("train {}", model.name), &args)
            .map(|_| ())
    }

    /// Returns the collections every model is evaluated on: the training collection's test
    /// split first, when it has one, then each evaluation collection in its own store.
    fn targets(&self) -> Result<Vec<Target>> {
        let mut targets = Vec::new();
        let training = &self.config.collection;
        if let Some(split) = &training.test_split {
            targets.push(Target {
                collection: training.clone(),
                uri: self.config.store.clone(),
                store: self.store.clone(),
                split: split.clone(),
                in_domain: true,
            });
        }
        for collection in &self.config.evaluation {
            let uri = self.config.evaluation_store(collection);
            let store = Store::open(&uri, self.store.s3_settings().clone())
                .with_context(|| format!("cannot open store {uri}"))?;
            targets.push(Target {
                collection: collection.clone(),
                uri,
                store,
                split: collection.test_split.clone().unwrap_or_else(|| "test".into()),
                in_domain: false,
            });
        }
        Ok(targets)
    }

    /// Imports an evaluation collection into its store and finds its BM25 candidates.
    async fn prepare_target(&self, target: &Target) -> Result<()> {
        if target.in_domain {
            return Ok(());
        }
        self.import(&target.store, &target.uri, &target.collection, &target.split)
            .await?;
        if matches!(target.collection.folder()?, CollectionFolder::Beir(_)) {
            let k = self.config.retrieval.test_k;
            self.retrieve(&target.store, &target.uri, FIRST_STAGE, &target.split, k)
                .await?;
        }
        Ok(())
    }

    async fn rerank(&self, target: &Target, name: &str) -> Result<()> {
        let title = format!("rerank {} with {name}", target.collection.name);
        if has_rows(
            &target.store,
            Table::Runs,
            &format!("run = {}", quote_literal(name)),
        )
        .await?
        {
            self.skip(&title);
            return Ok(());
        }
        let model = self.model_dir(name).join("model").display().to_string();
        let rerank = &self.config.rerank;
        let args = [
            "rerank",
            "--model",
            &model,
            "--name",
            name,
            "--source",
            FIRST_STAGE,
            "--top-k",
            &rerank.top_k.to_string(),
            "--split",
            &target.split,
            "--max-len",
            &rerank.max_len.to_string(),
        ];
        self.step(&target.uri, &title, &strings(&args)).map(|_| ())
    }

    /// Evaluates every run on every collection, compares each model with its baseline, and
    /// writes the tables and charts to the report folder.
    async fn report(&self, models: &[ModelSpec], targets: &[Target]) -> Result<()> {
        let mut results = Vec::new();
        for target in targets {
            let bm25 = self.evaluate(target, FIRST_STAGE)?;
            let mut rows = Vec::new();
            for model in models {
                let (ndcg, rr) = self.evaluate(target, model.name)?;
                let p = match model.name == model.baseline {
                    true => None,
                    false => Some(self.p_value(target, model.name, model.baseline)?),
                };
                rows.push(Scores { ndcg, rr, p });
            }
            results.push((bm25, rows));
        }

        let text = results_markdown(models, targets, &results)?;
        std::fs::create_dir_all(&self.config.report)?;
        let path = self.config.report.join("results.md");
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        self.charts()?;
        println!("\n{text}\nwritten to {}", path.display());
        Ok(())
    }

    /// Returns the run's mean nDCG@10 and RR@10 on a collection, storing per-query values.
    fn evaluate(&self, target: &Target, run: &str) -> Result<(f64, f64)> {
        let grade = target.collection.relevant_grade.to_string();
        let args = [
            "evaluate",
            "--run",
            run,
            "--split",
            &target.split,
            "--metrics",
            "nDCG@10,RR@10",
            "--rel-threshold",
            &grade,
            "--format",
            "json",
        ];
        let title = format!("evaluate {run} on {}", target.collection.name);
        let output = self.step(&target.uri, &title, &strings(&args))?;
        let json: Value = serde_json::from_str(&output).context("evaluate printed invalid JSON")?;
        let mean = |measure: &str| json["mean"][measure].as_f64().unwrap_or(f64::NAN);
        Ok((mean("nDCG@10"), mean("RR@10")))
    }

    fn p_value(&self, target: &Target, run: &str, baseline: &str) -> Result<f64> {
        let args = [
            "compare",
            run,
            baseline,
            "--metric",
            "nDCG@10",
            "--split",
            &target.split,
            "--format",
            "json",
        ];
        let title = format!("compare {run} with {baseline} on {}", target.collection.name);
        let output = self.step(&target.uri, &title, &strings(&args))?;
        let json: Value = serde_json::from_str(&output).context("compare printed invalid JSON")?;
        Ok(json["randomization_p"].as_f64().unwrap_or(f64::NAN))
    }

    fn charts(&self) -> Result<()> {
        let report = &self.config.report;
        let collection = &self.config.collection;
        let scores = format!(
            "SELECT s.score AS teacher_score, CASE WHEN q.relevance >= {} THEN 'positive' ELSE 'negative' END AS label \
             FROM teacher_scores s LEFT JOIN qrels q ON s.query_id = q.query_id AND s.doc_id = q.doc_id \
             AND q.split = {} WHERE s.teacher = '{TEACHER}'",
            collection.relevant_grade,
            quote_literal(self.config.train_split())
        );
        let histogram = report.join("teacher-scores.png").display().to_string();
        let args = [
            "plot",
            "histogram",
            "--sql",
            &scores,
            "--out",
            &histogram,
            "--title",
            "Teacher scores on training pairs",
        ];
        self.train_step("chart of teacher scores", &strings(&args))?;

        let curves = report.join("training-curves.png").display().to_string();
        let args = [
            "plot",
            "lines",
            "--sql",
            "SELECT step, loss, run FROM train_log",
            "--out",
            &curves,
            "--title",
            "Training loss",
        ];
        self.train_step("chart of training curves", &strings(&args))
            .map(|_| ())
    }
}

/// Steps that work on any collection's store.
impl Runner {
    /// Imports a collection's folder into `store` unless it contains passages already.
    async fn import(
        &self,
        store: &Store,
        uri: &str,
        collection: &CollectionConfig,
        split: &str,
    ) -> Result<()> {
        let title = format!("import {}", collection.name);
        if store.try_dataset(Table::Passages).await?.is_some() {
            self.skip(&title);
            return Ok(());
        }
        let args = match collection.folder()? {
            CollectionFolder::Beir(folder) => strings(&["import", "beir", &folder.display().to_string()]),
            CollectionFolder::Msmarco(folder) => {
                let folder = folder.display().to_string();
                strings(&[
                    "import",
                    "msmarco",
                    &folder,
                    "--split",
                    split,
                    "--unknown",
                    "keep",
                ])
            }
        };
        self.step(uri, &title, &args).map(|_| ())
    }

    /// Retrieves the BM25 top k of a split's queries as candidates source `source`, unless the
    /// store has that source already.
    async fn retrieve(&self, store: &Store, uri: &str, source: &str, split: &str, k: usize) -> Result<()> {
        let title = format!("retrieve {source}");
        if has_rows(
            store,
            Table::Candidates,
            &format!("source = {}", quote_literal(source)),
        )
        .await?
        {
            self.skip(&title);
            return Ok(());
        }
        let args = [
            "retrieve",
            "--name",
            source,
            "--k",
            &k.to_string(),
            "--split",
            split,
        ];
        self.step(uri, &title, &strings(&args)).map(|_| ())
    }
}

async fn has_rows(store: &Store, table: Table, filter: &str) -> Result<bool> {
    if store.try_dataset(table).await?.is_none() {
        return Ok(false);
    }
    Ok(store.count_rows(table, Some(filter)).await? > 0)
}

/// Writes the results as Markdown: a summary of nDCG@10 per collection, then one row per
/// collection and model with RR@10, the change against BM25 and the p-value.
fn results_markdown(
    models: &[ModelSpec],
    targets: &[Target],
    results: &[((f64, f64), Vec<Scores>)],
) -> Result<String> {
    let mut text = String::from("## nDCG@10 per collection\n\n| model | layers | strategy |");
    for target in targets {
        write!(text, " {} |", collection_label(target))?;
    }
    text.push_str("\n|---|---:|---|");
    text.push_str(&"---:|".repeat(targets.len()));
    text.push_str("\n| bm25 | | |");
    for ((ndcg, _), _) in results {
        write!(text, " {ndcg:.4} |")?;
    }
    for (index, model) in models.iter().enumerate() {
        write!(
            text,
            "\n| {} | {} | {} |",
            model.name, model.layers, model.strategy
        )?;
        for (_, rows) in results {
            write!(text, " {:.4} |", rows[index].ndcg)?;
        }
    }

    text.push_str(
        "\n\n## Each collection\n\nΔ is the change in nDCG@10 against BM25; p is the paired \
         randomization test of nDCG@10 against the contrastive model of the same size.\n\n\
         | collection | model | layers | strategy | nDCG@10 | RR@10 | Δ vs BM25 | p |\n\
         |---|---|---:|---|---:|---:|---:|---:|\n",
    );
    for (target, ((bm25_ndcg, bm25_rr), rows)) in targets.iter().zip(results) {
        let label = collection_label(target);
        writeln!(text, "| {label} | bm25 | | | {bm25_ndcg:.4} | {bm25_rr:.4} | | |")?;
        for (model, scores) in models.iter().zip(rows) {
            let p = scores.p.map_or_else(|| "–".to_string(), |p| format!("{p:.4}"));
            writeln!(
                text,
                "| {label} | {} | {} | {} | {:.4} | {:.4} | {:+.4} | {p} |",
                model.name,
                model.layers,
                model.strategy,
                scores.ndcg,
                scores.rr,
                scores.ndcg - bm25_ndcg
            )?;
        }
    }
    Ok(text)
}

fn collection_label(target: &Target) -> String {
    match target.in_domain {
        true => format!("{} (in domain)", target.collection.name),
        false => target.collection.name.clone(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}
