"""Lab preparation (step 1): everything about a lab that does not depend on a submission.

The task file, the gradebook's cells of each notebook, the released files and tags, the due
date, the lab's secret seed, and what each task's kind prepares for scoring (grader-drawn
inputs, hidden labels, a clinician's pool: :meth:`medai.autograder.kinds.base.Kind.prepare`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from medai.autograder import GradingError
from medai.autograder.kinds import kind_of
from medai.autograder.kinds.base import Preparing
from medai.autograder.sanitize import NotebookInfo, read_notebook_info
from medai.autograder.steps.layout import Course, atomic_write, state_dir
from medai.autograder.tasks import TaskFile, load_tasks

__all__ = ["Lab", "prepare_lab", "read_table", "unkeyed_warnings"]


@dataclass
class Lab:
    id: str
    tasks: TaskFile
    notebooks: list[NotebookInfo]
    release_files: list[Path]  # non-notebook files released with the lab
    release_tags: set[str]
    duedate: dt.datetime | None
    state: Path
    inputs_dir: Path
    prepared: dict[str, Any] = field(default_factory=dict)  # task -> its kind's scoring state
    oracles: dict[str, Any] = field(default_factory=dict)  # hidden pool labels by task
    expected: dict[str, Any] = field(default_factory=dict)  # the reference's values by task
    reference_report: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_table(folder: Path, table: str) -> Any:
    """``<folder>/<table>.parquet`` or ``.csv`` as a DataFrame (trusted side)."""
    import pandas as pd

    for ext, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        if (folder / f"{table}{ext}").exists():
            return reader(folder / f"{table}{ext}")
    raise GradingError(f"table '{table}' (.csv or .parquet) not found in {folder}")


def _lab_seed(state: Path) -> int:
    """Grader-drawn inputs: drawn once per lab with a secret seed, then kept (resume, reference)."""
    seed_file = state / "seed"
    if not seed_file.exists():
        atomic_write(seed_file, str(secrets.randbits(63)))
    return int(seed_file.read_text())


def prepare_lab(course: Course, lab_id: str, data_root: Path | None) -> Lab:
    """Everything about a lab that does not depend on a submission."""
    from nbgrader.api import Gradebook, MissingEntry

    src = course.source / lab_id
    if not src.is_dir():
        raise GradingError(f"no source folder for lab '{lab_id}' at {src}")
    tasks = load_tasks(src / "tasks.yaml")
    release = course.release / lab_id
    if not release.is_dir():
        raise GradingError(
            f"{release} does not exist: run `nbgrader generate_assignment {lab_id}` first"
        )
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            assignment = gb.find_assignment(lab_id)
        except MissingEntry:
            raise GradingError(
                f"lab '{lab_id}' is not in the gradebook {course.db_url}; run "
                f"`nbgrader generate_assignment {lab_id}`"
            ) from None
        notebooks = [read_notebook_info(gb, nb.name, lab_id) for nb in assignment.notebooks]
        duedate = assignment.duedate
    graded = {g for nb in notebooks for g, c in nb.cells.items() if c.grade}
    missing = sorted(set(tasks.tasks) - graded)
    if missing:
        raise GradingError(
            f"tasks {missing} in {src / 'tasks.yaml'} have no graded cell with that grade_id; "
            "the cell calling check('<id>', ...) must be an autograded, read-only cell with "
            "the same grade_id (see labs/README.md)"
        )
    release_files = [
        p for p in sorted(release.iterdir()) if p.suffix != ".ipynb" and not p.name.startswith(".")
    ]
    tags: set[str] = set()
    for p in release.glob("*.ipynb"):
        for cell in nbformat.read(p, as_version=4).cells:
            tags |= set(cell.get("metadata", {}).get("tags", []))
    state = state_dir(course, lab_id)
    lab = Lab(lab_id, tasks, notebooks, release_files, tags, duedate, state, state / "inputs")
    seed = _lab_seed(state)
    datasets: set[str] = set()
    for tid, task in tasks.tasks.items():
        cell = next(nb.cells[tid] for nb in notebooks if tid in nb.cells)
        ctx = Preparing(tid, seed, lab.inputs_dir, cell.source, data_root)
        prepared = kind_of(task).prepare(task, ctx)
        lab.prepared[tid] = prepared.state
        datasets |= set(prepared.datasets)
        if prepared.oracle is not None:
            lab.oracles[tid] = prepared.oracle
    lab.warnings += unkeyed_warnings(sorted(datasets), data_root)
    return lab


def unkeyed_warnings(datasets: list[str], data_root: Path | None) -> list[str]:
    """A warning for each dataset whose hidden split anyone can regenerate from the public seed
    (generated without the deployment's data key): grades on it reward looking labels up."""
    from medai.synthetic.core import hidden_keying

    if data_root is None:
        return []
    return [
        f"the hidden split of '{name}' under {data_root} follows from the public seed (it was "
        "generated without a data key), so a submission can regenerate its labels; generate it "
        f"with the deployment's key (`medai up`, or `medai data generate {name} --secret-file "
        f"{data_root.parent / 'secrets' / 'data.key'} --out {data_root}`)"
        for name in datasets
        if hidden_keying(name, data_root) == "public-seed"
    ]
