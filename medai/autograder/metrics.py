"""Metrics of ``model`` tasks, by name (``metrics: [{name: ..., full_marks_at: ..., ...}]``).

Each metric takes the labels and the *validated* predictions (see
:func:`medai.autograder.modeldata.validate_output`: ``proba`` is ``(n, k)``, ``score``/``risk`` ``(n,)``,
``label`` ``(n,)`` integers, ``mask`` ``(n, H, W)`` bool, ``spans`` a list of lists of
``{start, end, label}``) and returns one float. The same functions give the trainee's instant
feedback (dev labels, in the kernel) and the grade (hidden labels, in the trusted scorer).

Library implementations are used where they exist (scikit-learn, lifelines, scipy, fairlearn, and
the span scorer of :mod:`medai.synthetic.notes`); ``ece``, ``dice``, ``lesion_sensitivity``, the
worst-group error and the question-answering metrics are written here because no installed
library provides them with these conventions (each says so).

*Grouped* metrics (``worst_group_mae``, ``equalized_odds_difference``) also get ``groups``: one
group name per case, from the split's public ``groups`` source. Binary labels may be *expected*
outcomes, i.e. each case's true probability of the event (known only for synthetic data): then
``balanced_accuracy`` and ``equalized_odds_difference`` are expected rates, free of the luck of
who happened to fall ill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["METRICS", "Metric", "MetricError", "by_group", "compute"]


class MetricError(ValueError):
    """Labels and predictions that a metric cannot score (the message says why)."""


@dataclass(frozen=True)
class Metric:
    fn: Callable[..., float]
    outputs: tuple[str, ...]  # output types it scores
    needs: str  # for error messages: what output it needs
    binary: bool = False  # proba outputs must have classes == 2
    higher_is_better: bool = True
    grouped: bool = False  # needs the split's groups (one per case)
    by_group: Callable[..., str] | None = None  # per-group figures for feedback messages
    # scored on the task's members and test cases together, labels (n, 2): [outcome, member]
    membership: bool = False

    def accepts(self, output: Any) -> bool:
        if output.type not in self.outputs:
            return False
        return not (self.binary and output.type in ("proba", "label") and output.classes != 2)


def _positive(pred: np.ndarray) -> np.ndarray:
    """The positive-class column of a binary ``(n, 2)`` proba, or a ``(n,)`` score as is."""
    return pred[:, 1] if pred.ndim == 2 else pred


def _labels_1d(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise MetricError(f"expected one label per case, got labels of shape {y.shape}")
    return y


def _binary(y: Any) -> np.ndarray:
    y = _labels_1d(y)
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise MetricError(f"a binary metric needs 0/1 labels, got values {sorted(values)[:5]}")
    if len(values) < 2:
        raise MetricError("the labels hold one class only: AUROC is undefined")
    return y.astype(int)


def _classes(pred: np.ndarray) -> np.ndarray:
    return pred.argmax(axis=1) if pred.ndim == 2 else pred.astype(int)


def auroc(y: Any, pred: np.ndarray, **_: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(_binary(y), _positive(pred)))


def macro_auroc(y: Any, pred: np.ndarray, **_: Any) -> float:
    """One-vs-rest AUROC averaged over the classes present in ``y`` (sklearn, ``ovr``/macro)."""
    from sklearn.metrics import roc_auc_score

    y = _labels_1d(y).astype(int)
    if pred.shape[1] == 2:
        return auroc(y, pred)
    present = np.unique(y)
    if len(present) < 2:
        raise MetricError("the labels hold one class only: AUROC is undefined")
    if len(present) < pred.shape[1]:
        # sklearn's multi-class ovr needs every class present; average the present ones
        return float(np.mean([roc_auc_score(y == c, pred[:, c]) for c in present]))
    return float(roc_auc_score(y, pred, multi_class="ovr", average="macro"))


def _soft(y: Any) -> np.ndarray | None:
    """Labels that are probabilities of a binary event (not all 0/1), else None."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind != "f" or not len(y):
        return None
    if np.all((y == 0) | (y == 1)):
        return None
    if np.nanmin(y) < 0 or np.nanmax(y) > 1 or np.isnan(y).any():
        raise MetricError("expected-outcome labels must be probabilities in [0, 1]")
    return y


def _expanded(p: np.ndarray, decisions: np.ndarray, groups: Any = None) -> tuple:
    """Each case twice: as an event with weight p and as a non-event with weight 1 - p, so
    that weighted library rates are the *expected* rates (the outcome's luck averaged out)."""
    n = len(p)
    y2 = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
    d2 = np.r_[decisions, decisions]
    w = np.r_[p, 1.0 - p]
    g2 = None if groups is None else np.r_[np.asarray(groups), np.asarray(groups)]
    return y2, d2, w, g2


def balanced_accuracy(y: Any, pred: np.ndarray, **_: Any) -> float:
    from sklearn.metrics import balanced_accuracy_score

    p = _soft(y)
    if p is not None:  # expected outcomes: the expected mean of sensitivity and specificity
        d = _classes(pred)
        if d.max(initial=0) > 1:
            raise MetricError("expected-outcome labels need a binary prediction")
        y2, d2, w, _ = _expanded(p, d)
        return float(balanced_accuracy_score(y2, d2, sample_weight=w))
    return float(balanced_accuracy_score(_labels_1d(y).astype(int), _classes(pred)))


def accuracy(y: Any, pred: np.ndarray, **_: Any) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(_labels_1d(y).astype(int), _classes(pred)))


def ece(y: Any, pred: np.ndarray, n_bins: int = 10, **_: Any) -> float:
    """Expected calibration error of a binary probability, ``n_bins`` equal-width bins on [0, 1].

    Written here: scikit-learn has ``calibration_curve`` but no ECE. Each case falls in the bin
    holding its predicted probability (1.0 in the last bin); ECE is the case-weighted mean of
    ``|observed rate - mean predicted probability|`` over non-empty bins. Lower is better.
    """
    y = _labels_1d(y).astype(float)
    p = _positive(pred).astype(float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / len(y))


def brier(y: Any, pred: np.ndarray, **_: Any) -> float:
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(_labels_1d(y).astype(int), _positive(pred)))


def c_index(y: Any, pred: np.ndarray, **_: Any) -> float:
    """Harrell's C (lifelines). Labels ``(n, 2)``: time, event; higher risk = earlier event."""
    from lifelines.utils import concordance_index

    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[1] != 2:
        raise MetricError(f"c_index needs labels with two columns (time, event), got {y.shape}")
    return float(concordance_index(y[:, 0], -np.asarray(pred, dtype=float), y[:, 1]))


def dice(y: Any, pred: np.ndarray, **_: Any) -> float:
    """Mean per-image Dice of binary masks; an image where both masks are empty counts 1.

    Written here (vectorised numpy): scipy's ``distance.dice`` is a dissimilarity of two flat
    vectors, with no per-image mean or empty-mask convention.
    """
    t = np.asarray(y).astype(bool).reshape(len(y), -1)
    p = np.asarray(pred).astype(bool).reshape(len(pred), -1)
    inter = (t & p).sum(axis=1)
    size = t.sum(axis=1) + p.sum(axis=1)
    per = np.where(size == 0, 1.0, 2.0 * inter / np.maximum(size, 1))
    return float(per.mean())


LESION_MIN_IOU = 0.2


def lesion_sensitivity(
    y: Any, pred: np.ndarray, min_iou: float = LESION_MIN_IOU, **_: Any
) -> float:
    """Share of true lesions (8-connected components of the true masks) that the prediction finds.

    A lesion is found when the predicted components touching it, taken together, overlap it with
    an intersection over union of at least ``min_iou`` (0.2: a loose detection criterion). Merely
    touching is not enough, or painting the whole image, or a noisy global threshold, would
    "find" every lesion. Components come from ``scipy.ndimage.label``; the matching and pooling
    over images are written here. With no true lesion at all, nothing can be missed: 1.0.
    """
    from scipy import ndimage

    found = total = 0
    structure = np.ones((3, 3), dtype=bool)
    for t, p in zip(np.asarray(y).astype(bool), np.asarray(pred).astype(bool), strict=True):
        lab, n = ndimage.label(t, structure=structure)
        if n == 0:
            continue
        total += n
        plab, _ = ndimage.label(p, structure=structure)
        for k in range(1, n + 1):
            lesion = lab == k
            touching = np.unique(plab[lesion & (plab > 0)])
            if touching.size == 0:
                continue
            predicted = np.isin(plab, touching)
            iou = (lesion & predicted).sum() / (lesion | predicted).sum()
            found += bool(iou >= min_iou)
    return float(found / total) if total else 1.0


def _span_scores(y: list, pred: list, match_label: bool) -> dict[str, float]:
    """:func:`medai.synthetic.notes.score_spans`, per label when ``match_label``."""
    from medai.synthetic.notes import score_spans

    if not match_label:
        return score_spans(y, pred)
    labels = {s.get("label") for note in [*y, *pred] for s in note}
    found = total = good = made = 0.0
    for lab in labels:
        g = [[s for s in note if s.get("label") == lab] for note in y]
        p = [[s for s in note if s.get("label") == lab] for note in pred]
        r = score_spans(g, p)
        found += r["recall"] * r["n_gold"]
        total += r["n_gold"]
        good += r["precision"] * r["n_pred"]
        made += r["n_pred"]
    return {"recall": found / total if total else 1.0, "precision": good / made if made else 1.0}


def span_recall(y: list, pred: list, match_label: bool = False, **_: Any) -> float:
    """Share of true identifiers every character of which lies inside a predicted span."""
    return float(_span_scores(y, pred, match_label)["recall"])


def span_precision(y: list, pred: list, match_label: bool = False, **_: Any) -> float:
    """Share of predicted spans at least half of whose characters lie inside true identifiers."""
    return float(_span_scores(y, pred, match_label)["precision"])


def mae(y: Any, pred: np.ndarray, **_: Any) -> float:
    from sklearn.metrics import mean_absolute_error

    return float(mean_absolute_error(np.asarray(y, dtype=float), np.asarray(pred, dtype=float)))


def membership_auroc(y: Any, pred: np.ndarray, **_: Any) -> float:
    """AUROC of a loss-threshold membership-inference attack (Yeom et al., CSF 2018).

    ``y`` is ``(n, 2)``: each case's 0/1 outcome and whether it was a training case (member, 1)
    or not (0); ``pred`` the model's probabilities. The attack scores each case by minus its
    log-loss (members of an overfitted model have smaller losses) and uses one threshold per
    outcome class (losses of the rare class are larger for everyone), so the AUROC is averaged
    over the outcome classes present among both members and non-members. 0.5: the attack learns
    nothing; 1.0: it tells every member from every non-member. Written here: the scorer must
    run it outside the sandbox, on labels a notebook never sees.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] != 2:
        raise MetricError(f"membership labels must be (n, 2): [outcome, member], got {y.shape}")
    outcome, member = y[:, 0].astype(int), y[:, 1].astype(int)
    p = np.clip(_positive(pred), 1e-12, 1 - 1e-12)
    score = np.where(outcome == 1, np.log(p), np.log(1 - p))  # minus the log-loss
    aucs = [
        roc_auc_score(member[outcome == c], score[outcome == c])
        for c in (0, 1)
        if len(set(member[outcome == c].tolist())) == 2
    ]
    if not aucs:
        raise MetricError("members and non-members share no outcome class: no attack AUROC")
    return float(np.mean(aucs))


# --------------------------------------------------------------------------- by group


def _group_array(groups: Any, n: int) -> np.ndarray:
    if groups is None:
        raise MetricError("this metric is computed by group, and no groups were given")
    g = np.asarray(groups).astype(str)
    if g.shape != (n,):
        raise MetricError(f"expected one group per case ({n}), got groups of shape {g.shape}")
    return g


def _group_maes(y: Any, pred: np.ndarray, groups: Any) -> dict[str, float]:
    err = np.abs(np.asarray(y, dtype=float) - np.asarray(pred, dtype=float))
    g = _group_array(groups, len(err))
    return {k: float(err[g == k].mean()) for k in sorted(set(g.tolist()))}


def worst_group_mae(y: Any, pred: np.ndarray, groups: Any = None, **_: Any) -> float:
    """The largest mean absolute error of any group. Written here: a max over a groupby."""
    return max(_group_maes(y, pred, groups).values())


def _mae_by_group(y: Any, pred: np.ndarray, groups: Any) -> str:
    return "MAE by group: " + ", ".join(
        f"{k} {v:.2f}" for k, v in _group_maes(y, pred, groups).items()
    )


def _decisions(pred: np.ndarray) -> np.ndarray:
    d = _classes(pred)
    if not set(np.unique(d).tolist()) <= {0, 1}:
        raise MetricError("equalized odds needs binary decisions (0/1 labels)")
    return d


def _rate_frame(y: Any, pred: np.ndarray, groups: Any) -> Any:
    """fairlearn MetricFrame of true- and false-positive rates by group (expected rates when
    the labels are probabilities)."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, true_positive_rate

    d = _decisions(pred)
    g = _group_array(groups, len(d))
    p = _soft(y)
    metrics = {"TPR": true_positive_rate, "FPR": false_positive_rate}
    if p is None:
        y = _binary(y)
        return MetricFrame(metrics=metrics, y_true=y, y_pred=d, sensitive_features=g)
    y2, d2, w, g2 = _expanded(p, d, g)
    return MetricFrame(
        metrics=metrics,
        y_true=y2,
        y_pred=d2,
        sensitive_features=g2,
        sample_params={"TPR": {"sample_weight": w}, "FPR": {"sample_weight": w}},
    )


def equalized_odds_difference(y: Any, pred: np.ndarray, groups: Any = None, **_: Any) -> float:
    """The larger of the between-group gaps in true- and false-positive rate (fairlearn's
    ``equalized_odds_difference``, ``between_groups``); lower is better."""
    frame = _rate_frame(y, pred, groups)
    if len(frame.by_group) < 2:
        raise MetricError("equalized odds needs at least two groups")
    return float(frame.difference(method="between_groups").max())


def _rates_by_group(y: Any, pred: np.ndarray, groups: Any) -> str:
    by = _rate_frame(y, pred, groups).by_group
    return "by group: " + ", ".join(
        f"{k} TPR {r['TPR']:.3f} FPR {r['FPR']:.3f}" for k, r in by.iterrows()
    )


# --------------------------------------------------------------------------- answers
# Question answering with citations (output type ``answers``): each prediction is
# {"answer": text or None (abstain), "citations": [passage ids], "retrieved": [ranked ids]};
# each label is {"answerable": bool, "answer": text or None, "passage_id": id or None}.
# Written here: the conventions (abstention, citations among the retrieved) are this course's.


def _norm(text: Any) -> str:
    import re
    import unicodedata

    t = unicodedata.normalize("NFKC", str(text)).casefold()
    return re.sub(r"[\s.。]+", "", t)


def _qa(y: Any, pred: list) -> list[tuple[dict, dict]]:
    if not isinstance(y, list) or not all(isinstance(r, dict) for r in y):
        raise MetricError("answer metrics need the questions' records as labels")
    return list(zip(y, pred, strict=True))


def recall_at_5(y: Any, pred: list, **_: Any) -> float:
    """Share of answerable questions whose supporting passage is among the first 5 retrieved."""
    pairs = [(t, p) for t, p in _qa(y, pred) if t.get("answerable")]
    if not pairs:
        raise MetricError("no answerable question to compute recall on")
    return float(np.mean([t["passage_id"] in p["retrieved"][:5] for t, p in pairs]))


def correct_abstention(y: Any, pred: list, **_: Any) -> float:
    """Share of unanswerable questions on which the system abstained (answer None)."""
    pairs = [(t, p) for t, p in _qa(y, pred) if not t.get("answerable")]
    if not pairs:
        raise MetricError("no unanswerable question to compute abstention on")
    return float(np.mean([p["answer"] is None for _, p in pairs]))


def cites_retrieved(y: Any, pred: list, **_: Any) -> float:
    """Share of given answers (not abstentions) that cite at least one passage, every cited
    passage being among the first 5 retrieved. 1.0 when the system answered nothing."""
    given = [p for _, p in _qa(y, pred) if p["answer"] is not None]
    if not given:
        return 1.0
    return float(
        np.mean(
            [bool(p["citations"]) and set(p["citations"]) <= set(p["retrieved"][:5]) for p in given]
        )
    )


def answer_accuracy(y: Any, pred: list, **_: Any) -> float:
    """Share of answerable questions answered with the right value (case, spaces and a final
    full stop ignored) *and* citing the passage that states it."""
    pairs = [(t, p) for t, p in _qa(y, pred) if t.get("answerable")]
    if not pairs:
        raise MetricError("no answerable question to compute accuracy on")
    return float(
        np.mean(
            [
                p["answer"] is not None
                and _norm(p["answer"]) == _norm(t["answer"])
                and t["passage_id"] in p["citations"]
                for t, p in pairs
            ]
        )
    )


_BIN = "a binary proba (classes: 2) or a score"
METRICS: dict[str, Metric] = {
    "auroc": Metric(auroc, ("proba", "score", "risk"), _BIN, binary=True),
    "macro_auroc": Metric(macro_auroc, ("proba",), "a proba output"),
    "balanced_accuracy": Metric(balanced_accuracy, ("proba", "label"), "a proba or label output"),
    "accuracy": Metric(accuracy, ("proba", "label"), "a proba or label output"),
    "ece": Metric(ece, ("proba",), "a binary proba", binary=True, higher_is_better=False),
    "brier": Metric(brier, ("proba",), "a binary proba", binary=True, higher_is_better=False),
    "c_index": Metric(c_index, ("risk", "score"), "a risk or score output"),
    "dice": Metric(dice, ("mask",), "a mask output"),
    "lesion_sensitivity": Metric(lesion_sensitivity, ("mask",), "a mask output"),
    "span_recall": Metric(span_recall, ("spans",), "a spans output"),
    "span_precision": Metric(span_precision, ("spans",), "a spans output"),
    "mae": Metric(mae, ("score", "risk"), "a score or risk output", higher_is_better=False),
    "membership_auroc": Metric(
        membership_auroc,
        ("proba",),
        "a binary proba",
        binary=True,
        higher_is_better=False,
        membership=True,
    ),
    "worst_group_mae": Metric(
        worst_group_mae,
        ("score", "risk"),
        "a score or risk output",
        higher_is_better=False,
        grouped=True,
        by_group=_mae_by_group,
    ),
    "equalized_odds_difference": Metric(
        equalized_odds_difference,
        ("label", "proba"),
        "binary decisions (a label output with classes: 2)",
        binary=True,
        higher_is_better=False,
        grouped=True,
        by_group=_rates_by_group,
    ),
    "recall_at_5": Metric(recall_at_5, ("answers",), "an answers output"),
    "correct_abstention": Metric(correct_abstention, ("answers",), "an answers output"),
    "cites_retrieved": Metric(cites_retrieved, ("answers",), "an answers output"),
    "answer_accuracy": Metric(answer_accuracy, ("answers",), "an answers output"),
}


def compute(
    name: str, labels: Any, pred: Any, *, match_label: bool = False, groups: Any = None
) -> float:
    """Metric ``name`` of validated predictions ``pred`` against ``labels`` (and ``groups``,
    one per case, for grouped metrics).

    Raises :class:`MetricError` when the pair cannot be scored (say, one class only).
    """
    metric = METRICS[name]
    if metric.grouped and groups is None:
        raise MetricError(f"{name} is computed by group, and no groups were given")
    try:
        value = metric.fn(labels, pred, match_label=match_label, groups=groups)
    except MetricError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as exc:
        raise MetricError(f"{name} could not be computed: {exc}") from None
    if not np.isfinite(value):
        raise MetricError(f"{name} is not finite ({value})")
    return value


def by_group(name: str, labels: Any, pred: Any, groups: Any) -> str:
    """Per-group figures of a grouped metric, for feedback (empty for other metrics)."""
    metric = METRICS[name]
    if metric.by_group is None or groups is None:
        return ""
    try:
        return metric.by_group(labels, pred, groups)
    except (MetricError, ValueError, TypeError, KeyError, ZeroDivisionError):
        return ""
