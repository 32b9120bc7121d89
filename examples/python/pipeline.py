"""wrapflow from Python, step by step (run it as a script, or cell by cell in a notebook).

    pip install .                      # from the repository root (or: maturin develop)
    python examples/python/pipeline.py

It reads the BBC corpus that scripts/demo.sh fetches (data/bbc/bbc.jsonl), scores and filters it
with wrapflow's SQL functions, removes exact and near duplicates, chunks it, rephrases a few
chunks with plans/wrap.sql's model, styles and gates, mixes real and synthetic rows 1:1, then runs
plans/chunk.sql on the same files as `wrapflow run` would. The models are the ones scripts/demo.sh
imports (SmolLM2-135M-Instruct and MiniLM).
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

# %% Exact, then near-duplicate dedup (state kept across batches, as in a plan)
exact, near = wrapflow.Dedup("text"), wrapflow.NearDedup("text", bands=14, rows=8)
unique = pa.concat_tables([near(exact(b)) for b in kept.to_batches(max_chunksize=100)])
print(f"{unique.num_rows} unique documents ({exact.seen} distinct texts)")

# %% Chunks of at most 64 tokens (plans/wrap.sql's default), with their lineage
chunker = wrapflow.Chunker(TOKENIZER, max_tokens=64)
chunks, rejects = chunker.split(unique)
print(chunks.select(["doc_id", "chunk_index", "n_tokens"]).slice(0, 5))

# %% Rephrase a few chunks: plans/wrap.sql's model, styles, retries and gates, loaded once
rephraser = wrapflow.Rephraser(ROOT / "plans/wrap.sql")
synthetic, gate_rejects = rephraser.split(chunks.slice(0, 3))  # 12 style tasks: the default model keeps few
print(synthetic.select(["style", "text", "cosine", "coverage"]).to_pylist())
print(gate_rejects.select(["style", "reason"]).to_pylist())
# Or from options alone: wrapflow.Rephraser(model="models/smollm2-135m-instruct", styles="qa",
#     gates={"embedder": "models/all-minilm-l6-v2"}), or endpoint="http://host:8000/v1".

# %% Mix real and synthetic 1:1 by tokens into Parquet and Megatron shards (as `wrapflow remix`)
mixes = f"""MIX wrap WITH (ratio = '1:1', shortfall = 'repeat', max_epochs = 2);
MIX wrap_tokens WITH (ratio = '1:1', format = 'megatron', tokenizer = '{TOKENIZER}', unit = 'document');"""
mixed = wrapflow.mix(chunks.slice(0, 3), synthetic, mixes, str(pathlib.Path(tempfile.mkdtemp()) / "mix"),
                     styles=["easy", "medium", "hard", "qa"])  # the plan's styles, whichever were kept
print([(m["name"], m["tokens"]) for m in mixed["mixes"]])

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
# Ray Data: a class is built once per actor (a Rephraser loads its model once), then called per batch.
#     ds = ray.data.read_parquet("s3://corpus/").map_batches(
#         wrapflow.Chunker, fn_constructor_args=(TOKENIZER,), batch_format="pyarrow", concurrency=4)
#     ds = ds.map_batches(wrapflow.Rephraser, fn_constructor_args=("plans/wrap.sql",),
#                         batch_format="pyarrow", batch_size=64, concurrency=2)
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
# datafusion-python: register wrapflow's result as a table of your own session, or wrap an
# operator as a UDF over Arrow arrays.
#     ctx.from_arrow(wrapflow.apply(table, "word_count"))
#     words = datafusion.udf(lambda text: wrapflow.apply(pa.table({"text": text}), "word_count").column(1).combine_chunks(),
#                            [pa.string()], pa.uint64(), "stable", name="wf_word_count")
