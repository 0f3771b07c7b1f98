//! `rankdistill evaluate` gives trec_eval's values: per query, against pytrec_eval, on every run
//! shipped with TREC DL 2019 and 2020.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{data_dir, rankdistill, run_err, run_ok};

fn evaluate_json(run: &Path, qrels: &Path, threshold: &str) -> Value {
    let output = run_ok(
        rankdistill("unused-store")
            .args([
                "evaluate",
                "--metrics",
                "nDCG@10,RR,AP,R@100,P@10",
                "--rel-threshold",
                threshold,
            ])
            .args(["--per-query", "--format", "json", "--run-file"])
            .arg(run)
            .arg("--qrels-file")
            .arg(qrels),
    );
    serde_json::from_str(&output).unwrap()
}

/// Returns pytrec_eval's values; fails when it is missing in CI, skips otherwise.
fn pytrec_reference(run: &Path, qrels: &Path, threshold: &str) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/pytrec_reference.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(qrels)
        .arg(run)
        .arg(threshold)
        .output()
        .unwrap();
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        if std::env::var("CI").is_ok_and(|v| v == "true")
            || !message.contains("No module named 'pytrec_eval'")
        {
            panic!("pytrec_reference.py failed: {message}");
        }
        eprintln!("skipping: pytrec_eval is not installed");
        return None;
    }
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

#[test]
fn bm25_ndcg_matches_published_values() {
    for (collection, expected) in [("trec-dl-2019", 0.5058), ("trec-dl-2020", 0.4796)] {
        let folder = data_dir().join(collection);
        let result = evaluate_json(&folder.join("runs/bm25.trec"), &folder.join("qrels.txt"), "2");
        let ndcg = result["mean"]["nDCG@10"].as_f64().unwrap();
        assert!(
            (ndcg - expected).abs() < 5e-5,
            "{collection} BM25 nDCG@10 is {ndcg}, expected {expected}"
        );
    }
}

#[test]
fn every_dl_run_matches_pytrec_eval() {
    for collection in ["trec-dl-2019", "trec-dl-2020"] {
        let folder = data_dir().join(collection);
        let qrels = folder.join("qrels.txt");
        for entry in std::fs::read_dir(folder.join("runs")).unwrap() {
            let run = entry.unwrap().path();
            let Some(reference) = pytrec_reference(&run, &qrels, "2") else {
                return;
            };
            let ours = evaluate_json(&run, &qrels, "2");
            let reference = reference.as_object().unwrap();
            assert_eq!(
                ours["queries"].as_u64().unwrap() as usize,
                reference.len(),
                "{}",
                run.display()
            );

            for (query_id, values) in reference {
                for (measure, expected) in values.as_object().unwrap() {
                    let actual = ours["per_query"][query_id][measure].as_f64().unwrap();
                    let expected = expected.as_f64().unwrap();
                    assert!(
                        (actual - expected).abs() < 1e-4,
                        "{} query {query_id} {measure}: rankdistill {actual}, trec_eval {expected}",
                        run.display()
                    );
                }
            }
        }
    }
}

#[test]
fn unknown_measure_rejected() {
    let folder = data_dir().join("trec-dl-2019");
    let error = run_err(
        rankdistill("unused-store")
            .args(["evaluate", "--metrics", "nDCG@10,bpref", "--run-file"])
            .arg(folder.join("runs/bm25.trec"))
            .arg("--qrels-file")
            .arg(folder.join("qrels.txt")),
    );
    assert!(error.contains("unknown measure \"bpref\""), "{error}");
}
