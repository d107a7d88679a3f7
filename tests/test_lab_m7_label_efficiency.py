"""Lab m7-label-efficiency: self-training and active learning beat their naive versions.

The reference run under papermill is tests/test_notebooks.py's job. Here:

1. the real grader (nbgrader release, bubblewrap sandbox, the clinician served from the hidden
   pool labels outside the sandbox) gives the reference full marks and two naive answers less:
   no self-training (the 40-label model) and asking the clinician about 60 people at random;
2. a notebook with those naive answers fails both public checks under papermill;
3. the reference's ``uncertainty`` is the least-margin score.

The module doubles as the lab's calibration script (it lives here, not in the lab folder,
because everything in a lab folder is released to trainees). It runs the notebook's cells
in-process with the clinician answering from the *graded* pool's hidden labels, exactly the
answers the grader serves, and scores on the hidden test people::

    .venv/bin/python tests/test_lab_m7_label_efficiency.py --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medai.testing.labkit import LabKit, Run

KIT = LabKit.of("m7-label-efficiency")
TASKS = KIT.tasks

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m7-label-efficiency.yaml


def variant(answers: dict[str, str] | None = None, draw: int = 1):
    answers = {gid: code.replace("{draw}", str(draw)) for gid, code in (answers or {}).items()}
    return KIT.variant(answers)


# --------------------------------------------------------------------------- in-process scoring


def run_graded(nb, root: Path, params: dict) -> tuple[Run, dict]:
    """Run the notebook's code cells in this process as the grader would see them: the clinician
    answers about the graded pool from its hidden labels (the grader's own OracleServer), and
    ``check`` records the predict functions. Returns the run and the clinician's usage."""
    from medai.autograder import lab as lab_mod
    from medai.autograder.modeldata import load_source
    from medai.autograder.oracle import OracleServer

    task = TASKS["active_model"]
    server = OracleServer({"active_model": KIT.oracle_pool("active_model", root)})
    pool = load_source(task.oracle.graded.inputs, root / "public" / "label_scarce")

    def graded_clinician(task_id: str):
        return lab_mod.Clinician(
            task_id,
            task.oracle.budget,
            pool.value,
            pool.ids,
            lambda ids: server.answer({"task": task_id, "ids": ids}),
        )

    clinician = {"clinician": graded_clinician}
    run = KIT.run(nb, params, data=root, skip={"explore"}, inject=clinician)
    return run, server.usage()


def hidden_auroc(root: Path, predict) -> float:
    """Macro AUROC on the hidden test people, as the trusted scorer computes it."""
    return KIT.hidden_scores("active_model", predict, root)["macro_auroc"]


def full_label_auroc(root: Path, ns: dict) -> float:
    """The lab's model trained on the 40 labels and every label of the graded pool."""
    import pandas as pd

    pool = pd.read_csv(root / "public" / "label_scarce" / "unlabelled.csv")
    truth = pd.read_csv(root / "hidden" / "label_scarce" / "unlabelled_labels.csv")
    y = truth.set_index("id").loc[pool["id"], "label_index"].to_numpy()
    model = ns["new_model"]().fit(np.r_[ns["X_lab"], ns["features"](pool)], np.r_[ns["y_lab"], y])
    return hidden_auroc(root, lambda t: model.predict_proba(ns["features"](t)))


def calibrate(root: Path, params: dict, draws: int = 5) -> dict[str, float]:
    ref, _ = run_graded(variant(), root, params)
    out = {
        "40 labels": hidden_auroc(root, ref["predict_baseline"]),
        "self-training": hidden_auroc(root, ref.checked["self_training"]),
        "active (reference)": hidden_auroc(root, ref.checked["active_model"]),
    }
    rand = [
        hidden_auroc(
            root,
            run_graded(
                variant({"active_model_answer": NAIVE["active_model_answer"]}, d), root, params
            )[0].checked["active_model"],
        )
        for d in range(1, draws + 1)
    ]
    out["random (mean)"], out["random (max)"] = float(np.mean(rand)), float(np.max(rand))
    out["all labels"] = full_label_auroc(root, ref.ns)
    out["gain"] = out["active (reference)"] - out["random (mean)"]
    out["share of full"] = out["active (reference)"] / out["all labels"]
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return KIT.calibration_data(tmp_path_factory.mktemp("m7-data"))


def test_uncertainty_is_the_least_margin():
    cell = KIT.cell("active_model_answer")
    source = cell.source.split("X_train, y_train")[0].split("### BEGIN SOLUTION")[1]
    ns: dict = {"np": np}
    exec(source, ns)
    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(ns["uncertainty"](p), [0.15, 0.95, 1.0, 0.5])


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_less(data_root, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    clinician served by the grader from the hidden labels of the unlabelled pool."""
    graded = KIT.grade(tmp_path, data_root, {"honest": variant(), "naive": variant(NAIVE)})
    honest, naive, summary = graded["honest"], graded["naive"], graded.summary
    KIT.assert_full_marks(honest)
    for tid in ("self_training", "active_model"):
        assert naive["tasks"][tid]["score"] < 0.75 * naive["tasks"][tid]["max"], naive["tasks"][tid]
    budget = TASKS["active_model"].oracle.budget
    # the reference asks in rounds of 10; the naive answer asks once; both spend the budget
    assert honest["oracle"]["active_model"] == {
        "labels": budget,
        "requests": budget // 10,
        "refused": 0,
    }
    assert naive["oracle"]["active_model"] == {"labels": budget, "requests": 1, "refused": 0}
    assert "WARNING" not in summary.reference["active_model"], summary.reference


@pytest.mark.slow
def test_naive_notebook_fails_the_public_checks(data_root, tmp_path):
    run = KIT.papermill(variant(NAIVE), data_root / "public", tmp_path)
    assert run.verdicts == {"self_training": "FAIL", "active_model": "FAIL"}


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    def options(ap) -> None:
        ap.add_argument("--draws", type=int, default=5, help="random-query draws per seed")

    KIT.calibrate_cli(
        "Calibrate lab m7 on hidden test people.",
        lambda root, seed, args: calibrate(root, {"SEED": seed}, args.draws),
        options=options,
    )


if __name__ == "__main__":
    main()
