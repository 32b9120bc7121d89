"""wrapflow from Python: the same plans, runtime and operators as the ``wrapflow`` CLI.

Run a plan as ``wrapflow run`` does::

    import wrapflow
    plan = wrapflow.Plan.load("plans/wrap.sql", set={"input": "data/", "output": "out/wrap"})
    plan.check()
    print(plan.explain())
    run = plan.run(workers=1)
    run.manifest["counts"]            # manifest.json as a dict
    run.dataset("synthetic")          # a pyarrow.dataset.Dataset of what the run wrote

Or call its operators on Arrow data (``pyarrow.Table``, ``RecordBatch``, ``RecordBatchReader``
or anything with ``__arrow_c_stream__``); columns that pass through are not copied::

    scored = wrapflow.sql("SELECT *, word_count(text) AS words FROM docs", docs=table)
    chunks = wrapflow.Chunker("models/smollm2-135m-instruct/tokenizer.json", max_tokens=300)(table)

Errors are :class:`WrapflowError` subclasses with the CLI's messages: :class:`PlanError`,
:class:`InputError`, :class:`ModelError`, :class:`OutputError`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from . import _wrapflow
from ._wrapflow import InputError, ModelError, OutputError, PlanError, WrapflowError

__version__: str = _wrapflow.__version__


def _onnxruntime_wheel() -> Optional[str]:
    """The ONNX Runtime library of the ``onnxruntime`` wheel, when one is installed (found
    without importing it)."""
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    for d in (spec.submodule_search_locations or []) if spec else []:
        libs = sorted(glob.glob(os.path.join(d, "capi", "libonnxruntime.so.*")))
        if libs:
            return libs[-1]
    return None


def ort_library() -> str:
    """The ONNX Runtime library wrapflow loads: ``$ORT_DYLIB_PATH``, else the project's
    ``.cache/onnxruntime`` (``scripts/install-ort.sh``), else the ``onnxruntime`` wheel's when it
    is installed (``pip install onnxruntime``). Raises :class:`ModelError` when there is none."""
    return _wrapflow._ort_library()


_WHEEL_ORT = _onnxruntime_wheel()
if _WHEEL_ORT is not None:
    _wrapflow._set_host_ort(_WHEEL_ORT)

__all__ = [
    "Plan",
    "Run",
    "sql",
    "apply",
    "functions",
    "Chunker",
    "Dedup",
    "NearDedup",
    "Rephraser",
    "mix",
    "ort_library",
    "WrapflowError",
    "PlanError",
    "InputError",
    "ModelError",
    "OutputError",
]


class Run:
    """What :meth:`Plan.run` returns: the run's manifest and where its outputs are.

    Attributes:
        manifest: ``manifest.json`` of the run, as a dict (counts, tokens, shards, mixtures, ...).
        output: the output location (secrets redacted).
        stopped: ``None`` when the run reached its end, else where it stopped
            (``"at checkpoint 3"``); running the plan again resumes.
    """

    def __init__(self, manifest: dict, output: str, stopped: Optional[str]):
        self.manifest = manifest
        self.output = output
        self.stopped = stopped

    def __repr__(self) -> str:
        state = "finished" if self.stopped is None else f"stopped {self.stopped}"
        return f"<wrapflow.Run {self.output!r} {state}>"

    def files(self, name: str) -> list:
        """The files of output ``name``, as the manifest lists them: ``"chunks"``,
        ``"synthetic"``, ``"rejects"`` or a mixture's name (Parquet mixtures)."""
        m = self.manifest
        if name in ("chunks", "rejects"):
            part = m[name]
        elif name == "synthetic":
            if not m.get("rephrase"):
                raise KeyError("this plan does not rephrase: it wrote no synthetic/")
            part = m["rephrase"]["synthetic"]
        else:
            mixes = {x["name"]: x for x in m.get("mixes", [])}
            if name not in mixes:
                known = ["chunks", "synthetic", "rejects", *mixes]
                raise KeyError(f"no output {name!r}: this run wrote {known}")
            return [_join(self.output, s["path"]) for s in mixes[name]["shards"]]
        return [_join(self.output, s["path"]) for s in part["shards"]]

    def dataset(self, name: str):
        """Output ``name`` (see :meth:`files`) as a ``pyarrow.dataset.Dataset``."""
        import pyarrow.dataset as ds

        files = self.files(name)
        fmt = "json" if files and files[0].endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")) else "parquet"
        return ds.dataset(files, format=fmt)


def _join(output: str, path: str) -> str:
    return output.rstrip("/") + "/" + path


class Plan:
    """A plan file (SQL plus wrapflow statements, see ``plans/README.md``), loaded and resolved.

    Use :meth:`load`; then :meth:`check`, :meth:`explain`, :meth:`run` and :meth:`judge` do what
    ``wrapflow check``, ``wrapflow explain``, ``wrapflow run`` and ``wrapflow judge`` do.
    """

    def __init__(self, native: "_wrapflow._Plan"):
        self._native = native

    @classmethod
    def load(cls, path: "str | os.PathLike", set: Optional[Mapping[str, Any]] = None) -> "Plan":
        """Reads and parses the plan at ``path``; ``set`` gives parameters as ``--set NAME=VALUE``
        does. Raises :class:`PlanError` naming the line of a mistake."""
        sets = [(str(k), str(v)) for k, v in (set or {}).items()]
        return cls(_wrapflow._Plan.load(os.fspath(path), sets))

    @classmethod
    def parse(cls, text: str, set: Optional[Mapping[str, Any]] = None, file: str = "<plan>") -> "Plan":
        """A plan from its text rather than a file (``file`` names it in errors)."""
        sets = [(str(k), str(v)) for k, v in (set or {}).items()]
        return cls(_wrapflow._Plan.parse(text, sets, file))

    @property
    def file(self) -> str:
        """The plan's file name as given."""
        return self._native.file

    @property
    def output(self) -> str:
        """The plan's output location (secrets redacted)."""
        return self._native.output

    def check(self) -> None:
        """Validates statements, parameters, SQL, tokenizer and models without reading data;
        raises :class:`PlanError` if the plan would not run."""
        self._native.check()

    def explain(self) -> str:
        """The stages, the input query and DataFusion's logical plan of it (``wrapflow explain``)."""
        return self._native.explain()

    def judge(self, data: Any, lm: "Optional[str | os.PathLike]" = None):
        """The plan's gates (its styles, its ``GATES``, its embedder) on rephrasings that exist
        already, as ``wrapflow judge`` and a run judge them.

        ``data`` (anything Arrow) has string columns ``source``, ``rewrite`` and ``style`` (one of
        the plan's styles). Returns ``data`` with ``accepted`` (bool), ``reason`` (the first gate
        that failed, else empty), ``text`` (the kept text when accepted), ``cosine`` (to the source,
        by the embedder) and ``scores`` (every gate's scores, JSON) appended. With ``lm`` (a model
        directory) also ``lm``: each claim as that model reads it with and without its source
        (JSON; measured, not a gate).
        """
        return self._native.judge(data, None if lm is None else os.fspath(lm))

    def run(
        self,
        workers: int = 1,
        progress: bool = False,
        force: bool = False,
        restart: bool = False,
        checkpoint_files: int = 16,
        checkpoint_mb: int = 256,
    ) -> Run:
        """Runs the plan on the CLI's runtime: checkpoints, resume, exactly-once output, lease.

        Runs again on an output holding a checkpoint resume from it. The GIL is released while
        the job runs. Ctrl-C stops the job at its next checkpoint and then raises
        ``KeyboardInterrupt``; calling ``run`` again resumes. ``progress`` shows the CLI's bar (a
        terminal) or log lines; ``force``, ``restart``, ``checkpoint_files`` and
        ``checkpoint_mb`` are the CLI's flags of the same names.
        """
        manifest, stopped = self._native.run(workers, progress, force, restart, checkpoint_files, checkpoint_mb)
        return Run(json.loads(manifest), self.output, stopped)

    def __repr__(self) -> str:
        return f"<wrapflow.Plan {self.file!r} → {self.output!r}>"


def sql(query: str, tables: Optional[Mapping[str, Any]] = None, *, tokenizer: Optional[str] = None, **named: Any):
    """Runs a DataFusion SQL ``query`` over Arrow tables with wrapflow's SQL functions
    (:func:`functions`) registered, as in a plan; returns a ``pyarrow.Table``.

    Tables are given by name, in ``tables`` or as keywords (``sql(q, docs=table)``), as anything
    Arrow (``pyarrow.Table``, ``RecordBatch``, ``RecordBatchReader``, Polars or DuckDB results via
    ``__arrow_c_stream__``). Rows keep their order through projections and filters; columns
    selected as they are share the input's buffers. ``tokenizer`` is the ``tokenizer.json`` that
    ``token_count`` counts with.
    """
    given = dict(tables or {})
    given.update(named)
    return _wrapflow.sql(query, list(given.items()), tokenizer)


def apply(data: Any, function: str, column: str = "text", *args: Any, name: Optional[str] = None,
          tokenizer: Optional[str] = None):
    """``data`` with one more column: wrapflow's SQL ``function`` of ``column`` (and ``args``,
    e.g. the n of ``dup_ngram_fraction``), named ``name`` (default: the function's name)."""
    if function not in functions():
        raise PlanError(f"no SQL function {function!r}: wrapflow has {functions()}")
    extra = "".join(", " + _literal(a) for a in args)
    query = f'SELECT *, {function}("{_ident(column)}"{extra}) AS "{_ident(name or function)}" FROM data'
    return sql(query, {"data": data}, tokenizer=tokenizer)


def _ident(s: str) -> str:
    return s.replace('"', '""')


def _literal(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError(f"argument {v!r}: only numbers and strings")
    return "'" + v.replace("'", "''") + "'" if isinstance(v, str) else repr(v)


def functions() -> list:
    """The names of wrapflow's SQL functions (filters' signals, hashes, ``c4_clean``,
    ``token_count``)."""
    return _wrapflow.functions()


class Dedup:
    """Exact dedup over a stream of Arrow batches, as a plan's ``DEDUP ON column``: the first row
    of each value of ``key`` is kept, across calls (the key set lives in the object: build it
    once per stream). Keys are compared by the plan's 128-bit hash; a NULL key is never a
    duplicate."""

    def __init__(self, key: str = "text"):
        self._native = _wrapflow._Dedup(key)
        self.key = key

    def split(self, data: Any):
        """``(kept, duplicates)`` of ``data`` as two ``pyarrow.Table`` with ``data``'s columns."""
        return self._native.split(data)

    def __call__(self, data: Any):
        """The rows of ``data`` whose key was not seen before (use :meth:`split` to keep the
        duplicates too)."""
        return self.split(data)[0]

    @property
    def seen(self) -> int:
        """Distinct keys seen so far."""
        return self._native.seen


class NearDedup:
    """Near-duplicate dedup over a stream of Arrow batches, as a plan's ``NEARDUP WITH (...)``:
    MinHash over word n-grams of ``column`` with LSH banding; documents sharing a band are linked,
    and each cluster keeps the first of its documents in call order (rows are numbered across
    calls). Clusters span calls: build it once per stream. ``options`` are ``NEARDUP``'s, with
    its defaults (``ngram=5, bands=14, rows=8, seed=0, method="cluster"``; see
    ``plans/README.md``). A NULL text is never a duplicate."""

    def __init__(self, column: str = "text", **options: Any):
        self._native = _wrapflow._NearDedup(column, json.dumps(options))
        self.column = column

    def split(self, data: Any):
        """``(kept, duplicates)`` of ``data`` as two ``pyarrow.Table`` with ``data``'s columns."""
        return self._native.split(data)

    def __call__(self, data: Any):
        """The rows of ``data`` that are near no earlier row (:meth:`split` keeps the others)."""
        return self.split(data)[0]

    def close(self) -> None:
        """Frees the clusters' state now rather than when the object is collected."""
        self._native.close()


class Chunker:
    """The chunk stage over Arrow: documents in, the rows a run writes to ``chunks/`` out.

    ``tokenizer`` is the rephraser's ``tokenizer.json``; each chunk holds at most ``max_tokens``
    of its tokens and breaks at a paragraph, else a sentence, else a word (``min_fill``: the share
    of the budget a paragraph or sentence break must fill). Documents are read from the ``text``
    and ``id`` columns (and ``source_file`` / ``source_line`` when present). Build it once (in a
    Ray actor or a Daft class UDF, once per worker) and call it per batch.
    """

    def __init__(self, tokenizer: "str | os.PathLike", max_tokens: int = 300, min_fill: float = 0.5,
                 text: str = "text", id: str = "id"):
        self._native = _wrapflow._Chunker(os.fspath(tokenizer), max_tokens, min_fill)
        self.text = text
        self.id = id

    def split(self, data: Any):
        """``(chunks, rejects)`` of ``data`` as two ``pyarrow.Table``: rows whose text is null,
        blank or holds NUL bytes are rejects with the reason a plan's reader gives."""
        return self._native.split(data, self.text, self.id)

    def __call__(self, data: Any):
        """The chunks of ``data`` as a ``pyarrow.Table``. A row that is no document raises
        :class:`InputError` (use :meth:`split` to keep such rows as rejects instead)."""
        chunks, rejects = self.split(data)
        if rejects.num_rows:
            first = rejects.slice(0, 1).to_pylist()[0]
            raise InputError(f"{rejects.num_rows} rows are no documents; row {first['source_line']}: "
                             f"{first['reason']} (Chunker.split keeps them as rejects)")
        return chunks


class Rephraser:
    """A plan's rephrase stage and quality gates over Arrow: chunks in (the :class:`Chunker`'s
    output), the rows a run writes to ``synthetic/`` and ``rejects/`` out, row for row what the
    same plan's run makes of the same chunks.

    Build it from a plan (``Rephraser("plans/wrap.sql", set={...})`` or a :class:`Plan`), or
    from the ``REPHRASE WITH`` options themselves: ``Rephraser(model="models/smollm2-135m-instruct",
    styles="easy,qa", gates={"embedder": "models/all-minilm-l6-v2"}, batch_size=32)`` or
    ``Rephraser(endpoint="http://host:8000/v1", served="name", tokenizer=".../tokenizer.json")``;
    every option has the plan's meaning and default (``plans/README.md``). The model (or the
    endpoint's connection) and the embedder load once, in a thread of their own: build one per
    Ray actor or Daft UDF instance and call it per batch. The GIL is released while it works.
    """

    def __init__(self, plan: "Plan | str | os.PathLike | None" = None, *, set: Optional[Mapping[str, Any]] = None,
                 model: Optional[str] = None, endpoint: Optional[str] = None, styles: Optional[str] = None,
                 tokenizer: Optional[str] = None, gates: Optional[Mapping[str, Any]] = None, **options: Any):
        given = options or any(x is not None for x in (model, endpoint, styles, tokenizer, gates))
        if plan is not None and given:
            raise TypeError("give a plan or REPHRASE options, not both")
        if plan is None:
            plan = Plan.parse(_rephrase_plan(model, endpoint, styles, tokenizer, gates, options), set,
                              file="<Rephraser>")
        elif not isinstance(plan, Plan):
            plan = Plan.load(plan, set)
        elif set:
            raise TypeError("set= applies to a plan file; this Plan is loaded already")
        self.plan = plan
        self._native = _wrapflow._Rephraser(plan._native)

    def split(self, chunks: Any):
        """``(synthetic, rejects)`` of ``chunks`` as two ``pyarrow.Table``: each chunk's style tasks
        (the plan's styles and rates), answered with retries and judged by the gates; the
        accepted rows with their lineage and scores, the rejected ones with the gate's reason
        and scores. Every task is one or the other. ``chunks`` needs ``text``, ``doc_id`` and
        ``chunk_index``; ``n_tokens`` (counted when absent), ``byte_start``, ``byte_end``,
        ``source_file`` and ``source_line`` carry into the lineage."""
        return self._native.split(chunks)

    def __call__(self, chunks: Any):
        """The accepted rows of ``chunks`` (``split(chunks)[0]``), e.g. for
        ``ray.data.Dataset.map_batches(..., batch_format="pyarrow")``."""
        return self.split(chunks)[0]

    def close(self) -> None:
        """Frees the model now rather than when the object is collected."""
        self._native.close()


def _rephrase_plan(model, endpoint, styles, tokenizer, gates, options) -> str:
    """A plan that only rephrases: the options as ``REPHRASE WITH`` and ``GATES WITH`` give them
    (its input and sink are never read)."""
    if not model and not endpoint:
        raise PlanError("Rephraser needs a plan, a model or an endpoint")
    if not model:
        # On an endpoint, REPHRASE's `model` is the model's name as served.
        model = options.get("served")
    if tokenizer is None:
        if endpoint and not (model and os.path.isdir(os.fspath(model))):
            raise PlanError("a Rephraser on an endpoint needs tokenizer= (the tokenizer.json its rows are counted with)")
        tokenizer = os.path.join(os.fspath(model), "tokenizer.json")
    given = {"model": model, "endpoint": endpoint, "styles": styles, **options}
    rephrase = ", ".join(f"{k} = {_option(v)}" for k, v in given.items() if v is not None)
    text = (f"TOKENIZER {_option(os.fspath(tokenizer))};\n"
            "CREATE EXTERNAL TABLE chunks STORED AS JSONL LOCATION 'unused';\nINPUT chunks;\nCHUNK;\n"
            f"REPHRASE WITH ({rephrase});\n")
    if gates:
        text += "GATES WITH (" + ", ".join(f"{k} = {_option(v)}" for k, v in gates.items()) + ");\n"
    return text + "SINK 'unused';\n"


def _option(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, os.PathLike):
        v = os.fspath(v)
    return _literal(v)


def mix(real: Any, synthetic: Any, mixes: "str | os.PathLike", output: str, *,
        styles: Optional[list] = None) -> dict:
    """Training mixtures of Arrow rows, as ``wrapflow remix`` makes them from a run: ``real``
    (the :class:`Chunker`'s rows, kind ``real``) and ``synthetic`` (the :class:`Rephraser`'s,
    kind ``synthetic``) mixed by ``MIX name WITH (...)`` statements (``mixes``: their text, or a
    file of them) into ``output``'s ``mix/NAME/`` with token-exact ratios, curricula and formats
    (Parquet, JSONL, Megatron ``.bin``/``.idx``, token shards).

    Each batch is one step of the mix, real batches first: the shards of a run read back one file
    per batch (``pq.read_table(f).to_batches()``) give ``wrapflow remix``'s shards byte for byte.
    ``styles`` is the order of the rephrasing styles (a run's ``manifest["rephrase"]["style_order"]``;
    default: as they first appear in ``synthetic``). Returns what ``remix.json`` says (the
    mixtures' shards, tokens per kind and style). As a remix does, it holds ``output``'s lease
    and replaces an earlier mix there, and writes nothing else there.
    """
    import pyarrow as pa

    path = os.fspath(mixes)
    if "\n" not in path and os.path.isfile(path):
        name, text = path, open(path).read()
    else:
        name, text = "<mixes>", path
    if styles is None:
        synthetic = _table(synthetic)
        styles = list(dict.fromkeys(synthetic.column("style").to_pylist())) if synthetic.num_rows else []
    return json.loads(_wrapflow.mix(real, synthetic, text, output, list(styles), name))


def _table(data: Any):
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    return pa.RecordBatchReader.from_stream(data).read_all()
