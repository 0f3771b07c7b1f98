#!/usr/bin/env bash
# Training benchmark: groups/s and tokens/s of `rankdistill train` (MiniLM-L6, QUERIES queries x
# GROUP passages, max length MAX_LEN, forward + backward + AdamW) against a PyTorch loop doing the
# same work, in the same run, on SciFact training groups with random negatives. Also the loader
# alone (read, shuffle, sample, tokenize) from disk and from a moto S3 emulator on 127.0.0.1.
# Usage: scripts/bench-train.sh [STEPS] [QUERIES] [GROUP] [MAX_LEN]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${1:-6}
queries=${2:-4}
group=${3:-8}
max_len=${4:-256}
bin="$root/target/debug/rankdistill"
data=$("$root/scripts/data-dir.sh")/scifact
model=$("$root/scripts/fetch-model.sh")
work=$(mktemp -d)
moto_pid=""
cleanup() { [ -n "$moto_pid" ] && kill "$moto_pid" 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Negatives: 30 random passages per training query (no first-stage run ships with SciFact).
python3 - "$data" > "$work/random.trec" <<'PY'
import gzip, json, random, sys
data = sys.argv[1]
docs = [json.loads(line)["_id"] for line in gzip.open(f"{data}/corpus.jsonl.gz", "rt")]
rng = random.Random(5)
queries = sorted({line.split("\t")[0] for line in list(open(f"{data}/qrels/train.tsv"))[1:]})
for query in queries:
    for rank, doc in enumerate(rng.sample(docs, 30)):
        print(f"{query} Q0 {doc} {rank + 1} {30 - rank} random")
PY
store="$work/store"
"$bin" -q --store "$store" import beir "$data" > /dev/null
"$bin" -q --store "$store" import run "$work/random.trec" --source random > /dev/null
"$bin" -q --store "$store" pack --name bench --source random --depth 30 > /dev/null
"$bin" -q --store "$store" store export groups --out "$work/groups.jsonl"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "work: MiniLM-L6, $queries queries x $group passages, max length $max_len, $steps steps (the first is not timed)"
"$bin" -q --store "$store" train --groups bench --model "$model" --out "$work/out" --run bench \
  --max-steps "$steps" --queries-per-step "$queries" --group-size "$group" --max-len "$max_len" --checkpoint-every 0 > /dev/null
"$bin" -q --store "$store" sql "SELECT count(*) AS steps, sum($queries) / sum($queries / groups_per_second) AS groups_per_second, \
  sum(tokens_per_second * $queries / groups_per_second) / sum($queries / groups_per_second) AS tokens_per_second \
  FROM train_log WHERE run = 'bench' AND step > 1" --format csv | tail -1 \
  | awk -F, '{ printf "rankdistill: %d steps, %.3f groups/s, %.0f tokens/s\n", $1, $2, $3 }'
python3 "$root/benches/train_pytorch.py" "$model" "$work/groups.jsonl" "$steps" "$queries" "$group" "$max_len" 2> /dev/null

# The loader alone, from disk and from S3.
batches=200
echo "loader, disk: $("$bin" -q --store "$store" train --groups bench --model "$model" --out "$work/none" \
  --queries-per-step "$queries" --group-size "$group" --max-len "$max_len" --loader-only "$batches")"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" > /dev/null 2>&1 &
moto_pid=$!
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port" && break; sleep 0.2; done
curl -s -X PUT "http://127.0.0.1:$port/bench" > /dev/null
s3="s3://bench/store"
"$bin" -q --store "$s3" import beir "$data" > /dev/null
"$bin" -q --store "$s3" import run "$work/random.trec" --source random > /dev/null
"$bin" -q --store "$s3" pack --name bench --source random --depth 30 > /dev/null
echo "loader, S3 emulator: $("$bin" -q --store "$s3" train --groups bench --model "$model" --out "$work/none" \
  --queries-per-step "$queries" --group-size "$group" --max-len "$max_len" --loader-only "$batches")"
