//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rankdistill_ingest::scoring::Shard;
use rankdistill_ingest::UnknownIds;
use rankdistill_store::Table;

#[derive(Debug, Parser)]
#[command(
    name = "rankdistill",
    version,
    about = "Train cross-encoder rerankers by contrastive learning or by distillation from stored teacher scores"
)]
pub struct Cli {
    /// Store root: a local folder or s3://bucket/prefix.
    #[arg(
        long,
        global = true,
        env = "RANKDISTILL_STORE",
        default_value = "rankdistill-store"
    )]
    pub store: String,

    /// Allow a plain http:// S3 endpoint (AWS_ENDPOINT_URL), such as a local emulator.
    #[arg(long, global = true, env = "AWS_ALLOW_HTTP", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub allow_http: bool,

    /// Log more: -v for debug, -vv for trace. RUST_LOG overrides this.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log only warnings and errors, and hide progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import queries, passages, qrels, runs or training groups into the store.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Inspect the store: tables, versions, rows.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Score every candidate pair, and every judged pair with passage text, with a teacher
    /// cross-encoder, and store the logits in teacher_scores.
    Score(ScoreArgs),
    /// Run a whole experiment from a TOML config: BM25, a teacher, students trained
    /// contrastively and by distillation, reranking, evaluation, a results table and charts.
    Pipeline {
        /// Config file, such as configs/scifact-demo.toml.
        config: PathBuf,
    },
    /// Retrieve each query's top k passages by BM25 into the candidates table.
    Retrieve(RetrieveArgs),
    /// Build training groups (query, positives, negatives, texts, labels, teacher scores) into the
    /// groups table.
    Pack(PackArgs),
    /// Train a cross-encoder on a group set, contrastively or by distillation from teacher scores.
    Train(TrainArgs),
    /// Rerank each query's first-stage candidates with a cross-encoder and store the run.
    Rerank(RerankArgs),
    /// Evaluate a run (from the store or a TREC file) against qrels with trec_eval's semantics.
    Evaluate(EvaluateArgs),
    /// Compare two evaluated runs query by query: wins, ties, losses and paired significance tests.
    Compare(CompareArgs),
    /// Draw a PNG chart of a SQL query's result.
    #[command(subcommand)]
    Plot(PlotCommand),
    /// Run a DataFusion SQL query over every table of the store.
    Sql {
        /// The query, such as "SELECT teacher, count(*) FROM teacher_scores GROUP BY teacher".
        query: String,
        #[arg(long, value_enum, default_value = "table")]
        format: SqlFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("run_input").required(true).args(["run", "run_file"])))]
#[command(group(clap::ArgGroup::new("qrels_input").required(true).args(["split", "qrels_file"])))]
pub struct EvaluateArgs {
    /// Run in the store: a reranked run, or a candidates source such as bm25.
    #[arg(long)]
    pub run: Option<String>,

    /// TREC run file: qid Q0 docid rank score tag.
    #[arg(long)]
    pub run_file: Option<PathBuf>,

    /// Qrels split in the store. With --run, the per-query values go to the metrics table.
    #[arg(long)]
    pub split: Option<String>,

    /// TREC qrels file: qid iteration docid relevance.
    #[arg(long)]
    pub qrels_file: Option<PathBuf>,

    /// Comma-separated measures, named as ir_measures names them (nDCG@10, RR@10, AP, R@100, P@10).
    #[arg(long, default_value = "nDCG@10,RR@10,AP,R@100,P@10", value_delimiter = ',')]
    pub metrics: Vec<String>,

    /// Lowest relevance grade that binary measures (RR, AP, R@k, P@k) count as relevant.
    #[arg(long, default_value_t = 1)]
    pub rel_threshold: i32,

    /// Print each query's values too.
    #[arg(long)]
    pub per_query: bool,

    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RetrieveArgs {
    /// Candidates source name; retrieving under the same name again replaces its candidates.
    #[arg(long, default_value = "bm25")]
    pub name: String,

    /// Passages per query.
    #[arg(long, default_value_t = 100)]
    pub k: usize,

    /// Retrieve only for the queries judged in these qrels splits (comma-separated); all queries
    /// by default.
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// Name of the group set; packing the same name again replaces it.
    #[arg(long)]
    pub name: String,

    /// Qrels split whose judgments give positives and judged negatives.
    #[arg(long, default_value = "train")]
    pub split: String,

    /// Candidates source of the negatives.
    #[arg(long, default_value = "bm25")]
    pub source: String,

    /// Candidates up to this rank join the negative pool.
    #[arg(long, default_value_t = 100)]
    pub depth: usize,

    /// Lowest relevance grade of a positive.
    #[arg(long, default_value_t = 1)]
    pub min_relevance: i32,

    /// Skip queries with fewer negatives than this (group size minus one for training).
    #[arg(long, default_value_t = 7)]
    pub min_negatives: usize,

    /// Teacher whose scores are stored with each member; every member must have a score.
    #[arg(long)]
    pub teacher: Option<String>,

    /// SQL predicate over the queries table (query_id, text) that chooses the queries.
    #[arg(long = "where")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Group set in the groups table, as written by `rankdistill pack --name`.
    #[arg(long)]
    pub groups: String,

    /// Model folder to start from: config.json, model.safetensors, tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,

    /// Keep only the first K encoder layers, for a smaller student.
    #[arg(long)]
    pub layers: Option<usize>,

    /// Loss: contrastive, distill, margin-mse or listnet.
    #[arg(long, default_value = "contrastive")]
    pub loss: String,

    /// With --loss distill, mix in the contrastive loss: alpha * contrastive + (1 - alpha) * distill.
    #[arg(long)]
    pub alpha: Option<f64>,

    /// Softmax temperature of the distillation loss.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,

    /// Output folder or s3://bucket/prefix: checkpoint-<step>/ folders and the final model/.
    #[arg(long)]
    pub out: String,

    /// Run name in the train_log table; defaults to the last component of --out.
    #[arg(long)]
    pub run: Option<String>,

    /// Passages per group: one positive and group-size - 1 sampled negatives.
    #[arg(long, default_value_t = 8)]
    pub group_size: usize,

    /// Queries (groups) per batch.
    #[arg(long, default_value_t = 4)]
    pub queries_per_step: usize,

    /// Maximum tokens per (query, passage) pair.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,

    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,

    /// Fraction of the steps over which the learning rate warms up from 0; it then decays
    /// linearly to 0.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,

    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,

    /// Clip the global gradient L2 norm to this value; 0 turns clipping off.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,

    /// Batches whose gradients are summed before each optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accumulation: usize,

    /// Passes over the group set.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,

    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,

    /// Optimizer steps between checkpoints; 0 writes only the final model.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,

    /// Continue from the latest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,

    /// Seed of the head initialisation, shuffling, negative sampling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Groups held in the shuffle buffer.
    #[arg(long, default_value_t = 1024)]
    pub shuffle_buffer: usize,

    /// Number of processes sharing the group stream.
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,

    /// This process's index among --world-size processes.
    #[arg(long, default_value_t = 0)]
    pub rank: usize,

    /// Measure the loader alone: read, sample and tokenize this many batches without training,
    /// print the throughput and write nothing.
    #[arg(long, value_name = "BATCHES")]
    pub loader_only: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RerankArgs {
    /// Cross-encoder model folder: config.json, model.safetensors, tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,

    /// Keep only the first K encoder layers of the model.
    #[arg(long)]
    pub layers: Option<usize>,

    /// Name of the run in the runs table; an existing run of that name is replaced.
    #[arg(long)]
    pub name: String,

    /// Candidates source to rerank.
    #[arg(long, default_value = "bm25")]
    pub source: String,

    /// Candidates per query, by first-stage rank.
    #[arg(long, default_value_t = 100)]
    pub top_k: usize,

    /// Rerank only the queries judged in this qrels split, such as test.
    #[arg(long)]
    pub split: Option<String>,

    /// Maximum tokens per (query, passage) pair; the passage is truncated to fit.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,

    /// Pairs per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,

    /// Also write the run to this TREC run file.
    #[arg(long)]
    pub trec_out: Option<PathBuf>,

    /// Seed for a classification head that the model folder lacks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run A, as evaluated with `evaluate --run A --split SPLIT`.
    pub run_a: String,
    /// Run B.
    pub run_b: String,

    /// Measure to compare, as stored in the metrics table.
    #[arg(long, default_value = "nDCG@10")]
    pub metric: String,

    /// Qrels split both runs were evaluated on.
    #[arg(long, default_value = "test")]
    pub split: String,

    /// Trials of the paired randomization test.
    #[arg(long, default_value_t = 10_000)]
    pub trials: usize,

    /// Seed of the randomization test.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum PlotCommand {
    /// Histogram of the query's first column, one series per value of its second column.
    Histogram {
        /// Query returning a numeric column and, optionally, a label column,
        /// such as "SELECT score, teacher FROM teacher_scores".
        #[arg(long)]
        sql: String,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 50)]
        bins: usize,
        #[command(flatten)]
        labels: ChartLabels,
    },
    /// Lines of the query's second column against its first, one line per value of its third.
    Lines {
        /// Query returning x, y and optionally a series column,
        /// such as "SELECT step, loss, run FROM train_log".
        #[arg(long)]
        sql: String,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        labels: ChartLabels,
    },
}

#[derive(Debug, Args)]
pub struct ChartLabels {
    /// Chart title.
    #[arg(long, default_value = "")]
    pub title: String,
    /// X axis description; defaults to the column name.
    #[arg(long)]
    pub x_label: Option<String>,
    /// Y axis description; defaults to the column name, or "fraction of rows" for histograms.
    #[arg(long)]
    pub y_label: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Teacher model folder: config.json, model.safetensors, tokenizer.json.
    #[arg(long)]
    pub teacher: PathBuf,

    /// Name under which the scores are stored.
    #[arg(long)]
    pub name: String,

    /// Maximum tokens per (query, passage) pair; the passage is truncated to fit.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,

    /// Pairs per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,

    /// Pairs per commit; a killed run resumes from the last commit.
    #[arg(long, default_value_t = 2048)]
    pub commit_every: usize,

    /// Score only shard I of N, split by query (such as 0/2), to share the work between machines.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,

    /// Seed for a classification head that the model folder lacks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Score only the candidates of these sources (comma-separated); all sources by default.
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<String>,

    /// Score only the judged pairs of these qrels splits (comma-separated); all splits by default.
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportFlags {
    /// Add rows instead of replacing the table, split, source or teacher being imported.
    #[arg(long)]
    pub append: bool,

    /// Policy for qrels or run rows whose query or passage id is not in the store: error, drop or keep.
    #[arg(long, default_value = "error", value_parser = parse_unknown)]
    pub unknown: UnknownIds,
}

fn parse_unknown(value: &str) -> Result<UnknownIds, String> {
    value.parse()
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv.
    Beir {
        /// Folder path or s3:// URI.
        folder: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// An MS MARCO style folder: collection.tsv[.gz], queries.tsv, qrels.txt (TREC form) and runs/*.
    Msmarco {
        folder: String,
        /// Split under which qrels.txt is stored.
        #[arg(long, default_value = "test")]
        split: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// Passages from a BEIR corpus.jsonl or an MS MARCO collection.tsv.
    Passages {
        file: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// Queries from a BEIR queries.jsonl or an MS MARCO queries.tsv.
    Queries {
        file: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// Qrels in TREC form (qid 0 docid grade) or BEIR form (query-id corpus-id score).
    Qrels {
        file: String,
        /// Split the judgments belong to, such as train, dev or test.
        #[arg(long)]
        split: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// A TREC run (qid Q0 docid rank score tag) as first-stage candidates.
    Run {
        file: String,
        /// Name of the run in the candidates table; defaults to the file name without extension.
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// Text triples (query, positive, negative); ids are derived from the texts.
    Triples {
        file: String,
        /// Candidates source under which the negatives are stored.
        #[arg(long, default_value = "triples")]
        source: String,
        /// Split under which the positives are stored as qrels.
        #[arg(long, default_value = "train")]
        split: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// Precomputed teacher scores: a TREC run with scores, or JSON lines {query_id, doc_id, score}.
    Scores {
        file: String,
        /// Teacher name under which the scores are stored.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        flags: ImportFlags,
    },
    /// JSONL training groups, as Tevatron or FlagEmbedding write them.
    Groups {
        file: String,
        /// Candidates source for the negatives; defaults to the file name without extension.
        #[arg(long)]
        source: Option<String>,
        /// Split under which the positives are stored as qrels.
        #[arg(long, default_value = "train")]
        split: String,
        /// Teacher name for pos_scores/neg_scores; defaults to the source name.
        #[arg(long)]
        teacher: Option<String>,
        #[command(flatten)]
        flags: ImportFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print each table's rows, size and version.
    Info {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// List the versions of a table.
    Versions {
        #[arg(value_parser = parse_table)]
        table: Table,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Write a table's rows to standard output as JSON lines.
    Export {
        #[arg(value_parser = parse_table)]
        table: Table,
        /// Read this version instead of the latest.
        #[arg(long)]
        as_of: Option<u64>,
        /// Keep only rows matching this SQL predicate, such as "source = 'bm25'".
        #[arg(long = "where")]
        filter: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Summarise the collection: queries, judgments and candidate depth per split and source.
    Summary {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

fn parse_table(value: &str) -> Result<Table, String> {
    value.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}
