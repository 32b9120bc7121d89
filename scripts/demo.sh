#!/usr/bin/env bash
# Sets up the embedded defaults and runs the WRAP demo plan on the BBC corpus: 2 articles
# (--set limit=N for more), rephrased in the easy, medium, hard and qa styles on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# A run resumes from the checkpoints in its output: start the demo afresh each time.
rm -rf out/bbc-wrap
exec target/debug/wrapflow run plans/wrap.sql --set input=data/bbc/bbc.jsonl --set output=out/bbc-wrap --set limit=2 \
  "$@"
