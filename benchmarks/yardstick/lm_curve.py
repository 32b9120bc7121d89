#!/usr/bin/env python3
"""The `lm` gate's curve: acceptance against the faithful share of accepted rows as its
threshold (`max_unsupported_share`) moves, per style, and what reading costs.

usage: python3 benchmarks/yardstick/lm_curve.py MODEL_DIR PART[:RUN_SECONDS] ... [--binary B] [--plan P] [--save DIR]

Each PART (pairs.jsonl, blind labels.jsonl) is judged twice with `wrapflow judge` and the plan's
gates as they are now: without the lm gate, then with it at share 1 (it fails nothing, so every
row the other gates keep has each claim read and its reading returned). A row is kept at
threshold t when the other gates keep it and its largest claim share is at most t, which is what
the gate decides at `max_unsupported_share = t`. The seconds between the two judge runs are the
gate's reading cost; with RUN_SECONDS (the wall time of the run that made the pairs) the kept
tokens per second of run + reading are printed too. With --save DIR, the judge outputs and their
times are kept as DIR/PART.{base,read}.jsonl and read from there on the next run.
"""
import json, os, subprocess, sys, time

import pyarrow as pa
import wrapflow

args = sys.argv[1:]
opt = lambda name, default: args[args.index(name) + 1] if name in args else default
binary, plan, save = opt("--binary", "target/debug/wrapflow"), opt("--plan", "plans/wrap.sql"), opt("--save", None)
rest = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))]
model, parts = rest[0], rest[1:]
STYLES = ["easy", "medium", "hard", "qa"]
THRESHOLDS = [None, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.0]


def judge(part, kind, *sets):
    cached = save and os.path.join(save, f"{os.path.basename(part.rstrip('/'))}.{kind}.jsonl")
    if cached and os.path.exists(cached):
        lines = open(cached).read().splitlines()
        took = json.loads(lines[0])["seconds"]
    else:
        cmd = [binary, "judge", plan, "--pairs", os.path.join(part, "pairs.jsonl")] + [x for s in sets for x in ("--set", s)]
        t0 = time.time()
        lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
        took = time.time() - t0
        if cached:
            os.makedirs(save, exist_ok=True)
            open(cached, "w").write("".join(l + "\n" for l in [json.dumps({"seconds": took})] + lines))
            lines = [json.dumps({"seconds": took})] + lines
    return {(r := json.loads(l))["pair"]: r for l in lines if "pair" in json.loads(l)}, took


def tokens(texts):
    tok = os.path.join(model, "tokenizer.json")
    t = pa.table({"i": list(range(len(texts))), "text": texts})
    got = wrapflow.sql("SELECT i, token_count(text) AS n FROM t ORDER BY i", [("t", t)], tokenizer=tok)
    return pa.table(got).column("n").to_pylist() if texts else []


for spec in parts:
    part, _, run_s = spec.partition(":")
    load = lambda f: {(r := json.loads(l))["pair"]: r for l in open(os.path.join(part, f))}
    pairs, labels = load("pairs.jsonl"), load("labels.jsonl")
    base, t_base = judge(part, "base")
    read, t_read = judge(part, "read", f"grounding_model={model}", "max_unsupported_share=1")
    ids = [p for p in pairs if p in labels]
    kept = [p for p in ids if base[p]["accepted"]]
    assert all(read[p]["accepted"] for p in kept), "at share 1 the lm gate fails nothing"
    share = {p: max((c["unsupported_share"] for c in read[p]["gates"].get("lm", [])), default=0.0) for p in kept}
    n_tok = dict(zip(kept, tokens([base[p]["text"] for p in kept])))
    extra = t_read - t_base
    print(f"{part}: {len(ids)} labelled pairs, {len(kept)} kept by the other gates; judge {t_base:.0f} s, "
          f"with the lm gate reading {t_read:.0f} s (+{extra:.0f} s, {extra / max(len(kept), 1):.2f} s per row read)")
    head = f"  {'max share':>9} {'all styles':>26}" + "".join(f" {s:>18}" for s in STYLES)
    print(head + (f" {'kept tok/s':>10}" if run_s else ""))
    for t in THRESHOLDS:
        acc = [p for p in kept if t is None or share[p] <= t]

        def cell(style=None):
            rows = [p for p in ids if style is None or pairs[p]["style"] == style]
            a = [p for p in acc if p in rows]
            f = sum(labels[p]["label"] == "faithful" for p in a)
            return f"{100 * len(a) / max(len(rows), 1):3.0f}% acc, {f:3}/{len(a):<3} f" + (f" {100 * f / len(a):3.0f}%" if a else "    ")

        line = f"  {'off' if t is None else t:>9} {cell():>26}" + "".join(f" {cell(s):>18}" for s in STYLES)
        if run_s:
            line += f" {sum(n_tok[p] for p in acc) / (float(run_s) + (extra if t is not None else 0)):10.2f}"
        print(line)
