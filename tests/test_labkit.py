"""The test support itself: it stays outside the product, and the lab kit refuses bad input.

``medai.testing`` holds helpers for tests and benchmarks only; the grader, the hub, the site and
the generators never import it (so nothing a trainee's kernel or the hub loads depends on test
dependencies). The lab kit's answer substitution and lab descriptions fail loudly on a typo.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from medai.testing.example_lab import write_example_lab
from medai.testing.labkit import DESCRIPTIONS, LABS, FirstRegion, LabKit, WholeCell, with_answers

PACKAGE = Path(__file__).resolve().parent.parent / "medai"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_product_never_imports_the_test_support():
    product = [p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts]
    assert len(product) > 50  # the whole package was read
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(m for m in _imports(p) if m.startswith("medai.testing"))
        for p in product
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_every_lab_has_a_description_and_every_description_a_lab():
    labs = {p.name for p in LABS.iterdir() if (p / "tasks.yaml").exists() and p.name[:1] == "m"}
    described = {p.stem for p in DESCRIPTIONS.glob("*.yaml")}
    assert described == labs
    for lab in sorted(described):
        kit = LabKit.of(lab)
        kit.variant(kit.naive)  # every naive answer names a cell and fits its solution regions
        for answers in kit.variants.values():
            kit.variant(answers)


@pytest.fixture
def example(tmp_path) -> nbformat.NotebookNode:
    return nbformat.read(write_example_lab(tmp_path) / "example-lab.ipynb", as_version=4)


def test_answers_replace_the_solution_region_or_the_whole_cell(example):
    nb = with_answers(example, {"task1": "answer = 42\n"})
    cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "task1")
    assert cell.source == "answer = 42\n"
    nb = with_answers(example, {"task1-check": WholeCell("print('no check')")})
    cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "task1-check")
    assert cell.source == "print('no check')"
    unchanged = next(c for c in example.cells if c.metadata["nbgrader"]["grade_id"] == "task1")
    assert "BEGIN SOLUTION" in unchanged.source  # the notebook given is left as it was


def test_an_answer_for_a_missing_cell_or_a_cell_without_a_region_is_refused(example):
    with pytest.raises(KeyError, match="no cell 'task9'"):
        with_answers(example, {"task9": "x = 1\n"})
    with pytest.raises(ValueError, match="'setup' has 0 solution regions"):
        with_answers(example, {"setup": "x = 1\n"})
    with pytest.raises(ValueError, match="'setup' has 0 solution regions"):
        with_answers(example, {"setup": FirstRegion("x = 1\n")})


def test_a_cell_of_two_regions_needs_first_region_or_whole_cell(example):
    cell = next(c for c in example.cells if c.metadata["nbgrader"]["grade_id"] == "task1")
    cell.source = cell.source + "\n" + cell.source
    with pytest.raises(ValueError, match="has 2 solution regions.*WholeCell or FirstRegion"):
        with_answers(example, {"task1": "answer = 1\n"})
    first = with_answers(example, {"task1": FirstRegion("answer = 1\n")})
    source = next(c for c in first.cells if c.metadata["nbgrader"]["grade_id"] == "task1").source
    assert source.startswith("answer = 1\n") and source.count("BEGIN SOLUTION") == 1


def test_an_unknown_lab_or_a_malformed_description_is_refused(tmp_path, monkeypatch):
    import medai.testing.labkit as labkit

    with pytest.raises(FileNotFoundError, match="no description of lab 'm99-nothing'"):
        LabKit.of("m99-nothing")
    monkeypatch.setattr(labkit, "DESCRIPTIONS", tmp_path)
    (tmp_path / "m1-deid.yaml").write_text("naive:\n  id_check_answer: {wholecell: x}\n")
    with pytest.raises(ValueError, match=r"naive\.id_check_answer must be code"):
        LabKit.of("m1-deid")
    (tmp_path / "m1-deid.yaml").write_text("limit: {wall_s: 1}\n")
    with pytest.raises(ValueError, match=r"unknown keys \['limit'\]"):
        LabKit.of("m1-deid")
