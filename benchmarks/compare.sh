#!/usr/bin/env bash
# The rephrasing engine against its references, back to back in one run, at equal batch and
# threads on the same prompts (issue 21, item 1):
#   - wrapflow on its own import (fp32, shared KV cache, wrapflow attention);
#   - wrapflow on the same weights exported in the standard past/present layout (what other
#     exporters produce);
#   - a plain Python ONNX Runtime loop on that standard file (benchmarks/ort_reference.py);
#   - wrapflow q4 and llama.cpp's llama-batched-bench on the same Q4_1 GGUF.
# Prompts: bench_engine's 16 BBC chunks (~300 tokens + instruction, chat template), 128 new tokens
# each, greedy, EOS ignored; llama.cpp draws its own 300-token prompts (-npp 300 -ntg 128).
# Prints the CPU flags, one table, the ratios at equal batch, and whether greedy tokens agree.
#
#   benchmarks/compare.sh [THREADS] [BATCHES]      (default: 2 "1 16"; needs scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
BATCHES=${2:-"1 16"}
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
WORK=target/bench-data/compare
OUT=target/bench-out/compare
mkdir -p "$WORK" "$OUT"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.cache/onnxruntime/libonnxruntime.so.1.31.1}
cargo build --quiet --bin wrapflow --example bench_engine
if ! .venv/bin/python -c "import onnxruntime" 2>/dev/null; then
  .venv/bin/pip install --quiet .cache/onnxruntime/onnxruntime-1.31.1-*.whl numpy
fi
LLAMA=$(benchmarks/build_llama_cpp.sh llama-batched-bench)
for spec in "fp32 shared" "fp32 standard" "q4 shared"; do
  set -- $spec
  [ -f "$WORK/$1-$2/model.onnx" ] ||
    target/debug/wrapflow model import "$GGUF" --out "$WORK/$1-$2" --weights "$1" --kv-cache "$2" >/dev/null
done

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
  "flags: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | xargs);" \
  "threads $THREADS; $(date -u '+%Y-%m-%d %H:%M UTC')"
: > "$OUT/rows.jsonl"
row() { # key engine batch prefill decode generated [greedy]
  printf '{"key": "%s", "engine": "%s", "batch": %s, "prefill": %s, "decode": %s, "generated": %s, "greedy": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >> "$OUT/rows.jsonl"
}
engine() { # key name model_dir batch: bench_engine's row → rows.jsonl
  local line
  line=$(THREADS=$THREADS target/debug/examples/bench_engine "$3" "$4" | tail -1)
  IFS='|' read -r _ _ _ _ prefill decode generated _ <<< "$line"
  row "$1" "$2" "$4" "$prefill" "$decode" "$generated"
}
for b in $BATCHES; do
  engine own "wrapflow fp32, own import (shared KV)" "$WORK/fp32-shared" "$b"
  cp "target/bench-out/engine_ids_b$b.json" "$OUT/ids_shared_b$b.json"
  engine std "wrapflow fp32, standard layout" "$WORK/fp32-standard" "$b"
  py=$(.venv/bin/python benchmarks/ort_reference.py "$WORK/fp32-standard" "$b" "$THREADS" "$OUT/ids_shared_b$b.json")
  .venv/bin/python -c 'import json, sys; r = json.loads(sys.argv[1]); print(r["prefill_tok_s"], r["decode_tok_s"], r["generated_tok_s"], r["identical_greedy_sequences"])' "$py" \
    | { read -r p d g same; row py "Python ORT loop, fp32, standard layout" "$b" "$p" "$d" "$g" "$same vs wrapflow fp32"; }
  engine q4 "wrapflow q4 (shared KV)" "$WORK/q4-shared" "$b"
  # llama.cpp's row: PP TG B N_KV T_PP S_PP T_TG S_TG T S
  "$LLAMA" -m "$GGUF" -c 16384 -b 2048 -ub 512 -npp 300 -ntg 128 -npl "$b" -t "$THREADS" 2>/dev/null \
    | awk -F'|' -v b="$b" '$4+0 == b && $2+0 == 300 { printf "%s %s %.1f\n", $7, $9, b * 128 / $10 }' \
    | { read -r p d g; row llama "llama.cpp, Q4_1 GGUF" "$b" "$p" "$d" "$g"; }
done

.venv/bin/python - "$OUT/rows.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| engine | batch | prefill tok/s | decode tok/s | generated tok/s | greedy tokens |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['engine']} | {r['batch']} | {float(r['prefill']):.0f} | {float(r['decode']):.1f} | {float(r['generated']):.1f} | {r['greedy']} |")
print("\nRatios of generated tok/s at equal batch and threads:")
for b in sorted({r["batch"] for r in rows}):
    at = {r["key"]: float(r["generated"]) for r in rows if r["batch"] == b}
    own, std, py, q4, llama = (at[k] for k in ("own", "std", "py", "q4", "llama"))
    print(f"- batch {b}: own import / Python loop {own / py:.2f}x; standard file / Python loop {std / py:.2f}x;"
          f" q4 / llama.cpp {q4 / llama:.2f}x")
EOF
