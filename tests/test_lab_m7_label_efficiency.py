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

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from medai.autograder.tasks import load_tasks
from medai.autograder.testing import with_answer
from medai.site.notebooks import ci_parameters

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "labs" / "m7-label-efficiency"
NOTEBOOK = "m7-label-efficiency.ipynb"
NB = LAB / NOTEBOOK
TASKS = load_tasks(LAB / "tasks.yaml")
N_PEOPLE = 20000  # the size the thresholds were set at (courses/demo-course.yaml)

# naive answers by the grade_id of the answer cell whose solution region they replace
NAIVE = {
    # no pseudo-labels: the 40-label model
    "self_training_answer": (
        "def predict_self_trained(table):\n    return baseline.predict_proba(features(table))\n"
    ),
    # the same budget, asked at random
    "active_model_answer": (
        "rng = np.random.default_rng(SEED + {draw})\n"
        "pick = rng.choice(len(doctor.ids), doctor.budget, replace=False)\n"
        "answers = doctor.ask([doctor.ids[i] for i in pick])\n"
        "active = new_model().fit(np.r_[X_lab, X_pool[pick]], np.r_[y_lab, answers])\n"
        "def predict_active(table):\n    return active.predict_proba(features(table))\n"
    ),
}


def variant(answers: dict[str, str] | None = None, draw: int = 1) -> nbformat.NotebookNode:
    nb = nbformat.read(NB, as_version=4)
    for gid, code in (answers or {}).items():
        nb = nbformat.from_dict(nb)
        path = Path(tempfile.mkdtemp()) / NOTEBOOK
        nbformat.write(nb, path)
        nb = with_answer(path, gid, code.replace("{draw}", str(draw)))
    return nb


def generate(root: Path, seed: int, n: int = N_PEOPLE) -> Path:
    from medai.synthetic.core import generate as gen

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        gen("label_scarce", root, n=n, seed=seed)
    return root


# --------------------------------------------------------------------------- in-process scoring


def run_graded(nb: nbformat.NotebookNode, root: Path, params: dict) -> dict:
    """Run the notebook's code cells in this process as the grader would see them: the clinician
    answers about the graded pool from its hidden labels (the grader's own OracleServer), and
    ``check`` records the predict functions. Returns ``{task: predict}`` and the namespace."""
    import os

    from medai.autograder import lab as lab_mod
    from medai.autograder.batch import oracle_pool
    from medai.autograder.modeldata import load_source
    from medai.autograder.oracle import OracleServer

    task = TASKS.tasks["active_model"]
    server = OracleServer({"active_model": oracle_pool("active_model", task, root)})
    pool = load_source(task.oracle.graded.inputs, root / "public" / "label_scarce")

    def graded_clinician(task_id: str):
        return lab_mod.Clinician(
            task_id,
            task.oracle.budget,
            pool.value,
            pool.ids,
            lambda ids: server.answer({"task": task_id, "ids": ids}),
        )

    recorded: dict = {}
    ns: dict = {}
    before = os.environ.get("MEDAI_DATA")
    os.environ["MEDAI_DATA"] = str(root / "public")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if cell.cell_type != "code" or gid == "explore":
                    continue
                source = cell.source
                if gid == "parameters":
                    source += "".join(f"\n{k} = {v!r}" for k, v in params.items())
                exec(compile(source, gid or "cell", "exec"), ns)  # our own notebook
                ns["check"] = lambda tid, value, *extra: recorded.__setitem__(tid, value)
                ns["clinician"] = graded_clinician
    finally:
        if before is None:
            os.environ.pop("MEDAI_DATA", None)
        else:
            os.environ["MEDAI_DATA"] = before
    return {"predict": recorded, "ns": ns, "usage": server.usage()}


def hidden_auroc(root: Path, predict) -> float:
    """Macro AUROC on the hidden test people, as the trusted scorer computes it."""
    from medai.autograder.metrics import compute
    from medai.autograder.modeldata import load_source, to_plain_output, validate_output

    spec = TASKS.tasks["active_model"]
    public, hidden = root / "public" / "label_scarce", root / "hidden" / "label_scarce"
    inputs = load_source(spec.test.inputs, public)
    pred = validate_output(
        to_plain_output(predict(inputs.value), spec.output, inputs.ids),
        spec.output,
        len(inputs.ids),
    )
    labels = load_source(spec.test.labels, public, hidden)
    order = dict(zip(labels.ids, labels.value, strict=True))
    return float(compute("macro_auroc", np.array([order[i] for i in inputs.ids]), pred))


def full_label_auroc(root: Path, ns: dict) -> float:
    """The lab's model trained on the 40 labels and every label of the graded pool."""
    import pandas as pd

    pool = pd.read_csv(root / "public" / "label_scarce" / "unlabelled.csv")
    truth = pd.read_csv(root / "hidden" / "label_scarce" / "unlabelled_labels.csv")
    y = truth.set_index("id").loc[pool["id"], "label_index"].to_numpy()
    model = ns["new_model"]().fit(np.r_[ns["X_lab"], ns["features"](pool)], np.r_[ns["y_lab"], y])
    return hidden_auroc(root, lambda t: model.predict_proba(ns["features"](t)))


def calibrate(root: Path, params: dict, draws: int = 5) -> dict[str, float]:
    ref = run_graded(variant(), root, params)
    out = {
        "40 labels": hidden_auroc(root, ref["ns"]["predict_baseline"]),
        "self-training": hidden_auroc(root, ref["predict"]["self_training"]),
        "active (reference)": hidden_auroc(root, ref["predict"]["active_model"]),
    }
    rand = [
        hidden_auroc(
            root,
            run_graded(
                variant({"active_model_answer": NAIVE["active_model_answer"]}, d), root, params
            )["predict"]["active_model"],
        )
        for d in range(1, draws + 1)
    ]
    out["random (mean)"], out["random (max)"] = float(np.mean(rand)), float(np.max(rand))
    out["all labels"] = full_label_auroc(root, ref["ns"])
    out["gain"] = out["active (reference)"] - out["random (mean)"]
    out["share of full"] = out["active (reference)"] / out["all labels"]
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("m7-data"), seed=0)


def test_uncertainty_is_the_least_margin():
    cell = next(
        c for c in variant().cells if c.metadata["nbgrader"]["grade_id"] == "active_model_answer"
    )
    source = cell.source.split("X_train, y_train")[0].split("### BEGIN SOLUTION")[1]
    ns: dict = {"np": np}
    exec(source, ns)
    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(ns["uncertainty"](p), [0.15, 0.95, 1.0, 0.5])


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_less(data_root, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    clinician served by the grader from the hidden labels of the unlabelled pool."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    course = make_course(tmp_path / "course", LAB, "m7-label-efficiency")
    release = nbformat.read(course / "release/m7-label-efficiency" / NOTEBOOK, as_version=4)
    submit(course, "m7-label-efficiency", "honest", {NOTEBOOK: solved(release, variant())})
    submit(course, "m7-label-efficiency", "naive", {NOTEBOOK: solved(release, variant(NAIVE))})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 120, "cpu_s": 110, "memory_mb": 3072, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m7-label-efficiency",
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=data_root,
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid in ("self_training", "active_model"):
        t = honest["tasks"][tid]
        assert t["score"] == t["max"], t
        assert naive["tasks"][tid]["score"] < 0.75 * naive["tasks"][tid]["max"], naive["tasks"][tid]
    budget = TASKS.tasks["active_model"].oracle.budget
    # the reference asks in rounds of 10; the naive answer asks once; both spend the budget
    assert honest["oracle"]["active_model"] == {
        "labels": budget,
        "requests": budget // 10,
        "refused": 0,
    }
    assert naive["oracle"]["active_model"] == {"labels": budget, "requests": 1, "refused": 0}
    assert "WARNING" not in summary.reference["active_model"], summary.reference


@pytest.mark.slow
def test_naive_notebook_fails_the_public_checks(data_root, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from medai.autograder.testing import verdicts

    monkeypatch.setenv("MEDAI_DATA", str(data_root / "public"))
    (tmp_path / "tasks.yaml").write_text((LAB / "tasks.yaml").read_text())
    nbformat.write(variant(NAIVE), tmp_path / NOTEBOOK)
    with pytest.raises(PapermillExecutionError):
        pm.execute_notebook(
            str(tmp_path / NOTEBOOK),
            str(tmp_path / "out.ipynb"),
            parameters=ci_parameters(LAB, NOTEBOOK),
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
            allow_errors=True,  # run every cell, so that each check reports
            execution_timeout=60,
        )
    assert verdicts(tmp_path / "out.ipynb") == {"self_training": "FAIL", "active_model": "FAIL"}


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Calibrate lab m7 on hidden test people.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_PEOPLE)
    ap.add_argument("--draws", type=int, default=5, help="random-query draws per seed")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        root = generate(Path(tempfile.mkdtemp(prefix=f"m7-{seed}-")), seed, args.n)
        figures = calibrate(root, {"SEED": seed}, args.draws)
        rows.append(figures)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    keys = rows[0].keys()
    print("min:  " + ", ".join(f"{k} {min(r[k] for r in rows):.3f}" for k in keys))
    print("mean: " + ", ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in keys))
    print("max:  " + ", ".join(f"{k} {max(r[k] for r in rows):.3f}" for k in keys))


if __name__ == "__main__":
    main()
