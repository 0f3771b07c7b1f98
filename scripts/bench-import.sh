#!/usr/bin/env bash
# Import benchmark: rows/s and peak RSS of `rankdistill import passages` on synthetic BEIR
# corpora of 100k and 1M passages, against pylance writing the same file in the same run.
# Usage: scripts/bench-import.sh [WORK_DIR]   (needs python3 with pylance and pyarrow)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
bin="$root/target/debug/rankdistill"
mkdir -p "$work"

measure() {  # label, command...: prints "label wall_seconds peak_rss_kib"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > /dev/null 2> "$work/stderr.txt" || { cat "$work/stderr.txt"; exit 1; }
  echo "$label $(cat "$work/time.txt")"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
for count in 100000 1000000; do
  corpus="$work/corpus-$count.jsonl"
  [ -f "$corpus" ] || python3 "$root/benches/gen_corpus.py" "$corpus" "$count"
  rm -rf "$work/store" "$work/peer.lance"
  read -r _ r_wall r_rss < <(measure rankdistill "$bin" --quiet --store "$work/store" import passages "$corpus")
  read -r _ p_wall p_rss < <(measure pylance python3 "$root/benches/import_pylance.py" "$corpus" "$work/peer.lance")
  awk -v n="$count" -v rw="$r_wall" -v rr="$r_rss" -v pw="$p_wall" -v pr="$p_rss" -v mb="$(du -m "$corpus" | cut -f1)" 'BEGIN {
    printf "%d passages (%d MB): rankdistill %.1f s, %.0f rows/s, peak RSS %.0f MiB | pylance %.1f s, %.0f rows/s, peak RSS %.0f MiB | speed ratio %.2f\n",
      n, mb, rw, n / rw, rr / 1024, pw, n / pw, pr / 1024, pw / rw }'
done
