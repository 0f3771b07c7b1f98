#!/usr/bin/env bash
# Prints the data folder: $RANKDISTILL_DATA, else a shared/data folder beside or inside the
# checkout. Exits 1 with instructions when none exists.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ -n "${RANKDISTILL_DATA:-}" ]; then
  if [ ! -d "$RANKDISTILL_DATA" ]; then
    echo "RANKDISTILL_DATA=$RANKDISTILL_DATA is not a folder" >&2
    exit 1
  fi
  echo "$RANKDISTILL_DATA"
  exit 0
fi

for candidate in "$root/../shared/data" "$root/shared/data"; do
  if [ -d "$candidate" ]; then
    (cd "$candidate" && pwd)
    exit 0
  fi
done

cat >&2 <<'MSG'
No data folder found. Set RANKDISTILL_DATA to a folder that holds at least scifact/ in BEIR layout:
  scifact/corpus.jsonl.gz, scifact/queries.jsonl, scifact/qrels/{train,test}.tsv
The BEIR SciFact files are published at
  https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip
(unzip it and point RANKDISTILL_DATA at the folder that contains scifact/).
MSG
exit 1
