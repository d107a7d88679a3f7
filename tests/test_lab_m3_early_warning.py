"""Lab m3-early-warning: the reference meets the hidden thresholds, naive answers fail.

The reference run under papermill is tests/test_notebooks.py's job. Here:

1. the reference solution and the naive answers (``NAIVE``) run in-process on a generated
   cohort and are scored against its *hidden* test outcomes, as the trusted scorer does;
2. a variant of the notebook with the naive answers in its solution cells runs under papermill
   with the CI parameters, and each public check it reaches prints ``FAIL``.

The module doubles as the lab's calibration script for instructors (it lives here, not in the
lab folder, because everything in a lab folder is released to trainees)::

    .venv/bin/python tests/test_lab_m3_early_warning.py --seeds 0 1 2 3 4 [--naive]

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
LAB = REPO / "labs" / "m3-early-warning"
NOTEBOOK = "m3-early-warning.ipynb"
N_PATIENTS = 10000  # the cohort size the thresholds were set at (courses/demo-course.yaml)
PLANTED = ("diabetes", "hypertension")
TOP_K = 8

# Naive answers, by the grade_id of the solution cell they replace. Each must fail its check.
NAIVE = {
    # a row-level split of the measurements: the same patients end up on both sides
    "split_answer": """
from sklearn.model_selection import train_test_split
train_rows = observations[observations["patient_id"].isin(patients.loc[patients["split"] == "train", "patient_id"])]
rows_fit, rows_dev = train_test_split(train_rows, test_size=0.2, random_state=0)
fit_ids = rows_fit["patient_id"].unique().tolist()
dev_ids = rows_dev["patient_id"].unique().tolist()
""",
    # age alone
    "model_answer": """
from sklearn.linear_model import LogisticRegression
model = LogisticRegression().fit(X.loc[fit_ids, ["age"]], y.loc[fit_ids])
def predict(ids):
    return model.predict_proba(X.loc[list(ids), ["age"]])
""",
    # "fix" the imbalance by re-weighting the classes, and ship that model
    "calibration_answer": """
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
reweighted = make_pipeline(SimpleImputer(add_indicator=True), StandardScaler(),
                           LogisticRegression(max_iter=MAX_ITER, class_weight="balanced"))
reweighted.fit(X.loc[fit_ids], y.loc[fit_ids])
def final_predict(ids):
    return reweighted.predict_proba(X.loc[list(ids)])
""",
    # the laboratory values a clinician would name first
    "drivers_answer": """
top_drivers = ["egfr", "acr", "hba1c", "sbp", "glucose", "cholesterol", "weight", "age"]
""",
}


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with equal-width bins (as the grader's ``ece`` metric)."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
            for b in range(bins)
            if (idx == b).any()
        )
    )


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
    from sklearn.metrics import roc_auc_score

    pub, hid = root / "public" / "ehr", root / "hidden" / "ehr"
    pts = pd.read_csv(pub / "patients.csv")
    y_train = pd.read_csv(pub / "outcomes_train.csv").set_index("patient_id")["ckd_5y"]
    y_test = pd.read_csv(hid / "outcomes_test.csv").set_index("patient_id")["ckd_5y"]
    dev = pts.loc[(pts["split"] == "train") & (pts["fold"] == 0), "patient_id"].tolist()
    test = pts.loc[pts["split"] == "test", "patient_id"].tolist()
    fit_ids, dev_ids = rec["no_leakage"]
    out: dict = {"disjoint": int(not set(fit_ids) & set(dev_ids))}
    out["acr_missing"] = rec["acr_missing"][0]
    for task in ("ckd_auroc", "ckd_calibration"):
        fn = rec[task][0]
        for name, ids, y in (("dev", dev, y_train), ("test", test, y_test)):
            p = np.asarray(fn(ids))[:, 1]
            truth = y.loc[ids].to_numpy()
            out[f"{task}:{name}"] = (
                float(roc_auc_score(truth, p)) if task == "ckd_auroc" else ece(p, truth)
            )
    names = list(rec["top_drivers"][0])
    out["top_drivers"] = sum(e in names[:TOP_K] for e in PLANTED) / len(PLANTED)
    out["ranks"] = [names.index(e) + 1 if e in names else None for e in PLANTED]
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, data_key):
    from medai.synthetic import generate

    root = tmp_path_factory.mktemp("m3-data")
    generate("ehr", root, n=N_PATIENTS, seed=0, secret=data_key)  # keyed, as on a hub
    header = (root / "public" / "ehr" / "patients.csv").read_text().splitlines()[0]
    assert "fold" in header, "the lab's development split needs the ehr generator's `fold` column"
    return root


@pytest.mark.slow
def test_reference_meets_hidden_thresholds_and_naive_does_not(data_root, monkeypatch):
    monkeypatch.setenv("MEDAI_DATA", str(data_root / "public"))
    params = ci_parameters(LAB, NOTEBOOK)
    ref = score(data_root, run_cells(params))
    assert ref["disjoint"] == 1
    assert ref["ckd_auroc:test"] >= 0.80, ref
    assert ref["ckd_calibration:test"] <= 0.05, ref
    assert ref["top_drivers"] == 1.0, ref

    naive = score(data_root, run_cells(params, NAIVE))
    assert naive["disjoint"] == 0
    assert naive["ckd_auroc:test"] < 0.80, naive
    assert naive["ckd_calibration:test"] > 0.05, naive
    assert naive["top_drivers"] < 1.0, naive
    assert naive["acr_missing"] == pytest.approx(ref["acr_missing"])  # an answer left as it was


@pytest.mark.slow
def test_naive_answers_fail_their_public_checks(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAI_DATA", str(data_root / "public"))
    verdicts = run_naive_notebook(tmp_path)
    for task in ("no_leakage", "ckd_auroc", "ckd_calibration", "top_drivers"):
        assert verdicts.get(task) == "FAIL", (task, verdicts)
    assert verdicts.get("acr_missing") == "PASS", verdicts  # the one answer left as it was


def run_naive_notebook(tmp_path: Path) -> dict[str, str]:
    """Run the notebook with ``NAIVE`` in its solution cells under papermill (CI parameters,
    every cell even after an error); return each check cell's verdict."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

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
    return verdicts(out)


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m3's reference (or naive answers).")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=N_PATIENTS)
    ap.add_argument("--data-root", help="existing data root per seed, e.g. /tmp/ehr{seed}")
    ap.add_argument("--naive", action="store_true", help="score the naive answers instead")
    args = ap.parse_args()
    from medai.autograder.testing import lab_data_key
    from medai.synthetic import generate

    for seed in args.seeds:
        if args.data_root:
            root = Path(args.data_root.format(seed=seed))
        else:
            root = Path(tempfile.mkdtemp(prefix=f"m3-{seed}-"))
            generate("ehr", root, n=args.n, seed=seed, secret=lab_data_key())
        os.environ["MEDAI_DATA"] = str(root / "public")
        figures = score(root, run_cells({"SEED": seed}, NAIVE if args.naive else None))
        shown = (f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        print(f"seed {seed}: " + ", ".join(shown))


if __name__ == "__main__":
    main()
