#!/usr/bin/env bash
# The house's checks, run by CI before the tests (.ci/run) and by hand before a commit:
# formatting, clippy with warnings as errors, a compile check of the CUDA feature (no GPU runs
# it here, so at least it must not rot) and the structure rules (scripts/structure.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo check --features cuda --quiet
python3 scripts/structure.py .
