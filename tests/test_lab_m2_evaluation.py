"""Lab M2 (evaluating diagnostic models): the reference is right, naive answers fail.

- The reference functions agree with independent implementations (scikit-learn, NumPy
  histograms, vectorised resampling) on inputs drawn the way the grader draws them, the hidden
  cases and the public worked examples included — so the expected values are not the reference
  echoing itself.
- Naive answers (accuracy for sensitivity, ignoring prevalence, ...) score almost nothing when the
  grader's scorer compares them with the reference, and fail the public checks under papermill.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from medai.autograder import plain
from medai.autograder.batch import _draw, hidden_cases
from medai.autograder.scoring import score_function
from medai.autograder.tasks import load_tasks
from medai.autograder.testing import SOLUTION_REGION

LAB = Path(__file__).resolve().parent.parent / "labs" / "m2-evaluation"
NB = LAB / "m2-evaluation.ipynb"
TASKS = load_tasks(LAB / "tasks.yaml")

# What a trainee who has not understood the lesson might write, per answer cell.
NAIVE = {
    "sens_spec_answer": (
        "    acc = float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))\n"
        "    return acc, acc  # accuracy twice\n"
    ),
    "ppv_npv_answer": "    return sensitivity, specificity  # prevalence ignored\n",
    "auroc_answer": (
        "    y, s = np.asarray(y_true), np.asarray(scores)\n"
        "    return float(np.mean((s >= 0.5) == y))  # accuracy at 0.5\n"
    ),
    "ece_answer": (
        "    return float(abs(np.mean(y_true) - np.mean(probs)))  # calibration-in-the-large\n"
    ),
    "bootstrap_answer": (
        "    y, s = np.asarray(y_true), np.asarray(scores)\n"
        "    m = metric(y, s)\n"
        "    se = np.sqrt(m * (1 - m) / max(int(y.sum()), 1))\n"
        "    return float(m - 1.96 * se), float(m + 1.96 * se)  # normal approximation\n"
    ),
}
CHECK_CELLS = {"sens_spec", "ppv_npv", "auroc", "ece", "bootstrap"}


def _variant(nb: nbformat.NotebookNode, replace: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in replace:
            new, n = SOLUTION_REGION.subn(lambda _m, code=replace[gid]: code, cell.source)
            assert n == 1, f"cell {gid} has no solution region"
            cell.source = new
    return nb


def _functions(nb: nbformat.NotebookNode) -> dict:
    """Run the setup-free cells in-process; return the function each check cell passes."""
    captured: dict = {}
    ns: dict = {"check": lambda tid, fn, *extra: captured.__setitem__(tid, fn)}
    exec("import numpy as np\nfrom sklearn.metrics import roc_auc_score\nSEED = 0", ns)
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "code" and gid not in {"parameters", "setup", "apply", "curves"}:
                exec(cell.source, ns)
    assert set(captured) == set(TASKS.tasks)
    return {**captured, "ns": ns}


def _cases(tid: str, n: int = 40) -> list[dict]:
    """Inputs as the grader draws them (its own draw function), hidden cases and examples."""
    rng = np.random.default_rng([7, len(tid)])
    task = TASKS.tasks[tid]
    cases = [{k: _draw(s, rng) for k, s in task.args.items()} for _ in range(n)]
    cell = next(
        c
        for c in nbformat.read(NB, as_version=4).cells
        if c.metadata["nbgrader"]["grade_id"] == tid
    )
    return cases + hidden_cases(cell.source) + [ex.args for ex in task.examples]


def _independent(tid: str, case: dict, ns: dict):
    from sklearn.metrics import recall_score, roc_auc_score

    if tid == "sens_spec":
        y, p = ns["simulated_predictions"](case["seed"], case["n"], case["prevalence"])
        return recall_score(y, p, pos_label=1), recall_score(y, p, pos_label=0)
    if tid == "ppv_npv":  # count a large population instead of using the formula
        n = 10_000_000
        ill = round(n * case["prevalence"])
        tp, tn = case["sensitivity"] * ill, case["specificity"] * (n - ill)
        return tp / (tp + (n - ill) - tn), tn / (tn + ill - tp)
    if tid == "auroc":
        return roc_auc_score(*ns["simulated_scores"](**case))
    y, s = ns["simulated_scores"](case["seed"], case["n"], case.get("prevalence", 0.3))
    if tid == "ece":
        edges = np.linspace(0, 1, case["n_bins"] + 1)
        count, _ = np.histogram(s, edges)
        events, _ = np.histogram(s, edges, weights=y)
        prob, _ = np.histogram(s, edges, weights=s)
        used = count > 0
        return float(np.sum(np.abs(events[used] - prob[used])) / len(s))
    # bootstrap: all resamples drawn at once, then the one-class ones dropped
    idx = np.random.default_rng(case["seed"]).integers(0, len(y), size=(case["n_boot"], len(y)))
    keep = [i for i in idx if 0 < y[i].sum() < len(y)]
    stats = [ns["sensitivity_at_half"](y[i], s[i]) for i in keep]
    return tuple(np.percentile(stats, [2.5, 97.5]))


def _results(fn, cases: list[dict]) -> list:
    return [plain.decode(plain.encode(fn(**c))) for c in cases]


@pytest.fixture(scope="module")
def reference():
    return _functions(nbformat.read(NB, as_version=4))


@pytest.fixture(scope="module")
def naive():
    return _functions(_variant(nbformat.read(NB, as_version=4), NAIVE))


@pytest.mark.parametrize("tid", sorted(CHECK_CELLS))
def test_reference_agrees_with_independent_implementations(reference, tid):
    cases = _cases(tid)
    expected = [plain.decode(plain.encode(_independent(tid, c, reference["ns"]))) for c in cases]
    got = _results(reference[tid], cases)
    score = score_function(TASKS.tasks[tid], cases, expected, got)
    assert score.fraction == 1.0, score.message


@pytest.mark.parametrize("tid", sorted(CHECK_CELLS))
def test_naive_answers_score_low_against_the_reference(reference, naive, tid):
    cases = _cases(tid)
    score = score_function(
        TASKS.tasks[tid], cases, _results(reference[tid], cases), _results(naive[tid], cases)
    )
    assert score.fraction <= 0.1, score.message


def test_tie_blind_auroc_loses_the_tied_cases(reference):
    strict = (
        "    y, s = np.asarray(y_true).astype(bool), np.asarray(scores)\n"
        "    return float(np.mean(s[y][:, None] > s[~y][None, :]))  # ties count 0\n"
    )
    naive = _functions(_variant(nbformat.read(NB, as_version=4), {"auroc_answer": strict}))
    cases = [c for c in _cases("auroc") if c["ties"]]
    score = score_function(
        TASKS.tasks["auroc"],
        cases,
        _results(reference["auroc"], cases),
        _results(naive["auroc"], cases),
    )
    assert score.fraction == 0.0, score.message


@pytest.mark.slow
def test_naive_notebook_fails_every_public_check(tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from medai.synthetic.core import generate

    generate("ehr", tmp_path / "data", n=1000, seed=0)
    monkeypatch.setenv("MEDAI_DATA", str(tmp_path / "data" / "public"))
    src = tmp_path / "naive.ipynb"
    nbformat.write(_variant(nbformat.read(NB, as_version=4), NAIVE), src)
    (tmp_path / "tasks.yaml").write_text((LAB / "tasks.yaml").read_text())
    out = tmp_path / "out.ipynb"
    params = yaml.safe_load((LAB / "ci.yaml").read_text())
    with pytest.raises(PapermillExecutionError):  # raised after all cells ran (allow_errors)
        pm.execute_notebook(
            str(src),
            str(out),
            parameters=params,
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
            allow_errors=True,
            execution_timeout=60,
        )
    failed, passed = set(), set()
    for cell in nbformat.read(out, as_version=4).cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error" and o["ename"] == "CheckFailed":
                failed |= set(re.findall(r"FAIL \[([^\]]+)\]", o["evalue"]))
            if o.get("output_type") == "stream":
                passed |= set(re.findall(r"PASS \[([^\]]+)\]", o["text"]))
    assert failed == CHECK_CELLS
    assert not passed


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit
    from medai.synthetic.core import generate

    generate("ehr", tmp_path / "data", n=1000, seed=0)
    course = make_course(tmp_path / "course", LAB, "m2-evaluation")
    release = nbformat.read(course / "release/m2-evaluation/m2-evaluation.ipynb", as_version=4)
    source = nbformat.read(NB, as_version=4)
    name = "m2-evaluation.ipynb"
    submit(course, "m2-evaluation", "honest", {name: solved(release, source)})
    submit(course, "m2-evaluation", "naive", {name: solved(release, _variant(source, NAIVE))})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 60, "cpu_s": 50, "memory_mb": 2048, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m2-evaluation",
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=tmp_path / "data",
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid in CHECK_CELLS:
        assert honest["tasks"][tid]["score"] == honest["tasks"][tid]["max"], honest["tasks"][tid]
        assert naive["tasks"][tid]["score"] <= 0.25 * naive["tasks"][tid]["max"], naive["tasks"][
            tid
        ]
