#!/usr/bin/env bash
# Builds one llama.cpp program from the source distribution of the PyPI package llama-cpp-python
# (its vendored llama.cpp), with cmake and ninja from PyPI, into .cache/llama.cpp/build-TARGET;
# prints the binary's path. Used by benchmarks/llama_cpp.sh and benchmarks/serve.sh.
#
#   benchmarks/build_llama_cpp.sh llama-batched-bench|llama-server
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=$1
VERSION=0.3.16
ROOT=.cache/llama.cpp
BUILD=$ROOT/build-$TARGET
BIN=$BUILD/bin/$TARGET
if [ ! -x "$BIN" ]; then
  mkdir -p "$ROOT" .cache/wheels
  SDIST=.cache/wheels/llama_cpp_python-$VERSION.tar.gz
  [ -s "$SDIST" ] || python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d .cache/wheels "llama-cpp-python==$VERSION"
  [ -d "$ROOT/src" ] || { mkdir -p "$ROOT/src" && tar -xzf "$SDIST" -C "$ROOT/src" --strip-components=1; }
  [ -x "$ROOT/venv/bin/cmake" ] || { python3 -m venv "$ROOT/venv" && "$ROOT/venv/bin/pip" install --quiet cmake ninja; }
  SERVER=OFF
  [ "$TARGET" = llama-server ] && SERVER=ON
  PATH="$PWD/$ROOT/venv/bin:$PATH" cmake -S "$ROOT/src/vendor/llama.cpp" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=$SERVER > "$BUILD.cmake.log"
  PATH="$PWD/$ROOT/venv/bin:$PATH" cmake --build "$BUILD" --target "$TARGET" -j 2 > "$BUILD.log"
fi
echo "$BIN"
