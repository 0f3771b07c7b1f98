//! Helpers shared by the end-to-end tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Returns the real data folder: `RANKDISTILL_DATA`, else `shared/data` beside or inside the checkout.
pub fn data_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RANKDISTILL_DATA") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in [root.join("../shared/data"), root.join("shared/data")] {
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!("no data folder: set RANKDISTILL_DATA to the folder holding scifact/, trec-dl-2019/, ...");
}

/// Builds a `rankdistill` command against `store`, with logs kept to warnings.
pub fn rankdistill(store: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rankdistill"));
    command.arg("--store").arg(store).arg("--quiet");
    command.env_remove("RUST_LOG");
    command
}

/// Runs the command and returns its standard output, failing the test with stderr otherwise.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("the rankdistill binary runs");
    assert!(
        output.status.success(),
        "command {command:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("output is UTF-8")
}

/// Runs the command, expects it to fail, and returns its standard error.
pub fn run_err(command: &mut Command) -> String {
    let output: Output = command.output().expect("the rankdistill binary runs");
    assert!(
        !output.status.success(),
        "command {command:?} succeeded but was expected to fail:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).expect("stderr is UTF-8")
}

/// Returns `store info --format json` as (table -> rows, version) pairs.
pub fn table_info(store: &str) -> Vec<(String, u64, u64)> {
    let output = run_ok(rankdistill(store).args(["store", "info", "--format", "json"]));
    let info: Value = serde_json::from_str(&output).expect("store info prints JSON");
    info["tables"]
        .as_array()
        .expect("tables is an array")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["rows"].as_u64().unwrap(),
                t["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Returns the row count of `table`, 0 when the table does not exist.
pub fn rows(store: &str, table: &str) -> u64 {
    table_info(store)
        .into_iter()
        .find(|(name, _, _)| name == table)
        .map(|(_, rows, _)| rows)
        .unwrap_or(0)
}

/// Returns `store summary --format json`.
pub fn summary(store: &str) -> Value {
    let output = run_ok(rankdistill(store).args(["store", "summary", "--format", "json"]));
    serde_json::from_str(&output).expect("store summary prints JSON")
}

/// Returns the judgments of one qrels split from a summary.
pub fn judgments(summary: &Value, split: &str) -> u64 {
    summary["splits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["split"] == split)
        .unwrap_or_else(|| panic!("split {split} not in summary {summary}"))["judgments"]
        .as_u64()
        .unwrap()
}

/// Returns the candidates of one source from a summary.
pub fn candidates(summary: &Value, source: &str) -> u64 {
    summary["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source)
        .unwrap_or_else(|| panic!("source {source} not in summary {summary}"))["candidates"]
        .as_u64()
        .unwrap()
}

/// Returns every row of `table` as sorted JSON lines.
pub fn export_sorted(store: &str, table: &str, extra: &[&str]) -> Vec<String> {
    let output = run_ok(rankdistill(store).args(["store", "export", table]).args(extra));
    let mut lines: Vec<String> = output.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Writes `contents` to `dir/name`, creating parent folders.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
}

/// A moto S3 emulator on 127.0.0.1, stopped (by its PID) when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port. Fails the test when moto is not installed,
    /// because the S3 tests are part of the suite (`.ci/run` installs it).
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server not found: install it with pip install \"moto[server]\"");
        let moto = Self { child, port };
        moto.wait_until_ready();
        moto
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "moto_server did not listen on 127.0.0.1:{} within 30 s",
            self.port
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket; object_store does not create buckets itself.
    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"), &[]);
        assert!(status == 200, "creating bucket {bucket} returned HTTP {status}");
    }

    /// Uploads one object (moto accepts unsigned requests).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let status = self.request("PUT", &format!("/{bucket}/{key}"), body);
        assert!(status == 200, "uploading {key} returned HTTP {status}");
    }

    /// Returns whether an object exists, from a bucket listing (moto rejects unsigned HEAD
    /// requests).
    pub fn object_exists(&self, bucket: &str, key: &str) -> bool {
        let response = self.exchange("GET", &format!("/{bucket}?prefix={key}"), &[]);
        response.contains(&format!("<Key>{key}</Key>"))
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> u16 {
        let response = self.exchange(method, path, body);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("unexpected response from moto: {response}"))
    }

    /// Sends one plain HTTP/1.1 request and returns the whole response.
    fn exchange(&self, method: &str, path: &str, body: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// Sets the AWS variables that point a command at this emulator.
    pub fn configure(&self, command: &mut Command) {
        command
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ALLOW_HTTP", "true");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Returns the all-MiniLM-L6-v2 folder: RANKDISTILL_MINILM, or where `make model` puts it.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var("RANKDISTILL_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(&std::env::var("HOME").unwrap()).join(".cache/rankdistill/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "MiniLM not found in {}: run `make model`",
        dir.display()
    );
    dir
}

/// Writes the first `queries` queries of the DL19 BM25 run, down to rank `depth`, to small.trec.
pub fn small_run(dir: &Path, queries: usize, depth: usize) -> PathBuf {
    let text = std::fs::read_to_string(data_dir().join("trec-dl-2019/runs/bm25.trec")).unwrap();
    let mut seen: Vec<&str> = Vec::new();
    let mut run_lines = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !seen.contains(&fields[0]) {
            seen.push(fields[0]);
        }
        let rank: usize = fields[3].parse().unwrap();
        if seen.len() <= queries && rank <= depth {
            run_lines.push_str(line);
            run_lines.push('\n');
        }
    }
    write_file(dir, "small.trec", run_lines)
}
