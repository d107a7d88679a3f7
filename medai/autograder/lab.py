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
from medai.autograder.tasks import (
    FunctionTask,
    ModelTask,
    PredictTask,
    PropertyTask,
    TaskFile,
    ValueTask,
    load_tasks,
)

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
    value is a predict function, called on the split's inputs.
    """
    spec = _spec()
    if task_id not in spec.tasks:
        raise KeyError(f"no task '{task_id}' in the lab's tasks.yaml; known: {sorted(spec.tasks)}")
    task = spec.tasks[task_id]
    if _grading is not None:
        _record(task_id, task, value, extra)
        return None
    if isinstance(task, ValueTask):
        return _public_value(task_id, task, value)
    if isinstance(task, FunctionTask):
        return _public_function(task_id, task, value)
    if isinstance(task, ModelTask):
        return _public_model(task_id, task, value)
    if isinstance(task, PropertyTask):
        return _public_property(task_id, task, value, extra)
    return _public_predict(task_id, task, value, extra)


class CheckFailed(AssertionError):
    """A public check failed; the message says what to fix."""


def _say(ok: bool, task_id: str, message: str) -> bool:
    if not ok:
        raise CheckFailed(f"FAIL [{task_id}] {message}")
    print(f"PASS [{task_id}] {message}")
    return ok


# --------------------------------------------------------------------------- grading mode


def _record(task_id: str, task: Any, value: Any, extra: tuple) -> None:
    g = _grading
    assert g is not None
    try:
        if isinstance(task, ValueTask):
            payload = plain.encode(value)
        elif isinstance(task, FunctionTask):
            payload = plain.encode(_call_cases(value, g.inputs_dir / f"{task_id}.json"))
        elif isinstance(task, ModelTask):
            payload = plain.encode(_predict_test(task, value))
        elif isinstance(task, PropertyTask):
            from medai.autograder.properties import to_plain_args

            payload = plain.encode(to_plain_args((value, *extra)))
        else:
            payload = plain.encode(_predict_hidden(task, value, extra))
        g.emit({"type": "check", "task": task_id, "nb": g.nb, "cell": g.cell, "value": payload})
        print(f"recorded [{task_id}]: it is scored after grading")
    except Exception as exc:  # the trainee's value could not be recorded: scored 0, say why
        g.emit(
            {"type": "check", "task": task_id, "nb": g.nb, "cell": g.cell, "error": _describe(exc)}
        )
        print(f"could not record [{task_id}]: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _call_cases(fn: Any, cases_file: Path) -> list:
    if not callable(fn):
        raise TypeError(f"expected a function, got {type(fn).__name__}")
    cases = json.loads(cases_file.read_text())
    out: list = []
    for kwargs in cases:
        try:
            out.append(fn(**kwargs))
        except Exception as exc:
            out.append(plain.CaseError(_describe(exc)))
    return out


def _features(task: PredictTask, X: Any) -> Any:
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"pass the feature table too: check(task, model, X) with X a DataFrame indexed by "
            f"{task.id_column}"
        )
    if task.id_column in X.columns:
        X = X.set_index(task.id_column)
    X = X.copy()
    X.index = X.index.astype(str)
    return X


def _rows(task: PredictTask) -> tuple[Any, Any, list[str]]:
    train = read_table(task.dataset, task.train_labels)
    ids = read_table(task.dataset, task.test_ids.table)
    for col, want in task.test_ids.where.items():
        ids = ids[ids[col] == want]
    y = train.set_index(train[task.id_column].astype(str))[task.target]
    return y.index, y, [str(i) for i in ids[task.id_column]]


def _scores(model: Any, X: Any) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        s = np.asarray(model.predict_proba(X))
        return s[:, 1] if s.ndim == 2 else s
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X))
    raise TypeError("the model needs predict_proba or decision_function")


def _fit(model: Any, X: Any, y: Any) -> Any:
    from sklearn.base import clone

    if not hasattr(model, "fit"):
        raise TypeError(f"expected a scikit-learn estimator, got {type(model).__name__}")
    return clone(model).fit(X, y)


def _predict_hidden(task: PredictTask, model: Any, extra: tuple) -> Any:
    import pandas as pd

    X = _features(task, extra[0] if extra else None)
    train_ids, y, test_ids = _rows(task)
    missing = [i for i in test_ids if i not in X.index]
    if missing:
        raise ValueError(f"the feature table lacks {len(missing)} of the rows to predict")
    fitted = _fit(model, X.loc[train_ids], y.loc[train_ids].to_numpy())
    scores = _scores(fitted, X.loc[test_ids]).astype(float)
    return pd.Series(scores, index=test_ids)


def _run_predict(task: ModelTask, fn: Any, split: str) -> tuple[Any, Any]:
    """Load the public inputs of ``split`` (dev or test), call ``fn`` on them; validate."""
    from medai.autograder.modeldata import load_source, to_plain_output, validate_output

    if not callable(fn):
        raise TypeError(f"expected a predict function, got {type(fn).__name__}")
    src = getattr(task, split).inputs  # dev, test or members
    inputs = load_source(src, data_dir(task.dataset))  # public only: no hidden folder given
    n = len(inputs.value)
    pred = to_plain_output(fn(inputs.value), task.output, inputs.ids)
    return inputs, validate_output(pred, task.output, n)


def _predict_test(task: ModelTask, fn: Any) -> Any:
    """Grading mode: predictions for the test inputs (public files); never any label. With
    ``members:``, the predictions for the members too (the scorer attacks them)."""
    _, pred = _run_predict(task, fn, "test")
    if task.members is None:
        return pred
    return {"test": pred, "members": _run_predict(task, fn, "members")[1]}


# --------------------------------------------------------------------------- public mode


def _public_model(task_id: str, task: ModelTask, fn: Any) -> bool:
    from medai.autograder.metrics import METRICS, MetricError, by_group, compute
    from medai.autograder.modeldata import (
        OutputError,
        align,
        load_groups,
        load_source,
        validate_output,
    )
    from medai.autograder.scoring import metric_fraction

    try:
        inputs, pred = _run_predict(task, fn, "dev")
    except OutputError as exc:
        return _say(False, task_id, f"the predictions are malformed: {exc}")
    except Exception as exc:
        return _say(False, task_id, f"could not run the predict function: {_describe(exc)}")
    try:
        labels = align(inputs, load_source(task.dev.labels, data_dir(task.dataset)), "dev split")
        groups = load_groups(task.dev, inputs, data_dir(task.dataset))
    except Exception as exc:  # a lab or data problem, not the trainee's
        return _say(False, task_id, f"could not load the dev labels: {_describe(exc)}")
    if task.output.type == "mask":  # now that the labels are known, check the mask size
        try:
            validate_output(pred, task.output, len(pred), np.asarray(labels).shape[1:])
        except OutputError as exc:
            return _say(False, task_id, f"the predictions are malformed: {exc}")
    members = None
    if task.members is not None:  # the membership attack: members against the dev cases
        try:
            m_inputs, m_pred = _run_predict(task, fn, "members")
            m_labels = align(
                m_inputs, load_source(task.members.labels, data_dir(task.dataset)), "members"
            )
        except OutputError as exc:
            return _say(False, task_id, f"the predictions for the members are malformed: {exc}")
        except Exception as exc:
            return _say(False, task_id, f"could not predict the members: {_describe(exc)}")
        members = (m_labels, m_pred)
    parts, fracs = [], []
    for m in task.metrics:
        y, scored, g = labels, pred, groups
        if METRICS[m.name].membership and members is not None:
            from medai.autograder.scoring import membership_pairs

            y, scored = membership_pairs(members[0], members[1], labels, pred)
            g = None  # the attack pairs members with dev cases: dev groups do not apply
        try:
            value = compute(m.name, y, scored, match_label=m.match_label, groups=g)
        except MetricError as exc:
            return _say(False, task_id, str(exc))
        frac = metric_fraction(value, m.zero_marks_at, m.full_marks_at)
        fracs.append(frac)
        cmp = ">=" if m.full_marks_at > m.zero_marks_at else "<="
        detail = by_group(m.name, labels, pred, groups)
        parts.append(
            f"{m.name} {value:.3f} (full marks at {cmp} {m.full_marks_at:g}, none at "
            f"{'<=' if cmp == '>=' else '>='} {m.zero_marks_at:g})"
            + (f" [{detail}]" if detail else "")
        )
    n = len(pred)
    extra = f" and {len(members[1])} members" if members is not None else ""
    msg = (
        "; ".join(parts) + f" on {n} labelled dev cases{extra}: this would earn "
        f"{sum(fracs) / len(fracs):.0%}. The grade uses the hidden test split."
    )
    return _say(min(fracs) >= 1.0, task_id, msg)


def _public_property(task_id: str, task: PropertyTask, value: Any, extra: tuple) -> bool:
    from medai.autograder.properties import evaluate, to_plain_args

    try:  # the same plain round trip as when graded, so the verdict is the same
        values = plain.decode(plain.encode(to_plain_args((value, *extra))))
    except plain.PlainError as exc:
        return _say(False, task_id, f"this value cannot be graded: {exc}")
    frac, msg = evaluate(task.property, values, task.params)
    return _say(frac >= 1.0, task_id, msg + ("" if frac >= 1.0 else f" (score {frac:.0%})"))


def _public_value(task_id: str, task: ValueTask, value: Any) -> bool:
    want = task.public
    kinds = {
        "float": (float, np.floating, int, np.integer),
        "int": (int, np.integer),
        "bool": (bool, np.bool_),
        "str": (str,),
        "array": (np.ndarray,),
    }
    if want.type == "series":
        import pandas as pd

        kinds["series"] = (pd.Series,)
    if want.type and not isinstance(value, kinds[want.type]):
        return _say(False, task_id, f"expected a {want.type}, got {type(value).__name__}")
    if isinstance(value, bool | np.bool_) and want.type in ("float", "int"):
        return _say(False, task_id, f"expected a {want.type}, got a bool")
    try:
        plain.encode(value)
    except plain.PlainError as exc:
        return _say(False, task_id, f"this value cannot be graded: {exc}")
    if want.min is not None or want.max is not None:
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            return _say(False, task_id, "the value is not finite")
        lo = -np.inf if want.min is None else want.min
        hi = np.inf if want.max is None else want.max
        if arr.min() < lo or arr.max() > hi:
            return _say(False, task_id, f"expected values between {lo} and {hi}")
    return _say(True, task_id, "has the right form; the grader compares it with the reference")


def _public_function(task_id: str, task: FunctionTask, fn: Any) -> bool:
    from medai.autograder.scoring import values_match

    if not callable(fn):
        return _say(False, task_id, f"expected a function, got {type(fn).__name__}")
    problems = []
    for ex in task.examples:
        try:
            got = fn(**ex.args)
        except Exception as exc:
            problems.append(f"{ex.args} raised {_describe(exc)}")
            continue
        try:
            match = values_match(ex.expect, plain.decode(plain.encode(got)), task.tolerance)
        except plain.PlainError as exc:
            problems.append(f"{ex.args} returned something ungradable: {exc}")
            continue
        if not match:
            problems.append(f"{ex.args}: expected {ex.expect!r}, got {got!r}")
    if problems:
        return _say(False, task_id, "; ".join(problems))
    return _say(
        True, task_id, f"{len(task.examples)} worked example(s) right; the grader tries more"
    )


def _public_predict(task_id: str, task: PredictTask, model: Any, extra: tuple) -> bool:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from medai.autograder.scoring import metric_fraction

    try:
        X = _features(task, extra[0] if extra else None)
        train_ids, y, _ = _rows(task)
        fit_ids, val_ids = train_test_split(
            list(train_ids), test_size=task.public_holdout, random_state=0, stratify=y.to_numpy()
        )
        fitted = _fit(model, X.loc[fit_ids], y.loc[fit_ids].to_numpy())
        auc = float(roc_auc_score(y.loc[val_ids].to_numpy(), _scores(fitted, X.loc[val_ids])))
    except Exception as exc:
        return _say(False, task_id, f"could not fit and score the model: {_describe(exc)}")
    frac = metric_fraction(auc, task.zero_marks_at, task.full_marks_at)
    msg = (
        f"AUROC {auc:.3f} on {len(val_ids)} held-out public training rows (full marks at "
        f">= {task.full_marks_at}, none at <= {task.zero_marks_at}: this would earn "
        f"{frac:.0%}). The grade uses the hidden split."
    )
    return _say(frac >= 1.0, task_id, msg)
