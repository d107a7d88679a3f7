"""``medai grades export``: one CSV row per student and lab, from the nbgrader gradebook.

Scores come from the gradebook (so manual grades and overrides made in formgrader count); the
grading status, tamper flags and messages come from ``<course>/grading/<lab>/results/``.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

from medai.autograder import GradingError
from medai.autograder.steps.layout import atomic_write, open_course, state_dir
from medai.autograder.steps.result import GradeResult, read_result

COLUMNS = [
    "student_id",
    "lab",
    "timestamp",
    "status",
    "score",
    "max_score",
    "late_penalty",
    "final_score",
    "needs_manual_grade",
    "tampered_cells",
    "messages",
]


def _tampered_cells(res: GradeResult | None) -> int:
    return len({e.get("cell") for e in res.tamper}) if res else 0


def export_grades(course_dir: Path, out: Path, lab: str | None = None) -> int:
    """Write the grades CSV to ``out`` (atomically); return the number of rows."""
    from nbgrader.api import Gradebook, MissingEntry

    course = open_course(course_dir)
    rows = []
    with warnings.catch_warnings(), Gradebook(course.db_url, course.course_id) as gb:
        warnings.simplefilter("ignore")
        assignments = [a.name for a in gb.assignments]
        if lab is not None and lab not in assignments:
            raise GradingError(f"lab '{lab}' is not in the gradebook; known: {assignments}")
        for a in [lab] if lab else assignments:
            for student in sorted(s.id for s in gb.students):
                try:
                    sub = gb.find_submission(a, student)
                except MissingEntry:
                    continue
                res = read_result(state_dir(course, a) / "results" / f"{student}.json")
                penalty = float(sub.late_submission_penalty or 0.0)
                score = float(sub.score or 0.0)
                rows.append(
                    {
                        "student_id": student,
                        "lab": a,
                        "timestamp": sub.timestamp.isoformat() if sub.timestamp else "",
                        "status": res.status if res else "not graded by medai",
                        "score": round(score, 4),
                        "max_score": float(sub.max_score),
                        "late_penalty": round(penalty, 4),
                        "final_score": round(max(0.0, score - penalty), 4),
                        "needs_manual_grade": bool(sub.needs_manual_grade),
                        "tampered_cells": _tampered_cells(res),
                        "messages": " | ".join(res.messages) if res else "",
                    }
                )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    out = Path(out)
    if out.parent and not out.parent.exists():
        os.makedirs(out.parent, exist_ok=True)
    atomic_write(out, buf.getvalue())
    return len(rows)
