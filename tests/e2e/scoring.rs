//! The teacher-scoring job on real data: one score per pair, resumable, shardable over S3.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{data_dir, export_sorted, minilm_dir, rankdistill, run_ok, small_run, write_file, Moto};

/// Imports DL19 passages and queries, its qrels and the given run into `store`.
fn dl19_store(store: &str, run: &Path) {
    let folder = data_dir().join("trec-dl-2019");
    run_ok(
        rankdistill(store)
            .args(["import", "passages"])
            .arg(folder.join("collection.tsv.gz")),
    );
    run_ok(
        rankdistill(store)
            .args(["import", "queries"])
            .arg(folder.join("queries.tsv")),
    );
    run_ok(
        rankdistill(store)
            .args(["import", "run", "--source", "bm25"])
            .arg(run),
    );
}

/// Returns (query id, doc id) -> score of a teacher, from `store export teacher_scores`.
fn scores(lines: &[String]) -> HashMap<(String, String), f64> {
    lines
        .iter()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let key = (
                row["query_id"].as_str().unwrap().to_string(),
                row["doc_id"].as_str().unwrap().to_string(),
            );
            (key, row["score"].as_f64().unwrap())
        })
        .collect()
}

fn score_command(store: &str, extra: &[&str]) -> Command {
    let mut command = rankdistill(store);
    command
        .arg("score")
        .arg("--teacher")
        .arg(minilm_dir())
        .args(["--name", "minilm"])
        .args(extra);
    command
}

#[test]
fn dl19_scored_once_per_pair() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").to_string_lossy().into_owned();
    let folder = data_dir().join("trec-dl-2019");
    dl19_store(&store, &folder.join("runs/bm25.trec"));
    run_ok(
        rankdistill(&store)
            .args(["import", "qrels", "--split", "test", "--unknown", "keep"])
            .arg(folder.join("qrels.txt")),
    );

    let passages: BTreeSet<String> = export_sorted(&store, "passages", &[])
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["doc_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut expected = BTreeSet::new();
    for file in ["runs/bm25.trec", "qrels.txt"] {
        for line in std::fs::read_to_string(folder.join(file)).unwrap().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if passages.contains(fields[2]) {
                expected.insert((fields[0].to_string(), fields[2].to_string()));
            }
        }
    }
    assert!(
        expected.len() > 4_300,
        "bm25 pairs plus judged pairs with text: {}",
        expected.len()
    );

    let output = run_ok(&mut score_command(&store, &["--max-len", "128"]));
    assert!(
        output.contains(&format!("scored {} pairs", expected.len())),
        "{output}"
    );
    let rows = export_sorted(&store, "teacher_scores", &[]);
    assert_eq!(rows.len(), expected.len(), "one row per pair");
    let scored: BTreeSet<(String, String)> = scores(&rows).into_keys().collect();
    assert_eq!(scored, expected);

    let teachers = export_sorted(&store, "teachers", &[]);
    assert_eq!(teachers.len(), 1);
    let teacher: Value = serde_json::from_str(&teachers[0]).unwrap();
    assert_eq!(teacher["teacher"], "minilm");
    assert_eq!(teacher["pairs"], expected.len() as u64);
    assert_eq!(teacher["max_len"], 128);
    assert_eq!(teacher["template"], "[CLS] query [SEP] passage [SEP]");
    assert_eq!(teacher["weights_sha256"].as_str().unwrap().len(), 64);
    assert!(
        teacher["model"].as_str().unwrap().contains("all-MiniLM-L6-v2"),
        "{teacher}"
    );
    assert!(teacher["wall_seconds"].as_f64().unwrap() > 0.0, "{teacher}");

    let again = run_ok(&mut score_command(&store, &["--max-len", "128"]));
    assert!(again.contains("scored 0 pairs"), "{again}");
    assert!(
        again.contains(&format!("{} were already scored", expected.len())),
        "{again}"
    );
    assert_eq!(export_sorted(&store, "teacher_scores", &[]).len(), expected.len());

    let other_len = score_command(&store, &["--max-len", "64"]).output().unwrap();
    assert!(
        !other_len.status.success(),
        "scores of another max length must not mix under one name"
    );
    let message = String::from_utf8_lossy(&other_len.stderr);
    assert!(message.contains("Choose another --name"), "{message}");
}

/// Writes a run with the first `depth` BM25 candidates of the first `queries` DL19 queries.
#[test]
fn killed_scoring_resumes_without_duplicates() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").to_string_lossy().into_owned();
    dl19_store(&store, &small_run(dir.path(), 6, 40));
    let args = ["--max-len", "64", "--batch", "16", "--commit-every", "32"];

    let mut child = Command::new(env!("CARGO_BIN_EXE_rankdistill"))
        .args(["--store", &store, "score", "--name", "minilm", "--teacher"])
        .arg(minilm_dir())
        .args(args)
        .env("RUST_LOG", "rankdistill_store=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("teacher_scores") && line.contains("rows=32") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let partial = export_sorted(&store, "teacher_scores", &[]).len();
    assert!(
        partial >= 32 && partial < 240,
        "the first run was killed after {partial} scores"
    );
    let teachers = export_sorted(&store, "teachers", &[]);
    assert_eq!(
        teachers.len(),
        1,
        "the provenance row is written before the first commit"
    );
    assert!(teachers[0].contains("\"max_len\":64"), "{teachers:?}");

    let output = run_ok(&mut score_command(&store, &args));
    assert!(
        output.contains(&format!("{partial} were already scored")),
        "{output}"
    );
    let rows = export_sorted(&store, "teacher_scores", &[]);
    assert_eq!(rows.len(), 240, "6 queries x 40 candidates, each scored once");
    assert_eq!(scores(&rows).len(), 240, "no pair is scored twice");
}

#[test]
fn two_s3_shards_equal_one_run() {
    let moto = Moto::start();
    moto.create_bucket("scores");
    let dir = TempDir::new().unwrap();
    let run = small_run(dir.path(), 8, 12);
    let local = dir.path().join("store").to_string_lossy().into_owned();
    let remote = "s3://scores/dl19";
    let args = ["--max-len", "64", "--commit-every", "16"];

    dl19_store(&local, &run);
    run_ok(&mut score_command(&local, &args));

    for (table, file) in [("passages", "collection.tsv.gz"), ("queries", "queries.tsv")] {
        let mut command = rankdistill(remote);
        moto.configure(&mut command);
        run_ok(
            command
                .args(["import", table])
                .arg(data_dir().join("trec-dl-2019").join(file)),
        );
    }
    let mut command = rankdistill(remote);
    moto.configure(&mut command);
    run_ok(command.args(["import", "run", "--source", "bm25"]).arg(&run));

    let shards: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|shard| {
            let mut command = score_command(remote, &args);
            moto.configure(&mut command);
            command
                .args(["--shard", shard])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        let output = shard.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a shard failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut command = rankdistill(remote);
    moto.configure(&mut command);
    let remote_rows: Vec<String> = run_ok(command.args(["store", "export", "teacher_scores"]))
        .lines()
        .map(String::from)
        .collect();
    let (sharded, single) = (
        scores(&remote_rows),
        scores(&export_sorted(&local, "teacher_scores", &[])),
    );
    assert_eq!(
        remote_rows.len(),
        96,
        "8 queries x 12 candidates, each scored once"
    );
    assert_eq!(sharded.len(), single.len());
    for (pair, score) in &single {
        let other = sharded
            .get(pair)
            .unwrap_or_else(|| panic!("pair {pair:?} missing from the sharded run"));
        assert!(
            (score - other).abs() < 1e-4,
            "pair {pair:?}: {score} unsharded, {other} sharded"
        );
    }
}

#[test]
fn precomputed_scores_imported() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").to_string_lossy().into_owned();
    let run = small_run(dir.path(), 2, 5);
    dl19_store(&store, &run);

    let output = run_ok(
        rankdistill(&store)
            .args(["import", "scores", "--name", "bm25-teacher"])
            .arg(&run),
    );
    assert!(output.contains("teacher_scores"), "{output}");
    assert_eq!(export_sorted(&store, "teacher_scores", &[]).len(), 10);

    let first = std::fs::read_to_string(&run).unwrap();
    let fields: Vec<&str> = first.lines().next().unwrap().split_whitespace().collect();
    let jsonl = format!(
        "{{\"query_id\": \"{}\", \"doc_id\": \"{}\", \"score\": 1.5}}\n",
        fields[0], fields[2]
    );
    let file = write_file(dir.path(), "scores.jsonl", jsonl);
    run_ok(
        rankdistill(&store)
            .args(["import", "scores", "--name", "json-teacher"])
            .arg(&file),
    );
    let json_rows = export_sorted(&store, "teacher_scores", &["--where", "teacher = 'json-teacher'"]);
    assert_eq!(json_rows.len(), 1);
    assert!(json_rows[0].contains("\"score\":1.5"), "{json_rows:?}");

    let teachers = export_sorted(&store, "teachers", &[]);
    assert_eq!(teachers.len(), 2);
    assert!(
        teachers
            .iter()
            .any(|t| t.contains("\"teacher\":\"bm25-teacher\"") && t.contains("\"pairs\":10")),
        "{teachers:?}"
    );

    let bad = write_file(
        dir.path(),
        "bad.jsonl",
        format!(
            "{{\"query_id\": \"{}\", \"doc_id\": \"{}\"}}\n",
            fields[0], fields[2]
        ),
    );
    let error = crate::support::run_err(
        rankdistill(&store)
            .args(["import", "scores", "--name", "x"])
            .arg(&bad),
    );
    assert!(
        error.contains("bad.jsonl:1: field \"score\" is missing"),
        "{error}"
    );
}
