"""Plans from Python: load, check, explain and run on the CLI's runtime, with the CLI's results."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wrapflow
from conftest import CHUNK_PLAN, ROOT, tokenizer_path, bbc_rows, cli, embedder_path, sha256, write_jsonl


def sets(inp, out):
    return {"input": str(inp), "output": str(out), "tokenizer": tokenizer_path(), "max_tokens": 64}


def cli_sets(inp, out):
    return [a for k, v in sets(inp, out).items() for a in ("--set", f"{k}={v}")]


def test_a_plan_run_from_python_writes_the_shards_the_cli_writes(docs_dir, tmp_path):
    cli("run", CHUNK_PLAN, *cli_sets(docs_dir, tmp_path / "cli"), "-q", "--workers", "2")
    run = wrapflow.Plan.load(CHUNK_PLAN, set=sets(docs_dir, tmp_path / "py")).run(workers=2)
    assert run.stopped is None
    expected = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    written = json.loads((tmp_path / "py" / "manifest.json").read_text())
    assert {k: v for k, v in run.manifest.items() if k != "timings"} == {k: v for k, v in written.items() if k != "timings"}
    assert run.manifest["counts"] == expected["counts"]
    assert run.manifest["counts"]["rejected"] == 2, run.manifest["counts"]
    for part in ("chunks", "rejects"):
        ours = [s["path"] for s in run.manifest[part]["shards"]]
        assert ours == [s["path"] for s in expected[part]["shards"]]
        assert ours, f"no {part} shards"
        for path in ours:
            assert sha256(tmp_path / "py" / path) == sha256(tmp_path / "cli" / path), path
    table = run.dataset("chunks").to_table()
    assert table.num_rows == run.manifest["chunks"]["rows"] > 0
    assert set(table.column("doc_id").to_pylist()) <= {r["id"] for r in bbc_rows(40)}
    assert run.dataset("rejects").to_table().num_rows == 2


def test_check_and_explain_say_what_the_cli_says(docs_dir, tmp_path):
    plan = wrapflow.Plan.load(CHUNK_PLAN, set=sets(docs_dir, tmp_path / "out"))
    plan.check()
    assert plan.explain() == cli("explain", CHUNK_PLAN, *cli_sets(docs_dir, tmp_path / "out")).stdout
    assert plan.output == str(tmp_path / "out")
    assert not (tmp_path / "out").exists(), "check and explain write nothing"


def test_errors_are_exceptions_of_their_kind_with_the_cli_message(docs_dir, tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text(open(CHUNK_PLAN).read().replace("CHUNK WITH (max_tokens", "CHUNK WITH (max_tokenz"))
    with pytest.raises(wrapflow.PlanError) as e:
        wrapflow.Plan.load(str(bad), set=sets(docs_dir, tmp_path / "o1"))
    said = cli("check", str(bad), *cli_sets(docs_dir, tmp_path / "o1"), check=False).stderr
    assert said == f"error: {e.value}\n"
    assert "max_tokenz" in str(e.value)
    # An output holding someone else's file: the run refuses it and leaves the file alone.
    out = tmp_path / "taken"
    out.mkdir()
    (out / "theirs.txt").write_text("keep me")
    with pytest.raises(wrapflow.OutputError) as e:
        wrapflow.Plan.load(CHUNK_PLAN, set=sets(docs_dir, out)).run()
    said = cli("run", CHUNK_PLAN, *cli_sets(docs_dir, out), "-q", check=False).stderr
    assert said.endswith(f"error: {e.value}\n"), (said, str(e.value))
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert (out / "theirs.txt").read_text() == "keep me"
    with pytest.raises(wrapflow.WrapflowError, match="at least one worker"):
        wrapflow.Plan.load(CHUNK_PLAN, set=sets(docs_dir, tmp_path / "o2")).run(workers=0)


def test_ctrl_c_stops_the_run_at_a_checkpoint_and_a_second_run_resumes(tmp_path):
    rows = bbc_rows(120)
    for i in range(60):
        write_jsonl(tmp_path / "in" / f"part-{i:03}.jsonl", rows[2 * i:2 * i + 2])
    out = tmp_path / "out"
    # The child interrupts itself (as Ctrl-C does) once the first checkpoint is committed.
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        import wrapflow
        def interrupt():
            done = {str(out / "_wrapflow" / "checkpoints")!r}
            while not (os.path.isdir(done) and os.listdir(done)):
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        plan = wrapflow.Plan.load({CHUNK_PLAN!r}, set={sets(tmp_path / "in", out)!r})
        try:
            plan.run(checkpoint_files=1)
        except KeyboardInterrupt as e:
            print("interrupted:", e)
            sys.exit(130)
        print("finished")
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert child.returncode == 130, (child.stdout, child.stderr)
    assert "interrupted: stopped at checkpoint" in child.stdout
    stopped = json.loads((out / "manifest.json").read_text())
    assert stopped["job"]["status"] != "finished"
    assert stopped["job"]["pending_files"] > 0, stopped["job"]
    run = wrapflow.Plan.load(CHUNK_PLAN, set=sets(tmp_path / "in", out)).run(checkpoint_files=1)
    assert run.stopped is None and run.manifest["job"]["status"] == "finished"
    cli("run", CHUNK_PLAN, *cli_sets(tmp_path / "in", tmp_path / "whole"), "-q")
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert run.manifest["counts"] == whole["counts"]
    key = lambda t: sorted(zip(t.column("doc_id").to_pylist(), t.column("chunk_index").to_pylist(),
                               t.column("text").to_pylist()))
    ours = key(run.dataset("chunks").to_table())
    assert ours == key(pq.read_table(tmp_path / "whole" / "chunks"))
    assert len(ours) == len(set(ours)), "a chunk written twice"


def test_a_plans_gates_judge_arrow_pairs_as_wrapflow_judge_does(tmp_path):
    embedder = embedder_path()
    with open(ROOT / "benchmarks/yardstick/tune/pairs.jsonl") as f:
        pairs = [json.loads(line) for _, line in zip(range(44), f)][20:]  # two of them pass the gates
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    plan = str(ROOT / "plans/wrap.sql")
    said = cli("judge", plan, "--set", f"embedder={embedder}", "--pairs", str(tmp_path / "pairs.jsonl")).stdout
    expected = [json.loads(line) for line in said.splitlines()]

    table = pa.table({k: [p[k] for p in pairs] for k in ("pair", "source", "rewrite", "style")})
    judged = wrapflow.Plan.load(plan, set={"embedder": embedder}).judge(table)
    assert judged.column_names == ["pair", "source", "rewrite", "style", "accepted", "reason", "text", "cosine", "scores"]
    assert judged.column("source").chunks[0].buffers()[2].address == table.column("source").chunks[0].buffers()[2].address
    got = judged.to_pylist()
    assert [g["accepted"] for g in got] == [e["accepted"] for e in expected]
    assert 0 < sum(g["accepted"] for g in got) < len(got), "the pairs hold both verdicts"
    for g, e in zip(got, expected):
        assert (g["pair"], g["reason"], g["text"]) == (e["pair"], e["reason"], e["text"])
        assert g["cosine"] == pytest.approx(e["cosine"], abs=1e-6)
        assert json.loads(g["scores"]) == e["gates"]
    bad = table.set_column(3, "style", pa.array(["poem"] * table.num_rows))
    with pytest.raises(wrapflow.InputError, match='row 0: style "poem" is not one of the plan'):
        wrapflow.Plan.load(plan, set={"embedder": embedder}).judge(bad)
