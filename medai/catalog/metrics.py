"""Metrics of a binary risk model, overall and per subgroup (fairlearn's MetricFrame).

The same function fills a reference model's card and can fill a released model's card in the
sandbox service, so every model in the catalogue reports the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from medai.catalog.cards import SubgroupMetrics

METRIC_NAMES = ("auroc", "average_precision", "brier", "sensitivity", "specificity", "ppv")


def _defined(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable:
    """``fn`` that answers NaN where it is undefined (a group with only one class)."""

    def wrapped(y: np.ndarray, p: np.ndarray) -> float:
        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            return float("nan")
        return float(fn(y, p))

    return wrapped


def _rate(num: np.ndarray, den: np.ndarray) -> float:
    n = int(den.sum())
    return float(num.sum() / n) if n else float("nan")


def binary_metrics(threshold: float) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Metric name -> ``f(y_true, risk)``; the threshold metrics flag ``risk >= threshold``."""

    def sensitivity(y, p):
        y, flag = np.asarray(y) == 1, np.asarray(p) >= threshold
        return _rate(flag & y, y)

    def specificity(y, p):
        y, flag = np.asarray(y) == 1, np.asarray(p) >= threshold
        return _rate(~flag & ~y, ~y)

    def ppv(y, p):
        y, flag = np.asarray(y) == 1, np.asarray(p) >= threshold
        return _rate(flag & y, flag)

    return {
        "auroc": _defined(roc_auc_score),
        "average_precision": _defined(average_precision_score),
        "brier": lambda y, p: float(brier_score_loss(y, p)),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": ppv,
    }


def _clean(value: float, digits: int = 4) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def evaluate(
    y_true: np.ndarray, risk: np.ndarray, groups: pd.DataFrame, threshold: float
) -> tuple[dict[str, float | None], list[SubgroupMetrics]]:
    """Overall metrics and one :class:`SubgroupMetrics` per value of each column of ``groups``
    (each attribute on its own, not their intersections), rounded to 4 digits."""
    from fairlearn.metrics import MetricFrame

    y_true = np.asarray(y_true).astype(int)
    risk = np.asarray(risk, dtype=float)
    fns = binary_metrics(threshold)
    overall = {k: _clean(f(y_true, risk)) for k, f in fns.items()}
    subgroups: list[SubgroupMetrics] = []
    for attribute in groups.columns:
        values = groups[attribute].astype(str).to_numpy()
        frame = MetricFrame(metrics=fns, y_true=y_true, y_pred=risk, sensitive_features=values)
        counts = pd.Series(y_true).groupby(values)
        for group, row in frame.by_group.iterrows():
            subgroups.append(
                SubgroupMetrics(
                    attribute=str(attribute),
                    group=str(group),
                    n=int(counts.size()[group]),
                    positives=int(counts.sum()[group]),
                    metrics={k: _clean(row[k]) for k in fns},
                )
            )
    return overall, subgroups
