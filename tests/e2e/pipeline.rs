//! `rankdistill pipeline`: the whole experiment with tiny settings, trained on SciFact or on
//! TREC DL 2019 and evaluated out of domain, then a re-run that skips every finished step.

use std::path::Path;

use tempfile::TempDir;

use crate::support::{data_dir, minilm_dir, rankdistill, run_err, run_ok, write_file};

const MODELS: [&str; 4] = [
    "teacher",
    "student-contrastive",
    "student-distill",
    "peer-distill",
];

/// Returns a tiny config: `collection` is the `[collection]` table, `evaluation` the
/// `[[evaluation]]` tables.
fn tiny_config(dir: &Path, collection: &str, evaluation: &str) -> String {
    format!(
        r#"
store = "{store}"
report = "{report}"
model = "{model}"

{collection}

{evaluation}

[retrieval]
train_k = 10
test_k = 10

[training]
max_len = 32
group_size = 4
queries_per_step = 2
steps = 2
lr = 1e-3
temperature = 1.0
seed = 42

[teacher]
layers = 2

[student]
layers = 1

[rerank]
top_k = 5
max_len = 32
"#,
        store = dir.join("store").display(),
        report = dir.join("report").display(),
        model = minilm_dir().display(),
    )
}

fn folder(name: &str) -> String {
    data_dir().join(name).display().to_string()
}

/// Returns the rows of the per-collection table of results.md that name `collection`.
fn rows_of<'a>(results: &'a str, collection: &str) -> Vec<&'a str> {
    let prefix = format!("| {collection} |");
    results.lines().filter(|line| line.starts_with(&prefix)).collect()
}

#[test]
fn tiny_scifact_pipeline_resumes() {
    let dir = TempDir::new().unwrap();
    let collection = format!(
        "[collection]\nname = \"scifact\"\nbeir = \"{}\"\ntrain_split = \"train\"\ntest_split = \"test\"",
        folder("scifact")
    );
    let evaluation = format!(
        "[[evaluation]]\nname = \"noveleval\"\nbeir = \"{}\"\ntest_split = \"test\"\n\n\
         [[evaluation]]\nname = \"trec-dl-2020\"\nmsmarco = \"{}\"\ntest_split = \"test\"\nrelevant_grade = 2",
        folder("noveleval"),
        folder("trec-dl-2020")
    );
    let config = tiny_config(dir.path(), &collection, &evaluation);
    let config = write_file(dir.path(), "tiny.toml", config);

    let output = run_ok(rankdistill("unused").arg("pipeline").arg(&config));
    let results = std::fs::read_to_string(dir.path().join("report/results.md")).unwrap();
    for collection in ["scifact (in domain)", "noveleval", "trec-dl-2020"] {
        let rows = rows_of(&results, collection);
        assert_eq!(rows.len(), 5, "BM25 and four models on {collection}:\n{results}");
        for model in MODELS {
            assert!(
                rows.iter().any(|row| row.contains(&format!("| {model} |"))),
                "{model} missing on {collection}:\n{results}"
            );
        }
    }
    // The shipped DL20 BM25 run, evaluated from the evaluation store, gives the official value.
    assert!(
        results.contains("| trec-dl-2020 | bm25 | | | 0.4796 |"),
        "{results}"
    );
    assert!(output.contains("| bm25 | | | 0."), "{output}");
    assert!(dir.path().join("store-noveleval").is_dir());
    for chart in ["teacher-scores.png", "training-curves.png"] {
        assert!(dir.path().join("report").join(chart).is_file(), "{chart}");
    }

    let again = run_ok(rankdistill("unused").arg("pipeline").arg(&config));
    for step in [
        "import scifact",
        "import trec-dl-2020",
        "retrieve bm25",
        "pack distill",
        "train teacher",
        "train peer-distill",
        "rerank scifact with student-distill",
        "rerank noveleval with teacher",
    ] {
        assert!(
            again.contains(&format!("== {step}: already done")),
            "{step} was not skipped:\n{again}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("report/results.md")).unwrap(),
        results
    );
}

#[test]
fn tiny_dl19_pipeline_uses_shipped_run() {
    let dir = TempDir::new().unwrap();
    let collection = format!(
        "[collection]\nname = \"trec-dl-2019\"\nmsmarco = \"{}\"\ntrain_split = \"train\"\nrelevant_grade = 2",
        folder("trec-dl-2019")
    );
    let evaluation = format!(
        "[[evaluation]]\nname = \"noveleval\"\nbeir = \"{}\"\ntest_split = \"test\"",
        folder("noveleval")
    );
    let config = tiny_config(dir.path(), &collection, &evaluation);
    let config = write_file(dir.path(), "tiny.toml", config);

    let output = run_ok(rankdistill("unused").arg("pipeline").arg(&config));
    assert!(
        output.contains("pack contrastive: rankdistill") && output.contains("--source bm25 "),
        "DL19 groups come from the shipped BM25 run:\n{output}"
    );
    assert!(!output.contains("retrieve bm25-train"), "{output}");
    let results = std::fs::read_to_string(dir.path().join("report/results.md")).unwrap();
    assert_eq!(rows_of(&results, "noveleval").len(), 5, "{results}");
    assert!(
        !results.contains("(in domain)"),
        "no test split on the training collection:\n{results}"
    );
}

#[test]
fn pipeline_config_errors_name_the_problem() {
    let dir = TempDir::new().unwrap();
    let both = format!(
        "[collection]\nname = \"trec-dl-2019\"\nmsmarco = \"{}\"\ntrain_split = \"train\"\ntest_split = \"test\"",
        folder("trec-dl-2019")
    );
    let neither = "[collection]\nname = \"scifact\"\ntrain_split = \"train\"".to_string();
    let cases = [
        (both, "cannot give both"),
        (neither, "exactly one of beir = ... or msmarco = ..."),
    ];
    for (collection, message) in cases {
        let config = tiny_config(dir.path(), &collection, "");
        let config = write_file(dir.path(), "bad.toml", config);
        let error = run_err(rankdistill("unused").arg("pipeline").arg(&config));
        assert!(error.contains(message), "{error}");
        assert!(error.contains("bad.toml"), "{error}");
        assert!(!dir.path().join("store").exists(), "nothing is written");
    }
}
