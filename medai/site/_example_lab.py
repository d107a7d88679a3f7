"""A minimal nbgrader source lab, written on demand for the site's tests and benchmark.

It follows the lab format (a ``parameters`` cell, a solution region, a graded test cell with a
hidden-test region) without depending on any dataset, so the site machinery can be exercised on
a lab whose secret lines are known exactly.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# Distinctive lines, so a test can search the built site for them.
SOLUTION_LINE = "answer = int(round(sum(values) / len(values) * 7))  # example-solution-line"
HIDDEN_LINE = "assert answer + 1 == 43, 'example-hidden-check'"
MD_SOLUTION_LINE = "The mean of the example values is six, times seven gives 42."


def _grade_md(grade_id: str, **extra: object) -> dict:
    meta = {
        "grade": False,
        "grade_id": grade_id,
        "locked": False,
        "schema_version": 3,
        "solution": False,
    }
    meta.update(extra)
    return {"nbgrader": meta}


def write_example_lab(dest: Path, lab_id: str = "example-lab", title: str = "Example lab") -> Path:
    """Write ``dest/<lab_id>/<lab_id>.ipynb`` and its ``tasks.yaml``; return the lab folder."""
    lab = Path(dest) / lab_id
    lab.mkdir(parents=True, exist_ok=True)
    cells = [
        new_markdown_cell(
            f"# {title}\n\nA tiny lab. The mean of $n$ values is "
            "$\\bar{x} = \\frac{1}{n}\\sum_i x_i$.\n\n$$e^{i\\pi} + 1 = 0$$",
            metadata=_grade_md("intro", locked=True),
        ),
        new_code_cell(
            "# Parameters: CI turns these down.\nN_VALUES = 5",
            metadata={"tags": ["parameters"], **_grade_md("parameters", locked=True)},
        ),
        new_code_cell(
            "from medai.autograder.lab import check\n\nvalues = [6] * N_VALUES",
            metadata=_grade_md("setup", locked=True),
        ),
        new_markdown_cell(
            "## Task 1\n\nCompute `answer`, seven times the mean of `values`.",
            metadata=_grade_md("task1-text", locked=True),
        ),
        new_code_cell(
            f"### BEGIN SOLUTION\n{SOLUTION_LINE}\n### END SOLUTION",
            metadata=_grade_md("task1", solution=True),
        ),
        new_code_cell(
            f'check("answer", answer)\n### BEGIN HIDDEN TESTS\n{HIDDEN_LINE}\n### END HIDDEN TESTS',
            metadata=_grade_md("task1-check", grade=True, locked=True, points=1),
        ),
        new_markdown_cell(
            "## Reflection\n\nExplain the result in one sentence.",
            metadata=_grade_md("reflect-text", locked=True),
        ),
        new_markdown_cell(
            f"### BEGIN SOLUTION\n{MD_SOLUTION_LINE}\n### END SOLUTION",
            metadata=_grade_md("reflect", solution=True, grade=True, points=1, task=False),
        ),
    ]
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.write(nb, lab / f"{lab_id}.ipynb")
    # the lab's task file (format: medai.autograder.tasks); its public checks are type and range
    (lab / "tasks.yaml").write_text(
        f"lab: {lab_id}\ntasks:\n  answer:\n    kind: value\n"
        "    public: {type: int, min: 0, max: 100}\n",
        encoding="utf-8",
    )
    return lab
