"""The typed result of grading one submission, and its stored JSON form.

Every consumer reads a :class:`GradeResult`: the result store and the gradebook
(:mod:`~medai.autograder.steps.gradebook`), the ``medai grade`` table, the CSV export, the
grading runs of the browser (:mod:`medai.autograder.runs`). ``results/<student>.json`` holds
:meth:`GradeResult.to_json`; :meth:`GradeResult.from_json` reads it back and refuses a file that
is not a result (hand-edited, truncated) with :class:`ResultError`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["RESULT_VERSION", "GradeResult", "ResultError", "TaskResult", "read_result"]

RESULT_VERSION = 1


class ResultError(ValueError):
    """A stored result file that cannot be read as a result; the message says which."""


@dataclass
class TaskResult:
    """One graded cell: its notebook, points, score (None: graded by hand) and why."""

    notebook: str
    max: float | None
    score: float | None = 0.0
    message: str = ""
    tampered: bool = False


@dataclass
class GradeResult:
    student: str
    lab: str
    fingerprint: str = ""  # of the submission folder; "" never counts as done
    status: str = "graded"  # graded | invalid | timeout | crashed | output-limit | error
    messages: list[str] = field(default_factory=list)
    tamper: list[dict[str, Any]] = field(default_factory=list)  # sanitize events + notebook
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    notebooks: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> status/message
    timestamp: str | None = None  # ISO time of the submission (nbgrader's timestamp.txt)
    auto_score: float = 0.0
    max_score: float = 0.0
    late_fraction: float = 0.0
    late_penalty: float = 0.0
    seconds: float = 0.0  # grading this submission took, store excluded
    sandbox: dict[str, Any] | None = None  # status, returncode, wall_s, exec_s, notes, ...
    oracle: dict[str, dict[str, int]] | None = None  # clinician usage by task
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    version: int = RESULT_VERSION
    log: str = ""  # the cell-by-cell log; kept in logs/<student>.log, not in the result file

    def to_json(self) -> dict[str, Any]:
        """The stored form (``results/<student>.json``): plain data, without the log."""
        out = asdict(self)
        out.pop("log")
        for key in ("sandbox", "oracle"):
            if out[key] is None:
                out.pop(key)
        return out

    @classmethod
    def from_json(cls, data: Any) -> GradeResult:
        """A result from its stored form; :class:`ResultError` if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("tasks", {}), dict):
            raise ResultError("not a grading result (expected an object with 'tasks')")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known and k != "tasks"}
        try:
            tasks = {gid: TaskResult(**t) for gid, t in data.get("tasks", {}).items()}
            return cls(**kw, tasks=tasks)
        except TypeError as exc:
            raise ResultError(f"not a grading result: {exc}") from None

    def __getitem__(self, key: str) -> Any:
        """Read the stored form by key (``r["auto_score"]``), as results were read before they
        were typed; new code uses the attributes."""
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)


def read_result(path: Path) -> GradeResult | None:
    """The stored result at ``path``, or None when there is none or it is unreadable."""
    try:
        return GradeResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
