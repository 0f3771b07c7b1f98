//! Re-imports replace, `--append` adds, and every commit is a version that stays readable.

use tempfile::TempDir;

use crate::support::{
    candidates, export_sorted, rankdistill, rows, run_err, run_ok, summary, table_info, write_file,
};

/// Creates a store with three passages and two queries.
fn small_store(dir: &std::path::Path) -> String {
    let store = dir.join("store").to_string_lossy().into_owned();
    let passages = write_file(dir, "collection.tsv", "d1\tone\nd2\ttwo\nd3\tthree\n");
    let queries = write_file(dir, "queries.tsv", "q1\tfirst\nq2\tsecond\n");
    run_ok(rankdistill(&store).args(["import", "passages"]).arg(passages));
    run_ok(rankdistill(&store).args(["import", "queries"]).arg(queries));
    store
}

fn version_of(store: &str, table: &str) -> u64 {
    table_info(store)
        .into_iter()
        .find(|(name, _, _)| name == table)
        .unwrap()
        .2
}

#[test]
fn reimporting_run_replaces_its_rows() {
    let dir = TempDir::new().unwrap();
    let store = small_store(dir.path());
    let bm25 = write_file(
        dir.path(),
        "bm25.trec",
        "q1 Q0 d1 1 3.0 bm25\nq1 Q0 d2 2 2.0 bm25\nq2 Q0 d3 1 1.0 bm25\n",
    );
    let dense = write_file(dir.path(), "dense.trec", "q1 Q0 d3 1 0.9 dense\n");

    run_ok(rankdistill(&store).args(["import", "run"]).arg(&bm25));
    run_ok(rankdistill(&store).args(["import", "run"]).arg(&dense));
    run_ok(rankdistill(&store).args(["import", "run"]).arg(&bm25));
    assert_eq!(candidates(&summary(&store), "bm25"), 3);
    assert_eq!(candidates(&summary(&store), "dense"), 1);
    assert_eq!(rows(&store, "candidates"), 4);

    let shorter = write_file(dir.path(), "short/bm25.trec", "q2 Q0 d1 1 5.0 bm25\n");
    run_ok(rankdistill(&store).args(["import", "run"]).arg(&shorter));
    let rows_now = export_sorted(&store, "candidates", &["--where", "source = 'bm25'"]);
    assert_eq!(rows_now.len(), 1, "{rows_now:?}");
    assert!(rows_now[0].contains("\"query_id\":\"q2\""), "{rows_now:?}");
    assert_eq!(candidates(&summary(&store), "dense"), 1);
}

#[test]
fn append_adds_and_rejects_repeats() {
    let dir = TempDir::new().unwrap();
    let store = small_store(dir.path());
    let first = write_file(dir.path(), "a/bm25.trec", "q1 Q0 d1 1 3.0 bm25\n");
    let second = write_file(dir.path(), "b/bm25.trec", "q2 Q0 d2 1 2.0 bm25\n");

    run_ok(rankdistill(&store).args(["import", "run"]).arg(&first));
    run_ok(
        rankdistill(&store)
            .args(["import", "run", "--append"])
            .arg(&second),
    );
    assert_eq!(candidates(&summary(&store), "bm25"), 2);

    let error = run_err(
        rankdistill(&store)
            .args(["import", "run", "--append"])
            .arg(&second),
    );
    assert!(error.contains("already in the store"), "{error}");
    assert_eq!(candidates(&summary(&store), "bm25"), 2);

    let more = write_file(dir.path(), "more.tsv", "d4\tfour\n");
    run_ok(
        rankdistill(&store)
            .args(["import", "passages", "--append"])
            .arg(&more),
    );
    assert_eq!(rows(&store, "passages"), 4);
}

#[test]
fn versions_listed_and_readable_as_of() {
    let dir = TempDir::new().unwrap();
    let store = small_store(dir.path());
    let first = write_file(dir.path(), "collection2.tsv", "d1\tONE\nd9\tnine\n");
    let before = export_sorted(&store, "passages", &[]);
    let version_before = version_of(&store, "passages");

    run_ok(rankdistill(&store).args(["import", "passages"]).arg(&first));
    assert_eq!(version_of(&store, "passages"), version_before + 1);
    assert_eq!(rows(&store, "passages"), 2);

    let as_of = version_before.to_string();
    assert_eq!(export_sorted(&store, "passages", &["--as-of", &as_of]), before);

    let listing = run_ok(rankdistill(&store).args(["store", "versions", "passages", "--format", "json"]));
    let versions: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len() as u64, version_before + 1);
    let last = versions.last().unwrap();
    assert_eq!(last["rows"], 2);
    assert_eq!(last["operation"], "Overwrite");
    assert!(
        last["message"].as_str().unwrap().contains("collection2.tsv"),
        "{last}"
    );

    let error = run_err(rankdistill(&store).args(["store", "export", "passages", "--as-of", "99"]));
    assert!(
        error.contains("version 99 of table passages not found"),
        "{error}"
    );
}

#[test]
fn info_on_empty_store() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("empty").to_string_lossy().into_owned();
    assert!(table_info(&store).is_empty());
    let error = run_err(rankdistill(&store).args(["store", "versions", "qrels"]));
    assert!(error.contains("table qrels not found"), "{error}");
}

#[test]
fn groups_import_tevatron_and_flagembedding() {
    let dir = TempDir::new().unwrap();
    let store = small_store(dir.path());
    let tevatron = concat!(
        r#"{"query_id": "q1", "query": "first", "positive_passages": [{"docid": "d1", "title": "", "text": "one"}], "#,
        r#""negative_passages": [{"docid": "d2", "title": "", "text": "two"}, {"docid": "d7", "title": "T", "text": "seven"}]}"#,
        "\n"
    );
    let file = write_file(dir.path(), "tevatron.jsonl", tevatron);
    run_ok(rankdistill(&store).args(["import", "groups"]).arg(&file));
    assert_eq!(rows(&store, "passages"), 4, "only d7 is new");
    assert_eq!(
        rows(&store, "queries"),
        2,
        "q1 is already stored with the same text"
    );
    assert_eq!(candidates(&summary(&store), "tevatron"), 2);

    let flag = r#"{"query": "what is seven", "pos": ["seven"], "neg": ["eight", "nine"], "pos_scores": [4.5], "neg_scores": [1.0, -2.0]}"#;
    let file = write_file(dir.path(), "flag.jsonl", format!("{flag}\n"));
    let output = run_ok(
        rankdistill(&store)
            .args(["import", "groups", "--teacher", "bge"])
            .arg(&file),
    );
    assert!(output.contains("teacher_scores"), "{output}");
    assert_eq!(rows(&store, "teacher_scores"), 3);
    let teachers = export_sorted(&store, "teachers", &[]);
    assert_eq!(teachers.len(), 1);
    assert!(teachers[0].contains("\"teacher\":\"bge\""), "{teachers:?}");
    assert!(teachers[0].contains("\"pairs\":3"), "{teachers:?}");

    let conflicting = r#"{"query_id": "q1", "query": "a different text", "positive_passages": [{"docid": "d1", "title": "", "text": "one"}], "negative_passages": []}"#;
    let file = write_file(dir.path(), "conflict.jsonl", format!("{conflicting}\n"));
    let error = run_err(rankdistill(&store).args(["import", "groups"]).arg(&file));
    assert!(error.contains("conflict.jsonl:1:"), "{error}");
    assert!(
        error.contains("query id \"q1\" has a different text than the query already in the store"),
        "{error}"
    );
}
