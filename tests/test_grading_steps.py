"""The grading pipeline's named steps (medai/autograder/steps/) and task kinds
(medai/autograder/kinds/), each on its own: small inputs, no sandbox unless the step is one.

The whole pipeline against hostile submissions is in test_autograder_adversarial.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import nbformat
import pytest

from medai.autograder import plain
from medai.autograder.kinds import KINDS, kind_of
from medai.autograder.kinds.base import Kind
from medai.autograder.policy import Policy
from medai.autograder.sandbox import InsecureBackend, Limits
from medai.autograder.scoring import TaskScore
from medai.autograder.steps.execute import CheckRun, execute, parse_records
from medai.autograder.steps.feedback import cell_log
from medai.autograder.steps.intake import BOOKKEEPING, extra_files, intake
from medai.autograder.steps.late import late_penalty
from medai.autograder.steps.layout import atomic_write, open_course
from medai.autograder.steps.prepare import prepare_lab
from medai.autograder.steps.result import GradeResult, ResultError, TaskResult, read_result
from medai.autograder.steps.score import score_task
from medai.autograder.tasks import Task, parse_tasks
from medai.testing.course import make_course, submit

REPO = Path(__file__).resolve().parent.parent
PILOT = REPO / "labs" / "pilot"


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    """The pilot lab generated into a course (nbgrader generate_assignment), and its Lab."""
    from medai.synthetic.core import generate

    base = tmp_path_factory.mktemp("steps")
    generate("ehr", base / "data", n=300, seed=0)
    course = open_course(make_course(base / "course", PILOT, "pilot", "c1"))
    return course, prepare_lab(course, "pilot", base / "data")


def _nested(depth: int) -> dict:
    value: dict = {"t": "null"}
    for _ in range(depth):
        value = {"t": "list", "v": [value]}
    return value


# --------------------------------------------------------------------------- kinds


def test_every_task_kind_of_the_schema_has_one_unit():
    models = typing.get_args(typing.get_args(Task)[0])
    literals = {typing.get_args(m.model_fields["kind"].annotation)[0] for m in models}
    assert literals == set(KINDS)
    for name, unit in KINDS.items():
        assert isinstance(unit, Kind) and unit.name == name


def test_kind_is_looked_up_by_the_task_literal():
    spec = parse_tasks({"lab": "t", "tasks": {"p": {"kind": "property", "property": "disjoint"}}})
    assert kind_of(spec.tasks["p"]) is KINDS["property"]


def test_trainee_side_never_imports_the_trusted_steps(tmp_path):
    """A kernel that imports the lab module and runs checks of every cheap kind loads neither
    the batch nor the steps (the modules that know where hidden data lives)."""
    (tmp_path / "tasks.yaml").write_text(
        "lab: t\ntasks:\n  v: {kind: value}\n  f:\n    kind: function\n    args: {x: {integers: [0, 3]}}\n"
        "    examples: [{args: {x: 2}, expect: 4}]\n"
    )
    code = (
        "import sys\nfrom medai.autograder.lab import check\n"
        "check('v', 1.5)\ncheck('f', lambda x: 2 * x)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('medai.autograder.steps', "
        "'medai.autograder.batch', 'nbgrader')))\nprint('LOADED', bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "PASS [v]" in out and "PASS [f]" in out
    assert "LOADED []" in out, out


# --------------------------------------------------------------------------- records


def test_malformed_records_are_dropped_and_counted_never_raised():
    good_cell = {"type": "cell", "nb": "a.ipynb", "index": 2, "ok": True, "seconds": 0.5}
    good_check = {"type": "check", "task": "t", "nb": "a.ipynb", "cell": 2, "value": {"t": "null"}}
    hostile = [
        "a string",
        [1, 2],
        {"type": "cell", "nb": ["a.ipynb"], "index": 2, "ok": True},  # unhashable name
        {"type": "cell", "nb": "a.ipynb", "index": {"i": 1}, "ok": True},
        {"type": "cell", "nb": "a.ipynb", "index": True, "ok": True},  # a bool is no index
        {"type": "cell", "nb": "a.ipynb", "index": 1, "ok": "yes"},
        {"type": "cell", "nb": "a.ipynb", "index": 1, "ok": False, "error": {"e": 1}},
        {"type": "cell", "nb": "a.ipynb", "index": 1, "ok": True, "stdout": 5},
        {"type": "cell", "nb": "a.ipynb", "index": 1, "ok": True, "seconds": float("inf")},
        {"type": "cell", "nb": "a.ipynb", "index": 1, "ok": True, "seconds": -1},
        {"type": "check", "task": ["t"], "nb": "a.ipynb", "cell": 2},
        {"type": "check", "task": "t", "nb": "a.ipynb", "cell": "2"},
        {"type": "check", "task": "t", "nb": "a.ipynb", "cell": 2, "error": [1]},
    ]
    others = [{"type": "start", "t": 1.0}, {"type": "done"}, {"type": "oracle", "ids": []}]
    cells, checks, bad = parse_records([good_cell, *hostile, good_check, *others])
    assert bad == len(hostile)
    assert [(c.nb, c.index, c.seconds) for c in cells] == [("a.ipynb", 2, 0.5)]
    assert [(c.task, c.has_value) for c in checks] == [("t", True)]


def _value_lab(pilot):
    """The pilot's Lab with an expected value for every task (the scorer's side)."""
    _, lab = pilot
    lab.expected = {"ckd_rate": 0.25, "egfr": [1.0] * len(lab.prepared["egfr"])}
    return lab


@pytest.mark.parametrize(
    "value",
    [
        None,  # no value at all
        {"t": "str", "v": "9" * 2_000_000},  # oversized
        _nested(5000),  # deeper than any decoder goes
        {"t": "dict", "v": {"k": {"t": "weird"}}},
    ],
)
def test_undecodable_value_scores_zero_with_a_message(pilot, value):
    lab = _value_lab(pilot)
    s = score_task(lab, "egfr", CheckRun("egfr", "pilot.ipynb", 9, value, True))
    assert s.fraction == 0.0 and s.message


def test_well_formed_value_of_a_shape_no_scorer_takes_scores_zero(pilot):
    """Plain data all right, but predictions whose values are text: the scorer's own error
    becomes this task's message instead of a grader error."""
    lab = _value_lab(pilot)
    strings = {"t": "list", "v": [{"t": "str", "v": "x"}]}
    value = {"t": "dict", "v": {"index": strings, "values": strings}}
    s = score_task(lab, "ckd_model", CheckRun("ckd_model", "pilot.ipynb", 12, value, True))
    assert s.fraction == 0.0 and "malformed answer" in s.message


def test_recorded_error_and_missing_record_say_why(pilot):
    lab = _value_lab(pilot)
    assert "no answer" in score_task(lab, "ckd_rate", None).message
    rec = CheckRun("ckd_rate", "pilot.ipynb", 6, error="TypeError: nope")
    assert "TypeError: nope" in score_task(lab, "ckd_rate", rec).message
    ok = CheckRun("ckd_rate", "pilot.ipynb", 6, plain.encode(0.25), True)
    assert score_task(lab, "ckd_rate", ok) == TaskScore(1.0, "matches the reference answer")


# --------------------------------------------------------------------------- intake


def test_bookkeeping_of_a_hub_submission_is_not_extra(pilot, tmp_path):
    """A submission that came the hub's way (real nbgrader submit into a trainee's drop, the
    exchange keeper's receipt, real nbgrader collect): nothing in it is reported as extra."""
    from medai.autograder.collect import collect
    from medai.hub.exchange import ExchangeKeeper
    from medai.hub.layout import StateLayout

    course, lab = pilot
    layout = StateLayout(tmp_path / "state")
    for d in layout.all_dirs("c1", ["alice"]):
        d.mkdir(parents=True, exist_ok=True)
    seen = tmp_path / "trainee-exchange" / "c1"  # the exchange as the trainee's sandbox sees it
    shutil.copytree(course.release / "pilot", seen / "outbound" / "pilot")
    os.symlink(layout.drop("c1", "alice"), seen / "inbound")
    work = tmp_path / "home" / "c1" / "pilot"
    shutil.copytree(course.release / "pilot", work)
    (work / ".ipynb_checkpoints").mkdir()  # what Jupyter leaves; nbgrader's copy skips it
    (work / ".ipynb_checkpoints" / "pilot-checkpoint.ipynb").write_text("{}")
    nbgrader = Path(sys.executable).with_name("nbgrader")
    subprocess.run(
        [
            str(nbgrader),
            "submit",
            "pilot",
            "--course=c1",
            "--student=alice",
            f"--Exchange.root={seen.parent}",
            "--Exchange.path_includes_course=True",
            f"--CourseDirectory.root={tmp_path / 'home'}",
        ],
        cwd=tmp_path / "home",
        check=True,
        capture_output=True,
    )
    [receipt] = ExchangeKeeper(layout, "c1", ["alice"], settle=0.0).scan()
    assert receipt.status == "received", receipt
    assert collect(course, "pilot", layout.root / "exchange").ok
    sub = course.submitted / "alice" / "pilot"
    carried = {p.name for p in sub.iterdir()} - {"pilot.ipynb", "tasks.yaml"}
    assert carried == set(BOOKKEEPING)  # the carriers' own files, all of them named
    assert extra_files(sub, lab) == []
    got = intake(lab, sub, 2_000_000)
    assert got.messages == [] and got.timestamp is not None
    assert got.notebooks == {"pilot": {"status": "ok"}}


def test_trainee_files_are_still_reported(pilot, tmp_path):
    course, lab = pilot
    nb = nbformat.read(course.release / "pilot" / "pilot.ipynb", as_version=4)
    sub = submit(course.root, "pilot", "bob", {"pilot.ipynb": nb}, extra={"notes.txt": b"x"})
    (sub / "medai_receipt.json").write_text("{}")
    got = intake(lab, sub, 2_000_000)
    assert got.messages == ["1 extra file(s) ignored: notes.txt"]
    shutil.rmtree(sub.parent)


def test_unreadable_timestamp_is_on_time_with_a_message(pilot):
    course, lab = pilot
    nb = nbformat.read(course.release / "pilot" / "pilot.ipynb", as_version=4)
    sub = submit(course.root, "pilot", "carol", {"pilot.ipynb": nb})
    (sub / "timestamp.txt").write_text("yesterday-ish")
    got = intake(lab, sub, 2_000_000)
    assert got.timestamp is None and "timestamp.txt is unreadable" in got.messages[0]
    shutil.rmtree(sub.parent)


# --------------------------------------------------------------------------- execute


def test_execute_types_the_records_and_times_the_phases(pilot, tmp_path):
    """One real (unsandboxed, trusted code) run: typed cells and checks, and where time went."""
    _, lab = pilot
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from medai.autograder.lab import check\nprint('hi')"),
            nbformat.v4.new_code_cell("check('ckd_rate', 0.5)"),
        ]
    )
    run = execute(
        lab,
        {"t": nb},
        backend=InsecureBackend(),
        data_dir=None,
        tmp_root=tmp_path,
        limits=Limits(wall_s=60, cpu_s=60),
        name="t",
    )
    assert run.status == "ok" and run.malformed == 0
    assert [(c.index, c.ok) for c in run.cells] == [(0, True), (1, True)]
    assert run.cells[0].stdout == "hi\n" and "recorded [ckd_rate]" in run.cells[1].stdout
    rec = run.check("t.ipynb", 1, "ckd_rate")
    assert rec is not None and plain.decode(rec.value) == 0.5
    assert set(run.phases) == {"sandbox_start", "imports", "cells", "sandbox_rest"}
    assert sum(run.phases.values()) == pytest.approx(run.wall_s, abs=0.05)
    assert "[t.ipynb cell 0] ok\nhi" in cell_log(run)


# --------------------------------------------------------------------------- late


def _policy(**extra) -> Policy:
    return Policy.model_validate(
        {
            "due": {"pilot": "2030-01-01T00:00:00+00:00"},
            "late": {"policy": "percent_per_day", "percent_per_day": 10, "cap_percent": 50},
            **extra,
        }
    )


def test_late_penalty_follows_the_policy_and_extensions():
    due = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    on_time = late_penalty(_policy(), "a", "pilot", None, due - dt.timedelta(hours=1), 7.0)
    assert (on_time.fraction, on_time.penalty, on_time.message) == (0.0, 0.0, None)
    late = late_penalty(_policy(), "a", "pilot", None, due + dt.timedelta(days=2), 7.0)
    assert late.fraction == 0.2 and late.penalty == 1.4
    assert late.message and late.message.startswith("late by 48.0 h")
    ext = _policy(extensions={"a": {"pilot": 72}})
    assert late_penalty(ext, "a", "pilot", None, due + dt.timedelta(days=2), 7.0).fraction == 0
    assert late_penalty(_policy(), "a", "pilot", None, None, 7.0).fraction == 0  # no time


# --------------------------------------------------------------------------- result, layout


def test_result_round_trips_through_its_stored_form(tmp_path):
    r = GradeResult(
        "ann",
        "pilot",
        "f" * 64,
        messages=["m"],
        tasks={"t": TaskResult("pilot", 2.0, 1.5, "ok", tampered=True)},
        auto_score=1.5,
        max_score=2.0,
        sandbox={"status": "ok"},
        log="not stored",
    )
    data = r.to_json()
    assert "log" not in data and "oracle" not in data and data["tasks"]["t"]["tampered"] is True
    back = GradeResult.from_json(json.loads(json.dumps(data)))
    assert back == GradeResult(**{**r.__dict__, "log": ""})
    assert r["auto_score"] == 1.5 and r["tasks"]["t"]["score"] == 1.5 and r.get("nope") is None
    atomic_write(tmp_path / "r.json", json.dumps(data))
    assert read_result(tmp_path / "r.json") == back


@pytest.mark.parametrize(
    "text", ["[1, 2]", '{"tasks": [1]}', '{"student": "a", "lab": "p", "tasks": {"t": {"x": 1}}}']
)
def test_a_file_that_is_not_a_result_is_refused(tmp_path, text):
    with pytest.raises(ResultError):
        GradeResult.from_json(json.loads(text))
    (tmp_path / "r.json").write_text(text)
    assert read_result(tmp_path / "r.json") is None
    (tmp_path / "half.json").write_text(text[: len(text) // 2])
    assert read_result(tmp_path / "half.json") is None


# --------------------------------------------------------------------------- reference


def test_solution_notebooks_lose_hidden_tests_and_outputs_and_the_fingerprint_follows(pilot):
    from medai.autograder.steps.reference import solution_notebooks

    course, lab = pilot
    sources, first = solution_notebooks(lab, course, None)
    text = "".join(c.source for c in sources["pilot"].cells)
    assert "BEGIN HIDDEN TESTS" not in text
    assert all(not c.outputs for c in sources["pilot"].cells if c.cell_type == "code")
    assert solution_notebooks(lab, course, None)[1] == first  # nothing changed: same
    tasks = course.source / "pilot" / "tasks.yaml"
    before = tasks.read_text()
    try:
        tasks.write_text(before + "\n# a comment\n")
        assert solution_notebooks(lab, course, None)[1] != first
    finally:
        tasks.write_text(before)


# --------------------------------------------------------------------------- feedback, store


def _graded(pilot, tmp_path):
    """The released pilot notebook taken in, and a made-up run: the ckd_rate check cell ran."""
    from medai.autograder.steps.execute import CellRun, Execution

    course, lab = pilot
    nb = nbformat.read(course.release / "pilot" / "pilot.ipynb", as_version=4)
    sub = submit(course.root, "pilot", "dora", {"pilot.ipynb": nb})
    got = intake(lab, sub, 2_000_000)
    idx = got.sanitized["pilot"].grade_cells["ckd_rate"]
    first = next(i for i, c in enumerate(got.sanitized["pilot"].nb.cells) if c.cell_type == "code")
    run = Execution(
        "ok", cells=[CellRun("pilot.ipynb", first, False, "NameError: x", "out", "")], log="raw"
    )
    run.cells.append(CellRun("pilot.ipynb", idx, True))
    tasks = {"ckd_rate": TaskResult("pilot", 1.0, 0.0, "does not match")}
    return course, lab, got, run, tasks, sub


def test_feedback_shows_scores_in_graded_cells_and_outputs_elsewhere(pilot, tmp_path):
    from medai.autograder.steps.feedback import autograded_notebooks

    course, lab, got, run, tasks, sub = _graded(pilot, tmp_path)
    nb = autograded_notebooks(lab, got, run, tasks)["pilot"]
    idx = got.sanitized["pilot"].grade_cells["ckd_rate"]
    assert nb.cells[idx].outputs[0].text == "[ckd_rate] 0 / 1 points: does not match\n"
    first = run.cells[0].index
    assert [o.text for o in nb.cells[first].outputs] == ["out", "NameError: x\n"]
    assert nb.cells[first].execution_count == first + 1
    log = cell_log(run)
    assert log.startswith(f"[pilot.ipynb cell {first}] error: NameError: x\nout")
    assert log.endswith("--- raw sandbox output ---\nraw")
    shutil.rmtree(sub.parent)


def test_store_writes_gradebook_log_and_the_result_last(pilot, tmp_path):
    from nbgrader.api import Gradebook

    from medai.autograder.steps.gradebook import store

    course, lab, got, run, tasks, sub = _graded(pilot, tmp_path)
    tasks["ckd_rate"].score = 0.5
    r = GradeResult("dora", "pilot", got.fingerprint, tasks=tasks, late_fraction=0.2, log="cells")
    store(course, lab, r, {"pilot": got.sanitized["pilot"].nb})
    stored = read_result(lab.state / "results" / "dora.json")
    assert stored is not None and stored.tasks["ckd_rate"].score == 0.5 and stored.log == ""
    assert {"notebooks_out", "gradebook", "log"} <= set(stored.timings)
    assert (lab.state / "logs" / "dora.log").read_text().endswith("--- cells ---\ncells\n")
    assert (course.autograded / "dora" / "pilot" / "pilot.ipynb").exists()
    assert (course.autograded / "dora" / "pilot" / "timestamp.txt").exists()
    with Gradebook(course.db_url, course.course_id) as gb:
        assert gb.find_grade("ckd_rate", "pilot", "pilot", "dora").auto_score == 0.5
        nb = gb.find_submission_notebook("pilot", "pilot", "dora")
        assert nb.late_submission_penalty == 0.1  # 20 % of this notebook's 0.5 points
    shutil.rmtree(sub.parent)
