"""Lab m4-survival: the reference meets the hidden thresholds, naive answers fail.

The reference run under papermill is tests/test_notebooks.py's job. Here:

1. the reference solution and the naive answers (``NAIVE``) run in-process on a generated
   cohort and are scored against its *hidden* test outcomes, as the trusted scorer does;
2. a variant of the notebook with the naive answers in its solution cells runs under papermill
   with the CI parameters, and each public check that can catch them prints ``FAIL``.

The module doubles as the lab's calibration script for instructors (it lives here, not in the
lab folder, because everything in a lab folder is released to trainees)::

    .venv/bin/python tests/test_lab_m4_survival.py --seeds 0 1 2 3 4 [--naive]

Hidden splits are drawn with a data key, as on a hub: a fixed one, or
``MEDAI_TEST_DATA_KEY=<64 hex digits>`` (also for pytest) to check the thresholds under another.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from medai.autograder.testing import verdicts
from medai.site.notebooks import ci_parameters

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "labs" / "m4-survival"
NOTEBOOK = "m4-survival.ipynb"
N_PATIENTS = 10000  # the cohort size the thresholds were set at (the dataset's default)
TRUE_STATIN_HR = 0.70  # datasets/synthetic/survival.md
FIVE_YEARS = 1826  # days

# Naive answers, by the grade_id of the solution cell they replace. Each must fail its check.
NAIVE = {
    # ignore censoring: the share of patients without an event within five years
    "km_answer": """
km_5y = float(1 - ((train["event"] == 1) & (train["time_days"] <= FIVE_YEARS)).mean())
""",
    # the crude comparison: statin users against non-users, nothing else in the model
    "cox_answer": """
unadjusted = CoxPHFitter().fit(train[["statin", "time_days", "event"]], "time_days", "event")
statin_hr = float(np.exp(unadjusted.params_["statin"]))
""",
    # the same risk for everyone
    "risk_answer": """
def predict_risk(df):
    return np.ones(len(df))
""",
}


def run_cells(params: dict, naive: dict[str, str] | None = None) -> dict:
    """Execute the notebook's code cells in this process (solutions, or ``naive`` replacements)
    with ``check`` replaced by a recorder; return ``{task: (value, *extra)}``."""
    nb = nbformat.read(LAB / NOTEBOOK, as_version=4)
    recorded: dict = {}
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        src = (naive or {}).get(gid, cell.source)
        if gid == "parameters":
            src += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(src, gid or "cell", "exec"), ns)  # our own notebook
        ns["check"] = lambda task, value, *extra: recorded.__setitem__(task, (value, *extra))
    return recorded


def score(root: Path, rec: dict) -> dict:
    """What the trusted scorer would compute, on the dev fold and on the hidden test split."""
    from lifelines.utils import concordance_index

    train = pd.read_csv(root / "public" / "survival" / "train.csv")
    test = pd.read_csv(root / "public" / "survival" / "test.csv")
    hidden = pd.read_csv(root / "hidden" / "survival" / "test_outcomes.csv")
    hidden = hidden.set_index("patient_id").loc[test["patient_id"]]
    dev = train[train["fold"] == 0]
    hr = float(rec["statin_hr"][0])
    out: dict = {"km_5y": float(rec["km_5y"][0]), "statin_hr": hr}
    out["hr_within_20pct"] = int(abs(hr - TRUE_STATIN_HR) <= 0.2 * TRUE_STATIN_HR)
    fn = rec["cv_risk"][0]
    # concordance_index wants a score that is higher for *longer* survival: negate the risk
    out["c_index:dev"] = concordance_index(dev["time_days"], -np.asarray(fn(dev)), dev["event"])
    out["c_index:test"] = concordance_index(
        hidden["time_days"], -np.asarray(fn(test)), hidden["event"]
    )
    out["c_index:true_lp"] = concordance_index(
        hidden["time_days"], -hidden["linear_predictor"], hidden["event"]
    )
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, data_key):
    from medai.synthetic import generate

    root = tmp_path_factory.mktemp("m4-data")
    generate("survival", root, n=N_PATIENTS, seed=0, secret=data_key)  # keyed, as on a hub
    header = (root / "public" / "survival" / "train.csv").read_text().splitlines()[0]
    assert "fold" in header, (
        "the lab's development split needs the survival generator's `fold` column"
    )
    return root


@pytest.mark.slow
def test_reference_meets_hidden_thresholds_and_naive_does_not(data_root, monkeypatch):
    from lifelines import KaplanMeierFitter

    monkeypatch.setenv("MEDAI_DATA", str(data_root / "public"))
    params = ci_parameters(LAB, NOTEBOOK)
    ref = score(data_root, run_cells(params))
    assert ref["c_index:test"] >= 0.70, ref
    assert ref["hr_within_20pct"] == 1, ref
    # the hand-made Kaplan-Meier estimate is lifelines' estimate
    train = pd.read_csv(data_root / "public" / "survival" / "train.csv")
    km = KaplanMeierFitter().fit(train["time_days"], train["event"]).predict(FIVE_YEARS)
    assert ref["km_5y"] == pytest.approx(km, abs=1e-9)

    naive = score(data_root, run_cells(params, NAIVE))
    assert naive["c_index:test"] <= 0.60, naive  # no marks at all
    assert naive["hr_within_20pct"] == 0, naive
    assert naive["statin_hr"] > 1.0, naive  # confounding by indication flips the direction
    assert abs(naive["km_5y"] - ref["km_5y"]) > 1.0e-4, naive  # outside the value tolerance


@pytest.mark.slow
def test_naive_answers_fail_their_public_checks(data_root, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("MEDAI_DATA", str(data_root / "public"))
    work = tmp_path / "lab"
    work.mkdir()
    (work / "tasks.yaml").write_text((LAB / "tasks.yaml").read_text())
    nb = nbformat.read(LAB / NOTEBOOK, as_version=4)
    replaced = set()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in NAIVE:
            cell.source = NAIVE[gid]
            replaced.add(gid)
    assert replaced == set(NAIVE), "a naive answer names a cell the notebook lacks"
    nbformat.write(nb, work / NOTEBOOK)
    out = work / "executed.ipynb"
    with pytest.raises(PapermillExecutionError):  # a failed public check raises CheckFailed
        pm.execute_notebook(
            str(work / NOTEBOOK),
            str(out),
            parameters=ci_parameters(LAB, NOTEBOOK),
            kernel_name="python3",
            cwd=str(work),
            progress_bar=False,
            allow_errors=True,  # run every cell, so that each check reports
            execution_timeout=90,
        )
    found = verdicts(out)
    for task in ("statin_hr", "cv_risk"):
        assert found.get(task) == "FAIL", (task, found)
    # a value task's public check looks at the form only: ignoring censoring is caught when
    # graded against the reference (asserted in the test above)
    assert found.get("km_5y") == "PASS", found


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m4's reference (or naive answers).")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=N_PATIENTS)
    ap.add_argument("--data-root", help="existing data root per seed, e.g. /tmp/surv{seed}")
    ap.add_argument("--naive", action="store_true", help="score the naive answers instead")
    args = ap.parse_args()
    from medai.autograder.testing import lab_data_key
    from medai.synthetic import generate

    for seed in args.seeds:
        if args.data_root:
            root = Path(args.data_root.format(seed=seed))
        else:
            root = Path(tempfile.mkdtemp(prefix=f"m4-{seed}-"))
            generate("survival", root, n=args.n, seed=seed, secret=lab_data_key())
        os.environ["MEDAI_DATA"] = str(root / "public")
        figures = score(root, run_cells({"SEED": seed}, NAIVE if args.naive else None))
        shown = (f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        print(f"seed {seed}: " + ", ".join(shown))


if __name__ == "__main__":
    main()
