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
import contextlib
import io
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from medai.autograder import plain
from medai.autograder.batch import _draw
from medai.autograder.scoring import score_function
from medai.autograder.tasks import load_tasks
from medai.autograder.testing import hidden_model_scores, public_verdicts, with_answer, with_answers

LAB = Path(__file__).resolve().parent.parent / "labs" / "m10-rppg"
NB = LAB / "m10-rppg.ipynb"
TASKS = load_tasks(LAB / "tasks.yaml")
N_CLIPS = 600  # the course's size (courses/demo-course.yaml); thresholds were set at it

# What a trainee who has not understood the lesson might write, per answer cell.
NAIVE = {
    # the largest Fourier coefficient, mean and drift included
    "peak_answer": (
        "    f = np.fft.rfftfreq(len(x), 1 / fps)\n"
        "    return float(60 * f[np.argmax(np.abs(np.fft.rfft(x)))])\n"
    ),
    # the green channel is the pulse signal
    "pos_answer": "    return np.asarray(rgb, dtype=float)[:, 1]\n",
}
# Naive heart-rate models (the model cell only), for the calibration table and the grader test.
NAIVE_MODELS = {
    "green": (
        "    return np.array([peak_bpm(c[~np.isnan(c).any(axis=1)][:, 1], FPS)"
        " for c in rgb_batch])\n"
    ),
    "mean": "    return np.full(len(rgb_batch), float(hr_true.mean()))\n",
}


def _variant(replace: dict[str, str]) -> nbformat.NotebookNode:
    return with_answers(NB, replace)


def _functions(nb: nbformat.NotebookNode) -> dict:
    """The helper and function cells run in-process (no data); the checked functions."""
    captured: dict = {}
    ns: dict = {"check": lambda tid, fn, *extra: captured.__setitem__(tid, fn), "FPS": 30.0}
    exec(
        "import numpy as np\nfrom numpy.lib.stride_tricks import sliding_window_view\n"
        "from scipy import signal",
        ns,
    )
    wanted = {"helpers", "peak_answer", "peak_bpm", "pos_answer", "pos_hr"}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") in wanted:
                exec(cell.source, ns)
    return captured


def _cases(tid: str, n: int = 60) -> list[dict]:
    """Inputs as the grader draws them (its own draw function), plus the public examples."""
    rng = np.random.default_rng([10, len(tid)])
    task = TASKS.tasks[tid]
    return [{k: _draw(s, rng) for k, s in task.args.items()} for _ in range(n)] + [
        ex.args for ex in task.examples
    ]


def _results(fn, cases: list[dict]) -> list:
    return [plain.decode(plain.encode(fn(**c))) for c in cases]


@pytest.mark.parametrize("tid", ["peak_bpm", "pos_hr"])
def test_reference_finds_the_true_rate_and_naive_answers_do_not(tid):
    cases = _cases(tid)
    task = TASKS.tasks[tid]
    truth = [c["hr_bpm"] for c in cases]  # independent of the reference: the simulated rate
    ref = _results(_functions(nbformat.read(NB, as_version=4))[tid], cases)
    assert score_function(task, cases, truth, ref).fraction == 1.0
    naive = _results(_functions(_variant(NAIVE))[tid], cases)
    assert score_function(task, cases, ref, naive).fraction <= 0.05


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from medai.synthetic.core import generate

    root = tmp_path_factory.mktemp("m10data")
    generate("rppg", root, n=N_CLIPS, seed=3)
    return root


@pytest.mark.slow
def test_naive_answers_fail_their_public_checks(data):
    # (that the reference passes them is the notebook CI's check, tests/test_notebooks.py)
    nb = _variant({**NAIVE, "model_answer": NAIVE_MODELS["mean"]})
    verdicts = public_verdicts(nb, LAB, data)
    assert verdicts == {"peak_bpm": "FAIL", "pos_hr": "FAIL", "hr_model": "FAIL"}, verdicts


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    heart-rate model scored on the hidden test clips by the trusted scorer."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    course = make_course(tmp_path / "course", LAB, "m10-rppg")
    release = nbformat.read(course / "release/m10-rppg/m10-rppg.ipynb", as_version=4)
    name = "m10-rppg.ipynb"
    naive = _variant({**NAIVE, "model_answer": NAIVE_MODELS["green"]})
    submit(course, "m10-rppg", "honest", {name: solved(release, nbformat.read(NB, as_version=4))})
    submit(course, "m10-rppg", "naive", {name: solved(release, naive)})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 150, "cpu_s": 100, "memory_mb": 2048, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m10-rppg",
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=data,
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid in TASKS.tasks:
        assert honest["tasks"][tid]["score"] == honest["tasks"][tid]["max"], honest["tasks"][tid]
        assert naive["tasks"][tid]["score"] <= 0.3 * naive["tasks"][tid]["max"], naive["tasks"][tid]
    # the grade reports the error of each skin-tone group
    assert "MAE by group: I-II" in honest["tasks"]["hr_model"]["message"]


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m10's reference and naive models.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_CLIPS)
    args = ap.parse_args()
    from medai.synthetic.core import generate

    print("| seed | answer | MAE | worst-tone MAE |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        root = Path(tempfile.mkdtemp(prefix=f"m10-{seed}-"))
        generate("rppg", root, n=args.n, seed=seed)
        for name, answer in (("reference", None), *NAIVE_MODELS.items()):
            nb = with_answer(NB, "model_answer", answer)
            s = hidden_model_scores(nb, root, LAB, "hr_model")
            print(f"| {seed} | {name} | {s['mae']:.2f} | {s['worst_group_mae']:.2f} |")


if __name__ == "__main__":
    main()
