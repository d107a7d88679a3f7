"""Notebook CI: every lab's reference runs clean; every student version stops at its first task.

Each lab in ``labs/`` is run twice under papermill with its CI parameters (see
:func:`medai.site.notebooks.ci_parameters`): the nbgrader source (solutions and hidden tests) must
pass from top to bottom; nbgrader's student version must raise exactly ``NotImplementedError`` in
its first task cell and nothing before. The run times go to ``build/notebook-report.md``, which
is also printed at the end of the run.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from medai.config import load_config
from medai.site.labs import discover_labs
from medai.site.notebooks import (
    ci_parameters,
    render_report,
    run_lab,
    run_reference,
    run_student,
)
from medai.testing import example_lab as ex

REPO = Path(__file__).resolve().parent.parent
CONFIG = load_config(REPO / "courses" / "demo-course.yaml")
LABS = discover_labs(REPO / "labs", CONFIG)
REPORT = REPO / "build" / "notebook-report.md"


@pytest.fixture(scope="module")
def report(request):
    runs: list = []
    yield runs
    if not runs:
        return
    text = render_report(runs)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    # print past pytest's output capture, so the report shows in every run's log
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{text}(written to {REPORT.relative_to(REPO)})")


def test_every_lab_folder_is_found():
    on_disk = sorted(p.name for p in (REPO / "labs").iterdir() if any(p.glob("*.ipynb")))
    assert on_disk, "no lab under labs/"
    assert sorted(lab.source_dir.name for lab in LABS) == on_disk
    configured = {Path(lab.source).name for lab in CONFIG.labs}
    assert configured <= set(on_disk), "the demo course lists a lab that has no folder"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_lab_runs_under_papermill(lab, report):
    runs = run_lab(lab, course_id=CONFIG.course.id, timeout=60)
    report.extend(runs)
    assert {r.kind for r in runs} == {"reference", "student"}
    assert len(runs) == 2 * len(lab.notebooks)
    failed = [r for r in runs if not r.ok]
    assert not failed, render_report(failed)


@pytest.mark.slow
def test_ci_catches_broken_labs(tmp_path):
    """The checks can fail: a good lab passes, a wrong solution and an early error do not."""
    labs = tmp_path / "labs"
    ex.write_example_lab(labs, lab_id="good")
    wrong = ex.write_example_lab(labs, lab_id="wrong")
    _edit(wrong / "wrong.ipynb", "task1", lambda src: src.replace("* 7", "* 8"))
    early = ex.write_example_lab(labs, lab_id="early")
    _edit(early / "early.ipynb", "setup", lambda src: src + "\nvalues = values / 0")
    (early / "ci.yaml").write_text("N_VALUES: 3\n")
    # out of the public range (0..100) and no hidden test: only the public check can catch it
    failing = ex.write_example_lab(labs, lab_id="failing")
    _edit(failing / "failing.ipynb", "task1", lambda src: src.replace("* 7", "* 70"))
    _edit(failing / "failing.ipynb", "task1-check", lambda src: src.split("###")[0])
    assert ci_parameters(early, "early.ipynb") == {"N_VALUES": 3}

    outcome = {}
    for lab in discover_labs(labs):
        work = tmp_path / "work" / lab.id
        runs = run_reference(lab, work, timeout=60)
        if lab.id in ("good", "early"):  # the others' student versions are the good one's
            runs += run_student(lab, work, timeout=60)
        outcome.update({(lab.id, r.kind): r for r in runs})

    assert outcome["good", "reference"].ok and outcome["good", "student"].ok
    assert "1 public check(s) passed" in outcome["good", "reference"].detail
    assert not outcome["failing", "reference"].ok
    assert "FAIL [answer]" in outcome["failing", "reference"].detail
    assert "NotImplementedError" in outcome["good", "student"].detail
    # a wrong reference solution fails its hidden test
    assert not outcome["wrong", "reference"].ok
    assert "AssertionError" in outcome["wrong", "reference"].detail
    # an error before the first task fails both runs, and the report names it
    for kind in ("reference", "student"):
        assert not outcome["early", kind].ok
        assert "TypeError" in outcome["early", kind].detail


def _edit(nb_path: Path, grade_id: str, change) -> None:
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = change(cell.source)
    nbformat.write(nb, nb_path)


@pytest.mark.slow
def test_check_labs_command(tmp_path):
    from typer.testing import CliRunner

    from medai.cli import app

    labs = tmp_path / "labs"
    ex.write_example_lab(labs, lab_id="good")
    config = tmp_path / "course.yaml"
    config.write_text("course: {id: c1, title: C}\npeople: {instructors: [ann]}\n")
    report = tmp_path / "report.md"
    args = ["site", "check-labs", "--labs", str(labs), "--config", str(config)]
    result = CliRunner().invoke(app, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "| good | good.ipynb | reference | ok |" in report.read_text()
    assert "| good | good.ipynb | student | ok |" in result.output

    result = CliRunner().invoke(app, [*args[:3], str(tmp_path / "nothing"), *args[4:]])
    assert result.exit_code != 0 and "error:" in result.stderr and "no such folder" in result.stderr
