"""Peer for the scoring benchmark: PyTorch transformers scoring the same pairs.

Usage: score_pytorch.py MODEL_DIR PAIRS_TSV MAX_LEN BATCH
PAIRS_TSV has one `query \\t passage` per line, in the order rankdistill stores the pairs.
Prints pairs/s for batches in file order (a plain loop) and for batches sorted by token length
(the batching rankdistill uses).
"""

import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def score(model, tokenizer, pairs, max_len, batch_size):
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        inputs = tokenizer(
            [q for q, _ in batch],
            [p for _, p in batch],
            truncation="only_second",
            max_length=max_len,
            padding=True,
            return_tensors="pt",
        )
        model(**inputs)


def main() -> None:
    model_dir, pairs_file, max_len, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(pairs_file, encoding="utf-8") as f:
        pairs = [tuple(line.rstrip("\n").split("\t", 1)) for line in f]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).eval()

    lengths = [len(ids) for ids in tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation="only_second", max_length=max_len)["input_ids"]]
    sorted_pairs = [pair for _, pair in sorted(zip(lengths, pairs), key=lambda item: item[0])]
    with torch.inference_mode():
        score(model, tokenizer, pairs[:batch_size], max_len, batch_size)
        for label, ordered in (("file order", pairs), ("sorted by length", sorted_pairs)):
            started = time.perf_counter()
            score(model, tokenizer, ordered, max_len, batch_size)
            seconds = time.perf_counter() - started
            print(f"pytorch {label}: {len(pairs)} pairs in {seconds:.1f} s, {len(pairs) / seconds:.1f} pairs/s")


if __name__ == "__main__":
    main()
