"""Repository hygiene: lab sources are clean notebooks (no outputs), and the demo course lists
every lab folder, so `make up` releases what the site publishes."""

from __future__ import annotations

import nbformat
import pytest

from tests.conftest import REPO_ROOT

LAB_NOTEBOOKS = sorted((REPO_ROOT / "labs").glob("*/*.ipynb"))


@pytest.mark.parametrize("path", LAB_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lab_sources_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert dirty == [], f"{path}: clear outputs of cells {dirty} (nbstripout {path})"


def test_every_lab_folder_is_in_the_demo_course(demo_config):
    folders = {p.parent.name for p in LAB_NOTEBOOKS}
    listed = {lab.id for lab in demo_config.labs}
    assert folders <= listed, f"labs missing from courses/demo-course.yaml: {folders - listed}"


def test_only_medai_paths_knows_where_things_live():
    """No product module finds files relative to its own source (``__file__``, ``parents[N]``):
    an installed package has no checkout above it. medai/paths.py is the one place that knows."""
    import re

    pattern = re.compile(r"__file__|\.parents\[|REPO_ROOT")
    found = [
        f"{path.relative_to(REPO_ROOT)}:{i}: {line.strip()}"
        for path in sorted((REPO_ROOT / "medai").rglob("*.py"))
        if path.name != "paths.py"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == [], "use medai.paths instead:\n" + "\n".join(found)
