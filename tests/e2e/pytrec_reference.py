"""Per-query trec_eval values from pytrec_eval (pytrec-eval-terrier), for the Rust tests.

Usage: pytrec_reference.py QRELS RUN RELEVANCE_LEVEL
Prints JSON {query id: {ir_measures name: value}} for nDCG@10, RR, AP, R@100 and P@10.
"""

import json
import sys

import pytrec_eval

NAMES = {"ndcg_cut_10": "nDCG@10", "recip_rank": "RR", "map": "AP", "recall_100": "R@100", "P_10": "P@10"}


def read(path, columns):
    table = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if fields:
                table.setdefault(fields[0], {})[fields[2]] = columns(fields)
    return table


def main() -> None:
    qrels = read(sys.argv[1], lambda f: int(f[3]))
    run = read(sys.argv[2], lambda f: float(f[4]))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(NAMES), relevance_level=int(sys.argv[3]))
    results = evaluator.evaluate(run)
    print(json.dumps({q: {NAMES[m]: v for m, v in values.items()} for q, values in results.items()}))


if __name__ == "__main__":
    main()
