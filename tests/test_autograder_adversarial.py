"""The autograder against hostile submissions: one batch, graded once, with 2 workers.

The batch holds honest submissions (on time, late, late with an extension), an all-wrong one,
and one submission per threat (tests/adversarial/attacks.py), each an all-wrong submission plus
the attack. Every attack must score 0 on every automatically graded task, be flagged where it
touched graded cells, and change nothing outside its sandbox; the honest ones must get full
marks in the same batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from typer.testing import CliRunner

from medai.autograder.policy import Policy
from medai.synthetic.core import generate
from medai.synthetic.secret import ensure_secret
from medai.testing.course import by_student, environment, grade, make_course, solved, submit
from tests.adversarial import attacks

pytestmark = pytest.mark.slow


ATTACKS, AUTO_TASKS, Ctx = attacks.ATTACKS, attacks.AUTO_TASKS, attacks.Ctx

REPO = Path(__file__).resolve().parent.parent
DUE = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
SECRET = "tok-" + hashlib.sha256(b"medai-grader-secret").hexdigest()[:24]


def _snapshot(*roots: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            rel = str(p.relative_to(root))
            if p.is_file() and not rel.startswith(skip) and "__pycache__" not in rel:
                out[f"{root}:{rel}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class _Listener:
    """A TCP server on the host's loopback that records any connection (there must be none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    data_root = base / "data"
    key_file = base / "secrets" / "data.key"  # where `medai up` keeps it: <state>/secrets
    key, _ = ensure_secret(key_file)
    generate("ehr", data_root, n=4000, seed=0, secret=key)
    course = make_course(base / "course", REPO / "labs" / "pilot", "pilot")
    canary = base / "canary"
    canary.mkdir()
    release = nbformat.read(course / "release/pilot/pilot.ipynb", as_version=4)
    source = nbformat.read(course / "source/pilot/pilot.ipynb", as_version=4)
    honest = solved(release, source)
    on_time = DUE - dt.timedelta(hours=1)
    submit(course, "pilot", "honest", {"pilot.ipynb": honest}, timestamp=on_time)
    late = DUE + dt.timedelta(days=2, hours=12)
    submit(course, "pilot", "honest_late", {"pilot.ipynb": honest}, timestamp=late)
    submit(course, "pilot", "honest_ext", {"pilot.ipynb": honest}, timestamp=late)
    submit(course, "pilot", "all_wrong", {"pilot.ipynb": release}, timestamp=on_time)
    listener = _Listener()
    ctx = Ctx(str(course), str(data_root), SECRET, listener.port, str(canary), str(key_file))
    for attack in ATTACKS:
        files = attack.build(release, ctx)
        extra = {k: v for k, v in files.items() if isinstance(v, bytes)}
        nbs = {k: v for k, v in files.items() if not isinstance(v, bytes)}
        submit(course, "pilot", f"x_{attack.name}", nbs, timestamp=on_time, extra=extra)

    policy = Policy.model_validate(
        {
            "limits": {"wall_s": 30, "cpu_s": 25, "memory_mb": 2048, "scratch_mb": 128},
            "submission": {"notebook_mb": 2},
            "due": {"pilot": DUE.isoformat()},
            "extensions": {"honest_ext": {"pilot": 72}},
        }
    )
    protected = (course / "source", course / "release", course / "submitted", data_root)
    package = REPO / "medai" / "autograder"  # (the rest of the package is others' to edit)
    before = _snapshot(*protected, package)
    try:
        with environment(MEDAI_GRADER_TOKEN=SECRET, JUPYTERHUB_API_TOKEN=SECRET):
            summary = grade(course, "pilot", data_root, policy)
    finally:
        listener.close()
    after = _snapshot(*protected, package)
    results = by_student(summary)
    return {
        "course": course,
        "data_root": data_root,
        "summary": summary,
        "results": results,
        "before": before,
        "after": after,
        "listener": listener,
        "canary": canary,
        "policy": policy,
        "key": key,
    }


def _log(batch, student: str) -> str:
    return (batch["course"] / "grading/pilot/logs" / f"{student}.log").read_text()


def test_every_submission_in_the_batch_was_graded(batch):
    expected = {"honest", "honest_late", "honest_ext", "all_wrong"} | {
        f"x_{a.name}" for a in ATTACKS
    }
    assert set(batch["results"]) == expected
    results_dir = batch["course"] / "grading/pilot/results"
    assert {p.stem for p in results_dir.glob("*.json")} == expected


@pytest.mark.parametrize("student", ["honest", "honest_late", "honest_ext"])
def test_honest_reference_submission_earns_full_marks(batch, student):
    r = batch["results"][student]
    assert r["status"] == "graded", r["messages"]
    for task in AUTO_TASKS:
        assert r["tasks"][task]["score"] == r["tasks"][task]["max"], r["tasks"][task]
    assert r["tasks"]["reflection"]["score"] is None  # manual
    assert r["auto_score"] == 7.0
    assert r["tamper"] == []


def test_all_wrong_submission_scores_zero(batch):
    r = batch["results"]["all_wrong"]
    assert r["status"] == "graded"
    assert all(r["tasks"][t]["score"] == 0 for t in AUTO_TASKS)
    assert r["tasks"]["reflection"]["score"] == 0  # "YOUR ANSWER HERE" left as it was
    assert r["tamper"] == []


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_scores_zero_and_is_flagged(batch, attack):
    r = batch["results"][f"x_{attack.name}"]
    for task in AUTO_TASKS:
        assert r["tasks"][task]["score"] == 0, (task, r["tasks"][task])
        assert r["tasks"][task]["max"] == {"ckd_rate": 1, "egfr": 2, "ckd_model": 4}[task]
    kinds = {e["kind"] for e in r["tamper"]}
    assert attack.flags <= kinds, (attack.flags, r["tamper"])
    if attack.status is not None:
        assert r["status"] == attack.status, (r["status"], r["messages"])
    if r["status"] != "graded":
        assert r["messages"], "a non-graded status must say why"


def test_nothing_changed_outside_the_sandboxes(batch):
    assert batch["before"] == batch["after"]
    assert list(batch["canary"].iterdir()) == []
    assert not (batch["course"] / "pwned.txt").exists()
    assert not Path("/tmp/medai-planted.py").exists()
    assert not Path("/tmp/medai-pickle-ran").exists()
    assert batch["listener"].connections == 0


def test_no_secret_reached_any_output(batch):
    course = batch["course"]
    hidden = (batch["data_root"] / "hidden/ehr/outcomes_test.csv").read_text().splitlines()[1]
    written = list((course / "grading/pilot").rglob("*")) + list((course / "autograded").rglob("*"))
    texts = [p.read_text(errors="replace") for p in written if p.is_file()]
    assert texts
    for text in texts:
        assert SECRET not in text
        assert hidden not in text  # a row of the hidden labels
        assert "HIDDEN_CASES" not in text
    log = _log(batch, "x_read_secrets")
    assert "FOUND []" in log
    for text in texts:
        assert batch["key"].hex() not in text


def test_regenerated_labels_score_no_better_than_an_honest_model(batch):
    log = _log(batch, "x_regenerate_labels")
    assert "KEY FOUND False" in log
    looked_up = re.search(r"LOOKED UP (\d+) OF (\d+)", log)
    assert looked_up, log[-2000:]  # the attack ran to the end ...
    found, wanted = map(int, looked_up.groups())
    assert found == wanted > 1000  # ... and had a "label" for every test patient
    attack = batch["results"]["x_regenerate_labels"]["tasks"]["ckd_model"]
    honest = batch["results"]["honest"]["tasks"]["ckd_model"]
    assert attack["score"] == 0 < honest["score"] == honest["max"], (attack, honest)


def test_gradebook_holds_the_trusted_scores(batch):
    from nbgrader.api import Gradebook

    course = batch["course"]
    with Gradebook(f"sqlite:///{course}/gradebook.db", "medai101") as gb:
        for student, r in batch["results"].items():
            for gid, t in r["tasks"].items():
                g = gb.find_grade(gid, "pilot", "pilot", student)
                assert g.auto_score == t["score"], (student, gid)
        tampered = gb.find_grade("ckd_rate", "pilot", "pilot", "x_edit_check")
        assert tampered.needs_manual_grade  # flagged for the instructor


def test_limits_were_the_ones_that_stopped_the_bombs(batch):
    assert "memory limit hit" in _log(batch, "x_memory_bomb")
    assert "process limit hit" in _log(batch, "x_process_bomb")
    disk = _log(batch, "x_disk_bomb")
    assert "file size limit" in disk and "scratch full" in disk
    assert "blocked 127.0.0.1" in _log(batch, "x_network")
    w = _log(batch, "x_write_outside")
    assert "WROTE" not in w and "gradebook" in w
    stalled = batch["results"]["x_stall"]
    assert stalled["sandbox"]["wall_s"] < batch["policy"].limits.wall_s + 10


def test_tamper_report_names_cells(batch):
    r = batch["results"]["x_edit_check"]
    assert {"cell": "ckd_rate", "kind": "edited"} in [
        {"cell": e["cell"], "kind": e["kind"]} for e in r["tamper"]
    ]
    ipy = batch["results"]["x_ipython_hooks"]
    assert "no answer" in ipy["tasks"]["egfr"]["message"]


def test_bad_input_gets_a_clear_message(batch):
    res = batch["results"]
    assert "not valid JSON" in res["x_invalid_json"]["messages"][0]
    assert "nbformat 4" in res["x_wrong_nbformat"]["messages"][0]
    assert any("pilot.ipynb is missing" in m for m in res["x_missing_notebook"]["messages"])
    assert any("pilot-final.ipynb" in m for m in res["x_renamed_notebook"]["messages"])
    assert "limit" in res["x_huge_notebook"]["messages"][0]
    assert any("extra file" in m and "big.bin" in m for m in res["x_extra_files"]["messages"])


def test_late_policy_and_extension(batch):
    late = batch["results"]["honest_late"]
    assert late["late_fraction"] == pytest.approx(0.3)  # 2.5 days late: 3 started days x 10 %
    assert late["late_penalty"] == pytest.approx(2.1)
    assert batch["results"]["honest_ext"]["late_penalty"] == 0
    assert batch["results"]["honest"]["late_penalty"] == 0


def test_export_csv(batch, tmp_path):
    from medai.cli import app

    out = tmp_path / "grades.csv"
    res = CliRunner().invoke(
        app, ["grades", "export", "--course", str(batch["course"]), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    import csv

    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert len(rows) == len(batch["results"])
    assert float(rows["honest_late"]["final_score"]) == pytest.approx(4.9)
    assert float(rows["honest"]["final_score"]) == 7.0
    assert rows["x_stall"]["status"] == "timeout"
    assert int(rows["x_edit_check"]["tampered_cells"]) >= 1


def test_feedback_shows_results_without_hidden_tests(batch):
    course = batch["course"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("nbgrader")),
            "generate_feedback",
            "pilot",
            "--student",
            "honest",
        ],
        cwd=course,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    html = (course / "feedback/honest/pilot/pilot.html").read_text()
    assert "43 of 43 grader-supplied inputs right" in html
    assert "AUROC" in html and "on the hidden split" in html
    assert "HIDDEN_CASES" not in html and "BEGIN HIDDEN TESTS" not in html


def test_resume_regrades_only_what_is_missing(batch):
    course = batch["course"]
    (course / "grading/pilot/results/honest.json").unlink()
    summary = grade(course, "pilot", batch["data_root"], batch["policy"])
    assert [r["student"] for r in summary.graded] == ["honest"]
    assert summary.graded[0]["auto_score"] == 7.0
    assert len(summary.skipped) == len(batch["results"]) - 1
    assert (
        json.loads((course / "grading/pilot/results/honest.json").read_text())["auto_score"] == 7.0
    )


def test_a_second_batch_of_the_same_lab_is_refused(batch):
    import fcntl

    from medai.autograder import GradingError

    with open(batch["course"] / "grading/pilot/.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(GradingError, match="another `medai grade pilot` is running"):
            grade(batch["course"], "pilot", batch["data_root"], batch["policy"])
