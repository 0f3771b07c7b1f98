//! The `rankdistill` command: wires the ingest, store, trainer and eval crates.

mod cli;
mod commands;
mod pipeline;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    init_logging(&cli);

    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let store = commands::open_store(&cli)?;
    match cli.command {
        Command::Import(command) => commands::import::run(store, command, cli.quiet).await,
        Command::Store(command) => commands::store::run(store, command).await,
        Command::Score(args) => commands::score::run(store, args, cli.quiet).await,
        Command::Pipeline { config } => commands::pipeline::run(&config, store).await,
        Command::Retrieve(args) => commands::retrieve::run(store, args, cli.quiet).await,
        Command::Pack(args) => commands::pack::run(store, args).await,
        Command::Train(args) => commands::train::run(store, args, cli.allow_http, cli.quiet).await,
        Command::Rerank(args) => commands::rerank::run(store, args, cli.quiet).await,
        Command::Evaluate(args) => commands::evaluate::run(store, args).await,
        Command::Compare(args) => commands::compare::run(store, args).await,
        Command::Plot(command) => commands::plot::run(store, command).await,
        Command::Sql { query, format } => commands::sql::run(store, &query, format).await,
    }
}

/// Makes glibc's allocator serve large blocks from the heap and keep freed memory.
///
/// A training step allocates and frees activation and gradient tensors of up to about 100 MB.
/// By default glibc maps each such block afresh and unmaps it when it is freed. Every step then
/// paid its page faults again, and the system time exceeded the compute time. Measured with
/// `scripts/bench-train.sh` (MiniLM-L6, 4 queries x 8 passages, 256 tokens, 2 cores): 0.17 groups/s
/// with the defaults, 0.40 with these settings. The cost: the process keeps its peak memory until
/// it exits.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters, and it runs before any other thread exists.
    unsafe {
        // No block is served by mmap, and -1 turns trimming off, as mallopt(3) documents.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn init_logging(cli: &Cli) {
    let default_level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,rankdistill={default_level},rankdistill_store={default_level},rankdistill_ingest={default_level},rankdistill_eval={default_level},rankdistill_trainer={default_level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
