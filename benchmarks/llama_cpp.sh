#!/usr/bin/env bash
# Builds llama.cpp's llama-batched-bench (benchmarks/build_llama_cpp.sh: from the source
# distribution of the PyPI package llama-cpp-python) and runs it on the default GGUF: 16 parallel
# sequences, ~300-token prompts, 128 new tokens each.
#
#   benchmarks/llama_cpp.sh [THREADS]        # prints llama.cpp's table (S_PP, S_TG, S t/s)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
BIN=$(benchmarks/build_llama_cpp.sh llama-batched-bench)
# -npp 300: prompt tokens per sequence; -ntg 128: generated per sequence; -npl 16: parallel
# sequences; -pps: the prompt is not shared (each sequence prefills its own).
"$BIN" -m models/SmolLM2-135M-Instruct.Q4_1.gguf -c 16384 -b 2048 -ub 512 -npp 300 -ntg 128 -npl 1,8,16 \
  -t "$THREADS" 2>/dev/null
