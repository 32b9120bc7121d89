#!/usr/bin/env bash
# Sets up the embedded defaults and runs the demo plan on the BBC corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec target/debug/wrapflow run plans/chunk.sql --set input=data/bbc/bbc.jsonl --set output=out/bbc-chunks --workers 2 "$@"
