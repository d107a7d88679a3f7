"""Lab m4-survival (statins and cardiovascular events): the reference meets the hidden
thresholds, naive answers (``NAIVE``: censoring ignored, the crude hazard ratio, one risk for
everyone) fail.

In-process on a keyed cohort, both are scored against the hidden test outcomes the way the trusted
scorer scores them; under papermill with the CI parameters, each public check that can catch a
naive answer prints ``FAIL``. (The reference's own papermill run is tests/test_notebooks.py's.)

For instructors this module is the lab's calibration script, too
(:func:`medai.testing.labkit.calibrate_cli`)::

    .venv/bin/python tests/test_lab_m4_survival.py --seeds 0 1 2 3 4 [--naive]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.testing.labkit import LabKit, Run

KIT = LabKit.of("m4-survival")
TRUE_STATIN_HR = 0.70  # datasets/synthetic/survival.md
FIVE_YEARS = 1826  # days

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m4-survival.yaml


def run_cells(root: Path, params: dict, naive: dict[str, str] | None = None) -> Run:
    """Execute the notebook's code cells in this process on the public data of ``root``
    (solutions, or ``naive`` replacements) with ``check`` replaced by a recorder."""
    return KIT.run(KIT.variant(naive), params, data=root)


def score(root: Path, rec: Run) -> dict:
    """What the trusted scorer would compute, on the dev fold and on the hidden test split."""
    from lifelines.utils import concordance_index

    train = pd.read_csv(root / "public" / "survival" / "train.csv")
    test = pd.read_csv(root / "public" / "survival" / "test.csv")
    hidden = pd.read_csv(root / "hidden" / "survival" / "test_outcomes.csv")
    hidden = hidden.set_index("patient_id").loc[test["patient_id"]]
    dev = train[train["fold"] == 0]
    hr = float(rec.checked["statin_hr"])
    out: dict = {"km_5y": float(rec.checked["km_5y"]), "statin_hr": hr}
    out["hr_within_20pct"] = int(abs(hr - TRUE_STATIN_HR) <= 0.2 * TRUE_STATIN_HR)
    fn = rec.checked["cv_risk"]
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
    root = KIT.calibration_data(tmp_path_factory.mktemp("m4-data"), secret=data_key)  # keyed
    header = (root / "public" / "survival" / "train.csv").read_text().splitlines()[0]
    assert "fold" in header, (
        "the lab's development split needs the survival generator's `fold` column"
    )
    return root


@pytest.mark.slow
def test_reference_meets_hidden_thresholds_and_naive_does_not(data_root):
    from lifelines import KaplanMeierFitter

    ref = score(data_root, run_cells(data_root, KIT.ci))
    assert ref["c_index:test"] >= 0.70, ref
    assert ref["hr_within_20pct"] == 1, ref
    # the hand-made Kaplan-Meier estimate is lifelines' estimate
    train = pd.read_csv(data_root / "public" / "survival" / "train.csv")
    km = KaplanMeierFitter().fit(train["time_days"], train["event"]).predict(FIVE_YEARS)
    assert ref["km_5y"] == pytest.approx(km, abs=1e-9)

    naive = score(data_root, run_cells(data_root, KIT.ci, NAIVE))
    assert naive["c_index:test"] <= 0.60, naive  # no marks at all
    assert naive["hr_within_20pct"] == 0, naive
    assert naive["statin_hr"] > 1.0, naive  # confounding by indication flips the direction
    assert abs(naive["km_5y"] - ref["km_5y"]) > 1.0e-4, naive  # outside the value tolerance


@pytest.mark.slow
def test_naive_answers_fail_their_public_checks(data_root, tmp_path):
    found = KIT.papermill(KIT.variant(NAIVE), data_root / "public", tmp_path).verdicts
    for task in ("statin_hr", "cv_risk"):
        assert found.get(task) == "FAIL", (task, found)
    # a value task's public check looks at the form only: ignoring censoring is caught when
    # graded against the reference (asserted in the test above)
    assert found.get("km_5y") == "PASS", found


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    def figures(root: Path, seed: int, args) -> dict:
        return score(root, run_cells(root, {"SEED": seed}, args.answers))

    KIT.calibrate_cli("Score lab m4's reference (or naive answers).", figures, naive=True)


if __name__ == "__main__":
    main()
