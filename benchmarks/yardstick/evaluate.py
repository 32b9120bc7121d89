#!/usr/bin/env python3
"""The yardstick's figures: how faithful the accepted rows are, and what each check catches.

usage: python3 benchmarks/yardstick/evaluate.py PART [BINARY=target/debug/wrapflow] [PLAN=plans/wrap.sql]

PART is benchmarks/yardstick/tune or .../held (pairs.jsonl, labels.jsonl from blind readers,
run_verdicts.jsonl from the run that made the pairs). Re-judges every pair with `wrapflow judge`
and the plan's gates as they are now, then prints (1) labels of all pairs, of the rows the run
accepted, and of the rows today's gates accept, per style; (2) per check, over all pairs: rows
flagged, precision (flagged rows that readers call unfaithful), recall (unfaithful rows flagged)
and good rows (faithful or minor) flagged.
"""
import collections, json, os, subprocess, sys

part = sys.argv[1]
binary = sys.argv[2] if len(sys.argv) > 2 else "target/debug/wrapflow"
plan = sys.argv[3] if len(sys.argv) > 3 else "plans/wrap.sql"
load = lambda f: {(r := json.loads(l))["pair"]: r for l in open(os.path.join(part, f))}
pairs, labels, run = load("pairs.jsonl"), load("labels.jsonl"), load("run_verdicts.jsonl")
out = subprocess.run([binary, "judge", plan, "--pairs", os.path.join(part, "pairs.jsonl")],
                     check=True, capture_output=True, text=True).stdout
judged = {(r := json.loads(l))["pair"]: r for l in out.splitlines()}
ids = [p for p in pairs if p in labels]
bad = lambda p: labels[p]["label"] == "unfaithful"

def share(rows):
    c = collections.Counter(labels[p]["label"] for p in rows)
    f = c["faithful"] / len(rows) if rows else float("nan")
    return f"{len(rows):4} rows: {c['faithful']:3} faithful, {c['minor']:3} minor, {c['unfaithful']:3} unfaithful ({100 * f:.0f}% faithful)"

print(f"{part}: {len(ids)} labelled pairs")
for name, keep in [("all pairs", lambda p: True), ("accepted by the run", lambda p: run[p]["accepted"]),
                   ("accepted by today's gates", lambda p: judged[p]["accepted"])]:
    print(f"  {name:26} {share([p for p in ids if keep(p)])}")
    for style in ["easy", "medium", "hard", "qa"]:
        print(f"    {style:24} {share([p for p in ids if keep(p) and pairs[p]['style'] == style])}")

g = lambda p: judged[p]["grounding"]
gates = lambda p: judged[p]["gates"]
checks = {
    "meaning (cosine < 0.75)": lambda p: (judged[p]["cosine"] or 1) < 0.75,
    "entities (new name)": lambda p: bool(gates(p)["new_entities"]),
    "numbers (new number)": lambda p: bool(gates(p)["invented_numbers"]),
    "unknown words": lambda p: bool(g(p).get("unknown_words")),
    "figures": lambda p: bool(g(p).get("unbound_figures")),
    "names": lambda p: bool(g(p).get("unbound_names")),
    "anchors": lambda p: bool(g(p).get("scattered_anchors")),
    "polarity": lambda p: bool(g(p).get("flipped_polarity")),
}
for t in [0.5, 0.6, 0.7, 0.8]:
    checks[f"coverage < {t}"] = (lambda t: lambda p: g(p)["coverage"] < t)(t)
checks["any grounding gate on"] = lambda p: any(judged[p]["reason"].startswith(k) for k in
                                               ["unknown words", "coverage", "figures", "names", "anchors", "polarity"])
nbad, ngood = sum(map(bad, ids)), sum(not bad(p) for p in ids)
print(f"\n  {'check':26} {'flags':>5} {'precision':>9} {'recall':>6} {'good rows flagged':>18}")
for name, f in checks.items():
    fl = [p for p in ids if f(p)]
    tp = sum(map(bad, fl))
    prec = f"{tp / len(fl):.2f}" if fl else "-"
    print(f"  {name:26} {len(fl):5} {prec:>9} {tp / max(nbad, 1):6.2f} {len(fl) - tp:8} of {ngood}")
