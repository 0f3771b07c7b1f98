use anyhow::{Context, Result};
use rankdistill_eval::plot::{histogram, lines, ChartOptions};
use rankdistill_eval::sql::query;
use rankdistill_store::Store;

use crate::cli::{ChartLabels, PlotCommand};

pub async fn run(store: Store, command: PlotCommand) -> Result<()> {
    match command {
        PlotCommand::Histogram {
            sql,
            out,
            bins,
            labels,
        } => {
            anyhow::ensure!(bins > 0, "--bins must be at least 1");
            let batches = query(&store, &sql).await?;
            histogram(&batches, bins, &out, &chart_options(labels))
                .with_context(|| format!("cannot draw the histogram {}", out.display()))?;
            println!("wrote {}", out.display());
        }
        PlotCommand::Lines { sql, out, labels } => {
            let batches = query(&store, &sql).await?;
            lines(&batches, &out, &chart_options(labels))
                .with_context(|| format!("cannot draw the line chart {}", out.display()))?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

fn chart_options(labels: ChartLabels) -> ChartOptions {
    ChartOptions {
        title: labels.title,
        x_label: labels.x_label,
        y_label: labels.y_label,
    }
}
