"""The simulated clinician of active-learning tasks: served by the grader, never over budget.

Three layers:

1. :class:`medai.autograder.oracle.OracleServer` on its own: budget, pool membership and
   malformed requests (what the grader does with each request, as plain data);
2. ``clinician(...)`` in public mode (a trainee working): answers from the practice pool with
   the same rules, and the public check of the task;
3. one batch of a toy lab (tests/adversarial/oracle_lab.py) graded in bubblewrap: an honest
   submission asks for its budget and earns full marks; attacks that ask for more than the
   budget (at once, or one id at a time from fresh clinicians), for cases outside the pool, that
   forge requests on the result pipe, or look for the hidden pool labels on disk, get no more
   labels than the budget allows, and the batch goes on. Each attack prints how many pool labels
   its kernel ended up holding; the grader's own count of what it answered is in the result.
"""

from __future__ import annotations

import json
import re

import nbformat
import numpy as np
import pytest

from medai.autograder import lab as lab_mod
from medai.autograder.oracle import MAX_REQUESTS, OracleServer, PoolLabels
from medai.autograder.tasks import parse_tasks
from tests.adversarial import oracle_lab as M

# --------------------------------------------------------------------------- the server


def _server(budget: int = 3) -> OracleServer:
    return OracleServer({"t": PoolLabels({"a": 0, "b": 1, "c": 1, "7": 2, "d": 0}, budget)})


def test_server_answers_within_the_budget_and_repeats_for_free():
    s = _server()
    assert s.answer({"type": "oracle", "task": "t", "ids": ["a", "b"]}) == {
        "labels": [0, 1],
        "remaining": 1,
    }
    assert s.answer({"task": "t", "ids": ["b", "a", "b"]}) == {"labels": [1, 0, 1], "remaining": 1}
    assert s.answer({"task": "t", "ids": [7]}) == {"labels": [2], "remaining": 0}  # ids as text
    refused = s.answer({"task": "t", "ids": ["c"]})
    assert "0 of 3 labels left" in refused["error"]
    assert s.answer({"task": "t", "ids": ["a"]})["labels"] == [0]  # still free
    assert s.usage() == {"t": {"labels": 3, "requests": 5, "refused": 1}}


def test_server_refuses_a_request_past_the_budget_as_a_whole():
    s = _server(budget=2)
    reply = s.answer({"task": "t", "ids": ["a", "b", "c"]})
    assert "2 of 2 labels left" in reply["error"] and "nothing was answered" in reply["error"]
    assert s.usage()["t"]["labels"] == 0
    assert s.answer({"task": "t", "ids": ["a", "b"]})["remaining"] == 0


@pytest.mark.parametrize(
    "request_, reason",
    [
        ({"task": "t", "ids": ["zz"]}, "not cases of the pool"),
        ({"task": "t", "ids": ["a", "zz"]}, "not cases of the pool"),
        ({"task": "t", "ids": [True]}, "not cases of the pool"),
        ({"task": "t", "ids": [1.5]}, "not cases of the pool"),
        ({"task": "t", "ids": [["a"]]}, "not cases of the pool"),
        ({"task": "t", "ids": "a"}, "must be a list"),
        ({"task": "t"}, "must be a list"),
        ({"task": "other", "ids": ["a"]}, "no clinician for task 'other'"),
        ({"ids": ["a"]}, "a request is"),
        (["t", "a"], "a request is"),
    ],
)
def test_server_refuses_malformed_requests(request_, reason):
    s = _server()
    assert reason in s.answer(request_)["error"]
    assert s.usage()["t"]["labels"] == 0


def test_server_caps_the_number_of_requests():
    s = _server(budget=5)
    for _ in range(MAX_REQUESTS):
        s.answer({"task": "t", "ids": ["a"]})
    assert "requests in one run" in s.answer({"task": "t", "ids": ["b"]})["error"]


def test_an_oracle_needs_hidden_graded_and_public_practice_labels():
    from medai.autograder import GradingError

    bad = json.loads(json.dumps(M.TASKS))
    bad["tasks"]["al_model"]["oracle"]["graded"]["labels"]["hidden"] = False
    with pytest.raises(GradingError, match="oracle.graded.labels must say `hidden: true`"):
        parse_tasks(bad)
    bad = json.loads(json.dumps(M.TASKS))
    bad["tasks"]["al_model"]["oracle"]["practice"]["labels"]["hidden"] = True
    with pytest.raises(GradingError, match="practice.labels must be public"):
        parse_tasks(bad)


# --------------------------------------------------------------------------- public mode


@pytest.fixture
def public_lab(tmp_path, monkeypatch):
    data = tmp_path / "data"
    M.write_data(data)
    monkeypatch.setenv("MEDAI_DATA", str(data / "public"))
    monkeypatch.setattr(lab_mod, "_public_spec", parse_tasks(M.TASKS))
    monkeypatch.setattr(lab_mod, "_grading", None)
    return data


def test_public_clinician_answers_from_the_practice_pool(public_lab):
    import pandas as pd

    doctor = lab_mod.clinician("al_model")
    practice = pd.read_csv(public_lab / "public" / "toyal" / "practice.csv")
    pool = practice[practice["fold"] == 0]
    assert doctor.ids == pool["id"].tolist() and "y" not in doctor.pool.columns
    got = doctor.ask(doctor.ids[:5])
    assert got.tolist() == pool["y"].tolist()[:5]
    assert doctor.remaining == M.BUDGET - 5 and "25 of 30 labels left" in repr(doctor)
    with pytest.raises(lab_mod.OracleRefused, match="not cases of the pool"):
        doctor.ask(["Q0001"])  # a graded-pool id is not in the practice pool
    with pytest.raises(lab_mod.OracleRefused, match="25 of 30 labels left"):
        doctor.ask(doctor.ids[5:100])
    assert lab_mod.clinician("al_model").remaining == M.BUDGET  # a fresh one to practise with
    with pytest.raises(KeyError, match="has no clinician"):
        lab_mod.clinician("nothing")


def test_public_check_of_the_honest_answer(public_lab, capsys):
    ns: dict = {"np": np, "clinician": lab_mod.clinician}
    exec(M.SOLUTION, ns)
    assert lab_mod.check("al_model", ns["predict"]) is True
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS [al_model] auroc 0.9")


# --------------------------------------------------------------------------- the batch


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from medai.testing.course import (
        by_student,
        grade,
        make_course,
        released,
        solved,
        submit_answers,
    )

    base = tmp_path_factory.mktemp("grading-oracle")
    data_root = base / "data"
    M.write_data(data_root)
    src = M.write_lab(base / "lab-src")
    course = make_course(base / "course", src, "toyal")
    release = released(course, "toyal")
    honest = solved(release, nbformat.read(src / "toyal.ipynb", as_version=4))
    answers = {student: M.answer_cell(student, data_root) for student in M.ANSWERS}
    submit_answers(course, "toyal", honest, answers)
    summary = grade(
        course,
        "toyal",
        data_root,
        {"limits": {"wall_s": 30, "cpu_s": 25, "memory_mb": 2048, "scratch_mb": 64}},
    )
    return {"course": course, "results": by_student(summary)}


def _log(batch, student: str) -> str:
    return (batch["course"] / "grading/toyal/logs" / f"{student}.log").read_text()


def _got(batch, student: str) -> int:
    found = re.findall(r"^GOT (\d+)", _log(batch, student), flags=re.M)
    assert found, _log(batch, student)[-3000:]
    return int(found[-1])


@pytest.mark.slow
def test_honest_answer_asks_its_budget_and_earns_full_marks(batch):
    r = batch["results"]["honest"]
    assert r["status"] == "graded", r["messages"]
    assert r["tasks"]["al_model"]["score"] == 2.0, r["tasks"]["al_model"]
    assert r["oracle"] == {"al_model": {"labels": M.BUDGET, "requests": 3, "refused": 0}}
    assert _got(batch, "honest") == M.BUDGET
    assert "remaining 0" in _log(batch, "honest")


@pytest.mark.slow
@pytest.mark.parametrize("student", M.ATTACKS)
def test_no_attack_gets_more_labels_than_the_budget(batch, student):
    r = batch["results"][student]
    assert r["status"] == "graded", (student, r["messages"])  # the batch went on, and so did it
    assert r["tasks"]["al_model"]["message"]
    assert _got(batch, student) <= M.BUDGET, _log(batch, student)[-2000:]
    assert r["oracle"]["al_model"]["labels"] <= M.BUDGET


@pytest.mark.slow
def test_each_attack_was_refused_for_its_reason(batch):
    over = _log(batch, "over_budget")
    assert "REFUSED 2" in over and f"{M.BUDGET} of {M.BUDGET} labels left" in over
    assert _got(batch, "over_budget") == M.BUDGET
    one = batch["results"]["one_by_one"]["oracle"]["al_model"]
    assert one == {"labels": M.BUDGET, "requests": M.N_POOL, "refused": M.N_POOL - M.BUDGET}
    outside = _log(batch, "outside_pool")
    assert "REFUSED 5" in outside and outside.count("not cases of the pool") >= 5
    assert _got(batch, "outside_pool") == 0
    forged = _log(batch, "forged")
    assert "REPLIES [" + ", ".join(["['error']"] * 7) + "]" in forged
    assert "STILL ANSWERS 1" in forged and _got(batch, "forged") == 1
    assert batch["results"]["forged"]["oracle"]["al_model"]["labels"] == 1
    assert "FOUND []" in _log(batch, "read_hidden")
    assert batch["results"]["read_hidden"]["oracle"]["al_model"]["labels"] == 0
