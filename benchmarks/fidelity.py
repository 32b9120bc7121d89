#!/usr/bin/env python3
"""Fidelity of the WRAP rows on BBC articles the gates were not tuned on.

usage: python3 benchmarks/fidelity.py [N_PER_CATEGORY=10] [CATEGORIES=politics,entertainment] [BINARY=target/debug/wrapflow]

Takes the first N articles of each category from data/bbc/bbc.jsonl (scripts/setup.sh), runs
plans/wrap.sql on them with the demo's settings (1 worker, 2 threads, batch 32, default SmolLM2 and
MiniLM), and prints per style what the manifest records: acceptance, accepted rows with a name the
source lacks, with an unsupported sentence, trimmed, copy share median and p90, mean and p10
cosine, FK grade, and the reject reasons. Run it with two binaries to compare before and after.
STYLES=qa (a comma list) rephrases in those styles only, at a fraction of the time: retries are
seeded by their task, so a style's rows do not depend on the other styles (but for rounding in
batched matrix products, which can flip a near tie). MODEL=DIR rephrases with another imported
model (e.g. `wrapflow model import ... --weights int8`); PLAN=FILE runs another plan (a copy of
wrap.sql with a STYLE statement, to try a style's options).
"""
import json, os, subprocess, sys, tempfile, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
cats = (sys.argv[2] if len(sys.argv) > 2 else "politics,entertainment").split(",")
binary = sys.argv[3] if len(sys.argv) > 3 else "target/debug/wrapflow"
tmp = tempfile.mkdtemp(prefix="wrapflow-fidelity-")
src = os.path.join(tmp, "articles.jsonl")
taken = {c: 0 for c in cats}
with open("data/bbc/bbc.jsonl") as f, open(src, "w") as out:
    for line in f:
        c = json.loads(line)["category"]
        if c in taken and taken[c] < n:
            taken[c] += 1
            out.write(line)
t0 = time.time()
subprocess.run([binary, "run", os.environ.get("PLAN", "plans/wrap.sql"), "--set", f"input={src}", "--set", f"output={tmp}/out",
                "--set", f"limit={n * len(cats)}", "--set", f"styles={os.environ.get('STYLES', 'easy,medium,hard,qa')}",
                "--set", f"model={os.environ.get('MODEL', 'models/smollm2-135m-instruct')}", "--workers", "1", "--set", "threads=2", "--set", "batch=32",
                "-q"], check=True, stdout=subprocess.DEVNULL)
wall = time.time() - t0
m = json.load(open(f"{tmp}/out/manifest.json"))
r = m["rephrase"]
print(f"{binary}: {sum(taken.values())} articles ({', '.join(cats)}), {m['counts']['chunks']} chunks, "
      f"{r['tasks']} style tasks, {wall:.0f} s")
print("| style | tasks | accepted | rate | new names | unsupported | trimmed | copy p50 | copy p90 | mean cos | p10 cos | FK | rejected by reason |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
f = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"
for name in r["style_order"]:
    s = r["styles"].get(name)
    if not s:
        continue
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items()))
    print(f"| {name} | {s['tasks']} | {s['accepted']} | {100 * s['acceptance']:.0f}% | {s.get('with_new_entities', '-')} | "
          f"{s.get('with_unsupported_sentences', '-')} | {s.get('trimmed', '-')} | {f(s.get('median_copy_share'))} | "
          f"{f(s.get('p90_copy_share'))} | {f(s['mean_cosine'], 3)} | {f(s['p10_cosine'], 3)} | {f(s['mean_fk_grade'], 1)} | {reasons} |")
print(f"output: {tmp}/out")
