//! BM25 retrieval with Lance's full-text index, against Anserini's published SciFact value.

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{data_dir, rankdistill, run_err, run_ok};

/// Anserini's BM25 nDCG@10 on the SciFact test queries, as the BEIR benchmark paper reports it
/// (Thakur et al., 2021).
const ANSERINI_SCIFACT_NDCG: f64 = 0.665;

#[test]
fn scifact_bm25_near_anserini() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").display().to_string();
    run_ok(
        rankdistill(&store)
            .args(["import", "beir"])
            .arg(data_dir().join("scifact")),
    );

    let output =
        run_ok(rankdistill(&store).args(["retrieve", "--k", "100", "--name", "bm25", "--split", "test"]));
    assert!(output.contains("for 300 queries as source bm25"), "{output}");
    let evaluation: Value = serde_json::from_str(&run_ok(rankdistill(&store).args([
        "evaluate",
        "--run",
        "bm25",
        "--split",
        "test",
        "--metrics",
        "nDCG@10,R@100",
        "--format",
        "json",
    ])))
    .unwrap();
    let ndcg = evaluation["mean"]["nDCG@10"].as_f64().unwrap();
    assert!(
        (ndcg - ANSERINI_SCIFACT_NDCG).abs() <= 0.05,
        "BM25 nDCG@10 {ndcg:.4} is more than 0.05 from Anserini's {ANSERINI_SCIFACT_NDCG}"
    );

    // Retrieving again under the same name replaces the candidates, at most 100 per query.
    run_ok(rankdistill(&store).args(["retrieve", "--k", "100", "--name", "bm25", "--split", "test"]));
    let csv = run_ok(rankdistill(&store).args([
        "sql",
        "SELECT count(*) AS pairs, count(DISTINCT query_id) AS queries, max(rank) AS deepest FROM candidates WHERE source = 'bm25'",
        "--format",
        "csv",
    ]));
    let row: Vec<u64> = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(row[1], 300);
    assert_eq!(row[2], 100);
    assert!(row[0] <= 30_000, "{} pairs", row[0]);
    assert!(row[0] > 29_000, "{} pairs", row[0]);

    let error = run_err(rankdistill(&store).args(["retrieve", "--split", "dev"]));
    assert!(error.contains("no qrels for split(s) dev"), "{error}");
}
