//! Imports: each one parses its files on a blocking thread, streams rows into staged Lance writes,
//! and commits them only when every file was read without error.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rankdistill_store::{StagedWrite, Store, Table, WriteMode};
use tracing::{info, warn};

use crate::batch::table_channel;
use crate::error::{IngestError, Result};
use crate::formats::{beir, groups, msmarco, scores, trec};
use crate::ids::{PairSet, ReferenceCheck, TextIds, UnknownIds};
use crate::input::{InputPath, LocalInput};
use crate::sinks::Sinks;
use crate::teachers::TeacherRecord;

/// Options shared by every import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Add rows instead of replacing the table or the import's partition (split, source, teacher).
    pub append: bool,
    /// Policy for qrels and run rows that name unknown query or passage ids.
    pub unknown: UnknownIds,
}

/// The tables one import wrote, and notes for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// Table, rows written and the table's new version, in commit order.
    pub tables: Vec<(Table, u64, u64)>,
    /// Lines for the user, such as rows dropped for unknown ids.
    pub notes: Vec<String>,
}

/// A table one import writes, and how its rows change the table.
struct Target {
    table: Table,
    mode: WriteMode,
    /// Leave the table untouched when the import produced no row for it.
    skip_if_empty: bool,
}

/// Imports source files into a store.
pub struct Importer {
    store: Store,
    options: ImportOptions,
    rows_read: Arc<AtomicU64>,
}

impl Importer {
    pub fn new(store: Store, options: ImportOptions) -> Self {
        let rows_read = Arc::new(AtomicU64::new(0));
        Self {
            store,
            options,
            rows_read,
        }
    }

    /// Returns a counter of the rows parsed so far, for progress display.
    pub fn rows_read(&self) -> Arc<AtomicU64> {
        self.rows_read.clone()
    }

    /// Imports a BEIR folder: `corpus.jsonl[.gz]`, `queries.jsonl[.gz]` and every
    /// `qrels/<split>.tsv[.gz]`, the split named after the file.
    pub async fn beir(&self, folder: &InputPath) -> Result<ImportSummary> {
        let s3 = self.store.s3_settings();
        let corpus = self
            .required(folder, &["corpus.jsonl", "corpus.jsonl.gz"])
            .await?;
        let queries = self
            .required(folder, &["queries.jsonl", "queries.jsonl.gz"])
            .await?;
        let qrels_files = folder.join("qrels").list_files(s3).await.unwrap_or_default();
        let qrels: Vec<(String, InputPath)> = qrels_files
            .into_iter()
            .filter(|file| file.file_name().ends_with(".tsv") || file.file_name().ends_with(".tsv.gz"))
            .map(|file| (file.stem(), file))
            .collect();
        if qrels.is_empty() {
            warn!(folder = %folder, "no qrels/<split>.tsv files found; importing passages and queries only");
        }

        let corpus = corpus.fetch(s3).await?;
        let queries = queries.fetch(s3).await?;
        let qrels = fetch_all(qrels, s3).await?;
        let splits: Vec<String> = qrels.iter().map(|(split, _)| split.clone()).collect();
        let (mut passage_ids, mut query_ids) = self.text_ids_for_append().await?;
        let mut pairs = self.pairs_for_append(Table::Qrels, "split", &splits).await?;
        let unknown = self.options.unknown;

        let targets = vec![
            self.whole_table(Table::Passages),
            self.whole_table(Table::Queries),
            self.partition(Table::Qrels, splits, true),
        ];
        self.execute(targets, format!("import beir {folder}"), move |sinks| {
            beir::read_corpus(&mut corpus.lines()?, sinks, &mut passage_ids)?;
            beir::read_queries(&mut queries.lines()?, sinks, &mut query_ids)?;
            for (split, file) in &qrels {
                let mut check = ReferenceCheck::new(file.display(), unknown, &query_ids, &passage_ids);
                trec::read_qrels(&mut file.lines()?, split, sinks, &mut check, &mut pairs)?;
                note_unknown(sinks, check)?;
            }
            Ok(())
        })
        .await
    }

    /// Imports an MS MARCO style folder: `collection.tsv[.gz]`, `queries.tsv[.gz]`, TREC qrels in
    /// `qrels.txt` or `qrels.tsv` (stored under `split`), and every run in `runs/`, each under the
    /// source named after its file.
    pub async fn msmarco(&self, folder: &InputPath, split: &str) -> Result<ImportSummary> {
        let s3 = self.store.s3_settings();
        let collection = self
            .required(folder, &["collection.tsv", "collection.tsv.gz"])
            .await?;
        let queries = self.required(folder, &["queries.tsv", "queries.tsv.gz"]).await?;
        let qrels = self
            .optional(
                folder,
                &["qrels.txt", "qrels.tsv", "qrels.txt.gz", "qrels.tsv.gz"],
            )
            .await?;
        let runs: Vec<(String, InputPath)> = folder
            .join("runs")
            .list_files(s3)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|file| (file.stem(), file))
            .collect();

        let collection = collection.fetch(s3).await?;
        let queries = queries.fetch(s3).await?;
        let qrels = match qrels {
            Some(file) => Some(file.fetch(s3).await?),
            None => None,
        };
        let runs = fetch_all(runs, s3).await?;
        let sources: Vec<String> = runs.iter().map(|(source, _)| source.clone()).collect();
        let (mut passage_ids, mut query_ids) = self.text_ids_for_append().await?;
        let split_list = vec![split.to_string()];
        let mut qrel_pairs = self.pairs_for_append(Table::Qrels, "split", &split_list).await?;
        let unknown = self.options.unknown;
        let split = split.to_string();

        let targets = vec![
            self.whole_table(Table::Passages),
            self.whole_table(Table::Queries),
            self.partition(
                Table::Qrels,
                if qrels.is_some() { split_list } else { Vec::new() },
                true,
            ),
            self.partition(Table::Candidates, sources, true),
        ];
        self.execute(targets, format!("import msmarco {folder}"), move |sinks| {
            msmarco::read_collection(&mut collection.lines()?, sinks, &mut passage_ids)?;
            msmarco::read_queries(&mut queries.lines()?, sinks, &mut query_ids)?;
            if let Some(file) = &qrels {
                let mut check = ReferenceCheck::new(file.display(), unknown, &query_ids, &passage_ids);
                trec::read_qrels(&mut file.lines()?, &split, sinks, &mut check, &mut qrel_pairs)?;
                note_unknown(sinks, check)?;
            }
            for (source, file) in &runs {
                let mut check = ReferenceCheck::new(file.display(), unknown, &query_ids, &passage_ids);
                trec::read_run(
                    &mut file.lines()?,
                    source,
                    sinks,
                    &mut check,
                    &mut PairSet::default(),
                )?;
                note_unknown(sinks, check)?;
            }
            Ok(())
        })
        .await
    }

    /// Imports passages from BEIR `corpus.jsonl` or MS MARCO `collection.tsv`, chosen by the
    /// file name (`.jsonl` or `.tsv`, optionally gzipped).
    pub async fn passages(&self, file: &InputPath) -> Result<ImportSummary> {
        let is_jsonl = is_jsonl(file)?;
        let input = file.fetch(self.store.s3_settings()).await?;
        let mut ids = self.existing_text_ids(Table::Passages).await?;

        let targets = vec![self.whole_table(Table::Passages)];
        self.execute(targets, format!("import passages {file}"), move |sinks| {
            let mut lines = input.lines()?;
            if is_jsonl {
                beir::read_corpus(&mut lines, sinks, &mut ids)
            } else {
                msmarco::read_collection(&mut lines, sinks, &mut ids)
            }
        })
        .await
    }

    /// Imports queries from BEIR `queries.jsonl` or MS MARCO `queries.tsv`.
    pub async fn queries(&self, file: &InputPath) -> Result<ImportSummary> {
        let is_jsonl = is_jsonl(file)?;
        let input = file.fetch(self.store.s3_settings()).await?;
        let mut ids = self.existing_text_ids(Table::Queries).await?;

        let targets = vec![self.whole_table(Table::Queries)];
        self.execute(targets, format!("import queries {file}"), move |sinks| {
            let mut lines = input.lines()?;
            if is_jsonl {
                beir::read_queries(&mut lines, sinks, &mut ids)
            } else {
                msmarco::read_queries(&mut lines, sinks, &mut ids)
            }
        })
        .await
    }

    /// Imports TREC or BEIR qrels under `split`, checked against the stored queries and passages.
    pub async fn qrels(&self, file: &InputPath, split: &str) -> Result<ImportSummary> {
        let input = file.fetch(self.store.s3_settings()).await?;
        let (query_ids, passage_ids) = self.stored_text_ids().await?;
        let splits = vec![split.to_string()];
        let mut pairs = self.pairs_for_append(Table::Qrels, "split", &splits).await?;
        let (unknown, split) = (self.options.unknown, split.to_string());

        let targets = vec![self.partition(Table::Qrels, splits, false)];
        self.execute(
            targets,
            format!("import qrels {file} --split {split}"),
            move |sinks| {
                let mut check = ReferenceCheck::new(input.display(), unknown, &query_ids, &passage_ids);
                trec::read_qrels(&mut input.lines()?, &split, sinks, &mut check, &mut pairs)?;
                note_unknown(sinks, check)
            },
        )
        .await
    }

    /// Imports a TREC run into `candidates` under `source`.
    pub async fn run(&self, file: &InputPath, source: &str) -> Result<ImportSummary> {
        let input = file.fetch(self.store.s3_settings()).await?;
        let (query_ids, passage_ids) = self.stored_text_ids().await?;
        let sources = vec![source.to_string()];
        let mut pairs = self
            .pairs_for_append(Table::Candidates, "source", &sources)
            .await?;
        let (unknown, source) = (self.options.unknown, source.to_string());

        let targets = vec![self.partition(Table::Candidates, sources, false)];
        self.execute(
            targets,
            format!("import run {file} --source {source}"),
            move |sinks| {
                let mut check = ReferenceCheck::new(input.display(), unknown, &query_ids, &passage_ids);
                trec::read_run(&mut input.lines()?, &source, sinks, &mut check, &mut pairs)?;
                note_unknown(sinks, check)
            },
        )
        .await
    }

    /// Imports `query \t positive \t negative` text triples: positives into `qrels` under
    /// `split`, negatives into `candidates` under `source`.
    pub async fn triples(&self, file: &InputPath, source: &str, split: &str) -> Result<ImportSummary> {
        let input = file.fetch(self.store.s3_settings()).await?;
        let (mut query_ids, mut passage_ids) = self.stored_text_ids().await?;
        let (source, split) = (source.to_string(), split.to_string());

        let targets = self.group_targets(&source, &split, None);
        self.execute(
            targets,
            format!("import triples {file} --source {source}"),
            move |sinks| {
                let mut writer =
                    groups::GroupWriter::new(&source, &split, None, &mut query_ids, &mut passage_ids);
                msmarco::read_triples(&mut input.lines()?, sinks, &mut writer)?;
                note_repeated(sinks, writer.repeated_pairs());
                Ok(())
            },
        )
        .await
    }

    /// Imports Tevatron or FlagEmbedding JSONL groups. Scores given with the passages are stored
    /// as the scores of teacher `teacher`, with a `teachers` row that records the file.
    pub async fn groups(
        &self,
        file: &InputPath,
        source: &str,
        split: &str,
        teacher: &str,
    ) -> Result<ImportSummary> {
        let input = file.fetch(self.store.s3_settings()).await?;
        let (mut query_ids, mut passage_ids) = self.stored_text_ids().await?;
        let (source, split, teacher) = (source.to_string(), split.to_string(), teacher.to_string());
        let model = format!("imported from {file}");

        let targets = self.group_targets(&source, &split, Some(&teacher));
        self.execute(
            targets,
            format!("import groups {file} --source {source}"),
            move |sinks| {
                let mut writer = groups::GroupWriter::new(
                    &source,
                    &split,
                    Some(&teacher),
                    &mut query_ids,
                    &mut passage_ids,
                );
                groups::read_groups(&mut input.lines()?, sinks, &mut writer)?;
                note_repeated(sinks, writer.repeated_pairs());

                let scored = sinks.rows(Table::TeacherScores);
                if scored > 0 {
                    push_teacher_row(sinks, &teacher, &model, scored)?;
                }
                Ok(())
            },
        )
        .await
    }

    /// Imports precomputed scores of teacher `teacher` (a TREC run or `{query_id, doc_id, score}`
    /// JSON lines), replacing that teacher's scores, with a `teachers` row that records the file.
    pub async fn scores(&self, file: &InputPath, teacher: &str) -> Result<ImportSummary> {
        let input = file.fetch(self.store.s3_settings()).await?;
        let (query_ids, passage_ids) = self.stored_text_ids().await?;
        let teachers = vec![teacher.to_string()];
        let mut pairs = self
            .pairs_for_append(Table::TeacherScores, "teacher", &teachers)
            .await?;
        let (unknown, teacher) = (self.options.unknown, teacher.to_string());
        let model = format!("imported from {file}");

        let targets = vec![
            self.partition(Table::TeacherScores, teachers.clone(), false),
            self.partition(Table::Teachers, teachers, false),
        ];
        self.execute(
            targets,
            format!("import scores {file} --name {teacher}"),
            move |sinks| {
                let mut check = ReferenceCheck::new(input.display(), unknown, &query_ids, &passage_ids);
                scores::read_scores(&mut input.lines()?, &teacher, sinks, &mut check, &mut pairs)?;
                note_unknown(sinks, check)?;
                let scored = sinks.rows(Table::TeacherScores);
                push_teacher_row(sinks, &teacher, &model, scored)
            },
        )
        .await
    }

    fn group_targets(&self, source: &str, split: &str, teacher: Option<&str>) -> Vec<Target> {
        let mut targets = vec![
            self.added_rows(Table::Passages),
            self.added_rows(Table::Queries),
            self.partition(Table::Qrels, vec![split.to_string()], true),
            self.partition(Table::Candidates, vec![source.to_string()], true),
        ];
        if let Some(teacher) = teacher {
            targets.push(self.partition(Table::TeacherScores, vec![teacher.to_string()], true));
            targets.push(self.partition(Table::Teachers, vec![teacher.to_string()], true));
        }
        targets
    }

    /// Builds the target of a table that the import replaces, or appends to with `--append`.
    fn whole_table(&self, table: Table) -> Target {
        let mode = if self.options.append {
            WriteMode::Append
        } else {
            WriteMode::Overwrite
        };
        Target {
            table,
            mode,
            skip_if_empty: false,
        }
    }

    /// Builds the target of a table whose rows in the given partitions the import replaces, or
    /// appends to with `--append`.
    fn partition(&self, table: Table, values: Vec<String>, skip_if_empty: bool) -> Target {
        let mode = if self.options.append {
            WriteMode::Append
        } else {
            WriteMode::ReplacePartition(values)
        };
        Target {
            table,
            mode,
            skip_if_empty,
        }
    }

    /// Builds the target of a table that receives only rows whose ids it does not contain yet.
    fn added_rows(&self, table: Table) -> Target {
        Target {
            table,
            mode: WriteMode::Append,
            skip_if_empty: true,
        }
    }

    async fn required(&self, folder: &InputPath, names: &[&str]) -> Result<InputPath> {
        self.optional(folder, names)
            .await?
            .ok_or_else(|| IngestError::NotFound {
                file: format!("{} (expected {})", folder.join(names[0]), names.join(" or ")),
            })
    }

    async fn optional(&self, folder: &InputPath, names: &[&str]) -> Result<Option<InputPath>> {
        for name in names {
            let file = folder.join(name);
            if file.exists(self.store.s3_settings()).await? {
                return Ok(Some(file));
            }
        }
        Ok(None)
    }

    async fn existing_text_ids(&self, table: Table) -> Result<TextIds> {
        if self.options.append {
            TextIds::load(&self.store, table).await
        } else {
            Ok(TextIds::default())
        }
    }

    async fn text_ids_for_append(&self) -> Result<(TextIds, TextIds)> {
        let passages = self.existing_text_ids(Table::Passages).await?;
        let queries = self.existing_text_ids(Table::Queries).await?;
        Ok((passages, queries))
    }

    async fn stored_text_ids(&self) -> Result<(TextIds, TextIds)> {
        let queries = TextIds::load(&self.store, Table::Queries).await?;
        let passages = TextIds::load(&self.store, Table::Passages).await?;
        Ok((queries, passages))
    }

    /// Loads the pairs already stored in the given partitions when appending, so that appended
    /// rows cannot repeat them.
    async fn pairs_for_append(&self, table: Table, column: &str, values: &[String]) -> Result<PairSet> {
        if !self.options.append || values.is_empty() {
            return Ok(PairSet::default());
        }
        let quoted: Vec<String> = values
            .iter()
            .map(|v| rankdistill_store::quote_literal(v))
            .collect();
        let filter = format!("{column} IN ({})", quoted.join(", "));
        PairSet::load(&self.store, table, &filter).await
    }

    /// Runs `parse` on a blocking thread while its rows are staged, then commits every table.
    async fn execute<F>(&self, targets: Vec<Target>, message: String, parse: F) -> Result<ImportSummary>
    where
        F: FnOnce(&mut Sinks) -> Result<()> + Send + 'static,
    {
        info!(%message, store = %self.store.location(), "import started");
        let mut sinks = Vec::new();
        let mut staging = Vec::new();
        for target in &targets {
            let (sink, stream) = table_channel(target.table);
            sinks.push(sink);
            staging.push(self.store.stage(target.table, target.mode.clone(), stream));
        }
        let mut sinks = Sinks::new(sinks, self.rows_read.clone());

        let parser = tokio::task::spawn_blocking(move || match parse(&mut sinks) {
            Ok(()) => sinks.finish(),
            Err(error) => {
                sinks.abort(&error.to_string());
                Err(error)
            }
        });
        let (parsed, staged) = tokio::join!(parser, futures::future::join_all(staging));
        let parsed =
            parsed.map_err(|e| IngestError::InvalidArgument(format!("the parser thread failed: {e}")))?;
        let staged = collect_staged(parsed.as_ref().err(), staged)?;
        let notes = parsed?;

        let staged: Vec<StagedWrite> = staged
            .into_iter()
            .zip(&targets)
            .filter(|(write, target)| {
                write.rows() > 0 || !(target.skip_if_empty || target.mode == WriteMode::Append)
            })
            .map(|(write, _)| write)
            .collect();
        if staged.iter().all(|write| write.rows() == 0) {
            return Err(IngestError::InvalidArgument(format!(
                "{message}: the input contains no rows, so nothing was imported"
            )));
        }
        let tables: Vec<(Table, u64)> = staged.iter().map(|w| (w.table(), w.rows())).collect();
        let versions = self.store.commit(staged, &message).await?;

        for note in &notes {
            warn!("{note}");
        }
        let tables = tables
            .into_iter()
            .zip(versions)
            .map(|((t, rows), v)| (t, rows, v))
            .collect();
        Ok(ImportSummary { tables, notes })
    }
}

/// Returns the staged writes, or the error that explains a failed import best: the parser's own
/// error, unless the parser only saw a writer stop, in which case the writer's error.
fn collect_staged(
    parse_error: Option<&IngestError>,
    staged: Vec<rankdistill_store::Result<StagedWrite>>,
) -> Result<Vec<StagedWrite>> {
    let writer_failed = matches!(parse_error, Some(IngestError::WriterStopped(_)));
    let mut writes = Vec::with_capacity(staged.len());
    for write in staged {
        match write {
            Ok(write) => writes.push(write),
            Err(error) if parse_error.is_none() || writer_failed => return Err(error.into()),
            Err(_) => {}
        }
    }
    Ok(writes)
}

async fn fetch_all(
    files: Vec<(String, InputPath)>,
    s3: &rankdistill_store::S3Settings,
) -> Result<Vec<(String, LocalInput)>> {
    let mut fetched = Vec::with_capacity(files.len());
    for (name, file) in files {
        fetched.push((name, file.fetch(s3).await?));
    }
    Ok(fetched)
}

fn is_jsonl(file: &InputPath) -> Result<bool> {
    let name = file.file_name();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".jsonl") || name.ends_with(".json") {
        Ok(true)
    } else if name.ends_with(".tsv") || name.ends_with(".txt") {
        Ok(false)
    } else {
        Err(IngestError::InvalidArgument(format!(
            "{file}: cannot tell the format from the file name; expected .jsonl (BEIR) or .tsv (MS MARCO), optionally .gz"
        )))
    }
}

fn note_unknown(sinks: &mut Sinks, check: ReferenceCheck) -> Result<()> {
    if let Some(note) = check.finish()? {
        sinks.note(note);
    }
    Ok(())
}

fn note_repeated(sinks: &mut Sinks, repeated: u64) {
    if repeated > 0 {
        sinks.note(format!(
            "skipped {repeated} (query, passage) pairs that an earlier group already had"
        ));
    }
}

fn push_teacher_row(sinks: &mut Sinks, teacher: &str, model: &str, pairs: u64) -> Result<()> {
    let record = TeacherRecord {
        teacher: teacher.to_string(),
        model: model.to_string(),
        weights_sha256: None,
        max_len: None,
        template: None,
        dtype: Some("float32".to_string()),
        pairs: pairs as i64,
        wall_seconds: None,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    sinks.push(Table::Teachers, &record.row())
}
