"""Lab M12 (fairness for under-resourced regions, trials of AI): reference right, naive not.

- The trial functions agree with independent implementations (Newcombe's interval from Wilson
  intervals written out, the closed-form sample size of Cohen's h) on inputs drawn the way the
  grader draws them, hidden cases included; the Wald interval, an unrounded NNS and a rule of
  thumb for the sample size score almost nothing against them.
- The audit equals plain counts of true and false positives by setting.
- The reference passes every public check; naive answers (today's coded-diagnosis rule as the
  policy, Wald intervals, a rule-of-thumb sample size) fail theirs (in-process, the real check).
- End to end: an honest and a naive submission graded by ``medai grade``'s pipeline in
  bubblewrap sandboxes, the policy scored on the whole register with the hidden true risks.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py). The module
doubles as the lab's calibration script (it lives here because a lab folder is released)::

    .venv/bin/python tests/test_lab_m12_fair_trial.py --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.testing.labkit import LabKit, generate, run_cells

KIT = LabKit.of("m12-fair-trial")
TASKS = KIT.tasks
N_PATIENTS = 10000  # the course's size (courses/demo-course.yaml); thresholds were set at it

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m12-fair-trial.yaml
# Screening policies (the whole policy cell), for the calibration table and the grader test
NAIVE_POLICIES = KIT.variants


def _functions(nb) -> dict:
    """The trial cells run in-process (no data); the checked functions."""
    ns: dict = {"SEED": 0}
    exec("import math\nimport numpy as np\nimport pandas as pd", ns)
    cells = {"trial_helper", "trial_answer", "trial_stats", "size_answer", "sample_size"}
    return run_cells(nb, only=cells, ns=ns).checked


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _independent(tid: str, case: dict):
    from scipy.stats import norm

    if tid == "trial_stats":  # Newcombe (1998), method 10: hybrid score from Wilson intervals
        k1, n1, k2, n2 = case["events_usual"], case["n_usual"], case["events_ai"], case["n_ai"]
        p1, p2 = k1 / n1, k2 / n2
        (l1, u1), (l2, u2) = _wilson(k1, n1), _wilson(k2, n2)
        d = p1 - p2
        low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
        return [d, low, high, math.ceil(1 / d) if d > 0 else None]
    h = 2 * math.asin(math.sqrt(case["p_usual"])) - 2 * math.asin(math.sqrt(case["p_ai"]))
    z = norm.ppf(0.975) + norm.ppf(case["power"])
    return math.ceil(2 * (z / h) ** 2)  # each arm: var(2 asin sqrt p) = 1 / n


@pytest.mark.parametrize("tid", ["trial_stats", "sample_size"])
def test_trial_functions_agree_with_independent_formulas_and_naive_ones_do_not(tid):
    cases = KIT.cases(tid, 60, seed=12)
    expected = KIT.outputs(lambda **c: _independent(tid, c), cases)
    ref = KIT.outputs(_functions(KIT.source())[tid], cases)
    assert KIT.score(tid, cases, expected, ref).fraction == 1.0
    naive = KIT.outputs(_functions(KIT.variant(NAIVE))[tid], cases)
    assert KIT.score(tid, cases, ref, naive).fraction <= 0.1


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate("ehr", tmp_path_factory.mktemp("m12data"), n=N_PATIENTS, seed=3)


@pytest.mark.slow
def test_audit_is_plain_counts_and_public_checks_pass_for_the_reference_only(data):
    import medai.autograder.lab as lab

    recorded: dict = {}
    real_check = lab.check

    def spy(task_id, value, *extra):  # the real public check, and keep what it was given
        recorded[task_id] = value
        return real_check(task_id, value, *extra)

    lab.check, saved = spy, lab.check
    try:
        verdicts = KIT.public_verdicts(KIT.source(), data)
    finally:
        lab.check = saved
    assert verdicts == dict.fromkeys(TASKS, "PASS")
    pub = data / "public" / "ehr"
    pts = pd.read_csv(pub / "patients.csv").set_index("patient_id")
    y = pd.read_csv(pub / "outcomes_train.csv").set_index("patient_id")["ckd_5y"]
    dx = pd.read_csv(pub / "diagnoses.csv")
    coded = set(dx.loc[dx["icd10"].isin(["E11", "I10"]), "patient_id"])
    invited = np.array([p in coded for p in y.index])
    rural = (pts.loc[y.index, "region"] != "urban").to_numpy()
    want = [
        [
            (invited & g & (y == 1)).sum() / (g & (y == 1)).sum(),
            (invited & g & (y == 0)).sum() / (g & (y == 0)).sum(),
        ]
        for g in (rural, ~rural)
    ]
    np.testing.assert_allclose(recorded["audit"], want, atol=1e-12)

    naive = KIT.variant({**NAIVE, **NAIVE_POLICIES["today's rule"]})
    verdicts = KIT.public_verdicts(naive, data)
    assert verdicts == {**dict.fromkeys(TASKS, "FAIL"), "audit": "PASS"}, verdicts


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    screening policy scored on every patient with the hidden true risks."""
    naive = KIT.variant({**NAIVE, **NAIVE_POLICIES["today's rule"]})
    graded = KIT.grade(tmp_path, data, {"honest": KIT.source(), "naive": naive})
    honest, naive = graded["honest"], graded["naive"]
    KIT.assert_full_marks(honest)
    KIT.assert_at_most(naive, dict.fromkeys(("fair_screen", "trial_stats", "sample_size"), 0.3))
    assert naive["tasks"]["audit"]["score"] == naive["tasks"]["audit"]["max"]  # left as it was
    assert "by group: rural TPR" in honest["tasks"]["fair_screen"]["message"]


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m12's reference and naive policies.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_PATIENTS)
    args = ap.parse_args()
    print("| seed | policy | equalised-odds difference | balanced accuracy |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        root = generate("ehr", Path(tempfile.mkdtemp(prefix=f"m12-{seed}-")), n=args.n, seed=seed)
        for name, answer in (("reference (mitigated)", None), *NAIVE_POLICIES.items()):
            s = KIT.hidden_model_scores(KIT.variant(answer), root, "fair_screen")
            print(
                f"| {seed} | {name} | {s['equalized_odds_difference']:.3f} | "
                f"{s['balanced_accuracy']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
