"""The ``model`` and ``property`` kinds against hostile submissions, graded in bubblewrap.

One batch of a small lab (tests/adversarial/model_lab.py): an honest submission and one per
threat — reading the hidden labels, malformed predictions (wrong shape, NaN, wrong type), an
object that compares equal to everything, a predict function that never returns, and forged
records. The honest one earns full marks in the same batch; every attack scores 0 on the task it
targets; the batch goes on past the one that runs out of time. Plus the public (trainee-mode)
checks of both kinds on the same lab.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

from medai.autograder import lab as lab_mod
from medai.autograder.sandbox import BubblewrapBackend, _python_paths
from medai.autograder.tasks import parse_tasks
from medai.testing.course import by_student, grade, make_course, released, solved, submit_answers
from tests.adversarial import model_lab as M

# --------------------------------------------------------------------------- public checks


@pytest.fixture
def public_lab(tmp_path, monkeypatch):
    data = tmp_path / "data"
    M.write_data(data)
    monkeypatch.setenv("MEDAI_DATA", str(data / "public"))
    monkeypatch.delenv("MEDAI_GRADING", raising=False)
    monkeypatch.setattr(lab_mod, "_public_spec", parse_tasks(M.TASKS))
    monkeypatch.setattr(lab_mod, "_grading", None)
    return data


def test_public_model_check_passes_the_solution_and_fails_naive_answers(public_lab, capsys):
    ns: dict = {"np": np}
    exec(M.SOLUTION, ns)
    assert lab_mod.check("toy_model", ns["predict"]) is True
    out = capsys.readouterr().out
    assert out.startswith("PASS [toy_model] auroc 0.9") and "brier" in out and "dev cases" in out
    with pytest.raises(lab_mod.CheckFailed, match=r"^FAIL \[toy_model\] auroc 0\.500"):
        lab_mod.check("toy_model", lambda x: np.full(len(x), 0.5))
    with pytest.raises(lab_mod.CheckFailed, match=r"FAIL \[toy_model\].*shape \(300, 2\)"):
        lab_mod.check("toy_model", lambda x: np.zeros((len(x), 3)))
    with pytest.raises(lab_mod.CheckFailed, match="NaN"):
        lab_mod.check("toy_model", lambda x: np.full(len(x), np.nan))
    with pytest.raises(lab_mod.CheckFailed, match="ZeroDivisionError"):
        lab_mod.check("toy_model", lambda x: 1 / 0)
    with pytest.raises(lab_mod.CheckFailed, match="predict function"):
        lab_mod.check("toy_model", "not a function")
    import pandas as pd  # a Series is accepted and converted

    assert lab_mod.check("toy_model", lambda x: pd.Series(ns["predict"](x))) is True


def test_public_property_check(public_lab, capsys):
    assert lab_mod.check("split", [1, 2, 3], np.array([4, 5])) is True
    assert capsys.readouterr().out.startswith("PASS [split] no id in more than one")
    with pytest.raises(lab_mod.CheckFailed, match=r"FAIL \[split\] 1 id\(s\)"):
        lab_mod.check("split", [1, 2, 3], [3, 4])


# --------------------------------------------------------------------------- the batch


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading-models")
    data_root = base / "data"
    M.write_data(data_root)
    src = M.write_lab(base / "lab-src")
    course = make_course(base / "course", src, "toy")
    release = released(course, "toy")
    source = nbformat.read(course / "source/toy/toy.ipynb", as_version=4)
    submit_answers(course, "toy", solved(release, source), M.ANSWERS)
    before = _digests(data_root)
    summary = grade(
        course,
        "toy",
        data_root,
        {"limits": {"wall_s": 20, "cpu_s": 18, "memory_mb": 2048, "scratch_mb": 64}},
    )
    return {
        "course": course,
        "summary": summary,
        "results": by_student(summary),
        "data_unchanged": before == _digests(data_root),
    }


def _digests(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _log(batch, student: str) -> str:
    return (batch["course"] / "grading/toy/logs" / f"{student}.log").read_text()


@pytest.mark.slow
def test_honest_model_and_property_earn_full_marks(batch):
    assert set(batch["results"]) == set(M.ANSWERS)  # the batch went on past every attack
    r = batch["results"]["honest"]
    assert r["status"] == "graded", r["messages"]
    assert r["tasks"]["toy_model"]["score"] == 2.0, r["tasks"]["toy_model"]
    assert r["tasks"]["split"]["score"] == 1.0
    assert "auroc 0.9" in r["tasks"]["toy_model"]["message"]
    assert "hidden test split (300 cases)" in r["tasks"]["toy_model"]["message"]
    assert "WARNING" not in batch["summary"].reference["toy_model"]


@pytest.mark.slow
@pytest.mark.parametrize("student", M.ATTACKS)
def test_model_attacks_score_zero(batch, student):
    r = batch["results"][student]
    for task in ("split", "toy_model"):
        want_zero = task in M.TARGETS[student]
        assert (r["tasks"][task]["score"] == 0) == want_zero, (student, task, r["tasks"][task])
        assert r["tasks"][task]["message"]
    if student == "infinite":
        assert r["status"] == "timeout"
        assert r["tasks"]["split"]["score"] == 1.0  # what ran before the stuck cell still counts


@pytest.mark.slow
def test_malformed_predictions_are_explained(batch):
    msg = {s: batch["results"][s]["tasks"]["toy_model"]["message"] for s in M.ATTACKS}
    assert "shape (300, 2)" in msg["wrong_shape"]
    assert "NaN" in msg["nan"]
    assert "numpy array" in msg["wrong_type"]
    assert "cell did not run" in msg["infinite"]


@pytest.mark.slow
def test_hidden_labels_are_not_in_the_sandbox(batch):
    assert "FOUND []" in _log(batch, "read_hidden")
    assert batch["data_unchanged"]
    # the sandbox mounts the public data root only: never hidden/, never the data root itself
    from medai.autograder.sandbox import SandboxJob

    root = (batch["course"].parent / "data").resolve()
    argv = BubblewrapBackend()._argv(SandboxJob(batch["course"], root / "public"))
    sources = [argv[i + 1] for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")]
    targets = {argv[i + 2]: argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind"}
    assert targets["/data"] == str(root / "public")
    under_root = [s for s in sources if Path(s).resolve().is_relative_to(root)]
    assert under_root == [str(root / "public")]  # not hidden/, not the data root itself
    assert not any(Path(p).is_relative_to(root) for p in _python_paths())
