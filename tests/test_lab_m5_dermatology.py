"""Lab M5 (dermatology): the reference CNN meets its thresholds, naive answers do not.

- Task 1's class weights agree with scikit-learn's ``compute_class_weight("balanced")``.
- The reference solution, run with the CI parameters on freshly generated images, reaches the
  full-marks thresholds of ``tasks.yaml`` on the *hidden* test labels (scored by the grader's own
  metrics); majority-class and mean-colour answers land far below them.
- Under papermill, a notebook with a naive answer fails the public check, with the figures.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from medai.autograder.tasks import load_tasks
from medai.autograder.testing import hidden_model_scores, with_answer
from medai.synthetic.core import generate

LAB = Path(__file__).resolve().parent.parent / "labs" / "m5-dermatology"
NB = LAB / "m5-dermatology.ipynb"
TASK = "skin_cnn"
SPEC = load_tasks(LAB / "tasks.yaml").tasks[TASK]
CI = yaml.safe_load((LAB / "ci.yaml").read_text(encoding="utf-8"))

NAIVE = {
    "majority": (
        "majority = np.bincount(labels).argmax()\n"
        "def predict(batch):\n"
        "    p = np.zeros((len(batch), K))\n"
        "    p[:, majority] = 1.0\n"
        "    return p\n"
    ),
    "mean_colour": (
        "from sklearn.linear_model import LogisticRegression\n"
        "def mean_colour(b):\n"
        "    return b.reshape(len(b), -1, 3).mean(1) / 255\n"
        "clf = LogisticRegression(max_iter=1000, class_weight='balanced')\n"
        "clf.fit(mean_colour(images), labels)\n"
        "def predict(batch):\n"
        "    return clf.predict_proba(mean_colour(batch))\n"
    ),
}


def _variant(answer: str | None) -> nbformat.NotebookNode:
    return with_answer(NB, f"{TASK}_answer", answer)


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_key) -> Path:
    root = tmp_path_factory.mktemp("m5data")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        generate("skin", root, n=3000, seed=0, secret=data_key)  # keyed, as on a hub
    return root


def _hidden_scores(nb: nbformat.NotebookNode, root: Path) -> dict[str, float]:
    return hidden_model_scores(nb, root, LAB, TASK)


def test_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    cell = next(
        c
        for c in _variant(None).cells
        if c.metadata["nbgrader"]["grade_id"] == "class_weights_answer"
    )
    labels = np.random.default_rng(3).choice(5, size=997, p=[0.55, 0.15, 0.14, 0.1, 0.06])
    ns = {"np": np, "labels": labels, "K": 5, "CLASSES": list("abcde")}
    exec(cell.source, ns)
    expected = compute_class_weight("balanced", classes=np.arange(5), y=labels)
    np.testing.assert_allclose(ns["class_weights"], expected, rtol=1e-12)


@pytest.mark.slow
def test_reference_reaches_thresholds_on_hidden_labels(data):
    scores = _hidden_scores(_variant(None), data)
    for m in SPEC.metrics:
        assert scores[m.name] >= m.full_marks_at, (m.name, scores)


@pytest.mark.slow
@pytest.mark.parametrize("naive", sorted(NAIVE))
def test_naive_answers_score_nothing_on_hidden_labels(data, naive):
    scores = _hidden_scores(_variant(NAIVE[naive]), data)
    # majority class: AUROC 0.5, balanced accuracy 0.2; mean colour: about 0.6 and 0.27
    assert scores["macro_auroc"] <= 0.75, scores
    assert scores["balanced_accuracy"] <= 0.50, scores


@pytest.mark.slow
def test_naive_notebook_fails_the_public_check(data, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("MEDAI_DATA", str(data / "public"))
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(LAB / "tasks.yaml", work / "tasks.yaml")
    nbformat.write(_variant(NAIVE["majority"]), work / NB.name)
    with pytest.raises(PapermillExecutionError) as info:
        pm.execute_notebook(
            str(work / NB.name),
            str(work / "out.ipynb"),
            parameters=CI,
            kernel_name="python3",
            cwd=str(work),
            progress_bar=False,
        )
    # the failure is the public check's verdict with its figures, not a crash on the way
    assert info.value.ename == "CheckFailed", info.value.evalue
    verdict = re.search(
        r"FAIL \[skin_cnn\] macro_auroc ([\d.]+) .*balanced_accuracy ([\d.]+)", info.value.evalue
    )
    assert verdict, info.value.evalue
    assert float(verdict[1]) == pytest.approx(0.5) and float(verdict[2]) == pytest.approx(0.2)
    out = nbformat.read(work / "out.ipynb", as_version=4)
    passed = [c for c in out.cells if "PASS [class_weights]" in str(c.get("outputs", ""))]
    assert passed, "the class-weights check before the CNN should still pass"
