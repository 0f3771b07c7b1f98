#!/usr/bin/env bash
# SQL benchmark: wall time and peak RSS of the teacher-score distribution query (positives
# against negatives per teacher) with `rankdistill sql` over a store of 10M teacher scores.
# The peer, in the same run, is DuckDB running the same query over the same rows in Parquet files.
# Each query runs 3 times per engine: the script prints the best wall time and the highest peak
# RSS of the 3 runs. Smaller queries then show where the time goes.
# Usage: [RUNS=3] scripts/bench-sql.sh [WORK_DIR]   (needs python3 with pylance, pyarrow, numpy, duckdb)
# A WORK_DIR is kept, and the data in it is reused by the next run. Without one, a temporary
# folder is used and removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug/rankdistill"
runs=${RUNS:-3}
if [ $# -ge 1 ]; then
  work=$1
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

# The query of tests/e2e/sql.rs, with p10 and p50 added.
distribution="SELECT s.teacher, CASE WHEN q.relevance >= 2 THEN 'positive' ELSE 'negative' END AS label,
  count(*) AS pairs, avg(s.score) AS mean, stddev(s.score) AS stddev,
  approx_percentile_cont(0.1) WITHIN GROUP (ORDER BY s.score) AS p10,
  approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY s.score) AS p50,
  approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY s.score) AS p90
FROM teacher_scores s LEFT JOIN qrels q ON s.query_id = q.query_id AND s.doc_id = q.doc_id
GROUP BY 1, 2 ORDER BY 1, 2"
# The same query without the percentiles, the join without grouping, a scan with one
# aggregate per teacher, and a row count.
no_percentiles="SELECT s.teacher, CASE WHEN q.relevance >= 2 THEN 'positive' ELSE 'negative' END AS label,
  count(*) AS pairs, avg(s.score) AS mean, stddev(s.score) AS stddev
FROM teacher_scores s LEFT JOIN qrels q ON s.query_id = q.query_id AND s.doc_id = q.doc_id
GROUP BY 1, 2 ORDER BY 1, 2"
join_count="SELECT count(*) AS pairs
FROM teacher_scores s LEFT JOIN qrels q ON s.query_id = q.query_id AND s.doc_id = q.doc_id"
scan="SELECT teacher, count(*) AS pairs, avg(score) AS mean FROM teacher_scores GROUP BY teacher ORDER BY teacher"
row_count="SELECT count(*) AS pairs FROM teacher_scores"

# DuckDB's name for the approximate percentile: approx_quantile(column, fraction).
duckdb_dialect() {
  sed -E 's/approx_percentile_cont\(([0-9.]+)\) WITHIN GROUP \(ORDER BY ([a-z_.]+)\)/approx_quantile(\2, \1)/g' <<< "$1"
}

output_ext=csv
# shellcheck source=scripts/bench-measure.sh
source "$root/scripts/bench-measure.sh"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)'), pylance $(python3 -c 'import lance; print(lance.__version__)')"
if [ ! -d "$work/store/teacher_scores.lance" ] || [ ! -f "$work/parquet/qrels.parquet" ]; then
  python3 "$root/benches/gen_scores.py" "$work" 2> /dev/null
fi
echo "data: $(du -sm "$work/store" | cut -f1) MB as Lance, $(du -sm "$work/parquet" | cut -f1) MB as Parquet"

for name in distribution no_percentiles join_count scan row_count; do
  sql=${!name}
  read -r _ r_wall r_rss r_busy r_cpu < <(measure "$name-rankdistill" "$bin" -q --store "$work/store" sql "$sql" --format csv)
  read -r _ d_wall d_rss d_busy d_cpu < <(measure "$name-duckdb" python3 "$root/benches/sql_duckdb.py" "$work/parquet" "$(duckdb_dialect "$sql")")
  busy=no
  [ "$r_busy" = yes ] || [ "$d_busy" = yes ] && busy=yes
  awk -v q="$name" -v rw="$r_wall" -v rr="$r_rss" -v dw="$d_wall" -v dr="$d_rss" -v busy="$busy" -v rc="$r_cpu" -v dc="$d_cpu" 'BEGIN {
    printf "%s: rankdistill %.2f s, peak RSS %.0f MiB | DuckDB %.2f s, peak RSS %.0f MiB | speed ratio (rankdistill / DuckDB) %.2f | rustc running: %s, other load: %d%% and %d%% of one core\n",
      q, rw, rr / 1024, dw, dr / 1024, dw / rw, busy, rc, dc }'
done

# Both engines must return the same rows: counts exactly, means and standard deviations to 1e-9
# relative. The approximate percentiles differ by algorithm, so they are printed, not checked.
python3 - "$work" <<'PY'
import csv
import sys

work = sys.argv[1]
exact = ("teacher", "label", "pairs")


def same(column, ours, peer):
    if column in exact:
        return ours == peer
    if column in ("mean", "stddev"):
        return abs(float(ours) - float(peer)) <= 1e-9 * max(1.0, abs(float(peer)))
    return True


def show(row):
    return ", ".join(row[column] if column in exact else f"{column} {float(row[column]):.6g}" for column in row)


mismatches = []
for name in ["distribution", "no_percentiles", "join_count", "scan", "row_count"]:
    ours = list(csv.DictReader(open(f"{work}/{name}-rankdistill.csv")))
    peer = list(csv.DictReader(open(f"{work}/{name}-duckdb.csv")))
    if name == "distribution":
        print("distribution rows, rankdistill then DuckDB:")
        for ours_row, peer_row in zip(ours, peer):
            print(f"  {show(ours_row)}\n  {show(peer_row)}")
    if len(ours) != len(peer):
        mismatches.append(f"{name}: {len(ours)} rows from rankdistill, {len(peer)} from DuckDB")
    for ours_row, peer_row in zip(ours, peer):
        for column in ours_row:
            if not same(column, ours_row[column], peer_row[column]):
                mismatches.append(f"{name}: {column} is {ours_row[column]} in rankdistill, {peer_row[column]} in DuckDB")
if mismatches:
    sys.exit("\n".join(mismatches))
print("counts, means and standard deviations agree")
PY
