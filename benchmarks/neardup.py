"""Recall and precision of NEARDUP on the BBC corpus with planted near duplicates.

For every 4th article, variants are planted with 1, 2, 3, 5, 7 and 10% of the words replaced by
words of another article (seeded). The corpus then runs through `wrapflow run` with exact dedup
and NEARDUP under each setting; the kept documents are read back from chunks/.
  recall at p%  = planted (original, variant at p%) pairs of which at most one is kept / pairs
  precision     = dropped documents that are planted variants of a kept document (or of an
                  original dropped with them) / all dropped documents
Real near duplicates already in BBC count against precision here (they are not planted).

usage: .venv/bin/python benchmarks/neardup.py   (after scripts/setup.sh and cargo build)
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time

import pyarrow.parquet as pq

BIN = "target/debug/wrapflow"
RATES = [1, 2, 3, 5, 7, 10]
SETTINGS = [(5, 14, 8, "cluster"), (3, 20, 5, "cluster"), (2, 25, 4, "cluster"),
            (5, 14, 8, "band"), (3, 20, 5, "band"), (2, 25, 4, "band")]
work = "target/bench-out/neardup"
os.makedirs(f"{work}/in", exist_ok=True)

docs = [json.loads(l) for l in open("data/bbc/bbc.jsonl")]
seen, originals = set(), []
for d in docs:  # exact duplicates of BBC are exact dedup's business
    if d["text"] not in seen:
        seen.add(d["text"])
        originals.append(d)
rng = random.Random(7)
truth = {}  # id -> (cluster, rate)
rows = []
for i, d in enumerate(originals):
    rows.append({"id": d["id"], "text": d["text"]})
    truth[d["id"]] = (d["id"], 0)
    if i % 4:
        continue
    words = d["text"].split(" ")
    donor = originals[(i * 7 + 3) % len(originals)]["text"].split(" ")
    for r in RATES:
        w = list(words)
        for at in rng.sample(range(len(w)), max(1, len(w) * r // 100)):
            w[at] = rng.choice(donor)
        vid = f"{d['id']}~{r}"
        rows.append({"id": vid, "text": " ".join(w)})
        truth[vid] = (d["id"], r)
rng.shuffle(rows)
with open(f"{work}/in/corpus.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")

print(f"corpus: {len(originals)} BBC originals, {len(rows) - len(originals)} planted variants")
print(f"{'method':>7} {'ngram':>5} {'bands':>5} {'rows':>4} {'thresh':>6} " + " ".join(f"{'R@' + str(r) + '%':>6}" for r in RATES)
      + f" {'precision':>9} {'dropped':>7} {'wall s':>6} {'peak MB':>7}")
for ngram, bands, rws, method in SETTINGS:
    plan = f"{work}/plan-{ngram}-{bands}-{rws}-{method}.sql"
    out = f"{work}/out-{ngram}-{bands}-{rws}-{method}"
    with open(plan, "w") as f:
        f.write(f"""TOKENIZER 'models/smollm2-135m-instruct/tokenizer.json';
CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '{work}/in';
INPUT raw;
DEDUP ON text;
NEARDUP WITH (ngram = {ngram}, bands = {bands}, rows = {rws}, method = '{method}');
CHUNK WITH (max_tokens = 4000);
SINK '{out}';
""")
    t0 = time.time()
    shutil.rmtree(out, ignore_errors=True)  # a finished output would be returned as it is
    child = subprocess.Popen([BIN, "run", plan, "-q", "--workers", "2"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    assert status == 0, status
    wall = time.time() - t0
    kept = set(pq.read_table(f"{out}/chunks", columns=["doc_id"]).column("doc_id").to_pylist())
    dropped = [i for i in truth if i not in kept]
    kept_clusters = {truth[i][0] for i in kept}
    good = sum(1 for i in dropped if truth[i][0] in kept_clusters and any(truth[j][0] == truth[i][0] for j in truth if j != i))
    recall = []
    for r in RATES:
        planted = [i for i, (c, rr) in truth.items() if rr == r]
        caught = sum(1 for i in planted if not (i in kept and truth[i][0] in kept))
        recall.append(caught / len(planted))
    thresh = (1 - 0.5 ** (1 / bands)) ** (1 / rws)
    print(f"{method:>7} {ngram:>5} {bands:>5} {rws:>4} {thresh:>6.2f} " + " ".join(f"{x:>6.2f}" for x in recall)
          + f" {good / max(1, len(dropped)):>9.3f} {len(dropped):>7} {wall:>6.1f} {usage.ru_maxrss / 1024:>7.0f}")
    m = json.load(open(f"{out}/manifest.json"))
    assert m["counts"]["near_duplicates"] == len(dropped), (m["counts"], len(dropped))
