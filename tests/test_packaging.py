"""The package as a wheel installs it, away from the checkout: it finds its own data and default
policy, says plainly which repository content it lacks, and its self-study data cache key follows
every module that shapes the data. Nothing here edits the repository: the wheel is built from a
copy and unpacked into a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # builds a wheel and starts interpreters


def _run(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDAI_", "PYTHON"))}
    env["PYTHONPATH"] = str(site)  # ahead of the checkout's editable install
    env["XDG_CACHE_HOME"] = str(cwd / "cache")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _medai(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = f"import sys; sys.argv = ['medai', *{list(args)!r}]; from medai.cli import main; main()"
    return _run(site, code, cwd)


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source, unpacked as pip would into site-packages."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(
        REPO_ROOT / "medai", src / "medai", ignore=shutil.ignore_patterns("__pycache__")
    )
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(root / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = (root / "dist").glob("medai-*.whl")
    site = root / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    # A decoy where the old lookup (parents[2] of medai/autograder/policy.py) looked: an
    # installed package must not pick up whatever lies beside site-packages.
    (site / "autograder").mkdir()
    (site / "autograder" / "policy.yaml").write_text("limits: {wall_s: 7}\n")
    return site


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working folder that is no checkout."""
    return tmp_path


def test_wheel_finds_its_package_data_and_default_policy(wheel_site, elsewhere):
    code = """
import json, medai
from medai import paths
from medai.autograder.policy import Policy, load_policy
from medai.hub import grading, launcher, staffpages
print(json.dumps({
    "medai": medai.__file__,
    "checkout": str(paths.checkout()),
    "ui": grading.UI_DIR.joinpath("index.html").is_file(),
    "templates": (paths.package_file("hub", "templates", "nbconvert")).is_dir(),
    "hub_config": launcher.HUB_CONFIG_FILE.is_file(),
    "policy_is_default": load_policy() == Policy(),
    "wall_s": load_policy().limits.wall_s,
}))
"""
    res = _run(wheel_site, code, elsewhere)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["medai"].startswith(str(wheel_site)), got  # the wheel, not the checkout
    assert got["checkout"] == "None"
    assert got["ui"] and got["templates"] and got["hub_config"], got
    assert got["policy_is_default"] and got["wall_s"] == 120, got


@pytest.mark.parametrize(
    "args, words",
    [
        (["up"], ["error: the demo course not found", "courses/demo-course.yaml", "--config"]),
        (["site", "build"], ["error: the course pages not found", "inside a checkout"]),
    ],
)
def test_wheel_says_which_repository_content_is_missing(wheel_site, elsewhere, args, words):
    res = _medai(wheel_site, elsewhere, *args)
    assert res.returncode != 0
    for word in words:
        assert word in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_wheel_data_info_says_where_the_card_is(wheel_site, elsewhere):
    res = _medai(wheel_site, elsewhere, "data", "info", "ehr")
    assert res.returncode == 0, res.stderr
    assert "datasets/synthetic/ehr.md" in res.stdout and "checkout" in res.stdout


def test_wheel_inside_a_checkout_reads_its_content(wheel_site, tmp_path):
    """Installed, run inside a checkout: repository content is read from the current folder."""
    (tmp_path / "datasets" / "synthetic").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "datasets/synthetic/ehr.md", tmp_path / "datasets/synthetic/ehr.md")
    res = _medai(wheel_site, tmp_path, "data", "info", "ehr")
    assert res.returncode == 0, res.stderr
    assert "card: datasets/synthetic/ehr.md" in res.stdout


_VERSIONS = (
    "import json; from medai.synthetic.core import available, generator_version; "
    "print(json.dumps({n: generator_version(n) for n in available()}))"
)


def _versions(site: Path, cwd: Path) -> dict[str, str]:
    res = _run(site, _VERSIONS, cwd)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("shared", ["_cohort", "_tables", "_io", "core"])
def test_changing_a_shared_module_changes_the_cache_key(wheel_site, tmp_path, shared):
    """Editing one shared generator module (in a copy of the installed package) changes the
    self-study cache key of exactly the datasets whose generators import it."""
    from medai.synthetic.core import generator_modules

    before = _versions(wheel_site, tmp_path)
    site = tmp_path / "site"
    shutil.copytree(wheel_site, site)
    module = site / "medai" / "synthetic" / f"{shared}.py"
    module.write_text(module.read_text() + "\n# a change that may shape the data\n")
    after = _versions(site, tmp_path)
    users = {n for n in before if f"medai.synthetic.{shared}" in generator_modules(n)}
    assert users, f"no dataset uses {shared}"
    assert {n for n in before if before[n] != after[n]} == users
