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

__all__ = [
    "Plan",
    "Run",
    "sql",
    "apply",
    "functions",
    "Chunker",
    "Dedup",
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
