"""Lab m8-federated: federated training matches pooling and beats the small hospitals alone.

The reference run under papermill is tests/test_notebooks.py's job; the Flower demonstration
(``labs/m8-federated/flower/``) has its own test, tests/test_lab_m8_flower.py. Here:

1. the reference's ``combine`` and ``local_train`` agree with pandas and with an independent
   FedProx step written with the loss's gradient from ``scipy.optimize.approx_fprime``;
2. the real grader (nbgrader release, bubblewrap sandbox) gives the reference full marks and
   naive answers (unweighted means, a local update that ignores mu, the smallest hospital's
   model) little;
3. under papermill a notebook with the naive answers fails the public checks that can see them.

The module doubles as the lab's calibration script (hidden test AUROC of pooled, FedAvg, FedProx
and the small hospitals' own models, per seed)::

    .venv/bin/python tests/test_lab_m8_federated.py --seeds 0 1 2 3 4
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

from medai.autograder.testing import SOLUTION_REGION
from medai.site.notebooks import ci_parameters

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "labs" / "m8-federated"
NOTEBOOK = "m8-federated.ipynb"
N_PATIENTS = 6000  # the size the thresholds were set at (courses/demo-course.yaml)

NAIVE = {
    # each hospital's mean and sd, averaged as if every hospital were the same size
    "global_stats_answer": (
        "    n = len(summaries)\n"
        "    mean = sum(s[1] / s[0] for s in summaries) / n\n"
        "    sd = sum(np.sqrt(s[2] / s[0] - (s[1] / s[0]) ** 2) for s in summaries) / n\n"
        "    return mean, sd\n"
    ),
    # FedAvg's update whatever mu says
    "local_update_answer": (
        "    Xb = np.c_[np.ones(len(X)), X]\n"
        "    w = np.array(w_global, dtype=float)\n"
        "    for _ in range(steps):\n"
        "        w = w - lr * Xb.T @ (sigmoid(Xb @ w) - y) / len(y)\n"
        "    return w\n"
    ),
    # the smallest hospital's own model, no federation
    "federated_model_answer": (
        "def federate(mu):\n"
        "    return local_train(np.zeros(len(FEATURES) + 1), *site_data[SMALL[0]], 0.0,\n"
        "                       ROUNDS * LOCAL_STEPS, LEARNING_RATE)\n"
        "def predict_federated(table):\n"
        "    X = (table[FEATURES].to_numpy() - MEAN) / SD\n"
        "    return sigmoid(np.c_[np.ones(len(X)), X] @ w_fedprox)\n"
    ),
}


def variant(answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    nb = nbformat.read(LAB / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if answers and gid in answers:
            cell.source = SOLUTION_REGION.sub(lambda _m, c=answers[gid]: c, cell.source)
    return nb


def generate(root: Path, seed: int, n: int = N_PATIENTS) -> Path:
    from medai.synthetic.core import generate as gen

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        gen("multisite", root, n=n, seed=seed)
    return root


def run_cells(nb: nbformat.NotebookNode, root: Path, params: dict) -> dict:
    """Run the notebook's code cells in this process (``check`` records); return the namespace."""
    recorded: dict = {}
    ns: dict = {}
    before = os.environ.get("MEDAI_DATA")
    os.environ["MEDAI_DATA"] = str(root / "public")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if cell.cell_type != "code" or gid in ("explore", "flower"):
                    continue
                source = cell.source
                if gid == "parameters":
                    source += "".join(f"\n{k} = {v!r}" for k, v in params.items())
                exec(compile(source, gid or "cell", "exec"), ns)  # our own notebook
                ns["check"] = lambda tid, value, *extra: recorded.__setitem__(tid, value)
    finally:
        if before is None:
            os.environ.pop("MEDAI_DATA", None)
        else:
            os.environ["MEDAI_DATA"] = before
    ns["recorded"] = recorded
    return ns


def hidden_test(root: Path) -> tuple[pd.DataFrame, np.ndarray]:
    test = pd.read_csv(root / "public" / "multisite" / "test_features.csv")
    labels = pd.read_csv(root / "hidden" / "multisite" / "test_labels.csv")
    y = labels.set_index("patient_id").loc[test["patient_id"], "ckd_5y"].to_numpy()
    return test, y


def calibrate(root: Path, params: dict) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    ns = run_cells(variant(), root, params)
    test, y = hidden_test(root)
    X = np.c_[np.ones(len(test)), (test[ns["FEATURES"]].to_numpy() - ns["MEAN"]) / ns["SD"]]
    steps = ns["ROUNDS"] * ns["LOCAL_STEPS"]
    zero = np.zeros(X.shape[1])
    pooled_X = np.vstack([x for x, _ in ns["site_data"].values()])
    pooled_y = np.concatenate([t for _, t in ns["site_data"].values()])
    weights = {
        "pooled": ns["local_train"](zero, pooled_X, pooled_y, 0.0, steps, ns["LEARNING_RATE"]),
        "FedAvg": ns["w_fedavg"],
        "FedProx": ns["w_fedprox"],
    }
    out = {k: float(roc_auc_score(y, X @ w)) for k, w in weights.items()}
    alone = [
        roc_auc_score(
            y, X @ ns["local_train"](zero, *ns["site_data"][s], 0.0, steps, ns["LEARNING_RATE"])
        )
        for s in ns["SMALL"]
    ]
    out["small alone (mean)"], out["small alone (max)"] = float(np.mean(alone)), float(max(alone))
    out["|FedProx - pooled|"] = abs(out["FedProx"] - out["pooled"])
    out["FedProx - small alone"] = out["FedProx"] - out["small alone (mean)"]
    out["graded"] = float(roc_auc_score(y, ns["recorded"]["federated_model"](test)))
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("m8-data"), seed=0)


@pytest.fixture(scope="module")
def reference(data_root) -> dict:
    return run_cells(variant(), data_root, ci_parameters(LAB, NOTEBOOK))


def test_combine_matches_pooled_pandas(reference):
    pooled = pd.concat(reference["hospitals"].values())[reference["FEATURES"]]
    np.testing.assert_allclose(reference["MEAN"], pooled.mean().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(reference["SD"], pooled.std().to_numpy(), rtol=1e-8)


def test_local_train_follows_the_fedprox_gradient(reference):
    from scipy.optimize import approx_fprime

    X, y, w0 = reference["toy_site"](11)
    mu, lr = 0.7, 0.5

    def objective(w):  # mean logistic loss + FedProx's proximal term
        z = np.c_[np.ones(len(X)), X] @ w
        return np.mean(np.logaddexp(0, z) - y * z) + mu / 2 * np.sum((w - w0) ** 2)

    w = w0.copy()
    for _ in range(3):  # three steps of gradient descent on the objective, numerically
        w = w - lr * approx_fprime(w, objective, 1e-7)
    np.testing.assert_allclose(reference["local_train"](w0, X, y, mu, 3, lr), w, atol=1e-5)
    # mu = 0 is FedAvg's update, and a strong mu keeps the hospital near the global model
    far = reference["local_train"](w0, X, y, 0.0, 50, lr)
    near = reference["local_train"](w0, X, y, 2.0, 50, lr)
    assert np.linalg.norm(near - w0) < 0.2 * np.linalg.norm(far - w0)


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_little(data_root, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    course = make_course(tmp_path / "course", LAB, "m8-federated")
    release = nbformat.read(course / "release/m8-federated" / NOTEBOOK, as_version=4)
    submit(course, "m8-federated", "honest", {NOTEBOOK: solved(release, variant())})
    submit(course, "m8-federated", "naive", {NOTEBOOK: solved(release, variant(NAIVE))})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 90, "cpu_s": 80, "memory_mb": 2048, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m8-federated",
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=data_root,
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid in ("global_stats", "local_update", "federated_model"):
        assert honest["tasks"][tid]["score"] == honest["tasks"][tid]["max"], honest["tasks"][tid]
    assert naive["tasks"]["global_stats"]["score"] == 0, naive["tasks"]["global_stats"]
    # the mu = 0 draws (one choice in five) are right by accident
    assert naive["tasks"]["local_update"]["score"] <= 0.4 * 3, naive["tasks"]["local_update"]
    assert naive["tasks"]["federated_model"]["score"] == 0, naive["tasks"]["federated_model"]


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
            allow_errors=True,
            execution_timeout=60,
        )
    # a value task's public check sees the form only; the grader compares it with the reference
    assert verdicts(tmp_path / "out.ipynb") == {
        "global_stats": "PASS",
        "local_update": "FAIL",
        "federated_model": "FAIL",
    }


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Calibrate lab m8 on hidden test patients.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_PATIENTS)
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        root = generate(Path(tempfile.mkdtemp(prefix=f"m8-{seed}-")), seed, args.n)
        rows.append(calibrate(root, {"SEED": seed}))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()))
    for name, fn in (("min", min), ("mean", np.mean), ("max", max)):
        print(f"{name}: " + ", ".join(f"{k} {fn([r[k] for r in rows]):.3f}" for k in rows[0]))


if __name__ == "__main__":
    main()
