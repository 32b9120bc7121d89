#!/usr/bin/env python3
"""wrapflow's operators from Python against the same work through the CLI, and against
datatrove's Python filters, on one Arrow table of SIZE_MB of text.

usage: .venv/bin/python benchmarks/python_ops.py [SIZE_MB=100] [BINARY=target/debug/wrapflow]
needs: the package installed in the venv (`pip install .` or `maturin develop`), the BBC corpus
       (scripts/fetch-bbc.sh); datatrove (`pip install datatrove==0.10.1 spacy regex nltk`) for its
       column, else that column is skipped.

The table is BBC articles replicated to SIZE_MB (each copy with a unique first sentence), written
as one Parquet file per core. The same work both ways:
- python: the files read with `pyarrow.parquet`, `wrapflow.sql` with plans/chunk.sql's filter (the
  Gopher rules and C4's bad-phrase rule, all wrapflow SQL functions), `wrapflow.Dedup("text")`,
  `wrapflow.Chunker(max_tokens=300).split`, the chunks written with `pyarrow.parquet`;
- cli: `wrapflow run plans/chunk.sql` on the same files: read, filter, dedup, chunk, Parquet shards
  (plus its checkpoint and manifest);
- datatrove: GopherQualityFilter and GopherRepetitionFilter (the rules chunk.sql has) on the
  same texts as datatrove Documents, in process, no chunking.
Threads: the python column uses all cores (DataFusion partitions the table); the CLI runs
--workers equal to the cores; datatrove runs one process per core over a share of the rows.
It prints MB/s of each, and the addresses that show the text column was not copied.
"""
import json, os, pathlib, re, subprocess, sys, tempfile, time

import pyarrow as pa
import pyarrow.parquet as pq

import wrapflow

ROOT = pathlib.Path(__file__).resolve().parents[1]
size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
binary = sys.argv[2] if len(sys.argv) > 2 else str(ROOT / "target/debug/wrapflow")
TOKENIZER = str(ROOT / "models/smollm2-135m-instruct/tokenizer.json")  # scripts/demo.sh imports it
cores = os.cpu_count() or 1

with open(ROOT / "data/bbc/bbc.jsonl") as f:
    bbc = [json.loads(l) for l in f]
ids, texts, size, copy = [], [], 0, 0
while size < size_mb << 20:
    for r in bbc:
        head, _, rest = r["text"].partition("\n")
        t = f"{head}\nCopy {copy}. {rest}"
        ids.append(f"{copy}/{r['id']}")
        texts.append(t)
        size += len(t.encode())
    copy += 1
table = pa.table({"id": ids, "text": texts})
mb = size / (1 << 20)
plan_text = (ROOT / "plans/chunk.sql").read_text()
where = re.search(r"CREATE VIEW docs AS\s+SELECT \* FROM raw\s+WHERE (.*?);", plan_text, re.S).group(1)
where = where.replace("${min_words}", "50")
print(f"{len(texts)} documents, {mb:.1f} MB of text, {cores} cores")

with tempfile.TemporaryDirectory() as tmp:
    inp = pathlib.Path(tmp) / "in"
    inp.mkdir()
    per = (len(texts) + cores - 1) // cores
    for i in range(cores):
        pq.write_table(table.slice(i * per, per), inp / f"part-{i}.parquet")

    t0 = time.perf_counter()
    read = pq.read_table(inp)
    kept = wrapflow.sql(f"SELECT id, text FROM docs WHERE {where}", docs=read)
    t1 = time.perf_counter()
    unique = wrapflow.Dedup("text")(kept)
    t2 = time.perf_counter()
    chunks, rejects = wrapflow.Chunker(TOKENIZER, max_tokens=300).split(unique)
    t3 = time.perf_counter()
    pq.write_table(chunks, pathlib.Path(tmp) / "py-chunks.parquet")
    t4 = time.perf_counter()
    py_s = t4 - t0
    print(f"python    read+filter {t1 - t0:6.2f} s  dedup {t2 - t1:6.2f} s  chunk {t3 - t2:6.2f} s  "
          f"write {t4 - t3:6.2f} s  total {py_s:6.2f} s  {mb / py_s:6.1f} MB/s  kept {unique.num_rows}  "
          f"chunks {chunks.num_rows}")

    cmd = [binary, "run", str(ROOT / "plans/chunk.sql"), "--set", f"input={inp}", "--set", f"output={tmp}/out",
           "--set", "format=PARQUET", "--set", f"tokenizer={TOKENIZER}", "--workers", str(cores), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    t = time.perf_counter() - t0
    m = json.loads((pathlib.Path(tmp) / "out/manifest.json").read_text())
    print(f"cli       read+filter+dedup+chunk+write {t:7.2f} s  {mb / t:6.1f} MB/s  kept {m['counts']['kept']}  "
          f"chunks {m['counts']['chunks']}")
    print(f"python / cli throughput: {t / py_s:.2f} (target: at least 0.90)")

# Zero copy: the projected text column of a function call points into the input's buffer.
scored = wrapflow.sql("SELECT text, word_count(text) AS w FROM docs", docs=table)
src = table.column("text").chunks[0].buffers()[2]
inside = all(src.address <= c.buffers()[2].address and c.buffers()[2].address + c.buffers()[2].size
             <= src.address + src.size for c in scored.column("text").chunks)
print(f"zero copy: input text buffer at {src.address:#x} ({src.size} bytes); output chunks at "
      f"{[hex(c.buffers()[2].address) for c in scored.column('text').chunks][:4]} ... inside it: {inside}")

try:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
except ImportError:
    print("datatrove   not installed: pip install datatrove==0.10.1 spacy regex nltk")
    sys.exit(0)
from concurrent.futures import ProcessPoolExecutor


def datatrove_share(lo_hi):
    lo, hi = lo_hi
    rep = GopherRepetitionFilter(dup_line_frac=0.3, top_n_grams=((2, 0.2),), dup_n_grams=((5, 0.15),))
    qual = GopherQualityFilter(max_non_alpha_words_ratio=None)
    kept = 0
    for i in range(lo, hi):
        d = Document(text=texts[i], id=ids[i])
        if rep.filter(d) is True and qual.filter(d) is True:
            kept += 1
    return kept


t0 = time.perf_counter()
with ProcessPoolExecutor(cores) as ex:
    per = (len(texts) + cores - 1) // cores
    kept_dt = sum(ex.map(datatrove_share, [(i * per, min(len(texts), (i + 1) * per)) for i in range(cores)]))
t = time.perf_counter() - t0
print(f"datatrove filter only {t:7.2f} s  {mb / t:6.1f} MB/s  kept {kept_dt}")
