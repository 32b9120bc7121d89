#!/usr/bin/env python3
"""The language-model grounding score on the yardstick: is it a check worth a gate?

usage: python3 benchmarks/yardstick/lm_grounding.py MODEL_DIR TUNE_PART HELD_PART [BINARY] [PLAN] [--save DIR]

Runs `wrapflow judge --lm MODEL_DIR` on both parts' pairs: every claim (sentence) of a rewrite
is read by the model after its source and without it. Per pair it takes four aggregates over the
claims (the weakest claim decides): the lowest mean gain in log-probability that the source
brings, the lowest three-token gain, the highest share of tokens unlikely even with the source
and not helped by it, and the lowest mean log-probability with the source. Thresholds are
chosen on TUNE_PART only (the best recall at precision >= 0.85 over all pairs, else the best
precision); HELD_PART is then read once at those thresholds: flags, precision, recall, good
rows flagged, and the faithful share of the rows today's gates accept with and without the
check added. With --save DIR, each part's `wrapflow judge` output is kept as DIR/PART.jsonl.
"""
import json, os, subprocess, sys

argv = sys.argv[1:]
save = None
if "--save" in argv:
    i = argv.index("--save")
    save = argv[i + 1]
    del argv[i:i + 2]
model, tune, held = argv[:3]
binary = argv[3] if len(argv) > 3 else "target/debug/wrapflow"
plan = argv[4] if len(argv) > 4 else "plans/wrap.sql"

AGGREGATES = {
    "min mean gain": (lambda cs: min(c["mean_gain"] for c in cs), "low"),
    "min 3-token gain": (lambda cs: min(c["min_gain3"] for c in cs), "low"),
    "max unsupported share": (lambda cs: max(c["unsupported_share"] for c in cs), "high"),
    "min mean logprob with source": (lambda cs: min(c["mean_with"] for c in cs), "low"),
}


def load(part):
    read = lambda f: {(r := json.loads(l))["pair"]: r for l in open(os.path.join(part, f))}
    pairs, labels = read("pairs.jsonl"), read("labels.jsonl")
    cmd = [binary, "judge", plan, "--pairs", os.path.join(part, "pairs.jsonl"), "--lm", model]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    if save:
        os.makedirs(save, exist_ok=True)
        with open(os.path.join(save, os.path.basename(part.rstrip("/")) + ".jsonl"), "w") as f:
            f.write(out)
    judged = {(r := json.loads(l))["pair"]: r for l in out.splitlines()}
    ids = [p for p in pairs if p in labels and judged[p]["lm"]]
    return ids, labels, judged


def flags(judged, ids, agg, t):
    f, side = AGGREGATES[agg]
    v = {p: f(judged[p]["lm"]) for p in ids}
    return [p for p in ids if (v[p] < t if side == "low" else v[p] > t)]


def stats(ids, labels, flagged):
    bad = lambda p: labels[p]["label"] == "unfaithful"
    tp = sum(map(bad, flagged))
    nbad, ngood = sum(map(bad, ids)), sum(not bad(p) for p in ids)
    prec = tp / len(flagged) if flagged else float("nan")
    return len(flagged), prec, tp / max(nbad, 1), len(flagged) - tp, ngood


def faithful_share(labels, rows):
    return (sum(labels[p]["label"] == "faithful" for p in rows), len(rows))


tids, tlabels, tjudged = load(tune)
hids, hlabels, hjudged = load(held)
print(f"tune {tune}: {len(tids)} pairs; held {held}: {len(hids)} pairs")
print(f"  {'check':30} {'threshold':>9} | tune: {'flags':>5} {'prec':>5} {'recall':>6} | held: {'flags':>5} {'prec':>5} {'recall':>6} {'good flagged':>13} | held accepted faithful: gates -> gates + check")
for agg, (f, side) in AGGREGATES.items():
    values = sorted({round(f(tjudged[p]["lm"]), 2) for p in tids})
    best = None
    for t in values:
        n, prec, rec, _, _ = stats(tids, tlabels, flags(tjudged, tids, agg, t))
        if n >= 5 and prec >= 0.85 and (best is None or rec > best[2]):
            best = (t, prec, rec, n)
    if best is None:
        scored = [(stats(tids, tlabels, flags(tjudged, tids, agg, t)), t) for t in values]
        (n, prec, rec, _, _), t = max(((s, t) for s, t in scored if s[0] >= 5), key=lambda x: x[0][1])
        best = (t, prec, rec, n)
    t, tprec, trec, tn = best
    hn, hprec, hrec, hgood, ngood = stats(hids, hlabels, flags(hjudged, hids, agg, t))
    flagged = set(flags(hjudged, hids, agg, t))
    acc = [p for p in hids if hjudged[p]["accepted"]]
    f0, n0 = faithful_share(hlabels, acc)
    f1, n1 = faithful_share(hlabels, [p for p in acc if p not in flagged])
    print(f"  {agg:30} {t:9.2f} | tune: {tn:5} {tprec:5.2f} {trec:6.2f} | held: {hn:5} {hprec:5.2f} {hrec:6.2f} {hgood:5} of {ngood:5} | "
          f"{f0}/{n0} -> {f1}/{n1}")
