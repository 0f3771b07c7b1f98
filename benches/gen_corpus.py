"""Write a synthetic BEIR corpus.jsonl with N passages of 40-120 words, seeded."""

import json
import random
import sys


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2])
    rng = random.Random(13)
    vocabulary = [f"w{i}" for i in range(30_000)]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            words = rng.choices(vocabulary, k=rng.randint(40, 120))
            title = " ".join(words[:6])
            out.write(json.dumps({"_id": f"doc{i}", "title": title, "text": " ".join(words)}) + "\n")


if __name__ == "__main__":
    main()
