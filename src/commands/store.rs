use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use arrow::json::LineDelimitedWriter;
use bytesize::ByteSize;
use futures::TryStreamExt;
use rankdistill_eval::summary::{summarize, CollectionSummary};
use rankdistill_store::{Store, TableInfo, VersionInfo};
use serde_json::json;

use crate::cli::{OutputFormat, StoreCommand};

pub async fn run(store: Store, command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Info { format } => info(&store, format).await,
        StoreCommand::Versions { table, format } => {
            let versions = store.versions(table).await?;
            print_versions(&versions, format);
            Ok(())
        }
        StoreCommand::Export {
            table,
            as_of,
            filter,
            out,
        } => export(&store, table, as_of, filter.as_deref(), out).await,
        StoreCommand::Summary { format } => {
            let summary = summarize(&store).await?;
            print_summary(&summary, format);
            Ok(())
        }
    }
}

async fn info(store: &Store, format: OutputFormat) -> Result<()> {
    let infos = store.info().await?;
    match format {
        OutputFormat::Json => {
            let tables: Vec<_> = infos.iter().map(table_json).collect();
            println!(
                "{}",
                json!({ "store": store.location().to_string(), "tables": tables })
            );
        }
        OutputFormat::Table => {
            println!("store {}", store.location());
            if infos.is_empty() {
                println!("(no tables yet: import data with `rankdistill import`)");
            }
            println!(
                "{:<15} {:>10} {:>10} {:>8} {:>10}",
                "table", "rows", "size", "version", "fragments"
            );
            for info in &infos {
                let size = ByteSize(info.bytes).to_string();
                println!(
                    "{:<15} {:>10} {:>10} {:>8} {:>10}",
                    info.table.name(),
                    info.rows,
                    size,
                    info.version,
                    info.fragments
                );
            }
        }
    }
    Ok(())
}

fn table_json(info: &TableInfo) -> serde_json::Value {
    json!({
        "table": info.table.name(),
        "rows": info.rows,
        "bytes": info.bytes,
        "version": info.version,
        "fragments": info.fragments,
    })
}

fn print_versions(versions: &[VersionInfo], format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            let rows: Vec<_> = versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "timestamp": v.timestamp,
                        "rows": v.rows,
                        "operation": v.operation,
                        "message": v.message,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        OutputFormat::Table => {
            println!(
                "{:>8}  {:<32} {:>10}  {:<10} message",
                "version", "timestamp", "rows", "operation"
            );
            for v in versions {
                let message = v.message.as_deref().unwrap_or("");
                println!(
                    "{:>8}  {:<32} {:>10}  {:<10} {message}",
                    v.version, v.timestamp, v.rows, v.operation
                );
            }
        }
    }
}

async fn export(
    store: &Store,
    table: rankdistill_store::Table,
    as_of: Option<u64>,
    filter: Option<&str>,
    out: Option<std::path::PathBuf>,
) -> Result<()> {
    let sink: Box<dyn Write> = match &out {
        Some(path) => {
            Box::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = LineDelimitedWriter::new(BufWriter::new(sink));

    let mut batches = store.scan(table, as_of, None, filter).await?;
    while let Some(batch) = batches
        .try_next()
        .await
        .with_context(|| format!("reading table {table} failed"))?
    {
        writer.write(&batch)?;
    }
    writer.finish()?;
    Ok(())
}

fn print_summary(summary: &CollectionSummary, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(summary).expect("summary serialises")),
        OutputFormat::Table => print!("{summary}"),
    }
}
