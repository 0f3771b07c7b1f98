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
    /// Evaluate a TREC run file against a TREC qrels file with trec_eval's semantics.
    Evaluate(EvaluateArgs),
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
pub struct EvaluateArgs {
    /// TREC run file: qid Q0 docid rank score tag.
    #[arg(long)]
    pub run_file: PathBuf,

    /// TREC qrels file: qid iteration docid relevance.
    #[arg(long)]
    pub qrels_file: PathBuf,

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
