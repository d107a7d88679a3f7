"""Lab M6 (tumour screening): the reference U-Net meets its thresholds, naive answers do not.

- Task 1's ``dice_per_image`` agrees with the grader's ``dice`` metric on random masks, empty
  ones included.
- The reference solution, run with the CI parameters on freshly generated images, reaches the
  full-marks thresholds of ``tasks.yaml`` on the *hidden* test masks (scored by the grader's own
  metrics); a global brightness threshold and an empty mask land below the zero-marks ones.
- Under papermill, a notebook with the threshold answer fails the public check, with figures.

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

from medai.autograder.metrics import dice
from medai.autograder.tasks import load_tasks
from medai.autograder.testing import hidden_model_scores, with_answer
from medai.synthetic.core import generate

LAB = Path(__file__).resolve().parent.parent / "labs" / "m6-tumour"
NB = LAB / "m6-tumour.ipynb"
TASK = "tumour_unet"
SPEC = load_tasks(LAB / "tasks.yaml").tasks[TASK]
CI = yaml.safe_load((LAB / "ci.yaml").read_text(encoding="utf-8"))

NAIVE = {
    # the best global grey-level threshold of Task 1, applied to the test images
    "threshold": "def predict(batch):\n    return (batch >= best_threshold).astype(np.uint8)\n",
    "background": "def predict(batch):\n    return np.zeros(batch.shape, dtype=np.uint8)\n",
}


def _variant(answer: str | None) -> nbformat.NotebookNode:
    return with_answer(NB, f"{TASK}_answer", answer)


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_key) -> Path:
    root = tmp_path_factory.mktemp("m6data")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        generate("tumour", root, n=2000, seed=0, secret=data_key)  # keyed, as on a hub
    return root


def _hidden_scores(nb: nbformat.NotebookNode, root: Path) -> dict[str, float]:
    return hidden_model_scores(nb, root, LAB, TASK, mask_shape=(64, 64))


def test_dice_per_image_matches_the_grader():
    cell = next(
        c
        for c in _variant(None).cells
        if c.metadata["nbgrader"]["grade_id"] == "threshold_dice_answer"
    )
    source = cell.source.split("scores = ")[0]  # the function only, not the training-set scan
    ns: dict = {"np": np}
    exec(source, ns)
    rng = np.random.default_rng(5)
    true = rng.random((40, 16, 16)) < 0.1
    pred = rng.random((40, 16, 16)) < 0.1
    true[:5] = pred[:5] = False  # both empty: counts 1
    true[5:8] = False  # nothing to find, something marked: counts 0
    ours = ns["dice_per_image"](pred, true)
    assert ours == pytest.approx(dice(true, pred), abs=1e-12)
    assert 0.1 < ours < 0.5  # the empty-mask conventions are in it, the random overlap is low


@pytest.mark.slow
def test_reference_reaches_thresholds_on_hidden_masks(data):
    scores = _hidden_scores(_variant(None), data)
    for m in SPEC.metrics:
        assert scores[m.name] >= m.full_marks_at, (m.name, scores)


@pytest.mark.slow
@pytest.mark.parametrize("naive", sorted(NAIVE))
def test_naive_answers_fail_on_hidden_masks(data, naive):
    scores = _hidden_scores(_variant(NAIVE[naive]), data)
    # a global threshold: Dice about 0.2, some lesions overlapped with IoU >= 0.2; empty: Dice 0.25 (the
    # lesion-free images), sensitivity 0
    assert scores["dice"] <= 0.40, scores
    assert scores["lesion_sensitivity"] < 0.75, scores


@pytest.mark.slow
def test_threshold_notebook_fails_the_public_check(data, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("MEDAI_DATA", str(data / "public"))
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(LAB / "tasks.yaml", work / "tasks.yaml")
    nbformat.write(_variant(NAIVE["threshold"]), work / NB.name)
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
        r"FAIL \[tumour_unet\] dice ([\d.]+) .*lesion_sensitivity ([\d.]+)", info.value.evalue
    )
    assert verdict, info.value.evalue
    assert float(verdict[1]) < 0.40 and float(verdict[2]) < 0.75, info.value.evalue
    out = nbformat.read(work / "out.ipynb", as_version=4)
    passed = [c for c in out.cells if "PASS [threshold_dice]" in str(c.get("outputs", ""))]
    assert passed, "the threshold-Dice check before the U-Net should still pass"
