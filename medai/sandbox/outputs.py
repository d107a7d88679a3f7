"""What an analysis function returns: a request for one output, as plain data.

An analysis function takes the data (a pandas DataFrame; the mock twin while developing, the
private cohort in the sandbox) and returns one of these. Each carries the rows it used (their
hidden ``_row`` column: keep it when you filter), never the numbers that are released: trusted
code outside the sandbox recomputes every released number from those rows with the field's
libraries (ACRO, OpenDP, statsmodels, SACRO-ML) and applies the dataset's release rules.

>>> from medai.sandbox import outputs as out
>>> def analysis(df):
...     return out.table(df[df.age >= 65], by=["region", "sex"], value="sbp", stat="mean")
"""

from __future__ import annotations

from typing import Any

ROW = "_row"  # the hidden row number every frame the sandbox hands out carries
STATS = ("count", "mean", "median", "sum", "std")  # never min or max


def _frame(frame: Any) -> Any:
    if not hasattr(frame, "columns") or ROW not in frame.columns:
        raise ValueError(
            f"pass a DataFrame derived from the one your function received, keeping its "
            f"'{ROW}' column (filter rows, add columns; do not rebuild it)"
        )
    return frame


def table(frame: Any, by: list[str], value: str | None = None, stat: str = "count") -> dict:
    """A table of ``stat`` of column ``value`` (or of patient counts) per group of ``by``."""
    return {"kind": "table", "frame": _frame(frame), "by": list(by), "value": value, "stat": stat}


def regression(frame: Any, y: str, x: list[str], family: str = "ols") -> dict:
    """A fitted regression (``ols`` or ``logit``): coefficients and their standard errors."""
    return {"kind": "regression", "frame": _frame(frame), "y": y, "x": list(x), "family": family}


def dp_count(frame: Any, epsilon: float) -> dict:
    """A differentially private count of the rows (spends ``epsilon`` of your budget)."""
    return {"kind": "dp_count", "frame": _frame(frame), "epsilon": epsilon}


def dp_mean(frame: Any, column: str, lower: float, upper: float, epsilon: float) -> dict:
    """A differentially private mean of ``column`` clamped to ``[lower, upper]``."""
    return {
        "kind": "dp_mean",
        "frame": _frame(frame),
        "column": column,
        "lower": lower,
        "upper": upper,
        "epsilon": epsilon,
    }


def model(frame: Any, y: str, x: list[str], coef: list[float], intercept: float, C: float = 1.0):
    """A logistic-regression model you trained on ``frame`` (scikit-learn's, penalty l2 with
    inverse strength ``C``). Before it is released the service refits it on the same rows and
    runs SACRO-ML's membership-inference attack against it; rows you left out are the
    attack's non-members, so train on at most 80 % of the rows."""
    return {
        "kind": "model",
        "frame": _frame(frame),
        "y": y,
        "x": list(x),
        "coef": [float(c) for c in coef],
        "intercept": float(intercept),
        "C": float(C),
    }
