#!/usr/bin/env bash
# A 7B-class model on this machine (issue 19, item 7): a random model of Mistral 7B's shape
# (the WRAP paper's rephraser; Q4_K linear layers and embeddings, Q6_K head: 4.1 GB GGUF) is
# written by scripts/gguf_testdata.py, imported with --weights q4, and run by `wrapflow generate`
# at batch 1 and 16; llama.cpp's llama-batched-bench runs the same GGUF beside it. Prints import
# time and peak RSS, the files written, generation peak RSS and tok/s. Not in CI: it needs
# ~11 GB of disk and ~7 GB of memory, and takes a few minutes.
#
#   benchmarks/seven_b.sh [WORKDIR]      (default target/bench-data/7b; needs scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/bench-data/7b}
mkdir -p "$WORK"
GGUF=$WORK/mistral-7b-shape-q4_k.gguf
[ -f "$GGUF" ] || .venv/bin/python scripts/gguf_testdata.py big "$GGUF"
cargo build --quiet --bin wrapflow
LLAMA=$(benchmarks/build_llama_cpp.sh llama-batched-bench)
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.cache/onnxruntime/libonnxruntime.so.1.31.1}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
  "flags: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | xargs);" \
  "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "GGUF: $(($(stat -c %s "$GGUF") / 1048576)) MB"
rm -rf "$WORK/model"
/usr/bin/time -f "%e %M" -o "$WORK/time" target/debug/wrapflow model import "$GGUF" --out "$WORK/model" --weights q4 >/dev/null
read -r secs kb < "$WORK/time"
bytes=$(cat "$WORK"/model/model.onnx* | wc -c)
echo "import --weights q4: $secs s, peak RSS $((kb / 1024)) MB, wrote $((bytes / 1048576)) MB" \
  "(model.onnx $(($(stat -c %s "$WORK/model/model.onnx") / 1024)) KB + model.onnx.data)," \
  "RSS / written $(awk "BEGIN { printf \"%.2f\", $kb * 1024 / $bytes }")"
# 64-byte prompts: the random model's byte-level vocabulary makes each byte one token.
python3 -c '
import json
for i in range(16):
    print(json.dumps({"prompt": f"Prompt {i:02d}: the council met on Tuesday to discuss next year."[:64]}))' > "$WORK/prompts.jsonl"
echo
echo "| engine | batch | prompt tokens | new tokens | prefill tok/s | decode tok/s | peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
for batch in 1 16; do
  head -n "$batch" "$WORK/prompts.jsonl" > "$WORK/p.jsonl"
  /usr/bin/time -f "%M" -o "$WORK/time" target/debug/wrapflow generate --model "$WORK/model" \
    --prompts "$WORK/p.jsonl" --batch "$batch" --max-new 8 --ignore-eos --threads 2 --json 2>/dev/null > "$WORK/out.json"
  python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["timing"]
row = ["wrapflow (q4, shared KV)", sys.argv[2], "~63", "8", "%.1f" % t["prefill_tok_s"], "%.2f" % t["decode_tok_s"], str(int(sys.argv[3]) // 1024)]
print("| " + " | ".join(row) + " |")' \
    "$WORK/out.json" "$batch" "$(cat "$WORK/time")"
done
echo
echo "llama.cpp llama-batched-bench, same GGUF (2 threads, -npp 64 -ntg 8):"
/usr/bin/time -f "peak RSS %M KB" "$LLAMA" -m "$GGUF" -c 2048 -b 2048 -ub 512 -npp 64 -ntg 8 -npl 1,16 -t 2 2>&1 \
  | grep -E '^\||peak RSS' || true
