"""The reference run (step 2): the solution notebooks run once per lab in a sandbox; the value
each task records there is the expected answer, and each kind judges the reference's own score.

Kept in ``reference.json`` with a fingerprint of everything it depends on (solution notebooks,
task file, grader-drawn inputs, data manifests), so a resumed batch does not run it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat

from medai.autograder import GradingError, plain
from medai.autograder.kinds import kind_of
from medai.autograder.sandbox import Limits, SandboxBackend
from medai.autograder.sanitize import strip_hidden_tests
from medai.autograder.steps.execute import execute
from medai.autograder.steps.layout import Course, atomic_write
from medai.autograder.steps.prepare import Lab

__all__ = ["reference", "solution_notebooks"]


def solution_notebooks(
    lab: Lab, course: Course, data_dir: Path | None
) -> tuple[dict[str, nbformat.NotebookNode], str]:
    """The source notebooks without hidden tests or outputs, and the reference's fingerprint."""
    digest = hashlib.sha256()
    sources: dict[str, nbformat.NotebookNode] = {}
    for info in lab.notebooks:
        path = course.source / lab.id / f"{info.name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            cell.source = strip_hidden_tests(cell.source)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        sources[info.name] = nb
        digest.update(path.read_bytes())
    digest.update((course.source / lab.id / "tasks.yaml").read_bytes())
    for p in sorted(lab.inputs_dir.glob("*.json")):
        digest.update(p.read_bytes())
    if data_dir is not None:
        for p in sorted(data_dir.parent.glob("manifests/*.sha256")):
            digest.update(p.read_bytes())
    return sources, digest.hexdigest()


def reference(
    lab: Lab,
    course: Course,
    backend: SandboxBackend,
    data_dir: Path | None,
    tmp_root: Path,
    limits: Limits,
) -> None:
    """Run the source (solution) notebooks once; keep the expected value of every task."""
    sources, fingerprint = solution_notebooks(lab, course, data_dir)
    ref_file = lab.state / "reference.json"
    if ref_file.exists():
        saved = json.loads(ref_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            lab.expected = {k: plain.decode(v) for k, v in saved["expected"].items()}
            lab.reference_report = saved.get("report", {})
            return
    run = execute(
        lab,
        sources,
        backend=backend,
        data_dir=data_dir,
        tmp_root=tmp_root,
        limits=limits,
        name="reference",
    )
    expected, report = {}, {}
    for info in lab.notebooks:
        for idx, cell in enumerate(sources[info.name].cells):
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in lab.tasks.tasks:
                rec = run.check(f"{info.name}.ipynb", idx, gid)
                if rec is not None and rec.has_value:
                    expected[gid] = rec.value
    for tid, task in lab.tasks.tasks.items():
        if tid not in expected:
            raise GradingError(
                f"the reference solution of '{lab.id}' recorded no value for task '{tid}' "
                f"(sandbox status {run.status}); fix the lab. Sandbox log:\n{run.log[-3000:]}"
            )
        kind = kind_of(task)
        s = kind.report(task, plain.decode(expected[tid]), lab.prepared.get(tid))
        if s is None:
            continue
        if kind.report_fatal and s.fraction < 1.0:
            raise GradingError(
                f"the reference solution of '{lab.id}' does not earn full marks on '{tid}': "
                f"{s.message}"
            )
        report[tid] = (
            s.message
            if s.fraction >= 1.0
            else f"WARNING: the reference solution earns {s.fraction:.0%}: {s.message}"
        )
    atomic_write(
        ref_file, json.dumps({"fingerprint": fingerprint, "expected": expected, "report": report})
    )
    lab.expected = {k: plain.decode(v) for k, v in expected.items()}
    lab.reference_report = report
