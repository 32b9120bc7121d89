#!/usr/bin/env bash
# Bring-your-own-model numbers, side by side in one run on one machine (issue 19):
#   - import time and peak RSS per model and weight format (GNU time);
#   - generation of the real Gemma 3 270M Q4_K_M GGUF imported with --weights q4 against
#     llama.cpp's llama-batched-bench on the same file: batch 1 and 16, 2 threads, 128 new tokens
#     each, ~300-token prompts (wrapflow: 16 BBC chunks of 300 tokens plus an instruction;
#     llama.cpp: -npp 300 synthetic prompt tokens, as its bench does).
#
#   benchmarks/models.sh        (needs scripts/setup.sh, scripts/fetch-gemma.sh; builds llama.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
GEMMA=models/gemma-3-270m-q4_k_m.gguf
SMOL=models/SmolLM2-135M-Instruct.Q4_1.gguf
./scripts/fetch-gemma.sh
cargo build --quiet --bin wrapflow --example bench_engine
LLAMA=$(benchmarks/build_llama_cpp.sh llama-batched-bench)
OUT=$(mktemp -d)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
  "flags: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | xargs)"
echo
# Gemma's weights as a Hugging Face folder of bf16 safetensors (two shards), as checkpoints ship.
.venv/bin/python scripts/gguf_testdata.py hf "$GEMMA" "$OUT/gemma-3-270m-hf" BF16
target/debug/wrapflow model import "$GEMMA" --out "$OUT/gemma-3-270m-hf" --tokenizer-only >/dev/null
echo "| model | weights | import s | peak RSS MB | written MB (model.onnx + data) | RSS / written |"
echo "|---|---|---|---|---|---|"
for spec in "$SMOL fp32" "$SMOL fp16" "$SMOL q4" "$GEMMA fp32" "$GEMMA q4" "$OUT/gemma-3-270m-hf fp32"; do
  set -- $spec
  dir=$OUT/$(basename "$1" .gguf)-$2
  /usr/bin/time -f "%e %M" -o "$OUT/time" target/debug/wrapflow model import "$1" --out "$dir" --weights "$2" >/dev/null
  read -r secs kb < "$OUT/time"
  bytes=$(cat "$dir"/model.onnx* | wc -c)
  echo "| $(basename "$1") | $2 | $secs | $((kb / 1024)) | $((bytes / 1048576)) |" \
    "$(awk "BEGIN { printf \"%.2f\", $kb * 1024 / $bytes }") |"
done
echo
echo "wrapflow, Gemma 3 270M, --weights q4 (2 threads):"
THREADS=2 target/debug/examples/bench_engine "$OUT/gemma-3-270m-q4_k_m-q4" 1 16
echo
echo "llama.cpp llama-batched-bench, same GGUF (2 threads):"
"$LLAMA" -m "$GEMMA" -c 16384 -b 2048 -ub 512 -npp 300 -ntg 128 -npl 1,16 -t 2 2>/dev/null
rm -rf "$OUT"
