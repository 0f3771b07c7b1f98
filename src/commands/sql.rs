use anyhow::Result;
use arrow::util::pretty::pretty_format_batches;
use rankdistill_eval::sql::query;
use rankdistill_store::Store;

use crate::cli::SqlFormat;

pub async fn run(store: Store, sql: &str, format: SqlFormat) -> Result<()> {
    let batches = query(&store, sql).await?;
    match format {
        SqlFormat::Table => println!("{}", pretty_format_batches(&batches)?),
        SqlFormat::Csv => {
            let mut writer = arrow::csv::Writer::new(std::io::stdout().lock());
            for batch in &batches {
                writer.write(batch)?;
            }
        }
        SqlFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(std::io::stdout().lock());
            for batch in &batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}
