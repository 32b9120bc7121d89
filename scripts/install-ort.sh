#!/usr/bin/env bash
# Installs ONNX Runtime 1.31.1 (the CPU library from the PyPI wheel `onnxruntime==1.31.1`) into
# .cache/onnxruntime/, where wrapflow looks for it when ORT_DYLIB_PATH is not set.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/onnxruntime
LIB="$DEST/libonnxruntime.so.1.31.1"
if [ ! -s "$LIB" ]; then
  mkdir -p "$DEST"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$DEST" onnxruntime==1.31.1
  python3 - "$DEST" <<'PY'
import glob, sys, zipfile
dest = sys.argv[1]
wheel = glob.glob(f"{dest}/onnxruntime-1.31.1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("libonnxruntime.so.1.31.1", "libonnxruntime_providers_shared.so"):
        with z.open(f"onnxruntime/capi/{name}") as src, open(f"{dest}/{name}", "wb") as dst:
            dst.write(src.read())
PY
fi
