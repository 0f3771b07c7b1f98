//! PNG charts of SQL results: a histogram split by a label column, and line charts.
//!
//! Text is drawn with a TrueType font read from `RANKDISTILL_FONT` or from the usual system
//! locations of DejaVu Sans (Debian and Ubuntu package it as `fonts-dejavu-core`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{EvalError, Result};

/// Environment variable naming a TrueType font file for chart text.
pub const FONT_VARIABLE: &str = "RANKDISTILL_FONT";

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

const SIZE: (u32, u32) = (1000, 650);

/// Labels and layout of a chart.
#[derive(Debug, Clone)]
pub struct ChartOptions {
    pub title: String,
    /// Axis descriptions; the column names are used when empty.
    pub x_label: Option<String>,
    pub y_label: Option<String>,
}

/// Values of a SQL result read as `(value, series)` rows.
struct Columns {
    names: Vec<String>,
    /// One vector per numeric column.
    numbers: Vec<Vec<f64>>,
    /// Series label per row; "all" when the result has no label column.
    series: Vec<String>,
}

/// Draws a histogram of the first column with `bins` equal-width bins, one overlaid histogram
/// per value of the second column (if any). Each series is normalised to fractions of its own
/// rows, so series of very different sizes, such as positives and negatives, stay comparable.
pub fn histogram(batches: &[RecordBatch], bins: usize, out: &Path, options: &ChartOptions) -> Result<()> {
    let columns = read_columns(batches, 1)?;
    let values = &columns.numbers[0];
    let (low, high) = finite_range(values.iter().copied()).ok_or_else(|| empty_result(out))?;
    let width = ((high - low) / bins.max(1) as f64).max(f64::EPSILON);

    let mut series: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (value, label) in values.iter().zip(&columns.series) {
        let counts = series.entry(label.as_str()).or_insert_with(|| vec![0.0; bins]);
        let bin = (((value - low) / width) as usize).min(bins - 1);
        counts[bin] += 1.0;
    }
    for counts in series.values_mut() {
        let total: f64 = counts.iter().sum();
        counts.iter_mut().for_each(|count| *count /= total);
    }
    let top = series.values().flatten().copied().fold(0.0, f64::max) * 1.1;

    let x_label = options
        .x_label
        .clone()
        .unwrap_or_else(|| columns.names[0].clone());
    let y_label = options
        .y_label
        .clone()
        .unwrap_or_else(|| "fraction of rows".to_string());
    draw(out, |root| {
        let mut chart =
            chart_builder(root, &options.title).build_cartesian_2d(low..high + width, 0.0..top)?;
        draw_mesh(&mut chart, x_label, y_label)?;
        for (index, (label, counts)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let bars = counts.iter().enumerate().map(|(bin, fraction)| {
                let x0 = low + bin as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, *fraction)], color.mix(0.45).filled())
            });
            chart
                .draw_series(bars)?
                .label(format!(
                    "{label} ({} rows)",
                    columns.series.iter().filter(|s| s == label).count()
                ))
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        }
        draw_legend(&mut chart)
    })
}

/// Draws one line per value of the third column (if any), with the first column on the x axis
/// and the second on the y axis, each line sorted by x.
pub fn lines(batches: &[RecordBatch], out: &Path, options: &ChartOptions) -> Result<()> {
    let columns = read_columns(batches, 2)?;
    let (xs, ys) = (&columns.numbers[0], &columns.numbers[1]);
    let (x_low, x_high) = finite_range(xs.iter().copied()).ok_or_else(|| empty_result(out))?;
    let (y_low, y_high) = finite_range(ys.iter().copied()).ok_or_else(|| empty_result(out))?;
    let y_margin = ((y_high - y_low) * 0.05).max(1e-9);

    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for ((x, y), label) in xs.iter().zip(ys).zip(&columns.series) {
        series.entry(label.as_str()).or_default().push((*x, *y));
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    let x_label = options
        .x_label
        .clone()
        .unwrap_or_else(|| columns.names[0].clone());
    let y_label = options
        .y_label
        .clone()
        .unwrap_or_else(|| columns.names[1].clone());
    draw(out, |root| {
        let x_range = x_low..x_high.max(x_low + 1e-9);
        let y_range = y_low - y_margin..y_high + y_margin;
        let mut chart = chart_builder(root, &options.title).build_cartesian_2d(x_range, y_range)?;
        draw_mesh(&mut chart, x_label, y_label)?;
        for (index, (label, points)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(label.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        draw_legend(&mut chart)
    })
}

type Root<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn chart_builder<'a, 'b>(root: &'a Root<'b>, title: &str) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80);
    builder
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_mesh<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, x_label: String, y_label: String) -> DrawResult {
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 18))
        .draw()?;
    Ok(())
}

fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> DrawResult {
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// Renders into a temporary PNG beside `out` and renames it into place, so `out` is never a
/// partial image.
fn draw(out: &Path, render: impl FnOnce(&Root) -> DrawResult) -> Result<()> {
    register_font()?;
    let partial = out.with_extension("partial.png");
    let plot_error = |message: String| EvalError::Plot {
        path: out.to_path_buf(),
        message,
    };
    {
        let root = BitMapBackend::new(&partial, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
        render(&root).map_err(|e| plot_error(e.to_string()))?;
        root.present().map_err(|e| plot_error(e.to_string()))?;
    }
    std::fs::rename(&partial, out).map_err(|source| EvalError::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// Registers the chart font once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = font_path()?;
            let bytes =
                std::fs::read(&path).map_err(|e| format!("reading font {} failed: {e}", path.display()))?;
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a TrueType font", path.display()))
        })
        .clone()
        .map_err(|message| EvalError::Plot {
            path: PathBuf::from("chart"),
            message,
        })
}

fn font_path() -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(FONT_VARIABLE) {
        return Ok(PathBuf::from(path));
    }
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "no font found for chart text: set {FONT_VARIABLE} to a .ttf file, or install DejaVu Sans \
                 (apt-get install fonts-dejavu-core); looked in {}",
                FONT_CANDIDATES.join(", ")
            )
        })
}

/// Reads `numeric` numeric columns and, when present, one more column as the series label.
fn read_columns(batches: &[RecordBatch], numeric: usize) -> Result<Columns> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let (Some(first), true) = (batches.first(), rows > 0) else {
        return Err(EvalError::InvalidArgument(
            "the query returned no rows to plot".into(),
        ));
    };
    let schema = first.schema();
    if schema.fields().len() < numeric {
        return Err(EvalError::InvalidArgument(format!(
            "the query must return at least {numeric} numeric column(s), found {}",
            schema.fields().len()
        )));
    }

    let names: Vec<String> = schema.fields().iter().map(|field| field.name().clone()).collect();
    let mut numbers = vec![Vec::new(); numeric];
    let mut series = Vec::new();
    for batch in batches {
        for (index, values) in numbers.iter_mut().enumerate() {
            values.extend(float_values(batch, index, &names[index])?);
        }
        match batch.num_columns() > numeric {
            true => series.extend(label_values(batch, numeric)?),
            false => series.extend(std::iter::repeat_n("all".to_string(), batch.num_rows())),
        }
    }
    Ok(Columns {
        names,
        numbers,
        series,
    })
}

fn float_values(batch: &RecordBatch, index: usize, name: &str) -> Result<Vec<f64>> {
    let column = arrow_cast::cast(batch.column(index), &DataType::Float64).map_err(|_| {
        EvalError::InvalidArgument(format!(
            "column {name} is {}, which cannot be plotted as a number",
            batch.column(index).data_type()
        ))
    })?;
    let column = column
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("cast to Float64");
    Ok((0..column.len())
        .map(|row| {
            if column.is_null(row) {
                f64::NAN
            } else {
                column.value(row)
            }
        })
        .collect())
}

fn label_values(batch: &RecordBatch, index: usize) -> Result<Vec<String>> {
    let column = arrow_cast::cast(batch.column(index), &DataType::Utf8)
        .map_err(|e| EvalError::InvalidArgument(format!("the label column cannot be read as text: {e}")))?;
    let column = column
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8");
    Ok((0..column.len())
        .map(|row| {
            if column.is_null(row) {
                "null".to_string()
            } else {
                column.value(row).to_string()
            }
        })
        .collect())
}

fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        })
}

fn empty_result(out: &Path) -> EvalError {
    EvalError::InvalidArgument(format!(
        "nothing to draw in {}: the query returned no finite values",
        out.display()
    ))
}
