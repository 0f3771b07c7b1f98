"""Reference outputs from Python transformers, for the Rust model tests.

Usage: reference.py logits MODEL_DIR < {"pairs": [[query, passage], ...], "max_len": N}
       reference.py cross-encoder MODEL_DIR < {"pairs": [[query, passage], ...], "max_len": N}
       reference.py hidden MODEL_DIR < {"texts": [...]}
       reference.py gradients MODEL_DIR < {"pairs": [...], "max_len": N, "weights": [...],
                                          "parameters": [name, ...]}
Prints JSON: one logit per pair (from transformers, or from sentence-transformers' CrossEncoder
without its activation), the last hidden states per text (without padding), or the gradients of
the named parameters of Σ weightᵢ · logitᵢ in training mode, flattened.
"""

import json
import sys

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer


def main() -> None:
    mode, model_dir = sys.argv[1], sys.argv[2]
    request = json.load(sys.stdin)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if mode == "gradients":
        print(json.dumps(gradients(model_dir, tokenizer, request)))
        return
    with torch.inference_mode():
        if mode == "logits":
            model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
            queries = [pair[0] for pair in request["pairs"]]
            passages = [pair[1] for pair in request["pairs"]]
            inputs = tokenizer(
                queries,
                passages,
                truncation="only_second",
                max_length=request["max_len"],
                padding=True,
                return_tensors="pt",
            )
            print(json.dumps(model(**inputs).logits.squeeze(-1).tolist()))
        elif mode == "cross-encoder":
            from sentence_transformers import CrossEncoder

            model = CrossEncoder(model_dir, max_length=request["max_len"])
            pairs = [tuple(pair) for pair in request["pairs"]]
            print(json.dumps(model.predict(pairs, activation_fn=torch.nn.Identity()).tolist()))
        else:
            model = AutoModel.from_pretrained(model_dir).eval()
            hidden = []
            for text in request["texts"]:
                inputs = tokenizer([text], return_tensors="pt")
                hidden.append(model(**inputs).last_hidden_state[0].tolist())
            print(json.dumps(hidden))


def gradients(model_dir: str, tokenizer, request: dict) -> dict:
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).train()
    inputs = tokenizer(
        [pair[0] for pair in request["pairs"]],
        [pair[1] for pair in request["pairs"]],
        truncation="only_second",
        max_length=request["max_len"],
        padding=True,
        return_tensors="pt",
    )
    logits = model(**inputs).logits.squeeze(-1)
    (logits * torch.tensor(request["weights"])).sum().backward()
    parameters = dict(model.named_parameters())
    return {name: parameters[name].grad.flatten().tolist() for name in request["parameters"]}


if __name__ == "__main__":
    main()
