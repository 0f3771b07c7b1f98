//! Each kind of bad input fails with a message naming the file, line and value, and leaves the
//! store exactly as it was.

use std::io::Write;
use std::path::Path;

use tempfile::TempDir;

use crate::support::{rankdistill, rows, run_err, run_ok, table_info, write_file};

const CORPUS: &str = r#"{"_id": "d1", "title": "T1", "text": "first passage"}
{"_id": "d2", "title": "", "text": "second passage"}
{"_id": "d3", "text": "third passage without title"}
"#;
const QUERIES: &str = r#"{"_id": "q1", "text": "first query"}
{"_id": "q2", "text": "second query"}
"#;
const QRELS: &str = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n";

/// Creates a valid BEIR folder and a store that contains it.
fn valid_store(dir: &Path) -> String {
    write_file(dir, "valid/corpus.jsonl", CORPUS);
    write_file(dir, "valid/queries.jsonl", QUERIES);
    write_file(dir, "valid/qrels/test.tsv", QRELS);
    let store = dir.join("store").to_string_lossy().into_owned();
    run_ok(
        rankdistill(&store)
            .args(["import", "beir"])
            .arg(dir.join("valid")),
    );
    run_ok(rankdistill(&store).args(["import", "run"]).arg(write_file(
        dir,
        "bm25.trec",
        "q1 Q0 d1 1 2.5 bm25\n",
    )));
    store
}

/// Writes a BEIR folder named `name` whose files are the valid ones except those given.
fn beir_folder(
    dir: &Path,
    name: &str,
    corpus: Option<&[u8]>,
    queries: Option<&str>,
    qrels: Option<&str>,
) -> String {
    write_file(
        dir,
        &format!("{name}/corpus.jsonl"),
        corpus.unwrap_or(CORPUS.as_bytes()),
    );
    write_file(dir, &format!("{name}/queries.jsonl"), queries.unwrap_or(QUERIES));
    write_file(dir, &format!("{name}/qrels/test.tsv"), qrels.unwrap_or(QRELS));
    dir.join(name).to_string_lossy().into_owned()
}

/// Runs a failing import and checks the message and that no table changed.
fn expect_rejected(store: &str, args: &[&str], expected: &[&str]) {
    let before = table_info(store);
    let error = run_err(rankdistill(store).args(args));
    for part in expected {
        assert!(
            error.contains(part),
            "expected {part:?} in the error of {args:?}:\n{error}"
        );
    }
    assert_eq!(
        table_info(store),
        before,
        "the failed import {args:?} changed the store"
    );
}

#[test]
fn malformed_json_line() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let corpus = b"{\"_id\": \"d1\", \"text\": \"ok\"}\n{\"_id\": \"d2\", \"text\": \"unterminated}\n";
    let folder = beir_folder(dir.path(), "bad", Some(corpus), None, None);
    expect_rejected(
        &store,
        &["import", "beir", &folder],
        &["corpus.jsonl:2:", "invalid JSON"],
    );
}

#[test]
fn missing_text_field() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let corpus = b"{\"_id\": \"d1\", \"title\": \"no text\"}\n";
    let folder = beir_folder(dir.path(), "bad", Some(corpus), None, None);
    expect_rejected(
        &store,
        &["import", "beir", &folder],
        &["corpus.jsonl:1:", "field \"text\" is missing"],
    );
}

#[test]
fn invalid_utf8() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "queries.tsv", b"q1\tfine\nq2\tbroken \xc3\x28 text\n");
    expect_rejected(
        &store,
        &["import", "queries", file.to_str().unwrap()],
        &["queries.tsv:2: invalid UTF-8 at byte 11"],
    );
}

#[test]
fn truncated_gzip() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..5000 {
        writeln!(
            encoder,
            "{{\"_id\": \"d{i}\", \"text\": \"passage number {i} about topic {}\"}}",
            i * 7919 % 1000
        )
        .unwrap();
    }
    let bytes = encoder.finish().unwrap();
    let file = write_file(dir.path(), "corpus.jsonl.gz", &bytes[..bytes.len() * 2 / 3]);
    expect_rejected(
        &store,
        &["import", "passages", file.to_str().unwrap()],
        &["corpus.jsonl.gz", "gzip stream is truncated or corrupt"],
    );
}

#[test]
fn duplicate_passage_id() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let corpus = b"{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d2\", \"text\": \"b\"}\n{\"_id\": \"d1\", \"text\": \"c\"}\n";
    let folder = beir_folder(dir.path(), "bad", Some(corpus), None, None);
    expect_rejected(
        &store,
        &["import", "beir", &folder],
        &[
            "corpus.jsonl:3:",
            "duplicate passage id \"d1\" (first seen on line 1)",
        ],
    );
}

#[test]
fn duplicate_query_id() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "queries.tsv", "q1\tone\nq1\tagain\n");
    expect_rejected(
        &store,
        &["import", "queries", file.to_str().unwrap()],
        &["queries.tsv:2:", "duplicate query id \"q1\""],
    );
}

#[test]
fn appended_passage_already_in_store() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "more.tsv", "d9\tnew passage\nd2\tsecond passage\n");
    expect_rejected(
        &store,
        &["import", "passages", file.to_str().unwrap(), "--append"],
        &[
            "more.tsv:2:",
            "duplicate passage id \"d2\" (already in the store)",
        ],
    );
}

#[test]
fn qrels_with_unknown_query() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "qrels.txt", "q1 0 d1 1\nq7 0 d2 1\nq1 0 d2 0\n");
    expect_rejected(
        &store,
        &["import", "qrels", file.to_str().unwrap(), "--split", "dev"],
        &[
            "qrels.txt: 1 of 3 rows",
            "line 2: query id \"q7\"",
            "--unknown drop",
        ],
    );
}

#[test]
fn run_with_unknown_passage() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(
        dir.path(),
        "dense.trec",
        "q1 Q0 d1 1 9.5 dense\nq1 Q0 d404 2 8.5 dense\nq2 Q0 d3 1 7.0 dense\n",
    );
    expect_rejected(
        &store,
        &["import", "run", file.to_str().unwrap()],
        &["dense.trec: 1 of 3 rows", "line 2: passage id \"d404\""],
    );
}

#[test]
fn unknown_ids_dropped_on_request() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(
        dir.path(),
        "dense.trec",
        "q1 Q0 d1 1 9.5 dense\nq1 Q0 d404 2 8.5 dense\nq2 Q0 d3 1 7.0 dense\n",
    );
    let before = rows(&store, "candidates");
    let output = run_ok(
        rankdistill(&store)
            .args(["import", "run"])
            .arg(&file)
            .args(["--unknown", "drop"]),
    );

    assert!(output.contains("dropped 1 of 3 rows"), "{output}");
    assert!(output.contains("line 2: passage id \"d404\""), "{output}");
    assert_eq!(rows(&store, "candidates"), before + 2);
}

#[test]
fn nan_score_in_run() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "nan.trec", "q1 Q0 d1 1 3.5 x\nq1 Q0 d2 2 NaN x\n");
    expect_rejected(
        &store,
        &["import", "run", file.to_str().unwrap()],
        &["nan.trec:2:", "score \"NaN\" is not finite"],
    );
}

#[test]
fn nan_score_in_groups() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let line = r#"{"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [NaN], "neg_scores": [0.1]}"#;
    let file = write_file(dir.path(), "groups.jsonl", format!("{line}\n"));
    expect_rejected(
        &store,
        &["import", "groups", file.to_str().unwrap()],
        &["groups.jsonl:1:", "NaN and infinite scores are not valid"],
    );
}

#[test]
fn run_line_with_missing_field() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "short.trec", "q1 Q0 d1 1 3.5 x\nq1 Q0 d2 2 3.0\n");
    expect_rejected(
        &store,
        &["import", "run", file.to_str().unwrap()],
        &["short.trec:2:", "expected 6 fields", "found 5"],
    );
}

#[test]
fn non_integer_relevance() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "qrels.txt", "q1 0 d1 1\nq2 0 d2 high\n");
    expect_rejected(
        &store,
        &["import", "qrels", file.to_str().unwrap(), "--split", "dev"],
        &["qrels.txt:2:", "relevance \"high\" is not an integer"],
    );
}

#[test]
fn duplicate_pair_in_run() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(
        dir.path(),
        "dup.trec",
        "q1 Q0 d1 1 3.5 x\nq1 Q0 d2 2 3.0 x\nq1 Q0 d1 3 2.0 x\n",
    );
    expect_rejected(
        &store,
        &["import", "run", file.to_str().unwrap()],
        &[
            "dup.trec:3:",
            "duplicate run pair: query \"q1\" and passage \"d1\" (first seen on line 1)",
        ],
    );
}

#[test]
fn group_without_positive() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let line = r#"{"query_id": "g1", "query": "q", "positive_passages": [], "negative_passages": [{"docid": "n1", "title": "", "text": "neg"}]}"#;
    let file = write_file(dir.path(), "tevatron.jsonl", format!("{line}\n"));
    expect_rejected(
        &store,
        &["import", "groups", file.to_str().unwrap()],
        &["tevatron.jsonl:1:", "has no positive passage"],
    );
}

#[test]
fn empty_input_file() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let file = write_file(dir.path(), "empty.tsv", "\n");
    expect_rejected(
        &store,
        &["import", "passages", file.to_str().unwrap()],
        &["the input contains no rows"],
    );
}

#[test]
fn missing_input_file() {
    let dir = TempDir::new().unwrap();
    let store = valid_store(dir.path());
    let missing = dir.path().join("nowhere.trec");
    expect_rejected(
        &store,
        &["import", "run", missing.to_str().unwrap()],
        &["nowhere.trec: file not found"],
    );
}
