"""Unit tests of the autograder's parts: plain values, scoring, policy, sanitizer, sandbox, lab.

The whole pipeline against hostile submissions is in test_autograder_adversarial.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from medai.autograder import GradingError, plain
from medai.autograder.policy import Policy, load_policy
from medai.autograder.sandbox import BubblewrapBackend, InsecureBackend, Limits, SandboxJob
from medai.autograder.sanitize import (
    InvalidSubmission,
    NotebookInfo,
    SourceInfo,
    load_submission,
    sanitize,
    strip_hidden_tests,
)
from medai.autograder.scoring import metric_fraction, score_function, values_match
from medai.autograder.tasks import FunctionTask, Tolerance, load_tasks, parse_tasks

REPO = Path(__file__).resolve().parent.parent
PILOT = REPO / "labs" / "pilot"


# --------------------------------------------------------------------------- plain values


def test_plain_round_trip():
    value = {
        "a": [1, 2.5, float("nan"), True, None, "x"],
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    back = plain.decode(json.loads(json.dumps(plain.encode(value))))
    assert (
        back["a"][:2] == [1, 2.5] and np.isnan(back["a"][2]) and back["a"][3:] == [True, None, "x"]
    )
    assert back["arr"].dtype == np.float32 and back["arr"].shape == (2, 3)


def test_plain_refuses_objects_and_pickles():
    with pytest.raises(plain.PlainError):
        plain.encode(object())
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    forged = {"t": "ndarray", "npy": base64.b64encode(buf.getvalue()).decode()}
    with pytest.raises(plain.PlainError):
        plain.decode(forged)
    raw_pickle = {"t": "ndarray", "npy": base64.b64encode(pickle.dumps([1, 2])).decode()}
    with pytest.raises(plain.PlainError):
        plain.decode(raw_pickle)
    for bad in ({"t": "int", "v": "1"}, {"t": "bool", "v": 1}, {"t": "nope"}, [1], "x"):
        with pytest.raises(plain.PlainError):
            plain.decode(bad)


def test_plain_depth_limit():
    deep: list = []
    for _ in range(plain.MAX_DEPTH + 3):
        deep = [deep]
    with pytest.raises(plain.PlainError):
        plain.encode(deep)


# --------------------------------------------------------------------------- scoring


def test_values_match_tolerances():
    tol = Tolerance(abs=1e-3, rel=0)
    assert values_match(0.5, 0.5004, tol)
    assert not values_match(0.5, 0.502, tol)
    assert not values_match(1, True, tol)  # a bool is not a number here
    assert values_match(np.ones(3), np.ones(3) + 1e-4, tol)
    assert not values_match(np.ones(3), np.ones(4), tol)
    assert not values_match("a", "b", tol)
    assert values_match(float("nan"), float("nan"), tol)
    assert not values_match([1.0, 2.0], [1.0], tol)


def test_metric_fraction_is_linear_between_thresholds():
    assert metric_fraction(0.80, 0.6, 0.75) == 1.0
    assert metric_fraction(0.60, 0.6, 0.75) == 0.0
    assert metric_fraction(0.675, 0.6, 0.75) == pytest.approx(0.5)
    assert metric_fraction(float("nan"), 0.6, 0.75) == 0.0


def test_score_function_partial_credit_and_errors():
    task = FunctionTask(kind="function", args={"x": {"integers": [0, 9]}}, tolerance=Tolerance())
    cases = [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]
    got = [1.0, 2.0, plain.CaseError("ValueError: no"), 0.0]
    s = score_function(task, cases, [1.0, 2.0, 3.0, 4.0], got)
    assert s.fraction == 0.5
    assert "2 of 4" in s.message and "ValueError" in s.message
    assert "4.0" not in s.message.split("returned")[0]  # expected values are never shown


# --------------------------------------------------------------------------- tasks and policy


def test_pilot_task_file_is_valid():
    tf = load_tasks(PILOT / "tasks.yaml")
    assert {t.kind for t in tf.tasks.values()} == {"value", "function", "predict"}


def test_bad_task_file_names_the_key():
    with pytest.raises(GradingError, match=r"tasks\.m\.predict\.full_marks_at|full_marks_at"):
        parse_tasks(
            {
                "lab": "x",
                "tasks": {
                    "m": {
                        "kind": "predict",
                        "dataset": "ehr",
                        "id_column": "id",
                        "target": "y",
                        "train_labels": "a",
                        "test_ids": {"table": "b"},
                        "hidden_labels": "c",
                        "full_marks_at": 0.5,
                        "zero_marks_at": 0.7,
                    }
                },
            }
        )


def test_late_policy():
    p = Policy.model_validate(
        {
            "late": {
                "policy": "percent_per_day",
                "percent_per_day": 10,
                "cap_percent": 25,
                "grace_minutes": 5,
            },
            "extensions": {"ann": {"pilot": 24}},
        }
    )
    day = 86400
    assert p.late_fraction("bob", "pilot", 60) == 0  # within grace
    assert p.late_fraction("bob", "pilot", 0.5 * day) == pytest.approx(0.10)
    assert p.late_fraction("bob", "pilot", 1.5 * day) == pytest.approx(0.20)
    assert p.late_fraction("bob", "pilot", 9 * day) == pytest.approx(0.25)  # cap
    assert p.late_fraction("ann", "pilot", 0.9 * day) == 0  # extension
    assert p.late_fraction("ann", "other", 0.9 * day) == pytest.approx(0.10)
    z = Policy.model_validate({"late": {"policy": "zero"}})
    assert z.late_fraction("bob", "pilot", 3600) == 1.0
    n = Policy.model_validate({"late": {"policy": "none"}})
    assert n.late_fraction("bob", "pilot", 30 * day) == 0


def test_shipped_policy_loads_and_bad_policy_is_explained(tmp_path):
    assert load_policy().limits.wall_s > 0
    bad = tmp_path / "p.yaml"
    bad.write_text("late: {policy: sometimes}\n")
    with pytest.raises(GradingError, match="late.policy"):
        load_policy(bad)


# --------------------------------------------------------------------------- sanitizer


def _info_from_source() -> tuple[NotebookInfo, nbformat.NotebookNode]:
    """NotebookInfo as the gradebook would hold it, built from the pilot source notebook."""
    src = nbformat.read(PILOT / "pilot.ipynb", as_version=4)
    cells = {}
    for c in src.cells:
        m = c.metadata.get("nbgrader")
        if m:
            cells[m["grade_id"]] = SourceInfo(
                name=m["grade_id"],
                cell_type=c.cell_type,
                locked=m.get("locked", False),
                grade=m.get("grade", False),
                solution=m.get("solution", False),
                points=m.get("points"),
                source=c.source,
                checksum=None,
            )
    released = nbformat.from_dict(json.loads(json.dumps(src)))
    for c in released.cells:  # what generate_assignment does to hidden tests
        c.source = strip_hidden_tests(c.source)
    return NotebookInfo("pilot", cells), released


def test_sanitize_clean_notebook_reports_nothing():
    info, src = _info_from_source()
    s = sanitize(src, info)
    assert s.events == [] and s.tampered == set()
    assert "HIDDEN_CASES" not in json.dumps(s.nb)  # hidden tests never reach the sandbox


def test_sanitize_restores_and_reports():
    info, src = _info_from_source()
    nb = nbformat.from_dict(json.loads(json.dumps(src)))
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}
    by_id["ckd_rate"].source = "pass"
    by_id["ckd_model"].metadata["nbgrader"]["points"] = 99
    by_id["egfr"].metadata["tags"] = ["skip-execution"]
    by_id["egfr"].metadata["custom"] = {"x": 1}
    nb.cells.remove(by_id["setup"])
    s = sanitize(nb, info)
    kinds = {(e.cell, e.kind) for e in s.events}
    assert ("ckd_rate", "edited") in kinds
    assert ("ckd_model", "metadata") in kinds
    assert ("egfr", "tags") in kinds and ("egfr", "metadata") in kinds
    assert ("setup", "deleted") in kinds
    assert {"ckd_rate", "ckd_model"} <= s.tampered
    restored = {
        c.metadata["nbgrader"]["grade_id"]: c for c in s.nb.cells if "nbgrader" in c.metadata
    }
    assert restored["ckd_rate"].source.strip() == 'check("ckd_rate", ckd_rate)'
    assert restored["ckd_model"].metadata["nbgrader"]["points"] == 4
    assert "tags" not in restored["egfr"].metadata
    assert list(restored)[:4] == ["intro", "setup-md", "parameters", "setup"]  # order kept


def test_strip_hidden_tests():
    text = "a\n### BEGIN HIDDEN TESTS\nsecret\n### END HIDDEN TESTS\nb\n"
    assert strip_hidden_tests(text) == "a\nb\n"


def test_load_submission_rejects_bad_files(tmp_path):
    p = tmp_path / "pilot.ipynb"
    p.write_text("{not json")
    with pytest.raises(InvalidSubmission, match="not valid JSON"):
        load_submission(p, 10**6)
    p.write_text(json.dumps({"nbformat": 3, "worksheets": []}))
    with pytest.raises(InvalidSubmission, match="nbformat 4"):
        load_submission(p, 10**6)
    p.write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"bad": 1}]})
    )
    with pytest.raises(InvalidSubmission, match="not a valid notebook"):
        load_submission(p, 10**6)
    with pytest.raises(InvalidSubmission, match="missing"):
        load_submission(tmp_path / "other.ipynb", 10**6)
    p.write_text("x" * 2000)
    with pytest.raises(InvalidSubmission, match="limit"):
        load_submission(p, 1000)


# --------------------------------------------------------------------------- sandbox


def _tiny_job(tmp_path: Path, code: str) -> SandboxJob:
    job = tmp_path / "job"
    (job / "files").mkdir(parents=True)
    (job / "inputs").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, job / "files" / "t.ipynb")
    spec = {"notebooks": ["t.ipynb"], "tasks": {"lab": "t", "tasks": {"v": {"kind": "value"}}}}
    (job / "job.json").write_text(json.dumps(spec))
    for p in [job, *job.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return SandboxJob(job, None, Limits(wall_s=20, cpu_s=10))


def test_bubblewrap_missing_refuses_and_names_the_flag(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GradingError, match="--insecure"):
        BubblewrapBackend()


def test_sandbox_records_values_and_hides_the_host(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAI_GRADER_TOKEN", "s3cret-token")
    code = (
        "import os\nfrom medai.autograder.lab import check\n"
        "print(sorted(os.environ), os.getuid(), sorted(os.listdir('/')))\n"
        "check('v', [1, 2.5])"
    )
    res = BubblewrapBackend().run(_tiny_job(tmp_path, code))
    assert res.status == "ok"
    cell = next(r for r in res.records if r["type"] == "cell")
    assert cell["ok"], cell
    assert "MEDAI_GRADER_TOKEN" not in cell["stdout"] and "s3cret" not in cell["stdout"]
    assert "1000" in cell["stdout"]
    # the software's top folder (where the checkout lives) is bound in; no home folder is
    top = Path(sys.prefix).resolve().parts[1]
    assert f"'{top}'" in cell["stdout"] and "'home'" not in cell["stdout"]
    check = next(r for r in res.records if r["type"] == "check")
    assert plain.decode(check["value"]) == [1, 2.5]


def test_sandbox_wall_clock_kills_a_stuck_notebook(tmp_path):
    job = _tiny_job(tmp_path, "import time\ntime.sleep(1000)")
    job.limits = Limits(wall_s=3, cpu_s=10)
    res = BubblewrapBackend().run(job)
    assert res.status == "timeout"
    assert res.wall_s < 10


def test_insecure_backend_runs_but_says_so(tmp_path):
    res = InsecureBackend().run(
        _tiny_job(tmp_path, "from medai.autograder.lab import check\ncheck('v', 3)")
    )
    assert res.status == "ok"
    assert any("INSECURE" in n for n in res.notes)


# --------------------------------------------------------------------------- the lab's public checks


@pytest.fixture(scope="module")
def ehr_data(tmp_path_factory):
    from medai.synthetic.core import generate

    root = tmp_path_factory.mktemp("data")
    generate("ehr", root, n=4000, seed=0)
    return root


def test_public_checks_give_feedback(ehr_data, monkeypatch, capsys):
    import medai.autograder.lab as lab

    monkeypatch.setenv("MEDAI_DATA", str(ehr_data / "public"))
    monkeypatch.setenv("MEDAI_TASKS", str(PILOT / "tasks.yaml"))
    monkeypatch.setattr(lab, "_public_spec", None)
    assert lab.check("ckd_rate", 0.12) is True
    with pytest.raises(lab.CheckFailed, match="expected a float"):
        lab.check("ckd_rate", "0.12")
    with pytest.raises(lab.CheckFailed, match="between"):
        lab.check("ckd_rate", 1.5)

    def egfr(creat_umol, age, male):
        scr = creat_umol / 88.4
        k, a = (0.9, -0.302) if male else (0.7, -0.241)
        return (
            142
            * min(scr / k, 1) ** a
            * max(scr / k, 1) ** -1.2
            * 0.9938**age
            * (1 if male else 1.012)
        )

    assert lab.check("egfr", egfr) is True
    with pytest.raises(lab.CheckFailed, match=r"FAIL \[egfr\].*expected 103.363"):
        lab.check("egfr", lambda creat_umol, age, male: 90.0)
    from sklearn.dummy import DummyClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medai.synthetic.ehr import baseline_features

    X = baseline_features(ehr_data / "public" / "ehr").drop(columns="split")
    good = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000))
    assert lab.check("ckd_model", good, X) is True
    with pytest.raises(lab.CheckFailed, match="AUROC 0.500"):
        lab.check("ckd_model", DummyClassifier(), X)
    out = capsys.readouterr().out
    assert "AUROC" in out and "PASS [egfr]" in out and "PASS [ckd_rate]" in out


@pytest.mark.slow
def test_pilot_reference_solution_passes_under_papermill_and_the_naive_one_fails(
    ehr_data, tmp_path
):
    import time

    env_data = str(ehr_data / "public")
    shutil.copy(PILOT / "tasks.yaml", tmp_path / "tasks.yaml")
    papermill = Path(sys.executable).with_name("papermill")
    t0 = time.monotonic()
    ok = subprocess.run(
        [
            str(papermill),
            str(PILOT / "pilot.ipynb"),
            str(tmp_path / "out.ipynb"),
            "--cwd",
            str(tmp_path),
            "-p",
            "MAX_ITER",
            "500",
            "-k",
            "python3",
        ],
        capture_output=True,
        text=True,
        env={**_env(), "MEDAI_DATA": env_data},
    )
    elapsed = time.monotonic() - t0
    assert ok.returncode == 0, ok.stderr[-3000:]
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in out.cells])
    assert "PASS [ckd_rate]" in text and "PASS [egfr]" in text and "PASS [ckd_model]" in text
    assert elapsed < 120  # the lab's budget is 60 s on 2 CPUs; leave room for a loaded machine
    naive = nbformat.read(PILOT / "pilot.ipynb", as_version=4)
    for c in naive.cells:
        if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code":
            c.source = (
                "ckd_rate = 0.5\ndef egfr(creat_umol, age, male):\n    return 90.0\n"
                "from sklearn.dummy import DummyClassifier\nmodel = DummyClassifier()"
            )
    nbformat.write(naive, tmp_path / "naive.ipynb")
    bad = subprocess.run(
        [
            str(papermill),
            str(tmp_path / "naive.ipynb"),
            str(tmp_path / "naive-out.ipynb"),
            "--cwd",
            str(tmp_path),
            "-k",
            "python3",
        ],
        capture_output=True,
        text=True,
        env={**_env(), "MEDAI_DATA": env_data},
    )
    assert bad.returncode != 0  # the public check stops the run, like a failing test cell
    assert "FAIL [egfr]" in bad.stderr + bad.stdout


def _env() -> dict:
    import os

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def test_data_dir_generates_a_cache_when_medai_data_is_unset(tmp_path, monkeypatch):
    import medai.autograder.lab as lab

    monkeypatch.delenv("MEDAI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(lab, "_resolved", {})
    path = lab.data_dir("ehr", n=300, seed=1)
    cache = tmp_path / "medai" / "data"
    [root] = list(cache.iterdir())
    assert root.name.startswith("ehr-n300-s1-")  # keyed by size, seed and generator version
    assert path == root / "public" / "ehr"
    assert len(lab.read_table("ehr", "patients")) == 300  # later calls reuse the lab's choice
    assert lab.data_dir("ehr", n=200, seed=1) != path  # another size never reuses it
    assert len(list(cache.iterdir())) == 2
    assert not (root / "public" / "hidden").exists()


def test_cli_insecure_flag_warns(tmp_path):
    from typer.testing import CliRunner

    from medai.cli import app

    res = CliRunner().invoke(app, ["grade", "pilot", "--insecure", "--course", str(tmp_path)])
    assert res.exit_code != 0
    assert "WITHOUT a sandbox" in res.output and "no source folder" in res.output


def test_cli_registers_grade_verbs():
    from typer.testing import CliRunner

    from medai.cli import app

    res = CliRunner().invoke(app, ["grade", "--help"])
    assert res.exit_code == 0 and "--workers" in res.output and "--insecure" in res.output
    res = CliRunner().invoke(app, ["grade", "pilot", "--course", "/nonexistent/course"])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_due_dates_parse():
    p = Policy.model_validate({"due": {"pilot": "2026-01-10T12:00:00Z"}})
    assert p.due["pilot"] == dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
