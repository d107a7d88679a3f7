"""Lab m3-early-warning (kidney disease within five years): the reference meets the hidden
thresholds, naive answers (``NAIVE``: a row-level split, age alone, a re-weighted model, the
laboratory values a clinician would name) fail.

Both run in-process on a keyed cohort and are scored on its hidden test outcomes as the trusted
scorer scores them; under papermill with the CI parameters, every public check the naive notebook
reaches prints ``FAIL``. (The reference under papermill: tests/test_notebooks.py.)

Also the lab's calibration script (:func:`medai.testing.labkit.calibrate_cli`)::

    .venv/bin/python tests/test_lab_m3_early_warning.py --seeds 0 1 2 3 4 [--naive]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.testing.labkit import LabKit, Run

KIT = LabKit.of("m3-early-warning")
PLANTED = ("diabetes", "hypertension")
TOP_K = 8

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m3-early-warning.yaml


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


def run_cells(root: Path, params: dict, naive: dict[str, str] | None = None) -> Run:
    """Execute the notebook's code cells in this process on the public data of ``root``
    (solutions, or ``naive`` replacements) with ``check`` replaced by a recorder."""
    return KIT.run(KIT.variant(naive), params, data=root)


def score(root: Path, rec: Run) -> dict:
    """What the trusted scorer would compute, on the dev fold and on the hidden test split."""
    from sklearn.metrics import roc_auc_score

    pub, hid = root / "public" / "ehr", root / "hidden" / "ehr"
    pts = pd.read_csv(pub / "patients.csv")
    y_train = pd.read_csv(pub / "outcomes_train.csv").set_index("patient_id")["ckd_5y"]
    y_test = pd.read_csv(hid / "outcomes_test.csv").set_index("patient_id")["ckd_5y"]
    dev = pts.loc[(pts["split"] == "train") & (pts["fold"] == 0), "patient_id"].tolist()
    test = pts.loc[pts["split"] == "test", "patient_id"].tolist()
    fit_ids, dev_ids = rec.args("no_leakage")
    out: dict = {"disjoint": int(not set(fit_ids) & set(dev_ids))}
    out["acr_missing"] = rec.checked["acr_missing"]
    for task in ("ckd_auroc", "ckd_calibration"):
        fn = rec.checked[task]
        for name, ids, y in (("dev", dev, y_train), ("test", test, y_test)):
            p = np.asarray(fn(ids))[:, 1]
            truth = y.loc[ids].to_numpy()
            out[f"{task}:{name}"] = (
                float(roc_auc_score(truth, p)) if task == "ckd_auroc" else ece(p, truth)
            )
    names = list(rec.checked["top_drivers"])
    out["top_drivers"] = sum(e in names[:TOP_K] for e in PLANTED) / len(PLANTED)
    out["ranks"] = [names.index(e) + 1 if e in names else None for e in PLANTED]
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, data_key):
    root = KIT.calibration_data(tmp_path_factory.mktemp("m3-data"), secret=data_key)  # keyed
    header = (root / "public" / "ehr" / "patients.csv").read_text().splitlines()[0]
    assert "fold" in header, "the lab's development split needs the ehr generator's `fold` column"
    return root


@pytest.mark.slow
def test_reference_meets_hidden_thresholds_and_naive_does_not(data_root):
    ref = score(data_root, run_cells(data_root, KIT.ci))
    assert ref["disjoint"] == 1
    assert ref["ckd_auroc:test"] >= 0.80, ref
    assert ref["ckd_calibration:test"] <= 0.05, ref
    assert ref["top_drivers"] == 1.0, ref

    naive = score(data_root, run_cells(data_root, KIT.ci, NAIVE))
    assert naive["disjoint"] == 0
    assert naive["ckd_auroc:test"] < 0.80, naive
    assert naive["ckd_calibration:test"] > 0.05, naive
    assert naive["top_drivers"] < 1.0, naive
    assert naive["acr_missing"] == pytest.approx(ref["acr_missing"])  # an answer left as it was


@pytest.mark.slow
def test_naive_answers_fail_their_public_checks(data_root, tmp_path):
    verdicts = KIT.papermill(KIT.variant(NAIVE), data_root / "public", tmp_path).verdicts
    for task in ("no_leakage", "ckd_auroc", "ckd_calibration", "top_drivers"):
        assert verdicts.get(task) == "FAIL", (task, verdicts)
    assert verdicts.get("acr_missing") == "PASS", verdicts  # the one answer left as it was


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    def figures(root: Path, seed: int, args) -> dict:
        return score(root, run_cells(root, {"SEED": seed}, args.answers))

    KIT.calibrate_cli("Score lab m3's reference (or naive answers).", figures, naive=True)


if __name__ == "__main__":
    main()
