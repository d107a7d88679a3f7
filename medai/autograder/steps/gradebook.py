"""Storing (step 8): autograded notebooks, the nbgrader gradebook, the log, the result file.

The result file is written last and atomically: its presence means the submission is done.
"""

from __future__ import annotations

import json
import threading
import time

import nbformat

from medai.autograder.steps.layout import Course, atomic_write
from medai.autograder.steps.prepare import Lab
from medai.autograder.steps.result import GradeResult

__all__ = ["store", "write_gradebook"]

_GB_LOCK = threading.Lock()


def write_gradebook(course: Course, lab: Lab, result: GradeResult) -> None:
    """Write one result's scores and late penalty into the nbgrader gradebook (idempotent)."""
    import warnings

    from nbgrader.api import Gradebook

    student = result.student
    with _GB_LOCK, warnings.catch_warnings(), Gradebook(course.db_url, course.course_id) as gb:
        warnings.simplefilter("ignore")  # nbgrader's add_submission trips SQLAlchemy warnings
        gb.update_or_create_student(student)
        kwargs = {"timestamp": result.timestamp} if result.timestamp else {}
        gb.update_or_create_submission(lab.id, student, **kwargs)
        per_nb: dict[str, float] = {}
        for gid, t in result.tasks.items():
            grade = gb.find_grade(gid, t.notebook, lab.id, student)
            grade.auto_score = t.score
            grade.needs_manual_grade = (
                t.score is None or t.tampered or grade.manual_score is not None
            )
            per_nb[t.notebook] = per_nb.get(t.notebook, 0.0) + (t.score or 0.0)
        for info in lab.notebooks:
            nb = gb.find_submission_notebook(info.name, lab.id, student)
            nb.late_submission_penalty = (
                round(result.late_fraction * per_nb.get(info.name, 0.0), 4) or None
            )
        gb.db.commit()


def _log_text(result: GradeResult) -> str:
    r = result
    lines = [f"{r.student} {r.lab}: {r.status} {r.auto_score:g}/{r.max_score:g}"]
    lines += [f"message: {m}" for m in r.messages]
    lines += [f"tamper: {e['notebook']}:{e['cell']}: {e['kind']}: {e['detail']}" for e in r.tamper]
    lines += [f"task {k}: {v.score}/{v.max} {v.message}" for k, v in r.tasks.items()]
    lines += [
        f"clinician {k}: {u['labels']} label(s) given, {u['requests']} request(s), "
        f"{u['refused']} refused"
        for k, u in (r.oracle or {}).items()
    ]
    lines += ["--- cells ---", r.log]
    return "\n".join(lines) + "\n"


def store(
    course: Course, lab: Lab, result: GradeResult, autograded: dict[str, nbformat.NotebookNode]
) -> None:
    """Autograded notebooks, gradebook, log, and last (atomically) the result file."""
    t0 = time.monotonic()
    out_dir = course.autograded / result.student / lab.id
    for name, nb in autograded.items():
        atomic_write(out_dir / f"{name}.ipynb", nbformat.writes(nb))
    # nbgrader's generate/release_feedback read these beside the autograded notebooks
    for keep in ("timestamp.txt", "submission_secret.txt"):
        src = course.submitted / result.student / lab.id / keep
        if src.exists():
            atomic_write(out_dir / keep, src.read_bytes())
    t1 = time.monotonic()
    write_gradebook(course, lab, result)
    t2 = time.monotonic()
    atomic_write(lab.state / "logs" / f"{result.student}.log", _log_text(result))
    result.log = ""  # kept in the log file; the result file and the summary go without it
    result.timings.update(notebooks_out=round(t1 - t0, 3), gradebook=round(t2 - t1, 3))
    result.timings["log"] = round(time.monotonic() - t2, 3)
    atomic_write(
        lab.state / "results" / f"{result.student}.json", json.dumps(result.to_json(), indent=1)
    )
