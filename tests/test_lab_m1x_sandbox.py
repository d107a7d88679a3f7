"""Lab m1x-sandbox and ``kind: released``: graded on what the data sandbox released.

The reference analyses run for real as data jobs (bubblewrap, the data-job profile) in a
:class:`~medai.sandbox.service.Sandbox` on a hub-like state folder (no hub: the web layer and
the client are tested in tests/test_sandbox_hub.py). Then:

- the kind alone: an honest job earns full marks; a subset fit half; the wrong model, a refused
  job, another trainee's job, a number computed on the mock, a forged output and a made-up job
  id earn nothing, each with a message saying why;
- the whole grader (:func:`medai.testing.course.grade`, nbgrader + bubblewrap): the lab's
  notebook with the trainee's own released job ids earns every autograded point; a trainee's
  own but unadjusted regression earns only the table's point; the same notebook submitted by
  another trainee, and one holding mock-computed numbers, earn none.

The notebook's submitting cells need a live service (JupyterLab on the hub); under papermill
(tests/test_notebooks.py) and in the grader they are skipped, and only the recorded ids count.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from medai.autograder.kinds.base import GRADED_STUDENT, Preparing
from medai.autograder.kinds.released import ReleasedKind
from medai.autograder.tasks import load_tasks
from medai.config import parse_config
from medai.sandbox.service import Sandbox
from medai.testing.course import by_student, grade, make_course, released, solved, submit
from medai.testing.labkit import LabKit

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
LAB = "m1x-sandbox"
SRC = REPO / "labs" / LAB
TASKS = load_tasks(SRC / "tasks.yaml").tasks
KIT = LabKit.of(LAB)  # medai/testing/labs/m1x-sandbox.yaml
PRELUDE = "from medai.sandbox import outputs as out\n"
TABLE = "def f(df):\n    return out.table(df, by=['region', 'stroke_5y'])\n"
ADJUSTED = (
    "def f(df):\n    return out.regression(df, y='stroke_5y', x=['age', 'sbp', 'diabetes'],"
    " family='logit')\n"
)
SUBSET = ADJUSTED.replace("(df, y=", "(df[df.age >= 60], y=")
UNADJUSTED = (
    "def f(df):\n    return out.regression(df, y='stroke_5y', x=['diabetes'], family='logit')\n"
)
# parameters that encode a patient's value instead of a fit: held for the data owner
FORGED_MODEL = (
    "def f(df):\n    tr = df.sample(frac=0.7, random_state=2)\n"
    "    return out.model(tr, y='stroke_5y', x=['age', 'bmi'],\n"
    "                     coef=[float(df.bmi.max()), 0.0], intercept=0.0)\n"
)


def run(sb: Sandbox, user: str, code: str) -> str:
    job = sb.submit(user, "cohort", PRELUDE + code, "f")["job"]
    deadline = time.monotonic() + 120
    while sb.job_view(user, job)["status"] == "running":
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.05)
    return job


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict:
    """A hub-like state folder with the sandbox's store, and the jobs of three trainees."""
    state = tmp_path_factory.mktemp("state")
    cfg = parse_config(
        {
            "course": {"id": "c1", "title": "C"},
            "people": {"instructors": ["ann"], "trainees": ["bo", "cy", "dee", "eve"]},
            "sandbox": {
                "timing_quantum_s": 0,
                "datasets": [{"name": "cohort", "title": "Cohort", "owner": "ann", "n": 2000}],
            },
        }
    )
    sb = Sandbox(cfg, state, workers=2)
    try:
        for user in ("bo", "cy", "eve"):
            sb.request_access(user, "cohort", "module 1: diabetes and stroke, adjusted")
            sb.decide_access("ann", user, "cohort", "grant")
        jobs = {
            "table": run(sb, "bo", TABLE),
            "adjusted": run(sb, "bo", ADJUSTED),
            "subset": run(sb, "bo", SUBSET),
            "refused": run(sb, "bo", "def f(df):\n    return df\n"),
            "held": run(sb, "bo", FORGED_MODEL),
            "cy_unadjusted": run(sb, "cy", UNADJUSTED),
            "eve_table": run(sb, "eve", TABLE),
            "eve_unadjusted": run(sb, "eve", UNADJUSTED),
        }
        views = {k: sb.job_view("ann", j, owner=True) for k, j in jobs.items()}
    finally:
        sb.pool.shutdown(wait=True)
    assert [v["status"] for v in views.values()] == ["released"] * 3 + [
        "refused",
        "held",
    ] + ["released"] * 3
    (state / "data" / "public").mkdir(parents=True, exist_ok=True)
    return {"state": state, "data_root": state / "data", "jobs": jobs, "views": views}


def scores(hub: dict, student: str, records: dict) -> dict:
    """Score ``records`` (task id -> what the notebook recorded) as ``student``'s."""
    kind = ReleasedKind()
    out = {}
    token = GRADED_STUDENT.set(student)
    try:
        for tid, got in records.items():
            ctx = Preparing(tid, 0, hub["state"] / "inputs", "", hub["data_root"])
            state = kind.prepare(TASKS[tid], ctx).state
            out[tid] = kind.score(TASKS[tid], got, None, state)
    finally:
        GRADED_STUDENT.reset(token)
    return out


def test_honest_jobs_earn_full_marks_and_a_subset_fit_less(hub):
    j = hub["jobs"]
    s = scores(hub, "bo", {"rates": j["table"], "diabetes_effect": j["adjusted"]})
    assert {t: v.fraction for t, v in s.items()} == {"rates": 1.0, "diabetes_effect": 1.0}, s
    assert hub["views"]["adjusted"]["output"]["coef"]["diabetes"] > 0
    sub = scores(hub, "bo", {"diabetes_effect": j["subset"]})["diabetes_effect"]
    full = hub["views"]["adjusted"]["output"]["coef"]["diabetes"]
    part = hub["views"]["subset"]["output"]["coef"]["diabetes"]
    assert abs(part - full) > 0.01  # the subset's estimate is another number
    assert sub.fraction == (0.5 if (part > 0) == (full > 0) else 0.0), sub


@pytest.mark.parametrize(
    "student, task, record, why",
    [
        ("cy", "diabetes_effect", "adjusted", "not one of your sandbox jobs"),  # bo's job id
        ("cy", "rates", "table", "not one of your sandbox jobs"),
        ("bo", "diabetes_effect", "refused", "was refused"),
        ("bo", "diabetes_effect", "held", "was held"),
        ("cy", "diabetes_effect", "cy_unadjusted", "is not the logit regression"),
        ("bo", "rates", "adjusted", "released a regression, not a table"),
        ("bo", "diabetes_effect", "ffffffffffffffff", "not one of your sandbox jobs"),
    ],
)
def test_jobs_that_are_not_the_trainees_released_answer_earn_nothing(
    hub, student, task, record, why
):
    got = hub["jobs"].get(record, record)
    s = scores(hub, student, {task: got})[task]
    assert (s.fraction, why in s.message) == (0.0, True), s


def test_numbers_from_the_notebook_earn_nothing(hub):
    """The grade is read from the sandbox's record: a coefficient fitted on the mock, or a
    forged copy of a released output, is not a job id and earns 0."""
    import pandas as pd
    import statsmodels.api as sm

    from medai.sandbox.registry import SandboxLayout

    mock = pd.read_csv(SandboxLayout(hub["state"]).mock_dir("cohort") / "mock.csv")
    fit = sm.Logit(mock.stroke_5y, sm.add_constant(mock[["age", "sbp", "diabetes"]])).fit(disp=0)
    forged = dict(hub["views"]["adjusted"]["output"])
    for got in (float(fit.params["diabetes"]), forged, None, "adjusted"):
        s = scores(hub, "bo", {"diabetes_effect": got})["diabetes_effect"]
        assert (s.fraction, "no sandbox job id" in s.message) == (0.0, True), (got, s)
    unknown = scores(hub, None, {"rates": hub["jobs"]["table"]})["rates"]
    assert unknown.fraction == 0.0, unknown  # scoring never guesses whose submission it is


def test_a_grader_without_the_sandbox_says_so(hub, tmp_path):
    """A data root that is not the hub's (no sandbox beside it), or a store that cannot be read,
    is the grader's error (the batch grades again later), never a trainee's 0."""
    from medai.autograder import GradingError
    from medai.autograder.kinds.released import read_job

    kind, task = ReleasedKind(), TASKS["rates"]
    with pytest.raises(GradingError, match="no data sandbox with dataset 'cohort'"):
        kind.prepare(task, Preparing("rates", 0, tmp_path, "", tmp_path / "data"))
    typo = task.model_copy(update={"by": ["region", "stroke"]})
    with pytest.raises(GradingError, match=r"columns \['stroke'\]"):
        kind.prepare(typo, Preparing("rates", 0, tmp_path, "", hub["data_root"]))
    (tmp_path / "store.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(GradingError, match="cannot read the data sandbox's store"):
        read_job(tmp_path / "store.sqlite", hub["jobs"]["table"])


def test_the_grader_finds_the_hubs_sandbox_from_its_data_root(tmp_path):
    """On a hub the grading service gets StateLayout.data as its data root and the sandbox
    service runs on StateLayout.root (medai.hub.grading, medai.hub.hubconfig): same store."""
    from medai.autograder.kinds.released import sandbox_layout
    from medai.hub.layout import StateLayout
    from medai.sandbox.registry import SandboxLayout

    hub_state = StateLayout(tmp_path)
    assert sandbox_layout(hub_state.data).store == SandboxLayout(tmp_path.resolve()).store


def test_the_public_check_asks_for_a_job_id():
    from medai.autograder.kinds.base import CheckFailed
    from medai.sandbox.client import Result

    kind, task = ReleasedKind(), TASKS["diabetes_effect"]
    assert kind.check("d", task, "0123456789abcdef", ())
    assert kind.check("d", task, Result("released", job="0123456789abcdef"), ())
    for bad in (
        0.69,
        "0123456789abcdeg",
        {"coef": {"diabetes": 0.69}},
        Result("held", job="0" * 16),
    ):
        with pytest.raises(CheckFailed):
            kind.check("d", task, bad, ())
    assert kind.record("d", task, Result("released", job="a" * 16), (), Path(".")) == "a" * 16
    assert kind.record("d", task, 0.69, (), Path(".")) is None


def _with_ids(nb: nbformat.NotebookNode, rates: object, model: object) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        cell.source = cell.source.replace('"0123456789abcdef"', repr(rates)).replace(
            '"fedcba9876543210"', repr(model)
        )
    return nb


def test_the_grader_scores_the_lab_on_released_results(hub, tmp_path):
    course = make_course(tmp_path / "course", SRC, LAB)
    honest = solved(released(course, LAB), KIT.source())
    j = hub["jobs"]
    submit(course, LAB, "bo", {f"{LAB}.ipynb": _with_ids(honest, j["table"], j["adjusted"])})
    # cy hands in bo's notebook, ids and all; dee types in numbers computed on the mock
    submit(course, LAB, "cy", {f"{LAB}.ipynb": _with_ids(honest, j["table"], j["adjusted"])})
    submit(course, LAB, "dee", {f"{LAB}.ipynb": _with_ids(honest, 35.0, 0.71)})
    # eve's own jobs, but the regression is not adjusted for age and blood pressure
    naive = solved(released(course, LAB), KIT.variant(KIT.naive))
    naive = _with_ids(naive, j["eve_table"], j["eve_unadjusted"])
    submit(course, LAB, "eve", {f"{LAB}.ipynb": naive})
    results = by_student(grade(course, LAB, hub["data_root"], {"limits": dict(KIT.limits)}))
    got = {
        s: {t: (r["tasks"][t]["score"], r["tasks"][t]["message"]) for t in TASKS}
        for s, r in results.items()
    }
    assert {s: r["auto_score"] for s, r in results.items()} == {
        "bo": 3.0,
        "cy": 0.0,
        "dee": 0.0,
        "eve": 1.0,
    }
    assert "not one of your sandbox jobs" in got["cy"]["diabetes_effect"][1], got
    assert "no sandbox job id" in got["dee"]["rates"][1], got
    assert "is not the logit regression" in got["eve"]["diabetes_effect"][1], got
    assert results["bo"]["tasks"]["reflection"]["score"] is None  # graded by hand
