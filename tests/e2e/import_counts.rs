//! Importing every collection in the data folder gives the documented counts.

use std::collections::HashSet;

use tempfile::TempDir;

use crate::support::{candidates, data_dir, judgments, rankdistill, rows, run_ok, summary};

fn store_in(dir: &TempDir) -> String {
    dir.path().join("store").to_string_lossy().into_owned()
}

#[test]
fn scifact_beir_counts() {
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir);
    let folder = data_dir().join("scifact");
    run_ok(rankdistill(&store).args(["import", "beir"]).arg(&folder));

    assert_eq!(rows(&store, "passages"), 5_183);
    assert_eq!(rows(&store, "queries"), 1_109);
    let summary = summary(&store);
    assert_eq!(judgments(&summary, "train"), 919);
    assert_eq!(judgments(&summary, "test"), 339);
    assert_eq!(rows(&store, "qrels"), 919 + 339);
}

#[test]
fn trec_dl_2019_counts() {
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir);
    let folder = data_dir().join("trec-dl-2019");
    run_ok(
        rankdistill(&store)
            .args(["import", "msmarco"])
            .arg(&folder)
            .args(["--unknown", "keep"]),
    );

    assert_eq!(rows(&store, "queries"), 43);
    assert_eq!(rows(&store, "passages"), 9_383);
    let summary = summary(&store);
    assert_eq!(judgments(&summary, "test"), 9_260);
    assert_eq!(candidates(&summary, "bm25"), 4_300);
    let run_files = std::fs::read_dir(folder.join("runs")).unwrap().count() as u64;
    assert_eq!(rows(&store, "candidates"), 4_300 * run_files);
}

#[test]
fn trec_dl_2019_qrels_fail_without_keep() {
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir);
    let folder = data_dir().join("trec-dl-2019");
    let error = crate::support::run_err(rankdistill(&store).args(["import", "msmarco"]).arg(&folder));

    assert!(error.contains("qrels.txt"), "{error}");
    assert!(
        error.contains("rows name ids that are not in the store"),
        "{error}"
    );
    assert!(error.contains("--unknown keep"), "{error}");
    assert!(
        crate::support::table_info(&store).is_empty(),
        "a failed import wrote tables"
    );
}

#[test]
fn small_beir_collections_counts() {
    let cases = [
        ("cranfield", 1_400, 225, 1_837),
        ("vaswani", 11_429, 93, 2_083),
        ("noveleval", 420, 21, 420),
    ];
    for (name, passages, queries, qrels) in cases {
        let dir = TempDir::new().unwrap();
        let store = store_in(&dir);
        run_ok(
            rankdistill(&store)
                .args(["import", "beir"])
                .arg(data_dir().join(name)),
        );

        assert_eq!(rows(&store, "passages"), passages, "{name} passages");
        assert_eq!(rows(&store, "queries"), queries, "{name} queries");
        assert_eq!(judgments(&summary(&store), "test"), qrels, "{name} qrels");
    }
}

#[test]
fn msmarco_triples_sample_counts() {
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir);
    let file = data_dir().join("msmarco-triples-sample/triples.train.sample.tsv");
    run_ok(rankdistill(&store).args(["import", "triples"]).arg(&file));

    let text = std::fs::read_to_string(&file).unwrap();
    let triples: Vec<Vec<&str>> = text.lines().map(|line| line.split('\t').collect()).collect();
    assert_eq!(triples.len(), 100);
    let queries: HashSet<&str> = triples.iter().map(|t| t[0]).collect();
    let passages: HashSet<&str> = triples.iter().flat_map(|t| [t[1], t[2]]).collect();

    assert_eq!(rows(&store, "queries"), queries.len() as u64);
    assert_eq!(rows(&store, "passages"), passages.len() as u64);
    let summary = summary(&store);
    assert_eq!(judgments(&summary, "train"), 100);
    assert_eq!(candidates(&summary, "triples"), 100);
}
