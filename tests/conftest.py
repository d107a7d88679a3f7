"""Shared pytest fixtures.

Index of fixtures (keep this list in step with the code):

- ``repo_root``      the checkout's root folder (Path)
- ``demo_config``    the demo course configuration, validated (CourseConfig)
- ``artifacts_dir``  ``artifacts/<test-name>/``: screenshots and logs kept after the run
- ``running_hub``    (session) the embedded hub started by ``medai.hub.launcher.start_hub`` on
                     a free port with ``tests/data/hub-course.yaml`` (trainees alice, bob and
                     mallory, instructor teacher, TA helper, lab ``hello``, a small dataset of
                     every generator, keyed by the hub's data key) and demo passwords;
                     the hub at ``http://localhost:PORT``, servers and services on subdomains
                     (``running_hub.server_url("alice")``, ``.service_url("hubtest")``)
- ``alice``          (module) trainee alice of ``running_hub``, logged in over HTTP with her
                     server started (``medai.testing.hub.HubUser``: run code in her kernel)
- ``browser``        (session) headless Debian Chromium driven by Playwright
- ``data_key``       (session) the data secret tests generate hidden splits with, as a
                     deployment does: ``$MEDAI_TEST_DATA_KEY`` (64 hex digits) or a fixed key
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from medai.config import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def demo_config():
    return load_config(REPO_ROOT / "courses" / "demo-course.yaml")


@pytest.fixture
def artifacts_dir(request) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    d = REPO_ROOT / "artifacts" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class RunningHub:
    url: str
    passwords: dict
    config: object
    layout: object
    hub: object

    def server_url(self, user: str) -> str:
        return self.hub.server_url(user)

    def service_url(self, name: str) -> str:
        return self.hub.service_url(name)


@pytest.fixture(scope="session")
def running_hub(tmp_path_factory):
    from medai.hub.launcher import free_port, start_hub

    cfg_path = REPO_ROOT / "tests" / "data" / "hub-course.yaml"
    cfg = load_config(cfg_path)
    state = tmp_path_factory.mktemp("hub-state")
    hub, passwords, report = start_hub(
        cfg, config_path=cfg_path, state=state, port=free_port(), demo=True, echo=print
    )
    assert report.released == ["hello"], report.failed
    try:
        yield RunningHub(hub.url, passwords, cfg, hub.layout, hub)
    finally:
        hub.stop()
        logs = REPO_ROOT / "artifacts" / "hub-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(hub.layout.hub / "logs", logs)


@pytest.fixture(scope="module")
def alice(running_hub):
    from medai.testing.hub import HubUser

    user = HubUser(running_hub.url, "alice", running_hub.passwords["alice"])
    user.start_server()
    yield user
    user.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    from medai.testing.browser import launch_chromium

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def data_key() -> bytes:
    from medai.testing.course import lab_data_key

    return lab_data_key()
