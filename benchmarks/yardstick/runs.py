#!/usr/bin/env python3
"""Compares runs of the same documents by reading: the accepted rows of several `plans/wrap.sql`
outputs, labelled blind once each.

usage:
  python3 benchmarks/yardstick/runs.py make OUT_DIR RUN_DIR... [--labels PART_DIR...]
  python3 benchmarks/yardstick/runs.py score OUT_DIR RUN_DIR...
  python3 benchmarks/yardstick/runs.py score OUT_DIR          # from what `make` kept in OUT_DIR

`make` gathers every accepted row of the runs with its source chunk, keeps one copy of each
distinct (source, rewrite), takes the label of a pair that a yardstick part already has word for
word (its pairs.jsonl, or an earlier comparison's blind.jsonl, and labels.jsonl: read blind
before), and writes the rest, shuffled under
new ids, to OUT_DIR/blind.jsonl for readers who see only those pairs and GUIDE.md
(OUT_DIR/key.jsonl maps the ids back; readers' labels go to OUT_DIR/labels.jsonl). `score`
prints per run: tasks, accepted rows, and their faithful / minor / unfaithful shares per style.
`make` also keeps each run's accepted rows (style and pair key) and manifest counts in
OUT_DIR/runs.jsonl, so that `score OUT_DIR` alone reproduces the figures once the runs are gone.
"""
import collections, glob, hashlib, json, os, random, sys

import pyarrow.parquet as pq

cmd, out, *rest = sys.argv[1:]
runs = [r for r in rest[: rest.index("--labels")]] if "--labels" in rest else rest
parts = rest[rest.index("--labels") + 1 :] if "--labels" in rest else []


def parquet(run, folder):
    for f in sorted(glob.glob(os.path.join(run, folder, "**", "*.parquet"), recursive=True)):
        yield from pq.read_table(f).to_pylist()


def accepted(run):
    chunks = {(r["doc_id"], r["chunk_index"]): r["text"] for r in parquet(run, "chunks")}
    return [(r["style"], chunks[(r["doc_id"], r["chunk_index"])], r["text"]) for r in parquet(run, "synthetic")]


key_of = lambda source, rewrite: hashlib.sha256(f"{source}\0{rewrite}".encode()).hexdigest()[:12]

if cmd == "make":
    os.makedirs(out, exist_ok=True)
    known = {}
    for part in parts:
        # A yardstick part keeps its pairs in pairs.jsonl; an earlier comparison, in blind.jsonl.
        name = "pairs.jsonl" if os.path.exists(os.path.join(part, "pairs.jsonl")) else "blind.jsonl"
        pairs = [json.loads(l) for l in open(os.path.join(part, name))]
        labels = {(l := json.loads(x))["pair"]: l for x in open(os.path.join(part, "labels.jsonl"))}
        for p in pairs:
            if p["pair"] in labels:
                known[key_of(p["source"], p["rewrite"])] = labels[p["pair"]] | {"from": part}
    rows = {key_of(src, text): (style, src, text) for run in runs for style, src, text in accepted(run)}
    fresh = [k for k in sorted(rows) if k not in known]
    random.Random(7).shuffle(fresh)
    with open(os.path.join(out, "blind.jsonl"), "w") as b, open(os.path.join(out, "key.jsonl"), "w") as kf:
        for i, k in enumerate(fresh):
            style, src, text = rows[k]
            pid = f"r{i:03d}"
            b.write(json.dumps({"pair": pid, "style": style, "source": src, "rewrite": text}) + "\n")
            kf.write(json.dumps({"pair": pid, "key": k}) + "\n")
    with open(os.path.join(out, "known.jsonl"), "w") as f:
        for k in sorted(rows):
            if k in known:
                f.write(json.dumps({"key": k, "label": known[k]["label"], "kind": known[k].get("kind", ""), "from": known[k]["from"]}) + "\n")
    with open(os.path.join(out, "runs.jsonl"), "w") as f:
        for run in runs:
            m = json.load(open(os.path.join(run, "manifest.json")))["rephrase"]
            kept = [{"style": st, "key": key_of(s, t)} for st, s, t in accepted(run)]
            counts = {k: m.get(k, 0) for k in ["tasks", "accepted", "generated_tokens", "retries"]}
            f.write(json.dumps({"run": os.path.basename(run.rstrip("/")), **counts, "rows": kept}) + "\n")
    print(f"{len(rows)} distinct accepted pairs: {len(rows) - len(fresh)} labelled before, {len(fresh)} to read")
elif cmd == "score":
    labels = {json.loads(l)["key"]: json.loads(l)["label"] for l in open(os.path.join(out, "known.jsonl"))}
    ids = {(k := json.loads(l))["pair"]: k["key"] for l in open(os.path.join(out, "key.jsonl"))}
    for l in open(os.path.join(out, "labels.jsonl")):
        r = json.loads(l)
        labels[ids[r["pair"]]] = r["label"]
    if runs:
        kept = []
        for run in runs:
            m = json.load(open(os.path.join(run, "manifest.json")))["rephrase"]
            rows = [{"style": st, "key": key_of(s, t)} for st, s, t in accepted(run)]
            kept.append({"run": run, **{k: m.get(k, 0) for k in ["tasks", "accepted", "generated_tokens", "retries"]}, "rows": rows})
    else:
        kept = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
    for m in kept:
        print(f"{m['run']}: {m['tasks']} tasks, {m['accepted']} accepted, {m['generated_tokens']} generated tokens, "
              f"{m['retries']} retries")
        for style in [None, "easy", "medium", "hard", "qa"]:
            got = [labels.get(r["key"], "?") for r in m["rows"] if style in (None, r["style"])]
            c = collections.Counter(got)
            n = len(got)
            print(f"  {style or 'all':7} {n:4} rows: faithful {c['faithful']:3} ({100 * c['faithful'] / max(n, 1):3.0f}%), "
                  f"minor {c['minor']:3}, unfaithful {c['unfaithful']:3}, unlabelled {c['?']}")
