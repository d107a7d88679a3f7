"""Course layout: where nbgrader's folders and the grader's own state live (step 0).

State lives in ``<course>/grading/<lab>/``: ``seed`` and ``inputs/`` (grader-drawn inputs, never
changing once drawn), ``reference.json``, ``results/<student>.json`` (one per finished
submission; its presence with the same submission fingerprint means "done", so an interrupted
batch resumes) and ``logs/<student>.log``. Nothing under the course directory is visible to a
sandbox.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from medai.autograder import GradingError

__all__ = ["Course", "atomic_write", "list_students", "open_course", "refuse_links", "state_dir"]


@dataclass
class Course:
    root: Path
    db_url: str
    course_id: str
    source: Path
    release: Path
    submitted: Path
    autograded: Path


def open_course(course_dir: Path, *, course_id: str | None = None) -> Course:
    """Read ``<course_dir>/nbgrader_config.py`` (if any) the way nbgrader does.

    With ``course_id`` given, the config file is *not* read and nbgrader's default folder names
    apply: the file is Python, and whoever can write the course folder (the formgrader's
    sandbox) must not get code run by a trusted process such as the grading service.
    """
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    if not shutil.which("alembic"):  # nbgrader's Gradebook runs `alembic` from PATH
        os.environ["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
    root = Path(course_dir).resolve()
    if not root.is_dir():
        raise GradingError(f"course directory {root} does not exist (pass --course DIR)")
    cfg = Config()
    if course_id is not None:
        cfg.CourseDirectory.course_id = course_id
    elif (root / "nbgrader_config.py").exists():
        cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    cd = CourseDirectory(config=cfg)
    cd.root = str(root)
    return Course(
        root=root,
        db_url=cd.db_url,
        course_id=cd.course_id or "default_course",
        source=root / cd.source_directory,
        release=root / cd.release_directory,
        submitted=root / cd.submitted_directory,
        autograded=root / cd.autograded_directory,
    )


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (readers never see
    half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def state_dir(course: Course, lab_id: str) -> Path:
    """The grader's own state of one lab (see the module docstring)."""
    return course.root / "grading" / lab_id


def refuse_links(course: Course, lab_id: str) -> None:
    """Refuse to grade while a symbolic link sits where the grader reads or writes.

    The course folder is writable from the formgrader's sandbox. A link planted there would make
    this trusted process write through it (autograded notebooks, results, logs, the gradebook) or
    copy a host file into a submission's sandbox (release files).
    """
    tops = [
        course.submitted,
        course.autograded,
        course.root / "grading",
        course.source / lab_id,
        course.release / lab_id,
    ]
    if course.db_url.startswith("sqlite:///"):
        tops.append(Path(course.db_url.removeprefix("sqlite:///")))
    for top in tops:
        found = [top] if top.is_symlink() else []
        if not found and top.is_dir():
            for folder, dirs, files in os.walk(top):
                found += [Path(folder, n) for n in dirs + files if Path(folder, n).is_symlink()]
                if found:
                    break
        if found:
            raise GradingError(
                f"{found[0]} is a symbolic link; the grader does not read or write through links "
                f"in the course folder. Remove it (and ask who put it there), then grade again"
            )


def list_students(course: Course, lab_id: str) -> list[str]:
    if not course.submitted.is_dir():
        return []
    return sorted(p.parent.name for p in course.submitted.glob(f"*/{lab_id}") if p.is_dir())
