"""Lab M5 (dermatology): the reference CNN meets its thresholds, naive answers do not.

- Task 1's class weights agree with scikit-learn's ``compute_class_weight("balanced")``.
- The reference solution, run with the CI parameters on freshly generated images, reaches the
  full-marks thresholds of ``tasks.yaml`` on the *hidden* test labels (scored by the grader's own
  metrics); majority-class and mean-colour answers land far below them.
- Under papermill, a notebook with a naive answer fails the public check, with the figures.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medai.testing.labkit import LabKit, generate

KIT = LabKit.of("m5-dermatology")
TASK = "skin_cnn"

NAIVE = KIT.variants  # naive answers by name (medai/testing/labs/m5-dermatology.yaml)


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_key) -> Path:
    # keyed, as on a hub
    return generate("skin", tmp_path_factory.mktemp("m5data"), n=3000, seed=0, secret=data_key)


def _hidden_scores(nb, root: Path) -> dict[str, float]:
    return KIT.hidden_model_scores(nb, root, TASK)


def test_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    cell = KIT.cell("class_weights_answer")
    labels = np.random.default_rng(3).choice(5, size=997, p=[0.55, 0.15, 0.14, 0.1, 0.06])
    ns = {"np": np, "labels": labels, "K": 5, "CLASSES": list("abcde")}
    exec(cell.source, ns)
    expected = compute_class_weight("balanced", classes=np.arange(5), y=labels)
    np.testing.assert_allclose(ns["class_weights"], expected, rtol=1e-12)


@pytest.mark.slow
def test_reference_reaches_thresholds_on_hidden_labels(data):
    KIT.assert_full_marks_at(TASK, _hidden_scores(KIT.source(), data))


@pytest.mark.slow
@pytest.mark.parametrize("naive", sorted(NAIVE))
def test_naive_answers_score_nothing_on_hidden_labels(data, naive):
    scores = _hidden_scores(KIT.variant(NAIVE[naive]), data)
    # majority class: AUROC 0.5, balanced accuracy 0.2; mean colour: about 0.6 and 0.27
    assert scores["macro_auroc"] <= 0.75, scores
    assert scores["balanced_accuracy"] <= 0.50, scores


@pytest.mark.slow
def test_naive_notebook_fails_the_public_check(data, tmp_path):
    # stops at the first error, the CNN's check
    run = KIT.papermill(
        KIT.variant(NAIVE["majority"]), data / "public", tmp_path, allow_errors=False
    )
    # the failure is the public check's verdict with its figures, not a crash on the way
    auroc, balanced = run.figures(TASK, "macro_auroc", "balanced_accuracy")
    assert auroc == pytest.approx(0.5) and balanced == pytest.approx(0.2)
    assert run.verdicts["class_weights"] == "PASS", (
        "the class-weights check before the CNN should still pass"
    )
