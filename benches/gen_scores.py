"""Write synthetic teacher scores and qrels, seeded, as a rankdistill store and as Parquet files.

Usage: gen_scores.py OUT_DIR [QUERIES] [DOCS_PER_QUERY]

Two teachers score DOCS_PER_QUERY candidates of each of QUERIES queries, so teacher_scores has
2 * QUERIES * DOCS_PER_QUERY rows (10,000,000 by default). Each query has 10 judged candidates
(grades 0-3) and 2 judged passages outside its candidates, all in split "train". Positives
(grade >= 2) get higher scores from both teachers.

Writes OUT_DIR/store/{teacher_scores,qrels}.lance with pylance's default write parameters, which
are Lance's defaults, as rankdistill's writer uses them, and with the column names and types of
store/src/schema.rs. Writes the same tables to OUT_DIR/parquet/{teacher_scores,qrels}.parquet
with pyarrow's defaults.
"""

import os
import sys

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TEACHER_SCORES = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("teacher", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
)
QRELS = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("relevance", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)
# (name, mean of negatives, mean of positives, standard deviation)
TEACHERS = [("teacher-a", -1.0, 2.5, 2.0), ("teacher-b", -4.0, 1.0, 3.0)]
JUDGED_CANDIDATES = 10
JUDGED_OUTSIDE = 2


def doc_numbers(pair_index: np.ndarray) -> np.ndarray:
    """Map pair indices to distinct, scattered document numbers (a bijection on 32-bit ints)."""
    return (pair_index.astype(np.uint64) * 2654435761) % (1 << 32)


def ids(numbers: np.ndarray) -> pa.Array:
    return pa.array(numbers).cast(pa.string())


def main() -> None:
    out = sys.argv[1]
    queries = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    docs = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    rng = np.random.default_rng(13)

    # Candidates in (query, rank) order.
    query = np.repeat(np.arange(queries), docs)
    pair = np.arange(queries * docs)
    query_ids = ids(query)
    doc_ids = ids(doc_numbers(pair))

    # Grades of the judged candidates, at 10 random ranks per query. Grade -1 marks an unjudged pair.
    judged_rank = rng.random((queries, docs)).argsort(axis=1)[:, :JUDGED_CANDIDATES]
    judged_pair = (np.arange(queries)[:, None] * docs + judged_rank).ravel()
    judged_grade = rng.choice([0, 1, 2, 3], size=judged_pair.size, p=[0.5, 0.2, 0.2, 0.1])
    grade = np.full(queries * docs, -1, dtype=np.int32)
    grade[judged_pair] = judged_grade
    positive = grade >= 2

    # Judged passages that no teacher scored, numbered past the candidates' pair indices.
    outside_query = np.repeat(np.arange(queries), JUDGED_OUTSIDE)
    outside_pair = queries * docs + np.arange(outside_query.size)
    outside_grade = rng.choice([0, 1, 2, 3], size=outside_query.size, p=[0.5, 0.2, 0.2, 0.1])

    qrels = pa.Table.from_arrays(
        [
            pa.concat_arrays([ids(query[judged_pair]), ids(outside_query)]),
            pa.concat_arrays([ids(doc_numbers(judged_pair)), ids(doc_numbers(outside_pair))]),
            pa.array(np.concatenate([judged_grade, outside_grade]).astype(np.int32)),
            pa.repeat("train", judged_pair.size + outside_query.size),
        ],
        schema=QRELS,
    )

    parts = []
    for name, negative_mean, positive_mean, deviation in TEACHERS:
        mean = np.where(positive, positive_mean, negative_mean)
        score = rng.normal(mean, deviation).astype(np.float32)
        teacher = pa.repeat(name, pair.size)
        parts.append(pa.Table.from_arrays([query_ids, doc_ids, teacher, pa.array(score)], schema=TEACHER_SCORES))
    scores = pa.concat_tables(parts)

    os.makedirs(f"{out}/parquet", exist_ok=True)
    for name, table in [("teacher_scores", scores), ("qrels", qrels)]:
        lance.write_dataset(table, f"{out}/store/{name}.lance", mode="overwrite")
        pq.write_table(table, f"{out}/parquet/{name}.parquet")
        print(f"{name}: {table.num_rows} rows")


if __name__ == "__main__":
    main()
