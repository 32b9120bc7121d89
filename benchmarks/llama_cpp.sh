#!/usr/bin/env bash
# Builds llama.cpp's llama-batched-bench from the source distribution of the PyPI package
# llama-cpp-python (its vendored llama.cpp) into .cache/llama.cpp, with cmake from PyPI, and runs
# it on the default GGUF: 16 parallel sequences, ~300-token prompts, 128 new tokens each.
#
#   benchmarks/llama_cpp.sh [THREADS]        # prints llama.cpp's table (S_PP, S_TG, S t/s)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
VERSION=0.3.16
ROOT=.cache/llama.cpp
BIN=$ROOT/build/bin/llama-batched-bench
if [ ! -x "$BIN" ]; then
  mkdir -p "$ROOT" .cache/wheels
  SDIST=.cache/wheels/llama_cpp_python-$VERSION.tar.gz
  [ -s "$SDIST" ] || python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d .cache/wheels "llama-cpp-python==$VERSION"
  [ -d "$ROOT/src" ] || { mkdir -p "$ROOT/src" && tar -xzf "$SDIST" -C "$ROOT/src" --strip-components=1; }
  [ -x "$ROOT/venv/bin/cmake" ] || { python3 -m venv "$ROOT/venv" && "$ROOT/venv/bin/pip" install --quiet cmake ninja; }
  PATH="$PWD/$ROOT/venv/bin:$PATH" cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=OFF > "$ROOT/cmake.log"
  PATH="$PWD/$ROOT/venv/bin:$PATH" cmake --build "$ROOT/build" --target llama-batched-bench -j 2 > "$ROOT/build.log"
fi
# -npp 300: prompt tokens per sequence; -ntg 128: generated per sequence; -npl 16: parallel
# sequences; -pps: the prompt is not shared (each sequence prefills its own).
"$BIN" -m models/SmolLM2-135M-Instruct.Q4_1.gguf -c 16384 -b 2048 -ub 512 -npp 300 -ntg 128 -npl 1,8,16 \
  -t "$THREADS" 2>/dev/null
