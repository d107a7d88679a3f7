"""Scoring (step 5): every graded cell of a submission gets its points and a reason.

Autograded tasks are scored by their kind (:meth:`medai.autograder.kinds.base.Kind.score`) on
the decoded record; cells without a task are left for hand grading (or score 0 when the answer
was left as released, as nbgrader does). A record that cannot be decoded or scored earns 0 with
a message: nothing a submission records can stop the batch.
"""

from __future__ import annotations

import nbformat

from medai.autograder import plain
from medai.autograder.kinds import kind_of
from medai.autograder.scoring import TaskScore
from medai.autograder.steps.execute import CheckRun, Execution
from medai.autograder.steps.intake import Intake
from medai.autograder.steps.prepare import Lab
from medai.autograder.steps.result import TaskResult

__all__ = ["score_task", "score_tasks", "totals"]


def score_task(lab: Lab, tid: str, rec: CheckRun | None) -> TaskScore:
    """The score of task ``tid`` from its check record (None: the cell recorded nothing)."""
    task = lab.tasks.tasks[tid]
    if rec is None:
        return TaskScore(0.0, "no answer was recorded (did the cell run?)")
    if rec.error is not None:
        return TaskScore(0.0, f"the answer could not be recorded: {rec.error[:300]}")
    try:
        got = plain.decode(rec.value)
    except plain.PlainError as exc:
        return TaskScore(0.0, f"malformed answer: {exc}")
    try:
        return kind_of(task).score(task, got, lab.expected.get(tid), lab.prepared.get(tid))
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
        # a value of a shape the scorer does not take (well-formed plain data all the same)
        return TaskScore(0.0, f"malformed answer: {type(exc).__name__}: {str(exc)[:200]}")


def _answer_text(nb: nbformat.NotebookNode, gid: str) -> str | None:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
            return cell.source.strip()
    return None


def score_tasks(
    lab: Lab, got: Intake, run: Execution | None, on_tamper: str
) -> dict[str, TaskResult]:
    """A :class:`TaskResult` for every graded cell of the lab's notebooks."""
    executed = run.executed() if run is not None else {}
    out: dict[str, TaskResult] = {}
    for info in lab.notebooks:
        s = got.sanitized.get(info.name)
        invalid = got.notebooks.get(info.name, {}).get("message", "")
        for gid, cinfo in info.cells.items():
            if not cinfo.grade:
                continue
            entry = TaskResult(info.name, cinfo.points)
            if gid not in lab.tasks.tasks:
                if cinfo.cell_type == "markdown" or cinfo.solution:
                    entry.score, entry.message = None, "graded by hand"
                    if s is None:
                        entry.score, entry.message = 0.0, invalid
                    elif cinfo.solution and _answer_text(s.nb, gid) == cinfo.source.strip():
                        entry.score, entry.message = 0.0, "no answer given"  # as nbgrader does
                else:
                    entry.message = "graded cell without a task in tasks.yaml: not scored"
            elif s is None:
                entry.message = invalid
            elif gid in s.tampered and on_tamper == "zero":
                entry.message = (
                    "this read-only graded cell was tampered with: 0 points (see report)"
                )
            elif (f"{info.name}.ipynb", s.grade_cells[gid]) not in executed:
                entry.message = "this graded cell did not run"
            else:
                assert run is not None
                ts = score_task(lab, gid, run.check(f"{info.name}.ipynb", s.grade_cells[gid], gid))
                entry.score = round(ts.fraction * (cinfo.points or 0.0), 4)
                entry.message = ts.message
            entry.tampered = bool(s and gid in s.tampered) if gid in lab.tasks.tasks else False
            out[gid] = entry
    return out


def totals(tasks: dict[str, TaskResult]) -> tuple[float, float]:
    """The autograded score and the maximum of ``tasks``."""
    auto = sum(t.score or 0.0 for t in tasks.values())
    return round(auto, 4), sum(t.max or 0.0 for t in tasks.values())
