"""The grading policy: one schema with help text, its generated reference, defaults declared
once, and how a course's policy file reaches the hub's grading service."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from medai.autograder import GradingError
from medai.autograder.policy import (
    REFERENCE_SECTIONS,
    LimitsModel,
    Policy,
    load_policy,
)
from medai.config import REFERENCE_SECTIONS as CONFIG_SECTIONS
from medai.hub.hubconfig import Ports, build_hub_settings
from medai.hub.launcher import LaunchError, check_grading_policy
from medai.hub.layout import StateLayout
from medai.isolation.bwrap import Software
from medai.isolation.limits import Limits
from medai.reference import PAGES, undocumented


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_reference_page_is_up_to_date(repo_root, page):
    """Fails when a model changed and `medai config docs` was not run (drift check)."""
    committed = (repo_root / "courses" / "reference" / page).read_text(encoding="utf-8")
    assert committed == PAGES[page](), f"courses/reference/{page}: run `medai config docs`"


@pytest.mark.parametrize(
    "sections, page",
    [(REFERENCE_SECTIONS, "grading-policy.md"), (CONFIG_SECTIONS, "course-config.md")],
    ids=["policy", "course"],
)
def test_every_field_has_a_description_and_a_row(sections, page):
    assert undocumented(sections) == []
    text = PAGES[page]()
    for key, model in sections:
        assert f"## `{key}`" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{key}.{name}"


def test_policy_defaults_are_the_sandbox_limits():
    """The numbers are declared once (medai.isolation.limits.Limits); the policy takes them."""
    job = Limits()
    for name, field in LimitsModel.model_fields.items():
        assert field.default == getattr(job, name), name
    assert Policy().limits.to_limits() == job


def test_a_policy_override_reaches_the_sandbox_limits_and_nothing_else(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("limits: {wall_s: 30, memory_mb: 512}\n")
    limits = load_policy(path).limits.to_limits()
    assert (limits.wall_s, limits.memory_mb) == (30, 512)
    assert dataclasses.replace(limits, wall_s=Limits().wall_s, memory_mb=Limits().memory_mb) == (
        Limits()
    )


def test_bad_limits_are_explained(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("limits: {memory_mb: 10, wal_s: 3}\n")
    with pytest.raises(GradingError) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    assert "limits.memory_mb" in str(info.value) and "limits.wal_s" in str(info.value)


def _leaves(data, prefix=""):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), data


def test_no_second_copy_of_the_defaults(repo_root):
    """The repository's policy file lists only what it changes (no default restated), and the
    README points at the generated reference instead of describing the keys again."""
    policy_file = repo_root / "autograder" / "policy.yaml"
    data = yaml.safe_load(policy_file.read_text()) or {}
    load_policy(policy_file)  # valid
    defaults = dict(_leaves(Policy().model_dump(mode="json")))
    same = [k for k, v in _leaves(data) if defaults.get(k) == v]
    assert same == [], f"{policy_file} repeats defaults {same}; list only what it changes"
    readme = (repo_root / "autograder" / "README.md").read_text()
    assert "../courses/reference/grading-policy.md" in readme
    assert not re.search(r"^- `(limits|late|on_tamper|extensions)`", readme, re.M)


def test_the_demo_course_names_its_policy_and_the_service_gets_it(demo_config, repo_root, tmp_path):
    config_path = repo_root / "courses" / "demo-course.yaml"
    path = check_grading_policy(demo_config, config_path)
    assert path == (repo_root / "autograder" / "policy.yaml").resolve()
    settings = build_hub_settings(
        demo_config,
        StateLayout(tmp_path),
        ip="127.0.0.1",
        ports=Ports(8000, 8081, 8001, 9000, 9001),
        proxy_command=["chp"],
        software=Software(paths=("/opt/venv",), path_env="/usr/bin"),
        grading_policy=path,
    )
    grading = next(s for s in settings["JupyterHub"]["services"] if s["name"] == "medai-grading")
    argv = grading["command"]
    assert argv[argv.index("--policy") + 1] == str(path)


def test_a_bad_course_policy_stops_the_hub_with_its_message(demo_config, tmp_path):
    (tmp_path / "course.yaml").write_text("# stands for the course file\n")
    (tmp_path / "policy.yaml").write_text("on_tamper: shrug\n")
    cfg = demo_config.model_copy(update={"grading_policy": "policy.yaml"})
    with pytest.raises(LaunchError) as info:
        check_grading_policy(cfg, tmp_path / "course.yaml")
    message = str(info.value)
    assert "grading_policy" in message and "on_tamper" in message
    assert str(tmp_path / "policy.yaml") in message
    missing = demo_config.model_copy(update={"grading_policy": "nowhere.yaml"})
    with pytest.raises(LaunchError, match="nowhere.yaml not found"):
        check_grading_policy(missing, tmp_path / "course.yaml")
