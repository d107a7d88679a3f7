"""Class sessions and culling on a real hub: servers started ahead of a class, who may open a
session, and the idle culler.

This module starts its own hub (a class session starts every trainee's server, which would
disturb the shared ``running_hub``): trainees ann and ben, instructor teacher, servers idle for
25 s culled. The instructor opens a session on the class page in Chromium; both servers start in
the background; ann logs in and lands in her running JupyterLab without a spawn; ben's unused
server is kept warm past the idle time while the session is open; once it is closed,
jupyterhub-idle-culler stops both idle servers. Trainees get 403 from the class
service, and a forged (no XSRF token) or unauthenticated request opens nothing.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from medai.config import parse_config
from medai.hub.launcher import free_port, start_hub
from medai.hub.roles import CLASS_SERVICE
from medai.testing.browser import log_in
from medai.testing.hub import HubUser, loopback_client, origins_of

pytestmark = [pytest.mark.slow]

IDLE_SECONDS = 25
COURSE = {
    "course": {"id": "cls", "title": "Class start"},
    "people": {"instructors": ["teacher"], "trainees": ["ann", "ben"]},
    "profiles": [{"name": "cpu", "display_name": "CPU", "cpu_limit": 1, "mem_limit": "1G"}],
    "servers": {
        "concurrent_starts": 2,
        "idle_server_minutes": IDLE_SECONDS / 60,
        "class_memory_reserve_mb": 0,
    },
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classes")
    path = tmp / "course.yaml"
    path.write_text(yaml.safe_dump(COURSE))
    hub, passwords, _ = start_hub(
        parse_config(COURSE),
        config_path=path,
        state=tmp / "state",
        port=free_port(),
        demo=True,
        echo=print,
    )
    hub.passwords = passwords
    hub.page = hub.service_url(CLASS_SERVICE) + "/"  # the service's own origin
    try:
        yield hub
    finally:
        hub.stop()


def medai_class(hub, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medai.cli", "class", *args, "--state", str(hub.layout.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def sessions(hub) -> dict:
    """The class service's JSON, read with the command line's token."""
    info = json.loads(hub.layout.class_cli_file.read_text())
    r = httpx.get(
        info["url"] + "api/sessions",
        headers={"Authorization": f"token {info['token']}"},
        timeout=60,
    )
    r.raise_for_status()
    return r.json()


def server_of(hub, user: str) -> dict | None:
    """The user's running server as the hub's database records it (read-only; asking the API
    as the user would log them in, which counts as using their server)."""
    db = sqlite3.connect(f"file:{hub.layout.hub / 'jupyterhub.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT s.started, s.server_id FROM spawners s JOIN users u ON s.user_id = u.id "
            "WHERE u.name = ? AND s.name = ''",
            (user,),
        ).fetchone()
    finally:
        db.close()
    return {"started": row[0]} if row and row[1] is not None else None


def wait_for(predicate, timeout: float, what: str, step: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def starts_of(hub, user: str) -> list[dict]:
    timings = hub.layout.hub / "logs" / "timings.jsonl"
    if not timings.exists():
        return []
    rows = [json.loads(line) for line in timings.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["user"] == user]


def test_cli_token_file_is_private_and_can_only_call_the_class_service(hub):
    path = hub.layout.class_cli_file
    assert path.stat().st_mode & 0o777 == 0o600
    assert hub.layout.settings_file.stat().st_mode & 0o777 == 0o600  # it holds the token too
    token = json.loads(path.read_text())["token"]
    auth = {"Authorization": f"token {token}"}
    # the token works for the class service (through the proxy as well) ...
    with loopback_client(origins_of(hub.url), timeout=60) as c:
        assert c.get(hub.page + "api/sessions", headers=auth).status_code == 200
    # ... and for nothing else of the hub
    for url in ("/hub/api/users", "/hub/api/users/ann", "/hub/api/groups"):
        assert httpx.get(hub.url + url, headers=auth, timeout=60).status_code == 403, url
    r = httpx.post(hub.url + "/hub/api/users/ann/server", headers=auth, timeout=60)
    assert r.status_code == 403


def test_trainees_and_strangers_cannot_use_the_class_service(hub):
    ann = HubUser(hub.url, "ann", hub.passwords["ann"])
    try:
        assert ann.client.get(hub.page).status_code == 403  # after the OAuth round trip
        assert ann.client.get(hub.page + "api/sessions").status_code == 403
        r = ann.client.post(hub.page + "open", data={"group": "nbgrader-cls", "hours": "1"})
        assert r.status_code == 403
    finally:
        ann.close()
    with loopback_client(origins_of(hub.url), timeout=60) as anonymous:
        assert anonymous.get(hub.page + "api/sessions").status_code == 403
        r = anonymous.post(hub.page + "api/sessions", json={"group": "nbgrader-cls"})
        assert r.status_code == 403
        r = anonymous.post(
            hub.page + "api/sessions", json={}, headers={"Authorization": "token not-a-token"}
        )
        assert r.status_code == 403
    # the instructor's own cookie, without the form's XSRF token (a cross-site form post)
    teacher = HubUser(hub.url, "teacher", hub.passwords["teacher"])
    try:
        assert teacher.client.get(hub.page).status_code == 200
        forged = teacher.client.post(hub.page + "open", data={"group": "nbgrader-cls"})
        assert forged.status_code == 403
        forged_api = teacher.client.post(hub.page + "api/sessions", json={})
        assert forged_api.status_code == 403
    finally:
        teacher.close()
    assert sessions(hub)["sessions"] == []  # none of it opened anything


@pytest.mark.browser
def test_an_opened_class_starts_servers_and_a_login_lands_in_a_running_lab(
    hub, browser, artifacts_dir
):
    # --- the instructor opens a session on the class page ----------------------------------
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(hub.page)  # -> the hub's login page -> back to the class page
    log_in(page, "teacher", hub.passwords["teacher"])
    page.wait_for_selector("#memory")
    assert page.url == hub.page
    assert page.locator("#memory").inner_text()  # how many fit, before anything starts
    page.fill("input[name=hours]", "1")
    page.click("#open")
    page.wait_for_selector("section.session")
    page.screenshot(path=artifacts_dir / "1-session-opened.png")
    csp = page.goto(hub.page).headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script" not in csp  # no script may run there
    ctx.close()

    # --- both servers start in the background and turn warm ---------------------------------
    def all_warm():
        s = sessions(hub)["sessions"][0]
        return s if s["counts"].get("warm") == 2 else None

    session = wait_for(all_warm, 300, "both servers warm", step=2)
    assert session["opened_by"] == "teacher" and session["users"] == ["ann", "ben"]
    status = medai_class(hub, "status")
    assert status.returncode == 0, status.stderr
    assert "ann" in status.stdout and "warm" in status.stdout
    assert (
        "A warm server holds about" in status.stdout and "more warm server(s) fit" in status.stdout
    )
    mem = sessions(hub)["memory"]
    assert mem["warm_server_mb"] and mem["warm_server_mb"] > 20  # measured from the cgroups
    assert [r["background"] for r in starts_of(hub, "ann")] == [True]
    started = server_of(hub, "ann")["started"]

    # --- ann logs in: JupyterLab, with no spawn of her own ------------------------------------
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url))
    page.goto(hub.url + "/hub/login")
    log_in(page, "ann", hub.passwords["ann"])
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    page.screenshot(path=artifacts_dir / "2-ann-lands-in-jupyterlab.png")
    assert page.url.startswith(hub.server_url("ann") + "/lab")
    assert not [u for u in seen if "/hub/spawn" in u], seen  # never the spawn pages
    assert server_of(hub, "ann")["started"] == started  # the same server
    assert len(starts_of(hub, "ann")) == 1
    ctx.close()

    # --- while the session is open, ben's unused server outlives the idle time ------------------
    ben_started = server_of(hub, "ben")["started"]
    time.sleep(IDLE_SECONDS * 2)
    assert server_of(hub, "ben") == {"started": ben_started}
    assert sessions(hub)["sessions"][0]["servers"]["ben"]["state"] == "warm"
    assert "Culling server" not in hub.log.read_text()

    # --- once it is closed, the idle culler stops both (nobody uses them now) -------------------
    closed = medai_class(hub, "close")
    assert closed.returncode == 0, closed.stderr
    assert "released" in closed.stdout
    for user in ("ann", "ben"):
        wait_for(lambda u=user: server_of(hub, u) is None, IDLE_SECONDS * 2 + 120, user, step=3)
    log = hub.log.read_text()
    assert "Culling server ann" in log and "Culling server ben" in log


def test_a_bad_session_request_says_what_is_wrong(hub):
    info = json.loads(hub.layout.class_cli_file.read_text())
    auth = {"Authorization": f"token {info['token']}"}
    r = httpx.post(
        info["url"] + "api/sessions", json={"group": "formgrade-cls"}, headers=auth, timeout=60
    )
    assert r.status_code == 400 and "nbgrader-cls" in r.json()["error"]
    r = httpx.post(info["url"] + "api/sessions", json={"hours": 100}, headers=auth, timeout=60)
    assert r.status_code == 400 and "at most 24" in r.json()["error"]
    r = httpx.post(info["url"] + "api/sessions/0000/close", json={}, headers=auth, timeout=60)
    assert r.status_code == 404
    missing = subprocess.run(
        [sys.executable, "-m", "medai.cli", "class", "status", "--state", "/nonexistent/state"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "medai up --state" in missing.stderr
    assert Path("/nonexistent/state").exists() is False
