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

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.testing.labkit import LabKit, Run

KIT = LabKit.of("m8-federated")

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m8-federated.yaml


def run_cells(nb, root: Path, params: dict) -> Run:
    """Run the notebook's code cells in this process (``check`` records)."""
    return KIT.run(nb, params, data=root, skip={"explore", "flower"})


def hidden_test(root: Path) -> tuple[pd.DataFrame, np.ndarray]:
    test = pd.read_csv(root / "public" / "multisite" / "test_features.csv")
    labels = pd.read_csv(root / "hidden" / "multisite" / "test_labels.csv")
    y = labels.set_index("patient_id").loc[test["patient_id"], "ckd_5y"].to_numpy()
    return test, y


def calibrate(root: Path, params: dict) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    ns = run_cells(KIT.source(), root, params)
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
    out["graded"] = float(roc_auc_score(y, ns.checked["federated_model"](test)))
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return KIT.calibration_data(tmp_path_factory.mktemp("m8-data"))


@pytest.fixture(scope="module")
def reference(data_root) -> dict:
    return run_cells(KIT.source(), data_root, KIT.ci)


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
    graded = KIT.grade(tmp_path, data_root, {"honest": KIT.source(), "naive": KIT.variant(NAIVE)})
    honest, naive = graded["honest"], graded["naive"]
    KIT.assert_full_marks(honest)
    assert naive["tasks"]["global_stats"]["score"] == 0, naive["tasks"]["global_stats"]
    # the mu = 0 draws (one choice in five) are right by accident
    assert naive["tasks"]["local_update"]["score"] <= 0.4 * 3, naive["tasks"]["local_update"]
    assert naive["tasks"]["federated_model"]["score"] == 0, naive["tasks"]["federated_model"]


@pytest.mark.slow
def test_naive_notebook_fails_the_public_checks(data_root, tmp_path):
    run = KIT.papermill(KIT.variant(NAIVE), data_root / "public", tmp_path)
    # a value task's public check sees the form only; the grader compares it with the reference
    assert run.verdicts == {
        "global_stats": "PASS",
        "local_update": "FAIL",
        "federated_model": "FAIL",
    }


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    KIT.calibrate_cli(
        "Calibrate lab m8 on hidden test patients.",
        lambda root, seed, args: calibrate(root, {"SEED": seed}),
    )


if __name__ == "__main__":
    main()
