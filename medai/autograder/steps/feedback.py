"""Feedback (step 6): the autograded notebooks nbgrader's feedback is made from, and the log.

Each graded task cell shows its score and message; every other code cell shows what it printed
in the sandbox (bounded). The log lists every cell's outcome, then the sandbox's raw output.
"""

from __future__ import annotations

import nbformat

from medai.autograder.steps.execute import CellRun, Execution
from medai.autograder.steps.intake import Intake
from medai.autograder.steps.prepare import Lab
from medai.autograder.steps.result import TaskResult

__all__ = ["autograded_notebooks", "cell_log"]


def _outputs(rec: CellRun | None) -> list:
    if rec is None:
        return []
    return [
        nbformat.v4.new_output("stream", name=name, text=text[:20_000])
        for name, text in (("stdout", rec.stdout), ("stderr", rec.stderr))
        if text
    ]


def autograded_notebooks(
    lab: Lab, got: Intake, run: Execution | None, tasks: dict[str, TaskResult]
) -> dict[str, nbformat.NotebookNode]:
    """The sanitized notebooks with their outputs set from the run and the scores."""
    executed = run.executed() if run is not None else {}
    out: dict[str, nbformat.NotebookNode] = {}
    for info in lab.notebooks:
        s = got.sanitized.get(info.name)
        if s is None:
            continue
        for idx, cell in enumerate(s.nb.cells):
            if cell.cell_type != "code":
                continue
            rec = executed.get((f"{info.name}.ipynb", idx))
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in tasks and gid in lab.tasks.tasks:
                t = tasks[gid]
                text = f"[{gid}] {t.score:g} / {t.max:g} points: {t.message}\n"
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            else:
                cell.outputs = _outputs(rec)
                if rec is not None and not rec.ok and rec.error is not None:
                    cell.outputs.append(
                        nbformat.v4.new_output(
                            "stream", name="stderr", text=rec.error[:2000] + "\n"
                        )
                    )
            if rec is not None:
                cell.execution_count = idx + 1
        out[info.name] = s.nb
    return out


def cell_log(run: Execution | None) -> str:
    """Each cell's outcome and output, then the sandbox's raw output (bounded)."""
    lines = []
    for rec in run.cells if run is not None else []:
        state = "ok" if rec.ok else f"error: {str(rec.error)[:300]}"
        lines.append(f"[{rec.nb} cell {rec.index}] {state}")
        for text in (rec.stdout, rec.stderr):
            if text:
                lines.append(text[:2000].rstrip())
    raw = run.log[-20_000:] if run is not None else ""
    return "\n".join(lines) + "\n--- raw sandbox output ---\n" + raw
