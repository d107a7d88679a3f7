"""Grading runs (the grading service's core) without a hub: nbgrader's collect from a trusted
inbound, then the secure pipeline, one run per lab; and the service's place in the hub settings.

The hub, the browser and the formgrader's Autograde button are in test_grading_service.py.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import nbformat
import pytest

from medai.autograder import GradingError
from medai.autograder.runs import GradingRuns
from medai.hub.hubconfig import Ports, build_hub_settings
from medai.hub.layout import StateLayout
from medai.hub.roles import hub_roles
from medai.isolation.bwrap import Software
from medai.testing.course import make_course, solved

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "data" / "labs" / "hello"
COURSE = "medai101"


def _inbound_submission(exchange: Path, student: str, nb: nbformat.NotebookNode) -> Path:
    """A submission as the exchange keeper leaves it in the trusted inbound."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    d = exchange / COURSE / "inbound" / f"{student}+hello+{now}+r1"
    d.mkdir(parents=True)
    nbformat.write(nb, d / "hello.ipynb")
    (d / "timestamp.txt").write_text(now)
    return d


@pytest.fixture
def course(tmp_path):
    cdir = make_course(tmp_path / "course", HELLO, "hello", course_id=COURSE)
    # What `medai up` writes: a config file the grading service must never execute.
    canary = tmp_path / "config-was-executed"
    (cdir / "nbgrader_config.py").write_text(
        f"open({str(canary)!r}, 'w').write('x')\nc = get_config()  # noqa\n"
        f"c.CourseDirectory.course_id = {COURSE!r}\n"
    )
    release = nbformat.read(cdir / "release" / "hello" / "hello.ipynb", as_version=4)
    source = nbformat.read(cdir / "source" / "hello" / "hello.ipynb", as_version=4)
    exchange = tmp_path / "exchange"
    (exchange / COURSE / "inbound").mkdir(parents=True)
    runs = GradingRuns(cdir, COURSE, exchange, {"hello": "Hello"}, workers=2)
    return runs, solved(release, source), release, canary


@pytest.mark.slow
def test_run_collects_and_grades_one_run_per_lab(course):
    runs, honest, wrong, canary = course
    _inbound_submission(runs.exchange_root, "alice", honest)
    _inbound_submission(runs.exchange_root, "bob", wrong)
    assert [lab["received"] for lab in runs.overview()] == [["alice", "bob"]]

    run, started = runs.start("hello", user="teacher")
    again, started_again = runs.start("hello", student="alice", user="helper")
    assert started and not started_again and again is run  # the running one comes back
    runs.wait(run, timeout=300)
    assert run.state == "done", run.error
    assert (run.total, run.done, run.current) == (2, 2, [])
    rows = {r["student"]: r for r in run.results}
    assert (rows["alice"]["score"], rows["alice"]["max"], rows["alice"]["status"]) == (
        1,
        1,
        "graded",
    )
    assert rows["bob"]["score"] == 0 and any(
        "NotImplementedError" in m for m in rows["bob"]["messages"]
    )
    assert "Collecting submission: alice hello" in run.collect_log
    assert not canary.exists(), "the course's nbgrader_config.py was executed"
    overview = runs.overview()[0]
    assert (overview["collected"], overview["graded"]) == (2, 2)

    # once finished, a new run starts; unchanged submissions are kept, not regraded
    second, started = runs.start("hello", student="alice", user="teacher")
    assert started and second is not run
    runs.wait(second, timeout=300)
    assert second.state == "done" and second.skipped == ["alice"] and second.total == 0
    assert [r["graded_now"] for r in second.results] == [False]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["submitted", "autograded"])
def test_links_planted_in_the_course_folder_stop_the_run(course, tmp_path, where):
    """The course folder is writable from the formgrader's sandbox: a link there must not make
    the trusted grader (root, on the host) collect or write through it."""
    runs, honest, _, _ = course
    _inbound_submission(runs.exchange_root, "alice", honest)
    target = tmp_path / "host-folder"
    target.mkdir()
    (runs.course_dir / where).mkdir(exist_ok=True)
    (runs.course_dir / where / "alice").symlink_to(target)
    run, _ = runs.start("hello")
    runs.wait(run, timeout=300)
    assert run.state == "failed"
    assert f"{where}/alice is a symbolic link" in run.error
    assert list(target.iterdir()) == []  # nothing was written through the link


def test_unknown_lab_student_and_odd_ids_are_refused_clearly(course):
    runs = course[0]
    with pytest.raises(
        GradingError, match=r"lab 'nope' is not a lab of this course \(labs: hello\)"
    ):
        runs.start("nope")
    with pytest.raises(GradingError, match=r"no submission of 'hello' from 'carol'"):
        runs.start("hello", student="carol")
    for bad in ("*", "a/b", "../x", ""):
        with pytest.raises(GradingError, match="is not valid"):
            runs.start("hello", student=bad)


def test_hub_settings_run_the_grading_service_outside_every_sandbox(demo_config, tmp_path):
    software = Software(paths=("/opt/py",), path_env="/usr/bin")
    settings = build_hub_settings(
        demo_config,
        StateLayout(tmp_path),
        ip="127.0.0.1",
        ports=Ports(8000, 8081, 8001, 9000, 9001),
        proxy_command=["chp"],
        software=software,
    )
    services = {s["name"]: s for s in settings["JupyterHub"]["services"]}
    grading = services["medai-grading"]
    assert grading["url"] == "http://127.0.0.1:9001"  # loopback only
    assert grading["command"][:3] == [sys.executable, "-m", "medai.hub.grading"]  # no bwrap
    assert grading["oauth_client_allowed_scopes"] == []
    fg = services["medai101"]
    assert "--ServerApp.jpserver_extensions=medai.hub.formgrader_guard=True" in fg["command"]
    assert (
        "--MedaiFormgraderGuard.grading_api=http://127.0.0.1:9001/services/medai-grading/api"
        in fg["command"]
    )
    assert fg["oauth_client_allowed_scopes"] == ["access:services!service=medai-grading"]
    roles = {r["name"]: r for r in hub_roles(demo_config)}
    assert "access:services!service=medai-grading" in roles["medai101-staff"]["scopes"]
    assert roles["medai101-staff"]["groups"] == ["formgrade-medai101"]
    assert roles["medai101-grading"] == {
        "name": "medai101-grading",
        "description": "The grading service's own token: no hub API rights",
        "scopes": [],
        "services": ["medai-grading"],
    }
    trainee_roles = [
        r for r in hub_roles(demo_config) if "nbgrader-medai101" in r.get("groups", [])
    ]
    assert trainee_roles == []
