"""The model both sides of the federation share: a logistic regression on standardised features.

Each hospital's ClientApp reads only its own table (the path comes from its SuperNode's
``--node-config``). The local solver here is Newton's method with a small ridge penalty, a
different one from the notebook's gradient descent: FedAvg only averages what the hospitals send,
whatever each one did locally.
"""

from __future__ import annotations

import csv

import numpy as np

OUTCOME = "ckd_5y"
NOT_FEATURES = ("patient_id", "site", OUTCOME)


def load_site(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A hospital's training table: the raw features, the outcome and the feature names.

    Read with the standard library: a ClientApp starts once per message, so it imports little.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    features = [c for c in header if c not in NOT_FEATURES]
    cols = [header.index(c) for c in features]
    X = np.array([[float(r[i]) for i in cols] for r in body])
    y = np.array([float(r[header.index(OUTCOME)]) for r in body])
    return X, y, features


def summaries(X: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """What a hospital shares to standardise: its size, the sums and the sums of squares."""
    return len(X), X.sum(axis=0), (X**2).sum(axis=0)


def combine(parts: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The pooled mean and standard deviation (N - 1) from every hospital's summaries."""
    n = sum(p[0] for p in parts)
    mean = sum(p[1] for p in parts) / n
    sd = np.sqrt((sum(p[2] for p in parts) - n * mean**2) / (n - 1))
    return mean, sd


def design(X: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.c_[np.ones(len(X)), (X - mean) / sd]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def newton_steps(
    w: np.ndarray, Xb: np.ndarray, y: np.ndarray, steps: int, ridge: float
) -> np.ndarray:
    """``steps`` Newton steps on the mean logistic loss + ridge/(2n) ||w||^2 (intercept free)."""
    n = len(y)
    penalty = np.full(len(w), ridge / n)
    penalty[0] = 0.0
    for _step in range(steps):
        p = sigmoid(Xb @ w)
        grad = Xb.T @ (p - y) / n + penalty * w
        hess = (Xb * (p * (1 - p))[:, None]).T @ Xb / n + np.diag(penalty)
        w = w - np.linalg.solve(hess, grad)
    return w


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the share of (case, non-case) pairs ranked right, ties half."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
