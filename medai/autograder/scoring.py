"""The trusted scorer: compares recorded plain values with the reference and the hidden labels.

Runs outside the sandbox. Inputs are already decoded by :func:`medai.autograder.plain.decode`
(so no trainee object ever reaches a comparison: an object that "equals anything" arrives as
data or not at all). Messages describe the result without revealing expected values or labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medai.autograder.plain import CaseError
from medai.autograder.tasks import (
    FunctionTask,
    ModelTask,
    PredictTask,
    PropertyTask,
    Tolerance,
    ValueTask,
)


@dataclass
class TaskScore:
    fraction: float  # 0..1 of the task's points
    message: str


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def values_match(expected: Any, got: Any, tol: Tolerance) -> bool:
    """Whether ``got`` equals ``expected`` within ``tol`` (numbers, arrays, lists, dicts, text)."""
    if isinstance(got, CaseError) or isinstance(expected, CaseError):
        return False
    if _num(expected) and _num(got):
        e, g = float(expected), float(got)
        if math.isnan(e) or math.isnan(g):
            return math.isnan(e) and math.isnan(g)
        return math.isclose(e, g, rel_tol=tol.rel, abs_tol=tol.abs)
    if isinstance(expected, dict) and set(expected) == {"index", "values"}:
        if not (isinstance(got, dict) and set(got) == {"index", "values"}):
            return False
        return expected["index"] == got["index"] and values_match(
            expected["values"], got["values"], tol
        )
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        try:
            e = np.asarray(expected, dtype=float)
            g = np.asarray(got, dtype=float)
        except (TypeError, ValueError):
            return False
        if e.shape != g.shape:
            return False
        return bool(np.allclose(g, e, rtol=tol.rel, atol=tol.abs, equal_nan=True))
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(
            values_match(e, g, tol) for e, g in zip(expected, got, strict=True)
        )
    if isinstance(expected, dict) and isinstance(got, dict):
        return set(expected) == set(got) and all(
            values_match(expected[k], got[k], tol) for k in expected
        )
    if type(expected) is not type(got):
        return False
    return expected == got  # str, bool, None


def metric_fraction(value: float, zero_at: float, full_at: float) -> float:
    """Linear partial credit: 0 at ``zero_at``, 1 at ``full_at``, linear between, clipped.

    Works in either direction: with ``full_at < zero_at`` lower values are better (ECE, MAE).
    """
    if not math.isfinite(value):
        return 0.0
    return float(min(1.0, max(0.0, (value - zero_at) / (full_at - zero_at))))


def score_value(task: ValueTask, expected: Any, got: Any) -> TaskScore:
    if values_match(expected, got, task.tolerance):
        return TaskScore(1.0, "matches the reference answer")
    return TaskScore(
        0.0,
        f"does not match the reference answer (tolerance abs {task.tolerance.abs:g}, "
        f"rel {task.tolerance.rel:g}); you gave {_short(got)}",
    )


def score_function(task: FunctionTask, cases: list[dict], expected: Any, got: Any) -> TaskScore:
    if not isinstance(got, list) or not isinstance(expected, list) or len(got) != len(expected):
        return TaskScore(0.0, "the function's results on the grader's inputs are missing")
    right = [values_match(e, g, task.tolerance) for e, g in zip(expected, got, strict=True)]
    n_ok, n = sum(right), len(right)
    frac = n_ok / n if task.partial else float(n_ok == n)
    msg = f"{n_ok} of {n} grader-supplied inputs right"
    if n_ok < n:
        i = right.index(False)
        detail = (
            f"raised {got[i]}" if isinstance(got[i], CaseError) else f"returned {_short(got[i])}"
        )
        msg += f"; e.g. {cases[i]} {detail}"
    return TaskScore(frac, msg)


def score_predict(task: PredictTask, got: Any, labels: dict[str, int]) -> TaskScore:
    """Score predictions (``{"index": ids, "values": scores}``) against hidden ``labels``."""
    from sklearn.metrics import roc_auc_score

    if not (isinstance(got, dict) and set(got) == {"index", "values"}):
        return TaskScore(0.0, "no predictions were recorded")
    scores = dict(zip(got["index"], np.asarray(got["values"], dtype=float).tolist(), strict=True))
    missing = [i for i in labels if i not in scores]
    if missing:
        return TaskScore(0.0, f"predictions missing for {len(missing)} of {len(labels)} patients")
    ids = sorted(labels)
    s = np.array([scores[i] for i in ids])
    if not np.all(np.isfinite(s)):
        return TaskScore(0.0, "predictions contain NaN or infinite values")
    y = np.array([labels[i] for i in ids])
    auc = float(roc_auc_score(y, s))
    frac = metric_fraction(auc, task.zero_marks_at, task.full_marks_at)
    return TaskScore(
        frac,
        f"AUROC {auc:.3f} on the hidden split (full marks at >= {task.full_marks_at}, "
        f"none at <= {task.zero_marks_at})",
    )


@dataclass
class ModelTruth:
    """What the trusted scorer knows of a model task's test split (never sent to a sandbox)."""

    labels: Any  # hidden labels, aligned to the order of the public test inputs
    n: int  # number of test inputs
    groups: Any = None  # each test input's group (public), for metrics by group
    members_labels: Any = None  # public labels of the members split, aligned to its inputs
    n_members: int = 0


def membership_pairs(
    members_labels: Any, members_pred: Any, others_labels: Any, others_pred: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``[outcome, member]`` and predictions of members and non-members, stacked."""
    y = np.r_[np.asarray(members_labels, dtype=float), np.asarray(others_labels, dtype=float)]
    member = np.r_[np.ones(len(members_labels)), np.zeros(len(others_labels))]
    return np.c_[y, member], np.concatenate([members_pred, others_pred])


def score_model(task: ModelTask, got: Any, truth: ModelTruth) -> TaskScore:
    """Validate recorded predictions, compute each metric on the hidden labels, average."""
    from medai.autograder.metrics import METRICS, MetricError, by_group, compute
    from medai.autograder.modeldata import OutputError, validate_output

    members = None
    if task.members is not None:  # the record holds {"test": ..., "members": ...}
        if not isinstance(got, dict) or set(got) != {"test", "members"}:
            return TaskScore(0.0, "malformed predictions: expected test and members predictions")
        try:
            members = validate_output(got["members"], task.output, truth.n_members)
        except OutputError as exc:
            return TaskScore(0.0, f"malformed predictions for the members: {exc}")
        got = got["test"]
    if task.output.type not in ("spans", "answers") and isinstance(got, list):
        return TaskScore(0.0, "malformed predictions: expected an array, got a list")
    shape = np.asarray(truth.labels).shape[1:] if task.output.type == "mask" else None
    try:
        pred = validate_output(got, task.output, truth.n, shape)
    except OutputError as exc:
        return TaskScore(0.0, f"malformed predictions: {exc}")
    parts, total = [], 0.0
    for m in task.metrics:
        labels, scored, groups = truth.labels, pred, truth.groups
        if METRICS[m.name].membership:  # members against test cases
            labels, scored = membership_pairs(truth.members_labels, members, truth.labels, pred)
            groups = None  # the attack pairs members with test cases: test groups do not apply
        try:
            value = compute(m.name, labels, scored, match_label=m.match_label, groups=groups)
        except MetricError as exc:
            parts.append(f"{m.name}: not computable ({exc}): 0")
            continue
        frac = metric_fraction(value, m.zero_marks_at, m.full_marks_at)
        total += frac
        detail = by_group(m.name, truth.labels, pred, truth.groups)
        parts.append(
            f"{m.name} {value:.3f} (full marks at {m.full_marks_at:g}, none at "
            f"{m.zero_marks_at:g}): {frac:.0%}" + (f" [{detail}]" if detail else "")
        )
    frac = total / len(task.metrics)
    where = f" on the hidden test split ({truth.n} cases"
    where += f"; {truth.n_members} members)" if task.members is not None else ")"
    return TaskScore(frac, "; ".join(parts) + where)


def score_property(task: PropertyTask, got: Any) -> TaskScore:
    """Evaluate the task's property on the recorded ``[value, *extra]``."""
    from medai.autograder.properties import evaluate

    frac, msg = evaluate(task.property, got, task.params)
    return TaskScore(frac, msg)


def _short(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape}"
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."
