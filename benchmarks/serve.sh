#!/usr/bin/env bash
# `wrapflow serve` against llama.cpp's `llama-server` on the same GGUF, the same prompts and the
# same client (benchmarks/serve_bench.py, the `openai` package): generated tokens/s and latency
# at 1, 8 and 32 concurrent clients, one server at a time. Builds llama-server from the source
# distribution of llama-cpp-python (as benchmarks/llama_cpp.sh does) into .cache/llama.cpp.
#
#   benchmarks/serve.sh [THREADS] [SLOTS]     # defaults: 2 threads, 32 sequences per batch
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SLOTS=${2:-32}
VERSION=0.3.16
ROOT=.cache/llama.cpp
BIN=$ROOT/build-server/bin/llama-server
PY=.venv/bin/python
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL=models/smollm2-135m-instruct
if [ ! -x "$BIN" ]; then
  mkdir -p "$ROOT" .cache/wheels
  SDIST=.cache/wheels/llama_cpp_python-$VERSION.tar.gz
  [ -s "$SDIST" ] || python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d .cache/wheels "llama-cpp-python==$VERSION"
  [ -d "$ROOT/src" ] || { mkdir -p "$ROOT/src" && tar -xzf "$SDIST" -C "$ROOT/src" --strip-components=1; }
  [ -x "$ROOT/venv/bin/cmake" ] || { python3 -m venv "$ROOT/venv" && "$ROOT/venv/bin/pip" install --quiet cmake ninja; }
  PATH="$PWD/$ROOT/venv/bin:$PATH" cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build-server" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=ON > "$ROOT/cmake-server.log"
  PATH="$PWD/$ROOT/venv/bin:$PATH" cmake --build "$ROOT/build-server" --target llama-server -j 2 > "$ROOT/build-server.log"
fi
grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
wait_up() { for _ in $(seq 120); do curl -sf "$1/models" > /dev/null && return 0; sleep 1; done; echo "server did not start"; exit 1; }
bench() { for c in 1 8 32; do echo "$1 $($PY benchmarks/serve_bench.py "$2" "$3" "$c")"; done; }

cargo build -q --bin wrapflow
target/debug/wrapflow serve --model "$MODEL" --name smollm2 --port 8101 --batch "$SLOTS" --threads "$THREADS" > /dev/null &
PID=$!
wait_up http://127.0.0.1:8101/v1
bench "wrapflow-serve" http://127.0.0.1:8101/v1 smollm2
kill -TERM $PID; wait $PID || true

"$BIN" -m "$GGUF" --port 8102 -np "$SLOTS" -c $((SLOTS * 512)) -t "$THREADS" -a smollm2 > "$ROOT/server.log" 2>&1 &
PID=$!
wait_up http://127.0.0.1:8102/v1
bench "llama-server" http://127.0.0.1:8102/v1 smollm2
kill -TERM $PID; wait $PID || true
