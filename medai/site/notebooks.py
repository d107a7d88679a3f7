"""Notebook CI: run every lab with papermill, as the reference and as a trainee would start it.

- The *reference* (the nbgrader source, solutions and hidden tests included) must run top to
  bottom with the CI parameters: no error (so every hidden test passes) and every public
  ``check(...)`` prints ``PASS``.
- The *student version* (nbgrader's release) must run up to its first unanswered task and stop
  there with exactly ``NotImplementedError`` (nbgrader's stub in a solution cell), no other error.

One Markdown report lists each lab and notebook with its run time.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nbformat
import yaml

from medai.site.labs import IGNORED_NAMES, LabInfo, generate_student_version

DEFAULT_TIMEOUT_S = 60


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of one papermill run."""

    lab: str
    notebook: str
    kind: Literal["reference", "student"]
    ok: bool
    seconds: float
    detail: str


def ci_parameters(lab_dir: Path, notebook: str) -> dict:
    """The papermill parameters CI runs a lab notebook with.

    Read from the notebook's metadata ``medai.ci_parameters`` (a mapping), or from
    ``labs/<lab>/ci.yaml`` (either a mapping of parameters, or ``{notebook: mapping}``).
    Without either, the notebook's own defaults are used.
    """
    nb = nbformat.read(lab_dir / notebook, as_version=4)
    params = nb.metadata.get("medai", {}).get("ci_parameters")
    ci_file = lab_dir / "ci.yaml"
    if params is None and ci_file.exists():
        data = yaml.safe_load(ci_file.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{ci_file}: expected a mapping of papermill parameters")
        params = data.get(notebook, data)
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"{lab_dir / notebook}: CI parameters must be a mapping, got {params!r}")
    return dict(params or {})


# What ``medai.autograder.lab.check`` prints in public mode (it returns False, it does not raise,
# so a failed check is only visible in the output).
_CHECK_LINE = re.compile(r"^(PASS|FAIL) \[([^\]]+)\](.*)$", re.M)
_CALLS_CHECK = re.compile(r"^\s*check\(", re.M)


def check_outcomes(executed: Path) -> tuple[int, list[str]]:
    """Public checks in an executed notebook: (number passed, problems).

    A problem is a ``FAIL`` line, or a cell that calls ``check(...)`` but printed no result.
    """
    nb = nbformat.read(executed, as_version=4)
    passed, problems = 0, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        found = _CHECK_LINE.findall(text)
        passed += sum(1 for verdict, _, _ in found if verdict == "PASS")
        problems += [f"FAIL [{task}]{msg}" for verdict, task, msg in found if verdict == "FAIL"]
        if _CALLS_CHECK.search(cell.source) and not found:
            where = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i}"
            problems.append(f"{where!r} calls check() but printed no PASS/FAIL line")
    return passed, problems


def _first_task(nb_path: Path) -> str | None:
    """nbgrader ``grade_id`` of the first code cell a trainee must fill in."""
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            return meta.get("grade_id", "?")
    return None


def _execute(nb: Path, out: Path, params: dict, cwd: Path, timeout: int) -> None:
    import papermill as pm

    pm.execute_notebook(
        str(nb),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(cwd),
        progress_bar=False,
        log_output=False,
        execution_timeout=timeout,
        start_timeout=timeout,
    )


def run_reference(lab: LabInfo, work: Path, timeout: int = DEFAULT_TIMEOUT_S) -> list[NotebookRun]:
    """Execute each source notebook of ``lab`` with its CI parameters (in a copy of the lab)."""
    from papermill.exceptions import PapermillExecutionError

    copy = Path(work) / "reference" / lab.id
    shutil.copytree(lab.source_dir, copy, ignore=shutil.ignore_patterns(*IGNORED_NAMES))
    runs = []
    for nb in lab.notebooks:
        params = ci_parameters(lab.source_dir, nb)
        t = time.perf_counter()
        executed = copy / f"{Path(nb).stem}.executed.ipynb"
        try:
            _execute(copy / nb, executed, params, copy, timeout)
            passed, problems = check_outcomes(executed)
            ok = not problems
            detail = (
                f"all cells ran, hidden tests passed, {passed} public check(s) passed"
                if ok
                else "; ".join(problems)
            )
        except PapermillExecutionError as exc:
            ok = False
            detail = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}".strip()
        except Exception as exc:  # timeouts, dead kernels: report, do not hide
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        runs.append(NotebookRun(lab.id, nb, "reference", ok, time.perf_counter() - t, detail))
    return runs


def run_student(
    lab: LabInfo, work: Path, course_id: str = "medai", timeout: int = DEFAULT_TIMEOUT_S
) -> list[NotebookRun]:
    """Generate the student version and execute it: it must stop at a solution cell, and only
    with ``NotImplementedError``."""
    from papermill.exceptions import PapermillExecutionError

    student = Path(work) / "student" / lab.id
    notebooks = generate_student_version(lab, student, course_id=course_id)
    runs = []
    for nb in notebooks:
        params = ci_parameters(lab.source_dir, nb.name)
        executed = student / f"{nb.stem}.executed.ipynb"
        first = _first_task(nb)
        t = time.perf_counter()
        try:
            _execute(nb, executed, params, student, timeout)
            ok = first is None
            detail = (
                "ran to the end (no code task)"
                if ok
                else "ran to the end although it has unanswered code tasks"
            )
        except PapermillExecutionError as exc:
            failed = _failed_cell(executed)
            if exc.ename != "NotImplementedError":
                ok, detail = False, f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}".strip()
            elif failed != first:
                ok = False
                detail = (
                    f"NotImplementedError in {failed!r}, but the first task is {first!r}: "
                    "a cell before the first task raised it"
                )
            else:
                ok, detail = True, f"stopped at the first task ({failed!r}): NotImplementedError"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        runs.append(NotebookRun(lab.id, nb.name, "student", ok, time.perf_counter() - t, detail))
    return runs


def _failed_cell(executed: Path) -> str | None:
    """nbgrader ``grade_id`` (or ``cell N``) of the cell papermill stopped on.

    Identified by id rather than position: papermill inserts cells (injected parameters, an
    error banner) into the executed copy.
    """
    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.outputs):
            return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i}"
    return None


def run_lab(
    lab: LabInfo, course_id: str = "medai", timeout: int = DEFAULT_TIMEOUT_S
) -> list[NotebookRun]:
    """Reference and student runs of one lab, in a throwaway folder."""
    with tempfile.TemporaryDirectory(prefix=f"medai-nbci-{lab.id}-") as work:
        return run_reference(lab, Path(work), timeout) + run_student(
            lab, Path(work), course_id, timeout
        )


def render_report(runs: list[NotebookRun]) -> str:
    """Markdown table: one row per lab notebook and run kind, with its time and outcome."""
    lines = [
        "# Notebook CI report",
        "",
        "| lab | notebook | run | result | time (s) | detail |",
        "|---|---|---|---|---:|---|",
    ]
    for r in runs:
        detail = r.detail.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(
            f"| {r.lab} | {r.notebook} | {r.kind} | {'ok' if r.ok else 'FAIL'} "
            f"| {r.seconds:.1f} | {detail} |"
        )
    total = sum(r.seconds for r in runs)
    failed = sum(not r.ok for r in runs)
    lines += ["", f"{len(runs)} run(s), {failed} failed, {total:.1f} s in all.", ""]
    return "\n".join(lines)
