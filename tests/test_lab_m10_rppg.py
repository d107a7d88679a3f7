"""Lab M10 (heart rate from face video): the reference meets its thresholds, naive answers fail.

- The reference spectral peak and POS functions agree with the *true* heart rate of the test
  signals, drawn the way the grader draws them (so the expected values are not the reference
  echoing itself); a bare Fourier peak and the green channel score almost nothing against them.
- Naive answers fail their public checks (the lab's cells run in-process with the real
  ``check`` in public mode, on generated clips; the reference passing them under papermill is
  the notebook CI's check).
- End to end: nbgrader release, an honest and a naive submission graded by ``medai grade``'s
  pipeline in bubblewrap sandboxes, the heart-rate model scored on the hidden test clips.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py). The module
doubles as the lab's calibration script (it lives here because a lab folder is released)::

    .venv/bin/python tests/test_lab_m10_rppg.py --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pytest

from medai.testing.labkit import LabKit, generate, run_cells

KIT = LabKit.of("m10-rppg")
TASKS = KIT.tasks
N_CLIPS = 600  # the course's size (courses/demo-course.yaml); thresholds were set at it

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m10-rppg.yaml
NAIVE_MODELS = KIT.variants  # naive heart-rate models (the model cell only)


def _functions(nb) -> dict:
    """The helper and function cells run in-process (no data); the checked functions."""
    ns: dict = {"FPS": 30.0}
    exec(
        "import numpy as np\nfrom numpy.lib.stride_tricks import sliding_window_view\n"
        "from scipy import signal",
        ns,
    )
    wanted = {"helpers", "peak_answer", "peak_bpm", "pos_answer", "pos_hr"}
    return run_cells(nb, only=wanted, ns=ns).checked


@pytest.mark.parametrize("tid", ["peak_bpm", "pos_hr"])
def test_reference_finds_the_true_rate_and_naive_answers_do_not(tid):
    # inputs as the grader draws them (its own draw function), plus the public examples
    cases = KIT.cases(tid, 60, seed=10, hidden=False)
    truth = [c["hr_bpm"] for c in cases]  # independent of the reference: the simulated rate
    ref = KIT.outputs(_functions(KIT.source())[tid], cases)
    assert KIT.score(tid, cases, truth, ref).fraction == 1.0
    naive = KIT.outputs(_functions(KIT.variant(NAIVE))[tid], cases)
    assert KIT.score(tid, cases, ref, naive).fraction <= 0.05


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate("rppg", tmp_path_factory.mktemp("m10data"), n=N_CLIPS, seed=3)


@pytest.mark.slow
def test_naive_answers_fail_their_public_checks(data):
    # (that the reference passes them is the notebook CI's check, tests/test_notebooks.py)
    nb = KIT.variant({**NAIVE, **NAIVE_MODELS["mean"]})
    verdicts = KIT.public_verdicts(nb, data)
    assert verdicts == {"peak_bpm": "FAIL", "pos_hr": "FAIL", "hr_model": "FAIL"}, verdicts


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    heart-rate model scored on the hidden test clips by the trusted scorer."""
    naive = KIT.variant({**NAIVE, **NAIVE_MODELS["green"]})
    graded = KIT.grade(tmp_path, data, {"honest": KIT.source(), "naive": naive})
    honest = graded["honest"]
    KIT.assert_full_marks(honest)
    KIT.assert_at_most(graded["naive"], dict.fromkeys(TASKS, 0.3))
    # the grade reports the error of each skin-tone group
    assert "MAE by group: I-II" in honest["tasks"]["hr_model"]["message"]


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m10's reference and naive models.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_CLIPS)
    args = ap.parse_args()
    print("| seed | answer | MAE | worst-tone MAE |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        root = generate("rppg", Path(tempfile.mkdtemp(prefix=f"m10-{seed}-")), n=args.n, seed=seed)
        for name, answer in (("reference", None), *NAIVE_MODELS.items()):
            nb = KIT.variant(answer)
            s = KIT.hidden_model_scores(nb, root, "hr_model")
            print(f"| {seed} | {name} | {s['mae']:.2f} | {s['worst_group_mae']:.2f} |")


if __name__ == "__main__":
    main()
