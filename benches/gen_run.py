"""Write a synthetic TREC run and its qrels, seeded.

Usage: gen_run.py RUN QRELS [QUERIES] [DOCS_PER_QUERY]

The run ranks DOCS_PER_QUERY passages for each of QUERIES queries (1,000,000 lines by default),
in rank order, as `qid Q0 docid rank score tag`. Each query has 10 judged passages in the run
and 5 judged passages outside it, with grades 0-3; higher grades get higher scores on average.
"""

import sys

import numpy as np

JUDGED_IN_RUN = 10
JUDGED_OUTSIDE = 5
GRADES = [0, 1, 2, 3]
GRADE_WEIGHTS = [0.4, 0.3, 0.2, 0.1]


def main() -> None:
    run_path, qrels_path = sys.argv[1], sys.argv[2]
    queries = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    docs = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    rng = np.random.default_rng(29)

    with open(run_path, "w") as run, open(qrels_path, "w") as qrels:
        for query in range(queries):
            query_id = str(1000 + query)
            doc_ids = [f"D{query * (docs + JUDGED_OUTSIDE) + i}" for i in range(docs + JUDGED_OUTSIDE)]
            grades = rng.choice(GRADES, size=JUDGED_IN_RUN + JUDGED_OUTSIDE, p=GRADE_WEIGHTS)
            judged = rng.choice(docs, size=JUDGED_IN_RUN, replace=False)

            # Unjudged passages get the signal of grade 0. The noise ranks some relevant passages low.
            signal = np.zeros(docs)
            signal[judged] = grades[:JUDGED_IN_RUN]
            scores = signal + rng.normal(0.0, 1.5, size=docs)
            order = np.argsort(-scores, kind="stable")
            for rank, index in enumerate(order, start=1):
                run.write(f"{query_id} Q0 {doc_ids[index]} {rank} {scores[index]:.6f} synthetic\n")

            judged_docs = [doc_ids[i] for i in judged] + doc_ids[docs:]
            for doc_id, grade in zip(judged_docs, grades):
                qrels.write(f"{query_id} 0 {doc_id} {grade}\n")


if __name__ == "__main__":
    main()
