"""The catalogue's datasets: every public dataset with its card, sandboxed datasets through the
sandbox registry hook-up, and what each audience's view may show (mock paths and counts to
trainees; never a private file)."""

from __future__ import annotations

import sys
import types
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medai.catalog.cards import AccessGrant, Column, SandboxedDataset
from medai.catalog.entries import SANDBOX_REGISTRY, all_datasets, public_datasets
from medai.catalog.publish import write_page
from medai.catalog.render import catalogue_markdown
from medai.cli import app
from medai.config import load_config
from medai.synthetic import core

REPO = Path(__file__).resolve().parent.parent
CANARY = "CANARY-private-row-91c4"


def test_every_public_dataset_is_listed_with_its_card():
    entries = public_datasets()
    assert [e.name for e in entries] == core.available()
    for e in entries:
        card = REPO / "datasets" / "synthetic" / f"{e.name}.md"
        assert card.is_file(), f"{e.name} has no card"
        assert e.kind == "public" and e.access == "everyone"
        assert e.card == card.read_text(encoding="utf-8")
        assert e.card_source == str(card)
        spec = core.get_spec(e.name)
        assert e.size == f"{spec.default_n:,} {spec.unit}" and e.formats == list(spec.formats)


def test_a_course_says_which_datasets_its_trainees_read_in_place(demo_config):
    entries = all_datasets(demo_config)
    where = {e.name: e.location for e in entries if e.kind == "public"}
    prepared = {d.name for d in demo_config.datasets}
    # the demo's sandboxed cohort: its mock twin, in the public data every server mounts
    sandboxed = {e.name: e.location for e in entries if e.kind == "sandboxed"}
    assert sandboxed == {"cohort": "/data/sandbox-mock/cohort/mock.csv"}
    for name, location in where.items():
        if name in prepared:
            assert location == f"$MEDAI_DATA/{name}"
        else:
            assert location == f"medai data generate {name}"


class PrivateDataset:
    """An entry as the sandbox registry could hold it: with the place of its private rows,
    which the catalogue must never pass on."""

    def __init__(self, private: Path):
        self.name = "cohort-x"
        self.title = "Private CKD cohort"
        self.summary = "Adults with diabetes at one hospital; compute on it in the sandbox."
        self.card = "# Private CKD cohort\n\nMock twin for development; rows never leave."
        self.columns = [Column(name="age", type="int"), Column(name="ckd", type="int")]
        self.mock_path = "/data/cohort-x-mock"
        self.policy = "counts of at least 10, rounded to 5; no minima or maxima"
        self.access = [
            AccessGrant(user="alice", until=datetime(2027, 1, 31), purpose="CKD by region"),
            AccessGrant(user="bob", until=None, purpose="teaching"),
        ]
        self.private_path = str(private)  # not a field of SandboxedDataset
        self.rows = [{"age": 71, "ckd": CANARY}]


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A sandbox registry module at the path the hook-up imports (``medai.sandbox.registry``),
    returning one private dataset whose rows are a canary."""
    private = tmp_path / "private" / "cohort-x" / "rows.csv"
    private.parent.mkdir(parents=True)
    private.write_text(f"age,ckd\n71,{CANARY}\n")
    module = types.ModuleType(SANDBOX_REGISTRY)
    seen = []

    def sandboxed_datasets(course):
        seen.append(course)
        return [PrivateDataset(private)]

    module.sandboxed_datasets = sandboxed_datasets
    monkeypatch.setitem(sys.modules, SANDBOX_REGISTRY, module)
    return private, seen


def test_sandboxed_dataset_comes_from_the_registry_with_mock_path_only(registry, demo_config):
    private, seen = registry
    entries = all_datasets(demo_config)
    assert seen == [demo_config]
    (e,) = [e for e in entries if e.kind == "sandboxed"]
    assert e.location == "/data/cohort-x-mock" and e.access == "by request (2 granted)"
    assert [c.name for c in e.columns] == ["age", "ckd"]
    dumped = e.model_dump_json()
    assert str(private) not in dumped and str(private.parent) not in dumped
    assert CANARY not in dumped
    assert "private_path" not in SandboxedDataset.model_fields


def test_trainee_page_counts_grants_and_staff_view_names_them(registry, demo_config, tmp_path):
    private, _ = registry
    page = write_page(tmp_path / "catalog", demo_config).read_text()
    assert "cohort-x" in page and "/data/cohort-x-mock" in page
    assert "by request (2 granted)" in page
    assert "alice" not in page and "bob" not in page  # who studies what is not for trainees
    staff = catalogue_markdown(all_datasets(demo_config), [], staff=True)
    assert "alice until 2027-01-31" in staff and "bob (no end)" in staff
    for text in (page, staff):
        assert CANARY not in text and str(private) not in text
    for name in ("ehr", "multisite", "skin"):
        assert f"| `{name}` | public |" in page


def test_data_list_shows_kind_and_access_of_every_dataset(registry):
    private, _ = registry
    res = CliRunner().invoke(app, ["data", "list"])
    assert res.exit_code == 0, res.output
    header, *lines = res.stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "SIZE", "FORMATS", "ACCESS", "SUMMARY"]
    kinds = {line.split()[0]: line.split()[1] for line in lines}
    assert kinds == {**dict.fromkeys(core.available(), "public"), "cohort-x": "sandboxed"}
    row = next(line for line in lines if line.startswith("cohort-x"))
    assert "alice until 2027-01-31" in row  # the host's view: staff
    assert CANARY not in res.stdout and str(private) not in res.stdout


def test_without_the_sandbox_package_there_is_no_sandboxed_dataset(demo_config, monkeypatch):
    monkeypatch.setitem(sys.modules, SANDBOX_REGISTRY, None)  # import fails as if absent
    monkeypatch.setitem(sys.modules, "medai.sandbox", None)
    assert all(e.kind == "public" for e in all_datasets(demo_config))


def test_bad_names_and_a_bad_course_file_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a catalogue name"):
        SandboxedDataset(name="../x", title="t", summary="s", mock_path="/data/x", policy="p")
    for mock in ("data/x", "/data/../srv/private"):
        with pytest.raises(ValueError, match="mock_path"):
            SandboxedDataset(name="x", title="t", summary="s", mock_path=mock, policy="p")
    bad = tmp_path / "course.yaml"
    bad.write_text("course: {id: c1}\n")
    res = CliRunner().invoke(app, ["data", "list", "--config", str(bad)])
    assert res.exit_code == 2 and "course.yaml" in res.stderr
    load_config(REPO / "courses" / "demo-course.yaml")  # the default the CLI reads is valid
