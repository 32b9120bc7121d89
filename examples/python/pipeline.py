"""wrapflow from Python, step by step (run it as a script, or cell by cell in a notebook).

    pip install .                      # from the repository root (or: maturin develop)
    python examples/python/pipeline.py

It reads the BBC corpus that scripts/demo.sh fetches (data/bbc/bbc.jsonl), scores and filters it
with wrapflow's SQL functions, chunks it, then runs plans/chunk.sql on the same files as
`wrapflow run` would. The tokenizer is SmolLM2's, as scripts/demo.sh imports it.
"""

# %% Setup
import json
import pathlib
import tempfile

import pyarrow as pa

import wrapflow

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = str(ROOT / "models/smollm2-135m-instruct/tokenizer.json")  # scripts/demo.sh imports it
with open(ROOT / "data/bbc/bbc.jsonl") as f:
    rows = [json.loads(line) for _, line in zip(range(500), f)]
docs = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})

# %% Quality signals as columns, and a filter, in DataFusion SQL over the Arrow table
print(wrapflow.functions())
scored = wrapflow.sql(
    "SELECT id, text, word_count(text) AS words, dup_ngram_fraction(text, 5) AS dup5, "
    "       token_count(text) AS tokens FROM docs",
    docs=docs,
    tokenizer=TOKENIZER,
)
kept = wrapflow.sql("SELECT * FROM scored WHERE words BETWEEN 50 AND 100000 AND dup5 <= 0.15", scored=scored)
print(f"{kept.num_rows} of {docs.num_rows} documents kept")

# One function as one more column:
with_grade = wrapflow.apply(kept, "flesch_kincaid_grade", "text", name="grade")

# %% Chunks of at most 300 tokens, with their lineage (doc_id, chunk_index, byte range)
chunker = wrapflow.Chunker(TOKENIZER, max_tokens=300)
chunks, rejects = chunker.split(kept)
print(chunks.select(["doc_id", "chunk_index", "n_tokens"]).slice(0, 5))

# %% A whole plan, as `wrapflow run` runs it (checkpoints, resume, manifest)
out = pathlib.Path(tempfile.mkdtemp()) / "chunks"
plan = wrapflow.Plan.load(
    ROOT / "plans/chunk.sql",
    set={"input": ROOT / "data/bbc/bbc.jsonl", "output": out, "tokenizer": TOKENIZER},
)
plan.check()
print(plan.explain())
run = plan.run(workers=2)
print(run.manifest["counts"])
print(run.dataset("chunks").to_table().num_rows, "chunk rows in", out)

# %% In the engines you already run (each takes Arrow in and gives Arrow back)
#
# Ray Data: a class is built once per actor, then called per batch.
#     ds = ray.data.read_parquet("s3://corpus/").map_batches(
#         wrapflow.Chunker, fn_constructor_args=(TOKENIZER,), batch_format="pyarrow", concurrency=4)
#
# Daft (tested in tests/python/test_daft.py): a class UDF whose batch method calls the chunker.
#     @daft.cls
#     class Chunks:
#         def __init__(self, tok): self.chunker = wrapflow.Chunker(tok)
#         @daft.method.batch(return_dtype=...)
#         def __call__(self, ids, texts): ...  # pa.table({"id": ids.to_arrow(), "text": texts.to_arrow()})
#
# Spark: mapInArrow hands each task an iterator of RecordBatches.
#     def chunk(batches):
#         c = wrapflow.Chunker(TOKENIZER)
#         for b in batches:
#             yield from c(b).to_batches()
#     df.mapInArrow(chunk, schema_of_chunks)
#
# DuckDB and Polars: their results are Arrow streams.
#     wrapflow.sql("SELECT id FROM d WHERE word_count(text) > 50", d=duckdb.sql("FROM 'docs.parquet'").arrow())
#     wrapflow.sql("SELECT id FROM d WHERE word_count(text) > 50", d=polars_df)
#
# datafusion-python: register wrapflow's result as a table of your own session.
#     ctx.from_arrow(wrapflow.apply(table, "word_count"))
