"""The grader's membership-inference audit of ``model`` tasks (``members:``, ``membership_auroc``).

The metric is a loss-threshold attack with one threshold per outcome class, computed by the
trusted scorer on the model's predictions for its training cases (members) and for the test
cases. Checked here on plain data: what the attack sees, how a record is validated, and how the
task file must be written. The end-to-end run in the bubblewrap sandbox is in
tests/test_lab_m9_differential_privacy.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from medai.autograder import GradingError
from medai.autograder.metrics import MetricError, compute
from medai.autograder.scoring import ModelTruth, membership_pairs, score_model
from medai.autograder.tasks import parse_tasks


def _task(**over):
    task = {
        "kind": "model",
        "dataset": "toy",
        "dev": {"inputs": {"npz": "d.npz", "key": "x"}, "labels": {"npz": "d.npz", "key": "y"}},
        "test": {
            "inputs": {"npz": "t.npz", "key": "x"},
            "labels": {"hidden": True, "npz": "t.npz", "key": "y"},
        },
        "members": {
            "inputs": {"npz": "m.npz", "key": "x"},
            "labels": {"npz": "m.npz", "key": "y"},
        },
        "output": {"type": "proba", "classes": 2},
        "metrics": [
            {"name": "auroc", "full_marks_at": 0.7, "zero_marks_at": 0.6},
            {"name": "membership_auroc", "full_marks_at": 0.55, "zero_marks_at": 0.6},
        ],
    }
    task.update(over)
    return parse_tasks({"lab": "x", "tasks": {"t": task}}).tasks["t"]


def test_attack_separates_a_memorising_model_and_not_a_fair_one():
    rng = np.random.default_rng(0)
    y_m, y_t = (rng.random(300) < 0.2).astype(int), (rng.random(300) < 0.2).astype(int)
    # members predicted (almost) exactly, strangers only roughly: the attack wins
    p_m = np.where(y_m == 1, 0.99, 0.01)
    p_t = np.clip(np.where(y_t == 1, 0.6, 0.2) + rng.normal(0, 0.1, 300), 0.01, 0.99)
    labels, pred = membership_pairs(y_m, np.c_[1 - p_m, p_m], y_t, np.c_[1 - p_t, p_t])
    assert labels.shape == (600, 2) and labels[:300, 1].all() and not labels[300:, 1].any()
    assert compute("membership_auroc", labels, pred) > 0.95
    # the same model for everybody: the attack learns nothing
    p = rng.random(600)
    y = (rng.random(600) < 0.2).astype(int)
    fair = compute("membership_auroc", np.c_[y, labels[:, 1]], np.c_[1 - p, p])
    assert abs(fair - 0.5) < 0.08


def test_attack_uses_one_threshold_per_outcome_class():
    # members have smaller losses within each class, but the rare class's losses are larger
    # for everybody: a single threshold mixes them up, per-class thresholds do not
    y = np.array([0] * 40 + [1] * 10 + [0] * 40 + [1] * 10)
    member = np.array([1] * 50 + [0] * 50)
    p = np.r_[np.full(40, 0.05), np.full(10, 0.7), np.full(40, 0.1), np.full(10, 0.6)]
    assert compute("membership_auroc", np.c_[y, member], p) == pytest.approx(1.0)
    with pytest.raises(MetricError, match=r"\(n, 2\)"):
        compute("membership_auroc", y, p)
    with pytest.raises(MetricError, match="share no outcome class"):
        compute("membership_auroc", np.c_[np.r_[np.zeros(50), np.ones(50)], member], p)


def test_a_record_without_the_members_predictions_scores_zero():
    task = _task()
    truth = ModelTruth(np.array([0, 1, 0, 1]), 4, members_labels=np.array([0, 1, 1]), n_members=3)
    good = {"test": np.array([0.2, 0.8, 0.3, 0.7]), "members": np.array([0.1, 0.9, 0.95])}
    s = score_model(task, good, truth)
    assert s.fraction > 0 and "3 members" in s.message and "membership_auroc" in s.message
    for bad, why in (
        (np.array([0.2, 0.8, 0.3, 0.7]), "expected test and members predictions"),
        ({"test": good["test"]}, "expected test and members predictions"),
        ({**good, "extra": 1}, "expected test and members predictions"),
        ({**good, "members": np.array([0.1, 0.9])}, "for the members"),
        ({**good, "members": np.array([0.1, np.nan, 0.2])}, "for the members"),
    ):
        s = score_model(task, bad, truth)
        assert s.fraction == 0 and why in s.message, (bad, s.message)


def test_task_file_rules_for_the_audit():
    with pytest.raises(GradingError, match="give `members:`"):
        _task(members=None)
    hidden = {
        "inputs": {"npz": "m.npz", "key": "x"},
        "labels": {"hidden": True, "npz": "m.npz", "key": "y"},
    }
    with pytest.raises(GradingError, match="members.labels must be public"):
        _task(members=hidden)
    # members without a membership metric are allowed (the check also predicts them)
    assert _task(metrics=[{"name": "auroc", "full_marks_at": 0.7, "zero_marks_at": 0.6}])
