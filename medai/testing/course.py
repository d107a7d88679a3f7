"""Throwaway nbgrader courses for tests and benchmarks (real nbgrader, real files).

:func:`make_course` lays out ``<dir>/`` the way the embedded hub does (nbgrader_config.py,
source/<lab>/, release/<lab>/ via ``nbgrader generate_assignment``, gradebook.db);
:func:`submit` writes a fabricated submission to ``submitted/<student>/<lab>/`` as
``nbgrader collect`` would; :func:`solved` fills a released notebook with the source's solutions,
the way an honest trainee would; :func:`grade` runs the real batch on it in bubblewrap sandboxes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat


def _env() -> dict[str, str]:
    # nbgrader's Gradebook runs the `alembic` console script from PATH: use this environment's
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def lab_data_key() -> bytes:
    """The data secret tests and benchmarks generate hidden splits with, as a deployment does
    (``medai up`` keys them with ``<state>/secrets/data.key``): ``$MEDAI_TEST_DATA_KEY`` (64 hex
    digits) when set, so a lab's thresholds can be checked under other keys, else a fixed key."""
    import hashlib

    given = os.environ.get("MEDAI_TEST_DATA_KEY", "").strip()
    if given:
        try:
            key = bytes.fromhex(given)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError("MEDAI_TEST_DATA_KEY must be 64 hexadecimal digits (32 bytes)")
        return key
    return hashlib.sha256(b"medai tests: a fixed deployment data key").digest()


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set environment variables for a block (a None value leaves one alone); restore them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_course(course_dir: Path, lab_src: Path, lab: str, course_id: str = "medai101") -> Path:
    """Create a course with ``lab`` generated from ``lab_src``; return the course directory."""
    course_dir = Path(course_dir)
    (course_dir / "source").mkdir(parents=True, exist_ok=True)
    (course_dir / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa\n"
        f"c.CourseDirectory.course_id = {course_id!r}\n"
        f"c.CourseDirectory.root = {str(course_dir)!r}\n"
    )
    shutil.copytree(lab_src, course_dir / "source" / lab, dirs_exist_ok=True)
    nbgrader = Path(sys.executable).with_name("nbgrader")
    proc = subprocess.run(
        [str(nbgrader), "generate_assignment", lab, "--force"],
        cwd=course_dir,
        capture_output=True,
        text=True,
        env=_env(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout}\n{proc.stderr}")
    return course_dir


def released(course_dir: Path, lab: str) -> nbformat.NotebookNode:
    """The released (trainee's) notebook ``<lab>.ipynb`` of ``lab`` in a course."""
    return nbformat.read(Path(course_dir) / "release" / lab / f"{lab}.ipynb", as_version=4)


def solved(
    release_nb: nbformat.NotebookNode, source_nb: nbformat.NotebookNode
) -> nbformat.NotebookNode:
    """The released notebook with every solution cell replaced by the source's solution."""
    nb = nbformat.from_dict(release_nb)
    answers = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            text = "\n".join(
                line
                for line in cell.source.splitlines()
                if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
            )
            answers[meta["grade_id"]] = text
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def submit(
    course_dir: Path,
    lab: str,
    student: str,
    notebooks: dict[str, nbformat.NotebookNode | bytes | str],
    *,
    timestamp: dt.datetime | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write a submission as ``nbgrader collect`` leaves it; return its folder."""
    folder = Path(course_dir) / "submitted" / student / lab
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, nb in notebooks.items():
        path = folder / name
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        elif isinstance(nb, str):
            path.write_text(nb)
        else:
            with warnings.catch_warnings():  # fabricated duplicates are the point of some tests
                warnings.simplefilter("ignore")
                nbformat.write(nb, path)
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    ts = timestamp or dt.datetime.now(dt.UTC)
    (folder / "timestamp.txt").write_text(ts.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    return folder


def submit_answers(
    course_dir: Path,
    lab: str,
    notebook: nbformat.NotebookNode,
    answers: Mapping[str, str],
    *,
    cell: str = "answer",
) -> None:
    """One submission per student of ``answers`` (student -> code): ``notebook`` (a filled-in
    release, ``<lab>.ipynb``) with the whole source of cell ``cell`` replaced by that code."""
    for student, code in answers.items():
        nb = nbformat.from_dict(notebook)
        target = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell)
        target.source = code
        submit(course_dir, lab, student, {f"{lab}.ipynb": nb})


def grade(
    course_dir: Path,
    lab: str,
    data_root: Path | None,
    policy: Any,
    *,
    workers: int = 2,
) -> Any:
    """Grade every submission of ``lab`` as ``medai grade`` does (bubblewrap sandboxes, the
    trusted scorer outside them) under ``policy`` (a grading ``Policy``, or its mapping, e.g.
    ``{"limits": {"wall_s": 60, ...}}``); return the batch summary (``.graded``: one result per
    student, ``.skipped``, ``.reference``)."""
    # the grader's entry points, imported here only, so a move of them is fixed in one place
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend

    return grade_lab(
        course_dir,
        lab,
        backend=BubblewrapBackend(),
        policy=policy if isinstance(policy, Policy) else Policy.model_validate(policy),
        data_root=data_root,
        workers=workers,
        progress=False,
    )


def by_student(summary: Any) -> dict[str, dict]:
    """A batch summary's results, by student."""
    return {r["student"]: r for r in summary.graded}
