"""medai.hub.formgrader_guard in a real Jupyter server with nbgrader's formgrader, no hub.

Without a grading service to forward to, the formgrader's Autograde must refuse, naming the
grading page, and run nothing: its route wins over nbgrader's. nbgrader's Validate runs for the
course's source notebooks only. (With the hub, forwarding to the grading service is tested in
test_grading_service.py.)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest

from medai.hub.launcher import free_port
from medai.testing.course import make_course, submit

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "data" / "labs" / "hello"


@pytest.fixture
def formgrader(tmp_path):
    course = make_course(tmp_path / "course", HELLO, "hello", course_id="medai101")
    marker = tmp_path / "MARKER-submitted-code-ran"
    nb = nbformat.read(course / "release" / "hello" / "hello.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "double_answer":
            cell.source = (
                f"open({str(marker)!r}, 'w').write('ran')\ndef double(x):\n    return 2 * x"
            )
    submit(course, "hello", "bob", {"hello.ipynb": nb})
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter-server")),
            "--allow-root",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={course}",
            f"--IdentityProvider.token={token}",
            # what medai.hub.hubconfig.formgrader_guard_args puts on the formgrader's command line
            "--ServerApp.jpserver_extensions=medai.hub.formgrader_guard=True",
            "--MedaiFormgraderGuard.grading_page=/services/medai-grading/",
        ],
        cwd=course,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            if client.get("/api/status").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (
            tmp_path / "server.log"
        ).read_text()[-3000:]
        time.sleep(0.3)
    try:
        yield client, course, marker
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
        log.close()


def test_autograde_refuses_and_runs_nothing_without_a_grading_service(formgrader):
    client, course, marker = formgrader
    assert client.get("/formgrader/api/status").status_code == 200  # nbgrader's formgrader is on
    r = client.post("/formgrader/api/submission/hello/bob/autograde")
    assert r.status_code == 200
    reply = r.json()
    assert reply["success"] is False
    assert "Autograde does not run submitted code in the formgrader" in reply["error"]
    assert "/services/medai-grading/" in reply["error"]
    assert not marker.exists()
    assert not (course / "autograded").exists()  # nbgrader's autograde never started


def test_validate_runs_source_notebooks_only(formgrader):
    client, course, marker = formgrader
    refused = client.post(
        "/assignments/validate", json={"path": "submitted/bob/hello/hello.ipynb"}
    ).json()
    assert refused["success"] is False
    assert "validates only the course's source notebooks" in refused["value"]
    sneaky = client.post(
        "/assignments/validate", json={"path": "source/../submitted/bob/hello/hello.ipynb"}
    ).json()
    assert sneaky["success"] is False
    assert not marker.exists()
    ok = client.post("/assignments/validate", json={"path": "source/hello/hello.ipynb"}).json()
    assert ok["success"] is True, ok  # instructors still validate their own notebooks
