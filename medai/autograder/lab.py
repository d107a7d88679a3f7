"""What a lab notebook imports: ``check("task-id", value)`` and the course data helpers.

This module runs inside the trainee's kernel, so it knows nothing secret. It has two modes:

- **public** (a trainee working, or papermill in CI): ``check`` runs the task's public checks from
  the ``tasks.yaml`` beside the notebook (type and range, worked examples, the model's metric on
  a held-out part of the *public* training data) and prints instant feedback.
- **grading** (inside the grader's sandbox, switched on by :mod:`medai.autograder.runner`):
  ``check`` only *records* plain values for the trusted scorer — the value itself, the function's
  results on the inputs the grader supplies, the model's predictions for the hidden split's
  rows (``predict``; ``model``: the predict function called on the test split's public inputs),
  or the values a ``property`` is computed on. It never sees expected values or hidden labels
  (they are not even mounted in the sandbox); scoring happens outside it.

Usage in a lab (see labs/README.md)::

    from medai.autograder.lab import check, data_dir, read_table
    check("ckd_rate", ckd_rate)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medai.autograder import plain
from medai.autograder.kinds.base import CheckFailed, describe
from medai.autograder.tasks import ModelTask, TaskFile, load_tasks

__all__ = [
    "CheckFailed",
    "Clinician",
    "OracleRefused",
    "check",
    "clinician",
    "data_dir",
    "read_table",
]


@dataclass
class _Grading:
    spec: TaskFile
    inputs_dir: Path
    emit: Callable[[dict], None]
    cell: int = -1
    nb: str = ""


_grading: _Grading | None = None
_public_spec: TaskFile | None = None


def _enter_grading(spec: TaskFile, inputs_dir: Path, emit: Callable[[dict], None]) -> _Grading:
    """Switch to grading mode (called by the sandbox runner, never by a lab)."""
    global _grading
    _grading = _Grading(spec, Path(inputs_dir), emit)
    return _grading


# --------------------------------------------------------------------------- data helpers


_resolved: dict[str, Path] = {}  # dataset -> folder chosen by the lab's own data_dir() call


def _generator_version(dataset: str) -> str:
    """Hash of all generator code that shapes ``dataset``, so an updated course never reuses
    stale data (:func:`medai.synthetic.core.generator_version`)."""
    from medai.synthetic.core import generator_version

    return generator_version(dataset)


def data_dir(dataset: str, *, n: int | None = None, seed: int = 0) -> Path:
    """The public folder of ``dataset``.

    ``$MEDAI_DATA/<dataset>`` on the hub and in the grader. When ``MEDAI_DATA`` is unset (self-study
    on a laptop) the dataset is generated once into ``~/.cache/medai/data/<dataset>-n<n>-s<seed>``,
    so two labs asking for different sizes or seeds never share a stale copy. Later calls without
    ``n``/``seed`` (``read_table``, the checks) reuse the folder the lab chose.
    """
    root = os.environ.get("MEDAI_DATA")
    if root:
        path = Path(root) / dataset
        if not path.is_dir():
            raise FileNotFoundError(
                f"dataset '{dataset}' is not under MEDAI_DATA={root}; ask your instructor, or unset "
                "MEDAI_DATA to generate it locally"
            )
        return path
    if n is None and seed == 0 and dataset in _resolved:
        return _resolved[dataset]
    from medai.paths import data_cache

    cache = data_cache()
    key = f"{dataset}-n{n if n is not None else 'default'}-s{seed}-{_generator_version(dataset)}"
    path = cache / key / "public" / dataset
    if not path.is_dir():
        from medai.synthetic.core import generate

        print(f"MEDAI_DATA is not set: generating '{dataset}' into {cache / key} (once)")
        generate(dataset, cache / key, n=n, seed=seed)
    _resolved[dataset] = path
    return path


def read_table(dataset: str, table: str) -> Any:
    """Read ``table`` of ``dataset`` (CSV or Parquet, whichever was generated) as a DataFrame."""
    import pandas as pd

    folder = data_dir(dataset)
    for ext, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        if (folder / f"{table}{ext}").exists():
            return reader(folder / f"{table}{ext}")
    raise FileNotFoundError(f"no table '{table}' (.csv or .parquet) in {folder}")


# --------------------------------------------------------------------------- the clinician


class OracleRefused(RuntimeError):
    """The clinician did not answer (budget spent, an id not in the pool, ...); says why."""


class Clinician:
    """A simulated expert who labels the cases you choose from a pool (``clinician(task)``).

    ``pool`` holds the pool's inputs (no labels) and ``ids`` their ids; ``ask(ids)`` returns the
    labels of those cases, in order, and counts each new id against ``budget`` (asking again about
    an id is free); ``answers`` keeps every answer received, by id. While you work the pool is the task's public *practice* pool; when your
    notebook is graded it is the graded pool, and the answers come from the grader, outside your
    notebook: only the labels you ask for ever reach it.
    """

    def __init__(self, task_id: str, budget: int, pool: Any, ids: list[str], answer: Any) -> None:
        self.task_id = task_id
        self.budget = budget
        self.pool = pool
        self.ids = ids
        self._answer = answer
        self.remaining = budget
        self.answers: dict[str, Any] = {}

    def ask(self, ids: Any) -> np.ndarray:
        """Labels of the cases ``ids`` (a list or array of ids from ``self.ids``)."""
        wanted = [i.item() if hasattr(i, "item") else i for i in list(ids)]
        reply = self._answer(wanted)
        if "error" in reply:
            raise OracleRefused(f"the clinician did not answer: {reply['error']}")
        self.remaining = int(reply["remaining"])
        self.answers.update(zip((str(i) for i in wanted), reply["labels"], strict=True))
        return np.asarray(reply["labels"])

    __call__ = ask

    def __repr__(self) -> str:
        return (
            f"Clinician({self.task_id!r}: pool of {len(self.ids)} cases, "
            f"{self.remaining} of {self.budget} labels left)"
        )


_answers: Any = None  # grading mode: the answer pipe from the grader, opened once


def _ask_grader(task_id: str, ids: list) -> dict:
    global _answers
    g = _grading
    assert g is not None
    fd = os.environ.get("MEDAI_ORACLE_FD")
    if fd is None:
        return {"error": "this grader serves no clinician (no MEDAI_ORACLE_FD)"}
    if _answers is None:
        _answers = open(int(fd), encoding="utf-8", closefd=False)  # noqa: SIM115
    g.emit({"type": "oracle", "task": task_id, "ids": [_plain_id(i) for i in ids]})
    line = _answers.readline()
    return json.loads(line) if line else {"error": "the grader closed the clinician's line"}


def _plain_id(i: Any) -> Any:
    return i if isinstance(i, str | int | float) and not isinstance(i, bool) else str(i)


def _practice_answers(task: ModelTask, budget: int) -> Any:
    """Public mode: answers from the practice pool's public labels, with the same rules."""
    from medai.autograder.modeldata import load_source
    from medai.autograder.oracle import OracleServer, PoolLabels

    assert task.oracle is not None
    labels = load_source(task.oracle.practice.labels, data_dir(task.dataset))
    if labels.ids is None:
        raise ValueError("oracle.practice.labels need ids (id_column) to answer by id")
    server = OracleServer(
        {"p": PoolLabels(dict(zip(labels.ids, labels.value, strict=True)), budget)}
    )
    return lambda ids: server.answer({"task": "p", "ids": ids})


def clinician(task_id: str) -> Clinician:
    """The simulated clinician of ``task_id`` (a ``model`` task with an ``oracle:``).

    A fresh one while you work (its budget starts full: practise as often as you like); in the
    grader, every clinician of a task shares one budget for the whole run.
    """
    from medai.autograder.modeldata import load_source

    spec = _spec()
    task = spec.tasks.get(task_id)
    if not isinstance(task, ModelTask) or task.oracle is None:
        raise KeyError(f"task '{task_id}' has no clinician (an `oracle:` in tasks.yaml)")
    split = task.oracle.graded if _grading is not None else task.oracle.practice
    pool = load_source(split.inputs, data_dir(task.dataset))
    if pool.ids is None:
        raise ValueError(f"task '{task_id}': the clinician's pool needs ids (id_column)")
    if _grading is not None:
        answer = lambda ids: _ask_grader(task_id, ids)  # noqa: E731
    else:
        answer = _practice_answers(task, task.oracle.budget)
    return Clinician(task_id, task.oracle.budget, pool.value, pool.ids, answer)


# --------------------------------------------------------------------------- the check


def _spec() -> TaskFile:
    global _public_spec
    if _grading is not None:
        return _grading.spec
    if _public_spec is None:
        path = Path(os.environ.get("MEDAI_TASKS", "tasks.yaml"))
        _public_spec = load_tasks(path)
    return _public_spec


def check(task_id: str, value: Any, *extra: Any) -> bool | None:
    """Check the answer to ``task_id``.

    Public mode prints feedback and returns True, or raises :class:`CheckFailed` (an
    ``AssertionError``) saying what is wrong, like an nbgrader test cell. Grading mode records
    plain values for the trusted scorer and returns ``None``. ``extra`` carries what a task kind
    needs besides the value (``predict``: the feature table, one row per id; ``property``: more
    values for the property, e.g. a second id list for ``disjoint``). For a ``model`` task the
    value is a predict function, called on the split's inputs. What each kind does is its unit
    in :mod:`medai.autograder.kinds`.
    """
    from medai.autograder.kinds import kind_of

    spec = _spec()
    if task_id not in spec.tasks:
        raise KeyError(f"no task '{task_id}' in the lab's tasks.yaml; known: {sorted(spec.tasks)}")
    task = spec.tasks[task_id]
    if _grading is not None:
        _record(task_id, task, value, extra)
        return None
    return kind_of(task).check(task_id, task, value, extra)


# --------------------------------------------------------------------------- grading mode


def _record(task_id: str, task: Any, value: Any, extra: tuple) -> None:
    from medai.autograder.kinds import kind_of

    g = _grading
    assert g is not None
    try:
        payload = plain.encode(kind_of(task).record(task_id, task, value, extra, g.inputs_dir))
        g.emit({"type": "check", "task": task_id, "nb": g.nb, "cell": g.cell, "value": payload})
        print(f"recorded [{task_id}]: it is scored after grading")
    except Exception as exc:  # the trainee's value could not be recorded: scored 0, say why
        g.emit(
            {"type": "check", "task": task_id, "nb": g.nb, "cell": g.cell, "error": describe(exc)}
        )
        print(f"could not record [{task_id}]: {describe(exc)}")
