#!/usr/bin/env bash
# Scoring benchmark: pairs/s of `rankdistill score` with all-MiniLM-L6-v2 on TREC DL 2019 BM25
# candidates, against PyTorch transformers scoring the same pairs with the same max length and
# batch size, in the same run. Usage: scripts/bench-score.sh [QUERIES] [MAX_LEN]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
queries=${1:-10}
max_len=${2:-256}
batch=64
bin="$root/target/debug/rankdistill"
data=$("$root/scripts/data-dir.sh")/trec-dl-2019
model=$("$root/scripts/fetch-model.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The first QUERIES queries of the BM25 run, 100 candidates each.
awk -v n="$queries" '{ if (!($1 in seen)) { seen[$1] = 1; count++ } if (count <= n) print }' "$data/runs/bm25.trec" > "$work/run.trec"
store="$work/store"
"$bin" -q --store "$store" import passages "$data/collection.tsv.gz" > /dev/null
"$bin" -q --store "$store" import queries "$data/queries.tsv" > /dev/null
"$bin" -q --store "$store" import run "$work/run.trec" --source bm25 > /dev/null

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "pairs: $(wc -l < "$work/run.trec") (DL19 BM25, $queries queries), max length $max_len, batch $batch"
"$bin" -q --store "$store" score --teacher "$model" --name bench --max-len "$max_len" --batch "$batch" --commit-every 100000 \
  | sed 's/^/rankdistill: /'

# The same pairs as text, for the peer.
python3 - "$data" "$work/run.trec" > "$work/pairs.tsv" <<'PY'
import gzip, sys
data, run = sys.argv[1], sys.argv[2]
queries = dict(line.rstrip("\n").split("\t", 1) for line in open(f"{data}/queries.tsv", encoding="utf-8"))
needed = [line.split()[:3:2] for line in open(run)]
needed_docs = {doc for _, doc in needed}
passages = {}
with gzip.open(f"{data}/collection.tsv.gz", "rt", encoding="utf-8") as f:
    for line in f:
        doc, text = line.rstrip("\n").split("\t", 1)
        if doc in needed_docs:
            passages[doc] = text
for query, doc in needed:
    print(f"{queries[query]}\t{passages[doc]}")
PY
python3 "$root/benches/score_pytorch.py" "$model" "$work/pairs.tsv" "$max_len" "$batch" 2>/dev/null
