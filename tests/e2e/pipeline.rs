//! `rankdistill pipeline`: the whole experiment on SciFact with tiny settings, then a re-run that
//! skips every finished step.

use tempfile::TempDir;

use crate::support::{data_dir, minilm_dir, rankdistill, run_ok, write_file};

#[test]
fn tiny_scifact_pipeline_resumes() {
    let dir = TempDir::new().unwrap();
    let config = format!(
        r#"
store = "{store}"
report = "{report}"
model = "{model}"

[collection]
beir = "{beir}"
train_split = "train"
test_split = "test"

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
        store = dir.path().join("store").display(),
        report = dir.path().join("report").display(),
        model = minilm_dir().display(),
        beir = data_dir().join("scifact").display(),
    );
    let config = write_file(dir.path(), "tiny.toml", config);

    let output = run_ok(rankdistill("unused").arg("pipeline").arg(&config));
    let results = std::fs::read_to_string(dir.path().join("report/results.md")).unwrap();
    assert_eq!(
        results.lines().count(),
        7,
        "header, rule, BM25 and four models:\n{results}"
    );
    for model in [
        "teacher",
        "student-contrastive",
        "student-distill",
        "peer-distill",
    ] {
        assert!(
            results.contains(&format!("| {model} |")),
            "{model} missing:\n{results}"
        );
    }
    assert!(output.contains("| bm25 | | | 0."), "{output}");
    for chart in ["teacher-scores.png", "training-curves.png"] {
        assert!(dir.path().join("report").join(chart).is_file(), "{chart}");
    }

    let again = run_ok(rankdistill("unused").arg("pipeline").arg(&config));
    for step in [
        "import",
        "pack distill",
        "train teacher",
        "train peer-distill",
        "rerank student-distill",
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
