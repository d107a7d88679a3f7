"""Small nbgrader source labs, written on demand for tests and benchmarks.

:func:`write_example_lab` follows the lab format (a ``parameters`` cell, a solution region, a
graded test cell with a hidden-test region) without depending on any dataset, so the site
machinery can be exercised on a lab whose secret lines are known exactly. :func:`write_toy_lab`
writes a one-answer lab around a given ``tasks.yaml`` (the grader's adversarial toy labs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# Distinctive lines, so a test can search the built site for them.
SOLUTION_LINE = "answer = int(round(sum(values) / len(values) * 7))  # example-solution-line"
HIDDEN_LINE = "assert answer + 1 == 43, 'example-hidden-check'"
MD_SOLUTION_LINE = "The mean of the example values is six, times seven gives 42."
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


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
            "kernelspec": KERNELSPEC,
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


def nbgrader_cell(kind: str, source: str, grade_id: str, **nbgrader: object) -> Any:
    """A ``code`` or ``markdown`` cell with nbgrader metadata: locked, neither graded nor a
    solution, unless ``nbgrader`` says otherwise (``grade=True, points=2``, ...)."""
    meta = {"grade": False, "grade_id": grade_id, "locked": True, "schema_version": 3}
    meta.update({"solution": False, "task": False, **nbgrader})
    make = new_code_cell if kind == "code" else new_markdown_cell
    return make(source, metadata={"nbgrader": meta})


def write_toy_lab(
    folder: Path,
    lab_id: str,
    title: str,
    setup: str,
    solution: str,
    checks: dict[str, tuple[str, int]],
    tasks: dict,
) -> Path:
    """Write a one-answer source lab to ``folder``: ``<lab_id>.ipynb`` (a title, a ``setup``
    cell, the answer cell ``answer`` with ``solution`` as its solution region, then one graded
    cell per ``checks`` entry, grade_id -> (code, points)) and ``tasks.yaml`` from ``tasks``."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    answer = f"### BEGIN SOLUTION\n{solution}### END SOLUTION\n"
    cells = [
        nbgrader_cell("markdown", f"# {title}", "intro"),
        nbgrader_cell("code", setup, "setup"),
        nbgrader_cell("code", answer, "answer", locked=False, solution=True),
        *(
            nbgrader_cell("code", code, gid, grade=True, points=points)
            for gid, (code, points) in checks.items()
        ),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
    nbformat.write(nb, folder / f"{lab_id}.ipynb")
    (folder / "tasks.yaml").write_text(yaml.safe_dump(tasks, sort_keys=False), encoding="utf-8")
    return folder
