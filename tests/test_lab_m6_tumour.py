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

from pathlib import Path

import numpy as np
import pytest

from medai.autograder.metrics import dice
from medai.testing.labkit import LabKit, generate

KIT = LabKit.of("m6-tumour")
TASK = "tumour_unet"

NAIVE = KIT.variants  # naive answers by name (medai/testing/labs/m6-tumour.yaml)


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_key) -> Path:
    # keyed, as on a hub
    return generate("tumour", tmp_path_factory.mktemp("m6data"), n=2000, seed=0, secret=data_key)


def _hidden_scores(nb, root: Path) -> dict[str, float]:
    return KIT.hidden_model_scores(nb, root, TASK, mask_shape=(64, 64))


def test_dice_per_image_matches_the_grader():
    cell = KIT.cell("threshold_dice_answer")
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
    KIT.assert_full_marks_at(TASK, _hidden_scores(KIT.source(), data))


@pytest.mark.slow
@pytest.mark.parametrize("naive", sorted(NAIVE))
def test_naive_answers_fail_on_hidden_masks(data, naive):
    scores = _hidden_scores(KIT.variant(NAIVE[naive]), data)
    # a global threshold: Dice about 0.2, some lesions overlapped with IoU >= 0.2; empty: Dice 0.25 (the
    # lesion-free images), sensitivity 0
    assert scores["dice"] <= 0.40, scores
    assert scores["lesion_sensitivity"] < 0.75, scores


@pytest.mark.slow
def test_threshold_notebook_fails_the_public_check(data, tmp_path):
    # stops at the first error, the U-Net's check
    run = KIT.papermill(
        KIT.variant(NAIVE["threshold"]), data / "public", tmp_path, allow_errors=False
    )
    # the failure is the public check's verdict with its figures, not a crash on the way
    dice_, sensitivity = run.figures(TASK, "dice", "lesion_sensitivity")
    assert dice_ < 0.40 and sensitivity < 0.75, run.error.evalue
    assert run.verdicts["threshold_dice"] == "PASS", (
        "the threshold-Dice check before the U-Net should still pass"
    )
