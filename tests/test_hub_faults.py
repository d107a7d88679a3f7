"""Bad input and faults: each gives a clear message, and the hub keeps serving everyone else."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medai.config import parse_config
from medai.hub.launcher import (
    LaunchError,
    free_port,
    prepare_course,
    prepare_state,
    start_hub,
)
from medai.testing.hub import HubUser

MEDAI = [sys.executable, "-m", "medai.cli"]


def course_file(tmp_path: Path, **extra) -> Path:
    data = {
        "course": {"id": "faults", "title": "Faults"},
        "people": {"instructors": ["teacher"], "trainees": ["alice", "bob"]},
        **extra,
    }
    p = tmp_path / "course.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [
                *MEDAI,
                "up",
                "--config",
                str(course_file(tmp_path)),
                "--port",
                str(port),
                "--state",
                str(tmp_path / "state"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert res.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr
    assert "--port" in res.stderr
    assert not (tmp_path / "state").exists()  # nothing was prepared


def test_unusable_state_folder_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = subprocess.run(
        [
            *MEDAI,
            "up",
            "--config",
            str(course_file(tmp_path)),
            "--port",
            "0",
            "--state",
            str(blocker / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "--port 0 is not a TCP port" in res.stderr
    cfg = parse_config(yaml.safe_load(course_file(tmp_path).read_text()))
    with pytest.raises(LaunchError, match=r"cannot create the state folder .*a-file/state"):
        prepare_state(cfg, blocker / "state")


def test_read_only_state_folder_is_refused(tmp_path):
    """A read-only mount refuses writes to root too, so this runs the same in CI (as root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    res = subprocess.run(
        [
            "bwrap",
            "--dev-bind",
            "/",
            "/",
            "--ro-bind",
            str(ro),
            str(ro),
            "--",
            *MEDAI,
            "up",
            "--config",
            str(course_file(tmp_path)),
            "--port",
            str(free_port()),
            "--state",
            str(ro / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"cannot create the state folder {ro / 'state'}: Read-only file system" in res.stderr
    assert "--state" in res.stderr


def test_a_lab_that_fails_to_release_is_reported_and_the_others_are_released(tmp_path, repo_root):
    labs = tmp_path / "labs"
    (labs / "broken").mkdir(parents=True)
    (labs / "broken" / "broken.ipynb").write_text("{ this is not json")
    (labs / "empty").mkdir()
    import shutil

    shutil.copytree(repo_root / "tests" / "data" / "labs" / "hello", labs / "hello")
    path = course_file(
        tmp_path,
        labs=[
            {"id": "broken", "title": "B", "source": "labs/broken"},
            {"id": "empty", "title": "E", "source": "labs/empty"},
            {"id": "hello", "title": "H", "source": "labs/hello"},
        ],
    )
    cfg = parse_config(yaml.safe_load(path.read_text()))
    layout = prepare_state(cfg, tmp_path / "state")
    report = prepare_course(cfg, layout, path.parent)
    assert report.released == ["hello"]
    assert "generate_assignment failed" in report.failed["broken"]
    assert "no notebook found in labs/empty" in report.failed["empty"]
    assert (layout.exchange("faults") / "outbound" / "hello" / "hello.ipynb").exists()


def test_medai_up_stops_cleanly_on_ctrl_c_and_keeps_state(tmp_path):
    """`medai up` as a user runs it: Ctrl-C, run again, the trainee's work is still there."""
    cfg_path = course_file(tmp_path)
    state = tmp_path / "state"
    port = free_port()

    def up():
        proc = subprocess.Popen(
            [
                *MEDAI,
                "up",
                "--config",
                str(cfg_path),
                "--port",
                str(port),
                "--state",
                str(state),
                "--demo",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C to stop." in line or (not line and proc.poll() is not None):
                break
        assert "MedAI Lab is running" in "".join(lines), "".join(lines)
        return proc, "".join(lines)

    proc, out = up()
    [password] = re.findall(r"trainee +alice +(\S+)", out)  # random, printed by --demo
    assert "medai-demo" not in password
    url = f"http://localhost:{port}"  # the hub; alice's server is on alice.localhost
    grading = f"http://medai-grading--service.localhost:{port}/services/medai-grading/"
    assert f"grading page (instructors, TAs): {grading}" in out
    alice = HubUser(url, "alice", password)
    alice.start_server()
    assert alice.execute("open('/home/alice/notes.txt', 'w').write('kept')").error is None
    alice.close()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, rest
    assert "Stopped (hub exit code 0)" in rest
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "processes left running after Ctrl-C"

    proc, out = up()
    try:
        assert re.findall(r"trainee +alice +(\S+)", out) == [password]  # kept, printed again
        alice = HubUser(url, "alice", password)
        alice.start_server()
        res = alice.execute("print(open('/home/alice/notes.txt').read())")
        assert res.stdout.strip() == "kept"
        alice.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)


def test_a_crashed_server_does_not_stop_the_others(tmp_path):
    cfg_path = course_file(tmp_path)
    cfg = parse_config(yaml.safe_load(cfg_path.read_text()))
    hub, pw, _ = start_hub(
        cfg,
        config_path=cfg_path,
        state=tmp_path / "state",
        port=free_port(),
        demo=True,
        echo=lambda m: None,
        settings_hook=lambda s: s["Spawner"].update(poll_interval=2),
    )
    try:
        alice, bob = HubUser(hub.url, "alice", pw["alice"]), HubUser(hub.url, "bob", pw["bob"])
        alice.start_server()
        bob.start_server()
        # alice's code kills her own Jupyter server (the kernel's parent process)
        try:
            alice.execute("import os, signal; os.kill(os.getppid(), signal.SIGKILL)", timeout=10)
        except Exception:
            pass  # the connection dies with the server
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not alice.client.get("/hub/api/users/alice").json().get("servers"):
                break
            time.sleep(1)
        assert not alice.client.get("/hub/api/users/alice").json().get("servers")
        # bob works on, undisturbed
        assert bob.execute("print(6 * 7)").stdout.strip() == "42"
        # alice is told her server is not running, and can start it again
        page = alice.client.get("/user/alice/lab")
        assert "not running" in page.text or "/hub/spawn" in str(page.url)
        alice.start_server()
        assert alice.execute("print('back')").stdout.strip() == "back"
        alice.close()
        bob.close()
    finally:
        hub.stop()
