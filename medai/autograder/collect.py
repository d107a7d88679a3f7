"""Collect submissions from the trusted inbound with nbgrader's own ``collect``.

The grading service runs this on the host before it grades. It uses nbgrader's exchange code
(the same ``ExchangeCollect`` the formgrader's *Collect* button and ``nbgrader collect`` run),
configured here in full: no ``nbgrader_config.py`` is read, because the course folder is
writable from the formgrader's sandbox and a config file is Python that would run here.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medai.autograder import GradingError

if TYPE_CHECKING:
    from medai.autograder.steps.layout import Course

# nbgrader's submission folder name, as the exchange keeper receives it: <owner>+<lab>+<time>[+r]
_SUBMISSION_RE = re.compile(r"^(?P<owner>[^+/]+)\+(?P<lab>[^+/]+)\+[^+/]+(\+[^+/]+)?$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_LOG_LOCK = threading.Lock()  # nbgrader logs to one shared logger: one capture at a time


@dataclass
class CollectReport:
    ok: bool
    log: str
    error: str = ""


def check_id(kind: str, value: str) -> str:
    """A lab or student id that is safe in nbgrader's glob patterns and in paths."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise GradingError(
            f"{kind} id {value!r} is not valid: use letters, digits and . _ @ - "
            "(at most 100 characters, starting with a letter or digit)"
        )
    return value


def received(inbound: Path, lab_id: str) -> dict[str, int]:
    """Students with at least one submission of ``lab_id`` in the trusted inbound -> count."""
    out: dict[str, int] = {}
    if not inbound.is_dir():
        return out
    for p in inbound.iterdir():
        m = _SUBMISSION_RE.match(p.name)
        if m and m["lab"] == lab_id and p.is_dir() and not p.is_symlink():
            out[m["owner"]] = out.get(m["owner"], 0) + 1
    return out


def collect(
    course: Course, lab_id: str, exchange_root: Path, student: str | None = None
) -> CollectReport:
    """``nbgrader collect --update`` of ``lab_id`` (one student, or everyone) into
    ``<course>/submitted``; the newest submission per student wins, as in nbgrader."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.collect import ExchangeCollect
    from nbgrader.utils import capture_log
    from traitlets.config import Config

    check_id("lab", lab_id)
    if student is not None:
        check_id("student", student)
    cfg = Config()
    cfg.CourseDirectory.root = str(course.root)
    cfg.CourseDirectory.course_id = course.course_id
    cfg.CourseDirectory.submitted_directory = course.submitted.name
    cfg.CourseDirectory.db_url = course.db_url
    cfg.Exchange.root = str(exchange_root)
    cfg.Exchange.path_includes_course = True
    cfg.ExchangeCollect.check_owner = False  # the keeper owns every received copy
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = lab_id
    coursedir.student_id = student or "*"
    app = ExchangeCollect(coursedir=coursedir, authenticator=Authenticator(config=cfg), config=cfg)
    app.update = True
    with _LOG_LOCK:
        level = app.log.level
        app.log.setLevel(logging.INFO)  # its "Collecting submission: ..." lines are the report
        try:
            res = capture_log(app)
        finally:
            app.log.setLevel(level)
    return CollectReport(bool(res.get("success")), res.get("log", ""), res.get("error", ""))
