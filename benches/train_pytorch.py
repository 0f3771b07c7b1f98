"""Peer for the training benchmark: a PyTorch transformers loop doing the work of one
rankdistill training step, as Tevatron's reranker trains: AutoModelForSequenceClassification with
one label, cross entropy over each group (the positive first), AdamW, dropout on.

Usage: train_pytorch.py MODEL_DIR GROUPS_JSONL STEPS QUERIES GROUP_SIZE MAX_LEN
GROUPS_JSONL contains rows of `rankdistill store export groups`. Prints groups/s and tokens/s over
the steps after the first (which includes warm-up).
"""

import json
import random
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def sample_batch(groups, rng, queries, group_size):
    pairs = []
    for group in rng.sample(groups, queries):
        positive = rng.randrange(group["positives"])
        negatives = rng.sample(range(group["positives"], len(group["texts"])), group_size - 1)
        for member in [positive, *negatives]:
            pairs.append((group["query_text"], group["texts"][member]))
    return pairs


def main() -> None:
    model_dir, groups_file = sys.argv[1], sys.argv[2]
    steps, queries, group_size, max_len = (int(value) for value in sys.argv[3:7])
    torch.manual_seed(0)
    groups = [json.loads(line) for line in open(groups_file, encoding="utf-8")]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    targets = torch.zeros(queries, dtype=torch.long)
    rng = random.Random(0)

    timed_groups = timed_tokens = 0
    started = None
    for step in range(steps):
        if step == 1:
            started = time.perf_counter()
        pairs = sample_batch(groups, rng, queries, group_size)
        inputs = tokenizer(
            [q for q, _ in pairs],
            [p for _, p in pairs],
            truncation="only_second",
            max_length=max_len,
            padding=True,
            return_tensors="pt",
        )
        logits = model(**inputs).logits.view(queries, group_size)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step >= 1:
            timed_groups += queries
            timed_tokens += int(inputs["attention_mask"].sum())
    seconds = time.perf_counter() - started
    print(
        f"pytorch {torch.__version__} ({torch.get_num_threads()} threads): {steps - 1} steps in {seconds:.1f} s, "
        f"{timed_groups / seconds:.3f} groups/s, {timed_tokens / seconds:.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
