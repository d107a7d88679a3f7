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

import numpy as np
import pytest

from medai.testing.labkit import LabKit, generate, run_cells

KIT = LabKit.of("m2-evaluation")

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m2-evaluation.yaml
CHECK_CELLS = {"sens_spec", "ppv_npv", "auroc", "ece", "bootstrap"}


def _functions(nb) -> dict:
    """Run the setup-free cells in-process; return the function each check cell passes."""
    ns: dict = {}
    exec("import numpy as np\nfrom sklearn.metrics import roc_auc_score\nSEED = 0", ns)
    run = run_cells(nb, skip={"parameters", "setup", "apply", "curves"}, ns=ns)
    assert set(run.checked) == set(KIT.tasks)
    return {**run.checked, "ns": run.ns}


def _cases(tid: str) -> list[dict]:
    """Inputs as the grader draws them (its own draw function), hidden cases and examples."""
    return KIT.cases(tid, 40, seed=7)


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


@pytest.fixture(scope="module")
def reference():
    return _functions(KIT.source())


@pytest.fixture(scope="module")
def naive():
    return _functions(KIT.variant(NAIVE))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate("ehr", tmp_path_factory.mktemp("m2data"), n=1000, seed=0)


@pytest.mark.parametrize("tid", sorted(CHECK_CELLS))
def test_reference_agrees_with_independent_implementations(reference, tid):
    cases = _cases(tid)
    expected = KIT.outputs(lambda **c: _independent(tid, c, reference["ns"]), cases)
    score = KIT.score(tid, cases, expected, KIT.outputs(reference[tid], cases))
    assert score.fraction == 1.0, score.message


@pytest.mark.parametrize("tid", sorted(CHECK_CELLS))
def test_naive_answers_score_low_against_the_reference(reference, naive, tid):
    cases = _cases(tid)
    score = KIT.score(
        tid, cases, KIT.outputs(reference[tid], cases), KIT.outputs(naive[tid], cases)
    )
    assert score.fraction <= 0.1, score.message


def test_tie_blind_auroc_loses_the_tied_cases(reference):
    strict = (
        "    y, s = np.asarray(y_true).astype(bool), np.asarray(scores)\n"
        "    return float(np.mean(s[y][:, None] > s[~y][None, :]))  # ties count 0\n"
    )
    naive = _functions(KIT.variant({"auroc_answer": strict}))
    cases = [c for c in _cases("auroc") if c["ties"]]
    score = KIT.score(
        "auroc", cases, KIT.outputs(reference["auroc"], cases), KIT.outputs(naive["auroc"], cases)
    )
    assert score.fraction == 0.0, score.message


@pytest.mark.slow
def test_naive_notebook_fails_every_public_check(data, tmp_path):
    run = KIT.papermill(KIT.variant(NAIVE), data / "public", tmp_path)
    assert run.verdicts == dict.fromkeys(CHECK_CELLS, "FAIL")  # and no check passes


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox."""
    graded = KIT.grade(tmp_path, data, {"honest": KIT.source(), "naive": KIT.variant(NAIVE)})
    KIT.assert_full_marks(graded["honest"])
    KIT.assert_at_most(graded["naive"], dict.fromkeys(CHECK_CELLS, 0.25))
