"""Lab m9-differential-privacy: DP-SGD closes the membership leak at a small cost in AUROC.

The reference run under papermill is tests/test_notebooks.py's job. Here:

1. the reference's ``epsilon`` is Opacus' RDP accountant (checked against a step-by-step
   accountant and against the epsilon Opacus reports after training), and its ``attack_auroc``
   agrees with the grader's own ``membership_auroc`` metric;
2. the real grader (nbgrader release, bubblewrap sandbox, the attack run outside the sandbox
   on members and hidden test patients) gives the reference full marks and naive answers little:
   epsilon by naive composition, an attack that ignores the outcome class, the ordinary network
   handed in as the private one, and epsilon claimed rather than spent;
3. under papermill a notebook with those naive answers fails the public checks that see them.

The module doubles as the lab's calibration script (hidden test AUROC and the grader's attack,
for the ordinary and the DP-SGD network, per seed)::

    .venv/bin/python tests/test_lab_m9_differential_privacy.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from medai.autograder.testing import SOLUTION_REGION
from medai.site.notebooks import ci_parameters

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "labs" / "m9-differential-privacy"
NOTEBOOK = "m9-differential-privacy.ipynb"
N_PATIENTS = 10000  # the size the thresholds were set at (courses/demo-course.yaml)

NAIVE = {
    # basic composition: each step's epsilon of the Gaussian mechanism, summed
    "epsilon_answer": (
        "    eps_step = np.sqrt(2 * np.log(1.25 / DELTA)) / noise_multiplier\n"
        "    return float(eps_step * sample_rate * steps)\n"
    ),
    # one threshold for everybody: the rare outcome's large losses swamp the signal
    "attack_answer": (
        "    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)\n"
        "    score = np.where(np.asarray(y) == 1, np.log(p), np.log(1 - p))\n"
        "    return float(roc_auc_score(member, score))\n"
    ),
    # the ordinary network handed in as the private one, and epsilon claimed, not measured
    "dp_model_answer": (
        "private = baseline\n"
        "epsilon_spent = TARGET_EPSILON\n"
        "def predict_private(ids):\n"
        "    return predict_baseline(ids)\n"
    ),
}


def variant(answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    nb = nbformat.read(LAB / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if answers and gid in answers:
            cell.source = SOLUTION_REGION.sub(lambda _m, c=answers[gid]: c, cell.source)
    return nb


def generate(root: Path, seed: int, n: int = N_PATIENTS) -> Path:
    from medai.synthetic.core import generate as gen

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        gen("ehr", root, n=n, seed=seed)
    return root


def run_cells(nb: nbformat.NotebookNode, root: Path, params: dict) -> dict:
    """Run the notebook's code cells in this process (``check`` records); return the namespace."""
    recorded: dict = {}
    ns: dict = {}
    before = os.environ.get("MEDAI_DATA")
    os.environ["MEDAI_DATA"] = str(root / "public")
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if cell.cell_type != "code" or gid == "explore":
                    continue
                source = cell.source
                if gid == "parameters":
                    source += "".join(f"\n{k} = {v!r}" for k, v in params.items())
                exec(compile(source, gid or "cell", "exec"), ns)  # our own notebook
                ns["check"] = lambda tid, value, *extra: recorded.__setitem__(tid, value)
    finally:
        if before is None:
            os.environ.pop("MEDAI_DATA", None)
        else:
            os.environ["MEDAI_DATA"] = before
    ns["recorded"] = recorded
    return ns


def hidden_scores(root: Path, predict) -> dict[str, float]:
    """Test AUROC and the grader's attack (members against the test patients), as scored."""
    from medai.autograder.batch import model_truth
    from medai.autograder.metrics import compute
    from medai.autograder.modeldata import load_source, validate_output
    from medai.autograder.scoring import membership_pairs
    from medai.autograder.tasks import load_tasks

    task = load_tasks(LAB / "tasks.yaml").tasks["dp_model"]
    truth = model_truth("dp_model", task, root)
    public = root / "public" / "ehr"
    test = validate_output(
        predict(load_source(task.test.inputs, public).value), task.output, truth.n
    )
    mem = validate_output(
        predict(load_source(task.members.inputs, public).value), task.output, truth.n_members
    )
    labels, both = membership_pairs(truth.members_labels, mem, truth.labels, test)
    return {
        "auroc": compute("auroc", truth.labels, test),
        "attack": compute("membership_auroc", labels, both),
    }


def calibrate(root: Path, params: dict) -> dict[str, float]:
    t0 = time.monotonic()
    ns = run_cells(variant(), root, params)
    seconds = time.monotonic() - t0
    base = hidden_scores(root, ns["recorded"]["baseline_model"])
    dp = hidden_scores(root, ns["recorded"]["dp_model"])
    return {
        "ordinary AUROC": base["auroc"],
        "ordinary attack": base["attack"],
        "DP AUROC": dp["auroc"],
        "DP attack": dp["attack"],
        "AUROC cost": base["auroc"] - dp["auroc"],
        "epsilon": float(ns["recorded"]["epsilon_spent"]),
        "sigma": float(ns["optimiser"].noise_multiplier),
        "seconds": seconds,
    }


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("m9-data"), seed=0)


@pytest.fixture(scope="module")
def reference(data_root) -> dict:
    return run_cells(variant(), data_root, ci_parameters(LAB, NOTEBOOK))


def test_epsilon_is_the_rdp_accountant_of_opacus(reference):
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(250):  # one step at a time, as a training run records them
        acc.step(noise_multiplier=1.3, sample_rate=0.02)
    assert reference["epsilon"](1.3, 0.02, 250) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    # the training run's own account: noise, sample rate and steps give the epsilon it reports
    opt = reference["optimiser"]
    steps = sum(n for _, _, n in reference["engine"].accountant.history)
    spent = reference["epsilon"](opt.noise_multiplier, opt.expected_batch_size / 1457, steps)
    assert spent == pytest.approx(reference["epsilon_spent"], rel=0.05)
    assert 2.5 <= reference["epsilon_spent"] <= 3.0


def test_attack_agrees_with_the_graders_metric(reference):
    from medai.autograder.metrics import compute

    rng = np.random.default_rng(4)
    p = rng.random(500)
    y, member = (rng.random(500) < 0.2).astype(int), rng.integers(0, 2, 500)
    ours = reference["attack_auroc"](p, y, member)
    theirs = compute("membership_auroc", np.c_[y, member], np.c_[1 - p, p])
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert 0.6 < reference["toy_attack"](3) < 0.8  # the toy leak is visible


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_little(data_root, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox; the
    attack runs outside it, on the members and the hidden test patients."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    lab = "m9-differential-privacy"
    course = make_course(tmp_path / "course", LAB, lab)
    release = nbformat.read(course / "release" / lab / NOTEBOOK, as_version=4)
    submit(course, lab, "honest", {NOTEBOOK: solved(release, variant())})
    submit(course, lab, "naive", {NOTEBOOK: solved(release, variant(NAIVE))})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 180, "cpu_s": 170, "memory_mb": 4096, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        lab,
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=data_root,
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid, t in honest["tasks"].items():
        if t["score"] is not None:  # the reflection is graded by hand
            assert t["score"] == t["max"], (tid, t)
    assert "membership_auroc" in honest["tasks"]["dp_model"]["message"]
    assert "members" in honest["tasks"]["dp_model"]["message"]
    assert naive["tasks"]["epsilon"]["score"] == 0, naive["tasks"]["epsilon"]
    assert naive["tasks"]["attack"]["score"] == 0, naive["tasks"]["attack"]
    assert naive["tasks"]["baseline_model"]["score"] == naive["tasks"]["baseline_model"]["max"]
    # the ordinary network keeps its AUROC but the attack works on it: half the points at most
    assert naive["tasks"]["dp_model"]["score"] <= 0.5 * 4, naive["tasks"]["dp_model"]
    assert "membership_auroc 0.6" in naive["tasks"]["dp_model"]["message"] or (
        "membership_auroc 0.7" in naive["tasks"]["dp_model"]["message"]
    )


@pytest.mark.slow
def test_naive_notebook_fails_the_public_checks(data_root, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from medai.autograder.testing import verdicts

    monkeypatch.setenv("MEDAI_DATA", str(data_root / "public"))
    (tmp_path / "tasks.yaml").write_text((LAB / "tasks.yaml").read_text())
    nbformat.write(variant(NAIVE), tmp_path / NOTEBOOK)
    with pytest.raises(PapermillExecutionError):
        pm.execute_notebook(
            str(tmp_path / NOTEBOOK),
            str(tmp_path / "out.ipynb"),
            parameters=ci_parameters(LAB, NOTEBOOK),
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
            allow_errors=True,
            execution_timeout=90,
        )
    # epsilon claimed as exactly 3.0 sits inside the range: only the grader's attack shows it
    assert verdicts(tmp_path / "out.ipynb") == {
        "epsilon": "FAIL",
        "attack": "FAIL",
        "baseline_model": "PASS",
        "dp_model": "FAIL",
        "epsilon_spent": "PASS",
    }


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Calibrate lab m9 on hidden test patients.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_PATIENTS)
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        root = generate(Path(tempfile.mkdtemp(prefix=f"m9-{seed}-")), seed, args.n)
        rows.append(calibrate(root, {"SEED": seed}))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
    for name, fn in (("min", min), ("mean", np.mean), ("max", max)):
        print(f"{name}: " + ", ".join(f"{k} {fn([r[k] for r in rows]):.3f}" for k in rows[0]))


if __name__ == "__main__":
    main()
