"""The Rephraser over Arrow: on the tiny random-weight model, a plan's rephrase stage and gates
called on the chunker's output give the rows and rejects that `wrapflow run` writes for the same
documents, batch after batch with one model load."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wrapflow
from wrapflow import _wrapflow
from conftest import bbc_rows, cli, embedder_path, sha256, write_jsonl

# One style that keeps only the empty-output gate (so the random model's rows are accepted and
# their lineage can be compared), `hard` for half the chunks with every gate (rejects with
# reasons), and `qa` with its own retries.
PLAN = """PARAM output;
TOKENIZER '{model}/tokenizer.json';
CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '{input}';
INPUT raw;
CHUNK WITH (max_tokens = 48);
STYLE echo WITH (system = 'Repeat the text.', user = '<text>\n{{chunk}}\n</text>', max_new_tokens = 12, gates = 'empty');
STYLE hard WITH (rate = 0.5, max_new_tokens = 8);
STYLE qa WITH (max_new_tokens = 8, retries = 2);
REPHRASE WITH (model = '{model}', styles = 'echo,hard,qa', batch_size = 4, seed = 3, temperature = 0.8, top_k = 20, retries = 1);
GATES WITH (embedder = '{embedder}', min_cosine = 0.2);
SINK '${{output}}';
"""

# What identifies a task and what the row says of it; `generation` and `template_hash` are compared too.
SYNTHETIC = ["doc_id", "chunk_index", "style", "text", "n_tokens", "byte_start", "byte_end", "source_file",
             "source_line", "model", "weights_hash", "template_hash", "generation", "attempts", "length_ratio",
             "copy_share", "coverage"]
REJECT = ["doc_id", "chunk_index", "style", "reason", "snippet", "scores", "source_file", "source_line"]


def rows(table, columns) -> list:
    return sorted(tuple(json.dumps(r[c], sort_keys=True) for c in columns) for r in table.select(columns).to_pylist())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny model, 3 BBC articles and the CLI's run of PLAN over them."""
    tmp_path = tmp_path_factory.mktemp("tiny-run")
    model = tmp_path / "tiny"
    _wrapflow._write_tiny_model(str(model), 7)
    docs = [{"id": r["id"], "text": r["text"]} for r in bbc_rows(3)]
    write_jsonl(tmp_path / "in" / "docs.jsonl", docs)
    plan = tmp_path / "rephrase.sql"
    plan.write_text(PLAN.format(model=model, input=tmp_path / "in", embedder=embedder_path()))
    cli("run", str(plan), "--set", f"output={tmp_path / 'cli'}", "-q")
    return tmp_path, model, docs, plan


def test_the_rephraser_gives_the_rows_and_rejects_a_plan_run_writes(tiny_run):
    tmp_path, model, docs, plan = tiny_run
    want_rows = pq.read_table(tmp_path / "cli" / "synthetic")
    want_rejects = pa.Table.from_pylist([json.loads(x) for f in sorted((tmp_path / "cli" / "rejects").iterdir())
                                         for x in f.read_text().splitlines()])
    assert want_rows.num_rows > 10 and want_rejects.num_rows > 10

    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs],
                      "source_file": ["docs.jsonl"] * len(docs), "source_line": list(range(1, len(docs) + 1))})
    chunks = wrapflow.Chunker(model / "tokenizer.json", max_tokens=48)(table)
    rephraser = wrapflow.Rephraser(plan, set={"output": str(tmp_path / "unused")})
    # Two calls on one model: every chunk lands in one of them.
    half = chunks.num_rows // 2
    parts = [rephraser.split(chunks.slice(0, half)), rephraser.split(chunks.slice(half))]
    got_rows = pa.concat_tables([p[0] for p in parts])
    got_rejects = pa.concat_tables([p[1] for p in parts])
    assert got_rows.schema == want_rows.schema
    assert rows(got_rows, SYNTHETIC) == rows(want_rows, SYNTHETIC)
    assert rows(got_rejects, REJECT) == rows(want_rejects, REJECT)
    # Each call's rows come in chunk order, styles in the plan's order.
    first = parts[0][0].select(["chunk_index", "doc_id"]).to_pylist()
    order = [(r["doc_id"], r["chunk_index"]) for r in chunks.slice(0, half).to_pylist()]
    assert sorted(first, key=lambda r: order.index((r["doc_id"], r["chunk_index"]))) == first
    # `__call__` is the accepted rows alone; without n_tokens the rephraser counts them itself.
    bare = chunks.slice(0, 4).select(["doc_id", "chunk_index", "text"])
    same = ["doc_id", "chunk_index", "style", "text", "n_tokens", "cosine", "attempts"]
    assert rephraser(bare).select(same).to_pylist() == rephraser(chunks.slice(0, 4)).select(same).to_pylist()
    rephraser.close()
    with pytest.raises(wrapflow.WrapflowError, match="closed"):
        rephraser(bare)


def test_a_rephraser_from_options_and_its_errors(tmp_path):
    model = tmp_path / "tiny"
    _wrapflow._write_tiny_model(str(model), 7)
    chunks = pa.table({"doc_id": ["a"], "chunk_index": [0], "text": ["The harbour board met on Monday."]})
    r = wrapflow.Rephraser(model=model, styles="easy,hard", gates={"embedder": embedder_path()}, batch_size=2,
                           max_new_tokens=6, retries=0)
    accepted, rejects = r.split(chunks)
    assert accepted.num_rows + rejects.num_rows == 2, "one row per style task"
    assert sorted(accepted.column("style").to_pylist() + rejects.column("style").to_pylist()) == ["easy", "hard"]
    with pytest.raises(wrapflow.PlanError, match="no_such_option"):
        wrapflow.Rephraser(model=model, no_such_option=1)
    with pytest.raises(wrapflow.PlanError, match="nowhere.* is not a directory"):
        wrapflow.Rephraser(model=tmp_path / "nowhere", tokenizer=model / "tokenizer.json")
    with pytest.raises(wrapflow.PlanError, match="need an embedder"):
        wrapflow.Rephraser(model=model, styles="hard")
    with pytest.raises(wrapflow.InputError, match="chunk_index"):
        r(pa.table({"doc_id": ["a"], "text": ["x"]}))
    with pytest.raises(TypeError):
        wrapflow.Rephraser("plans/wrap.sql", model=model)


MIXES = """MIX wrap WITH (ratio = '1:1', shortfall = 'repeat', max_epochs = 2, seed = 5, shard_tokens = 400);
MIX tokens WITH (format = 'megatron', tokenizer = '{model}/tokenizer.json', unit = 'document', shortfall = 'report');
MIX curriculum WITH (stage = 'CASE WHEN kind = ''real'' THEN ''real'' ELSE style END', stages = 'echo, hard, qa, real', format = 'jsonl');
"""


def test_mix_over_arrow_gives_the_shards_wrapflow_remix_writes(tiny_run):
    tmp_path, model, _, _ = tiny_run
    mixes = tmp_path / "mixes.sql"
    mixes.write_text(MIXES.format(model=model))
    cli("remix", str(tmp_path / "cli"), str(mixes), "--out", str(tmp_path / "remix"))
    want = json.loads((tmp_path / "remix" / "remix.json").read_text())

    def per_file(kind):
        files = sorted((tmp_path / "cli" / kind).glob("*.parquet"))
        tables = [pq.read_table(f).combine_chunks() for f in files]
        return pa.RecordBatchReader.from_batches(tables[0].schema, [b for t in tables for b in t.to_batches()])

    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    got = wrapflow.mix(per_file("chunks"), per_file("synthetic"), mixes, str(tmp_path / "py"),
                       styles=manifest["rephrase"]["style_order"])
    assert got["mixes"] == want["mixes"] and got["rows_read"] == want["rows_read"]
    shards = sorted(p.relative_to(tmp_path / "remix") for p in (tmp_path / "remix" / "mix").rglob("*") if p.is_file())
    assert len(shards) >= 5 and any(str(p).endswith(".idx") for p in shards)
    assert shards == sorted(p.relative_to(tmp_path / "py") for p in (tmp_path / "py" / "mix").rglob("*") if p.is_file())
    for p in shards:
        assert sha256(tmp_path / "py" / p) == sha256(tmp_path / "remix" / p), p
    # Rows of the wrong kind are refused before anything is written.
    with pytest.raises(wrapflow.InputError, match="kind"):
        wrapflow.mix(per_file("synthetic"), per_file("synthetic"), mixes, str(tmp_path / "bad"))
    assert not (tmp_path / "bad" / "mix").exists()
    with pytest.raises(wrapflow.PlanError, match="MIX wrap"):
        wrapflow.mix(per_file("chunks"), per_file("synthetic"), "MIX wrap WITH (ratio = '1:1');",
                     str(tmp_path / "bad"), styles=[])


def test_a_failure_inside_the_running_job_is_raised_as_its_kind(tiny_run, tmp_path):
    """The workers' failures keep their kind: a model (here a server that never answers, past its
    retry budget) is a ModelError with the CLI's message, not a bare WrapflowError."""
    run_dir, model, _, _ = tiny_run
    plan = tmp_path / "remote.sql"
    plan.write_text(PLAN.format(model=model, input=run_dir / "in", embedder=embedder_path()).replace(
        "REPHRASE WITH (", "REPHRASE WITH (endpoint = 'http://127.0.0.1:9/v1', served = 'tiny', retry_budget_s = 1, "))
    with pytest.raises(wrapflow.ModelError) as e:
        wrapflow.Plan.load(plan, set={"output": str(tmp_path / "out")}).run()
    said = cli("run", str(plan), "--set", f"output={tmp_path / 'cli'}", "-q", check=False).stderr
    assert "127.0.0.1:9" in str(e.value) and said.endswith(f"error: {e.value}\n"), (said, str(e.value))
    # The same from a Rephraser: the failed batch raises, and so does the next one, without hanging.
    r = wrapflow.Rephraser(endpoint="http://127.0.0.1:9/v1", served="tiny", tokenizer=model / "tokenizer.json",
                           styles="easy", gates={"embedder": embedder_path()}, retry_budget_s=1)
    assert r.plan.file == "<Rephraser>"
    chunks = pa.table({"doc_id": ["a"], "chunk_index": [0], "text": ["The harbour board met on Monday."]})
    with pytest.raises(wrapflow.ModelError, match="127.0.0.1:9"):
        r.split(chunks)
    with pytest.raises(wrapflow.ModelError):
        r.split(chunks)
