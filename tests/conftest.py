"""Shared pytest fixtures.

Index of fixtures (keep this list in step with the code):

- ``repo_root``      the checkout's root folder (Path)
- ``demo_config``    the demo course configuration, validated (CourseConfig)
- ``artifacts_dir``  ``artifacts/<test-name>/``: screenshots and logs kept after the run
"""

from __future__ import annotations

import re
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
