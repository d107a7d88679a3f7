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

import time
from pathlib import Path

import numpy as np
import pytest

from medai.testing.labkit import LabKit, Run

KIT = LabKit.of("m9-differential-privacy")

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m9-differential-privacy.yaml


def run_cells(nb, root: Path, params: dict) -> Run:
    """Run the notebook's code cells in this process (``check`` records)."""
    return KIT.run(nb, params, data=root, skip={"explore"})


def hidden_scores(root: Path, predict) -> dict[str, float]:
    """Test AUROC and the grader's attack (members against the test patients), as scored."""
    from medai.autograder.metrics import compute
    from medai.autograder.modeldata import load_source, validate_output
    from medai.autograder.scoring import membership_pairs

    task = KIT.tasks["dp_model"]
    truth = KIT.model_truth("dp_model", root)
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
    ns = run_cells(KIT.source(), root, params)
    seconds = time.monotonic() - t0
    base = hidden_scores(root, ns.checked["baseline_model"])
    dp = hidden_scores(root, ns.checked["dp_model"])
    return {
        "ordinary AUROC": base["auroc"],
        "ordinary attack": base["attack"],
        "DP AUROC": dp["auroc"],
        "DP attack": dp["attack"],
        "AUROC cost": base["auroc"] - dp["auroc"],
        "epsilon": float(ns.checked["epsilon_spent"]),
        "sigma": float(ns["optimiser"].noise_multiplier),
        "seconds": seconds,
    }


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return KIT.calibration_data(tmp_path_factory.mktemp("m9-data"))


@pytest.fixture(scope="module")
def reference(data_root) -> dict:
    return run_cells(KIT.source(), data_root, KIT.ci)


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
    graded = KIT.grade(tmp_path, data_root, {"honest": KIT.source(), "naive": KIT.variant(NAIVE)})
    honest, naive = graded["honest"], graded["naive"]
    KIT.assert_full_marks(honest)  # the reflection, graded by hand, has no score yet
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
def test_naive_notebook_fails_the_public_checks(data_root, tmp_path):
    run = KIT.papermill(KIT.variant(NAIVE), data_root / "public", tmp_path)
    # epsilon claimed as exactly 3.0 sits inside the range: only the grader's attack shows it
    assert run.verdicts == {
        "epsilon": "FAIL",
        "attack": "FAIL",
        "baseline_model": "PASS",
        "dp_model": "FAIL",
        "epsilon_spent": "PASS",
    }


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    KIT.calibrate_cli(
        "Calibrate lab m9 on hidden test patients.",
        lambda root, seed, args: calibrate(root, {"SEED": seed}),
    )


if __name__ == "__main__":
    main()
