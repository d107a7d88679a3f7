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
import contextlib
import io
import math
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from medai.autograder import plain
from medai.autograder.batch import _draw, hidden_cases
from medai.autograder.scoring import score_function
from medai.autograder.tasks import load_tasks
from medai.autograder.testing import hidden_model_scores, public_verdicts, with_answers

LAB = Path(__file__).resolve().parent.parent / "labs" / "m12-fair-trial"
NB = LAB / "m12-fair-trial.ipynb"
TASKS = load_tasks(LAB / "tasks.yaml")
N_PATIENTS = 10000  # the course's size (courses/demo-course.yaml); thresholds were set at it

NAIVE = {
    "trial_answer": (  # the Wald interval and an unrounded NNS
        "    p1, p2 = events_usual / n_usual, events_ai / n_ai\n"
        "    arr = p1 - p2\n"
        "    se = math.sqrt(p1 * (1 - p1) / n_usual + p2 * (1 - p2) / n_ai)\n"
        "    return [arr, arr - 1.96 * se, arr + 1.96 * se, 1 / arr if arr > 0 else None]\n"
    ),
    "size_answer": (  # Lehr's rule of thumb: 16 p (1 - p) / d^2, whatever the power
        "    p = (p_usual + p_ai) / 2\n"
        "    return math.ceil(16 * p * (1 - p) / (p_usual - p_ai) ** 2)\n"
    ),
}
# Screening policies for the calibration table and the grader test: the whole policy cell.
_IMPORTS = (
    "import numpy as np\n"
    "from sklearn.impute import SimpleImputer\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.metrics import balanced_accuracy_score\n"
    "from sklearn.pipeline import make_pipeline\n"
    "from sklearn.preprocessing import StandardScaler\n"
)
NAIVE_POLICIES = {
    "today's rule": "def predict(ids):\n    return rule.loc[list(ids)].to_numpy()\n",
    "codes-only model": _IMPORTS
    + (
        "codes = [c for c in ('age', 'male', 'dx_E11', 'dx_I10', 'dx_E78', 'dx_E66') if c in X]\n"
        "coded = LogisticRegression(max_iter=2000).fit(X.loc[train_ids, codes], y)\n"
        "r = coded.predict_proba(X.loc[train_ids, codes])[:, 1]\n"
        "cut = max(np.linspace(0.02, 0.6, 117), key=lambda t: balanced_accuracy_score(y, r >= t))\n"
        "def predict(ids):\n"
        "    return (coded.predict_proba(X.loc[list(ids), codes])[:, 1] >= cut).astype(int)\n"
    ),
    # the reference's model and threshold, without ThresholdOptimizer
    "unmitigated model": _IMPORTS
    + (
        "model = make_pipeline(SimpleImputer(strategy='median', add_indicator=True),\n"
        "                      StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))\n"
        "model.fit(X.loc[train_ids, FEATURES], y)\n"
        "r = model.predict_proba(X.loc[train_ids, FEATURES])[:, 1]\n"
        "best = max(np.linspace(0.02, 0.6, 117), key=lambda t: balanced_accuracy_score(y, r >= t))\n"
        "def predict(ids):\n"
        "    return (model.predict_proba(X.loc[list(ids), FEATURES])[:, 1] >= best).astype(int)\n"
    ),
}


def _swap_policy(nb: nbformat.NotebookNode, policy: str) -> nbformat.NotebookNode:
    """``nb`` with its whole policy cell replaced by ``policy`` (a cell of two solution
    regions, the model and predict's body, is easiest replaced as a whole)."""
    cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "policy_answer")
    cell.source = policy
    return nb


def _functions(nb: nbformat.NotebookNode) -> dict:
    """The trial cells run in-process (no data); the checked functions."""
    captured: dict = {}
    ns: dict = {"check": lambda tid, fn, *extra: captured.__setitem__(tid, fn), "SEED": 0}
    exec("import math\nimport numpy as np\nimport pandas as pd", ns)
    cells = {"trial_helper", "trial_answer", "trial_stats", "size_answer", "sample_size"}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") in cells:
                exec(cell.source, ns)
    return captured


def _cases(tid: str, n: int = 60) -> list[dict]:
    rng = np.random.default_rng([12, len(tid)])
    task = TASKS.tasks[tid]
    cell = next(
        c
        for c in nbformat.read(NB, as_version=4).cells
        if c.metadata["nbgrader"]["grade_id"] == tid
    )
    return (
        [{k: _draw(s, rng) for k, s in task.args.items()} for _ in range(n)]
        + hidden_cases(cell.source)
        + [ex.args for ex in task.examples]
    )


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


def _results(fn, cases: list[dict]) -> list:
    return [plain.decode(plain.encode(fn(**c))) for c in cases]


@pytest.mark.parametrize("tid", ["trial_stats", "sample_size"])
def test_trial_functions_agree_with_independent_formulas_and_naive_ones_do_not(tid):
    cases = _cases(tid)
    task = TASKS.tasks[tid]
    expected = [plain.decode(plain.encode(_independent(tid, c))) for c in cases]
    ref = _results(_functions(nbformat.read(NB, as_version=4))[tid], cases)
    assert score_function(task, cases, expected, ref).fraction == 1.0
    naive = _results(_functions(with_answers(NB, NAIVE))[tid], cases)
    assert score_function(task, cases, ref, naive).fraction <= 0.1


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from medai.synthetic.core import generate

    root = tmp_path_factory.mktemp("m12data")
    generate("ehr", root, n=N_PATIENTS, seed=3)
    return root


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
        verdicts = public_verdicts(nbformat.read(NB, as_version=4), LAB, data)
    finally:
        lab.check = saved
    assert verdicts == dict.fromkeys(TASKS.tasks, "PASS")
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

    naive = with_answers(NB, NAIVE)
    naive = _swap_policy(naive, NAIVE_POLICIES["today's rule"])
    verdicts = public_verdicts(naive, LAB, data)
    assert verdicts == {**dict.fromkeys(TASKS.tasks, "FAIL"), "audit": "PASS"}, verdicts


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    screening policy scored on every patient with the hidden true risks."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    course = make_course(tmp_path / "course", LAB, "m12-fair-trial")
    release = nbformat.read(course / "release/m12-fair-trial/m12-fair-trial.ipynb", as_version=4)
    name = "m12-fair-trial.ipynb"
    naive = _swap_policy(with_answers(NB, NAIVE), NAIVE_POLICIES["today's rule"])
    submit(
        course, "m12-fair-trial", "honest", {name: solved(release, nbformat.read(NB, as_version=4))}
    )
    submit(course, "m12-fair-trial", "naive", {name: solved(release, naive)})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 150, "cpu_s": 100, "memory_mb": 2048, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m12-fair-trial",
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
    for tid in ("fair_screen", "trial_stats", "sample_size"):
        assert naive["tasks"][tid]["score"] <= 0.3 * naive["tasks"][tid]["max"], naive["tasks"][tid]
    assert naive["tasks"]["audit"]["score"] == naive["tasks"]["audit"]["max"]  # left as it was
    assert "by group: rural TPR" in honest["tasks"]["fair_screen"]["message"]


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m12's reference and naive policies.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_PATIENTS)
    args = ap.parse_args()
    from medai.synthetic.core import generate

    print("| seed | policy | equalised-odds difference | balanced accuracy |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        root = Path(tempfile.mkdtemp(prefix=f"m12-{seed}-"))
        generate("ehr", root, n=args.n, seed=seed)
        for name, answer in (("reference (mitigated)", None), *NAIVE_POLICIES.items()):
            nb = nbformat.read(NB, as_version=4)
            nb = nb if answer is None else _swap_policy(nb, answer)
            s = hidden_model_scores(nb, root, LAB, "fair_screen")
            print(
                f"| {seed} | {name} | {s['equalized_odds_difference']:.3f} | "
                f"{s['balanced_accuracy']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
