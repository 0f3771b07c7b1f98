"""Peer for the evaluate benchmark: read a TREC run and qrels, evaluate them with pytrec_eval.

Usage: evaluate_pytrec.py RUN QRELS RELEVANCE_LEVEL

Prints JSON {"queries": N, "mean": {measure: mean}} for nDCG@10, RR@10, AP, R@100 and P@10,
named as `rankdistill evaluate --format json` names them. trec_eval has no cutoff for the
reciprocal rank, so RR@10 is recip_rank where the first relevant passage is in the top 10
(recip_rank >= 0.1), and 0 elsewhere.
"""

import json
import sys

import pytrec_eval

NAMES = {"ndcg_cut_10": "nDCG@10", "recip_rank": "RR", "map": "AP", "recall_100": "R@100", "P_10": "P@10"}
ORDER = ["nDCG@10", "RR@10", "AP", "R@100", "P@10"]


def read(path, value):
    table = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if fields:
                table.setdefault(fields[0], {})[fields[2]] = value(fields)
    return table


def main() -> None:
    run = read(sys.argv[1], lambda fields: float(fields[4]))
    qrels = read(sys.argv[2], lambda fields: int(fields[3]))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(NAMES), relevance_level=int(sys.argv[3]))
    results = evaluator.evaluate(run)

    sums = dict.fromkeys(ORDER, 0.0)
    for values in results.values():
        named = {NAMES[measure]: value for measure, value in values.items()}
        named["RR@10"] = named["RR"] if named["RR"] >= 0.1 else 0.0
        for name in ORDER:
            sums[name] += named[name]
    count = len(results)
    print(json.dumps({"queries": count, "mean": {name: total / count for name, total in sums.items()}}))


if __name__ == "__main__":
    main()
