#!/usr/bin/env python3
"""Turns a `plans/wrap.sql` output into the yardstick's pairs: every style task's final answer,
accepted or rejected, beside its source chunk.

usage: python3 benchmarks/yardstick/pairs.py PART OUTPUT_DIR PAIRS.jsonl VERDICTS.jsonl

PAIRS.jsonl gets what a blind reader sees (pair id, style, source, rewrite); VERDICTS.jsonl what
the gates decided (accepted, reason, scores), kept apart so that the reader never sees it. Needs
pyarrow. The pair id is stable: part, document, chunk and style.
"""
import glob, hashlib, json, os, sys
import pyarrow.parquet as pq

part, out, pairs_path, verdicts_path = sys.argv[1:5]

def rows(folder):
    for f in sorted(glob.glob(os.path.join(out, folder, "**", "*.parquet"), recursive=True)):
        yield from pq.read_table(f).to_pylist()

chunks = {(r["doc_id"], r["chunk_index"]): r["text"] for r in rows("chunks")}
found = []
for r in rows("synthetic"):
    found.append((r["doc_id"], r["chunk_index"], r["style"], r["text"], True, "", {
        k: r[k] for k in ("cosine", "copy_share", "new_entities", "invented_numbers", "attempts") if k in r}))
for f in sorted(glob.glob(os.path.join(out, "rejects", "**", "*.jsonl"), recursive=True)):
    for line in open(f):
        r = json.loads(line)
        if r.get("stage") == "gate" and r.get("snippet", "").strip():
            found.append((r["doc_id"], r["chunk_index"], r["style"], r["snippet"], False, r["reason"],
                          json.loads(r["scores"] or "{}")))
with open(pairs_path, "a") as p, open(verdicts_path, "a") as v:
    for doc, ci, style, text, accepted, reason, scores in sorted(found, key=lambda x: (x[0], x[1], x[2])):
        pid = hashlib.sha256(f"{part}/{doc}/{ci}/{style}".encode()).hexdigest()[:10]
        p.write(json.dumps({"pair": pid, "part": part, "doc": doc, "style": style,
                            "source": chunks[(doc, ci)], "rewrite": text}) + "\n")
        v.write(json.dumps({"pair": pid, "accepted": accepted, "reason": reason, "scores": scores}) + "\n")
print(f"{part}: {len(found)} pairs, {sum(x[4] for x in found)} accepted")
