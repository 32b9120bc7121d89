#!/usr/bin/env bash
# `wrapflow serve` against llama.cpp's `llama-server` on the same GGUF, the same prompts and the
# same client (benchmarks/serve_bench.py, the `openai` package): generated tokens/s and latency
# at 1, 8 and 32 concurrent clients, one server at a time. Builds llama-server with
# benchmarks/build_llama_cpp.sh.
#
#   benchmarks/serve.sh [THREADS] [SLOTS]     # defaults: 2 threads, 32 sequences per batch
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SLOTS=${2:-32}
PY=.venv/bin/python
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
# wrapflow runs the GGUF's own 4-bit blocks (`--weights q4`), as llama.cpp does.
MODEL=.cache/smollm2-135m-instruct-q4
BIN=$(benchmarks/build_llama_cpp.sh llama-server)
grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
wait_up() { for _ in $(seq 120); do curl -sf "$1/models" > /dev/null && return 0; sleep 1; done; echo "server did not start"; exit 1; }
bench() { for c in 1 8 32; do echo "$1 $($PY benchmarks/serve_bench.py "$2" "$3" "$c")"; done; }

cargo build -q --bin wrapflow
[ -f "$MODEL/model.onnx" ] || target/debug/wrapflow model import "$GGUF" --out "$MODEL" --weights q4 > /dev/null
# wrapflow on the q4 import, then on the fp32 one the demo uses (models/, from scripts/setup.sh).
for m in "$MODEL" models/smollm2-135m-instruct; do
  [ -f "$m/model.onnx" ] || continue
  target/debug/wrapflow serve --model "$m" --name smollm2 --port 8101 --batch "$SLOTS" --threads "$THREADS" > /dev/null 2>&1 &
  PID=$!
  wait_up http://127.0.0.1:8101/v1
  bench "wrapflow-serve($(basename "$m"))" http://127.0.0.1:8101/v1 smollm2
  kill -TERM $PID; wait $PID || true
done

"$BIN" -m "$GGUF" --port 8102 -np "$SLOTS" -c $((SLOTS * 512)) -t "$THREADS" -a smollm2 > .cache/llama.cpp/server.log 2>&1 &
PID=$!
wait_up http://127.0.0.1:8102/v1
bench "llama-server" http://127.0.0.1:8102/v1 smollm2
kill -TERM $PID; wait $PID || true
