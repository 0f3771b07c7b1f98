//! `rankdistill pipeline CONFIG.toml`: the whole experiment, one step after the other, each run
//! as a `rankdistill` subcommand whose command line is printed. Steps whose output the store or
//! the report folder already has are skipped, so an interrupted pipeline resumes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rankdistill_store::{quote_literal, Store, Table};
use serde_json::Value;

use crate::pipeline::PipelineConfig;

/// A model the pipeline trains, and the model its nDCG@10 is compared with.
struct ModelSpec {
    name: &'static str,
    layers: usize,
    strategy: &'static str,
    groups: &'static str,
    /// Contrastive model of the same size, for the p-value.
    baseline: &'static str,
}

const TEACHER: &str = "teacher";
const CONTRASTIVE_GROUPS: &str = "contrastive";
const DISTILL_GROUPS: &str = "distill";

pub async fn run(config_path: &Path, store: Store) -> Result<()> {
    let config = PipelineConfig::load(config_path)?;
    let runner = Runner {
        exe: std::env::current_exe().context("cannot find the rankdistill executable")?,
        config,
        store,
    };
    let models = runner.models();

    runner.prepare_collection().await?;
    runner.train(&models[0]).await?;
    runner.score_and_pack().await?;
    for model in &models[1..] {
        runner.train(model).await?;
    }
    for model in &models {
        runner.rerank(model.name).await?;
    }
    runner.report(&models).await
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
    fn step(&self, title: &str, args: &[String]) -> Result<String> {
        println!("== {title}: rankdistill {}", args.join(" "));
        let output = Command::new(&self.exe)
            .arg("--store")
            .arg(&self.config.store)
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

    fn skip(&self, title: &str) {
        println!("== {title}: already done");
    }

    async fn has_rows(&self, table: Table, filter: &str) -> Result<bool> {
        if self.store.try_dataset(table).await?.is_none() {
            return Ok(false);
        }
        Ok(self.store.count_rows(table, Some(filter)).await? > 0)
    }

    fn model_dir(&self, name: &str) -> PathBuf {
        self.config.report.join("models").join(name)
    }

    /// Imports the collection, retrieves BM25 candidates and packs the contrastive groups.
    async fn prepare_collection(&self) -> Result<()> {
        let collection = &self.config.collection;
        if self.store.try_dataset(Table::Passages).await?.is_some() {
            self.skip("import");
        } else {
            let folder = self.config.beir_folder().display().to_string();
            self.step("import", &strings(&["import", "beir", &folder]))?;
        }

        let retrievals = [
            (
                "bm25-train",
                &collection.train_split,
                self.config.retrieval.train_k,
            ),
            ("bm25", &collection.test_split, self.config.retrieval.test_k),
        ];
        for (source, split, k) in retrievals {
            if self
                .has_rows(Table::Candidates, &format!("source = {}", quote_literal(source)))
                .await?
            {
                self.skip(&format!("retrieve {source}"));
                continue;
            }
            let args = [
                "retrieve",
                "--name",
                source,
                "--k",
                &k.to_string(),
                "--split",
                split.as_str(),
            ];
            self.step(&format!("retrieve {source}"), &strings(&args))?;
        }
        self.pack(CONTRASTIVE_GROUPS, None).await
    }

    async fn pack(&self, name: &str, teacher: Option<&str>) -> Result<()> {
        if self
            .has_rows(Table::Groups, &format!("name = {}", quote_literal(name)))
            .await?
        {
            self.skip(&format!("pack {name}"));
            return Ok(());
        }
        let depth = self.config.retrieval.train_k.to_string();
        let min_negatives = (self.config.training.group_size - 1).to_string();
        let mut args = strings(&[
            "pack",
            "--name",
            name,
            "--split",
            &self.config.collection.train_split,
            "--source",
            "bm25-train",
            "--depth",
            &depth,
            "--min-negatives",
            &min_negatives,
        ]);
        if let Some(teacher) = teacher {
            args.extend(strings(&["--teacher", teacher]));
        }
        self.step(&format!("pack {name}"), &args).map(|_| ())
    }

    /// Scores the training pairs with the teacher once, then packs the distillation groups.
    async fn score_and_pack(&self) -> Result<()> {
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
            "bm25-train",
            "--split",
            &self.config.collection.train_split,
        ];
        self.step("score training pairs with the teacher", &strings(&args))?;
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
        self.step(&format!("train {}", model.name), &args).map(|_| ())
    }

    async fn rerank(&self, name: &str) -> Result<()> {
        if self
            .has_rows(Table::Runs, &format!("run = {}", quote_literal(name)))
            .await?
        {
            self.skip(&format!("rerank {name}"));
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
            "bm25",
            "--top-k",
            &rerank.top_k.to_string(),
            "--split",
            &self.config.collection.test_split,
            "--max-len",
            &rerank.max_len.to_string(),
        ];
        self.step(&format!("rerank {name}"), &strings(&args)).map(|_| ())
    }

    /// Evaluates every run, compares each model with its baseline, and writes the table and
    /// charts to the report folder.
    async fn report(&self, models: &[ModelSpec]) -> Result<()> {
        let split = &self.config.collection.test_split;
        let bm25 = self.evaluate("bm25")?;
        let mut table = String::from(
            "| model | layers | strategy | nDCG@10 | RR@10 | Δ nDCG@10 vs BM25 | p vs contrastive of same size |\n|---|---:|---|---:|---:|---:|---:|\n",
        );
        writeln!(table, "| bm25 | | | {:.4} | {:.4} | | |", bm25.0, bm25.1)?;
        for model in models {
            let (ndcg, rr) = self.evaluate(model.name)?;
            let p = match model.name == model.baseline {
                true => String::from("–"),
                false => format!("{:.4}", self.p_value(model.name, model.baseline, split)?),
            };
            writeln!(
                table,
                "| {} | {} | {} | {ndcg:.4} | {rr:.4} | {:+.4} | {p} |",
                model.name,
                model.layers,
                model.strategy,
                ndcg - bm25.0
            )?;
        }

        std::fs::create_dir_all(&self.config.report)?;
        let results = self.config.report.join("results.md");
        std::fs::write(&results, &table).with_context(|| format!("cannot write {}", results.display()))?;
        self.charts()?;
        println!("\n{table}\nwritten to {}", results.display());
        Ok(())
    }

    /// Returns the run's mean nDCG@10 and RR@10 on the test split, storing per-query values.
    fn evaluate(&self, run: &str) -> Result<(f64, f64)> {
        let args = [
            "evaluate",
            "--run",
            run,
            "--split",
            &self.config.collection.test_split,
            "--metrics",
            "nDCG@10,RR@10",
            "--format",
            "json",
        ];
        let output = self.step(&format!("evaluate {run}"), &strings(&args))?;
        let json: Value = serde_json::from_str(&output).context("evaluate printed invalid JSON")?;
        let mean = |measure: &str| json["mean"][measure].as_f64().unwrap_or(f64::NAN);
        Ok((mean("nDCG@10"), mean("RR@10")))
    }

    fn p_value(&self, run: &str, baseline: &str, split: &str) -> Result<f64> {
        let args = [
            "compare", run, baseline, "--metric", "nDCG@10", "--split", split, "--format", "json",
        ];
        let output = self.step(&format!("compare {run} with {baseline}"), &strings(&args))?;
        let json: Value = serde_json::from_str(&output).context("compare printed invalid JSON")?;
        Ok(json["randomization_p"].as_f64().unwrap_or(f64::NAN))
    }

    fn charts(&self) -> Result<()> {
        let report = &self.config.report;
        let scores = format!(
            "SELECT s.score AS teacher_score, CASE WHEN q.relevance >= 1 THEN 'positive' ELSE 'negative' END AS label \
             FROM teacher_scores s LEFT JOIN qrels q ON s.query_id = q.query_id AND s.doc_id = q.doc_id \
             AND q.split = {} WHERE s.teacher = '{TEACHER}'",
            quote_literal(&self.config.collection.train_split)
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
        self.step("chart of teacher scores", &strings(&args))?;

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
        self.step("chart of training curves", &strings(&args)).map(|_| ())
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}
