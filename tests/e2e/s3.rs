//! The same imports against an S3 store on the moto emulator read back the same rows as on disk,
//! and sources can be read from S3 too.

use tempfile::TempDir;

use crate::support::{data_dir, export_sorted, rankdistill, run_ok, Moto};

const TABLES: [&str; 4] = ["passages", "queries", "qrels", "candidates"];

fn import(store: &str, moto: &Moto, args: &[&str]) {
    let mut command = rankdistill(store);
    moto.configure(&mut command);
    run_ok(command.args(args));
}

fn export(store: &str, moto: &Moto, table: &str) -> Vec<String> {
    let mut command = rankdistill(store);
    moto.configure(&mut command);
    let output = run_ok(command.args(["store", "export", table]));
    let mut lines: Vec<String> = output.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn s3_store_matches_local_store() {
    let moto = Moto::start();
    moto.create_bucket("rankdistill");
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("store").to_string_lossy().into_owned();
    let remote = "s3://rankdistill/stores/dl19";
    let folder = data_dir().join("trec-dl-2019");
    let folder = folder.to_str().unwrap();
    let args = ["import", "msmarco", folder, "--unknown", "keep"];

    import(&local, &moto, &args);
    import(remote, &moto, &args);
    import(remote, &moto, &args);

    for table in TABLES {
        let expected = export_sorted(&local, table, &[]);
        assert!(!expected.is_empty(), "local table {table} is empty");
        assert_eq!(
            export(remote, &moto, table),
            expected,
            "table {table} differs between disk and S3"
        );
    }

    let mut command = rankdistill(remote);
    moto.configure(&mut command);
    let versions = run_ok(command.args(["store", "versions", "passages"]));
    assert_eq!(
        versions.lines().count(),
        3,
        "two imports give two versions:\n{versions}"
    );
}

#[test]
fn beir_folder_read_from_s3() {
    let moto = Moto::start();
    moto.create_bucket("data");
    moto.create_bucket("stores");
    let scifact = data_dir().join("scifact");
    for name in [
        "corpus.jsonl.gz",
        "queries.jsonl",
        "qrels/train.tsv",
        "qrels/test.tsv",
    ] {
        let body = std::fs::read(scifact.join(name)).unwrap();
        moto.put_object("data", &format!("beir/scifact/{name}"), &body);
    }
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("store").to_string_lossy().into_owned();

    import(&local, &moto, &["import", "beir", scifact.to_str().unwrap()]);
    import(
        "s3://stores/scifact",
        &moto,
        &["import", "beir", "s3://data/beir/scifact"],
    );

    for table in ["passages", "queries", "qrels"] {
        let expected = export_sorted(&local, table, &[]);
        assert!(!expected.is_empty(), "local table {table} is empty");
        assert_eq!(
            export("s3://stores/scifact", &moto, table),
            expected,
            "table {table} differs"
        );
    }
}
