use anyhow::{Context, Result};
use rankdistill_ingest::{ImportOptions, ImportSummary, Importer, InputPath};
use rankdistill_store::Store;

use crate::cli::{ImportCommand, ImportFlags};
use crate::progress::CounterBar;

pub async fn run(store: Store, command: ImportCommand, quiet: bool) -> Result<()> {
    let (input, flags) = input_of(&command);
    let path = InputPath::parse(input)?;
    let importer = Importer::new(store, options(flags));
    let spinner = CounterBar::start(&format!("importing {input}"), importer.rows_read(), None, quiet);

    let summary = match &command {
        ImportCommand::Beir { .. } => importer.beir(&path).await,
        ImportCommand::Msmarco { split, .. } => importer.msmarco(&path, split).await,
        ImportCommand::Passages { .. } => importer.passages(&path).await,
        ImportCommand::Queries { .. } => importer.queries(&path).await,
        ImportCommand::Qrels { split, .. } => importer.qrels(&path, split).await,
        ImportCommand::Run { source, .. } => {
            let source = source.clone().unwrap_or_else(|| path.stem());
            importer.run(&path, &source).await
        }
        ImportCommand::Triples { source, split, .. } => importer.triples(&path, source, split).await,
        ImportCommand::Scores { name, .. } => importer.scores(&path, name).await,
        ImportCommand::Groups {
            source,
            split,
            teacher,
            ..
        } => {
            let source = source.clone().unwrap_or_else(|| path.stem());
            let teacher = teacher.clone().unwrap_or_else(|| source.clone());
            importer.groups(&path, &source, split, &teacher).await
        }
    };
    drop(spinner);

    let summary = summary.with_context(|| format!("import of {input} failed; the store is unchanged"))?;
    print_summary(&summary);
    Ok(())
}

fn input_of(command: &ImportCommand) -> (&str, &ImportFlags) {
    match command {
        ImportCommand::Beir { folder, flags } | ImportCommand::Msmarco { folder, flags, .. } => {
            (folder, flags)
        }
        ImportCommand::Passages { file, flags }
        | ImportCommand::Queries { file, flags }
        | ImportCommand::Qrels { file, flags, .. }
        | ImportCommand::Run { file, flags, .. }
        | ImportCommand::Triples { file, flags, .. }
        | ImportCommand::Scores { file, flags, .. }
        | ImportCommand::Groups { file, flags, .. } => (file, flags),
    }
}

fn options(flags: &ImportFlags) -> ImportOptions {
    ImportOptions {
        append: flags.append,
        unknown: flags.unknown,
    }
}

fn print_summary(summary: &ImportSummary) {
    for (table, rows, version) in &summary.tables {
        println!("{:<15} {rows:>10} rows written, version {version}", table.name());
    }
    for note in &summary.notes {
        println!("note: {note}");
    }
}
