"""A real Daft pipeline with wrapflow's operators as class UDFs (the chunker loaded once per
instance): quality signals by batch, then chunks exploded into rows, as a data team would write it."""

import daft
import pyarrow as pa

import wrapflow
from conftest import tokenizer_path, bbc_rows

CHUNK = daft.DataType.struct({
    "chunk_index": daft.DataType.uint32(),
    "text": daft.DataType.string(),
    "n_tokens": daft.DataType.uint32(),
})


@daft.cls
class Chunks:
    def __init__(self, tokenizer: str):
        self.chunker = wrapflow.Chunker(tokenizer, max_tokens=64)

    @daft.method.batch(return_dtype=daft.DataType.list(CHUNK))
    def __call__(self, ids: daft.Series, texts: daft.Series):
        table = pa.table({"id": ids.to_arrow(), "text": texts.to_arrow()})
        chunks = self.chunker(table)
        per_doc = {}
        for row in chunks.select(["doc_id", "chunk_index", "text", "n_tokens"]).to_pylist():
            per_doc.setdefault(row.pop("doc_id"), []).append(row)
        return daft.Series.from_pylist([per_doc[i] for i in ids.to_pylist()], dtype=daft.DataType.list(CHUNK))


@daft.cls
class Words:
    @daft.method.batch(return_dtype=daft.DataType.uint64())
    def __call__(self, texts: daft.Series):
        scored = wrapflow.apply(pa.table({"text": texts.to_arrow()}), "word_count", name="words")
        return daft.Series.from_arrow(scored.column("words").combine_chunks())


def test_a_daft_pipeline_scores_filters_and_chunks_with_wrapflow_udfs():
    rows = bbc_rows(300)
    df = daft.from_pylist([{"id": r["id"], "text": r["text"]} for r in rows]).into_batches(64)
    df = df.with_column("words", Words()(df["text"])).where(daft.col("words") >= 400)
    df = df.with_column("chunk", Chunks(tokenizer_path())(df["id"], df["text"])).explode("chunk")
    out = df.select("id", daft.col("chunk").get("chunk_index").alias("chunk_index"),
                    daft.col("chunk").get("text").alias("text")).to_arrow()

    docs = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    long_docs = wrapflow.sql("SELECT id, text FROM docs WHERE word_count(text) >= 400", docs=docs)
    assert 20 < long_docs.num_rows < 300
    expected = wrapflow.Chunker(tokenizer_path(), max_tokens=64)(long_docs)
    got = sorted(zip(out.column("id").to_pylist(), out.column("chunk_index").to_pylist(), out.column("text").to_pylist()))
    want = sorted(zip(*(expected.column(c).to_pylist() for c in ("doc_id", "chunk_index", "text"))))
    assert got == want and len(got) > long_docs.num_rows
