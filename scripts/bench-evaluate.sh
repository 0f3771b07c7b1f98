#!/usr/bin/env bash
# Evaluate benchmark: wall time and peak RSS of `rankdistill evaluate` on a synthetic TREC run of
# 1M lines (10k queries x 100 passages). The peer, in the same run, is pytrec_eval reading the
# same files and computing the same measures in Python. Both are timed end to end, from the files
# to the printed means. Each runs 3 times: the script prints the best wall time and the highest
# peak RSS.
# Usage: [RUNS=3] scripts/bench-evaluate.sh [WORK_DIR]   (needs python3 with numpy, pytrec_eval)
# A WORK_DIR is kept, and the files in it are reused by the next run. Without one, a temporary
# folder is used and removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug/rankdistill"
runs=${RUNS:-3}
measures="nDCG@10,RR@10,AP,R@100,P@10"
threshold=2
if [ $# -ge 1 ]; then
  work=$1
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

output_ext=json
# shellcheck source=scripts/bench-measure.sh
source "$root/scripts/bench-measure.sh"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "pytrec-eval-terrier $(python3 -c 'import importlib.metadata as m; print(m.version("pytrec-eval-terrier"))')"
if [ ! -f "$work/run.trec" ] || [ ! -f "$work/qrels.txt" ]; then
  python3 "$root/benches/gen_run.py" "$work/run.trec" "$work/qrels.txt"
fi
echo "run: $(wc -l < "$work/run.trec") lines, $(du -m "$work/run.trec" | cut -f1) MB; qrels: $(wc -l < "$work/qrels.txt") lines"

read -r _ r_wall r_rss r_busy r_cpu < <(measure rankdistill "$bin" -q evaluate --run-file "$work/run.trec" \
  --qrels-file "$work/qrels.txt" --metrics "$measures" --rel-threshold "$threshold" --format json)
read -r _ p_wall p_rss p_busy p_cpu < <(measure pytrec_eval python3 "$root/benches/evaluate_pytrec.py" \
  "$work/run.trec" "$work/qrels.txt" "$threshold")
busy=no
[ "$r_busy" = yes ] || [ "$p_busy" = yes ] && busy=yes
awk -v rw="$r_wall" -v rr="$r_rss" -v pw="$p_wall" -v pr="$p_rss" -v busy="$busy" -v rc="$r_cpu" -v pc="$p_cpu" 'BEGIN {
  printf "rankdistill %.2f s, peak RSS %.0f MiB | pytrec_eval %.2f s, peak RSS %.0f MiB | speed ratio (rankdistill / pytrec_eval) %.2f | rustc running: %s, other load: %d%% and %d%% of one core\n",
    rw, rr / 1024, pw, pr / 1024, pw / rw, busy, rc, pc }'

# Both must evaluate the same queries and agree on every mean to 1e-4.
python3 - "$work/rankdistill.json" "$work/pytrec_eval.json" <<'PY'
import json
import sys

ours, peer = (json.load(open(path)) for path in sys.argv[1:3])
print(f"queries: rankdistill {ours['queries']}, pytrec_eval {peer['queries']}")
mismatches = [] if ours["queries"] == peer["queries"] else ["the numbers of evaluated queries differ"]
for name, value in peer["mean"].items():
    print(f"{name}: rankdistill {ours['mean'][name]:.6f}, pytrec_eval {value:.6f}")
    if abs(ours["mean"][name] - value) > 1e-4:
        mismatches.append(f"{name} differs by more than 1e-4")
if mismatches:
    sys.exit("\n".join(mismatches))
print("every mean agrees to 1e-4")
PY
