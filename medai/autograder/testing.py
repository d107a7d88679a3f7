"""Throwaway nbgrader courses for tests and benchmarks (real nbgrader, real files).

:func:`make_course` lays out ``<dir>/`` the way the embedded hub does (nbgrader_config.py,
source/<lab>/, release/<lab>/ via ``nbgrader generate_assignment``, gradebook.db);
:func:`submit` writes a fabricated submission to ``submitted/<student>/<lab>/`` as
``nbgrader collect`` would; :func:`solved` fills a released notebook with the source's solutions,
the way an honest trainee would.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat


def _env() -> dict[str, str]:
    import os

    # nbgrader's Gradebook runs the `alembic` console script from PATH: use this environment's
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


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


def verdicts(executed: Path) -> dict[str, str]:
    """grade_id of each check cell of an executed notebook -> "PASS", "FAIL", or the end of what
    it printed instead (for lab tests that run a variant of a lab under papermill)."""
    nb = nbformat.read(executed, as_version=4)
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        text = "".join(
            o.get("text", "") + (f"{o['ename']}: {o['evalue']}" if "ename" in o else "")
            for o in cell.get("outputs", [])
        )
        gid = meta["grade_id"]
        if f"FAIL [{gid}]" in text:
            found[gid] = "FAIL"
        elif f"PASS [{gid}]" in text:
            found[gid] = "PASS"
        else:
            found[gid] = text.strip()[-300:] or "no output"
    return found
