#!/usr/bin/env python3
"""The yardstick's figures: how faithful the accepted rows are, and what each check catches.

usage: python3 benchmarks/yardstick/evaluate.py PART [BINARY=target/debug/wrapflow] [PLAN=plans/wrap.sql] [--curve]

PART is benchmarks/yardstick/tune or .../held (pairs.jsonl, labels.jsonl from blind readers,
run_verdicts.jsonl from the run that made the pairs). Re-judges every pair with `wrapflow judge`
and the plan's gates as they are now, then prints (1) labels of all pairs, of the rows the run
accepted, and of the rows today's gates accept, per style; (2) per check, over all pairs: rows
flagged, precision (flagged rows that readers call unfaithful), recall (unfaithful rows flagged)
and good rows (faithful or minor) flagged. With --curve, (3) the acceptance against the faithful
share of accepted rows as the plan's `coverage` parameter (the grounding gate's threshold) moves,
per style: the same pairs judged again at each setting.
"""
import collections, json, os, subprocess, sys

curve = "--curve" in sys.argv
args = [a for a in sys.argv[1:] if a != "--curve"]
part = args[0]
binary = args[1] if len(args) > 1 else "target/debug/wrapflow"
plan = args[2] if len(args) > 2 else "plans/wrap.sql"
load = lambda f: {(r := json.loads(l))["pair"]: r for l in open(os.path.join(part, f))}
pairs, labels, run = load("pairs.jsonl"), load("labels.jsonl"), load("run_verdicts.jsonl")
def judge(*sets):
    cmd = [binary, "judge", plan, "--pairs", os.path.join(part, "pairs.jsonl")] + [x for s in sets for x in ("--set", s)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {(r := json.loads(l))["pair"]: r for l in out.splitlines()}

judged = judge()
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

if curve:
    styles = ["easy", "medium", "hard", "qa"]
    print(f"\n  {'coverage':8} {'all styles':>22}" + "".join(f" {s:>16}" for s in styles))
    for t in [0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
        j = judge(f"coverage={t}")
        def cell(rows):
            acc = [p for p in rows if j[p]["accepted"]]
            f = sum(labels[p]["label"] == "faithful" for p in acc)
            return f"{100 * len(acc) / max(len(rows), 1):3.0f}% acc, {100 * f / len(acc):3.0f}% f" if acc else "  0% acc,    - f"
        print(f"  {t:8} {cell(ids):>22}" + "".join(f" {cell([p for p in ids if pairs[p]['style'] == s]):>16}" for s in styles))
