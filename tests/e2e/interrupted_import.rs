//! An import killed before its commit leaves the previous version readable and complete.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{export_sorted, rankdistill, rows, run_ok, table_info, write_file};

/// Writes a corpus large enough that importing it takes several seconds.
fn write_large_corpus(path: &std::path::Path, passages: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..passages {
        writeln!(
            out,
            "{{\"_id\": \"big{i}\", \"title\": \"title {i}\", \"text\": \"passage {i} with enough words to make the file large, {}\"}}",
            "lorem ipsum dolor sit amet ".repeat(8)
        )
        .unwrap();
    }
}

#[test]
fn killed_import_keeps_previous_version() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store").to_string_lossy().into_owned();
    let small = write_file(dir.path(), "small.tsv", "d1\tone\nd2\ttwo\n");
    run_ok(rankdistill(&store).args(["import", "passages"]).arg(&small));
    let info_before = table_info(&store);
    let rows_before = export_sorted(&store, "passages", &[]);

    let large = dir.path().join("large.jsonl");
    write_large_corpus(&large, 400_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rankdistill"))
        .args(["--store", &store, "import", "passages"])
        .arg(&large)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the import has started reading, then give it time to stage some data files.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let started = Instant::now();
    for line in stderr.lines() {
        if line.unwrap().contains("import started") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the import did not start"
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import finished before it could be killed; use a larger file"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(table_info(&store), info_before);
    assert_eq!(export_sorted(&store, "passages", &[]), rows_before);

    run_ok(rankdistill(&store).args(["import", "passages"]).arg(&large));
    assert_eq!(rows(&store, "passages"), 400_000);
}
