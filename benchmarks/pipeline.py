#!/usr/bin/env python3
"""The WRAP pipeline against the engine alone on the same prompts (issue 21, item 4).

usage: python3 benchmarks/pipeline.py OUT_DIR [THREADS=2] [BINARY=target/debug/wrapflow] [MODEL=models/smollm2-135m-instruct]

OUT_DIR is a finished `plans/wrap.sql` run (e.g. the one `benchmarks/fidelity.py` prints). The
harness renders that run's prompts (`cargo run --example bench_wrap_prompts`: every chunk in
every built-in style, as the rephrase stage renders them), adds the run's retries (the first
`retries` prompts once more, cycling), and gives them to `wrapflow generate` at the run's batch size and
no-repeat setting and THREADS threads, greedy, each sequence `--ignore-eos` at the run's mean
generated tokens per attempt: the same number of sequences and about the same tokens. It prints
both generated tok/s and their ratio, with the CPU flags.
"""
import json, os, subprocess, sys, tempfile

out = sys.argv[1]
threads = sys.argv[2] if len(sys.argv) > 2 else "2"
binary = sys.argv[3] if len(sys.argv) > 3 else "target/debug/wrapflow"
model = sys.argv[4] if len(sys.argv) > 4 else "models/smollm2-135m-instruct"

m = json.load(open(os.path.join(out, "manifest.json")))
r = m["rephrase"]
gen = r["models"][0]["generation"]
attempts = r["tasks"] + r["retries"]
mean_new = max(1, round(r["generated_tokens"] / attempts))
tmp = tempfile.mkdtemp(prefix="wrapflow-pipeline-")
prompts = os.path.join(tmp, "prompts.jsonl")
subprocess.run(["cargo", "build", "-q", "--example", "bench_wrap_prompts"], check=True)
with open(prompts, "w") as f:
    subprocess.run(["target/debug/examples/bench_wrap_prompts", out, model, ",".join(r["style_order"])],
                   check=True, stdout=f)
lines = open(prompts).read().splitlines()
if len(lines) != r["tasks"]:
    sys.exit(f"{len(lines)} prompts for {r['tasks']} tasks: not the run's own prompts (styles with rates?)")
base = list(lines)
lines += [base[i % len(base)] for i in range(r["retries"])]
with open(prompts, "w") as f:
    f.write("\n".join(lines) + "\n")
cmd = [binary, "generate", "--model", model, "--prompts", prompts, "--json", "--greedy", "--ignore-eos",
       "--max-new", str(mean_new), "--batch", str(gen["batch_size"]), "--threads", threads,
       "--no-repeat-ngram", str(gen["no_repeat_ngram"])]
res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
engine_tokens = sum(len(o["token_ids"]) for o in res["outputs"])
engine = res["timing"]
flags = sorted({f for line in open("/proc/cpuinfo") if line.startswith("flags")
                for f in line.split(":")[1].split() if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")})
cpu = next((l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"CPU: {cpu}, {os.cpu_count()} cores, flags: {' '.join(flags)}")
print(f"{r['tasks']} tasks + {r['retries']} retries = {attempts} sequences; batch {gen['batch_size']}, {threads} threads")
print("| what | sequences | generated tokens | wall s | generated tok/s |")
print("|---|---|---|---|---|")
wall = m["timings"]["wall_s"]
print(f"| WRAP pipeline (`wrapflow run`, whole job) | {attempts} | {r['generated_tokens']} | "
      f"{wall:.1f} | {r['gen_tok_s']:.1f} |")
print(f"| `wrapflow generate`, same prompts, {mean_new} new tokens each | {len(res['outputs'])} | {engine_tokens} | "
      f"{engine['wall_s']:.1f} | {engine['gen_tok_s']:.1f} |")
print(f"pipeline / engine: {r['gen_tok_s'] / engine['gen_tok_s']:.2f}")
secs = r.get("seconds", {})
print("pipeline seconds by part: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(secs.items())))
