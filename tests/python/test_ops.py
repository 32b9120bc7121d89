"""wrapflow's operators on Arrow data: the SQL functions and the chunker give what a plan run
gives on the same rows, and columns that pass through are the caller's buffers."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wrapflow
from conftest import CHUNK_PLAN, tokenizer_path, bbc_rows, chunk_sets, cli, embedder_path, write_jsonl

CHUNK_COLUMNS = ["doc_id", "chunk_index", "text", "n_tokens", "byte_start", "byte_end", "source_file", "source_line"]


def plan_filter(min_words: int) -> str:
    """The WHERE clause of plans/chunk.sql's `docs` view, its parameter filled in."""
    text = open(CHUNK_PLAN).read()
    where = re.search(r"CREATE VIEW docs AS\s+SELECT \* FROM raw\s+WHERE (.*?);", text, re.S).group(1)
    return where.replace("${min_words}", str(min_words))


def cli_run(inp, out, *extra):
    args = [a for k, v in chunk_sets([("input", inp), ("output", out), *extra]) for a in ("--set", f"{k}={v}")]
    cli("run", CHUNK_PLAN, *args, "-q")
    return json.loads((out / "manifest.json").read_text())


def distinct_docs(n: int) -> list:
    """`n` BBC articles with distinct texts, some spoiled so that the plan's rules drop them."""
    seen, rows = set(), []
    for r in bbc_rows(n + 40):
        if r["text"] not in seen and len(rows) < n:
            seen.add(r["text"])
            rows.append({"id": r["id"], "text": r["text"]})
    for i in range(0, n, 9):
        rows[i]["text"] = " ".join(rows[i]["text"].split()[:30])  # too short
    for i in range(4, n, 13):
        rows[i]["text"] = "\n".join(["- item"] * 40 + [rows[i]["text"]])  # bullets, repeated lines
    return rows


def test_sql_functions_keep_the_documents_a_plan_keeps_and_share_the_text_buffers(tmp_path):
    rows = distinct_docs(200)
    write_jsonl(tmp_path / "in" / "docs.jsonl", rows)
    m = cli_run(tmp_path / "in", tmp_path / "cli")
    kept_by_cli = set(pq.read_table(tmp_path / "cli" / "chunks").column("doc_id").to_pylist())
    assert m["counts"]["filtered"] > 20 and m["counts"]["duplicates"] == 0, m["counts"]

    docs = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    kept = wrapflow.sql(f"SELECT id, text FROM docs WHERE {plan_filter(50)}", docs=docs)
    assert set(kept.column("id").to_pylist()) == kept_by_cli
    assert len(kept_by_cli) == m["counts"]["kept"]

    scored = wrapflow.sql("SELECT id, text, word_count(text) AS words, content_hash(text) AS h FROM docs",
                          {"docs": docs}, tokenizer=tokenizer_path())
    assert scored.column("id").to_pylist() == docs.column("id").to_pylist(), "rows keep their order"
    assert all(w > 0 for w in scored.column("words").to_pylist())
    # The text column that went through is the caller's: every chunk's character data lies
    # inside the input's own buffer.
    (src,) = docs.column("text").chunks
    lo, hi = src.buffers()[2].address, src.buffers()[2].address + src.buffers()[2].size
    for c in scored.column("text").chunks:
        data = c.buffers()[2]
        assert lo <= data.address and data.address + data.size <= hi, "the text column was copied"


def test_apply_adds_one_function_column_and_rejects_unknown_names():
    docs = pa.table({"id": ["a", "b", None], "text": ["one two one two one two", "a b c d", None]})
    out = wrapflow.apply(docs, "dup_ngram_fraction", "text", 2, name="dup2")
    assert out.column_names == ["id", "text", "dup2"]
    direct = wrapflow.sql("SELECT dup_ngram_fraction(text, 2) AS d FROM t", t=docs).column("d")
    assert out.column("dup2").to_pylist() == direct.to_pylist()
    assert out.column("dup2")[2].as_py() is None and out.column("dup2")[0].as_py() > 0.5
    with pytest.raises(wrapflow.PlanError, match="no SQL function 'gopher'"):
        wrapflow.apply(docs, "gopher")
    assert "token_count" in wrapflow.functions() and "c4_clean" in wrapflow.functions()


def test_the_chunker_gives_the_chunks_and_rejects_a_plan_run_writes(docs_dir, tmp_path):
    # The same rows as Parquet files for the plan, and as one Arrow table (with the plan's
    # lineage columns) for the chunker.
    parts = []
    for f in sorted(docs_dir.iterdir()):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        part = pa.table({"id": [r["id"] for r in rows], "text": pa.array([r["text"] for r in rows], pa.large_string())})
        (tmp_path / "pq").mkdir(exist_ok=True)
        pq.write_table(part, tmp_path / "pq" / f"{f.stem}.parquet")
        name = pa.array([f"{f.stem}.parquet"] * len(rows))
        parts.append(part.append_column("source_file", name).append_column("source_line", pa.array(range(1, len(rows) + 1))))
    table = pa.concat_tables(parts)
    m = cli_run(tmp_path / "pq", tmp_path / "cli", ("min_words", "0"), ("format", "PARQUET"))
    cli_chunks = pq.read_table(tmp_path / "cli" / "chunks")
    kept = set(cli_chunks.column("doc_id").to_pylist())
    assert len(kept) == m["counts"]["kept"] == 38, m["counts"]
    chunker = wrapflow.Chunker(tokenizer_path(), max_tokens=64)
    chunks, rejects = chunker.split(table)
    assert chunks.schema.remove_metadata() == cli_chunks.schema.remove_metadata()
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in CHUNK_COLUMNS)))
    assert key(chunks) == key(cli_chunks), "the chunker and the plan's chunk stage disagree"
    assert chunks.num_rows == m["counts"]["chunks"] > 40
    said = [json.loads(l) for p in sorted((tmp_path / "cli" / "rejects").iterdir()) for l in p.read_text().splitlines()]
    pick = lambda rs: sorted((r["source_file"], r["source_line"], r["stage"], r["reason"]) for r in rs)
    assert pick(rejects.to_pylist()) == pick(said) and len(said) == 2, said
    with pytest.raises(wrapflow.InputError, match="2 rows are no documents"):
        chunker(table)
    assert chunker(table.slice(0, 5)).num_rows > 0


def test_the_chunker_reads_batches_and_streams_and_says_what_is_missing():
    chunker = wrapflow.Chunker(tokenizer_path(), max_tokens=32, text="body", id="key")
    rows = bbc_rows(3)
    batch = pa.record_batch({"key": [r["id"] for r in rows], "body": [r["text"] for r in rows]})
    reader = pa.RecordBatchReader.from_batches(batch.schema, [batch.slice(0, 1), batch.slice(1, 2)])
    a, b = chunker(batch), chunker(reader)
    assert a.equals(b) and set(a.column("doc_id").to_pylist()) == {r["id"] for r in rows}
    assert "".join(a.filter(pa.compute.equal(a.column("doc_id"), rows[0]["id"])).column("text").to_pylist()) == rows[0]["text"]
    with pytest.raises(wrapflow.InputError, match='no text column "text"'):
        wrapflow.Chunker(tokenizer_path())(batch)
    with pytest.raises(wrapflow.ModelError, match="cannot load tokenizer"):
        wrapflow.Chunker("/nonexistent/tokenizer.json")


def test_dedup_over_a_batch_stream_keeps_the_documents_a_plan_keeps(tmp_path):
    rows = [{"id": r["id"], "text": r["text"]} for r in bbc_rows(60)]
    # Copies of earlier articles under new ids, some in later batches than their original.
    rows += [{"id": f"copy-{i}", "text": rows[i]["text"]} for i in (3, 3, 17, 41, 59)]
    write_jsonl(tmp_path / "in" / "docs.jsonl", rows)
    m = cli_run(tmp_path / "in", tmp_path / "cli", ("min_words", "0"))
    kept_by_cli = set(pq.read_table(tmp_path / "cli" / "chunks").column("doc_id").to_pylist())
    assert m["counts"]["duplicates"] >= 5, m["counts"]

    table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows], "n": list(range(len(rows)))})
    passed = wrapflow.sql(f"SELECT * FROM docs WHERE {plan_filter(0)}", docs=table)
    dedup = wrapflow.Dedup("text")
    kept, dups = [], []
    for batch in passed.to_batches(max_chunksize=16):
        k, d = dedup.split(batch)
        kept.append(k)
        dups.append(d)
    kept, dups = pa.concat_tables(kept), pa.concat_tables(dups)
    assert set(kept.column("id").to_pylist()) == kept_by_cli
    assert dups.num_rows == m["counts"]["duplicates"] and dedup.seen == kept.num_rows
    assert kept.column("n").to_pylist() == sorted(kept.column("n").to_pylist()), "rows keep their order"
    assert kept.schema == passed.schema
    with_null = pa.table({"text": ["a", None, None, "a"]})
    assert wrapflow.Dedup()(with_null).column("text").to_pylist() == ["a", None, None]


def test_near_dedup_over_a_batch_stream_keeps_the_documents_a_plan_keeps(tmp_path):
    rows = [{"id": r["id"], "text": r["text"]} for r in bbc_rows(80)]
    # Near copies of earlier articles (a few words changed) under new ids, in later batches.
    def edited(text):
        words = text.split()
        return " ".join("altered" if i % 40 == 7 else w for i, w in enumerate(words))
    rows += [{"id": f"near-{i}", "text": edited(rows[i]["text"])} for i in (2, 11, 30, 64)]
    write_jsonl(tmp_path / "in" / "docs.jsonl", rows)
    plan = tmp_path / "neardup.sql"
    plan.write_text(open(CHUNK_PLAN).read().replace("DEDUP ON text;", "DEDUP ON text;\nNEARDUP;"))
    args = [a for k, v in chunk_sets([("input", tmp_path / "in"), ("output", tmp_path / "cli"), ("min_words", "0")])
            for a in ("--set", f"{k}={v}")]
    cli("run", str(plan), *args, "-q")
    m = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    kept_by_cli = set(pq.read_table(tmp_path / "cli" / "chunks").column("doc_id").to_pylist())
    assert m["counts"]["near_duplicates"] >= 4, m["counts"]

    table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    passed = wrapflow.Dedup("text")(wrapflow.sql(f"SELECT * FROM docs WHERE {plan_filter(0)}", docs=table))
    near = wrapflow.NearDedup("text")
    parts = [near.split(b) for b in passed.to_batches(max_chunksize=20)]
    kept = pa.concat_tables([p[0] for p in parts])
    dups = pa.concat_tables([p[1] for p in parts])
    assert set(kept.column("id").to_pylist()) == kept_by_cli
    assert dups.num_rows == m["counts"]["near_duplicates"]
    assert {f"near-{i}" for i in (2, 11, 30, 64)} <= set(dups.column("id").to_pylist())
    with pytest.raises(wrapflow.PlanError, match="bandz"):
        wrapflow.NearDedup(bandz=3)


def test_onnx_runtime_comes_from_the_onnxruntime_wheel_when_the_cli_finds_none(tmp_path):
    """A Python with an `onnxruntime` package and no ORT_DYLIB_PATH: wrapflow loads the wheel's
    library (here the project's copied into such a package) and runs a model with it."""
    import os
    import shutil
    import subprocess
    import sys

    lib = wrapflow.ort_library()
    capi = tmp_path / "site" / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    (capi.parent / "__init__.py").write_text("raise ImportError('wrapflow must not import onnxruntime')\n")
    for f in os.listdir(os.path.dirname(lib)):
        if f.startswith("libonnxruntime"):
            shutil.copy(os.path.join(os.path.dirname(lib), f), capi / f)
    script = (
        "import wrapflow, pyarrow as pa\n"
        "from wrapflow import _wrapflow\n"
        "print(wrapflow.ort_library())\n"
        f"_wrapflow._write_tiny_model({str(tmp_path / 'tiny')!r}, 7)\n"
        f"r = wrapflow.Rephraser(model={str(tmp_path / 'tiny')!r}, styles='easy', max_new_tokens=4, retries=0,\n"
        f"                       gates={{'embedder': {embedder_path()!r}}})\n"
        "a, j = r.split(pa.table({'doc_id': ['a'], 'chunk_index': [0], 'text': ['The board met on Monday.']}))\n"
        "print(a.num_rows + j.num_rows)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(capi / os.path.basename(lib)), "1"]
