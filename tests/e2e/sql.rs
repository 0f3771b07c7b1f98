//! `rankdistill sql` over a store with teacher scores, on disk and on the S3 emulator.

use std::collections::HashMap;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{data_dir, rankdistill, run_err, run_ok, Moto};

/// Teacher-score distribution for positives (grade >= 2) against the other pairs, per teacher.
const DISTRIBUTION: &str = "SELECT s.teacher, \
       CASE WHEN q.relevance >= 2 THEN 'positive' ELSE 'negative' END AS label, \
       count(*) AS pairs, avg(s.score) AS mean, stddev(s.score) AS stddev, \
       approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY s.score) AS p90 \
     FROM teacher_scores s LEFT JOIN qrels q ON s.query_id = q.query_id AND s.doc_id = q.doc_id \
     GROUP BY 1, 2 ORDER BY 1, 2";

/// Imports DL19 and its BM25 scores as the scores of teacher "bm25" into `store`.
fn store_with_scores(store: &str, moto: Option<&Moto>) {
    let folder = data_dir().join("trec-dl-2019");
    let steps: [Vec<String>; 2] = [
        vec![
            "import".into(),
            "msmarco".into(),
            folder.display().to_string(),
            "--unknown".into(),
            "keep".into(),
        ],
        vec![
            "import".into(),
            "scores".into(),
            folder.join("runs/bm25.trec").display().to_string(),
            "--name".into(),
            "bm25".into(),
        ],
    ];
    for args in steps {
        let mut command = rankdistill(store);
        if let Some(moto) = moto {
            moto.configure(&mut command);
        }
        run_ok(command.args(&args));
    }
}

/// Computes the expected (label -> (pairs, mean)) from the files.
fn expected_distribution() -> HashMap<String, (u64, f64)> {
    let folder = data_dir().join("trec-dl-2019");
    let grades: HashMap<(String, String), i32> = std::fs::read_to_string(folder.join("qrels.txt"))
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            ((f[0].to_string(), f[2].to_string()), f[3].parse().unwrap())
        })
        .collect();
    let mut sums: HashMap<String, (u64, f64)> = HashMap::new();
    for line in std::fs::read_to_string(folder.join("runs/bm25.trec"))
        .unwrap()
        .lines()
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let grade = grades
            .get(&(f[0].to_string(), f[2].to_string()))
            .copied()
            .unwrap_or(-1);
        let label = if grade >= 2 { "positive" } else { "negative" };
        let entry = sums.entry(label.to_string()).or_default();
        entry.0 += 1;
        // Teacher scores are stored as f32.
        entry.1 += f[4].parse::<f32>().unwrap() as f64;
    }
    sums.into_iter()
        .map(|(label, (count, sum))| (label, (count, sum / count as f64)))
        .collect()
}

fn check_distribution(output: &str) {
    let rows: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let expected = expected_distribution();
    assert_eq!(rows.len(), 2, "{output}");
    for row in rows {
        assert_eq!(row["teacher"], "bm25");
        let (pairs, mean) = expected[row["label"].as_str().unwrap()];
        assert_eq!(row["pairs"].as_u64().unwrap(), pairs, "{row}");
        assert!(
            (row["mean"].as_f64().unwrap() - mean).abs() < 1e-4,
            "{row}: expected mean {mean}"
        );
        assert!(row["stddev"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            row["p90"].as_f64().unwrap() > row["mean"].as_f64().unwrap(),
            "{row}"
        );
    }
}

#[test]
fn score_distribution_on_disk() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").to_string_lossy().into_owned();
    store_with_scores(&store, None);
    check_distribution(&run_ok(rankdistill(&store).args([
        "sql",
        DISTRIBUTION,
        "--format",
        "json",
    ])));

    let table = run_ok(rankdistill(&store).args(["sql", "SELECT count(*) AS n FROM candidates"]));
    assert!(table.contains("| 25800 |"), "{table}");
    let csv = run_ok(rankdistill(&store).args([
        "sql",
        "SELECT split, count(*) AS n FROM qrels GROUP BY split",
        "--format",
        "csv",
    ]));
    assert_eq!(csv.lines().collect::<Vec<_>>(), ["split,n", "test,9260"]);
}

#[test]
fn score_distribution_on_s3() {
    let moto = Moto::start();
    moto.create_bucket("sql");
    let store = "s3://sql/dl19";
    store_with_scores(store, Some(&moto));
    let mut command = rankdistill(store);
    moto.configure(&mut command);
    check_distribution(&run_ok(command.args(["sql", DISTRIBUTION, "--format", "json"])));
}

#[test]
fn sql_error_shows_query() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").to_string_lossy().into_owned();
    store_with_scores(&store, None);
    let error = run_err(rankdistill(&store).args(["sql", "SELECT nope FROM qrels"]));
    assert!(
        error.contains("query failed: Schema error: No field named nope"),
        "{error}"
    );
    assert!(error.contains("query: SELECT nope FROM qrels"), "{error}");
    assert!(!error.contains("panicked"), "{error}");
}
