"""The course configuration model, its error messages, the CLI check and the generated reference."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from medai.config import ConfigError, load_config, parse_config, render_reference

MINIMAL = {
    "course": {"id": "c1", "title": "T"},
    "people": {"instructors": ["ann"], "trainees": ["bo", "cy"]},
}


def test_demo_course_is_valid(demo_config):
    assert demo_config.course.id == "medai101"
    assert demo_config.people.instructors == ["instructor"]
    assert len(demo_config.people.trainees) >= 2
    assert {lab.id for lab in demo_config.labs} >= {"pilot"}


def test_defaults_fill_a_minimal_config():
    cfg = parse_config(MINIMAL)
    assert cfg.profiles[0].name == "cpu" and cfg.profiles[0].gpus == 0
    assert cfg.people.tas == [] and cfg.labs == []
    assert cfg.role_of("bo") == "trainees" and cfg.role_of("ann") == "instructors"
    assert cfg.role_of("zed") is None


@pytest.mark.parametrize(
    "patch, key, words",
    [
        ({"course": {"id": "Bad Id", "title": "T"}}, "course.id", "pattern"),
        ({"people": {"instructors": []}}, "people.instructors", "at least 1"),
        ({"people": {"instructors": ["ann"], "trainees": ["ann"]}}, "people", "both"),
        ({"people": {"instructors": ["ann"], "trainees": ["x+y"]}}, "people.trainees[0]", ""),
        ({"colour": "red"}, "colour", "unknown key"),
        (
            {"labs": [{"id": "l1", "title": "L", "source": "labs/l1", "profile": "gpu"}]},
            "labs",
            "profile 'gpu'",
        ),
        (
            {"labs": [{"id": "l1", "title": "L", "source": "s", "datasets": ["nope"]}]},
            "labs",
            "dataset 'nope'",
        ),
        ({"profiles": [{"name": "cpu", "display_name": "C", "mem_limit": "lots"}]}, "", "mem"),
        (
            {"datasets": [{"name": "ehr"}, {"name": "ehr"}]},
            "datasets",
            "duplicate",
        ),
    ],
)
def test_bad_config_names_key_and_reason(tmp_path, patch, key, words):
    data = {**MINIMAL, **patch}
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    text = str(exc.value)
    assert str(path) in text
    assert any(k.startswith(key) for k, _ in exc.value.problems), exc.value.problems
    assert words in text


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("course: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(top)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "medai.cli", *args], capture_output=True, text=True
    )


def test_cli_check_ok_and_bad(tmp_path, repo_root):
    ok = run_cli("config", "check", str(repo_root / "courses" / "demo-course.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "ok — course 'medai101'" in ok.stdout
    bad = tmp_path / "c.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "course": {"id": "c1"}}))
    res = run_cli("config", "check", str(bad))
    assert res.returncode == 1
    assert "course.title" in res.stderr and str(bad) in res.stderr


def test_reference_is_up_to_date(repo_root):
    """Fails when the model changed and `medai config docs` was not run (drift check)."""
    committed = (repo_root / "courses" / "reference" / "course-config.md").read_text()
    assert committed == render_reference()


def test_reference_documents_every_field():
    from medai.config import Course, CourseConfig, Dataset, Lab, People, Profile

    text = render_reference()
    for model in (CourseConfig, Course, People, Lab, Profile, Dataset):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, name
